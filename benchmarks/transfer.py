"""Transfer from a teacher into students, with the original and the tuned teacher (issue 23): SciFact nDCG@10 with
paired bootstrap 95% intervals over the 300 test queries (the 809 train queries: a dev column, never trained on).

    .venv/bin/python benchmarks/transfer.py                      # both teachers (~15 min on 2 cores, cached)
    .venv/bin/python benchmarks/transfer.py --teachers tuned     # one
    .venv/bin/python benchmarks/transfer.py --static-labels 8000 # teacher labels (benchmarks/labels.py) join the
                                                                 # static student's training pairs

Rows per teacher: the teacher (768-d, its stored vectors and its own query vectors), projection-only (centred
PCA-128 of both), MiniLM off the shelf (384-d) and with its own uncentred PCA-128 (no teacher involved), and the
static student distilled by the library's recipe (``benchmarks/quality.py: static_config``): its untrained start (SIF
token vectors of MiniLM mapped onto the targets by ridge) and the trained table. Each row names its kept state and
its distillation wall time. The collection is every SciFact document with its stored vectors; 5% are held out for
the library's early stopping and holdout metrics. Prints a table and writes benchmarks/results/transfer.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import numpy as np
from common import DIM, MINILM, RESULTS, cached, holdout_split
from transfer_common import (
    Collection,
    gain,
    load_collection,
    paired_bootstrap,
    per_query_ndcg,
)

from qdrant_distill.inference.projection import PCAProjection


def minilm_rows(col: Collection, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    from qdrant_distill import load_encoder

    enc = load_encoder(MINILM, backend="torch", max_seq_length=256, batch_size=32)
    d = cached("minilm-docs-256", col.docs, lambda t: enc.encode(t, kind="document"))
    q = {s: cached(f"minilm-queries-{s}", getattr(col, s).queries, lambda t: enc.encode(t, kind="query"))
         for s in ("test", "dev")}
    pca = PCAProjection.fit(d, DIM)  # its own uncentred PCA, as the migration's untrained start uses
    out = {}
    for name, fq, fd in (("MiniLM 384-d, off the shelf", q, d),
                         ("MiniLM + own PCA-128 (untrained start)", {s: pca.transform(v) for s, v in q.items()},
                          pca.transform(d))):
        out[name] = add(rows, col, name, fq, fd, kept="untrained (no teacher)", distill_s=0.0)
    return out


def add(rows: list[dict[str, Any]], col: Collection, name: str, q: dict[str, np.ndarray], d: np.ndarray,
        **extra: Any) -> np.ndarray:
    test = per_query_ndcg(q["test"], d, col.test, col.doc_ids)
    dev = per_query_ndcg(q["dev"], d, col.dev, col.doc_ids)
    rows.append({"teacher": col.teacher, "row": name, "ndcg@10": round(float(test.mean()), 4),
                 "dev_ndcg@10": round(float(dev.mean()), 4), "dim": int(d.shape[1]), **extra})
    logging.info("%s | %s: %.4f (dev %.4f)", col.teacher, name, test.mean(), dev.mean())
    return test


def static_rows(col: Collection, rows: list[dict[str, Any]], labels: int) -> dict[str, np.ndarray]:
    import tempfile

    from quality import static_config

    from qdrant_distill import distill, load_encoder

    hold, train = holdout_split(len(col.docs))
    texts, vectors = [col.docs[i] for i in train], col.stored[train]
    config = static_config(False)
    extra_texts: list[str] = []
    if labels:
        from labels import load_labels

        extra_texts, label_vecs, label_s = load_labels(col.teacher, labels)
        texts, vectors = texts + extra_texts, np.concatenate([vectors, label_vecs])
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        res = distill(texts, vectors, config, output_dir=tmp, teacher_id=col.teacher,
                      holdout=([col.docs[i] for i in hold], col.stored[hold]), progress=False)
        took = time.perf_counter() - started
        student = load_encoder(res.student_path, backend="torch")
        d = student.encode(col.docs)
        q = {s: student.encode(getattr(col, s).queries, kind="query") for s in ("test", "dev")}
        # the untrained start, built as distill builds it (SIF token vectors of the body, ridge onto the targets)
        from qdrant_distill.distillation.students import load_body, static_student
        from qdrant_distill.inference.encoders import as_encoder

        projection = PCAProjection.fit(vectors, DIM, center=config.center)
        start = as_encoder(static_student(load_body(config.base_model), texts, projection.transform(vectors)))
        out["static, untrained start"] = add(
            rows, col, "static 128-d, untrained start (SIF + ridge)",
            {s: start.encode(getattr(col, s).queries, kind="query") for s in ("test", "dev")},
            start.encode(col.docs), kept="untrained", distill_s=0.0)
        name = f"static 128-d, distilled ({len(extra_texts)} teacher labels)"
        out["static"] = add(rows, col, name, q, d, kept=f"trained (best step {res.best_step})",
                            distill_s=round(took, 1), label_pairs=len(extra_texts))
    return out


def teacher_rows(col: Collection, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    q = {"test": col.test.teacher_queries, "dev": col.dev.teacher_queries}
    out = {"teacher": add(rows, col, "teacher 768-d", q, col.stored, kept="the stored vectors", distill_s=0.0)}
    out["pca"] = add(rows, col, "projection only (centred PCA-128)", {s: col.pca.transform(v) for s, v in q.items()},
                     col.targets, kept="no student", distill_s=0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", default="mpnet,tuned")
    parser.add_argument("--static-labels", type=int, default=0)
    parser.add_argument("--skip-static", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("qdrant_distill").setLevel(logging.WARNING)
    rows: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    for teacher in args.teachers.split(","):
        col = load_collection(teacher)
        per = teacher_rows(col, rows) | minilm_rows(col, rows)
        if not args.skip_static:
            per |= static_rows(col, rows, args.static_labels)
        pairs = [("static", "static, untrained start"), ("static", "MiniLM + own PCA-128 (untrained start)"),
                 ("pca", "MiniLM + own PCA-128 (untrained start)")]
        for a, b in pairs:
            if a in per and b in per:
                mean, lo, hi = paired_bootstrap(per[a], per[b])
                comparisons.append({"teacher": teacher, "a": a, "b": b, "diff": round(mean, 4),
                                    "ci95": [round(lo, 4), round(hi, 4)], "text": gain(per[a], per[b])})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transfer.json").write_text(json.dumps({"rows": rows, "comparisons": comparisons}, indent=2))
    print("| teacher | row | nDCG@10 (test) | dev | kept | distill s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['teacher']} | {r['row']} | {r['ndcg@10']:.4f} | {r['dev_ndcg@10']:.4f} | {r['kept']} | "
              f"{r['distill_s']} |")
    for c in comparisons:
        print(f"{c['teacher']}: {c['a']} - {c['b']}: {c['text']}")


if __name__ == "__main__":
    main()
