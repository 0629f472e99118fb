"""Shared pieces of the transfer benchmarks (benchmarks/static_tier.py, benchmarks/transfer.py): SciFact with a
collection's stored vectors (the original or the tuned teacher), its PCA-128, per-query nDCG@10 and paired bootstrap
intervals (paths, the held-out split and cached encodings: benchmarks/common.py).

Students see only what a collection gives: corpus text, the stored document vectors, and teacher labels of texts
cut from the corpus (benchmarks/labels.py). The 809 train queries serve as a dev set for choosing a recipe, never
as training data; the 300 test queries report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from common import DATA, DIM

from qdrant_distill.evaluation.beir import load_beir
from qdrant_distill.evaluation.metrics import ndcg_at_k
from qdrant_distill.inference.projection import PCAProjection

SCIFACT = DATA / "scifact"
TEACHER_FILES = {"mpnet": "teacher_all-mpnet-base-v2.npz", "tuned": "teacher_mpnet-scifact-lora.npz",
                 "full": "teacher_mpnet-scifact-full.npz"}


@dataclass
class Split:
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, float]]
    teacher_queries: np.ndarray  # the teacher's own vectors of these queries (for the teacher rows only)


@dataclass
class Collection:
    """SciFact as a collection whose stored vectors come from ``teacher``."""

    teacher: str
    doc_ids: list[str]
    docs: list[str]
    stored: np.ndarray  # the stored (teacher) document vectors, 768-d
    pca: PCAProjection  # centred PCA-128 of the stored vectors (what a migration fits on its sample)
    test: Split
    dev: Split

    @property
    def targets(self) -> np.ndarray:
        return self.pca.transform(self.stored)


def load_collection(teacher: str = "mpnet") -> Collection:
    data = np.load(SCIFACT / TEACHER_FILES[teacher])
    test, train = load_beir(SCIFACT, split="test"), load_beir(SCIFACT, split="train")
    ids = [str(x) for x in data["doc_ids"]]
    assert ids == [str(x) for x in test.doc_ids], "the teacher file's documents are not the corpus order"
    qvec = {str(q): v for q, v in zip(data["query_ids"], data["query_vecs"])}

    def split(d: Any) -> Split:
        return Split(list(d.query_ids), list(d.queries), d.qrels, np.stack([qvec[str(q)] for q in d.query_ids]))

    stored = data["doc_vecs"].astype(np.float32)
    return Collection(teacher, ids, list(test.doc_texts), stored, PCAProjection.fit(stored, DIM, center=True),
                      split(test), split(train))


def per_query_ndcg(q: np.ndarray, d: np.ndarray, split: Split, doc_ids: list[str]) -> np.ndarray:
    """nDCG@10 of every query of ``split`` by exact cosine search."""
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    scores = q @ d.T
    top = np.argsort(-scores, axis=1)[:, :10]
    return np.array([ndcg_at_k([doc_ids[j] for j in row], split.qrels[qid], 10)
                     for row, qid in zip(top, split.query_ids)])


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, n: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over queries and its 95% paired bootstrap interval."""
    diff = np.asarray(a) - np.asarray(b)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def gain(a: np.ndarray, b: np.ndarray) -> str:
    mean, lo, hi = paired_bootstrap(a, b)
    verdict = "gain" if lo > 0 else ("loss" if hi < 0 else "no clear difference")
    return f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}] ({verdict})"
