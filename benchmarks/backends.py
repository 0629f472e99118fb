"""Backends: torch against the exported ONNX graphs (fp32, int8) for the student, the teacher and the static student.

    .venv/bin/python benchmarks/backends.py            # full: SciFact corpus (5,183 abstracts), 300 test queries
    .venv/bin/python benchmarks/backends.py --quick    # smoke run (CI): 300 abstracts, 40 queries

For each (model, backend): single-query latency (median over SciFact claims, one at a time), documents per second
(SciFact abstracts, batches of 64, 256 tokens), and SciFact nDCG@10. The student is the recipe's starting point
(all-MiniLM-L6-v2 + a 384 -> 128 head: the body's own PCA rotated onto the teacher's, as distillation starts it),
exported with :func:`qdrant_distill.inference.export.export_model`. The teacher (all-mpnet-base-v2) answers as in
projection-only mode: queries through the teacher + PCA-128, documents are the PCA of their stored vectors. The
static student has a random table (its speed does not depend on it; no nDCG). Last, the peak RSS of a torch-free
query service: a child process that cannot import torch loads the int8 student and answers queries from a local
Qdrant. Prints a table and writes benchmarks/results/backends.json; ratios are measured in one run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, bench_main

from qdrant_distill.evaluation.beir import load_beir
from qdrant_distill.evaluation.metrics import retrieval_metrics
from qdrant_distill.inference.encoders import ProjectedEncoder, as_encoder, load_encoder

SCIFACT = REPO.parent / "shared" / "data" / "scifact"
MODELS = REPO / "models"


def latency_and_throughput(enc: Any, queries: list[str], docs: list[str]) -> dict[str, float]:
    enc.encode(docs[:8])
    for q in queries[:5]:
        enc.encode([q], kind="query")
    lat = []
    for q in queries:
        t = time.perf_counter()
        enc.encode([q], kind="query")
        lat.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    enc.encode(docs)
    docs_s = len(docs) / (time.perf_counter() - t)
    return {"latency_ms": round(statistics.median(lat), 2), "docs_per_s": round(docs_s, 1)}


def student_model(teacher_docs: np.ndarray, doc_texts: list[str]) -> Any:
    """MiniLM + the recipe's starting head (own PCA rotated onto the teacher's PCA), fitted on 2,000 abstracts."""
    from sentence_transformers import SentenceTransformer

    from qdrant_distill.distillation.students import fit_head, transformer_student
    from qdrant_distill.inference.projection import PCAProjection

    body = SentenceTransformer(str(MODELS / "all-MiniLM-L6-v2"), device="cpu")
    body.max_seq_length = 256
    n = min(2000, len(doc_texts))
    body_vecs = as_encoder(body).encode(doc_texts[:n])
    targets = PCAProjection.fit(teacher_docs[:n], 128).transform(teacher_docs[:n])
    return transformer_student(body, fit_head(body_vecs, targets, "own_pca"))


def ndcg(enc: Any, data: Any, doc_vecs: np.ndarray | None = None) -> float:
    docs = enc.encode(data.doc_texts) if doc_vecs is None else doc_vecs
    queries = enc.encode(data.queries, kind="query")
    return round(retrieval_metrics(queries, docs, data.qrels, data.query_ids, data.doc_ids)["ndcg@10"], 4)


def teacher_vectors(data: Any) -> np.ndarray:
    stored = np.load(SCIFACT / "teacher_all-mpnet-base-v2.npz")
    index = {str(i): k for k, i in enumerate(stored["doc_ids"])}
    return stored["doc_vecs"][[index[d] for d in data.doc_ids]].astype(np.float32)


def subset(data: Any, n_queries: int, n_docs: int) -> Any:
    """The first queries, the documents they are judged on, and the first documents."""
    from qdrant_distill.evaluation.beir import BeirDataset

    qids = data.query_ids[:n_queries]
    keep = {d for q in qids for d in data.qrels[q]} | set(data.doc_ids[:n_docs])
    rows = [k for k, d in enumerate(data.doc_ids) if d in keep]
    return BeirDataset([data.doc_ids[k] for k in rows], [data.titles[k] for k in rows],
                       [data.texts[k] for k in rows], qids, data.queries[:n_queries],
                       {q: data.qrels[q] for q in qids})


SERVICE = textwrap.dedent('''
    import importlib.abc, json, sys, time
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "sentence_transformers", "transformers"):
                raise ImportError(name)
    sys.meta_path.insert(0, Blocker())
    import numpy as np
    from qdrant_client import QdrantClient, models
    from qdrant_distill.inference.encoders import load_encoder
    enc = load_encoder(FOLDER, backend="onnx-int8")
    client = QdrantClient(":memory:")
    client.create_collection("docs", vectors_config=models.VectorParams(size=enc.dim, distance=models.Distance.COSINE))
    vecs = enc.encode(DOCS)
    client.upsert("docs", [models.PointStruct(id=i, vector=v.tolist()) for i, v in enumerate(vecs)])
    for q in QUERIES:
        client.query_points("docs", query=enc.encode(q, kind="query")[0].tolist(), limit=10)
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child started by a big parent reports the parent's
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"peak_rss_mb": peak / 1024, "torch_loaded": "torch" in sys.modules}))
''')


def service_rss(folder: Path, docs: list[str], queries: list[str]) -> dict[str, Any]:
    texts = folder.parent / "service_texts.json"
    texts.write_text(json.dumps({"docs": docs, "queries": queries}))
    script = (f"import json\nFOLDER = {str(folder)!r}\nTEXTS = json.load(open({str(texts)!r}))\n"
              f"DOCS, QUERIES = TEXTS['docs'], TEXTS['queries']\n{SERVICE}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool) -> dict[str, Any]:
    import torch

    from qdrant_distill.inference.export import export_model

    torch.set_num_threads(os.cpu_count() or 1)
    data = load_beir(SCIFACT, split="test")
    if quick:
        data = subset(data, 40, 300)
    docs = data.doc_texts
    speed_docs = sorted(docs[:384 if not quick else 64], key=len)
    claims = data.queries[:100 if not quick else 20]
    teacher_docs = teacher_vectors(data)
    work = Path(tempfile.mkdtemp(prefix="backends-"))
    rows: list[dict[str, Any]] = []

    student = student_model(teacher_docs, docs)
    export_model(student, work / "student", check_texts=docs[:64])
    for backend in ("torch", "onnx", "onnx-int8"):
        enc = as_encoder(student) if backend == "torch" else load_encoder(work / "student", backend=backend)
        rows.append({"model": "student MiniLM + head (128)", "backend": backend,
                     **latency_and_throughput(enc, claims, speed_docs), "ndcg@10": ndcg(enc, data)})
        print(rows[-1], flush=True)

    if not quick:  # the teacher's rows take minutes (mpnet export, quantisation, 300 queries): full runs only
        rows += teacher_rows(data, teacher_docs, claims, speed_docs, work)
    from benchmarks.speed import build_static

    static = build_static()
    rows.append({"model": "static (128, random table)", "backend": "numpy",
                 **latency_and_throughput(static, claims, speed_docs), "ndcg@10": None})
    service = service_rss(work / "student", docs[:1000], claims[:50])
    return {"quick": quick, "rows": rows, "ratios": ratios(rows), "query_service": service,
            "threads": os.cpu_count(), "corpus": len(docs), "queries": len(data.queries)}


def teacher_rows(data: Any, teacher_docs: np.ndarray, claims: list[str], speed_docs: list[str],
                 work: Path) -> list[dict[str, Any]]:
    """The teacher on each backend, answering as in projection-only mode (documents: projected stored vectors)."""
    from qdrant_distill.inference.export import export_model
    from qdrant_distill.inference.projection import PCAProjection

    rows = []
    projection = PCAProjection.fit(teacher_docs, 128)
    projected_docs = projection.transform(teacher_docs)
    export_model(str(MODELS / "all-mpnet-base-v2"), work / "teacher", check_texts=data.doc_texts[:32])
    for backend in ("torch", "onnx", "onnx-int8"):
        ref = MODELS / "all-mpnet-base-v2" if backend == "torch" else work / "teacher"
        enc = load_encoder(ref, backend=backend)
        row = {"model": "teacher all-mpnet-base-v2 (768)", "backend": backend,
               **latency_and_throughput(enc, claims[:40], speed_docs[:64]),
               "ndcg@10": ndcg(ProjectedEncoder(enc, projection), data, projected_docs)}
        rows.append(row)
        print(row, flush=True)
    return rows


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    by = {(r["model"].split()[0], r["backend"]): r for r in rows}
    s_torch, s_int8 = by[("student", "torch")], by[("student", "onnx-int8")]
    out = {
        "int8 student vs torch student, latency": round(s_torch["latency_ms"] / s_int8["latency_ms"], 2),
        "int8 student vs torch student, docs/s": round(s_int8["docs_per_s"] / s_torch["docs_per_s"], 2),
        "int8 student nDCG@10 - torch student": round(s_int8["ndcg@10"] - s_torch["ndcg@10"], 4),
    }
    if ("teacher", "torch") in by:
        out["int8 student vs torch teacher, latency"] = round(by[("teacher", "torch")]["latency_ms"]
                                                              / s_int8["latency_ms"], 2)
    return out


def table(result: dict[str, Any]) -> str:
    lines = [f"{'model':34} {'backend':10} {'query ms':>9} {'docs/s':>8} {'nDCG@10':>8}"]
    for r in result["rows"]:
        nd = f"{r['ndcg@10']:.4f}" if r["ndcg@10"] is not None else "-"
        lines.append(f"{r['model']:34} {r['backend']:10} {r['latency_ms']:9.2f} {r['docs_per_s']:8.1f} {nd:>8}")
    lines += [f"{k}: {v}" for k, v in result["ratios"].items()]
    lines.append(f"torch-free query service (int8 student, 1,000 points): peak RSS "
                 f"{result['query_service']['peak_rss_mb']:.0f} MB, "
                 f"torch loaded: {result['query_service']['torch_loaded']}")
    return "\n".join(lines)


def main() -> None:
    bench_main("backends", run, table)


if __name__ == "__main__":
    main()
