"""Qdrant Edge: a distilled collection on a device with no server.

The one seam for ``qdrant_edge`` (qdrant-edge-py, the Qdrant engine in-process; imported on first use, never at
import time), the manifest of an Edge folder (:class:`EdgeManifest`, ``edge.json``), and the loader :func:`open`: the
folder's shard and its exported student answer text queries in this process, with no server and no torch::

    from qdrant_distill import edge

    with edge.open("./edge") as index:
        for hit in index.search("a large natural stream of water", limit=10):
            print(hit.score, hit.payload["text"])

The folder's layout is :class:`qdrant_distill.folders.EdgeFolder`; :func:`qdrant_distill.edge.export.export_edge`
writes it. The shard is created without a write-ahead log (the export flushes after every page), so several
processes may read one folder at once; ``.lock`` keeps an export from writing into a folder that is open
(readers share it, a writer holds it alone; POSIX only).
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydantic import BaseModel

from qdrant_distill.connectors.base import UNNAMED, Point, PointId
from qdrant_distill.errors import BrokenEdgeFolder, ConfigError
from qdrant_distill.folders import EdgeFolder
from qdrant_distill.inference.encoders import Encoder, load_encoder
from qdrant_distill.inference.formats import Backend

__all__ = ["EDGE_PACKAGE", "EdgeHit", "EdgeIndex", "EdgeManifest", "EdgeShard", "FolderLock", "check_shard",
           "folder_size", "open", "read_edge_manifest"]

EDGE_PACKAGE = "qdrant-edge-py==0.9.0"  # what the [edge] extra pins: the bindings are young and their API drifts
_INSTALL_HINT = "pip install 'qdrant-distill[edge]'"
PROBES = 2  # exact searches open() runs to check the stored vectors (a random unit vector and its opposite)
SCORE_SLACK = 1e-3  # a cosine (or the dot of unit vectors) is within [-1, 1] up to this rounding


class EdgeManifest(BaseModel):
    """``edge.json``: what an Edge folder holds, where it came from, and how far its export got."""

    version: int = 1
    source_collection: str  # the migrated (target) collection the points were copied from
    source_alias: str | None = None
    run_id: str
    run_dir: str | None = None
    teacher: str
    student: str  # what the student was exported from
    backend: Backend  # the format in student/ (the one the run's collection answers queries with)
    dim: int
    vector_name: str = UNNAMED  # the student vector's name, as in the source collection
    distance: str = "Cosine"
    hnsw: bool = False  # the shard was indexed with HNSW at any size (else: Qdrant's indexing threshold)
    expected: int = 0  # points in the source collection when the export began
    points: int = 0  # points written so far
    checkpoint: PointId | None = None  # scroll offset of the next page to copy (None: from the start)
    copied: bool = False  # every page is written (the shard is optimized next)
    started_at: float
    finished_at: float | None = None
    qdrant_distill: str = ""
    qdrant_edge: str = EDGE_PACKAGE

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def save(self, folder: EdgeFolder) -> None:
        """Write atomically (a temporary file in the folder, then a rename)."""
        tmp = folder.manifest_tmp
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=2), encoding="utf-8")
        tmp.replace(folder.manifest)


def read_edge_manifest(folder: str | Path | EdgeFolder) -> EdgeManifest | None:
    """The manifest of an Edge folder, or None when ``folder`` is not one."""
    edge = folder if isinstance(folder, EdgeFolder) else EdgeFolder(Path(folder).expanduser())
    if not edge.is_edge():
        return None
    try:
        return EdgeManifest.model_validate_json(edge.manifest.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{edge.manifest} is not a qdrant-distill Edge manifest: {exc}") from exc


# -- the folder lock ------------------------------------------------------------------------------------------------
class FolderLock:
    """An advisory lock on an Edge folder's ``.lock``: shared for readers, exclusive for an export. A folder locked
    the other way is one :class:`ConfigError`. Where ``fcntl`` is missing (Windows) it locks nothing."""

    def __init__(self, folder: EdgeFolder, *, exclusive: bool) -> None:
        self.folder, self.exclusive = folder, exclusive
        self._file: IO[str] | None = None

    def acquire(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        try:
            handle = builtins.open(self.folder.lock, "a+", encoding="utf-8")
        except OSError as exc:  # a read-only folder: nothing can write it, so a reader needs no lock
            if not self.exclusive:
                return self
            raise ConfigError(f"cannot write the Edge folder {self.folder.root}: {exc.strerror or exc}",
                              hint="choose another --out") from None
        try:
            fcntl.flock(handle, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            doing = "an export is writing it" if not self.exclusive else "it is open (an application or an export)"
            raise ConfigError(f"the Edge folder {self.folder.root} is in use: {doing}",
                              hint="close what has it open, or wait for the export, then retry") from None
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None


# -- the shard (the one place qdrant_edge is imported) --------------------------------------------------------------
def _edge() -> Any:
    try:
        import qdrant_edge
    except ImportError:
        raise ConfigError("Qdrant Edge needs qdrant-edge-py, which is not installed", hint=_INSTALL_HINT) from None
    return qdrant_edge


@dataclass(frozen=True)
class EdgeHit:
    """One answer: the point's id (as Qdrant's client gives it: an int, or a UUID string), score and payload."""

    id: PointId
    score: float
    payload: dict[str, Any]


def _point_id(raw: Any) -> PointId:
    return str(raw) if isinstance(raw, uuid.UUID) else raw


class EdgeShard:
    """One Qdrant Edge shard holding one dense vector (``vector_name``) and payloads."""

    def __init__(self, raw: Any, path: Path, vector_name: str) -> None:
        self.raw, self.path, self.vector_name = raw, path, vector_name

    @classmethod
    def create(cls, path: Path, *, vector_name: str, dim: int, distance: str = "Cosine",
               hnsw: bool = False) -> EdgeShard:
        """A new shard without a write-ahead log (the writer flushes; readers may share the folder). ``hnsw``
        indexes it with HNSW whatever its size (Qdrant's default: only above its indexing threshold, 10 MB)."""
        q = _edge()
        try:
            metric = getattr(q.Distance, distance)
        except AttributeError:
            raise ConfigError(f"Qdrant Edge has no distance {distance!r}") from None
        options: dict[str, Any] = {}
        if hnsw:
            options = {"optimizers": q.EdgeOptimizersConfig(indexing_threshold=1),
                       "hnsw_config": q.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1)}
        config = q.EdgeConfig(vectors={vector_name: q.EdgeVectorParams(size=dim, distance=metric)}, wal_enabled=False,
                              **options)
        return cls(cls._call("create", q.EdgeShard.create, path, config), path, vector_name)

    @classmethod
    def load(cls, path: Path, vector_name: str) -> EdgeShard:
        q = _edge()
        return cls(cls._call("open", q.EdgeShard.load, path), path, vector_name)

    @staticmethod
    def _call(verb: str, fn: Any, path: Path, *args: Any) -> Any:
        try:
            return fn(str(path), *args)
        except Exception as exc:  # the bindings raise plain Exceptions
            busy = "WouldBlock" in str(exc)
            error = BrokenEdgeFolder if verb == "open" and not busy else ConfigError  # a damaged shard: typed
            raise error(f"cannot {verb} the Edge shard {path}: {'it is in use' if busy else exc}",
                              hint="close what has it open, then retry" if busy else
                              f"is it a shard written by {EDGE_PACKAGE}?") from None

    def upsert(self, points: Sequence[Point]) -> None:
        """Write points (their ``vector_name`` vector and payload); idempotent by id."""
        if not points:
            return
        q = _edge()
        rows = [q.Point(id=p.id, vector={self.vector_name: [float(x) for x in p.vectors[self.vector_name]]},
                        payload=p.payload or None) for p in points]
        self.raw.update(q.UpdateOperation.upsert_points(rows))

    def flush(self) -> None:
        self.raw.flush()

    def optimize(self) -> bool:
        """Run the optimizers (merge segments, build HNSW where configured) until done."""
        return bool(self.raw.optimize())

    def count(self) -> int:
        return int(self._read("count", lambda: self.raw.count(_edge().CountRequest())))

    def search(self, vector: Sequence[float], *, limit: int = 10, exact: bool = False,
               with_payload: bool = True) -> list[EdgeHit]:
        q = _edge()
        request = q.QueryRequest(limit=limit, query=q.Query.Nearest([float(x) for x in vector], using=self.vector_name),
                                 with_payload=with_payload, params=q.SearchParams(exact=exact))
        points = self._read("search", lambda: self.raw.query(request))
        return [EdgeHit(_point_id(p.id), float(p.score), dict(p.payload or {})) for p in points]

    def vectors(self) -> dict[str, int]:
        """The dense vectors the shard was created with, by name, and their sizes (its ``edge_config.json``)."""
        config = self.path / "edge_config.json"
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            return {str(name): int(params["size"]) for name, params in data["vectors"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BrokenEdgeFolder(f"cannot read the Edge shard's configuration {config}: {type(exc).__name__}",
                                   folder=str(self.path.parent)) from None

    def _read(self, verb: str, call: Any) -> Any:
        """A read of the shard; the bindings' plain Exceptions (a wrong vector name, a damaged file) typed."""
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the bindings raise plain Exceptions
            raise BrokenEdgeFolder(f"the Edge shard {self.path} cannot {verb}: {exc}",
                                   folder=str(self.path.parent)) from None

    def close(self) -> None:
        self.raw.close()


# -- the loader -----------------------------------------------------------------------------------------------------
class EdgeIndex:
    """An open Edge folder: its student encodes the query, its shard answers it."""

    def __init__(self, folder: EdgeFolder, manifest: EdgeManifest, encoder: Encoder, shard: EdgeShard,
                 lock: FolderLock) -> None:
        self.folder, self.manifest, self.encoder, self.shard, self._lock = folder, manifest, encoder, shard, lock

    def encode(self, texts: str | Sequence[str]) -> np.ndarray:
        """Query vectors of ``texts`` (one row per text)."""
        return self.encoder.encode(texts, kind="query")

    def search(self, text: str, *, limit: int = 10, exact: bool = False, with_payload: bool = True) -> list[EdgeHit]:
        """The ``limit`` nearest points to the text ``text``. ``exact`` scans every vector (the answer Qdrant's
        exact search gives); else the shard's index answers (HNSW when it has one: approximate)."""
        return self.search_vector(self.encode(text)[0], limit=limit, exact=exact, with_payload=with_payload)

    def search_vector(self, vector: Sequence[float], *, limit: int = 10, exact: bool = False,
                      with_payload: bool = True) -> list[EdgeHit]:
        return self.shard.search(vector, limit=limit, exact=exact, with_payload=with_payload)

    def count(self) -> int:
        return self.shard.count()

    def describe(self) -> str:
        m = self.manifest
        return f"Edge folder {self.folder.root}: {m.points} points of {m.source_collection} ({m.dim}-d), " \
               f"{self.encoder.describe()}"

    def close(self) -> None:
        self.shard.close()
        self._lock.release()

    def __enter__(self) -> EdgeIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(folder: str | Path, *, threads: int | None = None) -> EdgeIndex:  # noqa: A001 - edge.open(FOLDER)
    """Open an Edge folder written by ``qdrant-distill export-edge`` for queries (no server, no torch).
    ``threads`` caps an ONNX student's onnxruntime threads."""
    edge = EdgeFolder(Path(folder).expanduser())
    manifest = _finished_manifest(edge)
    _edge()  # say what is missing before anything is locked
    with _locked(edge, exclusive=False) as lock:
        encoder = load_encoder(edge.student.root, backend=manifest.backend, threads=threads)
        if encoder.dim != manifest.dim:
            raise BrokenEdgeFolder(f"the student in {edge.student.root} encodes {encoder.dim}-d vectors, "
                                   f"{EdgeFolder.MANIFEST} says {manifest.dim}", hint=_rewrite(edge, manifest),
                                   folder=str(edge.root))
        if not edge.shard.is_dir():
            raise BrokenEdgeFolder(f"the Edge folder {edge.root} has no shard", hint=_rewrite(edge, manifest),
                                   folder=str(edge.root))
        shard = EdgeShard.load(edge.shard, manifest.vector_name)
        try:
            check_shard(edge, manifest, shard)
        except BaseException:
            shard.close()
            raise
        return EdgeIndex(edge, manifest, encoder, shard, lock)


def check_shard(edge: EdgeFolder, manifest: EdgeManifest, shard: EdgeShard) -> None:
    """The shard holds what ``edge.json`` says: its vector name and dimension, its number of points, and vectors
    whose scores a cosine can reach (two exact probe searches); else one :class:`BrokenEdgeFolder`."""
    hint, where = _rewrite(edge, manifest), str(edge.root)
    vectors = shard.vectors()
    if manifest.vector_name not in vectors:
        raise BrokenEdgeFolder(f"the Edge shard in {edge.root} has no vector {manifest.vector_name!r} (it has "
                               f"{', '.join(map(repr, vectors)) or 'none'})", hint=hint, folder=where)
    if vectors[manifest.vector_name] != manifest.dim:
        raise BrokenEdgeFolder(f"the Edge shard in {edge.root} holds {vectors[manifest.vector_name]}-d vectors, "
                               f"{EdgeFolder.MANIFEST} says {manifest.dim}", hint=hint, folder=where)
    count = shard.count()
    if count != manifest.points:
        raise BrokenEdgeFolder(f"the Edge shard in {edge.root} holds {count} points, {EdgeFolder.MANIFEST} says "
                               f"{manifest.points}", hint=hint, folder=where)
    probe = np.random.default_rng(0).standard_normal(manifest.dim)
    probe /= np.linalg.norm(probe)
    scores = [hit.score for q in (probe, -probe) for hit in shard.search(q, limit=10, exact=True, with_payload=False)]
    worst = max((abs(s) if np.isfinite(s) else np.inf for s in scores), default=0.0)
    if manifest.distance in ("Cosine", "Dot") and worst > 1 + SCORE_SLACK:
        raise BrokenEdgeFolder(f"the Edge shard in {edge.root} holds damaged vectors (a probe scored {worst:.3g}; "
                               "a cosine is at most 1)", hint=hint, folder=where)


def _rewrite(edge: EdgeFolder, manifest: EdgeManifest) -> str:
    source = manifest.run_dir or manifest.source_alias or manifest.source_collection
    return f"write it again: qdrant-distill export-edge {source} --out {edge.root} --overwrite"


def _finished_manifest(edge: EdgeFolder) -> EdgeManifest:
    manifest = read_edge_manifest(edge)
    if manifest is None:
        raise ConfigError(f"{edge.root} is not an Edge folder (it has no {EdgeFolder.MANIFEST})",
                          hint="write one: qdrant-distill export-edge RUN_DIR --out FOLDER")
    if not manifest.finished:
        raise ConfigError(f"the export into {edge.root} did not finish ({manifest.points} of {manifest.expected} "
                          "points written)", hint="rerun the same export-edge command: it resumes")
    return manifest


@contextmanager
def _locked(edge: EdgeFolder, *, exclusive: bool) -> Iterator[FolderLock]:
    """The folder's lock, released again when the block fails (kept when it returns)."""
    lock = FolderLock(edge, exclusive=exclusive).acquire()
    try:
        yield lock
    except BaseException:
        lock.release()
        raise


def folder_size(root: Path, *, apparent: bool = False) -> int:
    """Bytes the files under ``root`` take on disk (a shard's storage files are sparse: 32 MiB each, mostly holes),
    or with ``apparent`` their sizes (what a copy that does not keep holes writes)."""
    files = [f.stat() for f in Path(root).rglob("*") if f.is_file()]
    return sum(st.st_size if apparent or not hasattr(st, "st_blocks") else st.st_blocks * 512 for st in files)
