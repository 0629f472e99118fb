"""A teacher at hand: when the model that made the stored vectors can still run (any reference
:func:`~qdrant_distill.inference.encoders.load_encoder` accepts), it

- **checks** before anything runs that the stored vectors really come from it with the configured text
  (:func:`check_teacher`; a wrong model of the same size, or another text template, is a common mistake), and
- **labels** query-like texts cut from the sample (:func:`label_queries`): (text, teacher vector) pairs that teach the
  student where queries land in the teacher's space. Labels are cached in the run folder in parts, so a resumed run
  never pays for a part twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from qdrant_distill.distillation.config import TEACHER_MIN_COSINE
from qdrant_distill.errors import TeacherMismatch
from qdrant_distill.inference.encoders import Encoder
from qdrant_distill.vectors import row_cosines

__all__ = [
    "LABEL_PART",
    "TEACHER_CHECK_TEXTS",
    "TeacherCheck",
    "check_teacher",
    "label_queries",
]

logger = logging.getLogger(__name__)

TEACHER_CHECK_TEXTS = 16
LABEL_PART = 512  # texts labelled and written to the cache at a time
MANIFEST = "manifest.json"


class TeacherCheck(BaseModel):
    """What the teacher check measured: the cosine between re-encoded and stored vectors of sampled points."""

    teacher: str
    texts: int
    mean_cosine: float
    min_cosine: float
    threshold: float


def check_teacher(
    teacher: Encoder, texts: Sequence[str], stored: np.ndarray, *, threshold: float = TEACHER_MIN_COSINE
) -> TeacherCheck:
    """Encode ``texts`` (as documents) with ``teacher`` and compare with their ``stored`` vectors; raise
    :class:`TeacherMismatch` when the mean cosine is below ``threshold`` (about 1 is expected)."""
    texts = list(texts)[:TEACHER_CHECK_TEXTS]
    stored = np.asarray(stored, dtype=np.float32)[: len(texts)]
    got = teacher.encode(texts, kind="document")
    if got.shape[1] != stored.shape[1]:
        raise TeacherMismatch(
            f"the teacher {teacher.name} encodes {got.shape[1]}-d vectors, the stored ones are {stored.shape[1]}-d",
            hint="--teacher must be the model the collection was indexed with",
        )
    cos = row_cosines(got, stored)
    result = TeacherCheck(teacher=teacher.describe(), texts=len(texts), mean_cosine=round(float(cos.mean()), 4),
                          min_cosine=round(float(cos.min()), 4), threshold=threshold)
    if result.mean_cosine < threshold:
        raise TeacherMismatch(
            f"the teacher {teacher.name} does not reproduce the stored vectors: mean cosine {result.mean_cosine:.4f} "
            f"(lowest {result.min_cosine:.4f}) over {len(texts)} sampled points, expected about 1 (at least "
            f"{threshold})",
            hint="give the model the collection was indexed with, and the text template used then "
            "(--text-field / --text-template)",
            cosine=result.mean_cosine, threshold=threshold,
        )
    logger.info("teacher check: %s reproduces the stored vectors (mean cosine %.4f over %d points)",
                teacher.name, result.mean_cosine, len(texts))
    return result


# ------------------------------------------------------------------------------------------------------------ labels
def _digest(teacher: Encoder, texts: Sequence[str]) -> str:
    h = hashlib.sha256(teacher.name.encode())
    for t in texts:
        h.update(b"\x1f" + t.encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


def _open_cache(folder: Path, digest: str, count: int) -> None:
    """Keep the cached parts when they were made for these texts by this teacher; start afresh otherwise."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("digest") == digest:
                return
        except ValueError:
            pass
        logger.info("teacher labels in %s were made for other texts or another teacher: labelling again", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"digest": digest, "count": count}), encoding="utf-8")


def _save_part(path: Path, vectors: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)


def label_queries(
    teacher: Encoder, texts: Sequence[str], cache_dir: str | Path, *, progress: bool = True
) -> np.ndarray:
    """The teacher's query vectors of ``texts``, computed in parts of :data:`LABEL_PART` and cached in
    ``cache_dir``: a run killed midway and started again labels only the parts it had not written."""
    from tqdm.auto import tqdm

    texts = list(texts)
    folder = Path(cache_dir)
    _open_cache(folder, _digest(teacher, texts), len(texts))
    parts: list[np.ndarray] = []
    cached = 0
    with tqdm(total=len(texts), unit="text", desc="teacher labels", disable=not progress, dynamic_ncols=True) as bar:
        for index, start in enumerate(range(0, len(texts), LABEL_PART)):
            path = folder / f"part-{index:05d}.npy"
            chunk = texts[start : start + LABEL_PART]
            if path.is_file():
                vectors, cached = np.load(path), cached + len(chunk)
            else:
                vectors = teacher.encode(chunk, kind="query")
                _save_part(path, vectors)
            parts.append(vectors)
            bar.update(len(chunk))
    logger.info("teacher labels: %d query-like texts (%d from the cache in %s)", len(texts), cached, folder)
    return np.concatenate(parts) if parts else np.zeros((0, teacher.dim), dtype=np.float32)
