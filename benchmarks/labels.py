"""Teacher labels for the distillation benchmarks: query-like texts cut from the SciFact corpus, embedded by a teacher.

    .venv/bin/python benchmarks/labels.py --teacher mpnet --n 20000       # the original teacher (all-mpnet-base-v2)
    .venv/bin/python benchmarks/labels.py --teacher tuned --n 20000       # the tuned teacher (base + LoRA, merged)
    .venv/bin/python benchmarks/labels.py --teacher minilm --n 60000      # the transformer student's start (cheap)

The texts are ``qdrant_distill.distillation.pseudo_queries.cut_queries`` of the corpus documents (titles or first sentences,
other sentences, 4-12 word spans; seed 0), the same cuts ``--label-queries`` makes in a migration: corpus text only,
never a train or test query. Labels are written in parts of 2,000 texts under
benchmarks/cache/labels/<teacher>/ (git-ignored); a killed run starts again at the first missing part. Each part
records its encoding time, so the labelling cost (texts/s) is reported apart from distillation.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from common import CACHE, REPO

from qdrant_distill.distillation.pseudo_queries import cut_queries
from qdrant_distill.evaluation.beir import load_beir

DATA = REPO.parent / "shared" / "data" / "scifact"
PART = 2000
logger = logging.getLogger("benchmarks.labels")


def teacher_path(name: str) -> Path:
    """A sentence-transformers folder for a teacher name (the tuned teacher is merged on first use)."""
    if name == "mpnet":
        return REPO / "models" / "all-mpnet-base-v2"
    if name == "minilm":
        return REPO / "models" / "all-MiniLM-L6-v2"
    if name == "tuned":
        sys.path.insert(0, str(REPO / "benchmarks"))
        from tuned_teacher import merged_teacher

        return merged_teacher()
    return Path(name)


def corpus_texts() -> list[str]:
    return load_beir(DATA, split="test").doc_texts


def texts_for(n: int) -> list[str]:
    return cut_queries(corpus_texts(), n, seed=0)


def label(teacher: str, n: int, threads: int | None) -> Path:
    import torch

    from qdrant_distill import load_encoder

    if threads:
        torch.set_num_threads(threads)
    out = CACHE / "labels" / teacher
    out.mkdir(parents=True, exist_ok=True)
    texts = texts_for(n)
    encoder = load_encoder(teacher_path(teacher), backend="torch", batch_size=64)
    for start in range(0, len(texts), PART):
        path = out / f"part-{start // PART:04d}.npz"
        if path.exists():
            continue
        chunk = texts[start:start + PART]
        began = time.perf_counter()
        vecs = encoder.encode(chunk, kind="query")
        took = time.perf_counter() - began
        np.savez(path, texts=np.array(chunk, dtype=object), vecs=vecs.astype(np.float32), seconds=took)
        logger.info("%s: texts %d-%d in %.0f s (%.1f texts/s)", teacher, start, start + len(chunk), took,
                    len(chunk) / took)
    (out / "labels.json").write_text(json.dumps({"teacher": teacher, "n": len(texts)}), encoding="utf-8")
    return out


def load_labels(teacher: str, n: int | None = None) -> tuple[list[str], np.ndarray, float]:
    """The cached labels of ``teacher`` (the first ``n``): texts, vectors and the seconds they took."""
    folder = CACHE / "labels" / teacher
    texts: list[str] = []
    vecs, seconds = [], 0.0
    for path in sorted(folder.glob("part-*.npz")):
        part = np.load(path, allow_pickle=True)
        texts += [str(t) for t in part["texts"]]
        vecs.append(part["vecs"])
        seconds += float(part["seconds"])
        if n is not None and len(texts) >= n:
            break
    if not vecs:
        raise FileNotFoundError(f"no labels under {folder}: run benchmarks/labels.py --teacher {teacher}")
    matrix = np.concatenate(vecs)
    if n is not None:
        texts, matrix = texts[:n], matrix[:n]
    return texts, matrix, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="mpnet", help="mpnet | tuned | minilm | a model folder")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(label(args.teacher, args.n, args.threads))


if __name__ == "__main__":
    main()
