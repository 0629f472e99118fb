"""What an export folder *is*: the backends a student can run on, the file each format lives in, and the manifest
(``export.json``) that says what the folder holds, what each format's checks measured, and which format ``auto``
loads. The one home of the backend names. Writing an export is :mod:`qdrant_distill.inference.export`; loading one is
:func:`qdrant_distill.inference.encoders.load_encoder`.
"""

from __future__ import annotations

import enum
import json
import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from qdrant_distill.errors import StudentError
from qdrant_distill.folders import DistillFolder, ExportFolder
from qdrant_distill.inference.cpu import CpuFeatures

__all__ = ["EXPORT_DIR", "FILES", "GRAPHS", "MANIFEST", "Backend", "BackendCheck", "ExportChoice", "ExportManifest", "export_folder",
           "read_manifest", "rebuild_command"]


class Backend(str, enum.Enum):
    """What runs a model: ``torch`` (sentence-transformers), ``onnx`` / ``onnx-int8`` (its exported graph in
    onnxruntime, fp32 / int8 weights), ``static`` (its token table in numpy). ``auto`` asks the export to choose."""

    AUTO = "auto"
    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"
    STATIC = "static"

    def __str__(self) -> str:
        return self.value

    @property
    def exported(self) -> bool:
        """Runs from an export folder (not the model itself)."""
        return self in EXPORTED


class ExportChoice(str, enum.Enum):
    """What distillation exports: ``onnx-int8`` (fp32 and int8 graphs; fp32 stays as the fallback), ``onnx`` (fp32
    alone) or ``none``. A static student is exported as its token table whatever the choice (but ``none``)."""

    NONE = "none"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"

    def __str__(self) -> str:
        return self.value

    @property
    def formats(self) -> tuple[Backend, ...]:
        return {ExportChoice.NONE: (), ExportChoice.ONNX: (Backend.ONNX,),
                ExportChoice.ONNX_INT8: (Backend.ONNX, Backend.ONNX_INT8)}[self]


EXPORTED = (Backend.ONNX_INT8, Backend.ONNX, Backend.STATIC)  # fastest first: the order ``auto`` prefers
GRAPHS = (Backend.ONNX, Backend.ONNX_INT8)  # the formats an ONNX export can make
EXPORT_DIR = DistillFolder.EXPORT  # a distillation output folder keeps its export in this subfolder
MANIFEST = ExportFolder.MANIFEST
FILES: dict[Backend, str] = {Backend.ONNX: ExportFolder.GRAPH, Backend.ONNX_INT8: ExportFolder.INT8_GRAPH,
                             Backend.STATIC: ExportFolder.TOKEN_TABLE}


class BackendCheck(BaseModel):
    """How one exported format compares with the torch model it came from."""

    cosine_mean: float
    cosine_min: float
    texts: int
    metrics: dict[str, float] = Field(default_factory=dict)
    accepted: bool = True
    reason: str | None = None


class ExportManifest(BaseModel):
    """``export.json``: what an export folder holds and which backend ``auto`` loads from it."""

    version: int = 1
    source: str
    kind: Literal["transformer", "static"]
    dim: int
    max_seq_length: int | None = None
    inputs: list[str] = Field(default_factory=list)
    output: str = "sentence_embedding"
    prompts: dict[str, str] = Field(default_factory=dict)
    files: dict[Backend, str] = Field(default_factory=dict)
    checks: dict[Backend, BackendCheck] = Field(default_factory=dict)
    reference_metrics: dict[str, float] = Field(default_factory=dict)
    preferred: Backend | None = None
    # int8 weights in this many bits: 7 since they were made exact on every CPU; a manifest without it is older (8)
    int8_weight_bits: int = 8
    checked_on: CpuFeatures | None = None  # the processor the checks below ran on
    wall_time_s: float = 0.0

    def accepted(self, backend: Backend | str) -> bool:
        backend = Backend(backend)
        check = self.checks.get(backend)
        return backend in self.files and (check is None or check.accepted)

    def choose(self) -> Backend | None:
        """The fastest format that passed its checks: int8, then fp32 ONNX, then the static table."""
        return next((b for b in EXPORTED if self.accepted(b)), None)

    def refuse(self, backend: Backend | str, reason: str) -> None:
        backend = Backend(backend)
        if backend in self.checks:
            self.checks[backend] = self.checks[backend].model_copy(update={"accepted": False, "reason": reason})
        self.preferred = self.choose()

    def runs_on(self) -> Backend:
        """What ``auto`` runs this export on: its preferred format, torch when none passed."""
        return self.preferred or Backend.TORCH

    def save(self, folder: Path) -> Path:
        path = ExportFolder(folder).manifest
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2), encoding="utf-8")
        return path


def read_manifest(folder: str | Path) -> ExportManifest | None:
    """The manifest of an export folder, or None when ``folder`` is not one."""
    path = ExportFolder(Path(folder).expanduser()).manifest
    if not path.is_file():
        return None
    try:
        return ExportManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise StudentError(f"{path} is not a qdrant-distill export manifest: {exc}") from exc


def export_folder(ref: str | Path | None) -> Path | None:
    """The export folder that belongs to ``ref``: ``ref`` itself when it is one, the ``onnx/`` of a distillation
    output folder, or that of the output folder a student folder sits in."""
    if ref is None or not isinstance(ref, (str, Path)):
        return None
    path = Path(ref).expanduser()
    candidates = [path, DistillFolder(path).export.root]
    owner = DistillFolder.of_student(path)
    if owner is not None:  # the student of a distill output
        candidates.append(owner.export.root)
    return next((c for c in candidates if ExportFolder(c).is_export()), None)


def rebuild_command(folder: str | Path, source: str | None = None) -> str:
    """The command that writes the export folder ``folder`` again: ``qdrant-distill export RUN_OR_DISTILL_FOLDER``
    for the ``onnx/`` of a run (or distillation) folder, else an export of its source model into it."""
    path = Path(folder).expanduser().resolve()
    owner = ExportFolder(path).owner()
    if owner is not None:
        return f"qdrant-distill export {shlex.quote(str(owner))}"
    return f"qdrant-distill export {shlex.quote(source) if source else 'MODEL'} --out {shlex.quote(str(path))}"
