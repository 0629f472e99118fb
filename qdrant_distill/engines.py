"""What runs the re-embed stage: one small protocol, two engines, chosen once per migration.

- :class:`LocalEngine`: threads in this process (:func:`qdrant_distill.reembed.reembed`), resumable from the scroll
  offset the journal records after each written page;
- :class:`~qdrant_distill.ray_engine.RayEngine`: Ray actors over id ranges, resumable per range.

Both take a :class:`~qdrant_distill.reembed.ReembedJob` and the run's journal, and show the same progress bar
(points written of the collection's total, resumed work counted in).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from connectors.base import Connector
from qdrant_distill.config import Engine, MigrationConfig
from qdrant_distill.journal import Journal
from qdrant_distill.ray_engine import RayEngine
from qdrant_distill.reembed import Encode, ReembedJob, reembed

__all__ = ["LocalEngine", "ReembedEngine", "engine_for"]

logger = logging.getLogger(__name__)


class ReembedEngine(Protocol):
    """An engine: a session around the stage (started before any training, so a bad cluster fails early), and the
    stage itself. ``remote_encode`` stands in for the student in the driver's page converter when the engine encodes
    elsewhere (None: the driver's converter encodes)."""

    remote_encode: Encode | None

    def session(self) -> AbstractContextManager[Any]: ...

    def run(self, conn: Connector, job: ReembedJob, journal: Journal) -> None: ...


class LocalEngine:
    """Threads in this process; the journal's checkpoint is the scroll offset of the next page to write."""

    remote_encode: Encode | None = None

    def session(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def run(self, conn: Connector, job: ReembedJob, journal: Journal) -> None:
        if journal.checkpoint is None:  # nothing durable yet: start over (upserts are idempotent)
            journal.points_written, journal.skipped_ids, journal.projected_ids = 0, [], 0
        written, skipped, projected = journal.points_written, list(journal.skipped_ids), journal.projected_ids

        def checkpoint(next_offset: Any, stats: Any) -> None:
            journal.checkpoint = next_offset
            journal.points_written = written + stats.written
            journal.skipped_ids = skipped + list(stats.skipped)
            journal.projected_ids = projected + stats.projected
            journal.reembed_finished = next_offset is None
            journal.save()

        if journal.checkpoint is not None:
            logger.info("resuming the re-embed at offset %r (%d points written)", journal.checkpoint, written)
        reembed(conn, source=job.source, target=job.target, converter=job.converter, vectors=job.vectors,
                page_size=job.page_size, prefetch_pages=job.prefetch_pages, offset=journal.checkpoint,
                total=job.total, already=written + len(skipped), on_checkpoint=checkpoint, progress=job.progress)


def engine_for(config: MigrationConfig) -> ReembedEngine:
    """The engine a migration's configuration asks for."""
    if config.engine is Engine.RAY:
        return RayEngine(config.ray, config.qdrant)
    return LocalEngine()
