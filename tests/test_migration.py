"""End-to-end migrations on real qdrant-client local mode with a tiny real model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models as qm
from sentence_transformers import SentenceTransformer

from qdrant_distill import (
    AliasConflict,
    CollectionExists,
    CollectionNotFound,
    ConfigError,
    DimensionError,
    DimsReport,
    DistillConfig,
    EmptyCollection,
    GateConfig,
    GateFailed,
    MigrationConfig,
    MigrationError,
    NoTextPayload,
    PCAProjection,
    Stage,
    UnsupportedVectors,
    VectorNotFound,
    beir_metrics,
    encoder_for,
    finalize,
    load_beir,
    make_plan,
    migrate,
    open_journal,
    retrieval_metrics,
    rollback,
    swap,
)
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.connectors.base import UNNAMED, Point
from qdrant_distill.folders import RunFolder
from qdrant_distill.migration import record
from tests.conftest import encode, random_unit

N = 240
TEACHER_DIM = 48
DIM = 16
OPEN_GATE = GateConfig(min_recall_at_10=0.0, min_spearman=-1.0)


def build_source(conn: QdrantConnector, texts: list[str], *, name: str = "docs_v1", alias: str | None = "docs",
                 named: bool = False, n: int = N, vectors: np.ndarray | None = None) -> np.ndarray:
    """A source collection: real texts, teacher-like (or given) vectors, optional named vectors with a sparse one."""
    vectors = random_unit(n, TEACHER_DIM, seed=7) if vectors is None else vectors[:n]
    vp = qm.VectorParams(size=vectors.shape[1], distance=qm.Distance.COSINE)
    conn.client.create_collection(
        name,
        vectors_config={"dense": vp} if named else vp,
        sparse_vectors_config={"bm25": qm.SparseVectorParams()} if named else None,
    )
    points = []
    for i in range(n):
        vecs: dict[str, Any] = {"dense": vectors[i]} if named else {UNNAMED: vectors[i]}
        if named:
            vecs["bm25"] = {"indices": [i % 11, 20 + i % 5], "values": [1.0, 0.5]}
        points.append(Point(id=i, payload={"text": texts[i], "n": i, "tags": ["a", str(i % 3)]}, vectors=vecs))
    conn.upsert(name, points)
    if alias:
        conn.create_alias(alias, name)
    return vectors


def config(tiny_model_path: Path, run_dir: Path, **overrides: Any) -> MigrationConfig:
    student = DistillConfig(base_model=str(tiny_model_path), max_steps=3, batch_size=16, head_init_samples=64,
                            early_stopping_patience=None)
    base: dict[str, Any] = dict(source="docs", dim=DIM, sample_size=120, student=student, gate=OPEN_GATE,
                                run_dir=str(run_dir), page_size=50, progress=False, sample_seed=1, verify_sample=32)
    base.update(overrides)
    return MigrationConfig(**base)


def snapshot(conn: QdrantConnector, collection: str) -> str:
    """A hash of every id, payload and vector of a collection."""
    h = hashlib.sha256()
    for page in conn.scroll(collection, page_size=100, with_vectors=True):
        for p in page.points:
            h.update(json.dumps([p.id, p.payload, p.vectors], sort_keys=True, default=str).encode())
    return h.hexdigest()


def points_of(conn: QdrantConnector, collection: str) -> dict[Any, Point]:
    return {p.id: p for page in conn.scroll(collection, page_size=100, with_vectors=True) for p in page.points}


@pytest.fixture
def conn() -> QdrantConnector:
    c = QdrantConnector.open(location=":memory:")
    yield c
    c.close()


def test_migrate_end_to_end_then_rollback_swap_and_finalize(conn, demo_texts, tiny_model_path, tmp_path) -> None:
    build_source(conn, demo_texts)
    before = snapshot(conn, "docs_v1")
    report = migrate(config(tiny_model_path, tmp_path / "run"), connector=conn)

    assert report.stage is Stage.SWAPPED and report.previous_target == "docs_v1"
    assert conn.alias_target("docs") == report.target == "docs_v1_distilled16"
    assert snapshot(conn, "docs_v1") == before  # the source is never modified
    src, dst = points_of(conn, "docs_v1"), points_of(conn, report.target)
    assert src.keys() == dst.keys() and report.points_written == N
    assert all(dst[i].payload == src[i].payload for i in src)
    assert {len(p.vectors[UNNAMED]) for p in dst.values()} == {DIM}
    assert report.verify["missing"] == 0 and report.verify["min_cosine"] > 0.99
    assert report.vector_bytes_after * TEACHER_DIM == report.vector_bytes_before * DIM
    # the report says which state the holdout kept, against the untrained start and the plain heads
    assert report.selection["chosen"] in report.selection["candidates"]
    # the gate's metrics are those of the backend the student runs on: its int8 graph, measured on the holdout
    from qdrant_distill.inference.formats import read_manifest

    assert report.backend == "onnx-int8"
    int8 = read_manifest(Path(report.student_path).parent / "onnx").checks["onnx-int8"].metrics
    assert report.metrics == {**report.selection["candidates"][report.selection["chosen"]], **int8}
    assert record.read_from(conn, report.target)["query_backend"] == "onnx-int8"
    from qdrant_distill.cli.render import report_table, selection_line

    assert report.selection["chosen"] in selection_line(report.selection) and report_table(report).row_count > 10
    # the dimension table of the sample, for the report: the default candidates below 48-d are none, --dim is one
    dims = DimsReport.read(RunFolder(tmp_path / "run").dims)
    assert dims.chosen == DIM and [r.dim for r in dims.rows] == [DIM] and dims.sample_size == report.sample_size

    meta = conn.describe(report.target).metadata["qdrant_distill"]
    assert meta["dim"] == DIM and meta["mode"] == "reembed" and meta["source"] == "docs_v1"
    enc = encoder_for(conn, "docs")
    assert enc.collection == report.target and enc.encode(["a query"]).shape == (1, DIM)

    journal = open_journal(tmp_path / "run")
    assert rollback(conn, journal) == "docs_v1" and conn.alias_target("docs") == "docs_v1"
    with pytest.raises(ConfigError, match="records no qdrant-distill encoder"):
        encoder_for(conn, "docs")
    with pytest.raises(MigrationError, match="finalize needs a swapped migration"):
        finalize(conn, journal)
    assert swap(conn, journal) == "docs_v1" and conn.alias_target("docs") == report.target
    assert finalize(conn, journal) == "docs_v1"
    assert not conn.collection_exists("docs_v1") and open_journal(tmp_path / "run").stage is Stage.FINALIZED
    assert finalize(conn, journal) is None  # nothing more to drop
    with pytest.raises(MigrationError, match="dropped by finalize"):
        rollback(conn, journal)


def test_named_vectors_keep_the_others_and_project_mode(conn, demo_texts, tiny_model_path, tmp_path) -> None:
    teacher = build_source(conn, demo_texts, named=True)
    report = migrate(config(tiny_model_path, tmp_path / "run", mode="project"), connector=conn)
    src, dst = points_of(conn, "docs_v1"), points_of(conn, report.target)
    assert conn.describe(report.target).vectors["dense"].size == DIM
    projection = PCAProjection.load(open_journal(tmp_path / "run").projection_path)
    expected = projection.transform(teacher)
    for i, p in dst.items():
        assert p.vectors["bm25"] == src[i].vectors["bm25"]  # the sparse vector travels unchanged
        np.testing.assert_allclose(p.vectors["dense"], expected[i], atol=1e-5)
    assert encoder_for(conn, "docs").vector_name == "dense"
    # the student encodes queries only: trained with the query recipe, except what the user set (max_steps...)
    saved = json.loads((Path(open_journal(tmp_path / "run").student_path) / "distill.json").read_text())
    assert saved["primary_metric"] == "pseudo_query/mrr@10" and saved["steps"] == 3
    assert (saved["config"]["head_init"], saved["config"]["pseudo_query_negatives"]) == ("ridge", "sample")
    assert saved["config"]["batch_size"] == 16  # set by the user, kept


def test_project_mode_with_a_pruned_teacher_as_query_encoder(conn, demo_texts, tiny_model_path, teacher_path,
                                                             tmp_path) -> None:
    """The pruned teacher gets the pruned query recipe: its body learns (on pseudo-queries), the user's layers kept."""
    build_source(conn, demo_texts, vectors=encode(SentenceTransformer(str(teacher_path)), demo_texts[:N]))
    student = DistillConfig(kind="pruned", keep_layers=2, max_steps=2, head_init_samples=64,
                            early_stopping_patience=None)
    report = migrate(config(tiny_model_path, tmp_path / "run", mode="project", student=student,
                            teacher_model=str(teacher_path)), connector=conn)
    assert report.stage is Stage.SWAPPED
    path = Path(open_journal(tmp_path / "run").student_path)
    saved = json.loads((path / "distill.json").read_text())
    assert (saved["kind"], saved["primary_metric"], saved["config"]["lr_body"]) == ("pruned", "pseudo_query/mrr@10",
                                                                                   5e-5)
    assert SentenceTransformer(str(path), device="cpu")[0].auto_model.config.num_hidden_layers == 2


class FailingUpserts(QdrantConnector):
    """Raises (not transient) on the n-th upsert into the target: a crash in the middle of re-embed."""

    def __init__(self, inner: QdrantConnector, fail_at: int) -> None:
        super().__init__(inner.client)
        self.fail_at, self.upserts = fail_at, 0

    def upsert(self, collection: str, points: Any, *, wait: bool = True) -> None:
        if collection != "docs_v1":
            self.upserts += 1
            if self.upserts == self.fail_at:
                raise RuntimeError("injected crash")
        super().upsert(collection, points, wait=wait)


def test_resume_after_a_crash_in_reembed_matches_a_clean_run(demo_texts, tiny_model_path, tmp_path) -> None:
    clean = QdrantConnector.open(location=":memory:")
    build_source(clean, demo_texts)
    migrate(config(tiny_model_path, tmp_path / "clean"), connector=clean)

    conn = QdrantConnector.open(location=":memory:")
    build_source(conn, demo_texts)
    cfg = config(tiny_model_path, tmp_path / "crash")
    with pytest.raises(RuntimeError, match="injected crash"):
        migrate(cfg, connector=FailingUpserts(conn, fail_at=3))
    journal = open_journal(tmp_path / "crash")
    assert journal.stage is Stage.CREATED and journal.points_written == 100 and journal.checkpoint is not None
    distilled_at = journal.stage_times["distilled"]
    report = migrate(cfg, connector=conn)
    assert report.stage is Stage.SWAPPED
    assert open_journal(tmp_path / "crash").stage_times["distilled"] == distilled_at  # not trained again

    a, b = points_of(clean, "docs_v1_distilled16"), points_of(conn, "docs_v1_distilled16")
    assert a.keys() == b.keys() and len(b) == N
    for i in a:
        assert a[i].payload == b[i].payload
        np.testing.assert_allclose(a[i].vectors[UNNAMED], b[i].vectors[UNNAMED], atol=1e-4)


def test_gate_stops_a_bad_student_and_nothing_changes(conn, demo_texts, tiny_model_path, tmp_path) -> None:
    build_source(conn, demo_texts)
    before = (snapshot(conn, "docs_v1"), conn.collections(), conn.aliases())
    strict = GateConfig(min_recall_at_10=0.99, min_spearman=0.99)
    with pytest.raises(GateFailed, match=r"fidelity/recall@10 = .* < 0.99 \(short by") as info:
        migrate(config(tiny_model_path, tmp_path / "run", gate=strict), connector=conn)
    assert {f["metric"] for f in info.value.failures} == {"fidelity/recall@10", "fidelity/spearman"}
    assert (snapshot(conn, "docs_v1"), conn.collections(), conn.aliases()) == before
    assert open_journal(tmp_path / "run").stage is Stage.DISTILLED
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")  # the report of a failed gate too
    assert ">below<" in page and 'class="example"' in page


def test_live_writes_during_reembed_are_caught_up(conn, demo_texts, tiny_model_path, tmp_path) -> None:
    build_source(conn, demo_texts)
    removed = conn.retrieve("docs_v1", [0], with_vectors=True)[0]
    conn.delete_points("docs_v1", [0])

    class WritesMeanwhile(QdrantConnector):
        fired = False

        def upsert(self, collection: str, points: Any, *, wait: bool = True) -> None:
            super().upsert(collection, points, wait=wait)
            if collection != "docs_v1" and not self.fired:
                # a writer touches ids the scroll has already passed (the first page is written)
                self.fired = True
                one = self.retrieve("docs_v1", [1], with_vectors=True)[0]
                super().upsert("docs_v1", [Point(0, {"text": "a brand new point"}, removed.vectors)])
                super().upsert("docs_v1", [Point(1, {**one.payload, "text": "changed text"}, one.vectors)])
                self.delete_points("docs_v1", [2])

    report = migrate(config(tiny_model_path, tmp_path / "run"), connector=WritesMeanwhile(conn.client))
    assert report.catch_up == {"added": 1, "updated": 1, "deleted": 1}
    dst = points_of(conn, report.target)
    assert dst[0].payload["text"] == "a brand new point" and 2 not in dst and dst[1].payload["text"] == "changed text"
    assert dst.keys() == points_of(conn, "docs_v1").keys()


def test_missing_text_policies(conn, demo_texts, tiny_model_path, tmp_path) -> None:
    build_source(conn, demo_texts)
    conn.client.set_payload("docs_v1", payload={"text": ""}, points=[5, 6])
    with pytest.raises(NoTextPayload, match="2 points have no text"):
        migrate(config(tiny_model_path, tmp_path / "run"), connector=conn)
    conn.delete_collection("docs_v1_distilled16")
    import shutil

    shutil.rmtree(tmp_path / "run")
    report = migrate(config(tiny_model_path, tmp_path / "run", missing_text="skip"), connector=conn)
    assert report.skipped == 2 and 5 not in points_of(conn, report.target)


def test_plan_refuses_bad_input_and_writes_nothing(conn, demo_texts, tiny_model_path, tmp_path) -> None:
    build_source(conn, demo_texts)
    build_source(conn, demo_texts, name="plain", alias=None, n=20)
    conn.client.create_collection("empty", vectors_config=qm.VectorParams(size=8, distance=qm.Distance.COSINE))
    conn.client.create_collection("taken", vectors_config=qm.VectorParams(size=8, distance=qm.Distance.COSINE))
    mv = qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM)
    conn.client.create_collection("multi", vectors_config=qm.VectorParams(size=8, distance=qm.Distance.DOT,
                                                                          multivector_config=mv))
    before = (conn.collections(), conn.aliases(), snapshot(conn, "docs_v1"))
    cases: list[tuple[dict[str, Any], type]] = [
        ({"source": "ghost"}, CollectionNotFound),
        ({"target": "taken"}, CollectionExists),
        ({"dim": TEACHER_DIM}, DimensionError),
        ({"dim": 500}, DimensionError),
        ({"vector_name": "nope"}, VectorNotFound),
        ({"source": "empty", "dim": 4}, EmptyCollection),
        ({"source": "multi", "dim": 4}, UnsupportedVectors),
        ({"text_field": "body"}, NoTextPayload),
        ({"text_template": "{title} {abstract}"}, NoTextPayload),
        ({"source": "plain", "alias": "taken", "sample_size": 10}, AliasConflict),
        ({"student": DistillConfig(base_model="./no/such/model")}, ConfigError),
        ({"mode": "projection-only"}, ConfigError),
    ]
    for overrides, error in cases:
        with pytest.raises(error):
            make_plan(config(tiny_model_path, tmp_path / "run", **overrides), conn)
    assert (conn.collections(), conn.aliases(), snapshot(conn, "docs_v1")) == before
    plan = make_plan(config(tiny_model_path, tmp_path / "run", source="plain", sample_size=10, dim=4), conn)
    assert plan.alias is None and "plain collection" in plan.swap
    assert "docs_v1" in make_plan(config(tiny_model_path, tmp_path / "run"), conn).render()


def test_a_plain_collection_gets_a_new_alias(conn, demo_texts, tiny_model_path, tmp_path) -> None:
    build_source(conn, demo_texts, alias=None)
    report = migrate(config(tiny_model_path, tmp_path / "run", source="docs_v1", alias="live"), connector=conn)
    assert report.stage is Stage.SWAPPED and conn.alias_target("live") == report.target
    journal = open_journal(tmp_path / "run")
    assert rollback(conn, journal) is None and conn.alias_target("live") is None


def write_beir(folder: Path, texts: list[str], *, shift: int = 0, n: int = 40, first_id: int = 0) -> None:
    """A labelled folder whose queries are the documents themselves; query i is judged relevant to document
    i + shift (shift 0: right labels, so a query ranks its own document first). Document i has id first_id + i."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": str(first_id + i), "title": "", "text": t}) + "\n"
                                                 for i, t in enumerate(texts[:n])))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n"
                                                  for i, t in enumerate(texts[:n])))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                               + "".join(f"q{i}\t{first_id + (i + shift) % n}\t1\n" for i in range(n)))


def test_labelled_queries_gate_on_ndcg(conn, demo_texts, tiny_model_path, tmp_path) -> None:
    build_source(conn, demo_texts)
    write_beir(tmp_path / "beir", demo_texts, shift=7)  # wrong labels: nDCG@10 near 0
    gate = GateConfig(min_recall_at_10=0.0, min_spearman=-1.0, min_ndcg_at_10=0.5, queries=str(tmp_path / "beir"))
    with pytest.raises(GateFailed, match="labelled/ndcg@10"):
        migrate(config(tiny_model_path, tmp_path / "run", gate=gate), connector=conn)
    assert conn.alias_target("docs") == "docs_v1" and conn.collections() == ["docs_v1"]
    write_beir(tmp_path / "beir", demo_texts)  # right labels: the rerun measures again and passes
    report = migrate(config(tiny_model_path, tmp_path / "run", gate=gate), connector=conn)
    assert report.stage is Stage.SWAPPED and report.metrics["labelled/ndcg@10"] > 0.9


def test_labelled_gate_in_project_mode_answers_from_the_stored_vectors(conn, demo_texts, tiny_model_path,
                                                                        tmp_path) -> None:
    """In project mode the documents keep their projected stored vectors: the labelled gate measures exactly that."""
    teacher = build_source(conn, demo_texts)
    write_beir(tmp_path / "missing", demo_texts, first_id=10_000)  # ids that are not points of the source
    gate = GateConfig(min_recall_at_10=0.0, min_spearman=-1.0, min_ndcg_at_10=0.0, queries=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="none of the 40 documents judged in .* is a point of docs_v1"):
        migrate(config(tiny_model_path, tmp_path / "run", mode="project", gate=gate), connector=conn)  # in plan
    assert conn.collections() == ["docs_v1"]

    write_beir(tmp_path / "beir", demo_texts)
    gate = gate.model_copy(update={"queries": str(tmp_path / "beir")})
    report = migrate(config(tiny_model_path, tmp_path / "run", mode="project", gate=gate), connector=conn)
    journal = open_journal(tmp_path / "run")
    student = SentenceTransformer(journal.student_path, device="cpu")
    data = load_beir(tmp_path / "beir")
    docs = PCAProjection.load(journal.projection_path).transform(teacher[:40])
    queries = student.encode(data.queries, normalize_embeddings=True)
    expected = retrieval_metrics(queries, docs, data.qrels, data.query_ids, data.doc_ids)["ndcg@10"]
    assert report.metrics["labelled/ndcg@10"] == pytest.approx(expected, abs=1e-5)
    # the symmetric measure (the student encoding the labelled corpus) would be another, wrong figure here
    assert beir_metrics(student, tmp_path / "beir")["ndcg@10"] > expected + 0.1


def test_a_dot_collection_of_unit_vectors_is_planned_with_a_note(conn, demo_texts, tiny_model_path, tmp_path) -> None:
    """Dot over unit vectors ranks like cosine: the unit vectors a student writes keep that; the plan says so."""
    vectors = random_unit(N, TEACHER_DIM, seed=7)
    conn.client.create_collection("dots", vectors_config=qm.VectorParams(size=TEACHER_DIM, distance=qm.Distance.DOT))
    conn.upsert("dots", [Point(id=i, payload={"text": demo_texts[i]}, vectors={UNNAMED: vectors[i]}) for i in range(N)])
    plan = make_plan(config(tiny_model_path, tmp_path / "run", source="dots"), conn)
    assert plan.distance == "Dot" and any("unit-length vectors" in note for note in plan.notes)


def test_abandon_clears_a_run_never_swapped_in_so_the_next_one_starts_afresh(conn, demo_texts, tiny_model_path,
                                                                             tmp_path) -> None:
    from qdrant_distill.migration.operate import abandon_run

    build_source(conn, demo_texts)
    cfg = config(tiny_model_path, tmp_path / "run")
    with pytest.raises(RuntimeError, match="injected crash"):
        migrate(cfg, connector=FailingUpserts(conn, fail_at=2))
    assert conn.collection_exists("docs_v1_distilled16")
    with pytest.raises(CollectionExists, match="abandon"):  # another run folder cannot get past what was left
        make_plan(config(tiny_model_path, tmp_path / "other"), conn)
    assert abandon_run(tmp_path / "run", conn) == "docs_v1_distilled16"
    assert not conn.collection_exists("docs_v1_distilled16") and conn.alias_target("docs") == "docs_v1"
    assert not (tmp_path / "run" / "journal.json").exists() and not (tmp_path / "run" / "sample.npz").exists()
    assert migrate(cfg, connector=conn).stage is Stage.SWAPPED  # the same command starts afresh
    with pytest.raises(MigrationError, match="live"):
        abandon_run(tmp_path / "run", conn)
    assert conn.collection_exists("docs_v1_distilled16")


def test_plan_notes_an_untrained_run_and_refuses_a_collection_too_small(conn, demo_texts, tiny_model_path,
                                                                       tmp_path) -> None:
    build_source(conn, demo_texts)
    untrained = DistillConfig(base_model=str(tiny_model_path), epochs=0)
    plan = make_plan(config(tiny_model_path, tmp_path / "run", student=untrained), conn)
    assert any("--epochs 0" in note for note in plan.notes)
    build_source(conn, demo_texts, name="one", alias=None, n=1)
    with pytest.raises(EmptyCollection, match="at least 6"):  # not a hint to use --sample-size 1
        make_plan(config(tiny_model_path, tmp_path / "run1", source="one", sample_size=2), conn)


def test_a_resumed_run_that_fails_on_its_saved_sample_says_how_to_sample_afresh(conn, demo_texts, tiny_model_path,
                                                                                tmp_path) -> None:
    from qdrant_distill.errors import InvalidVectors
    from qdrant_distill.migration.journal import Journal
    from qdrant_distill.migration.pipeline import stage_sample
    from qdrant_distill.migration.samples import load_sample
    from qdrant_distill.migration.samples import save_sample as _save_sample

    build_source(conn, demo_texts)
    cfg = config(tiny_model_path, tmp_path / "run")
    plan = make_plan(cfg, conn)
    journal = Journal.open(Path(plan.run_dir), cfg.fingerprint())
    journal.source_collection, journal.target = plan.source_collection, plan.target
    stage_sample(cfg, conn, journal, plan)
    path = tmp_path / "run" / "sample.npz"
    stale = load_sample(path)
    stale.vectors[:3] = 0.0  # the saved sample holds data that was bad when it was drawn
    _save_sample(path, stale)
    with pytest.raises(InvalidVectors, match="resumed from the sample saved") as err:
        migrate(cfg, connector=conn)
    assert "--restart" in str(err.value) and "abandon" in str(err.value)


def test_an_int8_graph_below_the_gate_gives_way_to_fp32(conn, demo_texts, tiny_model_path, tmp_path) -> None:
    """The gate runs on the backend the student will use. A gate nothing passes keeps int8 (a relaxed gate may pass
    it later); an int8 graph that falls short where fp32 passes is refused, and the student runs on fp32."""
    from qdrant_distill.errors import GateFailed
    from qdrant_distill.inference.formats import read_manifest

    build_source(conn, demo_texts)
    run_dir = tmp_path / "run"
    with pytest.raises(GateFailed):
        migrate(config(tiny_model_path, run_dir, gate=GateConfig(min_recall_at_10=1.0, min_spearman=-1)),
                connector=conn)
    journal = open_journal(run_dir)
    manifest = read_manifest(journal.export_path)
    assert journal.backend == "onnx-int8" and manifest.checks["onnx-int8"].accepted
    fp32_recall = manifest.reference_metrics["fidelity/recall@10"]
    assert fp32_recall > 0.01
    # fault injection: an int8 graph that lost every neighbour on the holdout
    manifest.checks["onnx-int8"].metrics["fidelity/recall@10"] = 0.0
    manifest.save(Path(journal.export_path))
    report = migrate(config(tiny_model_path, run_dir, gate=GateConfig(min_recall_at_10=0.01, min_spearman=-1)),
                     connector=conn)
    assert report.stage is Stage.SWAPPED and report.backend == "onnx"
    assert report.metrics["fidelity/recall@10"] == pytest.approx(fp32_recall)
    refused = read_manifest(journal.export_path).checks["onnx-int8"]
    assert not refused.accepted and refused.reason.startswith("below the quality gate: fidelity/recall@10 = 0.0000")
    assert record.read_from(conn, report.target)["query_backend"] == "onnx"
    assert encoder_for(conn, "docs").encoder.describe().startswith("onnx ")
