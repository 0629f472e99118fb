"""Retrieval and similarity quality of students against their teacher: SciFact (BEIR) and STS-B.

The stored teacher vectors (all-mpnet-base-v2, ../shared/data/scifact/teacher_all-mpnet-base-v2.npz) play the
collection's vectors. Students are distilled on corpus documents only (no query, no label) and evaluated on the 300
test queries at 128 dimensions. Off-the-shelf encodings are cached under benchmarks/cache/.

    python benchmarks/quality.py                  # the full run (~2.5 h on 2 CPU cores)
    python benchmarks/quality.py --quick          # a smoke test: a corpus subset and tiny budgets (a few minutes)
    python benchmarks/quality.py --only pruned    # some rows only, merged into the existing results file

Row groups (for --only and --skip): teacher (the stored vectors and their PCA projections; skipping it also leaves
the teacher model unloaded, so no speed ratios), teacher-sts (the teacher's STSb encoding only), minilm (MiniLM off
the shelf and with untrained heads), transformer, pruned (the layer-pruned teacher, trained), pruned-untrained (the
same pruned teacher + PCA-128 head, no training; not in --quick), query-student (the recipe for asymmetric use:
the student encodes queries against the projected stored vectors), query-pruned (the same with the layer-pruned
teacher as query encoder), static.

Prints a table and writes benchmarks/results/quality.json; with --only, the rows computed replace the rows of the
same name in the output file (or are inserted before the static row), and the other rows are kept as they were.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import DATA, DIM, MINILM, MPNET, RESULTS, cached, holdout_split

from qdrant_distill import DistillConfig, HeadInit, distill, load_encoder
from qdrant_distill.distillation.config import LossWeights
from qdrant_distill.distillation.recipes import with_recipe
from qdrant_distill.distillation.result import DistillResult
from qdrant_distill.distillation.students import fit_head
from qdrant_distill.evaluation.beir import BeirDataset, load_beir
from qdrant_distill.evaluation.metrics import (
    StsPairs,
    fidelity,
    load_stsb,
    retrieval_metrics,
    sts_spearman,
)
from qdrant_distill.inference.encoders import Encoder, as_encoder
from qdrant_distill.inference.projection import PCAProjection

GROUPS = ("teacher", "teacher-sts", "minilm", "transformer", "query-student", "query-pruned", "pruned",
          "pruned-untrained", "static")
TEACHER_GROUPS = {"teacher", "static", "pruned", "pruned-untrained", "query-pruned"}  # groups that load the teacher
MINILM_GROUPS = {"minilm", "transformer", "query-student"}  # groups that encode SciFact with MiniLM
TEACHER_ID = "all-mpnet-base-v2"
QUICK_DOCUMENTS = 700  # the --quick corpus: the judged documents plus random others up to this many
QUICK_STS_PAIRS = 300
Row = dict[str, Any]
logger = logging.getLogger("benchmarks.quality")


# ---------------------------------------------------------------------------------------------------------- helpers
def cached_encode(model: Any, tag: str, texts: list[str], *, batch_size: int = 32,
                  max_seq_length: int | None = None) -> tuple[np.ndarray, float]:
    """Encode ``texts`` with ``model`` (normalised float32), cached under benchmarks/cache/ by tag and text hash;
    with the seconds the encoding took (0.0 when cached)."""
    took = [0.0]

    def encode(batch: list[str]) -> np.ndarray:
        enc = as_encoder(model, batch_size=batch_size)
        if max_seq_length is not None and hasattr(enc, "max_seq_length"):
            enc.max_seq_length = max_seq_length
        start = time.perf_counter()
        vecs = enc.encode(batch)
        took[0] = time.perf_counter() - start
        return vecs

    return cached(f"{tag}-seq{max_seq_length}", texts, encode), took[0]


def quick_subset(ds: BeirDataset) -> np.ndarray:
    """The indices of the --quick corpus: every judged document plus random others."""
    judged = {d for q in ds.query_ids for d in ds.qrels[q]}
    rel = [i for i, d in enumerate(ds.doc_ids) if d in judged]
    others = [i for i in np.random.default_rng(0).permutation(len(ds.doc_ids)) if ds.doc_ids[i] not in judged]
    return np.sort(np.array(rel + others[: max(0, QUICK_DOCUMENTS - len(rel))]))


def stored_vectors(data: Path, doc_ids: list[str], query_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The stored teacher vectors of these documents and queries (the collection's vectors)."""
    teacher = np.load(data / "scifact" / f"teacher_{TEACHER_ID}.npz")
    doc_index = {d: i for i, d in enumerate(teacher["doc_ids"].astype(str))}
    q_index = {q: i for i, q in enumerate(teacher["query_ids"].astype(str))}
    return (teacher["doc_vecs"][[doc_index[d] for d in doc_ids]],
            teacher["query_vecs"][[q_index[q] for q in query_ids]])


def load_sts(data: Path, quick: bool) -> StsPairs:
    """STS-B (its first pairs only in --quick)."""
    sts = load_stsb(data / "stsb")
    if quick:
        n = QUICK_STS_PAIRS
        sts.sentences1, sts.sentences2, sts.scores = sts.sentences1[:n], sts.sentences2[:n], sts.scores[:n]
    return sts


class Bench:
    """The data of one run and the rows measured on it."""

    def __init__(self, quick: bool, data: Path) -> None:
        self.quick = quick
        self.seq = 128 if quick else 256
        ds = load_beir(data / "scifact")
        keep = quick_subset(ds) if quick else np.arange(len(ds.doc_ids))
        self.doc_ids = [ds.doc_ids[i] for i in keep]
        self.docs = [ds.doc_texts[i] for i in keep]
        self.query_ids, self.queries, self.qrels = ds.query_ids, ds.queries, ds.qrels
        self.teacher_docs, self.teacher_queries = stored_vectors(data, self.doc_ids, self.query_ids)
        self.sts = load_sts(data, quick)
        # training and held-out documents (held-out ones drive early stopping and teacher-neighbour recall)
        self.hold_idx, self.train_idx = holdout_split(len(self.docs))
        self.projection = PCAProjection.fit(self.teacher_docs[self.train_idx], DIM)
        self.rows: list[Row] = []

    def add(self, name: str, q: np.ndarray, d: np.ndarray, *, sts: float | None, dim: int, **extra: Any) -> None:
        m = retrieval_metrics(q, d, self.qrels, self.query_ids, self.doc_ids)
        fid = fidelity(d[self.hold_idx], self.teacher_docs[self.hold_idx])["fidelity/recall@10"]
        row = {"row": name, **m, "teacher_nn_recall@10": fid, "stsb_spearman": sts, "dim": dim,
               "vector_bytes": dim * 4, **extra}
        self.rows.append(row)
        logger.info("%s: %s", name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})

    def partial(self) -> None:
        """Write the rows so far (a long run that dies keeps what it measured)."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        name = "quality-quick.partial.json" if self.quick else "quality.partial.json"
        (RESULTS / name).write_text(json.dumps(self.rows, indent=2), encoding="utf-8")

    def sts_pair(self, model: Any, tag: str, max_seq_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Both sides of STS-B encoded by ``model``, cached under ``tag``."""
        v1, _ = cached_encode(model, f"{tag}-stsb1", self.sts.sentences1, max_seq_length=max_seq_length)
        v2, _ = cached_encode(model, f"{tag}-stsb2", self.sts.sentences2, max_seq_length=max_seq_length)
        return v1, v2

    def spearman(self, v1: np.ndarray, v2: np.ndarray) -> float:
        return sts_spearman(v1, self.sts, vecs2=v2)

    def sts_of(self, model: Any, tag: str | None = None) -> float:
        """STS-B Spearman of ``model`` (its encodings cached under ``tag`` when given)."""
        if tag:
            return self.spearman(*self.sts_pair(model, tag, self.seq))
        enc = as_encoder(model)
        return self.spearman(enc.encode(self.sts.sentences1), enc.encode(self.sts.sentences2))

    def distill(self, cfg: DistillConfig, name: str, **kwargs: Any) -> DistillResult:
        """Distil a student from the training documents and their stored vectors, the held-out ones as holdout."""
        out_root = Path(os.environ.get("QUALITY_OUT", "/tmp/qdrant-distill-quality"))
        holdout = ([self.docs[i] for i in self.hold_idx], self.teacher_docs[self.hold_idx])
        return distill([self.docs[i] for i in self.train_idx], self.teacher_docs[self.train_idx], cfg,
                       output_dir=out_root / name, teacher_id=TEACHER_ID, holdout=holdout, **kwargs)

    def encode_corpus(self, student: Any, tag: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Queries and documents encoded by ``student`` (cached under ``tag``), and the corpus encoding seconds."""
        sq, _ = cached_encode(student, f"{tag}-scifact-queries", self.queries, max_seq_length=self.seq)
        sd, took = cached_encode(student, f"{tag}-scifact-docs", self.docs, max_seq_length=self.seq)
        return sq, sd, took


def speed(model: Any, queries: list[str], n: int, *, st_model: Any = None) -> dict[str, float]:
    """Queries per second: one call per query and batched, through ``SentenceTransformer.encode`` (``st_model``, or
    the model under the encoder) and through the encoder (for static students the torch-free path, which skips
    sentence-transformers' per-call overhead)."""
    out = {}
    qd = as_encoder(model)
    st = st_model if st_model is not None else getattr(qd, "model", model)
    for label, fn in (("st", lambda x: st.encode(x, show_progress_bar=False)),
                      ("qd", lambda x: qd.encode(x, kind="query"))):
        fn(queries[:2])  # warm-up
        start = time.perf_counter()
        for q in queries[:n]:
            fn([q])
        out[f"{label}_single_qps"] = n / (time.perf_counter() - start)
        start = time.perf_counter()
        fn(queries[: max(n, 32)])
        out[f"{label}_batched_qps"] = max(n, 32) / (time.perf_counter() - start)
    return out


def distill_extra(res: DistillResult) -> dict[str, Any]:
    """The fields every distilled row records about its distillation."""
    return {"distill_wall_s": res.wall_time_s, "train_size": res.train_size, "steps": res.steps,
            "best_step": res.best_step, "holdout_fidelity": res.metrics,
            "holdout_fidelity_untrained": res.baseline_metrics, "evaluations": res.evaluations}


def pruned_speed(student: Encoder, teacher: Encoder | None, queries: list[str], quick: bool) -> dict[str, Any]:
    """A pruned student's query speed against the teacher's, same run (empty without the teacher)."""
    if teacher is None:
        return {}
    n = 10 if quick else 30
    p_speed, t_speed = speed(student, queries, n), speed(teacher, queries, n)
    return {"pruned_speed": p_speed, "teacher_speed": t_speed,
            "speedup_single": p_speed["qd_single_qps"] / t_speed["qd_single_qps"],
            "speedup_batched": p_speed["qd_batched_qps"] / t_speed["qd_batched_qps"]}


def static_speed(student: Encoder, student_path: str, teacher: Encoder, queries: list[str],
                 quick: bool) -> dict[str, Any]:
    """The static student's query speed against the teacher's best path, same run; also through
    sentence-transformers' own ``encode`` (the reference path)."""
    from sentence_transformers import SentenceTransformer

    s_speed = speed(student, queries, 300, st_model=SentenceTransformer(student_path, device="cpu"))
    t_speed = speed(teacher, queries, 10 if quick else 30)
    best_teacher_single = max(t_speed["st_single_qps"], t_speed["qd_single_qps"])
    best_teacher_batched = max(t_speed["st_batched_qps"], t_speed["qd_batched_qps"])
    return {"static_speed": s_speed, "teacher_speed": t_speed,
            "speedup_single": s_speed["qd_single_qps"] / best_teacher_single,
            "speedup_single_via_st_encode": s_speed["st_single_qps"] / best_teacher_single,
            "speedup_batched": s_speed["qd_batched_qps"] / best_teacher_batched}


# ---------------------------------------------------------------------------------------------------------- recipes
def transformer_config(quick: bool) -> DistillConfig:
    """The recipe run here: MiniLM body kept frozen (its body vectors are computed once), the head starting from the
    body's own uncentred PCA rotated onto the targets, then trained with pseudo-queries and a light MSE pull.

    Measured on cached features (docs/benchmarks.md): every loss that fits the teacher's document geometry (MSE,
    contrastive, KL, to PCA-128 or full 768-d targets) raised document fidelity but lowered query nDCG, and training
    the body (exp. in docs/benchmarks.md) lowered it further; so the head moves little (low rate, one epoch).
    """
    return DistillConfig(
        export="none",  # the rows here run on torch; the ONNX backends: benchmarks/backends.py
        kind="transformer",
        base_model=str(MINILM),
        dim=DIM,
        head_init=HeadInit.OWN_PCA,
        epochs=1,
        batch_size=32,
        lr_body=0.0,
        lr_head=3e-4,
        weights=LossWeights(mse=0.3, contrastive=0.0, kl=0.0, pseudo_query=1.0),
        temperature=0.05,
        max_seq_length=128 if quick else 256,
        head_init_samples=300 if quick else 5000,
        eval_steps=20 if quick else 40,
        early_stopping_patience=3,
        seed=0,
    )


def query_student_config(quick: bool) -> DistillConfig:
    """The recipe for asymmetric use (project mode: documents keep the PCA of their stored vectors, the student
    encodes queries only). Frozen MiniLM body, ridge head, then only pseudo-queries cut from each document, each
    contrasted against every training target (``pseudo_query_negatives="sample"``); the kept state is the best
    holdout ``pseudo_query/mrr@10`` (pseudo-queries of held-out documents finding their projected teacher vector).

    Chosen on the 809 SciFact *train* queries as a dev set (docs/benchmarks.md); the 300 test queries report.
    """
    return DistillConfig(
        export="none",  # the rows here run on torch; the ONNX backends: benchmarks/backends.py
        kind="transformer",
        base_model=str(MINILM),
        dim=DIM,
        head_init=HeadInit.RIDGE,
        epochs=1 if quick else 8,
        batch_size=64,
        lr_body=0.0,
        lr_head=1e-3,
        weights=LossWeights(mse=0.0, contrastive=0.0, kl=0.0, pseudo_query=1.0),
        pseudo_query_negatives="sample",
        primary_metric="pseudo_query/mrr@10",
        temperature=0.05,
        max_seq_length=128 if quick else 256,
        head_init_samples=300 if quick else 5000,
        eval_steps=None,
        early_stopping_patience=3,
        seed=0,
    )


PRUNED_QUERY_KEEP = 6  # layers of mpnet's 12 kept for the query encoder (~2x faster than the teacher)


def pruned_query_config(quick: bool) -> DistillConfig:
    """The layer-pruned teacher as a query encoder for asymmetric use: the library's recipe (``with_recipe(..., "queries")``: its
    PCA head, the body trained on pseudo-queries against every training target, 3 epochs). Only the short
    pseudo-queries pass through the body, so a pruned teacher is affordable here, unlike the symmetric pruned row."""
    return with_recipe(DistillConfig(
        export="none",  # the rows here run on torch; the ONNX backends: benchmarks/backends.py
        kind="pruned",
        teacher_model=str(MPNET),
        keep_layers=PRUNED_QUERY_KEEP,
        dim=DIM,
        max_steps=2 if quick else None,
        max_seq_length=128 if quick else 256,
        encode_batch_size=32,
        seed=0,
    ), "queries")


def static_config(quick: bool) -> DistillConfig:
    """The static tier: the library's recipe (``qdrant_distill.distillation.recipes``, what ``--student-kind static``
    runs), on MiniLM's token vectors; one epoch with ``--quick``."""
    return with_recipe(DistillConfig(
        export="none",  # the rows here run on torch; the ONNX backends: benchmarks/backends.py
        kind="static",
        base_model=str(MINILM),
        dim=DIM,
        seed=0,
        **({"epochs": 1, "eval_steps": None} if quick else {}),
    ))


PRUNED_KEEP = 4  # layers of mpnet's 12 kept: 0, 4, 7, 11 (the sentence-transformers docs: ~99% at ~2.3x speed)


def pruned_config(quick: bool) -> DistillConfig:
    """The layer-pruned teacher: mpnet with 4 of its 12 layers + the PCA-128 projection as head, then the whole body
    trained to land on the projected teacher vectors (MSE) plus a light pseudo-query term.

    The default recipe of the library freezes the body (``lr_body=0``), which leaves a pruned teacher broken: the
    removed layers are what the kept ones and the head were fitted after (see pruned-untrained). So the body learns
    here. CPU budget: the pairs of the whole training split fit the PCA (cheap), but the body sees ``max_steps x
    batch_size`` documents (one pass, no repeat) at the full 256-token length.
    """
    return DistillConfig(
        export="none",  # the rows here run on torch; the ONNX backends: benchmarks/backends.py
        kind="pruned",
        teacher_model=str(MPNET),
        keep_layers=PRUNED_KEEP,
        dim=DIM,
        epochs=1,
        max_steps=2 if quick else 75,
        batch_size=8 if quick else 16,
        lr_body=1e-4,
        lr_head=1e-4,
        warmup_ratio=0.1,
        weights=LossWeights(mse=1.0, contrastive=0.0, kl=0.0, pseudo_query=0.2),
        temperature=0.05,
        max_seq_length=128 if quick else 256,
        train_max_seq_length=64 if quick else None,
        eval_steps=None if quick else 25,
        early_stopping_patience=2,
        encode_batch_size=32,
        seed=0,
    )


def merge_rows(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with each row of ``new`` replacing the row of the same name, or inserted before the static rows."""
    rows = list(old)
    for row in new:
        names = [r["row"] for r in rows]
        if row["row"] in names:
            rows[names.index(row["row"])] = row
            continue
        at = next((i for i, n in enumerate(names) if n.startswith("static")), len(rows))
        rows.insert(at, row)
    return rows


def file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------- the rows
@dataclass
class MiniLMVectors:
    """MiniLM off the shelf and its SciFact vectors (the body vectors of the frozen-body students too)."""

    model: Encoder
    queries: np.ndarray
    docs: np.ndarray


@dataclass
class Models:
    """The models a run loaded once and shares between row groups."""

    teacher: Encoder | None  # the teacher model: its STSb vectors, and the reference for speed
    minilm: MiniLMVectors | None = None


@dataclass
class Student:
    """What a frozen-body student measured: its query and document vectors, the stored document vectors through
    its projection, its STSb Spearman and the row's extra fields."""

    queries: np.ndarray
    docs: np.ndarray
    teacher_docs: np.ndarray
    sts: float
    extra: dict[str, Any] = field(default_factory=dict)


def teacher_missing(group: str) -> bool:
    """True (and said on stderr) when the teacher model is not there for ``group``."""
    if MPNET.exists():
        return False
    print(f"{group} row skipped: no teacher model at {MPNET}", file=sys.stderr)
    return True


def teacher_rows(b: Bench, teacher: Encoder | None, *, with_sts: bool) -> None:
    """The stored vectors and their PCA-64/128/256 projections (STSb through the teacher model, when loaded)."""
    t1 = t2 = None
    if teacher is not None and with_sts:
        t1, t2 = b.sts_pair(teacher, "mpnet", 384)
    t_sts = b.spearman(t1, t2) if t1 is not None else None
    b.add(f"teacher {TEACHER_ID} (stored vectors)", b.teacher_queries, b.teacher_docs, sts=t_sts, dim=768)
    for dim in (64, 128, 256):
        p = b.projection if dim == DIM else PCAProjection.fit(b.teacher_docs[b.train_idx], dim)
        sts = b.spearman(p.transform(t1), p.transform(t2)) if t1 is not None else None
        b.add(f"teacher + PCA-{dim} (projection only)", p.transform(b.teacher_queries),
              p.transform(b.teacher_docs), sts=sts, dim=dim, explained_variance=p.explained_variance_ratio)


def minilm_vectors(b: Bench) -> MiniLMVectors:
    minilm = load_encoder(str(MINILM))
    mq, _ = cached_encode(minilm, "minilm-scifact-queries", b.queries, max_seq_length=b.seq)
    md, _ = cached_encode(minilm, "minilm-scifact-docs", b.docs, max_seq_length=b.seq)
    return MiniLMVectors(minilm, mq, md)


def minilm_rows(b: Bench, m: MiniLMVectors) -> None:
    """MiniLM off the shelf, with its own PCA, and with a ridge or rotated-PCA head fitted on the targets."""
    m1, m2 = b.sts_pair(m.model, "minilm", b.seq)
    b.add("all-MiniLM-L6-v2 (384-d, off the shelf)", m.queries, m.docs, sts=b.spearman(m1, m2), dim=384)
    own = PCAProjection.fit(m.docs[b.train_idx], DIM)
    b.add("MiniLM + own PCA-128 (no training)", own.transform(m.queries), own.transform(m.docs),
          sts=b.spearman(own.transform(m1), own.transform(m2)), dim=DIM)
    targets = b.projection.transform(b.teacher_docs[b.train_idx])
    for mode in (HeadInit.RIDGE, HeadInit.OWN_PCA):
        w = fit_head(m.docs[b.train_idx], targets, mode)
        label = "ridge head" if mode is HeadInit.RIDGE else "own PCA rotated onto the targets"
        sts = b.spearman(m1 @ w.T, m2 @ w.T)
        b.add(f"MiniLM + {label}, symmetric", m.queries @ w.T, m.docs @ w.T, sts=sts, dim=DIM)
        b.add(f"MiniLM + {label}, asymmetric (docs = PCA-128 of teacher)", m.queries @ w.T,
              b.projection.transform(b.teacher_docs), sts=sts, dim=DIM)


def head_on_body(student: Encoder, body: np.ndarray) -> np.ndarray:
    """A frozen-body student's document vectors: its dense head applied to the body vectors, normalised."""
    dense = student.model[len(student.model) - 2]
    vecs = body @ dense.linear.weight.detach().numpy().T
    if dense.linear.bias is not None:
        vecs = vecs + dense.linear.bias.detach().numpy()
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def frozen_body_student(b: Bench, body: np.ndarray, cfg: DistillConfig, name: str) -> Student:
    """Distil a frozen-body MiniLM student (``body``, the cached MiniLM document vectors, are its body vectors)."""
    res = b.distill(cfg, name, body_cache={b.docs[i]: body[i] for i in range(len(b.docs))})
    student = load_encoder(res.student_path, backend="torch")
    sq = student.encode(b.queries, kind="query")
    # the body did not change, so the document vectors are the head on the cached body vectors; checked against
    # real encodings of a sample
    sd = head_on_body(student, body)
    check = np.random.default_rng(1).choice(len(b.docs), 32, replace=False)
    gap = float(np.abs(student.encode([b.docs[i] for i in check]) - sd[check]).max())
    assert gap < 1e-3, f"cached document vectors differ from the student's by {gap}"
    td = PCAProjection.load(res.projection_path).transform(b.teacher_docs)
    return Student(sq, sd, td, b.sts_of(student), distill_extra(res) | {"doc_vectors_check_max_abs": gap})


def transformer_rows(b: Bench, models: Models) -> None:
    s = frozen_body_student(b, models.minilm.docs, transformer_config(b.quick), "transformer")
    b.add("distilled MiniLM student 128 (frozen body), symmetric", s.queries, s.docs, sts=s.sts, dim=DIM,
          **s.extra)
    b.add("distilled MiniLM student 128 (frozen body), asymmetric (docs = PCA-128 of teacher)", s.queries,
          s.teacher_docs, sts=s.sts, dim=DIM, **s.extra)


def query_student_rows(b: Bench, models: Models) -> None:
    """The query student for asymmetric use: pseudo-queries against every training target."""
    s = frozen_body_student(b, models.minilm.docs, query_student_config(b.quick), "query-student")
    b.add("query student 128, asymmetric (docs = PCA-128 of teacher)", s.queries, s.teacher_docs, sts=s.sts,
          dim=DIM, **s.extra)
    b.add("query student 128, symmetric", s.queries, s.docs, sts=s.sts, dim=DIM, **s.extra)


def query_pruned_rows(b: Bench, models: Models) -> None:
    """The layer-pruned teacher as the query encoder (asymmetric only: documents keep the projected stored
    vectors)."""
    if teacher_missing("query-pruned"):
        return
    res = b.distill(pruned_query_config(b.quick), "query-pruned")
    student = load_encoder(res.student_path, backend="torch")
    student.max_seq_length = b.seq
    sq = student.encode(b.queries, kind="query")
    extra = distill_extra(res) | {"keep_layers": PRUNED_QUERY_KEEP}
    extra |= pruned_speed(student, models.teacher, b.queries, b.quick)
    b.add(f"query encoder: pruned mpnet {PRUNED_QUERY_KEEP}/12, asymmetric (docs = PCA-128 of teacher)", sq,
          PCAProjection.load(res.projection_path).transform(b.teacher_docs), sts=b.sts_of(student), dim=DIM,
          **extra)


def pruned_untrained_rows(b: Bench, models: Models) -> None:
    """The layer-pruned teacher untrained: the pruned body + the PCA-128 of the stored vectors."""
    if teacher_missing("pruned-untrained"):
        return
    if b.quick:
        print("pruned-untrained row skipped in --quick (one more corpus pass of mpnet; the trained pruned row "
              "already exercises the same code)", file=sys.stderr)
        return
    from qdrant_distill.distillation.students import pruned_student

    base = (models.teacher or load_encoder(str(MPNET))).model  # the pruned student is built from the model
    student = pruned_student(base, b.projection, PRUNED_KEEP)
    student.max_seq_length = b.seq
    tag = f"mpnet-pruned{PRUNED_KEEP}-untrained"
    sq, sd, took = b.encode_corpus(student, tag)
    b.add(f"pruned mpnet {PRUNED_KEEP}/12 layers + PCA-128 (no training), symmetric", sq, sd,
          sts=b.sts_of(student, tag), dim=DIM, corpus_encode_s=took)


def pruned_extra(res: DistillResult, cfg: DistillConfig, took: float) -> dict[str, Any]:
    """The trained pruned row's fields: its distillation, its budget and its recipe."""
    recipe = cfg.model_dump(mode="json")
    return distill_extra(res) | {
        "train_size": res.steps * cfg.batch_size, "pca_fit_size": res.train_size,
        "stopped_early": res.stopped_early, "keep_layers": PRUNED_KEEP, "corpus_encode_s": took,
        "recipe": {k: recipe[k] for k in ("keep_layers", "max_steps", "batch_size", "lr_body", "lr_head", "weights",
                                          "max_seq_length", "train_max_seq_length", "eval_steps")}}


def pruned_rows(b: Bench, models: Models) -> None:
    """The layer-pruned teacher, its whole body trained."""
    if teacher_missing("pruned"):
        return
    cfg = pruned_config(b.quick)
    res = b.distill(cfg, "pruned")
    student = load_encoder(res.student_path, backend="torch")
    # encodings cached by the digest of the trained weights: a retrained student is encoded again
    weights = Path(res.student_path) / "model.safetensors"
    tag = f"mpnet-pruned{PRUNED_KEEP}-{file_digest(weights) if weights.exists() else 'unhashed'}"
    sq, sd, took = b.encode_corpus(student, tag)
    extra = pruned_extra(res, cfg, took) | pruned_speed(student, models.teacher, b.queries, b.quick)
    b.add(f"pruned mpnet {PRUNED_KEEP}/12 layers + PCA-128, body trained, symmetric", sq, sd,
          sts=b.sts_of(student, tag), dim=DIM, **extra)


def static_rows(b: Bench, models: Models) -> None:
    """The static student (StaticEmbedding), with its speed against the teacher's when the teacher is loaded."""
    res = b.distill(static_config(b.quick), "static")
    student = load_encoder(res.student_path, backend="torch")
    sq, sd = student.encode(b.queries, kind="query"), student.encode(b.docs)
    extra = distill_extra(res)
    if models.teacher is not None:
        extra |= static_speed(student, res.student_path, models.teacher, b.queries, b.quick)
    b.add("static student 128 (StaticEmbedding), symmetric", sq, sd, sts=b.sts_of(student), dim=DIM, **extra)


# the distilled row groups, in the order they run
STUDENTS: dict[str, Callable[[Bench, Models], None]] = {
    "transformer": transformer_rows,
    "query-student": query_student_rows,
    "query-pruned": query_pruned_rows,
    "pruned-untrained": pruned_untrained_rows,
    "pruned": pruned_rows,
    "static": static_rows,
}


# ---------------------------------------------------------------------------------------------------------- the run
def wanted_groups(skip: set[str], only: set[str] | None) -> set[str]:
    """The row groups to measure: ``only`` (every group when None) less ``skip``; teacher-sts goes with teacher."""
    wanted = (set(GROUPS) if only is None else set(only)) - set(skip)
    if "teacher" not in wanted:
        wanted.discard("teacher-sts")
    return wanted


def load_teacher(wanted: set[str], skip: set[str]) -> Encoder | None:
    """The teacher model, when a wanted group uses it, it is there, and the teacher group is not skipped."""
    needs_teacher = bool(wanted & TEACHER_GROUPS) and "teacher" not in skip
    return load_encoder(str(MPNET)) if MPNET.exists() and needs_teacher else None


def summary(b: Bench, started: float) -> dict[str, Any]:
    """The run's result: its sizes, the machine, the wall time and the rows."""
    return {
        "quick": b.quick,
        "documents": len(b.docs),
        "train_documents": len(b.train_idx),
        "holdout_documents": len(b.hold_idx),
        "queries": len(b.queries),
        "sts_pairs": len(b.sts.scores),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "wall_time_s": time.perf_counter() - started,
        "rows": b.rows,
    }


def run(quick: bool, data: Path, skip: set[str], only: set[str] | None = None) -> dict[str, Any]:
    """Measure the rows of every group in ``only`` (all groups when None) that is not in ``skip``."""
    started = time.perf_counter()
    wanted = wanted_groups(skip, only)
    b = Bench(quick, data)
    logger.info("%d documents (%d train, %d held out), %d queries; rows: %s", len(b.docs), len(b.train_idx),
                len(b.hold_idx), len(b.queries), ",".join(g for g in GROUPS if g in wanted))
    models = Models(teacher=load_teacher(wanted, skip))
    # the stored vectors and their PCA projections
    if "teacher" in wanted:
        teacher_rows(b, models.teacher, with_sts="teacher-sts" in wanted)
        b.partial()
    # MiniLM off the shelf and with untrained heads (its vectors also serve the frozen-body students)
    if wanted & MINILM_GROUPS:
        models.minilm = minilm_vectors(b)
    if "minilm" in wanted:
        minilm_rows(b, models.minilm)
        b.partial()
    # the distilled students, each group's rows written as soon as measured
    for group, measure in STUDENTS.items():
        if group in wanted:
            measure(b, models)
            b.partial()
    return summary(b, started)


def render(result: dict[str, Any]) -> str:
    head = f"{'row':<66} {'nDCG@10':>8} {'R@100':>6} {'tNN@10':>7} {'STSb':>6} {'bytes':>6} {'distill s':>9} {'n':>5}"
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        sts = r["stsb_spearman"]
        lines.append(
            f"{r['row'][:66]:<66} {r['ndcg@10']:>8.4f} {r['recall@100']:>6.3f} {r['teacher_nn_recall@10']:>7.3f} "
            f"{'-' if sts is None or math.isnan(sts) else f'{sts:.4f}':>6} {r['vector_bytes']:>6} "
            f"{r.get('distill_wall_s', 0):>9.0f} {r.get('train_size', ''):>5}"
        )
    for r in result["rows"]:
        if "speedup_single" in r and "pruned_speed" in r:
            lines.append(f"pruned {r.get('keep_layers', '?')}/12 vs teacher speed: single query "
                         f"{r['speedup_single']:.1f}x, batched "
                         f"{r['speedup_batched']:.1f}x")
        elif "speedup_single" in r:
            lines.append(f"static vs teacher speed: single query {r['speedup_single']:.0f}x "
                         f"({r['speedup_single_via_st_encode']:.0f}x through SentenceTransformer.encode), batched "
                         f"{r['speedup_batched']:.0f}x")
    return "\n".join(lines)


def merged_into(out: Path, result: dict[str, Any], only: set[str]) -> dict[str, Any]:
    """``result`` (a run of the ``only`` groups) merged into the results file ``out``: its rows replace the rows of
    the same name and the run is recorded; in full when ``out`` holds a run of another setting."""
    old = json.loads(out.read_text(encoding="utf-8"))
    if old.get("quick") != result["quick"] or old.get("documents") != result["documents"]:
        print(f"{out} holds a run of another setting (quick={old.get('quick')}, {old.get('documents')} "
              f"documents): not merged, written in full instead", file=sys.stderr)
        return result
    runs = old.get("partial_runs", [])
    runs.append({"only": sorted(only), "wall_time_s": result["wall_time_s"],
                 "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": result["machine"]})
    return {**old, "rows": merge_rows(old["rows"], result["rows"]), "partial_runs": runs}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="corpus subset and tiny budgets (CI smoke test)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding scifact/ and stsb/")
    parser.add_argument("--skip", default="", help=f"comma-separated row groups to leave out: {','.join(GROUPS)}")
    parser.add_argument("--only", default="", help="comma-separated row groups to compute, merged into --out")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default benchmarks/results/quality.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if not (args.data / "scifact").exists():
        print(f"no SciFact data under {args.data}", file=sys.stderr)
        return 1
    skip = {s for s in args.skip.split(",") if s}
    only = {s for s in args.only.split(",") if s} or None
    unknown = (skip | (only or set())) - set(GROUPS)
    if unknown:
        print(f"unknown row groups {sorted(unknown)}: choose from {','.join(GROUPS)}", file=sys.stderr)
        return 2
    result = run(args.quick, args.data, skip, only)
    out = args.out or RESULTS / ("quality-quick.json" if args.quick else "quality.json")
    if only is not None and out.exists():
        result = merged_into(out, result, only)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(render(result))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
