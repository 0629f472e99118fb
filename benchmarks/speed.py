"""Speed and memory: encode latency and throughput of teacher and students, the re-embed pipeline against raw
encoding, peak memory of a re-embed at 10k and 100k points, and project mode against raw writes.

    .venv/bin/python benchmarks/speed.py            # full
    .venv/bin/python benchmarks/speed.py --quick    # a smoke run (CI): tiny sizes, checks the script works
    .venv/bin/python benchmarks/speed.py --ray-only # the Ray engine against the local engine (3,000 points)

Prints a table and writes benchmarks/results/speed.json. Threads are pinned to the machine's cores; warm-up excluded.
Student speed does not depend on trained weights, so the students here have the architectures distillation produces
(MiniLM + Dense head; mpnet pruned to 4 of 12 layers + projection; a static token table) with untrained weights.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, RESULTS

from qdrant_distill.connectors.base import UNNAMED, Page, Point, TextSource
from qdrant_distill.inference.encoders import StaticEncoder, as_encoder
from qdrant_distill.migration.config import MissingTextPolicy
from qdrant_distill.migration.engines.local import PageConverter, reembed

DEBIAN = REPO.parent / "shared" / "data" / "debian_descriptions" / "paragraphs.jsonl.gz"
MODELS = REPO / "models"


def debian_texts(n: int) -> list[str]:
    """The first ``n`` Debian paragraphs (or the shipped demo glosses when the shared data is absent)."""
    if DEBIAN.exists():
        out = []
        with gzip.open(DEBIAN, "rt", encoding="utf-8") as fh:
            for line in fh:
                out.append(json.loads(line)["text"])
                if len(out) >= n:
                    break
        return out
    from qdrant_distill.cli.demo_data import load_demo_texts

    rows = [r["text"] for r in load_demo_texts()]
    return (rows * (n // len(rows) + 1))[:n]


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def build_models(quick: bool) -> dict[str, Any]:
    """Teacher and students (architectures as distillation makes them)."""
    from sentence_transformers import SentenceTransformer

    from qdrant_distill.distillation.students import pruned_student, transformer_student
    from qdrant_distill.inference.projection import PCAProjection

    rng = np.random.default_rng(0)
    teacher = SentenceTransformer(str(MODELS / "all-mpnet-base-v2"), device="cpu")
    minilm = SentenceTransformer(str(MODELS / "all-MiniLM-L6-v2"), device="cpu")
    q, _ = np.linalg.qr(rng.standard_normal((768, 128)))
    projection = PCAProjection(components=q.T.astype(np.float64), mean=np.zeros(768), explained_variance_ratio=0.0)
    static = build_static()
    return {
        "teacher all-mpnet-base-v2 (768)": teacher,
        "all-MiniLM-L6-v2 (384)": minilm,
        "transformer student MiniLM+Dense (128)": transformer_student(minilm, None, dim=128),
        "pruned teacher 4/12 layers (128)": pruned_student(teacher, projection, keep=4),
        "static student (128)": static,
    }


def encode_speed(model: Any, queries: Sequence[str], docs: Sequence[str], n_queries: int) -> dict[str, float]:
    """Single-query latency (median, p90) and documents per second through the encoder seam, after a warm-up."""
    enc = as_encoder(model, batch_size=32)
    enc.encode(list(docs[:16]))
    for q in queries[:10]:
        enc.encode([q], kind="query")
    lat = []
    for q in queries[:n_queries]:
        t = time.perf_counter()
        enc.encode([q], kind="query")
        lat.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    enc.encode(list(docs))
    docs_s = len(docs) / (time.perf_counter() - t)
    return {"latency_ms_median": statistics.median(lat), "latency_ms_p90": float(np.percentile(lat, 90)),
            "docs_per_s": docs_s}


class StreamConnector:
    """A source that generates pages and a target that counts writes: isolates the pipeline's own time and memory
    from storage (a real Qdrant server keeps its storage out of process; local mode keeps it in ours)."""

    def __init__(self, texts: Sequence[str], n: int, dim: int = 768, write_delay_s: float = 0.0) -> None:
        self.texts, self.n, self.dim, self.write_delay_s = texts, n, dim, write_delay_s
        self.written = 0
        self.rng = np.random.default_rng(0)

    def scroll(self, collection: str, *, page_size: int = 256, offset: Any = None, with_vectors: Any = False,
               **_: Any) -> Iterator[Page]:
        start = offset or 0
        while start < self.n:
            ids = range(start, min(start + page_size, self.n))
            vec = self.rng.standard_normal((len(ids), self.dim)).astype(np.float32) if with_vectors else None
            points = [Point(i, {"text": self.texts[i % len(self.texts)], "n": i},
                            {UNNAMED: vec[k]} if vec is not None else {}) for k, i in enumerate(ids)]
            nxt = ids[-1] + 1
            yield Page(points=points, offset=start, next_offset=nxt if nxt < self.n else None)
            start = nxt

    def upsert(self, collection: str, points: Sequence[Point], *, wait: bool = True) -> None:
        if self.write_delay_s:
            time.sleep(self.write_delay_s)
        self.written += len(points)


def pipeline_vs_raw(model: Any, texts: Sequence[str], batch: int = 64, page_size: int = 256) -> dict[str, float]:
    """Re-embed pipeline points/s against the same model's raw encode points/s on the same texts (one run)."""
    encoder = as_encoder(model, batch_size=batch)
    t = time.perf_counter()
    encoder.encode(list(texts))
    raw = len(texts) / (time.perf_counter() - t)
    conn = StreamConnector(texts, len(texts))
    conv = PageConverter(vector_name=UNNAMED, text=TextSource(), encode=encoder.encode,
                         missing_text=MissingTextPolicy.FAIL)
    stats = reembed(conn, source="s", target="t", converter=conv, vectors=False, page_size=page_size, progress=False)
    return {"page_size": page_size, "raw_points_per_s": raw, "pipeline_points_per_s": stats.points_per_s,
            "ratio": stats.points_per_s / raw}


def memory_run(n: int, texts: Sequence[str]) -> dict[str, float]:
    """Peak RSS growth of a re-embed of ``n`` points with the static student (run in a fresh process)."""
    from qdrant_distill.inference.projection import PCAProjection

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((768, 128)))
    proj = PCAProjection(components=q.T.astype(np.float64), mean=np.zeros(768), explained_variance_ratio=0.0)
    encoder = build_static()
    conn = StreamConnector(texts, n)
    conv = PageConverter(vector_name=UNNAMED, text=TextSource(), encode=encoder.encode, project=proj.transform)
    base, peak, stop = rss_mb(), [rss_mb()], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stats = reembed(conn, source="s", target="t", converter=conv, vectors=False, page_size=256, progress=False)
    stop.set()
    watcher.join()
    return {"points": n, "rss_before_mb": base, "rss_peak_mb": peak[0], "points_per_s": stats.points_per_s}


def build_static() -> Any:
    """A static student of MiniLM's vocabulary (random 128-d table): what load_encoder gives for a static student."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(MODELS / "all-MiniLM-L6-v2" / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    table = np.random.default_rng(0).standard_normal((tokenizer.get_vocab_size(), 128)).astype(np.float32)
    return StaticEncoder(tokenizer, table, name="static student (random table)")


def project_vs_writes(n: int, texts: Sequence[str]) -> dict[str, float]:
    """Project mode (no encoding) against plain upserts of the same points into embedded Qdrant (:memory:)."""
    from qdrant_client import models as qm

    from qdrant_distill.connectors.qdrant import QdrantConnector
    from qdrant_distill.inference.projection import PCAProjection

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, 768)).astype(np.float32)
    proj = PCAProjection.fit(vecs[:2000], 128)
    conn = QdrantConnector.open(location=":memory:")
    for name in ("raw", "src", "dst"):
        conn.client.create_collection(name, vectors_config=qm.VectorParams(size=768 if name == "src" else 128,
                                                                           distance=qm.Distance.COSINE))
    small = proj.transform(vecs)
    pts = [Point(i, {"text": texts[i % len(texts)]}, {UNNAMED: small[i]}) for i in range(n)]
    t = time.perf_counter()
    for s in range(0, n, 256):
        conn.upsert("raw", pts[s : s + 256])
    raw = n / (time.perf_counter() - t)
    for s in range(0, n, 256):
        conn.upsert("src", [Point(i, {"text": texts[i % len(texts)]}, {UNNAMED: vecs[i]}) for i in range(s, min(s + 256, n))])
    # the connector's own floor for a copy: scroll the 768-d source, write precomputed 128-d vectors
    t = time.perf_counter()
    for page in conn.scroll("src", page_size=256, with_vectors=True):
        conn.upsert("raw", [Point(p.id, p.payload, {UNNAMED: small[p.id]}) for p in page.points])
    copy = n / (time.perf_counter() - t)
    conv = PageConverter(vector_name=UNNAMED, text=TextSource(), encode=None, project=proj.transform)
    stats = reembed(conn, source="src", target="dst", converter=conv, vectors=True, page_size=256, progress=False)
    return {"points": n, "raw_write_points_per_s": raw, "copy_points_per_s": copy,
            "project_points_per_s": stats.points_per_s, "ratio_to_writes": stats.points_per_s / raw,
            "ratio_to_copy": stats.points_per_s / copy}


def ray_vs_local(n: int, texts: Sequence[str], quick: bool) -> dict[str, Any]:
    """The Ray engine (2 actors, 1 thread each, on a local Ray) against the local engine (2 torch threads), same
    student (MiniLM + Dense 128, loaded from its folder), same ``n`` points in embedded Qdrant (:memory:), one run.
    Steady state: from the first range written to the last (startup, actors loading the model, excluded)."""
    import tempfile

    import ray
    from qdrant_client import models as qm
    from sentence_transformers import SentenceTransformer

    from qdrant_distill.connectors.qdrant import QdrantConnector
    from qdrant_distill.connectors.settings import QdrantSettings
    from qdrant_distill.distillation.students import transformer_student
    from qdrant_distill.inference.encoders import load_encoder
    from qdrant_distill.migration.config import RayConfig
    from qdrant_distill.migration.engines.ray import (
        encoded_elsewhere,
        reembed_ranges,
        session,
    )
    from qdrant_distill.migration.journal import Journal

    page, range_size = (64, 128) if quick else (256, 512)
    conn = QdrantConnector.open(location=":memory:")
    conn.client.create_collection("src", vectors_config=qm.VectorParams(size=4, distance=qm.Distance.COSINE))
    for name in ("local", "ray"):
        conn.client.create_collection(name, vectors_config=qm.VectorParams(size=128, distance=qm.Distance.COSINE))
    for s in range(0, n, 512):
        conn.upsert("src", [Point(i, {"text": texts[i % len(texts)], "n": i}, {UNNAMED: [1.0, 0.0, 0.0, 0.0]})
                            for i in range(s, min(s + 512, n))])
    with tempfile.TemporaryDirectory() as tmp:
        minilm = SentenceTransformer(str(MODELS / "all-MiniLM-L6-v2"), device="cpu")
        transformer_student(minilm, None, dim=128).save(tmp)
        student = load_encoder(tmp, batch_size=64)
        student.encode(list(texts[:32]))  # warm-up
        conv = PageConverter(vector_name=UNNAMED, text=TextSource(), encode=student.encode)
        local = reembed(conn, source="src", target="local", converter=conv, vectors=False, page_size=page,
                        progress=False)
        cfg = RayConfig(workers=2, range_size=range_size)
        t = time.perf_counter()
        with session(cfg):
            started = time.perf_counter() - t
            journal = Journal(path=str(Path(tmp) / "journal.json"))
            shipped = PageConverter(vector_name=UNNAMED, text=TextSource(), encode=encoded_elsewhere)
            reembed_ranges(conn, QdrantSettings(location=":memory:"), journal, source="src", target="ray",
                           converter=shipped, vectors=False, config=cfg, student=tmp, page_size=page,
                           encode_batch_size=64, total=n, progress=False)
            total_s = time.perf_counter() - t
        ray_alive = ray.is_initialized()
    times = [r.written_at for r in journal.ranges]
    steady = sum(r.written for r in journal.ranges[1:]) / (times[-1] - times[0])
    return {"points": n, "page_size": page, "range_size": range_size, "workers": 2,
            "local_points_per_s": local.points_per_s, "ray_points_per_s_steady": steady,
            "ray_points_per_s_with_startup": n / total_s, "ray_startup_s": started,
            "ratio_steady": steady / local.points_per_s, "ratio_with_startup": n / total_s / local.points_per_s,
            "per_worker_points_per_s": steady / 2, "ray_left_running": ray_alive}


def distill_time(n: int, quick: bool) -> dict[str, float]:
    """Wall time of distilling MiniLM on ``n`` SciFact documents (stored mpnet vectors), per 1k samples."""
    import gzip as gz

    from qdrant_distill import DistillConfig, distill

    data = np.load(REPO.parent / "shared" / "data" / "scifact" / "teacher_all-mpnet-base-v2.npz")
    by_id = {}
    with gz.open(REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl.gz", "rt") as fh:
        for line in fh:
            row = json.loads(line)
            by_id[row["_id"]] = f"{row['title']} {row['text']}"
    ids = [str(i) for i in data["doc_ids"][:n]]
    cfg = DistillConfig(base_model=str(MODELS / "all-MiniLM-L6-v2"), epochs=1, max_seq_length=256,
                        max_steps=2 if quick else None, export="none")  # distillation alone (export: export.json)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        res = distill([by_id[i] for i in ids], data["doc_vecs"][:n], cfg, output_dir=tmp, progress=False)
    return {"samples": n, "wall_time_s": res.wall_time_s, "per_1k_s": res.wall_time_s * 1000 / n}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default benchmarks/results/speed.json)")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ray-only", action="store_true", help="only the Ray vs local engine comparison "
                        "(writes benchmarks/results/ray[_quick].json)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    if args.memory_child:
        print(json.dumps(memory_run(args.memory_child, debian_texts(20000))))
        return
    if args.ray_only:
        ray_only(args.quick, args.out)
        return
    quick = args.quick
    out: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads "
                                      f"{torch.get_num_threads()}", "quick": quick, "encode": {}}
    queries = debian_texts(400)[200:]
    docs = debian_texts(200 if quick else 1000)
    for name, model in build_models(quick).items():
        n_docs = docs if "teacher" not in name or quick else docs[:300]
        out["encode"][name] = encode_speed(model, [q[:80] for q in queries], n_docs, 20 if quick else 200)
        print(name, {k: round(v, 2) for k, v in out["encode"][name].items()}, flush=True)
    teacher = out["encode"]["teacher all-mpnet-base-v2 (768)"]
    for row in out["encode"].values():
        row["latency_speedup"] = teacher["latency_ms_median"] / row["latency_ms_median"]
        row["throughput_speedup"] = row["docs_per_s"] / teacher["docs_per_s"]
    student = build_models(quick)["transformer student MiniLM+Dense (128)"]
    texts = debian_texts(300 if quick else 3000)
    out["pipelines"] = [pipeline_vs_raw(student, texts, page_size=size) for size in (256, 512, 1024)]
    out["pipeline"] = out["pipelines"][-1]  # the default page size (1024)
    print("pipeline", out["pipelines"], flush=True)
    out["memory"] = []
    for n in ([2000, 20000] if quick else [10000, 100000]):
        child = subprocess.run([sys.executable, __file__, "--memory-child", str(n)], capture_output=True, text=True,
                               check=True)
        out["memory"].append(json.loads(child.stdout.strip().splitlines()[-1]))
        print("memory", out["memory"][-1], flush=True)
    out["memory_ratio"] = out["memory"][1]["rss_peak_mb"] / out["memory"][0]["rss_peak_mb"]
    out["project"] = project_vs_writes(2000 if quick else 20000, debian_texts(1000))
    print("project", out["project"], flush=True)
    out["distill"] = distill_time(64 if quick else 1000, quick)
    print("distill", out["distill"], flush=True)
    out["ray"] = ray_vs_local(300 if quick else 3000, debian_texts(3000), quick)
    print("ray", out["ray"], flush=True)
    path = args.out or RESULTS / ("speed_quick.json" if quick else "speed.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(table(out))
    print(f"wrote {path}")


def ray_only(quick: bool, out: Path | None) -> None:
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "quick": quick,
              "ray": ray_vs_local(300 if quick else 3000, debian_texts(3000), quick)}
    path = out or RESULTS / ("ray_quick.json" if quick else "ray.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["ray"], indent=2))
    print(f"wrote {path}")


def table(out: dict[str, Any]) -> str:
    lines = ["| model | query latency median / p90 (ms) | docs/s | latency speed-up | throughput speed-up |",
             "|---|---|---|---|---|"]
    for name, r in out["encode"].items():
        lines.append(f"| {name} | {r['latency_ms_median']:.1f} / {r['latency_ms_p90']:.1f} | {r['docs_per_s']:.1f} | "
                     f"{r['latency_speedup']:.1f}x | {r['throughput_speedup']:.1f}x |")
    lines.append("")
    for p in out["pipelines"]:
        lines.append(f"re-embed pipeline, pages of {p['page_size']}: {p['pipeline_points_per_s']:.1f} points/s vs raw "
                     f"encode {p['raw_points_per_s']:.1f} points/s: {100 * p['ratio']:.0f}%")
    m = out["memory"]
    lines.append("peak RSS of a re-embed (static student, streamed source): " + ", ".join(
        f"{r['points']:,} points {r['rss_peak_mb']:.0f} MB ({r['points_per_s']:.0f} points/s)" for r in m)
        + f"; ratio {out['memory_ratio']:.2f}")
    pr = out["project"]
    lines.append(f"project mode {pr['project_points_per_s']:.0f} points/s vs a plain copy (scroll 768-d + write "
                 f"128-d) {pr['copy_points_per_s']:.0f} points/s ({100 * pr['ratio_to_copy']:.0f}%) and raw 128-d "
                 f"writes {pr['raw_write_points_per_s']:.0f} points/s ({100 * pr['ratio_to_writes']:.0f}%); "
                 f"{pr['points']:,} points, embedded :memory:")
    d = out["distill"]
    lines.append(f"distillation (MiniLM, SciFact abstracts): {d['wall_time_s']:.0f} s for {d['samples']} samples, "
                 f"{d['per_1k_s']:.0f} s per 1k")
    r = out["ray"]
    lines.append(f"Ray engine ({r['workers']} actors x 1 thread, local Ray) vs local engine (2 threads), MiniLM+Dense "
                 f"student, {r['points']:,} points: {r['ray_points_per_s_steady']:.1f} vs {r['local_points_per_s']:.1f}"
                 f" points/s steady ({r['ratio_steady']:.2f}x; {r['per_worker_points_per_s']:.1f} per worker); with "
                 f"Ray's startup ({r['ray_startup_s']:.1f} s) {r['ray_points_per_s_with_startup']:.1f} points/s "
                 f"({r['ratio_with_startup']:.2f}x)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
