"""The operator commands on a migration's run folder (:class:`~qdrant_distill.folders.RunFolder`): status, swap,
rollback, finalize, abandon, and the report written afresh. The migration itself is
:mod:`qdrant_distill.migration.pipeline`.

Every command that changes something first reads the journal (a file that is not one is refused before anything is
written), then takes the run folder's lock (refused while a migration runs in it), and checks that the store it is
given is the run's (:func:`check_store`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qdrant_distill.connectors.base import Connector
from qdrant_distill.errors import StoreMismatch
from qdrant_distill.folders import RunFolder
from qdrant_distill.migration.aliases import (
    AliasMove,
    abandon,
    alias_move,
    finalize,
    rollback,
    swap,
)
from qdrant_distill.migration.journal import Journal, Stage, run_lock
from qdrant_distill.migration.report import refresh_report, write_report

__all__ = ["abandon_run", "check_store", "finalize_run", "open_journal", "report_path", "rollback_run", "swap_run"]

logger = logging.getLogger(__name__)


def open_journal(run_dir: str | Path) -> Journal:
    """The journal of an earlier run (``qdrant-distill status``; what rollback, swap and finalize act on)."""
    return Journal.load(run_dir)


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
