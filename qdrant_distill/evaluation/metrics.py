"""How close a student is to its teacher, and how good it is on labelled data.

Label-free fidelity (the migration's quality gate) compares a student's vectors with the stored teacher vectors of the
same held-out points; labelled metrics (nDCG@10, recall@100, MRR@10, STS Spearman) need a BEIR folder or STS pairs.
Everything here is pure: arrays (or texts, with something that encodes them) in, numbers out. Loading a model is
:func:`~qdrant_distill.inference.encoders.load_encoder`; the gate that judges these numbers, and labelled queries answered
through a run's encoder, are :mod:`qdrant_distill.migration.gate`; reading stored vectors is the connectors' (
:func:`qdrant_distill.connectors.scroll.stored_vectors`); reading a BEIR folder is :mod:`qdrant_distill.evaluation.beir`'s (``load_beir`` and
``BeirDataset`` are re-exported here).
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_distill.errors import ConfigError, InvalidVectors

__all__ = [
    "DEFAULT_K",
    "FidelityEvaluator",
    "StsPairs",
    "fidelity",
    "load_stsb",
    "ndcg_at_k",
    "pseudo_query_mrr",
    "retrieval_metrics",
    "spearman",
    "sts_spearman",
]

logger = logging.getLogger(__name__)

DEFAULT_K = 10
SPEARMAN_MAX_POINTS = 2000  # pairwise cosines of at most this many points (~2M pairs)
PRIMARY_METRIC = "fidelity/recall@10"
QUERY_METRIC = "pseudo_query/mrr@10"  # query-side, label-free: see pseudo_query_mrr


# ---------------------------------------------------------------------------------------------------------- helpers
def _as_unit(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise InvalidVectors(f"{name} must be a 2-d array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidVectors(f"{name} contains non-finite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as scipy.stats.rankdata), float64."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    # boundaries of runs of equal values
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of two equally long sequences (ties averaged); 0.0 when either is constant."""
    ra, rb = _rankdata(np.asarray(a)), _rankdata(np.asarray(b))
    if len(ra) != len(rb):
        raise ValueError("spearman needs sequences of equal length")
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    rows = np.arange(scores.shape[0])[:, None]
    return part[rows, np.argsort(-scores[rows, part], axis=1, kind="stable")]


def _ranked(scores: np.ndarray, k: int, id_rank: np.ndarray) -> list[np.ndarray]:
    """Indices of the k best documents per row as trec_eval ranks a run: score descending, ties by document id
    descending (``id_rank``: each document's place in ascending id order), so ties cut at k the way BEIR's
    pytrec_eval numbers cut them."""
    k = min(k, scores.shape[1])
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    out = []
    for row, cut in zip(scores, kth):
        candidates = np.flatnonzero(row >= cut)  # the top k and everything tied with the k-th
        out.append(candidates[np.lexsort((-id_rank[candidates], -row[candidates]))][:k])
    return out


# ---------------------------------------------------------------------------------------------------------- fidelity
def fidelity(
    student_vecs: np.ndarray,
    teacher_vecs: np.ndarray,
    *,
    k: int = DEFAULT_K,
    projected_targets: np.ndarray | None = None,
    max_points: int = SPEARMAN_MAX_POINTS,
    seed: int = 0,
) -> dict[str, float]:
    """Label-free agreement between a student's and the teacher's vectors of the same points.

    ``fidelity/recall@k``: overlap of each point's k nearest neighbours (itself excluded, exact cosine) in student
    space and in teacher space, averaged. ``fidelity/spearman``: Spearman between the two spaces' pairwise cosines
    (upper triangle; a random subset of ``max_points`` points when larger). ``fidelity/cosine``: mean cosine between
    each student vector and its projected target, when ``projected_targets`` (same dimension as the student) is given.
    """
    s = _as_unit(student_vecs, "student vectors")
    t = _as_unit(teacher_vecs, "teacher vectors")
    if len(s) != len(t):
        raise InvalidVectors(f"{len(s)} student vectors but {len(t)} teacher vectors")
    n = len(s)
    if n < 2:
        raise InvalidVectors("fidelity needs at least 2 points")
    k_eff = min(k, n - 1)
    sim_s = s @ s.T
    sim_t = t @ t.T
    np.fill_diagonal(sim_s, -np.inf)
    np.fill_diagonal(sim_t, -np.inf)
    nn_s, nn_t = _topk(sim_s, k_eff), _topk(sim_t, k_eff)
    overlap = [len(set(a.tolist()) & set(b.tolist())) / k_eff for a, b in zip(nn_s, nn_t)]
    out = {f"fidelity/recall@{k}": float(np.mean(overlap))}

    idx = np.arange(n)
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    iu = np.triu_indices(len(idx), k=1)
    out["fidelity/spearman"] = spearman(sim_s[np.ix_(idx, idx)][iu], sim_t[np.ix_(idx, idx)][iu])

    if projected_targets is not None:
        p = _as_unit(projected_targets, "projected targets")
        if p.shape != s.shape:
            raise InvalidVectors(f"projected targets have shape {p.shape}, the student's vectors {s.shape}")
        out["fidelity/cosine"] = float(np.mean(np.sum(s * p, axis=1)))
    return out


def pseudo_query_mrr(query_vecs: np.ndarray, doc_vecs: np.ndarray, *, k: int = DEFAULT_K) -> float:
    """MRR@k of query ``i`` finding document ``i`` among all ``doc_vecs`` by exact cosine.

    With pseudo-queries cut from held-out documents this is a label-free proxy for query-side quality: against the
    documents' projected teacher vectors it measures asymmetric use (the student encodes queries only), against the
    student's own document vectors symmetric use.
    """
    q = _as_unit(query_vecs, "query vectors")
    d = _as_unit(doc_vecs, "document vectors")
    if len(q) != len(d) or q.shape[1] != d.shape[1]:
        raise InvalidVectors(f"{q.shape} query vectors for {d.shape} document vectors")
    scores = q @ d.T
    own = scores[np.arange(len(q)), np.arange(len(q))]
    rank = (scores > own[:, None]).sum(axis=1)  # documents scoring strictly higher than the right one
    return float(np.mean(np.where(rank < k, 1.0 / (rank + 1), 0.0)))


@dataclass
class FidelityEvaluator:
    """The quality gate: fidelity of a model's vectors of held-out texts against their stored teacher vectors.

    Like a sentence-transformers ``SentenceEvaluator`` it declares its ``primary_metric`` and ``greater_is_better``
    and returns a ``dict[str, float]`` of prefixed keys (judged by :func:`qdrant_distill.migration.gate.gate_failures`). With ``pseudo_queries`` (one query-like text per held-out text) it also
    reports ``pseudo_query/mrr@10`` against the projected targets and ``pseudo_query/self_mrr@10`` against the
    model's own vectors of the held-out texts (:func:`pseudo_query_mrr`).
    """

    texts: list[str]
    teacher_vectors: np.ndarray
    projected_targets: np.ndarray | None = None
    k: int = DEFAULT_K
    batch_size: int = 32
    primary_metric: str = PRIMARY_METRIC
    greater_is_better: bool = True
    pseudo_queries: list[str] | None = None

    def __post_init__(self) -> None:
        if self.pseudo_queries is not None and len(self.pseudo_queries) != len(self.texts):
            raise ConfigError(f"{len(self.pseudo_queries)} pseudo-queries for {len(self.texts)} held-out texts")

    def __call__(self, encoder: Any) -> dict[str, float]:
        """Metrics of ``encoder`` (an :class:`~qdrant_distill.inference.encoders.Encoder`: ``encode(texts, kind=...)``)."""
        vecs = encoder.encode(self.texts, kind="document")
        query_vecs = encoder.encode(self.pseudo_queries, kind="query") if self.pseudo_queries else None
        return self.evaluate_vectors(vecs, query_vecs)

    def evaluate_vectors(self, vecs: np.ndarray, query_vecs: np.ndarray | None = None) -> dict[str, float]:
        targets = self.projected_targets
        if targets is not None and targets.shape[1] != vecs.shape[1]:
            targets = None
        out = fidelity(vecs, self.teacher_vectors, k=self.k, projected_targets=targets)
        if query_vecs is not None:
            out["pseudo_query/self_mrr@10"] = pseudo_query_mrr(query_vecs, vecs, k=self.k)
            if targets is not None:
                out[QUERY_METRIC] = pseudo_query_mrr(query_vecs, targets, k=self.k)
        return out

# ---------------------------------------------------------------------------------------------------------- retrieval
def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, float], k: int = 10) -> float:
    """nDCG@k with linear gains (as pytrec_eval's ndcg_cut): ``relevant`` maps doc id to graded relevance."""
    dcg = sum(relevant.get(d, 0.0) / np.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / np.log2(i + 2) for i, g in enumerate(ideal))
    return float(dcg / idcg) if idcg > 0 else 0.0


def retrieval_metrics(
    query_vecs: np.ndarray,
    doc_vecs: np.ndarray,
    qrels: Mapping[str, Mapping[str, float]],
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    *,
    chunk: int = 256,
) -> dict[str, float]:
    """``{"ndcg@10", "recall@100", "mrr@10"}`` by exact cosine search, as trec_eval (pytrec_eval, BEIR) computes
    them: averaged over the queries that have qrels (one whose judgements are all 0 counts, with 0), ties ranked by
    document id descending."""
    q = _as_unit(query_vecs, "query vectors")
    d = _as_unit(doc_vecs, "document vectors")
    if q.shape[1] != d.shape[1]:
        raise InvalidVectors(f"queries are {q.shape[1]}-d but documents {d.shape[1]}-d")
    doc_ids = [str(x) for x in doc_ids]
    id_rank = np.empty(len(doc_ids), dtype=np.int64)
    id_rank[sorted(range(len(doc_ids)), key=doc_ids.__getitem__)] = np.arange(len(doc_ids))
    ndcg, recall, mrr = [], [], []
    for start in range(0, len(q), chunk):
        top = _ranked(q[start : start + chunk] @ d.T, 100, id_rank)
        for row, qi in zip(top, query_ids[start : start + chunk]):
            judged = qrels.get(str(qi))
            if not judged:
                continue
            rel = {k: v for k, v in judged.items() if v > 0}
            ranked = [doc_ids[j] for j in row]
            ndcg.append(ndcg_at_k(ranked, rel, 10))
            recall.append(len(set(ranked[:100]) & set(rel)) / len(rel) if rel else 0.0)
            rr = next((1.0 / (i + 1) for i, doc in enumerate(ranked[:10]) if doc in rel), 0.0)
            mrr.append(rr)
    if not ndcg:
        raise ConfigError("no query has relevance judgements", hint="check that query ids match the qrels")
    return {"ndcg@10": float(np.mean(ndcg)), "recall@100": float(np.mean(recall)), "mrr@10": float(np.mean(mrr))}


# ---------------------------------------------------------------------------------------------------------- loaders
@dataclass
class StsPairs:
    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]


def load_stsb(path: str | Path, split: str = "test") -> StsPairs:
    """STS Benchmark pairs of one split from the combined TSV (``split, genre, dataset, year, sid, score, s1, s2``).

    ``path`` may be the file (``.tsv`` or ``.tsv.gz``) or the folder holding ``stsbenchmark.tsv(.gz)``.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / "stsbenchmark.tsv", path / "stsbenchmark.tsv.gz"]
        found = [p for p in candidates if p.exists()]
        if not found:
            raise ConfigError(f"no stsbenchmark.tsv(.gz) in {path}")
        path = found[0]
    opener = gzip.open if path.suffix == ".gz" else open
    s1, s2, scores = [], [], []
    with opener(path, "rt", encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        col = {name: i for i, name in enumerate(header)}
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 8 or parts[col["split"]] != split:
                continue
            s1.append(parts[col["sentence1"]])
            s2.append(parts[col["sentence2"]])
            scores.append(float(parts[col["score"]]))
    if not scores:
        raise ConfigError(f"no {split!r} pairs in {path}")
    return StsPairs(s1, s2, scores)


def sts_spearman(
    model_or_vecs: Any,
    pairs: StsPairs,
    *,
    vecs2: np.ndarray | None = None,
    batch_size: int = 64,
) -> float:
    """Spearman between gold scores and the cosine of each pair.

    Pass an encoder (or a model in memory), or the first sentences' vectors plus ``vecs2``.
    """
    if hasattr(model_or_vecs, "encode"):
        v1 = np.asarray(model_or_vecs.encode(pairs.sentences1), dtype=np.float32)
        v2 = np.asarray(model_or_vecs.encode(pairs.sentences2), dtype=np.float32)
    else:
        if vecs2 is None:
            raise ValueError("sts_spearman needs vecs2 when given vectors")
        v1, v2 = np.asarray(model_or_vecs, dtype=np.float32), np.asarray(vecs2, dtype=np.float32)
    a, b = _as_unit(v1, "sentence1 vectors"), _as_unit(v2, "sentence2 vectors")
    return spearman(np.sum(a * b, axis=1), pairs.scores)
