"""The models of a migration's run folder: the encoder its collection answers queries with (on the backend the run
chose, or another one the gate judges), what ``evaluate`` measures, and its student exported again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import SecretStr

from qdrant_distill.errors import ConfigError
from qdrant_distill.folders import DistillFolder, RunFolder
from qdrant_distill.inference.encoders import DEFAULT_BATCH_SIZE, Encoder, load_encoder
from qdrant_distill.inference.export import export_model
from qdrant_distill.inference.formats import (
    GRAPHS,
    Backend,
    ExportManifest,
    read_manifest,
)
from qdrant_distill.migration.config import MigrationConfig, Mode
from qdrant_distill.migration.journal import Journal, run_lock
from qdrant_distill.migration.operate import open_journal
from qdrant_distill.migration.samples import load_sample
from qdrant_distill.redact import redact_text

__all__ = ["check_export_target", "encoder_of", "encoder_reference", "export_target", "query_encoder", "run_encoder"]


def encoder_reference(journal: Journal, backend: Backend | None = None) -> str:
    """What loads the run's encoder on ``backend`` (default: the run's): its export folder when that backend runs
    on one, else the student (or teacher)."""
    assert journal.student_path is not None
    exported = Backend(backend or journal.backend).exported
    return journal.export_path if exported and journal.export_path else journal.student_path


def query_encoder(config: MigrationConfig, journal: Journal) -> Encoder:
    """The encoder the new collection answers queries with: the student, or in projection-only mode the teacher
    followed by the projection, on the backend the run chose."""
    return run_encoder(config, journal, Backend(journal.backend))


def run_encoder(config: MigrationConfig, journal: Journal, backend: Backend) -> Encoder:
    """The run's query encoder on ``backend`` (the gate judges other backends than the chosen one)."""
    return _journal_encoder(journal, config.mode, backend, batch_size=config.encode_batch_size,
                            api_key=config.embeddings_api_key, given=config.teacher_model)


def encoder_of(ref: str | Path) -> Encoder:
    """What ``qdrant-distill evaluate`` measures: a run folder stands for its query encoder (the student, or in
    projection-only mode the teacher and the projection) on the backend the run chose; anything else is loaded by
    :func:`~qdrant_distill.inference.encoders.load_encoder`."""
    folder = RunFolder(Path(ref).expanduser())
    if not folder.is_run():
        return load_encoder(ref)
    journal = open_journal(folder.root)
    if journal.student_path is None:
        raise ConfigError(f"the run in {str(folder.root)!r} has no student yet (stage {journal.stage.value})",
                          hint="rerun its migration until it is past distilling, then evaluate it")
    mode = Mode(journal.fingerprint.get("mode", Mode.REEMBED.value))
    return _journal_encoder(journal, mode, Backend(journal.backend))


def _journal_encoder(journal: Journal, mode: Mode, backend: Backend, *, batch_size: int = DEFAULT_BATCH_SIZE,
                     api_key: SecretStr | str | None = None, given: str | None = None) -> Encoder:
    """The journal's encoder; an endpoint recorded without its path is loaded by ``given`` (the teacher reference
    this process was handed, path and all) when that is the same endpoint and model."""
    from qdrant_distill.connectors.http_embeddings import in_memory_reference

    projection = journal.projection_path if mode is Mode.PROJECTION_ONLY else None
    reference = in_memory_reference(encoder_reference(journal, backend), given)
    return load_encoder(reference, projection=projection, backend=backend,
                        batch_size=batch_size, api_key=api_key)


def check_export_target(target: str | Path, out_dir: str | Path | None = None) -> None:
    """Every refusal of ``qdrant-distill export`` before its long part: an endpoint (no model here), a run folder
    whose journal is not one, a folder that is neither a run nor a distill output without ``--out``, an unusable
    ``--out``."""
    from qdrant_distill.connectors.http_embeddings import (
        is_http_reference,
        shown_reference,
    )

    if is_http_reference(str(target)):
        raise ConfigError(f"{shown_reference(str(target))} is an embeddings endpoint: there is no model here to export",
                          hint="export a run folder, a distill output folder or a local sentence-transformers model")
    path = Path(target).expanduser()
    run, distilled = RunFolder(path), DistillFolder(path)
    if out_dir is None and run.is_run():
        open_journal(run.root)  # a file that is not a journal is refused before anything is written
        return
    if out_dir is None and distilled.is_distill_output():
        return
    if out_dir is None:
        raise ConfigError(f"{redact_text(str(target))} is not a run or distill output folder: say where to export it",
                          hint="add --out FOLDER")
    from qdrant_distill.migration.checks import check_folder

    check_folder(Path(out_dir).expanduser(), "export folder", "--out")


def export_target(target: str | Path, *, formats: Sequence[Backend | str] = GRAPHS,
                  out_dir: str | Path | None = None) -> ExportManifest:
    """``qdrant-distill export``: a migration's run folder (int8 checked on the holdout of the sample it saved), a
    distill output folder, or any model (``out_dir`` needed; checked on built-in texts)."""
    check_export_target(target, out_dir)
    path = Path(target).expanduser()
    run, distilled = RunFolder(path), DistillFolder(path)
    if out_dir is None and run.is_run():
        if run.distill.is_distill_output():
            from qdrant_distill.distillation.recipe import (
                export_student,  # torch: only when a student is exported
            )

            with run_lock(run.root, "export"):
                return _manifest_of(export_student(run.distill.root, formats=formats, sample=_run_sample(run)))
        raise ConfigError(f"the run in {redact_text(str(path))} has no student to export yet",
                          hint="rerun its migration until it is past distilling")
    if out_dir is None and distilled.is_distill_output():
        from qdrant_distill.distillation.recipe import export_student

        return _manifest_of(export_student(distilled.root, formats=formats))
    return export_model(str(target), out_dir, formats=formats)


def _run_sample(run: RunFolder) -> tuple[list[str], np.ndarray] | None:
    """The sample a migration distilled from (saved in its run folder), or None."""
    journal = Journal.load(run.root)
    if not journal.sample_path or not Path(journal.sample_path).is_file():
        return None
    sample = load_sample(Path(journal.sample_path))
    return sample.texts, sample.vectors


def _manifest_of(result: object) -> ExportManifest:
    manifest = read_manifest(getattr(result, "export_path"))
    assert manifest is not None
    return manifest
