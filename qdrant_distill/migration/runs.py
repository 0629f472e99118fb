"""What is done with a migration's run folder (:class:`~qdrant_distill.folders.RunFolder`) once it exists: read
its journal and saved sample, load the encoder its collection answers queries with, export its student again, and
the operator commands (status, swap, rollback, finalize, abandon). The migration itself is
:mod:`qdrant_distill.migration.pipeline`.

Every command that changes something first reads the journal (a file that is not one is refused before anything is
written), then takes the run folder's lock (refused while a migration runs in it), and, when it is given a store,
checks that the store is the run's (:func:`check_store`).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydantic import SecretStr

from qdrant_distill.connectors.base import Connector, Sample
from qdrant_distill.errors import ConfigError, StoreMismatch
from qdrant_distill.folders import DistillFolder, RunFolder
from qdrant_distill.inference.encoders import DEFAULT_BATCH_SIZE, Encoder, load_encoder
from qdrant_distill.inference.export import export_model
from qdrant_distill.inference.formats import (
    GRAPHS,
    Backend,
    ExportManifest,
    read_manifest,
)
from qdrant_distill.migration.aliases import (
    AliasMove,
    abandon,
    alias_move,
    finalize,
    rollback,
    swap,
)
from qdrant_distill.migration.config import MigrationConfig, Mode
from qdrant_distill.migration.journal import Journal, Stage, run_lock
from qdrant_distill.migration.report import refresh_report, write_report
from qdrant_distill.redact import redact_text

__all__ = [
    "abandon_run",
    "check_store",
    "encoder_of",
    "encoder_reference",
    "export_target",
    "finalize_run",
    "load_sample",
    "open_journal",
    "query_encoder",
    "report_path",
    "rollback_run",
    "save_sample",
    "status",
    "swap_run",
]

logger = logging.getLogger(__name__)


# -- the saved sample -----------------------------------------------------------------------------------------------
def save_sample(path: Path, sample: Sample) -> None:
    """Keep a sample (texts, ids, teacher vectors) so a resumed run trains on the same points; atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"ids": sample.ids, "texts": sample.texts, "requested": sample.requested, "method": sample.method,
            "missing_text": sample.missing_text, "missing_vector": sample.missing_vector}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, vectors=sample.vectors, meta=np.array(json.dumps(meta)))
    tmp.replace(path)


def load_sample(path: Path) -> Sample:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        vectors = data["vectors"].astype(np.float32)
    return Sample(vectors=vectors, **meta)


# -- the run's encoder ----------------------------------------------------------------------------------------------
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
                            api_key=config.embeddings_api_key)


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
                     api_key: SecretStr | str | None = None) -> Encoder:
    projection = journal.projection_path if mode is Mode.PROJECTION_ONLY else None
    return load_encoder(encoder_reference(journal, backend), projection=projection, backend=backend,
                        batch_size=batch_size, api_key=api_key)


# -- export again ---------------------------------------------------------------------------------------------------
def export_target(target: str | Path, *, formats: Sequence[Backend | str] = GRAPHS,
                  out_dir: str | Path | None = None) -> ExportManifest:
    """``qdrant-distill export``: a migration's run folder (int8 checked on the holdout of the sample it saved), a
    distill output folder, or any model (``out_dir`` needed; checked on built-in texts)."""
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
        if run.distill.is_distill_output():
            from qdrant_distill.distillation.recipe import (
                export_student,  # torch: only when a student is exported
            )

            with run_lock(run.root, "export"):
                return _manifest_of(export_student(run.distill.root, formats=formats, sample=_run_sample(run)))
    if out_dir is None and not run.is_run() and distilled.is_distill_output():
        from qdrant_distill.distillation.recipe import export_student

        return _manifest_of(export_student(distilled.root, formats=formats))
    if out_dir is None:
        raise ConfigError(f"{redact_text(str(target))} is not a run or distill output folder: say where to export it",
                          hint="add --out FOLDER")
    from qdrant_distill.migration.checks import check_folder

    check_folder(Path(out_dir).expanduser(), "export folder", "--out")
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


# -- operator commands ----------------------------------------------------------------------------------------------
def open_journal(run_dir: str | Path) -> Journal:
    """The journal of an earlier run (for status, rollback, finalize)."""
    return Journal.load(run_dir)


def status(run_dir: str | Path) -> Journal:
    """The journal of a run."""
    return open_journal(run_dir)


def rollback_run(run_dir: str | Path, connector: Connector) -> AliasMove:
    """Move the alias back (:func:`~qdrant_distill.migration.aliases.rollback`); returns what the store shows moved."""
    with _operating(run_dir, connector, "rollback") as journal:
        move = alias_move(connector, journal, lambda: rollback(connector, journal))
    if move.moved:
        refresh_report(journal.run_dir)  # the alias move, with its time
    return move


def finalize_run(run_dir: str | Path, connector: Connector) -> str | None:
    """Drop the previous collection (:func:`~qdrant_distill.migration.aliases.finalize`); returns it when this call dropped it."""
    with _operating(run_dir, connector, "finalize") as journal:
        dropped = finalize(connector, journal)
    if dropped:
        refresh_report(journal.run_dir)
    return dropped


def swap_run(run_dir: str | Path, connector: Connector) -> AliasMove:
    """Move the alias to the target (:func:`~qdrant_distill.migration.aliases.swap`); returns what the store shows moved."""
    with _operating(run_dir, connector, "swap") as journal:
        move = alias_move(connector, journal, lambda: swap(connector, journal))
    if move.moved:
        refresh_report(journal.run_dir)
    return move


def report_path(run_dir: str | Path) -> Path:
    """The run's ``report.html``, written afresh from its files (``status --html``)."""
    return write_report(open_journal(run_dir).run_dir)


def abandon_run(run_dir: str | Path, connector: Connector) -> str | None:
    """Drop the target of a run that was never swapped in and clear its run folder (journal, sample, student), so
    the same command starts afresh. Returns the dropped collection (None when the run had not created one)."""
    with _operating(run_dir, connector, "abandon") as journal:
        dropped = abandon(connector, journal)
        folder = RunFolder(journal.run_dir)
        for path in folder.written:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        logger.warning("abandon: cleared the run folder %s", folder.root)
    return dropped


@contextmanager
def _operating(run_dir: str | Path, connector: Connector, command: str) -> Iterator[Journal]:
    """The run's journal, for ``command`` to act on with ``connector``: read (a file that is not a journal is refused
    before anything is written), then read again under the run folder's lock, its store checked."""
    folder = open_journal(run_dir).run_dir
    with run_lock(folder, command):
        journal = open_journal(folder)
        check_store(journal, connector)
        yield journal


def check_store(journal: Journal, connector: Connector) -> None:
    """Refuse a store that is not the run's. When the journal and the connector both name their store, the names
    must match; otherwise (a journal written before runs recorded their store, or a client wrapped without a name)
    the store must hold what the journal says the run has: its target once created, else its source."""
    here, recorded = connector.identity, journal.store
    if recorded is not None and here is not None:
        if here != recorded:
            raise StoreMismatch(f"the run folder {str(journal.run_dir)!r} belongs to the store {recorded}, not {here}",
                                hint="pass the store the migration ran on (--path or --url)")
        return
    logger.info("%s: cannot compare stores (%s); checking the run's collections instead", journal.run_dir,
                "the journal does not record its store: an earlier version wrote it" if recorded is None
                else "this connector does not name its store")
    created = journal.done(Stage.CREATED)
    expected = journal.target if created else journal.source_collection
    if expected and not connector.collection_exists(expected):
        raise StoreMismatch(f"this store has no {expected!r}, the run's {'target' if created else 'source'}: it is "
                            f"not the store of the run folder {str(journal.run_dir)!r}",
                            hint="pass the store the migration ran on; if that collection was dropped by hand, "
                            "delete the run folder by hand")
