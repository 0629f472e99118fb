"""The sample a migration trains on, kept in its run folder so a resumed run trains on the same points."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qdrant_distill.connectors.base import Sample

__all__ = ["load_sample", "save_sample"]


def save_sample(path: Path, sample: Sample) -> None:
    """Keep a sample (texts, ids, teacher vectors) so a resumed run trains on the same points; atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"ids": sample.ids, "texts": sample.texts, "requested": sample.requested, "method": sample.method,
            "missing_text": sample.missing_text, "missing_vector": sample.missing_vector}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, vectors=sample.vectors, meta=np.array(json.dumps(meta)))
    tmp.replace(path)


def load_sample(path: Path) -> Sample:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        vectors = data["vectors"].astype(np.float32)
    return Sample(vectors=vectors, **meta)
