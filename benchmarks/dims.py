"""Which dimension? ``qdrant-distill plan --dims`` on SciFact's stored teacher vectors (docs/benchmarks.md).

Builds an embedded Qdrant collection from ``../shared/data/scifact`` (5,183 abstracts: ``title`` and ``text`` payload,
the stored all-mpnet-base-v2 vectors, point ids = corpus ids) behind the alias ``scifact``, then runs the plan command
with ``--dims`` twice: on a 2,000-point sample, label-free; and on the default 5,000-point sample with the 300 test
queries (``--queries``) encoded by the teacher (``--teacher``) for nDCG@10. Each table goes to a JSON file
(``--dims-out``); ``--out`` gathers both with the wall time of each command.

    .venv/bin/python benchmarks/dims.py            # ~2 min here, most of it the teacher encoding 300 queries
    .venv/bin/python benchmarks/dims.py --quick    # 500 points, label-free only
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (  # first: the environment and sys.path
    CACHE,
    DATA,
    MPNET,
    REPO,
    RESULTS,
)

SCIFACT = DATA / "scifact"
DIMS = "64,128,256,384"
SEED = {"QDRANT_DISTILL_SAMPLE_SEED": "0"}  # a reproducible sample (a scroll's reservoir), the one a migration draws


def build_store(path: Path) -> None:
    """The SciFact collection with its stored teacher vectors (once; kept in benchmarks/cache)."""
    from qdrant_client import models

    from qdrant_distill.connectors.base import UNNAMED, Point
    from qdrant_distill.connectors.qdrant import QdrantConnector

    if (path / "done").exists():
        return
    stored = np.load(SCIFACT / "teacher_all-mpnet-base-v2.npz")
    vectors = dict(zip(stored["doc_ids"].astype(str), stored["doc_vecs"]))
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        corpus = [json.loads(line) for line in fh if line.strip()]
    with QdrantConnector.open(path=str(path)) as conn:
        for name in conn.collections():
            conn.delete_collection(name)
        conn.client.create_collection("scifact_v1", vectors_config=models.VectorParams(
            size=stored["doc_vecs"].shape[1], distance=models.Distance.COSINE))
        points = [Point(id=int(d["_id"]), payload={"title": d.get("title") or "", "text": d.get("text") or ""},
                        vectors={UNNAMED: vectors[str(d["_id"])]}) for d in corpus]
        for start in range(0, len(points), 512):
            conn.upsert("scifact_v1", points[start : start + 512])
        conn.create_alias("scifact", "scifact_v1")
    (path / "done").write_text("ok")


def plan(store: Path, out: Path, *extra: str) -> dict:
    """``qdrant-distill plan --dims`` as a user runs it; the table it wrote and the command's wall time."""
    command = [sys.executable, "-c", "from qdrant_distill.cli.app import main; main()", "plan", "--alias", "scifact", "--path", str(store),
               "--text-template", "{title} {text}", "--dims", DIMS, "--dims-out", str(out), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "160", **SEED})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    print(done.stdout)
    shown = [*(f"{k}={v}" for k, v in SEED.items()), "qdrant-distill", *command[3:]]
    shown_text = shlex.join(shown).replace(f"{REPO}/", "").replace(str(REPO.parent) + "/", "../")
    return {"command": shown_text, "wall_s": round(wall, 1), "table": json.loads(out.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "dims.json")
    args = parser.parse_args()
    store = CACHE / "dims_scifact_qdrant"
    build_store(store)
    work = Path(tempfile.mkdtemp(prefix="dims-"))  # each command's --dims-out; --out gathers them
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs = {}
    if args.quick:
        runs["sample 500"] = plan(store, work / "dims_500.json", "--sample-size", "500", "--dim", "128")
    else:
        runs["sample 2000"] = plan(store, work / "dims_2000.json", "--sample-size", "2000")
        runs["sample 5000, queries"] = plan(store, work / "dims_5000_queries.json", "--teacher", str(MPNET),
                                            "--queries", str(SCIFACT), "--no-teacher-check")
    args.out.write_text(json.dumps({"quick": args.quick, "runs": runs}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
