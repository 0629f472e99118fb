"""The migration: plan -> sample -> distill -> gate -> create -> re-embed -> verify -> swap; rollback and finalize later.

Each stage is a function over (config, connector, journal); :func:`migrate` runs the ones not yet done, so running the
same migration again after a crash resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

import qdrant_distill.migration.record as record
from qdrant_distill._version import __version__
from qdrant_distill.connectors.base import Connector, Sample
from qdrant_distill.connectors.http_embeddings import shown_reference, stored_reference
from qdrant_distill.connectors.scroll import read_vectors, stored_vectors
from qdrant_distill.errors import (
    DimensionError,
    GateFailed,
    InvalidVectors,
    MigrationError,
    NoTextPayload,
    StudentError,
)
from qdrant_distill.evaluation.metrics import fidelity
from qdrant_distill.folders import DistillFolder, RunFolder
from qdrant_distill.inference.encoders import Encoder, load_encoder, load_teacher
from qdrant_distill.inference.export import export_model, formats_for
from qdrant_distill.inference.formats import Backend, ExportChoice, read_manifest
from qdrant_distill.inference.projection import PCAProjection
from qdrant_distill.migration.aliases import mirror_stage, swap
from qdrant_distill.migration.config import MigrationConfig, Mode
from qdrant_distill.migration.dims import default_dims, dims_report, labelled_vectors
from qdrant_distill.migration.engines import ReembedEngine, engine_for
from qdrant_distill.migration.engines.local import PageConverter, ReembedJob
from qdrant_distill.migration.gate import (
    GateReport,
    failure_text,
    judge,
    labelled_metrics,
)
from qdrant_distill.migration.journal import Journal, Stage, run_lock
from qdrant_distill.migration.operate import check_store
from qdrant_distill.migration.plan import MigrationPlan, make_plan
from qdrant_distill.migration.report import (
    Example,
    Neighbour,
    RunFacts,
    qdrant_address,
    refresh_report,
)
from qdrant_distill.migration.run_models import (
    encoder_reference,
    query_encoder,
    run_encoder,
)
from qdrant_distill.migration.samples import load_sample, save_sample
from qdrant_distill.migration.verify import catch_up, verify
from qdrant_distill.vectors import unit_rows

__all__ = ["MigrationReport", "migrate", "open_connector"]

logger = logging.getLogger(__name__)

EXAMPLES = 3  # held-out points the report shows with their nearest neighbours
EXAMPLE_NEIGHBOURS = 5
EXAMPLE_POOL = 512  # sample points searched for those neighbours (the held-out ones first)
EXAMPLE_CHARS = 500
SPEED_TEXTS = 128  # texts the student and the teacher each encode as queries to measure their speed


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
    backend: Backend = Backend.TORCH  # what the student runs on (its export's format that passed its checks and the gate)
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
    from qdrant_distill.connectors.qdrant import QdrantConnector

    return QdrantConnector.open(config.qdrant)


def migrate(
    config: MigrationConfig, *, connector: Connector | None = None, plan: MigrationPlan | None = None
) -> MigrationReport:
    """Run (or resume) the whole migration. Raises :class:`GateFailed` when the student is not good enough.

    ``plan`` is the :func:`make_plan` of this config on this connector, when the caller made it already (the CLI
    shows it before asking); otherwise it is made here.
    """
    own = connector is None
    conn = connector or open_connector(config)
    engine = engine_for(config)  # chosen once: the session below and the re-embed stage use the same one
    sessions = ExitStack()
    try:
        if plan is None:
            plan = make_plan(config, conn)
            logger.info("plan:\n%s", plan.render())
        sessions.enter_context(run_lock(Path(plan.run_dir), "migrate"))  # held to the end; the others respect it
        journal = Journal.open(Path(plan.run_dir), config.fingerprint())
        if journal.store is not None:  # resumed: on the store it began on
            check_store(journal, conn)
        if journal.stage in (Stage.ROLLED_BACK, Stage.FINALIZED):
            logger.info("migration already %s; nothing to do", journal.stage.value)
            return _report(config, plan, journal)
        journal.source_collection, journal.source_alias, journal.target, journal.alias = (
            plan.source_collection, plan.source_alias, plan.target, plan.alias,
        )
        journal.store = journal.store or conn.identity
        journal.save()
        _save_facts(config, conn, plan, journal)
        sessions.callback(refresh_report, journal.run_dir)  # report.html, however the run ends
        if not journal.done(Stage.REEMBEDDED):  # Ray started (and checked) before any training
            sessions.enter_context(engine.session())
        resumed = journal.done(Stage.SAMPLED)
        sample = stage_sample(config, conn, journal, plan)
        write_dims(config, journal, plan, sample, conn=conn)
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
        stage_reembed(config, conn, journal, plan, engine)
        stage_verify(config, conn, journal, plan)
        if plan.alias:
            if journal.stage is Stage.VERIFIED:
                swap(conn, journal)
            elif journal.stage is Stage.SWAPPED and _mirrored_stage(conn, plan.target) != Stage.SWAPPED.value:
                mirror_stage(conn, journal)  # killed after the swap was journaled, before the metadata caught up
        return _report(config, plan, journal)
    finally:
        sessions.close()
        if own:
            conn.close()


# -- stages ---------------------------------------------------------------------------------------------------------


def stage_sample(config: MigrationConfig, conn: Connector, journal: Journal, plan: MigrationPlan) -> Sample:
    """Sample points (text + teacher vector) and keep them in the run folder, so a resume trains on the same ones."""
    path = RunFolder(journal.run_dir).sample
    if journal.done(Stage.SAMPLED) and path.exists():
        logger.info("resuming with the sample saved in %s; to sample afresh (say after fixing the source), rerun "
                    "with --restart or run qdrant-distill abandon %s first", path, journal.run_dir)
        return load_sample(path)
    sample = conn.sample(
        plan.source_collection, config.sample_size, text=config.text, vector_name=plan.vector_name,
        seed=config.sample_seed,
    )
    save_sample(path, sample)
    journal.advance(Stage.SAMPLED, sample_path=str(path), sample_size=len(sample))
    logger.info("sampled %d points (%s; %d without text skipped)", len(sample), sample.method, sample.missing_text)
    return sample


def write_dims(config: MigrationConfig, journal: Journal, plan: MigrationPlan, sample: Sample, *,
               conn: Connector | None = None) -> None:
    """The dimension table of the sample into the run folder (``dims.json``, for the report): the plan's when it
    carries one, else the default candidates that the sample can fit (numpy, seconds), with the teacher's nDCG@10 and
    each size's when labelled queries and the teacher are both given (the report's summary compares the student's
    with the teacher's). Advice only: a sample too small for any candidate writes nothing."""
    path = RunFolder(journal.run_dir).dims
    if path.exists():
        return
    report = plan.dims
    if report is None:
        _, held = config.student.holdout_split(len(sample))
        fits = len(sample) - len(held)
        dims = [d for d in default_dims(plan.teacher_dim, config.dim) if d <= fits]
        if len(held) < 2 or not dims:
            logger.warning("no dimension table: a sample of %d points is too small", len(sample))
            return
        labelled = None
        if conn is not None and config.gate.queries and config.teacher_model:
            key = config.embeddings_api_key.get_secret_value() if config.embeddings_api_key else None
            labelled = labelled_vectors(conn, plan.source_collection, plan.vector_name, config.gate.queries,
                                        teacher=config.teacher_model, split=config.gate.split, api_key=key)
        report = dims_report(sample.vectors, dims, points=plan.points, holdout=config.student, chosen=config.dim,
                             labelled=labelled)
    report.write(path)
    logger.info("dimension table (%.1f s) in %s: recommends %d, --dim is %d", report.seconds, path,
                report.recommended, config.dim)


def stage_distill(config: MigrationConfig, journal: Journal, plan: MigrationPlan, sample: Sample) -> None:
    """Train the student on the sample (or, in projection-only mode, build teacher + projection)."""
    if journal.done(Stage.DISTILLED):
        return
    out = RunFolder(journal.run_dir).distill.root
    if config.mode is Mode.PROJECTION_ONLY:
        result = _projection_only(config, sample, out, plan)
    else:
        from qdrant_distill.distillation.recipe import (
            distill,  # torch: only when a student is trained
        )

        # project mode: documents keep the projection of their stored vectors, the student encodes queries only
        use = "queries" if config.mode is Mode.PROJECT else "symmetric"
        res = distill(
            sample.texts, sample.vectors, config.distill_config(), output_dir=out, teacher_id=_teacher_id(config, plan),
            progress=config.progress, teacher_api_key=config.embeddings_api_key, use=use,
        )
        logger.info("distilled with the %s recipe (fields you set are kept)", res.recipe)
        result = res.for_journal()
    journal.advance(Stage.DISTILLED, **result)


def stage_gate(
    config: MigrationConfig, journal: Journal, *, conn: Connector | None = None, plan: MigrationPlan | None = None
) -> None:
    """Stop, with nothing written to Qdrant, when the student is below the thresholds (:mod:`qdrant_distill.migration.gate`).

    Labelled queries (``gate.queries``) are answered the way the new collection will answer them: in ``reembed``
    mode against the student's vectors of the labelled corpus, in the project modes against the projection of the
    stored vectors of those documents (their ids are point ids of the source; ``conn`` and ``plan`` are needed).
    """
    if journal.done(Stage.GATED):
        return
    manifest = read_manifest(journal.export_path) if journal.export_path else None
    labelled = _labelled(config, journal, conn, plan) if config.gate.queries else None
    report = judge(config.gate, backend=Backend(journal.backend), distilled=dict(journal.metrics), manifest=manifest,
                   labelled=labelled)
    _record_gate(journal, report)
    _save_examples(config, journal)
    if not report.passed:
        raise GateFailed(
            f"the student is below the quality gate: {failure_text(report.failures)}; nothing was written to Qdrant",
            hint="train on more points, lower --dim, or relax the gate",
            failures=report.failures, metrics=journal.metrics,
        )
    journal.advance(Stage.GATED)


def _record_gate(journal: Journal, report: GateReport) -> None:
    """The gate's metrics into the journal; a format it refused recorded in the export (with why), and the backend
    it judged instead becomes the run's."""
    journal.metrics = report.metrics
    if report.refused is not None and journal.export_path:
        manifest = read_manifest(journal.export_path)
        assert manifest is not None
        manifest.refuse(report.refused, report.refused_because or "below the quality gate")
        manifest.save(Path(journal.export_path))  # export.json owns the choice; the journal records it
        journal.backend = manifest.runs_on()
    journal.save()


def _save_facts(config: MigrationConfig, conn: Connector, plan: MigrationPlan, journal: Journal) -> None:
    """The plan's figures for the run's report (examples already taken are kept)."""
    where = getattr(conn, "target", None) or config.qdrant.target  # a connector handed in says where it is
    facts = RunFacts.load(journal.run_dir).model_copy(update=dict(
        qdrant=qdrant_address(str(where)), source=plan.source, mode=config.mode.value,
        student=plan.student, teacher_dim=plan.teacher_dim, dim=config.dim, points=plan.points,
        vector_bytes_before=plan.vector_bytes_before, vector_bytes_after=plan.vector_bytes_after,
        gate=config.gate.thresholds(), notes=list(plan.notes)))
    facts.save(journal.run_dir)


def _save_examples(config: MigrationConfig, journal: Journal) -> None:
    """A few held-out points with their nearest neighbours among the sample, by the stored teacher vectors and as
    the new collection will answer their texts (the run's query encoder on the backend the gate judged), for the
    report; in reembed mode the time the student took to encode the documents is its speed there."""
    if not journal.sample_path or not Path(journal.sample_path).is_file():
        return
    sample = load_sample(Path(journal.sample_path))
    _, held = config.distill_config().holdout_split(len(sample))
    shown = set(held)
    pool = (held + [i for i in range(len(sample)) if i not in shown])[:EXAMPLE_POOL]
    texts = [sample.texts[i] for i in pool]
    teacher = _unit(sample.vectors[pool])
    encoder = query_encoder(config, journal)
    if config.mode is Mode.REEMBED:
        docs = encoder.encode(texts, kind="document")
    else:  # the new collection holds the projection of the stored vectors
        docs = PCAProjection.load(journal.projection_path).transform(sample.vectors[pool])
    n = min(EXAMPLES, len(held))
    queries = encoder.encode(texts[:n], kind="query")
    timed = texts[:SPEED_TEXTS]  # query speed, student against teacher, on the same texts (both loaded first)
    speed: dict[str, Any] = {"encode_per_s": _queries_per_s(encoder, timed), "encode_texts": len(timed)}
    if config.teacher_model:
        teacher_model = load_teacher(config.teacher_model, api_key=config.embeddings_api_key)
        teacher_model.encode(timed[:1], kind="query")
        speed["teacher_encode_per_s"] = _queries_per_s(teacher_model, timed)
    examples = [Example(id=sample.ids[pool[q]], text=texts[q][:EXAMPLE_CHARS],
                        teacher=_neighbours(teacher[q] @ teacher.T, q, pool, sample),
                        student=_neighbours(_unit(queries[q : q + 1])[0] @ _unit(docs).T, q, pool, sample))
                for q in range(n)]
    facts = RunFacts.load(journal.run_dir).model_copy(update={"examples": examples, **speed})
    facts.save(journal.run_dir)


def _queries_per_s(encoder: Encoder, texts: list[str]) -> float:
    started = time.perf_counter()
    encoder.encode(texts, kind="query")
    return len(texts) / max(time.perf_counter() - started, 1e-9)


def _neighbours(scores: np.ndarray, own: int, pool: list[int], sample: Sample) -> list[Neighbour]:
    scores = scores.astype(np.float64).copy()
    scores[own] = -np.inf  # the point itself
    best = np.argsort(-scores, kind="stable")[:EXAMPLE_NEIGHBOURS]
    return [Neighbour(id=sample.ids[pool[i]], text=sample.texts[pool[i]][:EXAMPLE_CHARS], score=float(scores[i]))
            for i in best]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return unit_rows(x)


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


def stage_reembed(config: MigrationConfig, conn: Connector, journal: Journal, plan: MigrationPlan,
                  engine: ReembedEngine | None = None) -> None:
    """Stream every point into the target on the migration's engine (:mod:`qdrant_distill.migration.engines`), which records
    its progress in the journal (the scroll offset after each written page, or each id range once written)."""
    if journal.done(Stage.REEMBEDDED):
        return
    if journal.reembed_finished:  # killed between the last page and the stage record
        journal.advance(Stage.REEMBEDDED)
        return
    engine = engine or engine_for(config)
    converter, vectors = _pipeline(config, conn, journal, plan)
    job = ReembedJob(source=plan.source_collection, target=plan.target, converter=converter, vectors=vectors,
                     student=encoder_reference(journal), backend=Backend(journal.backend), total=plan.points,
                     page_size=config.page_size, prefetch_pages=config.prefetch_pages,
                     encode_batch_size=config.encode_batch_size, progress=config.progress)
    engine.run(conn, job, journal)
    journal.advance(Stage.REEMBEDDED)


def stage_verify(config: MigrationConfig, conn: Connector, journal: Journal, plan: MigrationPlan) -> None:
    """Catch up with writes made meanwhile, then check counts, ids, payloads and a sample of vectors."""
    if journal.done(Stage.VERIFIED):
        return
    converter, vectors = _pipeline(config, conn, journal, plan)
    found, stats = catch_up(conn, source=plan.source_collection, target=plan.target, converter=converter,
                            vectors=vectors, skipped=journal.skipped_ids, page_size=config.page_size)
    journal.record_skipped(stats.skipped)
    journal.catch_up = {"added": len(found.missing), "updated": len(found.changed), "deleted": len(found.extra)}
    journal.save()
    report = verify(conn, source=plan.source_collection, target=plan.target, converter=converter,
                    vector_name=plan.vector_name, dim=config.dim, skipped=journal.skipped_ids,
                    sample=config.verify_sample, page_size=config.page_size, backend=Backend(journal.backend))
    journal.advance(Stage.VERIFIED, verify=report)
    record.write(conn, plan.target, {**_record(config, journal, plan), "stage": Stage.VERIFIED.value})


def _mirrored_stage(conn: Connector, target: str) -> str | None:
    return record.read_from(conn, target).get("stage")


def _teacher_id(config: MigrationConfig, plan: MigrationPlan) -> str:
    if config.teacher_model:
        return stored_reference(config.teacher_model)
    return f"stored:{plan.source_collection}/{plan.vector_name or 'vector'}"


def _record(config: MigrationConfig, journal: Journal, plan: MigrationPlan) -> dict[str, Any]:
    """The target's metadata record (:mod:`qdrant_distill.migration.record`) of this migration."""
    return record.build(
        version=__version__, run_id=journal.run_id, source=plan.source_collection, alias=plan.alias,
        mode=config.mode.value, dim=config.dim, vector_name=plan.vector_name, teacher=_teacher_id(config, plan),
        teacher_dim=plan.teacher_dim, student_path=journal.student_path, projection_path=journal.projection_path,
        query_projection=config.mode is Mode.PROJECTION_ONLY, metrics=journal.metrics, journal_path=journal.path,
        query_model=encoder_reference(journal), backend=journal.backend, text_field=config.text_field,
        text_template=config.text_template,
    )


def _converter(config: MigrationConfig, journal: Journal, plan: MigrationPlan) -> PageConverter:
    """The page converter. In ``reembed`` mode its encoder is the student's, loaded on the first page it encodes:
    an engine that encodes elsewhere (Ray's actors) swaps it out and never loads the student in this process."""
    projection = PCAProjection.load(journal.projection_path) if journal.projection_path else None
    project = (lambda v: projection.transform(v, normalize=True)) if projection is not None else None
    encode = _student_documents(config, journal) if config.mode is Mode.REEMBED else None
    return PageConverter(vector_name=plan.vector_name, text=config.text, encode=encode, project=project,
                         missing_text=config.missing_text)


def _student_documents(config: MigrationConfig, journal: Journal) -> Callable[[list[str]], np.ndarray]:
    """The student's document encoder, loaded on first use."""

    @cache
    def student() -> Any:
        return load_encoder(encoder_reference(journal), backend=journal.backend, batch_size=config.encode_batch_size,
                            api_key=config.embeddings_api_key)

    return lambda texts: student().encode(texts, kind="document")


def _pipeline(config: MigrationConfig, conn: Connector, journal: Journal,
              plan: MigrationPlan) -> tuple[PageConverter, list[str] | bool]:
    """The page converter of this migration and the vectors a scroll of the source must fetch for it."""
    converter = _converter(config, journal, plan)
    info = conn.describe(plan.source_collection)
    vectors = read_vectors([*info.vectors, *info.sparse_vectors], plan.vector_name, converter.needs_teacher_vector)
    return converter, vectors


def _projection_only(config: MigrationConfig, sample: Sample, out: Path, plan: MigrationPlan) -> dict[str, Any]:
    """Teacher + PCA projection as the query encoder; fidelity measured on the stored vectors alone."""
    assert config.teacher_model is not None  # make_plan refuses projection-only mode without a teacher
    projection = PCAProjection.fit(sample.vectors, config.dim, center=config.student.center)
    teacher = load_teacher(config.teacher_model, api_key=config.embeddings_api_key)
    if teacher.dim != projection.in_dim:
        raise DimensionError(f"the teacher encodes {teacher.dim}-d vectors, the stored ones are {projection.in_dim}-d",
                             hint="--teacher must be the model the collection was indexed with")
    out.mkdir(parents=True, exist_ok=True)
    projection_path = projection.save(DistillFolder(out).projection)
    metrics = fidelity(projection.transform(sample.vectors), sample.vectors)
    result = {"student_path": model_reference(config.teacher_model),
              "projection_path": str(Path(projection_path).resolve()), "metrics": metrics, "baseline_metrics": metrics}
    from qdrant_distill.connectors.http_embeddings import is_http_reference

    if ExportChoice(config.student.export) is not ExportChoice.NONE and not is_http_reference(config.teacher_model):
        result.update(_export_teacher(config, sample, projection, out))
    return result


def _export_teacher(config: MigrationConfig, sample: Sample, projection: Any, out: Path) -> dict[str, Any]:
    """Projection-only mode: the teacher exported for onnxruntime (:mod:`qdrant_distill.inference.export`). Each format is
    judged as the query encoder it becomes: teacher + projection against the stored vectors of sampled texts."""
    assert config.teacher_model is not None
    n = min(len(sample.texts), 256)
    texts, stored = sample.texts[:n], sample.vectors[:n]

    def evaluate(encoder: Encoder) -> dict[str, float]:
        return fidelity(projection.transform(encoder.encode(texts)), stored)

    folder = DistillFolder(out).export.root
    manifest = export_model(config.teacher_model, folder, formats=formats_for(config.student.export),
                            check_texts=texts[:64], evaluate=evaluate, source=model_reference(config.teacher_model))
    return {"export_path": str(folder.resolve()), "backend": manifest.runs_on()}


def model_reference(ref: str) -> str:
    """A model reference as recorded for later readers: a local path made absolute, a hub name kept as it is, an
    embeddings endpoint without what may hold a secret (:func:`stored_reference`)."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else stored_reference(ref)


def _labelled(config: MigrationConfig, journal: Journal, conn: Connector | None,
              plan: MigrationPlan | None) -> Callable[[Backend], dict[str, float]]:
    """Labelled queries answered as the new collection will answer them, on the backend the gate judges."""
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

    def labelled(backend: Backend) -> dict[str, float]:
        return labelled_metrics(run_encoder(config, journal, backend), gate.queries, split=gate.split,
                                doc_vectors=doc_vectors)

    return labelled


def _report(config: MigrationConfig, plan: MigrationPlan, journal: Journal) -> MigrationReport:
    times = journal.stage_times
    order = [s.value for s in Stage if s.value in times]
    seconds = {b: round(times[b] - times[a], 2) for a, b in zip(order, order[1:])}
    notes = list(plan.notes)
    if journal.stage is Stage.VERIFIED and not plan.alias:
        notes.append(f"no alias was moved: point readers at {plan.target!r}, or rerun with --new-alias NAME")
    return MigrationReport(
        source=plan.source, source_collection=plan.source_collection, target=plan.target, alias=plan.alias,
        stage=journal.stage, mode=config.mode, dim=config.dim, teacher_dim=plan.teacher_dim, points=plan.points,
        points_written=journal.points_written, skipped=len(journal.skipped_ids), sample_size=journal.sample_size,
        student_path=shown_reference(journal.student_path) if journal.student_path else None, backend=journal.backend, metrics=journal.metrics, baseline_metrics=journal.baseline_metrics,
        selection=journal.selection,
        gate=config.gate.thresholds(), verify=journal.verify, catch_up=journal.catch_up,
        previous_target=journal.previous_target, vector_bytes_before=plan.vector_bytes_before,
        vector_bytes_after=plan.vector_bytes_after, seconds=seconds, journal=journal.path, notes=notes,
    )
