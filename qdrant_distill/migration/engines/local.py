"""Re-embedding: stream the source collection into the target at the new dimension, in bounded memory.

A reader thread scrolls pages ahead (at most ``prefetch_pages`` waiting), the calling thread turns each page into new
vectors, a writer thread upserts them in order and reports a checkpoint (the next scroll offset) after each page is
written. Upserts are idempotent by id, so resuming from the last checkpoint never duplicates or loses a point.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from qdrant_distill.connectors.base import Connector, Point, PointId, TextSource
from qdrant_distill.errors import MigrationError, NoTextPayload
from qdrant_distill.migration.config import MissingTextPolicy
from qdrant_distill.migration.journal import Counts, Journal

__all__ = ["LocalEngine", "PageConverter", "PendingPage", "ReembedJob", "ReembedStats", "reembed"]

logger = logging.getLogger(__name__)

_DONE = object()
QUEUE_POLL_S = 0.2

Encode = Callable[[list[str]], np.ndarray]
Project = Callable[[np.ndarray], np.ndarray]


@dataclass
class ReembedStats:
    """What one re-embed call did."""

    pages: int = 0
    written: int = 0
    encoded: int = 0
    projected: int = 0
    skipped: list[PointId] = field(default_factory=list)
    seconds: float = 0.0
    encode_seconds: float = 0.0

    @property
    def points_per_s(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0


@dataclass
class PendingPage:
    """A page between reading and writing: texts to encode, their points, and the points converted already."""

    texts: list[str]
    to_encode: list[Point]
    ready: list[Point]


@dataclass
class PageConverter:
    """Turns source points into target points: the teacher vector replaced, payload and other vectors kept.

    ``encode`` maps texts to new vectors (re-embed); ``project`` maps stored teacher vectors (project mode, and the
    ``project`` missing-text policy). With ``encode`` None, every point is projected.
    """

    vector_name: str
    text: TextSource
    encode: Encode | None
    project: Project | None = None
    missing_text: MissingTextPolicy = MissingTextPolicy.FAIL

    @property
    def needs_teacher_vector(self) -> bool:
        return self.encode is None or self.missing_text is MissingTextPolicy.PROJECT

    def convert(self, points: Sequence[Point], stats: ReembedStats) -> list[Point]:
        pending = self.prepare(points, stats)
        vectors = None
        if pending.texts:
            assert self.encode is not None  # prepare() only asks for texts when there is an encoder
            started = time.perf_counter()
            vectors = np.asarray(self.encode(pending.texts), dtype=np.float32)
            stats.encode_seconds += time.perf_counter() - started
        return self.complete(pending, vectors, stats)

    def prepare(self, points: Sequence[Point], stats: ReembedStats) -> PendingPage:
        """The first half of :meth:`convert`: the texts to encode, and the points that need no encoder (projected,
        or skipped by the missing-text policy) converted already. An engine encodes ``texts`` where it likes."""
        if self.encode is None:
            return PendingPage(texts=[], to_encode=[], ready=self._projected(points, stats))
        texts: list[str] = []
        with_text: list[Point] = []
        without: list[Point] = []
        for p in points:
            t = self.text.render(p.payload)
            (with_text if t is not None else without).append(p)
            if t is not None:
                texts.append(t)
        ready = self._missing(without, stats) if without else []
        return PendingPage(texts=texts, to_encode=with_text, ready=ready)

    def complete(self, pending: PendingPage, vectors: np.ndarray | None, stats: ReembedStats) -> list[Point]:
        """The second half of :meth:`convert`: the target points, given the vectors of ``pending.texts``."""
        if not pending.texts:
            return pending.ready
        assert vectors is not None and len(vectors) == len(pending.texts)
        stats.encoded += len(pending.texts)
        return pending.ready + [self._with_vector(p, v) for p, v in zip(pending.to_encode, vectors)]

    def _missing(self, points: list[Point], stats: ReembedStats) -> list[Point]:
        ids = [p.id for p in points]
        if self.missing_text is MissingTextPolicy.FAIL:
            raise NoTextPayload(
                f"{len(ids)} points have no text under {self.text.describe()} (e.g. ids {ids[:5]})",
                hint="set missing_text to 'skip' or 'project', or fix the payloads",
                ids=ids,
            )
        if self.missing_text is MissingTextPolicy.SKIP:
            stats.skipped += ids
            logger.info("skipped %d points without text (e.g. %s)", len(ids), ids[:5])
            return []
        return self._projected(points, stats)

    def _projected(self, points: Sequence[Point], stats: ReembedStats) -> list[Point]:
        if self.project is None:
            raise MigrationError("projecting stored vectors needs the fitted projection")
        rows = []
        for p in points:
            vec = p.vectors.get(self.vector_name)
            if vec is None:
                raise MigrationError(f"point {p.id!r} has no stored vector {self.vector_name or '(unnamed)'!r} to project")
            rows.append(vec)
        vectors = self.project(np.asarray(rows, dtype=np.float32)) if rows else np.zeros((0, 0), np.float32)
        stats.projected += len(rows)
        return [self._with_vector(p, v) for p, v in zip(points, vectors)]

    def _with_vector(self, p: Point, vector: np.ndarray) -> Point:
        others = {k: v for k, v in p.vectors.items() if k != self.vector_name}
        return Point(id=p.id, payload=p.payload, vectors={**others, self.vector_name: vector.tolist()})


class _Pipeline:
    """Three stages over two bounded queues: a reader thread scrolls pages, the caller's thread converts them
    (encodes or projects), a writer thread upserts them with ``wait=True`` and checkpoints in scroll order. The first
    error in any stage stops all three and is raised by :meth:`run`."""

    def __init__(self, connector: Connector, target: str, prefetch_pages: int, bar: Any,
                 on_checkpoint: Callable[[PointId | None, ReembedStats], None] | None) -> None:
        self.connector, self.target, self.bar, self.on_checkpoint = connector, target, bar, on_checkpoint
        self.stats = ReembedStats()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.pages: queue.Queue[Any] = queue.Queue(maxsize=prefetch_pages)
        self.writes: queue.Queue[Any] = queue.Queue(maxsize=2)

    def put(self, q: queue.Queue[Any], item: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=QUEUE_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.stop.set()

    def read(self, pages: Iterator[Any]) -> None:
        try:
            for page in pages:
                if not self.put(self.pages, page):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.fail(exc)
        finally:
            self.put(self.pages, _DONE)

    def write(self) -> None:
        try:
            while (item := self.writes.get()) is not _DONE:
                points, next_offset, n_source = item
                self.connector.upsert(self.target, points, wait=True)
                self.stats.pages += 1
                self.stats.written += len(points)
                if self.on_checkpoint is not None:
                    self.on_checkpoint(next_offset, self.stats)
                self.bar.update(n_source)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.fail(exc)

    def convert(self, converter: PageConverter) -> None:
        while not self.stop.is_set():
            try:
                page = self.pages.get(timeout=QUEUE_POLL_S)
            except queue.Empty:
                continue
            if page is _DONE:
                return
            converted = converter.convert(page.points, self.stats)
            if not self.put(self.writes, (converted, page.next_offset, len(page.points))):
                return

    def finish(self, writer: threading.Thread, reader: threading.Thread) -> None:
        while True:  # let the writer finish what is queued (unless it failed), then stop it
            try:
                self.writes.put(_DONE, timeout=QUEUE_POLL_S)
                break
            except queue.Full:
                if not writer.is_alive():
                    break
        writer.join()
        self.stop.set()
        reader.join(timeout=5)

    def run(self, pages: Iterator[Any], converter: PageConverter) -> ReembedStats:
        reader = threading.Thread(target=self.read, args=(pages,), name="qd-reader", daemon=True)
        writer = threading.Thread(target=self.write, name="qd-writer", daemon=True)
        reader.start()
        writer.start()
        try:
            self.convert(converter)
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.finish(writer, reader)
        if self.errors:
            raise self.errors[0]
        return self.stats


def reembed(
    connector: Connector,
    *,
    source: str,
    target: str,
    converter: PageConverter,
    vectors: list[str] | bool,
    page_size: int = 256,
    prefetch_pages: int = 2,
    offset: PointId | None = None,
    total: int | None = None,
    already: int = 0,
    on_checkpoint: Callable[[PointId | None, ReembedStats], None] | None = None,
    progress: bool = True,
) -> ReembedStats:
    """Copy ``source`` into ``target`` from scroll ``offset`` with new vectors; returns what it did.

    ``on_checkpoint(next_offset, stats)`` runs after each page is durably written (``wait=True``), in scroll order;
    ``next_offset`` None means the last page is written.
    """
    started = time.perf_counter()
    pages = connector.scroll(source, page_size=page_size, with_payload=True, with_vectors=vectors, offset=offset)
    bar = tqdm(total=total, initial=already, unit="pt", desc="re-embed", disable=not progress, dynamic_ncols=True)
    try:
        stats = _Pipeline(connector, target, prefetch_pages, bar, on_checkpoint).run(pages, converter)
    finally:
        bar.close()
    stats.seconds = time.perf_counter() - started
    logger.info(
        "re-embedded %d points in %.1fs (%.0f points/s; %d encoded, %d projected, %d skipped)",
        stats.written, stats.seconds, stats.points_per_s, stats.encoded, stats.projected, len(stats.skipped),
    )
    return stats


@dataclass(frozen=True)
class ReembedJob:
    """One re-embed, whatever engine runs it: copy ``source`` into ``target`` (``total`` points), turning each page
    into points with ``converter`` and reading ``vectors`` with it; ``student`` on ``backend`` is what encodes (an
    engine that encodes elsewhere loads it there)."""

    source: str
    target: str
    converter: PageConverter
    vectors: list[str] | bool
    student: str
    backend: str
    total: int
    page_size: int = 256
    prefetch_pages: int = 2
    encode_batch_size: int = 64
    progress: bool = True


class LocalEngine:
    """Threads in this process; the journal's checkpoint is the scroll offset of the next page to write."""

    def session(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def run(self, conn: Connector, job: ReembedJob, journal: Journal) -> None:
        if journal.checkpoint is None:  # nothing durable yet: start over (upserts are idempotent)
            journal.restart_reembed()
        since = journal.counts()

        def checkpoint(next_offset: Any, stats: ReembedStats) -> None:
            journal.record_offset(next_offset, Counts(stats.written, stats.projected, list(stats.skipped)), since)

        if journal.checkpoint is not None:
            logger.info("resuming the re-embed at offset %r (%d points written)", journal.checkpoint, since.written)
        reembed(conn, source=job.source, target=job.target, converter=job.converter, vectors=job.vectors,
                page_size=job.page_size, prefetch_pages=job.prefetch_pages, offset=journal.checkpoint,
                total=job.total, already=since.written + len(since.skipped), on_checkpoint=checkpoint,
                progress=job.progress)
