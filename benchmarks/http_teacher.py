"""A teacher over HTTP: teacher labelling through ``qdrant-distill serve`` + the HTTP connector, against the same
model encoding in-process, in one run on this machine.

    .venv/bin/python benchmarks/http_teacher.py            # 512 demo texts, 7 repeats (a few minutes on 2 cores)
    .venv/bin/python benchmarks/http_teacher.py --quick    # 128 texts, 1 repeat

``serve`` runs as its own process on a loopback port over a throwaway embedded store whose alias points to a
collection without metadata, so it answers with ``--default-model`` (all-MiniLM-L6-v2). Each row labels the same texts
with :func:`qdrant_distill.distillation.teacher.label_queries` (a fresh cache each time), the repeats taken round-robin, and reports
texts/s: the best repeat (what the path does when the machine is free: other work on a shared machine only slows
repeats down) and the median. The bar: the HTTP rows' best reaches >= 80% of the in-process best. Prints a table, writes benchmarks/results/http.json. (Not named ``http.py``: run as a script, it would shadow the standard library's ``http``.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import MINILM, REPO, RESULTS

from qdrant_distill import load_encoder
from qdrant_distill.cli.demo_data import load_demo_texts
from qdrant_distill.distillation.teacher import label_queries

BAR = 0.80
ALIAS = "teacher"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_store(path: Path, dim: int) -> None:
    """An embedded store with one collection (no qdrant-distill metadata) behind the alias ``teacher``."""
    from qdrant_client import models as qm

    from qdrant_distill.connectors import QdrantConnector
    from qdrant_distill.connectors.base import UNNAMED, Point

    with QdrantConnector.open(path=str(path)) as conn:
        conn.client.create_collection("teacher_v1", vectors_config=qm.VectorParams(size=dim,
                                                                                  distance=qm.Distance.COSINE))
        conn.upsert("teacher_v1", [Point(id=0, payload={"text": "x"}, vectors={UNNAMED: np.ones(dim, np.float32)})])
        conn.create_alias(ALIAS, "teacher_v1")


def start_serve(store: Path, port: int) -> subprocess.Popen:
    import httpx

    cmd = [str(Path(sys.executable).parent / "qdrant-distill"), "serve", "--path", str(store), "--alias", ALIAS,
           "--default-model", str(MINILM), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 900  # a ceiling: on a loaded machine start-up is slow, not broken
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("serve did not come up")


def label_rate(encoder: Any, texts: list[str]) -> tuple[float, np.ndarray]:
    """Texts/s of one teacher labelling pass (a fresh cache), and the labels."""
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        labels = label_queries(encoder, texts, cache, progress=False)
        return len(texts) / (time.perf_counter() - start), labels


def measure(encoders: dict[str, Any], texts: list[str], repeats: int) -> dict[str, dict[str, Any]]:
    """Each encoder's median rate, the repeats taken round-robin (all rows see the same machine load)."""
    for encoder in encoders.values():
        label_rate(encoder, texts[:16])  # warm up: model, connections
    rates: dict[str, list[float]] = {label: [] for label in encoders}
    labels: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for label, encoder in encoders.items():
            got, labels[label] = label_rate(encoder, texts)
            rates[label].append(got)
    first = next(iter(encoders))
    best, median = max(rates[first]), statistics.median(rates[first])
    rows = {first: {"texts_per_s": best, "median_texts_per_s": median, "runs": rates[first]}}
    for label in list(encoders)[1:]:
        cosine = float(np.min(np.sum(labels[label] * labels[first], axis=1)))
        rows[label] = {"texts_per_s": max(rates[label]), "ratio": max(rates[label]) / best,
                       "median_texts_per_s": statistics.median(rates[label]),
                       "median_ratio": statistics.median(rates[label]) / median,
                       "min_cosine_vs_in_process": cosine, "runs": rates[label]}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--texts", type=int, default=None, help="demo texts labelled [default: 512, quick 128]")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default benchmarks/results/http.json)")
    args = parser.parse_args()
    n = args.texts or (128 if args.quick else 512)
    repeats = 1 if args.quick else 7
    texts = [row["text"] for row in load_demo_texts()][:n]

    local = load_encoder(str(MINILM))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        make_store(Path(tmp) / "store", local.dim)
        port = free_port()
        proc = start_serve(Path(tmp) / "store", port)
        try:
            base = f"http://127.0.0.1:{port}"
            refs = {
                "serve /v1/embeddings + openai connector (1 request of all texts, base64)":
                    f"openai+{base}?model={ALIAS}",
                "serve /v1/embeddings + openai connector (batches of 64, 4 in flight)":
                    f"openai+{base}?model={ALIAS}&batch=64&in_flight=4",
                "serve /embed + tei connector (batches of 32, JSON floats)": f"tei+{base}",
            }
            encoders = {"in-process (sentence-transformers)": local} | {k: load_encoder(r) for k, r in refs.items()}
            rows = measure(encoders, texts, repeats)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    print(f"\nteacher labelling, all-MiniLM-L6-v2, {n} demo texts, {repeats} repeats ({os.cpu_count()} cores)\n")
    print(f"{'':80} {'best/s':>7} {'ratio':>6} {'median/s':>9} {'ratio':>6} {'min cos':>8}")
    for label, row in rows.items():
        ratios = [f"{row[k]:.0%}" if k in row else "" for k in ("ratio", "median_ratio")]
        cos = f"{row['min_cosine_vs_in_process']:.5f}" if "ratio" in row else ""
        print(f"{label:80} {row['texts_per_s']:7.1f} {ratios[0]:>6} {row['median_texts_per_s']:9.1f} "
              f"{ratios[1]:>6} {cos:>8}")
    passed = all(row.get("ratio", 1.0) >= BAR for row in rows.values())
    print(f"load average (1 min) before and after: {load_before:.2f}, {os.getloadavg()[0]:.2f}")
    print(f"\nbar: every HTTP row >= {BAR:.0%} of in-process: {'met' if passed else 'NOT met'}")
    out = {"command": "benchmarks/http_teacher.py" + (" --quick" if args.quick else ""), "texts": n, "repeats": repeats,
           "model": "all-MiniLM-L6-v2", "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                     "python": platform.python_version(),
                                                     "load_average_1min": [load_before, os.getloadavg()[0]]},
           "rows": rows, "bar": BAR, "bar_met": passed}
    path = args.out or RESULTS / ("http_quick.json" if args.quick else "http.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
