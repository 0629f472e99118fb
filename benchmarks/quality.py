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
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from qdrant_distill import DistillConfig, HeadInit, distill, load_encoder
from qdrant_distill.config import LossWeights
from qdrant_distill.distillation import for_queries
from qdrant_distill.encoders import as_encoder
from qdrant_distill.evaluate import (
    fidelity,
    load_beir,
    load_stsb,
    retrieval_metrics,
    sts_spearman,
)
from qdrant_distill.projection import PCAProjection
from qdrant_distill.students import fit_head

CACHE = HERE / "cache"
RESULTS = HERE / "results"
DATA = REPO.parent / "shared" / "data"
MINILM = REPO / "models" / "all-MiniLM-L6-v2"
MPNET = REPO / "models" / "all-mpnet-base-v2"
DIM = 128
GROUPS = ("teacher", "teacher-sts", "minilm", "transformer", "query-student", "query-pruned", "pruned",
          "pruned-untrained", "static")
HOLDOUT_FRACTION = 0.05
logger = logging.getLogger("benchmarks.quality")


# ---------------------------------------------------------------------------------------------------------- helpers
def cached_encode(model, tag: str, texts: list[str], *, batch_size: int = 32, max_seq_length: int | None = None):
    """Encode ``texts`` with ``model`` (normalised float32), cached under benchmarks/cache/ by tag and text hash."""
    digest = hashlib.sha1("\x1f".join(texts).encode()).hexdigest()[:12]
    path = CACHE / f"{tag}-seq{max_seq_length}-{digest}.npy"
    if path.exists():
        return np.load(path), 0.0
    enc = as_encoder(model, batch_size=batch_size)
    if max_seq_length is not None and hasattr(enc, "max_seq_length"):
        enc.max_seq_length = max_seq_length
    start = time.perf_counter()
    vecs = enc.encode(texts)
    took = time.perf_counter() - start
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs, took


class Bench:
    """The data of one run and the rows measured on it."""

    def __init__(self, quick: bool, data: Path) -> None:
        self.quick = quick
        ds = load_beir(data / "scifact")
        teacher = np.load(data / "scifact" / "teacher_all-mpnet-base-v2.npz")
        doc_index = {d: i for i, d in enumerate(teacher["doc_ids"].astype(str))}
        q_index = {q: i for i, q in enumerate(teacher["query_ids"].astype(str))}
        keep = np.arange(len(ds.doc_ids))
        if quick:  # the judged documents plus random others
            judged = {d for q in ds.query_ids for d in ds.qrels[q]}
            rel = [i for i, d in enumerate(ds.doc_ids) if d in judged]
            others = [i for i in np.random.default_rng(0).permutation(len(ds.doc_ids)) if ds.doc_ids[i] not in judged]
            keep = np.sort(np.array(rel + others[: max(0, 700 - len(rel))]))
        self.doc_ids = [ds.doc_ids[i] for i in keep]
        self.docs = [ds.doc_texts[i] for i in keep]
        self.query_ids, self.queries, self.qrels = ds.query_ids, ds.queries, ds.qrels
        self.teacher_docs = teacher["doc_vecs"][[doc_index[d] for d in self.doc_ids]]
        self.teacher_queries = teacher["query_vecs"][[q_index[q] for q in self.query_ids]]
        sts = load_stsb(data / "stsb")
        if quick:
            sts.sentences1, sts.sentences2, sts.scores = sts.sentences1[:300], sts.sentences2[:300], sts.scores[:300]
        self.sts = sts
        # training and held-out documents (held-out ones drive early stopping and teacher-neighbour recall)
        order = np.random.default_rng(0).permutation(len(self.docs))
        n_hold = max(20, round(len(self.docs) * HOLDOUT_FRACTION))
        self.hold_idx, self.train_idx = np.sort(order[:n_hold]), np.sort(order[n_hold:])
        self.projection = PCAProjection.fit(self.teacher_docs[self.train_idx], DIM)
        self.rows: list[dict[str, Any]] = []
        self.seq = 128 if quick else 256

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

    def sts_of(self, model=None, tag: str | None = None, transform=None) -> float:
        if model is None:
            return float("nan")
        if tag:
            v1, _ = cached_encode(model, f"{tag}-stsb1", self.sts.sentences1, max_seq_length=self.seq)
            v2, _ = cached_encode(model, f"{tag}-stsb2", self.sts.sentences2, max_seq_length=self.seq)
        else:
            enc = as_encoder(model)
            v1, v2 = enc.encode(self.sts.sentences1), enc.encode(self.sts.sentences2)
        if transform is not None:
            v1, v2 = transform(v1), transform(v2)
        return sts_spearman(v1, self.sts, vecs2=v2)


def speed(model, queries: list[str], n: int, *, st_model=None) -> dict[str, float]:
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


def distill_extra(res: Any) -> dict[str, Any]:
    """The fields every distilled row records about its distillation."""
    return {"distill_wall_s": res.wall_time_s, "train_size": res.train_size, "steps": res.steps,
            "best_step": res.best_step, "holdout_fidelity": res.metrics,
            "holdout_fidelity_untrained": res.baseline_metrics, "evaluations": res.evaluations}


def pruned_speed(student, teacher, queries: list[str], quick: bool) -> dict[str, Any]:
    """A pruned student's query speed against the teacher's, same run (empty without the teacher)."""
    if teacher is None:
        return {}
    n = 10 if quick else 30
    p_speed, t_speed = speed(student, queries, n), speed(teacher, queries, n)
    return {"pruned_speed": p_speed, "teacher_speed": t_speed,
            "speedup_single": p_speed["qd_single_qps"] / t_speed["qd_single_qps"],
            "speedup_batched": p_speed["qd_batched_qps"] / t_speed["qd_batched_qps"]}


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
    """The layer-pruned teacher as a query encoder for asymmetric use: the library's recipe (``for_queries``: its
    PCA head, the body trained on pseudo-queries against every training target, 3 epochs). Only the short
    pseudo-queries pass through the body, so a pruned teacher is affordable here, unlike the symmetric pruned row."""
    return for_queries(DistillConfig(
        export="none",  # the rows here run on torch; the ONNX backends: benchmarks/backends.py
        kind="pruned",
        teacher_model=str(MPNET),
        keep_layers=PRUNED_QUERY_KEEP,
        dim=DIM,
        max_steps=2 if quick else None,
        max_seq_length=128 if quick else 256,
        encode_batch_size=32,
        seed=0,
    ))


def static_config(quick: bool) -> DistillConfig:
    """The static tier (issue 23): the token table starts as before (MiniLM's token vectors, SIF weights, ridge onto
    the targets), then trains mostly on the search it will answer: each document's pseudo-query must find the
    student's own vector of that document among the batch's (``query_document``) and the document's stored vector
    (``pseudo_query``), while the documents stay on their stored vectors (cosine + in-batch contrastive). Many short
    epochs: a fresh cut of every document each epoch. docs/benchmarks.md ("Static tier") has the ablation."""
    return DistillConfig(
        export="none",  # the rows here run on torch; the ONNX backends: benchmarks/backends.py
        kind="static",
        base_model=str(MINILM),
        dim=DIM,
        epochs=1 if quick else 80,
        batch_size=256,
        lr_static=1e-2,
        weight_decay=0.0,
        weights=LossWeights(mse=0.0, cosine=1.0, contrastive=1.0, kl=0.0, pseudo_query=1.0, query_document=1.0),
        pseudo_query_negatives="batch",
        primary_metric="pseudo_query/mrr@10",
        eval_steps=None if quick else 100,
        early_stopping_patience=100,
        seed=0,
    )


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


# ---------------------------------------------------------------------------------------------------------- the run
def run(quick: bool, data: Path, skip: set[str], only: set[str] | None = None) -> dict[str, Any]:
    """Measure the rows of every group in ``only`` (all groups when None) that is not in ``skip``."""
    started = time.perf_counter()
    wanted = (set(GROUPS) if only is None else set(only)) - set(skip)
    if "teacher" not in wanted:
        wanted.discard("teacher-sts")
    b = Bench(quick, data)
    P = b.projection
    logger.info("%d documents (%d train, %d held out), %d queries; rows: %s", len(b.docs), len(b.train_idx),
                len(b.hold_idx), len(b.queries), ",".join(g for g in GROUPS if g in wanted))

    # the teacher model (its STSb vectors, and the reference for speed) and projections of its stored vectors
    needs_teacher = bool(wanted & {"teacher", "static", "pruned", "pruned-untrained", "query-pruned"}) and (
        "teacher" not in skip)
    teacher = load_encoder(str(MPNET)) if MPNET.exists() and needs_teacher else None
    if "teacher" in wanted:
        t_sts1 = t_sts2 = None
        if teacher is not None and "teacher-sts" in wanted:
            t_sts1, _ = cached_encode(teacher, "mpnet-stsb1", b.sts.sentences1, max_seq_length=384)
            t_sts2, _ = cached_encode(teacher, "mpnet-stsb2", b.sts.sentences2, max_seq_length=384)
        t_sts = sts_spearman(t_sts1, b.sts, vecs2=t_sts2) if t_sts1 is not None else None
        b.add("teacher all-mpnet-base-v2 (stored vectors)", b.teacher_queries, b.teacher_docs, sts=t_sts, dim=768)
        for dim in (64, 128, 256):
            p = P if dim == DIM else PCAProjection.fit(b.teacher_docs[b.train_idx], dim)
            sts = sts_spearman(p.transform(t_sts1), b.sts, vecs2=p.transform(t_sts2)) if t_sts1 is not None else None
            b.add(f"teacher + PCA-{dim} (projection only)", p.transform(b.teacher_queries),
                  p.transform(b.teacher_docs), sts=sts, dim=dim, explained_variance=p.explained_variance_ratio)
        b.partial()

    # MiniLM off the shelf, with its own PCA, with a ridge head (its vectors also serve the transformer student)
    md = None
    if wanted & {"minilm", "transformer", "query-student"}:
        minilm = load_encoder(str(MINILM))
        mq, _ = cached_encode(minilm, "minilm-scifact-queries", b.queries, max_seq_length=b.seq)
        md, _ = cached_encode(minilm, "minilm-scifact-docs", b.docs, max_seq_length=b.seq)
    if "minilm" in wanted:
        m1, _ = cached_encode(minilm, "minilm-stsb1", b.sts.sentences1, max_seq_length=b.seq)
        m2, _ = cached_encode(minilm, "minilm-stsb2", b.sts.sentences2, max_seq_length=b.seq)
        b.add("all-MiniLM-L6-v2 (384-d, off the shelf)", mq, md, sts=sts_spearman(m1, b.sts, vecs2=m2), dim=384)
        own = PCAProjection.fit(md[b.train_idx], DIM)
        b.add("MiniLM + own PCA-128 (no training)", own.transform(mq), own.transform(md),
              sts=sts_spearman(own.transform(m1), b.sts, vecs2=own.transform(m2)), dim=DIM)
        targets = P.transform(b.teacher_docs[b.train_idx])
        for mode in (HeadInit.RIDGE, HeadInit.OWN_PCA):
            w = fit_head(md[b.train_idx], targets, mode)
            f = lambda x, w=w: x @ w.T
            label = "ridge head" if mode is HeadInit.RIDGE else "own PCA rotated onto the targets"
            sts = sts_spearman(f(m1), b.sts, vecs2=f(m2))
            b.add(f"MiniLM + {label}, symmetric", f(mq), f(md), sts=sts, dim=DIM)
            b.add(f"MiniLM + {label}, asymmetric (docs = PCA-128 of teacher)", f(mq), P.transform(b.teacher_docs),
                  sts=sts, dim=DIM)
        b.partial()

    train_texts = [b.docs[i] for i in b.train_idx]
    holdout = ([b.docs[i] for i in b.hold_idx], b.teacher_docs[b.hold_idx])
    out_root = Path(os.environ.get("QUALITY_OUT", "/tmp/qdrant-distill-quality"))

    def frozen_body_student(cfg: DistillConfig, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, dict]:
        """Distil a frozen-body MiniLM student (the cached MiniLM vectors are its body vectors); its query vectors,
        document vectors, projected teacher documents, STSb Spearman and the row's extra fields."""
        cache = {b.docs[i]: md[i] for i in range(len(b.docs))}
        res = distill(train_texts, b.teacher_docs[b.train_idx], cfg, output_dir=out_root / name,
                      teacher_id="all-mpnet-base-v2", holdout=holdout, body_cache=cache)
        student = load_encoder(res.student_path, backend="torch")
        sq = student.encode(b.queries, kind="query")
        # the body did not change, so the student's document vectors are its head applied to the cached body
        # vectors; checked against real encodings of a sample
        dense = student.model[len(student.model) - 2]
        sd = md @ dense.linear.weight.detach().numpy().T
        if dense.linear.bias is not None:
            sd = sd + dense.linear.bias.detach().numpy()
        sd /= np.linalg.norm(sd, axis=1, keepdims=True)
        check = np.random.default_rng(1).choice(len(b.docs), 32, replace=False)
        gap = float(np.abs(student.encode([b.docs[i] for i in check]) - sd[check]).max())
        assert gap < 1e-3, f"cached document vectors differ from the student's by {gap}"
        td = PCAProjection.load(res.projection_path).transform(b.teacher_docs)
        return sq, sd, td, b.sts_of(student), distill_extra(res) | {"doc_vectors_check_max_abs": gap}

    if "transformer" in wanted:
        sq, sd, td, sts, extra = frozen_body_student(transformer_config(quick), "transformer")
        b.add("distilled MiniLM student 128 (frozen body), symmetric", sq, sd, sts=sts, dim=DIM, **extra)
        b.add("distilled MiniLM student 128 (frozen body), asymmetric (docs = PCA-128 of teacher)", sq, td,
              sts=sts, dim=DIM, **extra)
        b.partial()

    # the query student for asymmetric use: pseudo-queries against every training target
    if "query-student" in wanted:
        sq, sd, td, sts, extra = frozen_body_student(query_student_config(quick), "query-student")
        b.add("query student 128, asymmetric (docs = PCA-128 of teacher)", sq, td, sts=sts, dim=DIM, **extra)
        b.add("query student 128, symmetric", sq, sd, sts=sts, dim=DIM, **extra)
        b.partial()

    # the layer-pruned teacher as the query encoder (asymmetric only: documents keep the projected stored vectors)
    if "query-pruned" in wanted:
        if not MPNET.exists():
            print(f"query-pruned row skipped: no teacher model at {MPNET}", file=sys.stderr)
        else:
            cfg = pruned_query_config(quick)
            res = distill(train_texts, b.teacher_docs[b.train_idx], cfg, output_dir=out_root / "query-pruned",
                          teacher_id="all-mpnet-base-v2", holdout=holdout)
            student = load_encoder(res.student_path, backend="torch")
            student.max_seq_length = b.seq
            sq = student.encode(b.queries, kind="query")
            extra = distill_extra(res) | {"keep_layers": PRUNED_QUERY_KEEP}
            extra |= pruned_speed(student, teacher, b.queries, quick)
            b.add(f"query encoder: pruned mpnet {PRUNED_QUERY_KEEP}/12, asymmetric (docs = PCA-128 of teacher)", sq,
                  PCAProjection.load(res.projection_path).transform(b.teacher_docs), sts=b.sts_of(student), dim=DIM,
                  **extra)
            b.partial()

    # layer-pruned teacher: untrained (the pruned body + the PCA-128 of the stored vectors), then trained
    if "pruned-untrained" in wanted:
        if not MPNET.exists():
            print(f"pruned-untrained row skipped: no teacher model at {MPNET}", file=sys.stderr)
        elif quick:
            print("pruned-untrained row skipped in --quick (one more corpus pass of mpnet; the trained pruned row "
                  "already exercises the same code)", file=sys.stderr)
        else:
            from qdrant_distill.students import pruned_student

            base = (teacher or load_encoder(str(MPNET))).model  # the pruned student is built from the model
            student = pruned_student(base, P, PRUNED_KEEP)
            student.max_seq_length = b.seq
            tag = f"mpnet-pruned{PRUNED_KEEP}-untrained"
            sq, _ = cached_encode(student, f"{tag}-scifact-queries", b.queries, max_seq_length=b.seq)
            sd, took = cached_encode(student, f"{tag}-scifact-docs", b.docs, max_seq_length=b.seq)
            b.add(f"pruned mpnet {PRUNED_KEEP}/12 layers + PCA-128 (no training), symmetric", sq, sd,
                  sts=b.sts_of(student, tag), dim=DIM, corpus_encode_s=took)
            b.partial()

    if "pruned" in wanted:
        if not MPNET.exists():
            print(f"pruned row skipped: no teacher model at {MPNET}", file=sys.stderr)
        else:
            cfg = pruned_config(quick)
            res = distill(train_texts, b.teacher_docs[b.train_idx], cfg, output_dir=out_root / "pruned",
                          teacher_id="all-mpnet-base-v2", holdout=holdout)
            student = load_encoder(res.student_path, backend="torch")
            # encodings cached by the digest of the trained weights: a retrained student is encoded again
            weights = Path(res.student_path) / "model.safetensors"
            tag = f"mpnet-pruned{PRUNED_KEEP}-{file_digest(weights) if weights.exists() else 'unhashed'}"
            sq, _ = cached_encode(student, f"{tag}-scifact-queries", b.queries, max_seq_length=b.seq)
            sd, took = cached_encode(student, f"{tag}-scifact-docs", b.docs, max_seq_length=b.seq)
            extra = distill_extra(res) | {
                "train_size": res.steps * cfg.batch_size, "pca_fit_size": res.train_size,
                "stopped_early": res.stopped_early, "keep_layers": PRUNED_KEEP, "corpus_encode_s": took,
                "recipe": {k: cfg.model_dump(mode="json")[k] for k in (
                    "keep_layers", "max_steps", "batch_size", "lr_body", "lr_head", "weights",
                    "max_seq_length", "train_max_seq_length", "eval_steps")}}
            extra |= pruned_speed(student, teacher, b.queries, quick)
            b.add(f"pruned mpnet {PRUNED_KEEP}/12 layers + PCA-128, body trained, symmetric", sq, sd,
                  sts=b.sts_of(student, tag), dim=DIM, **extra)
            b.partial()

    # static student
    if "static" in wanted:
        res = distill(train_texts, b.teacher_docs[b.train_idx], static_config(quick), output_dir=out_root / "static",
                      teacher_id="all-mpnet-base-v2", holdout=holdout)
        student = load_encoder(res.student_path, backend="torch")
        sq, sd = student.encode(b.queries, kind="query"), student.encode(b.docs)
        extra = distill_extra(res)
        if teacher is not None:
            from sentence_transformers import SentenceTransformer  # the reference path: sentence-transformers' own

            s_speed = speed(student, b.queries, 300, st_model=SentenceTransformer(res.student_path, device="cpu"))
            t_speed = speed(teacher, b.queries, 10 if quick else 30)
            best_teacher_single = max(t_speed["st_single_qps"], t_speed["qd_single_qps"])
            best_teacher_batched = max(t_speed["st_batched_qps"], t_speed["qd_batched_qps"])
            extra |= {"static_speed": s_speed, "teacher_speed": t_speed,
                      "speedup_single": s_speed["qd_single_qps"] / best_teacher_single,
                      "speedup_single_via_st_encode": s_speed["st_single_qps"] / best_teacher_single,
                      "speedup_batched": s_speed["qd_batched_qps"] / best_teacher_batched}
        b.add("static student 128 (StaticEmbedding), symmetric", sq, sd, sts=b.sts_of(student), dim=DIM, **extra)
        b.partial()

    return {
        "quick": quick,
        "documents": len(b.docs),
        "train_documents": len(b.train_idx),
        "holdout_documents": len(b.hold_idx),
        "queries": len(b.queries),
        "sts_pairs": len(b.sts.scores),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "wall_time_s": time.perf_counter() - started,
        "rows": b.rows,
    }


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="corpus subset and tiny budgets (CI smoke test)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding scifact/ and stsb/")
    parser.add_argument("--skip", default="", help=f"comma-separated row groups to leave out: {','.join(GROUPS)}")
    parser.add_argument("--only", default="", help="comma-separated row groups to compute, merged into --out")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default benchmarks/results/quality.json)")
    args = parser.parse_args(argv)
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
        old = json.loads(out.read_text(encoding="utf-8"))
        if old.get("quick") != result["quick"] or old.get("documents") != result["documents"]:
            print(f"{out} holds a run of another setting (quick={old.get('quick')}, {old.get('documents')} "
                  f"documents): not merged, written in full instead", file=sys.stderr)
        else:
            runs = old.get("partial_runs", [])
            runs.append({"only": sorted(only), "wall_time_s": result["wall_time_s"],
                         "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": result["machine"]})
            result = {**old, "rows": merge_rows(old["rows"], result["rows"]), "partial_runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(render(result))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
