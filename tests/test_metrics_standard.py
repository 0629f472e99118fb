"""Our labelled metrics against the field's standard: nDCG@10, recall@100 and MRR@10 against ir-measures (its
pytrec_eval provider: trec_eval, what BEIR reports), Spearman against scipy, on real runs with graded qrels, several
relevant documents a query, ties, and queries that find nothing relevant in their top k.

trec_eval ranks a run by score descending and breaks ties by document id descending; it averages over every query
that has qrels (a query judged only 0 counts, with 0). ir-measures' ``RR@10`` comes from its msmarco provider, which
breaks ties by id *ascending*; MRR@10 is therefore checked with pytrec_eval's ``RR`` on each query's trec_eval top 10.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import ir_measures
import numpy as np
import pytest
from ir_measures import RR, R, nDCG
from scipy import stats

from qdrant_distill.evaluation.beir import load_beir
from qdrant_distill.evaluation.metrics import (
    fidelity,
    load_stsb,
    retrieval_metrics,
    spearman,
    sts_spearman,
)
from qdrant_distill.inference.encoders import load_encoder
from qdrant_distill.migration.gate import beir_metrics
from tests.conftest import SHARED_DATA

Run = dict[str, dict[str, float]]
Qrels = Mapping[str, Mapping[str, float]]


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def full_run(query_vecs: np.ndarray, doc_vecs: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str]) -> Run:
    """Every document's cosine for every query: the run trec_eval ranks by itself."""
    scores = unit(query_vecs) @ unit(doc_vecs).T
    return {q: {d: float(s) for d, s in zip(doc_ids, row)} for q, row in zip(query_ids, scores)}


def standard(qrels: Qrels, run: Run) -> dict[str, float]:
    """The three metrics as ir-measures (pytrec_eval) computes them, on the queries of the run that have qrels."""
    judged = {q: {d: int(g) for d, g in rels.items()} for q, rels in qrels.items() if q in run and rels}
    found = ir_measures.pytrec_eval.calc_aggregate([nDCG @ 10, R @ 100], judged, run)
    # trec_eval's own top 10 (score descending, ties by id descending); its nDCG@10 equals the full run's only if
    # this is trec_eval's order
    top10 = {q: dict(sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10]) for q, docs in run.items()}
    cut = ir_measures.pytrec_eval.calc_aggregate([nDCG @ 10, RR], judged, top10)
    assert cut[nDCG @ 10] == pytest.approx(found[nDCG @ 10], abs=1e-12)
    return {"ndcg@10": found[nDCG @ 10], "recall@100": found[R @ 100], "mrr@10": cut[RR]}


def assert_same(ours: Mapping[str, float], theirs: Mapping[str, float]) -> None:
    assert set(ours) == set(theirs)
    for key in theirs:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key


# ------------------------------------------------------------------------------------------------------- retrieval
def test_a_run_with_massive_ties_and_graded_qrels_matches_trec_eval() -> None:
    """300 documents on 70 directions (entries 0 or 0.5, four of them: every cosine is exact, most are tied), ids
    whose string order is not their number order, grades 0/1/2, queries with up to 12 relevant documents, one
    judged only 0, one whose relevant documents are all outside its top 100, queries without qrels."""
    rng = np.random.default_rng(7)
    directions = np.array([[0.5 if (m >> b) & 1 else 0.0 for b in range(8)] for m in range(256)
                           if m.bit_count() == 4], dtype=np.float32)
    doc_vecs = directions[rng.integers(0, len(directions), 300)]
    query_vecs = directions[rng.integers(0, len(directions), 40)]
    doc_ids = [f"d{i}" for i in range(300)]
    query_ids = [f"q{i}" for i in range(40)]
    qrels: dict[str, dict[str, float]] = {}
    for i, q in enumerate(query_ids[:36]):
        picked = rng.choice(300, size=int(rng.integers(1, 13)), replace=False)
        qrels[q] = {doc_ids[j]: float(rng.integers(0, 3)) for j in picked}
        qrels[q][doc_ids[int(picked[0])]] = float(1 + i % 2)  # at least one relevant
    qrels["q36"] = {"d1": 0.0, "d2": 0.0}  # judged, nothing relevant
    scores = unit(query_vecs[37:38]) @ unit(doc_vecs).T
    qrels["q37"] = {doc_ids[j]: 2.0 for j in np.argsort(scores[0], kind="stable")[:3]}  # far below the top 100
    run = full_run(query_vecs, doc_vecs, query_ids, doc_ids)
    assert len(set(run["q0"].values())) <= 5  # ties everywhere: cosines are multiples of 0.25

    ours = retrieval_metrics(query_vecs, doc_vecs, qrels, query_ids, doc_ids)
    assert_same(ours, standard(qrels, run))
    assert 0 < ours["mrr@10"] < 1 and 0 < ours["recall@100"] < 1


def test_a_real_model_on_a_beir_folder_matches_trec_eval(tiny_model_path: Path, demo_texts: list[str],
                                                         tmp_path: Path) -> None:
    """A tiny real model retrieves real texts (WordNet glosses, a few twice: tied documents) from a BEIR folder
    with graded qrels; beir_metrics equals ir-measures on the same vectors."""
    texts = demo_texts[:150] + demo_texts[:10]  # d150..d159 repeat d0..d9
    rng = np.random.default_rng(3)
    corpus = [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(texts)]
    query_rows = [(f"q{i}", demo_texts[j][: 40]) for i, j in enumerate(rng.choice(150, 30, replace=False))]
    qrels = {q: {f"d{int(j)}": float(rng.integers(1, 3)) for j in rng.choice(160, int(rng.integers(1, 6)),
                                                                              replace=False)}
             for q, _ in query_rows}
    qrels["q0"][f"d{150 + 3}"] = 2.0  # a tied duplicate among the relevant documents
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in corpus)
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in query_rows))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{int(g)}\n" for q, rels in qrels.items() for d, g in rels.items()))

    encoder = load_encoder(tiny_model_path)
    data = load_beir(folder)
    doc_vecs = encoder.encode(data.doc_texts, kind="document")
    doc_vecs[150:] = doc_vecs[:10]  # exactly tied, as a corpus with duplicate documents stored once gives them
    query_vecs = encoder.encode(data.queries, kind="query")

    ours = beir_metrics(encoder, folder, doc_vectors=lambda ids: doc_vecs[[data.doc_ids.index(d) for d in ids]])
    assert_same(ours, standard(data.qrels, full_run(query_vecs, doc_vecs, data.query_ids, data.doc_ids)))


@pytest.mark.skipif(not (SHARED_DATA / "scifact" / "teacher_all-mpnet-base-v2.npz").exists(),
                    reason="the shared SciFact vectors are not here")
def test_scifact_with_mpnet_vectors_matches_trec_eval() -> None:
    """BEIR SciFact, its real test qrels and all-mpnet-base-v2's stored vectors (100 of the 300 test queries)."""
    data = load_beir(SHARED_DATA / "scifact")
    stored = np.load(SHARED_DATA / "scifact" / "teacher_all-mpnet-base-v2.npz")
    query_row = {q: i for i, q in enumerate(stored["query_ids"].tolist())}
    doc_ids = stored["doc_ids"].tolist()
    query_ids = data.query_ids[:100]
    query_vecs = stored["query_vecs"][[query_row[q] for q in query_ids]]

    ours = retrieval_metrics(query_vecs, stored["doc_vecs"], data.qrels, query_ids, doc_ids)
    assert_same(ours, standard(data.qrels, full_run(query_vecs, stored["doc_vecs"], query_ids, doc_ids)))
    assert ours["ndcg@10"] > 0.5  # mpnet's SciFact nDCG@10 is about 0.65


# -------------------------------------------------------------------------------------------------------- spearman
@pytest.mark.parametrize("seed", range(4))
def test_spearman_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    a = rng.integers(0, 6, n).astype(float)  # heavy ties
    b = np.round(rng.standard_normal(n) + 0.3 * a, 1)  # ties too, correlated with a
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-10)
    assert spearman(b, b) == pytest.approx(1.0)
    assert spearman(a, -b) == pytest.approx(stats.spearmanr(a, -b).statistic, abs=1e-10)


def test_spearman_of_a_constant_is_zero_where_scipy_says_nan() -> None:
    """The one deliberate difference: no ranking information gives 0.0 (a gate can compare it), not NaN."""
    with pytest.warns(stats.ConstantInputWarning):
        assert np.isnan(stats.spearmanr([1, 1, 1, 1], [1, 2, 3, 4]).statistic)
    assert spearman([1, 1, 1, 1], [1, 2, 3, 4]) == 0.0


@pytest.mark.skipif(not (SHARED_DATA / "stsb").exists(), reason="the shared STS Benchmark is not here")
def test_sts_and_fidelity_spearman_match_scipy(tiny_model_path: Path) -> None:
    """STSb gold scores are full of ties (0.0, 5.0, ...); fidelity's pairwise cosines of two real spaces."""
    pairs = load_stsb(SHARED_DATA / "stsb")
    pairs.sentences1, pairs.sentences2, pairs.scores = pairs.sentences1[:200], pairs.sentences2[:200], \
        pairs.scores[:200]
    encoder = load_encoder(tiny_model_path)
    v1, v2 = encoder.encode(pairs.sentences1), encoder.encode(pairs.sentences2)
    cosines = np.sum(unit(v1) * unit(v2), axis=1)
    assert len(set(pairs.scores)) < len(pairs.scores)
    assert sts_spearman(v1, pairs, vecs2=v2) == pytest.approx(stats.spearmanr(cosines, pairs.scores).statistic,
                                                              abs=1e-6)

    student, teacher = unit(v1[:60]), unit(v2[:60])
    iu = np.triu_indices(60, k=1)
    expected = stats.spearmanr((student @ student.T)[iu], (teacher @ teacher.T)[iu]).statistic
    assert fidelity(student, teacher)["fidelity/spearman"] == pytest.approx(expected, abs=1e-6)
