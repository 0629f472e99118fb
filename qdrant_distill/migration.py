"""The migration: plan -> sample -> distill -> gate -> create -> re-embed -> verify -> swap; rollback and finalize later.

Each stage is a function over (config, connector, journal); :func:`migrate` runs the ones not yet done, so running the
same migration again after a crash resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from connectors.base import Connector, Sample
from qdrant_distill._version import __version__
from qdrant_distill.config import Engine, MigrationConfig, Mode
from qdrant_distill.encoders import Encoder, load_encoder
from qdrant_distill.errors import (
    DimensionError,
    GateFailed,
    InvalidVectors,
    MigrationError,
    NoTextPayload,
    StudentError,
)
from qdrant_distill.evaluate import gate_failures, labelled_metrics, stored_vectors
from qdrant_distill.journal import JOURNAL_FILE, Journal, Stage
from qdrant_distill.plan import MigrationPlan, make_plan
from qdrant_distill.reembed import PageConverter, read_vectors, reembed
from qdrant_distill import record
from qdrant_distill.swap import abandon, finalize, rollback, swap
from qdrant_distill.swap import mirror_stage
from qdrant_distill.verify import VERIFY_MIN_COSINE, catch_up, verify

__all__ = ["MigrationReport", "abandon_run", "migrate", "open_connector", "open_journal", "query_encoder", "status"]

logger = logging.getLogger(__name__)

SAMPLE_FILE = "sample.npz"


class MigrationReport(BaseModel):
    """What a migration did: stage reached, quality, sizes, times. Contains no secrets."""

    source: str
    source_collection: str
    target: str
    alias: str | None
    stage: Stage
    mode: Mode
    dim: int
    teacher_dim: int
    points: int
    points_written: int
    skipped: int
    sample_size: int
    student_path: str | None
    backend: str = "torch"  # what the student runs on (its export's format that passed its checks and the gate)
    metrics: dict[str, float] = Field(default_factory=dict)  # the gate's: measured on that backend
    baseline_metrics: dict[str, float] = Field(default_factory=dict)
    selection: dict[str, Any] = Field(default_factory=dict)
    gate: dict[str, float] = Field(default_factory=dict)
    verify: dict[str, Any] = Field(default_factory=dict)
    catch_up: dict[str, int] = Field(default_factory=dict)
    previous_target: str | None = None
    vector_bytes_before: int = 0
    vector_bytes_after: int = 0
    seconds: dict[str, float] = Field(default_factory=dict)
    journal: str
    notes: list[str] = Field(default_factory=list)


def open_connector(config: MigrationConfig) -> Connector:
    from connectors.qdrant import QdrantConnector

    return QdrantConnector.open(config.qdrant)


def open_journal(run_dir: str | Path) -> Journal:
    """The journal of an earlier run (for status, rollback, finalize)."""
    return Journal.load(run_dir)


def migrate(
    config: MigrationConfig, *, connector: Connector | None = None, plan: MigrationPlan | None = None
) -> MigrationReport:
    """Run (or resume) the whole migration. Raises :class:`GateFailed` when the student is not good enough.

    ``plan`` is the :func:`make_plan` of this config on this connector, when the caller made it already (the CLI
    shows it before asking); otherwise it is made here.
    """
    own = connector is None
    conn = connector or open_connector(config)
    engine = ExitStack()
    try:
        if plan is None:
            plan = make_plan(config, conn)
            logger.info("plan:\n%s", plan.render())
        journal = Journal.open(Path(plan.run_dir), config.fingerprint())
        if journal.stage in (Stage.ROLLED_BACK, Stage.FINALIZED):
            logger.info("migration already %s; nothing to do", journal.stage.value)
            return _report(config, plan, journal)
        journal.source_collection, journal.source_alias, journal.target, journal.alias = (
            plan.source_collection, plan.source_alias, plan.target, plan.alias,
        )
        journal.save()
        engine.enter_context(_engine_session(config, journal))  # Ray started (and checked) before any training
        resumed = journal.done(Stage.SAMPLED)
        sample = stage_sample(config, conn, journal, plan)
        try:
            stage_distill(config, journal, plan, sample)
        except (InvalidVectors, NoTextPayload, StudentError) as exc:
            if not resumed:
                raise
            # the saved sample may hold what was since fixed in the source: say how to sample afresh
            raise type(exc)(f"{exc.message} (this run resumed from the sample saved in {journal.run_dir})",
                            hint=f"{exc.hint + '; ' if exc.hint else ''}to sample afresh, rerun with --restart or run "
                            f"qdrant-distill abandon {journal.run_dir}", **exc.context) from exc
        stage_gate(config, journal, conn=conn, plan=plan)
        stage_create(config, conn, journal, plan)
        stage_reembed(config, conn, journal, plan)
        stage_verify(config, conn, journal, plan)
        if plan.alias:
            if journal.stage is Stage.VERIFIED:
                swap(conn, journal)
            elif journal.stage is Stage.SWAPPED and _mirrored_stage(conn, plan.target) != Stage.SWAPPED.value:
                mirror_stage(conn, journal)  # killed after the swap was journaled, before the metadata caught up
        return _report(config, plan, journal)
    finally:
        engine.close()
        if own:
            conn.close()


# -- stages ---------------------------------------------------------------------------------------------------------


def stage_sample(config: MigrationConfig, conn: Connector, journal: Journal, plan: MigrationPlan) -> Sample:
    """Sample points (text + teacher vector) and keep them in the run folder, so a resume trains on the same ones."""
    path = journal.run_dir / SAMPLE_FILE
    if journal.done(Stage.SAMPLED) and path.exists():
        logger.info("resuming with the sample saved in %s; to sample afresh (say after fixing the source), rerun "
                    "with --restart or run qdrant-distill abandon %s first", path, journal.run_dir)
        return load_sample(path)
    sample = conn.sample(
        plan.source_collection, config.sample_size, text=config.text, vector_name=plan.vector_name,
        seed=config.sample_seed,
    )
    _save_sample(path, sample)
    journal.advance(Stage.SAMPLED, sample_path=str(path), sample_size=len(sample))
    logger.info("sampled %d points (%s; %d without text skipped)", len(sample), sample.method, sample.missing_text)
    return sample


def stage_distill(config: MigrationConfig, journal: Journal, plan: MigrationPlan, sample: Sample) -> None:
    """Train the student on the sample (or, in projection-only mode, build teacher + projection)."""
    if journal.done(Stage.DISTILLED):
        return
    out = journal.run_dir / "student"
    if config.mode is Mode.PROJECTION_ONLY:
        result = _projection_only(config, sample, out, plan)
    else:
        from qdrant_distill.distillation import distill, for_queries

        student_config = config.student.model_copy(update={"dim": config.dim})
        if config.mode is Mode.PROJECT:
            # documents keep the projection of their stored vectors: the student only has to encode queries
            student_config = for_queries(student_config)
            logger.info("project mode: query-student recipe (fields you set are kept)")
        if config.teacher_model and not student_config.teacher_model:
            student_config = student_config.model_copy(update={"teacher_model": config.teacher_model})
        res = distill(
            sample.texts, sample.vectors, student_config, output_dir=out, teacher_id=_teacher_id(config, plan),
            progress=config.progress, teacher_api_key=config.embeddings_api_key,
        )
        result = {
            "student_path": str(Path(res.student_path).resolve()),
            "export_path": str(Path(res.export_path).resolve()) if res.export_path else None,
            "backend": res.backend,
            "projection_path": str(Path(res.projection_path).resolve()) if res.projection_path else None,
            "metrics": dict(res.metrics),
            "baseline_metrics": dict(res.baseline_metrics),
            "selection": dict(res.selection),
        }
    journal.advance(Stage.DISTILLED, **result)


def stage_gate(
    config: MigrationConfig, journal: Journal, *, conn: Connector | None = None, plan: MigrationPlan | None = None
) -> None:
    """Stop, with nothing written to Qdrant, when the student is below the thresholds.

    Labelled queries (``gate.queries``) are answered the way the new collection will answer them: in ``reembed``
    mode against the student's vectors of the labelled corpus, in the project modes against the projection of the
    stored vectors of those documents (their ids are point ids of the source; ``conn`` and ``plan`` are needed).
    """
    if journal.done(Stage.GATED):
        return
    distilled = dict(journal.metrics)
    failures = _gate(config, journal, conn, plan, distilled)
    if failures and journal.backend == "onnx-int8":  # the int8 graph may fall short where the student does not
        failures = _gate_without_int8(config, journal, conn, plan, distilled, failures)
    if failures:
        raise GateFailed(
            f"the student is below the quality gate: {_failure_text(failures)}; nothing was written to Qdrant",
            hint="train on more points, lower --dim, or relax the gate",
            failures=failures, metrics=journal.metrics,
        )
    journal.advance(Stage.GATED)


def _gate(config: MigrationConfig, journal: Journal, conn: Connector | None, plan: MigrationPlan | None,
          distilled: dict[str, float]) -> list[dict[str, Any]]:
    """The gate's metrics for the backend the student will run on (int8's own holdout metrics, labelled queries
    answered through it), saved in the journal; returns what falls short."""
    metrics = {**distilled, **_backend_metrics(journal)}
    if config.gate.queries:
        metrics.update(_labelled_metrics(config, journal, conn, plan))
    journal.metrics = metrics
    journal.save()
    return gate_failures(metrics, config.gate.thresholds())


def _gate_without_int8(config: MigrationConfig, journal: Journal, conn: Connector | None, plan: MigrationPlan | None,
                       distilled: dict[str, float], int8_failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The gate on the fp32 graph: when it passes, int8 is refused (recorded in the export, with why) and the
    student runs on fp32; when it fails too, int8 is kept for a later, relaxed gate and its failures returned."""
    int8_metrics = dict(journal.metrics)
    journal.backend = "onnx"
    failures = _gate(config, journal, conn, plan, distilled)
    journal.backend = "onnx-int8"
    if failures:  # the gate's record stays int8's (measured already: labelled queries are not answered again)
        journal.metrics = int8_metrics
        journal.save()
        return int8_failures
    _refuse_backend(journal, f"below the quality gate: {_failure_text(int8_failures)}")
    return []


def _failure_text(failures: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{f['metric']} = {f['value']:.4f} < {f['threshold']} (short by {f['short_by']})" if f["value"] is not None
        else f"{f['metric']} missing" for f in failures
    )


def _backend_metrics(journal: Journal) -> dict[str, float]:
    """The holdout metrics the export measured for the chosen backend: int8's own, else the torch model's (fp32
    graphs reproduce it)."""
    from qdrant_distill.export import read_manifest

    manifest = read_manifest(journal.export_path) if journal.export_path else None
    if manifest is None:
        return {}
    check = manifest.checks.get(journal.backend)
    return dict(check.metrics) if check and check.metrics else dict(manifest.reference_metrics)


def _refuse_backend(journal: Journal, reason: str) -> None:
    """Stop using the chosen export format (recorded in the export and the journal); the next one is used."""
    from qdrant_distill.export import read_manifest

    assert journal.export_path is not None
    manifest = read_manifest(journal.export_path)
    assert manifest is not None
    manifest.refuse(journal.backend, reason)
    manifest.save(Path(journal.export_path))
    logger.warning("%s is not used: %s; the student runs on %s", journal.backend, reason, manifest.preferred or "torch")
    journal.backend = manifest.preferred or "torch"
    journal.save()


def stage_create(config: MigrationConfig, conn: Connector, journal: Journal, plan: MigrationPlan) -> None:
    """Create the target collection like the source at the new size, recording the encoder in its metadata."""
    if journal.done(Stage.CREATED):
        return
    run_id = journal.run_id
    if conn.collection_exists(plan.target):
        if record.read_from(conn, plan.target).get("run_id") != run_id:  # not ours: make_plan refuses this, but the world may have changed
            raise MigrationError(f"target {plan.target!r} appeared meanwhile and is not this migration's")
    else:
        info = conn.describe(plan.source_collection)
        conn.create_like(info, name=plan.target, vector_name=plan.vector_name, size=config.dim,
                         metadata={record.METADATA_KEY: _record(config, journal, plan)})
    journal.advance(Stage.CREATED)


def stage_reembed(config: MigrationConfig, conn: Connector, journal: Journal, plan: MigrationPlan) -> None:
    """Stream every point into the target, checkpointing the scroll offset after each written page (the Ray engine:
    each id range once written)."""
    if journal.done(Stage.REEMBEDDED):
        return
    if journal.reembed_finished:  # killed between the last page and the stage record
        journal.advance(Stage.REEMBEDDED)
        return
    if config.engine is Engine.RAY:
        _reembed_on_ray(config, conn, journal, plan)
        journal.advance(Stage.REEMBEDDED)
        return
    converter, vectors = _pipeline(config, conn, journal, plan)
    if journal.checkpoint is None:  # nothing durable yet: start over (upserts are idempotent)
        journal.points_written, journal.skipped_ids, journal.projected_ids = 0, [], 0
    written_before, skipped_before, projected_before = journal.points_written, list(journal.skipped_ids), journal.projected_ids

    def checkpoint(next_offset: Any, stats: Any) -> None:
        journal.checkpoint = next_offset
        journal.points_written = written_before + stats.written
        journal.skipped_ids = skipped_before + list(stats.skipped)
        journal.projected_ids = projected_before + stats.projected
        journal.reembed_finished = next_offset is None
        journal.save()

    if journal.checkpoint is not None:
        logger.info("resuming the re-embed at offset %r (%d points written)", journal.checkpoint, written_before)
    reembed(
        conn, source=plan.source_collection, target=plan.target, converter=converter, vectors=vectors,
        page_size=config.page_size, prefetch_pages=config.prefetch_pages, offset=journal.checkpoint,
        total=plan.points, already=written_before + len(skipped_before), on_checkpoint=checkpoint,
        progress=config.progress,
    )
    journal.advance(Stage.REEMBEDDED)


def _reembed_on_ray(config: MigrationConfig, conn: Connector, journal: Journal, plan: MigrationPlan) -> None:
    from qdrant_distill.ray_engine import encoded_elsewhere, reembed_ranges

    converter, vectors = _pipeline(config, conn, journal, plan, encode=encoded_elsewhere)
    reembed_ranges(conn, config.qdrant, journal, source=plan.source_collection, target=plan.target,
                   converter=converter, vectors=vectors, config=config.ray, student=encoder_reference(journal),
                   backend=journal.backend, page_size=config.page_size, encode_batch_size=config.encode_batch_size,
                   total=plan.points, progress=config.progress)


def stage_verify(config: MigrationConfig, conn: Connector, journal: Journal, plan: MigrationPlan) -> None:
    """Catch up with writes made meanwhile, then check counts, ids, payloads and a sample of vectors."""
    if journal.done(Stage.VERIFIED):
        return
    converter, vectors = _pipeline(config, conn, journal, plan)
    found, stats = catch_up(conn, source=plan.source_collection, target=plan.target, converter=converter,
                            vectors=vectors, skipped=journal.skipped_ids, page_size=config.page_size)
    journal.skipped_ids = sorted({*journal.skipped_ids, *stats.skipped}, key=str)
    journal.catch_up = {"added": len(found.missing), "updated": len(found.changed), "deleted": len(found.extra)}
    journal.save()
    report = verify(conn, source=plan.source_collection, target=plan.target, converter=converter,
                    vector_name=plan.vector_name, dim=config.dim, skipped=journal.skipped_ids,
                    sample=config.verify_sample, page_size=config.page_size, min_cosine=_verify_cosine(journal))
    journal.advance(Stage.VERIFIED, verify=report)
    record.write(conn, plan.target, {**_record(config, journal, plan), "stage": Stage.VERIFIED.value})


def _verify_cosine(journal: Journal) -> float:
    """How close re-encoded vectors must be: an int8 graph's move with their batch (as much as its export check
    allows), every other backend's are the same vectors."""
    from qdrant_distill.export import MIN_INT8_COSINE

    return MIN_INT8_COSINE if journal.backend == "onnx-int8" else VERIFY_MIN_COSINE


# -- operator commands ----------------------------------------------------------------------------------------------


def status(run_dir: str | Path) -> Journal:
    """The journal of a run."""
    return open_journal(run_dir)


def rollback_run(run_dir: str | Path, connector: Connector) -> str | None:
    return rollback(connector, open_journal(run_dir))


def finalize_run(run_dir: str | Path, connector: Connector) -> str | None:
    return finalize(connector, open_journal(run_dir))


def swap_run(run_dir: str | Path, connector: Connector) -> str | None:
    return swap(connector, open_journal(run_dir))


RUN_FILES = (JOURNAL_FILE, SAMPLE_FILE, "student")  # what a run writes into its folder


def abandon_run(run_dir: str | Path, connector: Connector) -> str | None:
    """Drop the target of a run that was never swapped in and clear its run folder (journal, sample, student), so
    the same command starts afresh. Returns the dropped collection (None when the run had not created one)."""
    journal = open_journal(run_dir)
    dropped = abandon(connector, journal)
    folder = Path(journal.path).parent
    for name in RUN_FILES:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    logger.warning("abandon: cleared the run folder %s", folder)
    return dropped


# -- helpers --------------------------------------------------------------------------------------------------------


def _mirrored_stage(conn: Connector, target: str) -> str | None:
    return record.read_from(conn, target).get("stage")


def _engine_session(config: MigrationConfig, journal: Journal) -> AbstractContextManager[None]:
    """The re-embed engine's lifetime: a Ray session while the Ray engine still has points to write."""
    if config.engine is not Engine.RAY or journal.done(Stage.REEMBEDDED):
        return nullcontext()
    from qdrant_distill.ray_engine import session

    return session(config.ray)


def _teacher_id(config: MigrationConfig, plan: MigrationPlan) -> str:
    return config.teacher_model or f"stored:{plan.source_collection}/{plan.vector_name or 'vector'}"


def _record(config: MigrationConfig, journal: Journal, plan: MigrationPlan) -> dict[str, Any]:
    """The target's metadata record (:mod:`qdrant_distill.record`) of this migration."""
    return record.build(
        version=__version__, run_id=journal.run_id, source=plan.source_collection, alias=plan.alias,
        mode=config.mode.value, dim=config.dim, vector_name=plan.vector_name, teacher=_teacher_id(config, plan),
        teacher_dim=plan.teacher_dim, student_path=journal.student_path, projection_path=journal.projection_path,
        query_projection=config.mode is Mode.PROJECTION_ONLY, metrics=journal.metrics, journal_path=journal.path,
        query_model=encoder_reference(journal), backend=journal.backend,
    )


def query_encoder(config: MigrationConfig, journal: Journal) -> Encoder:
    """The encoder the new collection answers queries with: the student, or in projection-only mode the teacher
    followed by the projection, on the backend the run chose."""
    projection = journal.projection_path if config.mode is Mode.PROJECTION_ONLY else None
    return load_encoder(encoder_reference(journal), projection=projection, backend=journal.backend,
                        batch_size=config.encode_batch_size, api_key=config.embeddings_api_key)


def encoder_reference(journal: Journal) -> str:
    """What loads the run's encoder: its export folder when it runs on one, else the student (or teacher)."""
    assert journal.student_path is not None
    return journal.export_path if journal.backend != "torch" and journal.export_path else journal.student_path


def _converter(config: MigrationConfig, journal: Journal, plan: MigrationPlan,
               encode: Callable[[list[str]], np.ndarray] | None = None) -> PageConverter:
    """The page converter; ``encode`` replaces the student's own (the Ray engine encodes in its actors)."""
    from qdrant_distill.projection import PCAProjection

    projection = PCAProjection.load(journal.projection_path) if journal.projection_path else None
    project = (lambda v: projection.transform(v, normalize=True)) if projection is not None else None
    if config.mode is not Mode.REEMBED:
        encode = None
    elif encode is None:
        student = load_encoder(encoder_reference(journal), backend=journal.backend,
                               batch_size=config.encode_batch_size, api_key=config.embeddings_api_key)
        encode = partial(student.encode, kind="document")
    return PageConverter(vector_name=plan.vector_name, text=config.text, encode=encode, project=project,
                         missing_text=config.missing_text)


def _pipeline(
    config: MigrationConfig, conn: Connector, journal: Journal, plan: MigrationPlan,
    encode: Callable[[list[str]], np.ndarray] | None = None,
) -> tuple[PageConverter, list[str] | bool]:
    """The page converter of this migration and the vectors a scroll of the source must fetch for it."""
    converter = _converter(config, journal, plan, encode)
    info = conn.describe(plan.source_collection)
    vectors = read_vectors([*info.vectors, *info.sparse_vectors], plan.vector_name, converter.needs_teacher_vector)
    return converter, vectors


def _projection_only(config: MigrationConfig, sample: Sample, out: Path, plan: MigrationPlan) -> dict[str, Any]:
    """Teacher + PCA projection as the query encoder; fidelity measured on the stored vectors alone."""
    from qdrant_distill.evaluate import fidelity
    from qdrant_distill.projection import PCAProjection

    assert config.teacher_model is not None  # make_plan refuses projection-only mode without a teacher
    projection = PCAProjection.fit(sample.vectors, config.dim, center=config.student.center)
    teacher = load_encoder(config.teacher_model, api_key=config.embeddings_api_key)
    if teacher.dim != projection.in_dim:
        raise DimensionError(f"the teacher encodes {teacher.dim}-d vectors, the stored ones are {projection.in_dim}-d",
                             hint="--teacher must be the model the collection was indexed with")
    out.mkdir(parents=True, exist_ok=True)
    projection_path = projection.save(out / "projection.npz")
    metrics = fidelity(projection.transform(sample.vectors), sample.vectors)
    result = {"student_path": model_reference(config.teacher_model),
              "projection_path": str(Path(projection_path).resolve()), "metrics": metrics, "baseline_metrics": metrics}
    from connectors.http_embeddings import is_http_reference

    if config.student.export != "none" and not is_http_reference(config.teacher_model):
        result.update(_export_teacher(config, sample, projection, out))
    return result


def _export_teacher(config: MigrationConfig, sample: Sample, projection: Any, out: Path) -> dict[str, Any]:
    """Projection-only mode: the teacher exported for onnxruntime (:mod:`qdrant_distill.export`). Each format is
    judged as the query encoder it becomes: teacher + projection against the stored vectors of sampled texts."""
    from qdrant_distill.evaluate import fidelity
    from qdrant_distill.export import EXPORT_DIR, export_model, formats_for

    assert config.teacher_model is not None
    n = min(len(sample.texts), 256)
    texts, stored = sample.texts[:n], sample.vectors[:n]

    def evaluate(encoder: Encoder) -> dict[str, float]:
        return fidelity(projection.transform(encoder.encode(texts)), stored)

    manifest = export_model(config.teacher_model, out / EXPORT_DIR, formats=formats_for(config.student.export), check_texts=texts[:64],
                            evaluate=evaluate, source=model_reference(config.teacher_model))
    return {"export_path": str((out / EXPORT_DIR).resolve()), "backend": manifest.preferred or "torch"}


def model_reference(ref: str) -> str:
    """A model reference as recorded for later readers: a local path made absolute, a hub name kept as it is."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def _labelled_metrics(
    config: MigrationConfig, journal: Journal, conn: Connector | None, plan: MigrationPlan | None
) -> dict[str, float]:
    from qdrant_distill.projection import PCAProjection

    gate = config.gate
    assert gate.queries is not None
    doc_vectors: Callable[[list[str]], np.ndarray] | None = None
    if config.mode is not Mode.REEMBED:
        if conn is None or plan is None:
            raise MigrationError(f"a labelled gate in {config.mode.value} mode reads the stored vectors of the "
                                 "labelled documents: pass conn and plan to stage_gate")
        # the documents answer with their projected stored vectors, as the new collection will
        projection = PCAProjection.load(journal.projection_path)
        doc_vectors = lambda ids: projection.transform(  # noqa: E731
            stored_vectors(conn, plan.source_collection, plan.vector_name, ids))
    return labelled_metrics(query_encoder(config, journal), gate.queries, split=gate.split, doc_vectors=doc_vectors)


def _save_sample(path: Path, sample: Sample) -> None:
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


def _report(config: MigrationConfig, plan: MigrationPlan, journal: Journal) -> MigrationReport:
    times = journal.stage_times
    order = [s.value for s in Stage if s.value in times]
    seconds = {b: round(times[b] - times[a], 2) for a, b in zip(order, order[1:])}
    notes = list(plan.notes)
    if journal.stage is Stage.VERIFIED and not plan.alias:
        notes.append(f"no alias was moved: point readers at {plan.target!r}, or rerun with --alias NAME")
    return MigrationReport(
        source=plan.source, source_collection=plan.source_collection, target=plan.target, alias=plan.alias,
        stage=journal.stage, mode=config.mode, dim=config.dim, teacher_dim=plan.teacher_dim, points=plan.points,
        points_written=journal.points_written, skipped=len(journal.skipped_ids), sample_size=journal.sample_size,
        student_path=journal.student_path, backend=journal.backend, metrics=journal.metrics, baseline_metrics=journal.baseline_metrics,
        selection=journal.selection,
        gate=config.gate.thresholds(), verify=journal.verify, catch_up=journal.catch_up,
        previous_target=journal.previous_target, vector_bytes_before=plan.vector_bytes_before,
        vector_bytes_after=plan.vector_bytes_after, seconds=seconds, journal=journal.path, notes=notes,
    )
