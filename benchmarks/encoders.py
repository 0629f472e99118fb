"""The encoder seam's figures: what an admin command costs without torch, and what the teacher check sees.

    .venv/bin/python benchmarks/encoders.py            # full (about a minute; the teacher rows need mpnet + SciFact)
    .venv/bin/python benchmarks/encoders.py --quick    # fewer repeats

1. ``qdrant-distill status RUN_DIR``: wall time and peak RSS of the whole command (median of runs, fresh processes),
   with the code of ``--baseline`` (default: the commit before the encoder seam) and with this checkout, in one run.
2. The teacher check on SciFact: stored vectors = all-mpnet-base-v2 of "{title} {text}" (the shared teacher file);
   the mean / lowest cosine the check measures for the right teacher and template, other templates, and the teacher
   with layers removed. The check refuses below ``TEACHER_MIN_COSINE``.

Prints a table and writes benchmarks/results/encoders.json.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import MPNET, REPO, RESULTS

from qdrant_distill import load_encoder
from qdrant_distill.distillation.config import TEACHER_MIN_COSINE
from qdrant_distill.distillation.teacher import TEACHER_CHECK_TEXTS
from qdrant_distill.inference.encoders import as_encoder

SCIFACT = REPO.parent / "shared" / "data" / "scifact"
BASELINE = "f10d343"  # the last commit before the encoder seam: `import qdrant_distill` imported torch


def status_cost(runs: int, code: Path) -> dict[str, float]:
    """Median wall time and peak RSS of ``qdrant-distill status`` on a journal, each run a fresh process, with the
    package from the checkout ``code``."""
    from qdrant_distill.migration.journal import Journal

    command = ("import resource, sys\nfrom qdrant_distill.cli.app import main\nsys.argv = ['qdrant-distill', 'status', "
               "sys.argv[1]]\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
               "print(int('torch' in sys.modules), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    with tempfile.TemporaryDirectory() as tmp:
        Journal.open(Path(tmp), {"source": "docs"}).save()
        walls, peaks, torch_seen = [], [], []
        for _ in range(runs):
            start = time.perf_counter()
            child = subprocess.run([sys.executable, "-c", command, tmp], capture_output=True, text=True, check=True,
                                   cwd=code, env={**os.environ, "PYTHONPATH": str(code)})
            walls.append(time.perf_counter() - start)
            torch_flag, peak = child.stderr.strip().splitlines()[-1].split()
            peaks.append(int(peak) / 1024)
            torch_seen.append(torch_flag == "1")
    return {"wall_s_median": statistics.median(walls), "peak_rss_mb_median": statistics.median(peaks),
            "runs": runs, "torch_imported": any(torch_seen)}


def status_before_and_after(runs: int, baseline: str) -> dict[str, Any]:
    """``status`` with the code of ``baseline`` (a git revision, checked out into a temporary worktree) and with
    this checkout, alternating in one run."""
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), baseline], cwd=REPO, check=True,
                       capture_output=True)
        try:
            before, after = status_cost(runs, old), status_cost(runs, REPO)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, capture_output=True)
    return {"baseline": baseline, "before": before, "after": after,
            "speedup": before["wall_s_median"] / after["wall_s_median"],
            "rss_ratio": before["peak_rss_mb_median"] / after["peak_rss_mb_median"]}


def teacher_rows() -> list[dict[str, Any]]:
    """Cosines the teacher check measures on SciFact's first 16 documents for right and wrong teachers/templates."""
    from qdrant_distill.distillation.students import prune_layers
    from qdrant_distill.vectors import row_cosines

    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for _, line in zip(range(TEACHER_CHECK_TEXTS), fh)]
    stored = np.load(SCIFACT / "teacher_all-mpnet-base-v2.npz")["doc_vecs"][: len(docs)]
    teacher = load_encoder(MPNET)
    cases = [
        ("all-mpnet-base-v2, template {title} {text} (as indexed)", teacher, "{title} {text}"),
        ("all-mpnet-base-v2, template {title}. {text}", teacher, "{title}. {text}"),
        ("all-mpnet-base-v2, template {text}", teacher, "{text}"),
        ("all-mpnet-base-v2, template {title}", teacher, "{title}"),
    ]
    for keep in (11, 8, 4):
        pruned = copy.deepcopy(teacher.model)
        prune_layers(pruned, keep)
        cases.append((f"all-mpnet-base-v2 with {keep} of 12 layers, template as indexed", as_encoder(pruned),
                      "{title} {text}"))
    rows = []
    for name, encoder, template in cases:
        cos = row_cosines(encoder.encode([template.format(**d) for d in docs]), stored)
        rows.append({"case": name, "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
                     "accepted": bool(cos.mean() >= TEACHER_MIN_COSINE)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default benchmarks/results/encoders.json)")
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare `status` with")
    args = parser.parse_args()
    out: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "quick": args.quick,
                           "threshold": TEACHER_MIN_COSINE}
    out["status"] = status_before_and_after(3 if args.quick else 7, args.baseline)
    if MPNET.exists() and SCIFACT.exists():
        out["teacher_check"] = teacher_rows()
    path = args.out or RESULTS / ("encoders_quick.json" if args.quick else "encoders.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2), encoding="utf-8")
    s = out["status"]
    for label in ("before", "after"):
        r = s[label]
        print(f"qdrant-distill status, {label:<6} ({s['baseline'] if label == 'before' else 'this checkout'}): "
              f"{r['wall_s_median']:.2f} s, peak RSS {r['peak_rss_mb_median']:.0f} MB (median of {r['runs']}; "
              f"torch imported: {r['torch_imported']})")
    print(f"status: {s['speedup']:.1f}x faster, {s['rss_ratio']:.1f}x less memory")
    for row in out.get("teacher_check", []):
        print(f"{row['case']:<62} mean {row['mean_cosine']:.4f}  lowest {row['min_cosine']:.4f}  "
              f"{'accepted' if row['accepted'] else 'refused'}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
