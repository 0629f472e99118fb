"""What each folder qdrant-distill writes holds: the one home of their layouts (file and subfolder names).

- :class:`ExportFolder`: an exported model for torch-free inference (:mod:`qdrant_distill.inference.export`; its manifest and
  the backends it offers are in :mod:`qdrant_distill.inference.formats`).
- :class:`DistillFolder`: what :func:`qdrant_distill.distill` writes: the student, the projection, ``distill.json``,
  the teacher's labels and the student's export.
- :class:`RunFolder`: one migration's folder: its journal, the sample it trained on, and its distillation output.
- :class:`EdgeFolder`: what ``qdrant-distill export-edge`` writes (:mod:`qdrant_distill.edge.export`): a Qdrant Edge
  shard, the student's export and ``edge.json``; :func:`qdrant_distill.edge.shard.open` answers queries from it.

Paths recorded *inside* a folder (the journal's, ``distill.json``'s) are written relative to it, as ``./<path>``, so a
copied or moved folder reads its own files (:func:`stored_path`, :func:`recorded_path`).

A leaf: it imports nothing of the package, so every module may name a path through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["HERE", "DistillFolder", "EdgeFolder", "ExportFolder", "RunFolder", "recorded_path", "stored_path"]

HERE = "./"  # a recorded path that starts so is relative to the folder it is recorded in


def stored_path(root: Path, path: str | Path | None) -> str | None:
    """How a folder records ``path``: ``./<relative>`` when it lies inside ``root``, as given otherwise (a model
    elsewhere, a hub name, an endpoint)."""
    if path is None:
        return None
    given = Path(path)
    if not given.is_absolute():
        return str(path)
    try:
        return HERE + given.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def recorded_path(root: Path, recorded: str | None, *, written_in: Path | None = None) -> str | None:
    """The path a value recorded in ``root`` stands for. ``./<relative>`` is under ``root``. An absolute path (how
    older versions recorded every path) is kept, except one under ``written_in`` (the folder it was recorded in,
    when known) while ``root`` is another folder, that is, the folder was copied or moved: then ``root``'s own copy
    of that file is read when it has one. Anything else (a hub name) is returned as it is."""
    if recorded is None:
        return None
    if recorded.startswith(HERE):
        return str(root / recorded[len(HERE):])
    given = Path(recorded)
    if not given.is_absolute() or written_in is None or written_in == root:
        return recorded
    try:
        own = root / given.relative_to(written_in)
    except ValueError:
        return recorded
    return str(own) if own.exists() else recorded


@dataclass(frozen=True)
class ExportFolder:
    """An export folder: one graph (or token table) per format, the tokenizer, and ``export.json``."""

    root: Path

    MANIFEST = "export.json"
    TOKENIZER = "tokenizer.json"
    GRAPH = "model.onnx"
    INT8_GRAPH = "model_int8.onnx"
    TOKEN_TABLE = "model.safetensors"

    @property
    def manifest(self) -> Path:
        return self.root / self.MANIFEST

    @property
    def tokenizer(self) -> Path:
        return self.root / self.TOKENIZER

    def is_export(self) -> bool:
        return self.manifest.is_file()

    def owner(self) -> Path | None:
        """The run folder (else the distillation folder) this export is the ``onnx/`` of: what ``qdrant-distill
        export`` rebuilds it from. None for an export folder of its own."""
        distill = DistillFolder(self.root.parent)
        if self.root.name != DistillFolder.EXPORT or not distill.is_distill_output():
            return None
        run = RunFolder(distill.root.parent)
        return run.root if distill.root.name == RunFolder.DISTILL and run.is_run() else distill.root


@dataclass(frozen=True)
class DistillFolder:
    """A distillation output folder: ``student/`` (sentence-transformers), ``projection.npz``, ``distill.json``
    (also kept inside ``student/``, so a copied student describes itself; its paths are relative to this folder),
    ``onnx/`` and ``teacher_labels/``."""

    root: Path

    STUDENT = "student"
    RESULT = "distill.json"
    PROJECTION = "projection.npz"
    EXPORT = "onnx"
    LABELS = "teacher_labels"

    @property
    def student(self) -> Path:
        return self.root / self.STUDENT

    @property
    def result(self) -> Path:
        return self.root / self.RESULT

    @property
    def result_copies(self) -> tuple[Path, Path]:
        """Where ``distill.json`` is written: the folder and the student inside it."""
        return self.result, self.student / self.RESULT

    @property
    def projection(self) -> Path:
        return self.root / self.PROJECTION

    @property
    def export(self) -> ExportFolder:
        return ExportFolder(self.root / self.EXPORT)

    @property
    def labels(self) -> Path:
        return self.root / self.LABELS

    def is_distill_output(self) -> bool:
        return self.result.is_file()

    @classmethod
    def of_student(cls, student: Path) -> DistillFolder | None:
        """The distillation folder a student folder sits in (None when it does not sit in one)."""
        parent = cls(student.parent)
        return parent if student.name == cls.STUDENT and parent.is_distill_output() else None


@dataclass(frozen=True)
class RunFolder:
    """A migration's run folder: ``journal.json``, ``sample.npz`` and the distillation output in ``student/``;
    ``run.lock`` is locked by the process working in it (a migration, an operator command). The journal records the
    paths of these relative to the folder (:func:`stored_path`)."""

    root: Path

    JOURNAL = "journal.json"
    SAMPLE = "sample.npz"
    DISTILL = "student"
    DIMS = "dims.json"
    REPORT = "report.html"
    REPORT_DATA = "report.json"
    LOCK = "run.lock"

    @property
    def journal(self) -> Path:
        return self.root / self.JOURNAL

    @property
    def sample(self) -> Path:
        return self.root / self.SAMPLE

    @property
    def distill(self) -> DistillFolder:
        return DistillFolder(self.root / self.DISTILL)

    @property
    def dims(self) -> Path:
        """The dimension table of the plan (:class:`qdrant_distill.migration.dims.DimsReport`)."""
        return self.root / self.DIMS

    @property
    def report(self) -> Path:
        """The self-contained HTML report of the run."""
        return self.root / self.REPORT

    @property
    def report_data(self) -> Path:
        """What the report draws that neither the journal nor ``distill.json`` holds: the plan's figures and a few
        held-out examples with their neighbours (:class:`qdrant_distill.migration.report.RunFacts`)."""
        return self.root / self.REPORT_DATA

    @property
    def lock(self) -> Path:
        """The file a process working in the folder holds a lock on (it names that process). Kept by ``abandon``:
        a lock file removed while held would let a second process lock a new one."""
        return self.root / self.LOCK

    @property
    def written(self) -> tuple[Path, ...]:
        """What a run writes into its folder (what ``abandon`` clears)."""
        return self.journal, self.sample, self.distill.root, self.dims, self.report, self.report_data

    def is_run(self) -> bool:
        return self.journal.is_file()

    @classmethod
    def of_sample(cls, sample: str | None) -> Path | None:
        """The run folder a recorded absolute sample path was written in (older journals record absolute paths)."""
        path = Path(sample) if sample else None
        return path.parent if path is not None and path.is_absolute() and path.name == cls.SAMPLE else None


@dataclass(frozen=True)
class EdgeFolder:
    """An Edge folder: ``shard/`` (a Qdrant Edge shard), ``student/`` (an :class:`ExportFolder` holding one format),
    ``edge.json`` (its manifest, :class:`qdrant_distill.edge.shard.EdgeManifest`) and ``.lock`` (held while it is open)."""

    root: Path

    SHARD = "shard"
    STUDENT = "student"
    MANIFEST = "edge.json"
    LOCK = ".lock"

    @property
    def shard(self) -> Path:
        return self.root / self.SHARD

    @property
    def student(self) -> ExportFolder:
        return ExportFolder(self.root / self.STUDENT)

    @property
    def manifest(self) -> Path:
        return self.root / self.MANIFEST

    @property
    def lock(self) -> Path:
        return self.root / self.LOCK

    @property
    def manifest_tmp(self) -> Path:
        return self.root / (self.MANIFEST + ".tmp")

    @property
    def student_tmp(self) -> Path:
        return self.root / (self.STUDENT + ".tmp")

    @property
    def written(self) -> tuple[Path, ...]:
        """What an export writes into the folder (what ``--overwrite`` replaces; nothing else is touched)."""
        return self.manifest, self.shard, self.student.root, self.manifest_tmp, self.student_tmp

    @property
    def owned(self) -> tuple[Path, ...]:
        """Every path of the folder that belongs to an export (what is written, and the lock)."""
        return (*self.written, self.lock)

    def is_edge(self) -> bool:
        return self.manifest.is_file()
