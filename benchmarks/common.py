"""What the benchmark scripts share: the offline environment, the repository on ``sys.path``, the shared data and
model folders, the student dimension, the held-out split of a collection's documents, and cached encodings.

Import it before ``qdrant_distill``: it sets the environment and makes the package importable from a checkout.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = REPO.parent / "shared" / "data"
CACHE = REPO / "benchmarks" / "cache"
RESULTS = REPO / "benchmarks" / "results"
MINILM = REPO / "models" / "all-MiniLM-L6-v2"
MPNET = REPO / "models" / "all-mpnet-base-v2"
DIM = 128
HOLDOUT_FRACTION = 0.05  # documents held out for the library's early stopping and holdout metrics
MIN_HOLDOUT = 20


def holdout_split(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The sorted indices of the held-out and of the training documents among ``n``."""
    order = np.random.default_rng(seed).permutation(n)
    n_hold = max(MIN_HOLDOUT, round(n * HOLDOUT_FRACTION))
    return np.sort(order[:n_hold]), np.sort(order[n_hold:])


def cached(tag: str, texts: list[str], fn: Any) -> np.ndarray:
    """``fn(texts)`` cached under benchmarks/cache/enc/ by tag and a digest of the texts."""
    digest = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:16]
    path = CACHE / "enc" / f"{tag}-{digest}.npy"
    if path.exists():
        return np.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.asarray(fn(texts), dtype=np.float32)
    np.save(path, out)
    return out


def bench_main(name: str, run: Any, table: Any) -> None:
    """The command line of a benchmark: ``--quick`` and ``--out``; runs ``run(quick)``, writes its JSON (default
    ``benchmarks/results/NAME.json``, ``NAME-quick.json`` with ``--quick``) and prints ``table(result)``."""
    import argparse
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON output (default benchmarks/results/{name}.json)")
    args = parser.parse_args()
    result = run(args.quick)
    out = args.out or RESULTS / (f"{name}-quick.json" if args.quick else f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(table(result))
