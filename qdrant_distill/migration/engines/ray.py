"""The Ray engine of the re-embed stage: the local engine's ranges, pages and records, encoded by Ray actors.

The source is split into contiguous id ranges (:func:`qdrant_distill.migration.engines.local.id_ranges`, one id-only scroll), which
the journal records before anything is written; a range is journalled once every point of it is written with
``wait=True``, so a driver killed and run again redoes only unfinished ranges. The student reaches the actors as files
(its folder: a path they can read, or the folder's bytes through the object store), loaded once per actor by
:func:`qdrant_distill.inference.encoders.load_encoder`. Actors are restarted, and their calls retried, by Ray.

Two paths, chosen by where the store lives:

- an embedded store (``--path``, ``:memory:``) opens in one process only: the driver scrolls each range and writes
  the results, and a ``ray.util.ActorPool`` of :class:`EncodeBatch` actors encodes the pages (a few in flight, so
  reading and writing overlap the encoding). Ray Data is not used here: it cannot stream from an iterator the driver
  owns without materialising it, and its read tasks could not open the store.
- a Qdrant server (``--url``): Ray Data. ``from_items(ranges)`` -> ``flat_map(ReadRange)`` (a task opens its own
  client and scrolls its range) -> ``map_batches(EncodeBatch, concurrency=workers, num_gpus=..., batch_size=...)`` ->
  ``map_batches(WriteRows)`` (upserts with ``wait=True``, returns per-range tallies the driver journals).

Both paths build records with :class:`qdrant_distill.migration.engines.local.PageConverter` (``prepare`` before encoding, ``complete``
after), the code the local engine runs. Importing this module does not import Ray; :func:`session` does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pickle
import queue
import socket
import tempfile
import threading
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from qdrant_distill.connectors.base import Connector, Page
from qdrant_distill.connectors.scroll import id_ranges, scroll_range
from qdrant_distill.connectors.settings import QdrantSettings
from qdrant_distill.errors import ConfigError, MigrationError
from qdrant_distill.folders import DistillFolder
from qdrant_distill.inference.encoders import SentenceTransformerEncoder, load_encoder
from qdrant_distill.inference.formats import Backend
from qdrant_distill.migration.config import RayConfig
from qdrant_distill.migration.engines.local import (
    PageConverter,
    PendingPage,
    ReembedJob,
    ReembedStats,
)
from qdrant_distill.migration.journal import IdRange, Journal
from qdrant_distill.redact import redact_text, redact_url

__all__ = ["EncodeBatch", "encoded_elsewhere", "probe_address", "require_ray", "reembed_ranges", "session"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'qdrant-distill[ray]'"
ADDRESS_HINT = ("check --ray-address (host:6379 for a cluster's GCS, ray://host:10001 for Ray Client), or leave it "
                "out to run Ray on this machine")
GCS_PORT, CLIENT_PORT = 6379, 10001  # Ray's default ports
PAGES_IN_FLIGHT_PER_WORKER = 2  # one encoding, one waiting: the driver reads and writes meanwhile
# environment the actors need to load models offline, passed to a cluster's workers when set here
WORKER_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HOME")
TEXT, ENCODE, VECTOR, POINT, RANGE, COUNT, WRITTEN, PROJECTED, SKIPPED = (
    "text", "encode", "vector", "point", "range", "count", "written", "projected", "skipped")


def require_ray() -> None:
    """Refuse the Ray engine, in one line, when Ray (with Ray Data) is not installed."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ConfigError("--engine ray needs Ray, which is not installed", hint=INSTALL_HINT)


def encoded_elsewhere(texts: list[str]) -> np.ndarray:
    """The converter's encoder on the Ray engine's driver and read tasks: texts are encoded by the actors."""
    raise MigrationError("the Ray engine encodes in its actors; this converter only prepares and completes pages")


# -- the cluster --------------------------------------------------------------------------------------------------


@contextmanager
def session(config: RayConfig) -> Iterator[None]:
    """Ray for the length of a migration: connect to ``config.address`` or start a local instance (quiet: no
    dashboard, no worker logs on this terminal), check it has the CPUs and GPUs asked for, and shut down what was
    started here. A Ray already initialised by the caller is used as it is."""
    require_ray()
    import ray

    started = not ray.is_initialized()
    if started:
        _init(ray, config)
    try:
        _check_resources(ray, config)
        yield
    finally:
        if started:
            ray.shutdown()


def _init(ray: Any, config: RayConfig) -> None:
    env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
    quiet: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                                 runtime_env={"env_vars": env} if env else None)
    where = redact_url(config.address) if config.address else "a local instance"
    try:
        if config.address:
            probe_address(config)
            # ray.init retries a silent address for minutes: wait for it in a thread, at most init_timeout_s
            _within(config.init_timeout_s, lambda: ray.init(address=config.address, **quiet),
                    ConfigError(f"Ray did not connect to {where} within {config.init_timeout_s:g} s",
                                hint=f"{ADDRESS_HINT}; or raise ray.init_timeout_s"))
        else:  # a local instance: every core, and at least what the actors reserve (oversubscribed, never stuck)
            cpus = max(os.cpu_count() or 1, math.ceil(config.workers * config.cpus_per_worker))
            ray.init(num_cpus=cpus, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot start Ray ({where}): {type(exc).__name__}: {redact_text(str(exc).splitlines()[0][:200])}",
                          hint="check --ray-address, or leave it out to run on this machine") from exc
    logger.info("Ray: %s", "connected to " + redact_url(config.address) if config.address else "local instance")


def _within(timeout: float, call: Callable[[], Any], late: Exception) -> Any:
    """``call()`` in a daemon thread, waited for at most ``timeout`` seconds; ``late`` is raised when it is not
    back by then (the thread is left to finish or to die with the process)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread as it is
            box["error"] = exc

    thread = threading.Thread(target=run, name="qd-ray-wait", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise late
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _host_port(address: str) -> tuple[str, int] | None:
    """The host and port a Ray address connects to: ``host[:port]`` is the GCS (6379 by default), ``ray://host[:port]``
    Ray Client (10001); None for ``auto`` / ``local`` and other schemes, which Ray resolves itself."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    if scheme not in ("", "ray"):  # Ray reads host:port, ray://host:port, auto and local only
        raise ConfigError(f"--ray-address {redact_url(address)!r}: Ray does not read the scheme {scheme + '://'!r}",
                          hint=ADDRESS_HINT)
    if rest in ("auto", "local", ""):
        return None
    try:
        parts = urllib.parse.urlsplit("//" + rest.split("/", 1)[0])
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--ray-address {redact_url(address)!r}: {exc}", hint=ADDRESS_HINT) from None
    if not parts.hostname:
        raise ConfigError(f"--ray-address {redact_url(address)!r} names no host", hint=ADDRESS_HINT)
    return parts.hostname, port or (CLIENT_PORT if scheme == "ray" else GCS_PORT)


def probe_address(config: RayConfig) -> None:
    """A bounded TCP connect (``connect_timeout_s``) to the cluster address, before ``ray.init`` waits on it: an
    address nothing listens on is one :class:`ConfigError` in ``plan``."""
    target = _host_port(config.address) if config.address else None
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=config.connect_timeout_s):
            pass
    except OSError as exc:
        reason = f"no answer within {config.connect_timeout_s:g} s" if isinstance(exc, TimeoutError) else (
            f"{type(exc).__name__}: {exc.strerror or exc}")
        shown, named = redact_url(config.address or ""), f"{target[0]}:{target[1]}"
        where = shown if shown.endswith(named) else f"{shown} ({named})"
        raise ConfigError(f"no Ray cluster at {where}: {reason}", hint=ADDRESS_HINT) from None


def _check_resources(ray: Any, config: RayConfig) -> None:
    have = ray.cluster_resources()
    need = {"CPU": config.workers * config.cpus_per_worker, "GPU": config.workers * config.gpus_per_worker}
    for kind, amount in need.items():
        if amount > have.get(kind, 0.0) + 1e-9:
            raise ConfigError(f"the Ray cluster has {have.get(kind, 0.0):g} {kind}s, {config.workers} workers need "
                              f"{amount:g}", hint="lower --workers or --gpus-per-worker, or add nodes")


# -- the encoder actor ---------------------------------------------------------------------------------------------


class EncodeBatch:
    """Encodes a batch's ``text`` column (only the rows whose ``encode`` is true, when that column is there) into a
    ``vector`` column. A callable class: Ray Data's ``map_batches`` and the embedded path's actors build it once per
    actor, which loads the student from its folder. ``files`` (the folder's bytes, for a worker on another machine)
    are written to a temporary folder when ``student`` does not exist there."""

    def __init__(self, student: str, *, batch_size: int = 64, device: str = "cpu", threads: int | None = None,
                 files: dict[str, bytes] | None = None, backend: Backend | str = Backend.AUTO) -> None:
        self.encoder = load_encoder(_student_folder(student, files), device=device, batch_size=batch_size,
                                    backend=backend, threads=threads)
        if threads and isinstance(self.encoder, SentenceTransformerEncoder):
            import torch

            torch.set_num_threads(threads)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        texts = [str(t) for t in batch[TEXT]]
        rows = np.flatnonzero(np.asarray(batch[ENCODE], dtype=bool)) if ENCODE in batch else np.arange(len(texts))
        vectors = np.zeros((len(texts), self.encoder.dim), dtype=np.float32)
        if len(rows):
            vectors[rows] = self.encoder.encode([texts[i] for i in rows], kind="document")
        return {**batch, VECTOR: vectors}

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()


def student_files(folder: str | Path) -> dict[str, bytes]:
    """Every file of a student folder by relative path: how the student travels to a cluster's workers."""
    root = Path(folder)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _student_folder(student: str, files: dict[str, bytes] | None) -> str:
    if files is None or Path(student).exists():
        return student
    root = Path(tempfile.mkdtemp(prefix="qd-student-"))
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return str(root)


def _encoder_args(config: RayConfig, student: str, batch_size: int, backend: Backend) -> dict[str, Any]:
    inside = DistillFolder(Path(student)).student
    folder = inside if inside.is_dir() else Path(student)
    return {"student": str(folder), "batch_size": batch_size, "device": "cuda" if config.gpus_per_worker else "cpu",
            "threads": max(1, int(config.cpus_per_worker)),
            "files": student_files(folder) if config.address and folder.is_dir() else None,
            "backend": Backend(backend).value}


# -- the stage --------------------------------------------------------------------------------------------------------


def reembed_ranges(
    conn: Connector, settings: QdrantSettings, journal: Journal, *, source: str, target: str,
    converter: PageConverter, vectors: list[str] | bool, config: RayConfig, student: str, page_size: int,
    encode_batch_size: int, total: int, progress: bool = True, backend: Backend = Backend.AUTO,
) -> None:
    """Re-embed every range the journal does not record as written (splitting the source into ranges first)."""
    if not journal.ranges:
        journal.restart_reembed([IdRange(start=s, end=e) for s, e in id_ranges(conn, source, config.range_size)])
        journal.save()
        logger.info("split %s into %d id ranges of up to %d points", source, len(journal.ranges), config.range_size)
    todo = [i for i, r in enumerate(journal.ranges) if not r.done]
    if len(todo) < len(journal.ranges):
        logger.info("resuming: %d of %d ranges written, %d to go", len(journal.ranges) - len(todo),
                    len(journal.ranges), len(todo))
    shipped = dataclasses.replace(converter, encode=encoded_elsewhere if converter.encode else None)
    args = _encoder_args(config, student, encode_batch_size, backend)
    already = journal.points_written + len(journal.skipped_ids)
    with tqdm(total=total, initial=already, unit="pt", desc="re-embed (ray)", disable=not progress,
              dynamic_ncols=True) as bar:
        if settings.embedded:
            _on_driver(conn, journal, todo, source=source, target=target, converter=shipped, vectors=vectors,
                       page_size=page_size, config=config, encoder=args, bar=bar)
        else:
            _on_cluster(settings, journal, todo, source=source, target=target, converter=shipped, vectors=vectors,
                        page_size=page_size, config=config, encoder=args, bar=bar)
    if not journal.reembed_finished:
        raise MigrationError("the Ray engine ended with ranges not written", hint="rerun the same command to resume")


class RayEngine:
    """The re-embed engine of Ray actors (:class:`qdrant_distill.migration.engines.ReembedEngine`): id ranges, each written
    once and recorded in the journal; the student is loaded by the actors, never by the driver."""

    def __init__(self, config: RayConfig, settings: QdrantSettings) -> None:
        self.config = config
        self.settings = settings

    def session(self) -> Any:
        return session(self.config)

    def run(self, conn: Connector, job: ReembedJob, journal: Journal) -> None:
        reembed_ranges(conn, self.settings, journal, source=job.source, target=job.target, converter=job.converter,
                       vectors=job.vectors, config=self.config, student=job.student, backend=Backend(job.backend),
                       page_size=job.page_size, encode_batch_size=job.encode_batch_size, total=job.total,
                       progress=job.progress)


# -- embedded store: the driver reads and writes, actors encode ---------------------------------------------------


@dataclasses.dataclass
class _Flight:
    index: int
    stats: ReembedStats
    page: Page
    pending: PendingPage


def _on_driver(conn: Connector, journal: Journal, todo: list[int], *, source: str, target: str,
               converter: PageConverter, vectors: list[str] | bool, page_size: int, config: RayConfig,
               encoder: dict[str, Any], bar: Any) -> None:
    """Pages stream through an ActorPool in scroll order; each is written when its vectors are back, and a range is
    journalled after its last page."""
    import ray
    from ray.util import ActorPool

    actors = _actors(config, encoder, journal.run_id)
    pool = ActorPool(actors)
    flights: deque[_Flight] = deque()
    limit = PAGES_IN_FLIGHT_PER_WORKER * config.workers
    try:
        for index in todo:
            r, stats = journal.ranges[index], ReembedStats()
            for page in scroll_range(conn, source, r.start, r.end, page_size=page_size, vectors=vectors):
                pending = converter.prepare(page.points, stats)
                if pending.texts:
                    pool.submit(lambda actor, batch: actor.__call__.remote(batch), {TEXT: np.asarray(pending.texts)})
                flights.append(_Flight(index, stats, page, pending))
                while len(flights) >= limit:
                    _land(flights.popleft(), pool, conn, journal, target, converter, bar, config.wait_timeout_s)
        while flights:
            _land(flights.popleft(), pool, conn, journal, target, converter, bar, config.wait_timeout_s)
    finally:
        for actor in actors:
            ray.kill(actor)


def next_result(pool: Any, timeout: float) -> Any:
    """The pool's next result, waited for at most ``timeout`` seconds (one :class:`MigrationError` after that)."""
    try:
        return pool.get_next(timeout=timeout)
    except TimeoutError:
        raise _late(timeout, "a page's vectors") from None


def _late(timeout: float, what: str) -> MigrationError:
    return MigrationError(f"the Ray engine waited {timeout:g} s for {what} in vain; what is written is journalled",
                          hint="rerun the same command to resume; raise ray.wait_timeout_s for a slow encoder")


def _actors(config: RayConfig, encoder: dict[str, Any], run_id: str) -> list[Any]:
    import ray

    remote = ray.remote(EncodeBatch)
    files = ray.put(encoder["files"]) if encoder["files"] else None
    args = {**encoder, "files": files}
    # named (per run) so an operator, or a test, can find them: ray.get_actor(f"qd-encode-{run_id[:8]}-0")
    return [remote.options(name=f"qd-encode-{run_id[:8]}-{i}", num_cpus=config.cpus_per_worker,
                           num_gpus=config.gpus_per_worker, max_restarts=-1, max_task_retries=-1).remote(**args)
            for i in range(config.workers)]


def _land(flight: _Flight, pool: Any, conn: Connector, journal: Journal, target: str, converter: PageConverter,
          bar: Any, timeout: float) -> None:
    vectors = next_result(pool, timeout)[VECTOR] if flight.pending.texts else None
    points = converter.complete(flight.pending, vectors, flight.stats)
    conn.upsert(target, points, wait=True)
    flight.stats.written += len(points)
    bar.update(len(flight.page.points))
    if flight.page.next_offset is None:
        s = flight.stats
        journal.record_range(flight.index, written=s.written, projected=s.projected, skipped=s.skipped)


# -- a Qdrant server: Ray Data reads, encodes and writes ----------------------------------------------------------


class ReadRange:
    """Ray Data ``flat_map``: one range in, one row per point out (``point`` pickled, ``text`` to encode or not),
    then a marker row carrying the range's count, projected and skipped points. Opens its own client."""

    def __init__(self, settings: QdrantSettings | Connector, *, source: str, ranges: list[tuple[Any, Any]],
                 converter: PageConverter, vectors: list[str] | bool, page_size: int) -> None:
        self.conn = _connect(settings)
        self.source, self.ranges, self.converter = source, ranges, converter
        self.vectors, self.page_size = vectors, page_size

    def __call__(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        index = int(row[RANGE])
        start, end = self.ranges[index]
        stats, count = ReembedStats(), 0
        for page in scroll_range(self.conn, self.source, start, end, page_size=self.page_size, vectors=self.vectors):
            pending = self.converter.prepare(page.points, stats)
            count += len(page.points)
            for p in pending.ready:
                yield _row(index, "", False, pickle.dumps(p))
            for p, text in zip(pending.to_encode, pending.texts):
                yield _row(index, text, True, pickle.dumps(p))
        yield _row(index, "", False, b"", count=count, projected=stats.projected, skipped=stats.skipped)


def _connect(settings: QdrantSettings | Connector) -> Connector:
    """A worker's own client, from connection settings (the API key travels inside them, never in a log line); a
    connector given instead is used as it is (one process: tests, or a caller that runs the stages itself)."""
    if not isinstance(settings, QdrantSettings):
        return settings
    from qdrant_distill.connectors.qdrant import QdrantConnector

    return QdrantConnector.open(settings)


def _row(index: int, text: str, encode: bool, point: bytes, *, count: int = -1, projected: int = 0,
         skipped: list[Any] | None = None) -> dict[str, Any]:
    return {RANGE: index, TEXT: text, ENCODE: encode, POINT: point, COUNT: count, PROJECTED: projected,
            SKIPPED: pickle.dumps(list(skipped or []))}


class WriteRows:
    """Ray Data ``map_batches``: upserts a batch's points (``wait=True``) and returns, per range in the batch, the
    points written and, from a range's marker row, its count, projected and skipped points."""

    def __init__(self, settings: QdrantSettings | Connector, *, target: str, converter: PageConverter) -> None:
        self.conn = _connect(settings)
        self.target, self.converter = target, converter

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        marker = np.asarray(batch[COUNT]) >= 0
        encode = np.asarray(batch[ENCODE], dtype=bool)
        rows = np.flatnonzero(~marker)
        pending = PendingPage(
            texts=[str(batch[TEXT][i]) for i in rows if encode[i]],
            to_encode=[pickle.loads(batch[POINT][i]) for i in rows if encode[i]],
            ready=[pickle.loads(batch[POINT][i]) for i in rows if not encode[i]])
        vectors = np.asarray(batch[VECTOR])[[i for i in rows if encode[i]]]
        points = self.converter.complete(pending, vectors if pending.texts else None, ReembedStats())
        self.conn.upsert(self.target, points, wait=True)
        return _tallies(batch, rows, marker)


def _tallies(batch: dict[str, Any], rows: np.ndarray, marker: np.ndarray) -> dict[str, Any]:
    written = Counter(int(batch[RANGE][i]) for i in rows)
    ends = {int(batch[RANGE][i]): i for i in np.flatnonzero(marker)}
    keys = sorted({*written, *ends})
    return {RANGE: np.array(keys, dtype=np.int64), WRITTEN: np.array([written[k] for k in keys], dtype=np.int64),
            COUNT: np.array([int(batch[COUNT][ends[k]]) if k in ends else -1 for k in keys], dtype=np.int64),
            PROJECTED: np.array([int(batch[PROJECTED][ends[k]]) if k in ends else 0 for k in keys], dtype=np.int64),
            SKIPPED: np.array([batch[SKIPPED][ends[k]] if k in ends else pickle.dumps([]) for k in keys],
                              dtype=object)}


def _on_cluster(settings: QdrantSettings, journal: Journal, todo: list[int], *, source: str, target: str,
                converter: PageConverter, vectors: list[str] | bool, page_size: int, config: RayConfig,
                encoder: dict[str, Any], bar: Any) -> None:
    """Ray Data over the ranges; the driver only tallies what the write stage reports and journals whole ranges."""
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    ranges = [(r.start, r.end) for r in journal.ranges]
    ds = ray.data.from_items([{RANGE: i} for i in todo], override_num_blocks=max(1, len(todo)))
    ds = ds.flat_map(ReadRange, fn_constructor_kwargs=dict(settings=settings, source=source, ranges=ranges,
                                                         converter=converter, vectors=vectors, page_size=page_size),
                     concurrency=config.workers)
    ds = ds.map_batches(EncodeBatch, fn_constructor_kwargs=encoder, batch_size=encoder["batch_size"],
                        concurrency=config.workers, num_cpus=config.cpus_per_worker,
                        num_gpus=config.gpus_per_worker or None, batch_format="numpy")
    ds = ds.map_batches(WriteRows, fn_constructor_kwargs=dict(settings=settings, target=target, converter=converter),
                        batch_size=page_size, concurrency=config.workers, batch_format="numpy")
    _tally(_each_within(ds.iter_batches(batch_size=None, batch_format="numpy"), config.wait_timeout_s), journal, bar)


def _each_within(items: Iterator[Any], timeout: float) -> Iterator[Any]:
    """``items``, each waited for at most ``timeout`` seconds (a daemon thread pulls them)."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)

    def pull() -> None:
        try:
            for item in items:
                handoff.put(("item", item))
            handoff.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer as it is
            handoff.put(("error", exc))

    threading.Thread(target=pull, name="qd-ray-batches", daemon=True).start()
    while True:
        try:
            kind, value = handoff.get(timeout=timeout)
        except queue.Empty:
            raise _late(timeout, "the next batch of written points") from None
        if kind == "end":
            return
        if kind == "error":
            raise value
        yield value


def _tally(batches: Iterator[dict[str, Any]], journal: Journal, bar: Any) -> None:
    written: Counter[int] = Counter()
    ends: dict[int, tuple[int, int, list[Any]]] = {}
    for batch in batches:
        for k, n, count, projected, skipped in zip(batch[RANGE], batch[WRITTEN], batch[COUNT], batch[PROJECTED],
                                                   batch[SKIPPED]):
            k = int(k)
            written[k] += int(n)
            bar.update(int(n))
            if count >= 0:
                ends[k] = (int(count), int(projected), pickle.loads(skipped))
                bar.update(len(ends[k][2]))
            # a batch Ray retried after a worker died is counted twice: upserts are idempotent, the tally is capped
            if k in ends and not journal.ranges[k].done and written[k] + len(ends[k][2]) >= ends[k][0]:
                count, projected, skipped = ends[k]
                journal.record_range(k, written=count - len(skipped), projected=projected, skipped=skipped)
