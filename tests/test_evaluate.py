"""Metrics against hand-computed values on small examples; BEIR and STSb loaders on small files."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest

from qdrant_distill.errors import ConfigError, InvalidVectors
from qdrant_distill.evaluation.beir import load_beir
from qdrant_distill.evaluation.metrics import (
    FidelityEvaluator,
    fidelity,
    load_stsb,
    ndcg_at_k,
    pseudo_query_mrr,
    retrieval_metrics,
    spearman,
    sts_spearman,
)
from qdrant_distill.migration.gate import gate_failures
from tests.conftest import SHARED_DATA, random_unit


def test_spearman_hand_values() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks [1,2,3] vs [2,1,3]: d^2 = 1+1+0 -> 1 - 6*2/(3*8) = 0.5
    assert spearman([1, 2, 3], [2, 1, 3]) == pytest.approx(0.5)
    # ties are averaged: [1, 2.5, 2.5, 4] vs [1,2,3,4] -> Pearson of ranks
    a = np.array([1, 2.5, 2.5, 4]) - 2.5
    b = np.array([1, 2, 3, 4]) - 2.5
    assert spearman([0, 1, 1, 2], [1, 2, 3, 4]) == pytest.approx(float(a @ b / np.sqrt((a @ a) * (b @ b))))
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_spearman_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 200), rng.standard_normal(200)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-10)


def test_ndcg_hand_values() -> None:
    # one relevant doc at rank 2: 1/log2(3)
    assert ndcg_at_k(["a", "b", "c"], {"b": 1}) == pytest.approx(1 / math.log2(3))
    # two relevant at ranks 1 and 3: (1 + 1/2) / (1 + 1/log2(3))
    assert ndcg_at_k(["x", "b", "y"], {"x": 1, "y": 1}) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["a"], {"z": 1}) == 0.0


def test_retrieval_metrics_hand_values() -> None:
    docs = np.eye(4, dtype=np.float32)
    doc_ids = ["d0", "d1", "d2", "d3"]
    # q0 points at d0 then d1; q1 points at d2 then d3 (then d0, d1 at 0)
    queries = np.array([[1.0, 0.5, 0, 0], [0, 0, 1.0, 0.5]], dtype=np.float32)
    qrels = {"q0": {"d0": 1}, "q1": {"d3": 1}, "q_unjudged": {}}
    m = retrieval_metrics(queries, docs, qrels, ["q0", "q1"], doc_ids)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(3)) / 2)
    assert m["mrr@10"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["recall@100"] == pytest.approx(1.0)
    with pytest.raises(InvalidVectors):
        retrieval_metrics(queries[:, :3], docs, qrels, ["q0", "q1"], doc_ids)
    with pytest.raises(ConfigError):
        retrieval_metrics(queries, docs, {}, ["q0", "q1"], doc_ids)


def test_fidelity_identical_and_rotated_spaces_are_perfect() -> None:
    t = random_unit(60, 16)
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((16, 16)))
    m = fidelity((t @ q).astype(np.float32), t, projected_targets=t @ q)
    assert m["fidelity/recall@10"] == pytest.approx(1.0)
    assert m["fidelity/spearman"] == pytest.approx(1.0)
    assert m["fidelity/cosine"] == pytest.approx(1.0, abs=1e-5)
    rnd = fidelity(random_unit(60, 16, seed=5), t)
    assert rnd["fidelity/recall@10"] < 0.5 and abs(rnd["fidelity/spearman"]) < 0.2
    assert "fidelity/cosine" not in rnd


def test_fidelity_neighbour_recall_hand_value() -> None:
    # points on the unit circle at these angles; no two neighbours tie
    angles = np.array([0.0, 0.1, 0.25, 1.5])
    t = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    s = t.copy()
    s[3] = [np.cos(0.04), np.sin(0.04)]  # point 3 moved next to 0
    m = fidelity(s, t, k=1)
    # teacher NN: 0->1, 1->0, 2->1, 3->2; student NN: 0->3, 1->3, 2->1, 3->0: only point 2 keeps its neighbour
    assert m["fidelity/recall@1"] == pytest.approx(0.25)


def test_fidelity_subsamples_large_pools() -> None:
    t = random_unit(300, 8)
    s = t + 0.3 * random_unit(300, 8, seed=7)
    full, sub = fidelity(s, t, max_points=300), fidelity(s, t, max_points=50)
    assert sub["fidelity/spearman"] != full["fidelity/spearman"]  # a subset of the pairs was used
    assert sub == fidelity(s, t, max_points=50)  # the same subset every time
    assert abs(sub["fidelity/spearman"] - full["fidelity/spearman"]) < 0.15
    assert fidelity(t, t, max_points=50)["fidelity/spearman"] == pytest.approx(1.0)


def test_pseudo_query_mrr_hand_value() -> None:
    docs = np.eye(4, dtype=np.float32)
    # query 0 finds doc 0 first; query 1 ranks doc 2 above doc 1 (rank 2); query 2 finds doc 2; query 3 ranks docs
    # 0, 1 and 2 above doc 3 (rank 4)
    queries = np.array([[1, 0, 0, 0], [0, 0.6, 0.8, 0], [0, 0, 1, 0], [0.5, 0.5, 0.5, 0.4]], dtype=np.float32)
    assert pseudo_query_mrr(queries, docs) == pytest.approx((1 + 1 / 2 + 1 + 1 / 4) / 4)
    assert pseudo_query_mrr(queries, docs, k=3) == pytest.approx((1 + 1 / 2 + 1 + 0) / 4)
    assert pseudo_query_mrr(docs, docs) == 1.0
    with pytest.raises(InvalidVectors):
        pseudo_query_mrr(queries[:3], docs)


def test_fidelity_evaluator_gate() -> None:
    class Echo:
        def __init__(self, vecs):
            self.vecs = vecs

        def encode(self, texts, **_):
            return self.vecs[: len(texts)]

    t = random_unit(40, 12)
    ev = FidelityEvaluator([f"t{i}" for i in range(40)], t)
    thresholds = {"fidelity/recall@10": 0.9}
    assert ev.primary_metric == "fidelity/recall@10" and ev.greater_is_better
    good = ev(Echo(t))
    assert good["fidelity/recall@10"] == pytest.approx(1.0) and gate_failures(good, thresholds) == []
    bad = ev(Echo(random_unit(40, 12, seed=9)))
    assert [f["metric"] for f in gate_failures(bad, thresholds)] == ["fidelity/recall@10"]


def test_load_beir_small_folder(tmp_path) -> None:
    (tmp_path / "qrels").mkdir()
    with gzip.open(tmp_path / "corpus.jsonl.gz", "wt") as fh:
        for i in range(3):
            fh.write(json.dumps({"_id": f"d{i}", "title": f"T{i}", "text": f"body {i}"}) + "\n")
    with open(tmp_path / "queries.jsonl", "w") as fh:
        for i in range(3):
            fh.write(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td0\t2\n")
    ds = load_beir(tmp_path)
    assert ds.doc_ids == ["d0", "d1", "d2"] and ds.doc_texts[1] == "T1 body 1"
    assert ds.query_ids == ["q1", "q2"] and ds.queries == ["query 1", "query 2"]
    assert ds.qrels == {"q1": {"d2": 1.0}, "q2": {"d0": 2.0}}
    with pytest.raises(ConfigError):
        load_beir(tmp_path, split="train")


def test_load_stsb_and_spearman(tmp_path) -> None:
    rows = ["split\tgenre\tdataset\tyear\tsid\tscore\tsentence1\tsentence2"]
    rows += [f"test\tg\td\ty\t{i}\t{s}\ta{i}\tb{i}" for i, s in enumerate([1.0, 3.0, 5.0])]
    rows += ["train\tg\td\ty\t9\t2.0\tx\ty\textra\tfields"]
    (tmp_path / "stsbenchmark.tsv").write_text("\n".join(rows) + "\n")
    pairs = load_stsb(tmp_path)
    assert pairs.scores == [1.0, 3.0, 5.0] and pairs.sentences1[0] == "a0"
    assert len(load_stsb(tmp_path / "stsbenchmark.tsv", split="train").scores) == 1
    v1 = np.array([[1, 0], [1, 0], [1, 0]], dtype=np.float32)
    v2 = np.array([[0, 1], [1, 1], [1, 0.1]], dtype=np.float32)  # cosines rise with the gold scores
    assert sts_spearman(v1, pairs, vecs2=v2) == pytest.approx(1.0)


@pytest.mark.skipif(not (SHARED_DATA / "scifact").exists(), reason="shared data absent")
def test_shared_scifact_teacher_reproduces_published_ndcg() -> None:
    ds = load_beir(SHARED_DATA / "scifact")
    data = np.load(SHARED_DATA / "scifact" / "teacher_all-mpnet-base-v2.npz")
    assert len(ds.query_ids) == 300 and len(ds.doc_ids) == 5183
    q_index = {q: i for i, q in enumerate(data["query_ids"].astype(str))}
    q = data["query_vecs"][[q_index[i] for i in ds.query_ids]]
    m = retrieval_metrics(q, data["doc_vecs"], ds.qrels, ds.query_ids, data["doc_ids"].astype(str))
    assert m["ndcg@10"] == pytest.approx(0.6557, abs=5e-4)
