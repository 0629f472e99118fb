"""What a user gets: SciFact as an embedded Qdrant collection with a teacher's stored vectors, migrated by the command
line with its defaults, then searched through the alias with the query encoder the collection records.

    .venv/bin/python benchmarks/defaults.py --kind static                       # migrate --student-kind static
    .venv/bin/python benchmarks/defaults.py --kind transformer --mode project   # migrate --mode project
    .venv/bin/python benchmarks/defaults.py --kind static -- --label-queries 0  # extra migrate options after --

The migration is ``qdrant-distill migrate --path STORE --alias scifact --text-field text --student-kind KIND --dim 128
--yes`` plus ``--student models/all-MiniLM-L6-v2`` (the default student, all-MiniLM-L6-v2, from its local copy: this
machine has no hub access). It samples the default 5,000 of the 5,183 points to learn from; no query, qrel or label of SciFact reaches it. nDCG@10 is measured on the 300 test queries by ``query_points`` through
the alias, the query vectors from ``encoder_for`` (what a query service does), with the paired bootstrap 95% interval
against the teacher's own PCA-128 rows. Each row names its distillation wall time (from the run's journal) and the
machine's load before and after. Rows are added to benchmarks/results/transfer.json (row names end in "defaults").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import CACHE, DIM, MINILM, REPO, RESULTS
from transfer_common import (
    Collection,
    load_collection,
    paired_bootstrap,
    per_query_ndcg,
)

from qdrant_distill.evaluation.metrics import ndcg_at_k
from qdrant_distill.folders import RunFolder

ALIAS, SOURCE = "scifact", "scifact_v1"
logger = logging.getLogger("benchmarks.defaults")


def build_store(col: Collection, path: Path) -> None:
    """The "existing collection": every document with its text and the teacher's stored vector."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(path))
    client.create_collection(SOURCE, vectors_config=models.VectorParams(size=col.stored.shape[1],
                                                                        distance=models.Distance.COSINE))
    for start in range(0, len(col.docs), 1000):
        client.upsert(SOURCE, points=[
            models.PointStruct(id=i, vector=col.stored[i].tolist(), payload={"text": col.docs[i],
                                                                            "doc_id": col.doc_ids[i]})
            for i in range(start, min(start + 1000, len(col.docs)))])
    client.update_collection_aliases(change_aliases_operations=[
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=SOURCE, alias_name=ALIAS))])
    client.close()


def migrate(store: Path, run_dir: Path, kind: str, mode: str, extra: list[str]) -> tuple[float, str]:
    """The user's command; returns its wall time and what it printed last."""
    cmd = [str(Path(sys.executable).parent / "qdrant-distill"), "migrate", "--path", str(store), "--alias", ALIAS,
           "--text-field", "text", "--student", str(MINILM), "--student-kind", kind, "--mode", mode,
           "--dim", str(DIM), "--run-dir", str(run_dir), "--yes", "--no-progress", *extra]
    logger.info("running: %s", " ".join(cmd))
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"migrate failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return took, done.stdout[-2000:]


def search_through_alias(store: Path, col: Collection) -> np.ndarray:
    """Per-query nDCG@10 of the test queries, searched through the alias the way a query service would."""
    from qdrant_client import QdrantClient

    from qdrant_distill import encoder_for

    client = QdrantClient(path=str(store))
    enc = encoder_for(client, ALIAS)
    vecs = enc.encode(col.test.queries)
    scores = []
    for qid, vec in zip(col.test.query_ids, vecs):
        hits = client.query_points(ALIAS, query=vec.tolist(), using=enc.vector_name or None, limit=10,
                                   with_payload=["doc_id"]).points
        scores.append(ndcg_at_k([h.payload["doc_id"] for h in hits], col.test.qrels[qid], 10))
    client.close()
    return np.array(scores)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(teacher: str, kind: str, mode: str, extra: list[str]) -> dict[str, Any]:
    col = load_collection(teacher)
    work = CACHE / "defaults" / f"{teacher}-{kind}-{mode}"  # kept after the run: its report.html, journal, student
    shutil.rmtree(work, ignore_errors=True)
    store, run_dir = work / "store", work / "run"
    build_store(col, store)
    load_before = load()
    wall, printed = migrate(store, run_dir, kind, mode, extra)
    load_after = load()
    folder = RunFolder(run_dir)
    journal = json.loads(folder.journal.read_text())
    distill = json.loads(folder.distill.result.read_text())
    student = search_through_alias(store, col)
    pca = per_query_ndcg(col.pca.transform(col.test.teacher_queries), col.targets, col.test, col.doc_ids)
    mean, lo, hi = paired_bootstrap(student, pca)
    extra_name = f" {' '.join(extra)}" if extra else ""
    return {
        "teacher": teacher, "kind": kind, "mode": mode, "recipe": distill.get("recipe"),
        "row": f"{teacher} | {kind} | {mode} | defaults ({distill.get('recipe')}){extra_name}",
        "command": f"qdrant-distill migrate --student-kind {kind} --mode {mode} --dim {DIM} --yes{extra_name}",
        "ndcg@10": round(float(student.mean()), 4),
        "vs teacher PCA-128": {"pca": round(float(pca.mean()), 4), "diff": round(mean, 4),
                               "ci95": [round(lo, 4), round(hi, 4)]},
        "kept": (distill.get("selection") or {}).get("chosen", "trained") + f" (best step {distill.get('best_step')})",
        "distill_s": round(float(distill.get("wall_time_s", 0.0)), 1), "out_of_time": distill.get("out_of_time"),
        "steps": distill.get("steps"), "migrate_s": round(wall, 1), "backend": journal.get("backend"),
        "load_before": load_before, "load_after": load_after,
    }


def save(row: dict[str, Any]) -> None:
    path = RESULTS / "transfer.json"
    data = json.loads(path.read_text()) if path.exists() else {"rows": []}
    data.setdefault("rows", [])
    data["rows"] = [r for r in data["rows"] if r.get("row") != row["row"]] + [row]
    path.write_text(json.dumps(data, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="mpnet")
    parser.add_argument("--kind", default="static")
    parser.add_argument("--mode", default="reembed")
    parser.add_argument("extra", nargs="*", help="more migrate options (after --)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    row = run(args.teacher, args.kind, args.mode, args.extra)
    save(row)
    print(f"{'row':60} {'nDCG@10':>8} {'vs PCA-128 [95%]':>28} {'distill s':>10} {'load':>16}")
    ci = row["vs teacher PCA-128"]
    print(f"{row['row']:60} {row['ndcg@10']:8.4f} {ci['diff']:+.4f} [{ci['ci95'][0]:+.4f}, {ci['ci95'][1]:+.4f}]"
          f" {row['distill_s']:10.1f} {row['load_before']:>16}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "benchmarks"))
    main()
