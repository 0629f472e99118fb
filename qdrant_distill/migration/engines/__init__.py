"""What runs the re-embed stage: one small protocol, two engines, chosen once per migration.

- :class:`~.local.LocalEngine`: threads in this process (:func:`.local.reembed`), resumable from the scroll
  offset the journal records after each written page;
- :class:`~qdrant_distill.migration.engines.ray.RayEngine`: Ray actors over id ranges, resumable per range.

Both take a :class:`~qdrant_distill.migration.engines.local.ReembedJob` and the run's journal, and show the same progress bar
(points written of the collection's total, resumed work counted in).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from qdrant_distill.connectors.base import Connector
from qdrant_distill.migration.config import Engine, MigrationConfig
from qdrant_distill.migration.engines.local import LocalEngine, ReembedJob
from qdrant_distill.migration.engines.ray import RayEngine
from qdrant_distill.migration.journal import Journal

__all__ = ["LocalEngine", "ReembedEngine", "engine_for"]

class ReembedEngine(Protocol):
    """An engine: a session around the stage (started before any training, so a bad cluster fails early), and the
    stage itself."""

    def session(self) -> AbstractContextManager[Any]: ...

    def run(self, conn: Connector, job: ReembedJob, journal: Journal) -> None: ...


def engine_for(config: MigrationConfig) -> ReembedEngine:
    """The engine a migration's configuration asks for."""
    if config.engine is Engine.RAY:
        return RayEngine(config.ray, config.qdrant)
    return LocalEngine()
