"""``qdrant-distill export-edge``: put a finished migration's collection on a device with no server.

One folder (:class:`~qdrant_distill.folders.EdgeFolder`) gets a Qdrant Edge shard holding every point of the
migrated collection (its student vector, under the name it has there, and its payload; no other vector), the
student's export in the format the collection answers queries with (int8 or fp32 ONNX, or the static token table),
and ``edge.json`` (:class:`~qdrant_distill.edge.shard.EdgeManifest`). :func:`qdrant_distill.edge.shard.open` answers queries
from it. The recipe:

resolve the run (run folder, or the alias / collection it made) -> check it finished -> find its export -> claim the
folder (lock; refuse a non-empty one unless told) -> copy the student -> stream the points page by page (the scroll
offset is checkpointed in ``edge.json`` after each flushed page: a rerun resumes) -> optimize -> mark it finished.

Memory is bounded by one page: the points are copied, never encoded again.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from qdrant_distill._version import __version__
from qdrant_distill.connectors.base import CollectionInfo, Connector, VectorSpec
from qdrant_distill.connectors.scroll import read_vectors
from qdrant_distill.edge.shard import (
    EdgeManifest,
    EdgeShard,
    FolderLock,
    read_edge_manifest,
)
from qdrant_distill.errors import (
    CollectionNotFound,
    ConfigError,
    MigrationError,
    StudentError,
)
from qdrant_distill.folders import EdgeFolder, ExportFolder, RunFolder
from qdrant_distill.inference.formats import Backend, read_manifest
from qdrant_distill.migration import record
from qdrant_distill.migration.checks import check_folder
from qdrant_distill.migration.journal import Journal, Stage
from qdrant_distill.migration.operate import open_journal

__all__ = ["export_edge"]

logger = logging.getLogger(__name__)

PROJECTION_ONLY = "projection-only"


@dataclass(frozen=True)
class _Run:
    """A finished migration as the export needs it: its journal, its collection and that collection's record."""

    journal: Journal
    collection: str
    alias: str | None
    vector: VectorSpec
    record: dict[str, Any]


def export_edge(source: str | Path, out: str | Path, *, connector: Connector, overwrite: bool = False,
                page_size: int = 256, hnsw: bool = False, progress: bool = True) -> EdgeManifest:
    """Write the Edge folder ``out`` from ``source``: a migration's run folder, or the alias (or collection) it
    made. A rerun after a kill resumes; a folder holding anything else, or another export, is refused unless
    ``overwrite`` (which replaces only what an export writes: ``edge.json``, ``shard/``, ``student/``). ``hnsw``
    builds an HNSW index whatever the size (else Qdrant's rule: only above its indexing threshold)."""
    check_folder(Path(out).expanduser(), "the Edge folder", "--out")  # before anything is read or made
    run = _resolve(connector, source)
    student, backend = _student_export(run)
    edge = EdgeFolder(Path(out).expanduser())
    lock = _claim(edge)
    try:
        manifest = _resumable(edge, run, hnsw) if not overwrite else None
        if manifest is None:
            manifest = _start(edge, run, student, backend, hnsw, total=connector.count(run.collection))
        else:
            logger.info("export-edge: resuming %s at %d of %d points", edge.root, manifest.points, manifest.expected)
        _copy_student(student, backend, edge)
        _copy_points(connector, run, edge, manifest, page_size=page_size, progress=progress)
    finally:
        lock.release()
    return manifest


# -- the run ----------------------------------------------------------------------------------------------------------
def _resolve(connector: Connector, source: str | Path) -> _Run:
    """The run behind ``source``: a run folder's journal and target, or the collection an alias (or name) points to
    and the journal its record names."""
    path = Path(source).expanduser()
    if RunFolder(path).is_run():
        journal = open_journal(path)
        _finished(journal)
        info = connector.describe(journal.target)
    else:
        info = _describe(connector, str(source), path)
        journal = _journal_of(info.name, record.read(info.metadata))
        _finished(journal)
    rec = record.read(info.metadata)
    if not rec or rec.get("run_id") != journal.run_id:
        raise MigrationError(f"collection {info.name!r} is not the one the run in {journal.run_dir} made",
                             hint="pass the run folder of the migration that made it")
    if rec.get("mode") == PROJECTION_ONLY:
        raise ConfigError(f"{info.name!r} answers queries with the teacher and a PCA (projection-only mode): there "
                          "is no student to put on a device", hint="migrate in reembed or project mode")
    alias = info.requested if info.requested != info.name else journal.alias
    return _Run(journal, info.name, alias, info.vector(rec.get("vector_name", "")), rec)


def _describe(connector: Connector, name: str, path: Path) -> CollectionInfo:
    """The collection behind an alias or name; a folder of that name that is no run folder is said so."""
    try:
        return connector.describe(name)
    except CollectionNotFound:
        if not path.is_dir():
            raise
        raise ConfigError(f"{path} is not a run folder (it has no {RunFolder.JOURNAL}), nor an alias or collection",
                          hint="pass a migration's run folder, or the alias it swapped") from None


def _journal_of(collection: str, rec: dict[str, Any]) -> Journal:
    if not rec.get("journal"):
        raise ConfigError(f"collection {collection!r} was not made by qdrant-distill (its metadata has no record)",
                          hint="pass the alias or run folder of a migration")
    try:
        return Journal.load(rec["journal"])
    except MigrationError as exc:
        raise MigrationError(f"the run folder of {collection!r} is gone: {exc.message}",
                             hint="pass the run folder where it is now") from None


def _finished(journal: Journal) -> None:
    if not journal.done(Stage.VERIFIED) or not journal.reembed_finished:
        raise MigrationError(f"the migration in {journal.run_dir} has not finished (it is at {journal.stage.value})",
                             hint="rerun its migrate command: it resumes, then export")


def _student_export(run: _Run) -> tuple[ExportFolder, Backend]:
    """The run's export and the format its collection answers with; refused when either is missing."""
    backend = Backend(run.journal.backend)
    again = f"qdrant-distill export {run.journal.run_dir}"
    if not backend.exported:
        raise StudentError(f"the student of {run.collection!r} runs on {backend}: it has no export to put on a device",
                           hint=f"export it: {again}")
    recorded = Path(run.journal.export_path or RunFolder(run.journal.run_dir).distill.export.root)
    folder = ExportFolder(recorded if recorded.is_absolute() else run.journal.run_dir / recorded)
    manifest = read_manifest(folder.root)
    if manifest is None or backend not in manifest.files or not (folder.root / manifest.files[backend]).is_file():
        raise StudentError(f"the {backend} export of the student is missing (looked in {folder.root})",
                           hint=f"export it again: {again}")
    if manifest.dim != int(run.record.get("dim", manifest.dim)):
        raise StudentError(f"the export in {folder.root} encodes {manifest.dim}-d vectors, {run.collection!r} holds "
                           f"{run.record['dim']}-d", hint=f"export it again: {again}")
    return folder, backend


# -- the folder -------------------------------------------------------------------------------------------------------
def _claim(edge: EdgeFolder) -> FolderLock:
    """The folder, created if needed and locked for this export (refused while it is open elsewhere, or when it
    holds a ``shard/`` or ``student/`` of its own: say a run folder's student, never replaced whatever the flags)."""
    if edge.root.exists() and not edge.root.is_dir():
        raise ConfigError(f"{edge.root} is a file, not a folder", hint="choose another --out")
    foreign = [p.name for p in (edge.shard, edge.student.root) if p.exists()] if not edge.is_edge() else []
    if foreign:
        raise ConfigError(f"{edge.root} holds {' and '.join(foreign)} that no export-edge wrote (it has no "
                          f"{EdgeFolder.MANIFEST})", hint="choose another --out")
    edge.root.mkdir(parents=True, exist_ok=True)
    return FolderLock(edge, exclusive=True).acquire()


def _resumable(edge: EdgeFolder, run: _Run, hnsw: bool) -> EdgeManifest | None:
    """The unfinished export of this very run in ``edge`` (None when there is none). Anything else in the folder
    is refused (``overwrite`` replaces it)."""
    existing = read_edge_manifest(edge)
    if existing is not None and not existing.finished and existing.run_id == run.journal.run_id \
            and existing.source_collection == run.collection and existing.hnsw == hnsw:
        return existing
    others = sorted(p.name for p in edge.root.iterdir() if p not in edge.owned)
    if others:
        raise ConfigError(f"{edge.root} is not empty (it holds {', '.join(others[:3])}{', ...' if len(others) > 3 else ''})",
                          hint="choose an empty or new --out, or --overwrite to write beside them")
    if existing is not None or any(p.exists() for p in edge.written):
        what = "a finished" if existing is not None and existing.finished else "another"
        raise ConfigError(f"{edge.root} already holds {what} Edge export"
                          + (f" (of {existing.source_collection})" if existing is not None else ""),
                          hint="--overwrite replaces it, or choose another --out")
    return None


def _start(edge: EdgeFolder, run: _Run, student: ExportFolder, backend: Backend, hnsw: bool,
           total: int) -> EdgeManifest:
    """A fresh export: what an earlier one wrote is removed, the manifest written first (so a kill resumes)."""
    for path in reversed(edge.written):  # edge.json last: a kill meanwhile leaves a folder still known as ours
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    exported = read_manifest(student.root)
    assert exported is not None
    manifest = EdgeManifest(
        source_collection=run.collection, source_alias=run.alias, run_id=run.journal.run_id,
        run_dir=str(run.journal.run_dir), teacher=str(run.record.get("teacher", "")), student=exported.source,
        backend=backend, dim=exported.dim, vector_name=run.vector.name, distance=run.vector.distance or "Cosine",
        hnsw=hnsw, expected=total, started_at=time.time(), qdrant_distill=__version__,
    )
    manifest.save(edge)
    return manifest


def _copy_student(student: ExportFolder, backend: Backend, edge: EdgeFolder) -> None:
    """The export with the one format the collection answers with (the others' files left out), its manifest
    saying so; copied beside and renamed into place."""
    exported = read_manifest(student.root)
    assert exported is not None
    skipped = {name for fmt, name in exported.files.items() if fmt is not backend}
    shutil.rmtree(edge.student_tmp, ignore_errors=True)
    shutil.copytree(student.root, edge.student_tmp,
                    ignore=lambda folder, names: [n for n in names if Path(folder) == student.root and n in skipped])
    checks = {fmt: check for fmt, check in exported.checks.items() if fmt is backend}
    exported.model_copy(update={"files": {backend: exported.files[backend]}, "checks": checks,
                                "preferred": backend}).save(edge.student_tmp)
    shutil.rmtree(edge.student.root, ignore_errors=True)
    edge.student_tmp.rename(edge.student.root)


# -- the points -------------------------------------------------------------------------------------------------------
def _shard(edge: EdgeFolder, manifest: EdgeManifest) -> EdgeShard:
    """The folder's shard: opened to resume, created when nothing was written yet."""
    if manifest.points and edge.shard.is_dir():
        return EdgeShard.load(edge.shard, manifest.vector_name)
    shutil.rmtree(edge.shard, ignore_errors=True)
    manifest.checkpoint = None
    return EdgeShard.create(edge.shard, vector_name=manifest.vector_name, dim=manifest.dim,
                            distance=manifest.distance, hnsw=manifest.hnsw)


def _copy_points(connector: Connector, run: _Run, edge: EdgeFolder, manifest: EdgeManifest, *, page_size: int,
                 progress: bool) -> None:
    """Scroll the collection from the checkpoint; each page is upserted, flushed, then checkpointed."""
    shard = _shard(edge, manifest)
    name = manifest.vector_name
    bar = tqdm(total=manifest.expected, initial=manifest.points, unit="pt", desc="export-edge", disable=not progress,
               dynamic_ncols=True)
    try:
        pages = connector.scroll(run.collection, page_size=page_size, with_payload=True,
                                 with_vectors=read_vectors([name], name, True), offset=manifest.checkpoint)
        for page in pages if not manifest.copied else ():
            missing = [p.id for p in page.points if p.vectors.get(name) is None]
            if missing:
                raise MigrationError(f"{len(missing)} points of {run.collection!r} have no {name or 'unnamed'} "
                                     f"vector (e.g. id {missing[0]!r})", hint="finish or rerun the migration")
            shard.upsert(page.points)
            shard.flush()
            manifest.points += len(page.points)
            manifest.checkpoint, manifest.copied = page.next_offset, page.next_offset is None
            manifest.save(edge)
            bar.update(len(page.points))
        shard.optimize()
        shard.flush()
        manifest.points = shard.count()
    finally:
        bar.close()
        shard.close()
    manifest.checkpoint, manifest.finished_at = None, time.time()
    manifest.save(edge)
    logger.info("export-edge: %d points of %s in %s (%.1fs)", manifest.points, run.collection, edge.root,
                manifest.finished_at - manifest.started_at)
