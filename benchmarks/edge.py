"""Qdrant Edge: the Edge folder (``qdrant-distill export-edge``) against the embedded client path, for an int8 ONNX
student and a static one.

    .venv/bin/python benchmarks/edge.py            # full: SciFact corpus (5,183 abstracts), 200 test claims
    .venv/bin/python benchmarks/edge.py --quick    # smoke run (CI): 300 abstracts, 20 claims

Each student is migrated for real in ``project`` mode (SciFact abstracts with their stored all-mpnet-base-v2 vectors,
768 -> 128: the documents get the projection of their stored vectors, so no document is encoded; the query student
on all-MiniLM-L6-v2, 200 sampled points and 2 training steps: speed, not quality, is measured) and the old collection finalized, so the
embedded store holds only the two migrated collections. Then, for each student:

- ``export-edge`` into a folder (seconds, points/s) and its size (shard, student, total), beside the size of the
  migrated collection in the embedded store;
- in a child process that cannot import torch: open the Edge folder and answer each claim one at a time (median
  latency of encode + search, and of the search alone, Qdrant Edge's default and exact), then its peak RSS (VmHWM);
- the same in a second child through the embedded client (``QdrantConnector`` on the store folder +
  ``encoder_for``): what an application without a server did before Edge;
- whether both paths return the same top-10 ids (exact search), and for a folder exported with ``--hnsw``, the
  recall@10 of HNSW against exact search.

Prints a table and writes benchmarks/results/edge.json (edge-quick.json with --quick).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import MINILM, REPO, bench_main

from qdrant_distill import (
    DistillConfig,
    GateConfig,
    MigrationConfig,
    export_edge,
    migrate,
)
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.connectors.base import UNNAMED, Point
from qdrant_distill.edge.shard import folder_size
from qdrant_distill.evaluation.beir import load_beir
from qdrant_distill.migration.operate import finalize_run

SCIFACT = REPO.parent / "shared" / "data" / "scifact"
KINDS = {"int8": "transformer", "static": "static"}
BLOCK = textwrap.dedent('''
    import importlib.abc, json, statistics, sys, time
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "sentence_transformers", "transformers"):
                raise ImportError(name)
    sys.meta_path.insert(0, Blocker())

    def timed(fn, items):
        for item in items[:5]:
            fn(item)
        out = []
        for item in items:
            t = time.perf_counter()
            fn(item)
            out.append((time.perf_counter() - t) * 1000)
        return round(statistics.median(out), 3)

    def report(**values):
        peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        print(json.dumps({**values, "peak_rss_mb": round(peak / 1024, 1), "torch_loaded": "torch" in sys.modules}))
''')
EDGE_CHILD = BLOCK + textwrap.dedent('''
    from qdrant_distill import edge
    t = time.perf_counter()
    index = edge.open(FOLDER)
    open_s = time.perf_counter() - t
    vectors = [index.encode(q)[0] for q in QUERIES]
    ids = [[h.id for h in index.search(q, limit=10, exact=True)] for q in QUERIES]
    approx = [[h.id for h in index.search(q, limit=10)] for q in QUERIES]
    report(open_s=round(open_s, 3), query_ms=timed(lambda q: index.search(q, limit=10), QUERIES),
           search_ms=timed(lambda v: index.search_vector(v, limit=10), vectors),
           exact_search_ms=timed(lambda v: index.search_vector(v, limit=10, exact=True), vectors),
           ids=ids, approx_ids=approx)
''')
CLIENT_CHILD = BLOCK + textwrap.dedent('''
    import qdrant_distill as qd
    from qdrant_distill.connectors import QdrantConnector
    t = time.perf_counter()
    conn = QdrantConnector.open(path=STORE)
    enc = qd.encoder_for(conn, ALIAS)
    open_s = time.perf_counter() - t
    name = enc.vector_name or None
    search = lambda v: conn.search(enc.collection, v, limit=10, vector_name=name)
    vectors = [enc.encode(q)[0] for q in QUERIES]
    ids = [[pid for pid, _ in search(v)] for v in vectors]
    report(open_s=round(open_s, 3), query_ms=timed(lambda q: search(enc.encode(q)[0]), QUERIES),
           search_ms=timed(search, vectors), ids=ids)
''')


def child(script: str, **names: Any) -> dict[str, Any]:
    head = "".join(f"{k} = {v!r}\n" for k, v in names.items())
    done = subprocess.run([sys.executable, "-c", head + script], capture_output=True, text=True, timeout=1200, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def build(conn: QdrantConnector, n_docs: int) -> tuple[list[str], np.ndarray, list[str]]:
    """SciFact abstracts with their stored teacher vectors (768-d), and the test claims."""
    data = load_beir(SCIFACT, split="test")
    stored = np.load(SCIFACT / "teacher_all-mpnet-base-v2.npz")
    index = {str(i): k for k, i in enumerate(stored["doc_ids"])}
    docs = [f"{t}. {x}" for t, x in zip(data.titles[:n_docs], data.texts[:n_docs])]
    vectors = stored["doc_vecs"][[index[d] for d in data.doc_ids[:n_docs]]].astype(np.float32)
    return docs, vectors, data.queries


def source(conn: QdrantConnector, name: str, docs: list[str], vectors: np.ndarray) -> None:
    from qdrant_client import models as qm

    conn.client.create_collection(name, vectors_config=qm.VectorParams(size=vectors.shape[1],
                                                                       distance=qm.Distance.COSINE))
    for start in range(0, len(docs), 512):
        conn.upsert(name, [Point(id=i, payload={"text": docs[i]}, vectors={UNNAMED: vectors[i]})
                           for i in range(start, min(start + 512, len(docs)))])
    conn.create_alias(f"{name}_alias", name)


def migrate_one(conn: QdrantConnector, alias: str, kind: str, run_dir: Path, quick: bool) -> Any:
    student = DistillConfig(kind=kind, base_model=str(MINILM), max_steps=2, batch_size=32)
    config = MigrationConfig(source=alias, dim=128, mode="project", sample_size=200, student=student,
                             gate=GateConfig(min_recall_at_10=0.0, min_spearman=-1.0), run_dir=str(run_dir),
                             page_size=256, progress=False, verify_sample=16)
    report = migrate(config, connector=conn)
    finalize_run(run_dir, conn)  # the store keeps only the migrated collection
    return report


def run(quick: bool) -> dict[str, Any]:
    n_docs, n_queries = (300, 20) if quick else (5183, 200)
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        return measure(Path(tmp), n_docs, n_queries, quick)


def measure(work: Path, n_docs: int, n_queries: int, quick: bool) -> dict[str, Any]:
    store = work / "store"
    rows: dict[str, Any] = {}
    with QdrantConnector.open(path=str(store)) as conn:
        docs, vectors, claims = build(conn, n_docs)
        for label, kind in KINDS.items():
            source(conn, f"scifact_{label}", docs, vectors)
            t = time.perf_counter()
            report = migrate_one(conn, f"scifact_{label}_alias", kind, work / f"run-{label}", quick)
            rows[label] = {"backend": str(report.backend), "target": report.target,
                           "migrate_s": round(time.perf_counter() - t, 1)}
        for label, row in rows.items():
            folder = work / f"edge-{label}"
            t = time.perf_counter()
            manifest = export_edge(f"scifact_{label}_alias", folder, connector=conn, progress=False)
            seconds = time.perf_counter() - t
            row.update(export_s=round(seconds, 2), points=manifest.points,
                       export_points_per_s=round(manifest.points / seconds, 1), folder=str(folder))
        hnsw = work / "edge-int8-hnsw"
        export_edge("scifact_int8_alias", hnsw, connector=conn, hnsw=True, progress=False)
    queries = claims[:n_queries]
    for label, row in rows.items():
        folder = Path(row["folder"])
        row["size_mb"] = {"shard": mb(folder_size(folder / "shard")), "student": mb(folder_size(folder / "student")),
                          "total": mb(folder_size(folder)), "total_apparent": mb(folder_size(folder, apparent=True)),
                          "client_collection": mb(folder_size(store / "collection" / row["target"]))}
        row["edge"] = child(EDGE_CHILD, FOLDER=str(folder), QUERIES=queries)
        row["client"] = child(CLIENT_CHILD, STORE=str(store), ALIAS=f"scifact_{label}_alias", QUERIES=queries)
        row["same_top10"] = row["edge"].pop("ids") == row["client"].pop("ids")
        row["edge"].pop("approx_ids")
    hnsw_run = child(EDGE_CHILD, FOLDER=str(hnsw), QUERIES=queries)
    hnsw_row = {"search_ms": hnsw_run["search_ms"], "exact_search_ms": hnsw_run["exact_search_ms"],
                "recall@10": round(float(np.mean([len(set(a) & set(e)) / 10 for a, e in
                                                  zip(hnsw_run["approx_ids"], hnsw_run["ids"])])), 4),
                "shard_mb": mb(folder_size(hnsw / "shard"))}
    return {"quick": quick, "documents": n_docs, "queries": n_queries, "rows": rows, "hnsw_int8": hnsw_row}


def mb(n: int) -> float:
    return round(n / 2**20, 2)


def table(result: dict[str, Any]) -> str:
    lines = [f"{result['documents']} SciFact abstracts (128-d), {result['queries']} claims one at a time; "
             "latency in ms (median), RSS in MB (VmHWM of a torch-blocked child)",
             f"{'student':8} {'path':7} {'query':>7} {'search':>7} {'exact':>7} {'open s':>7} {'RSS':>6} "
             f"{'disk MB':>8} same top-10"]
    for label, row in result["rows"].items():
        e, c, size = row["edge"], row["client"], row["size_mb"]
        lines.append(f"{label:8} {'edge':7} {e['query_ms']:7.2f} {e['search_ms']:7.3f} {e['exact_search_ms']:7.3f} "
                     f"{e['open_s']:7.2f} {e['peak_rss_mb']:6.0f} {size['total']:8.2f} {row['same_top10']}")
        lines.append(f"{'':8} {'client':7} {c['query_ms']:7.2f} {c['search_ms']:7.3f} {'':>7} {c['open_s']:7.2f} "
                     f"{c['peak_rss_mb']:6.0f} {size['client_collection']:8.2f}")
        lines.append(f"{'':8} export-edge {row['export_s']} s ({row['export_points_per_s']} points/s); on disk: "
                     f"shard {size['shard']} MB + student {size['student']} MB (apparent size, sparse files "
                     f"counted in full: {size['total_apparent']} MB)")
    h = result["hnsw_int8"]
    lines.append(f"--hnsw (int8 folder): search {h['search_ms']} ms (exact {h['exact_search_ms']} ms), recall@10 "
                 f"against exact {h['recall@10']}, shard {h['shard_mb']} MB")
    return "\n".join(lines)


def main() -> None:
    bench_main("edge", run, table)


if __name__ == "__main__":
    main()
