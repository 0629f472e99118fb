"""Compare source and target, fix what changed meanwhile (catch-up), and verify before the swap.

Both collections are scrolled in id order side by side (Qdrant orders numeric ids before UUIDs), so the comparison
holds at most two pages of each in memory whatever the collection size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qdrant_distill.connectors.base import Connector, Point, PointId
from qdrant_distill.connectors.scroll import id_key
from qdrant_distill.errors import VerificationFailed
from qdrant_distill.inference.export import MIN_INT8_COSINE
from qdrant_distill.inference.formats import Backend
from qdrant_distill.migration.engines.local import PageConverter, ReembedStats

__all__ = ["CollectionDiff", "catch_up", "diff", "verify"]

logger = logging.getLogger(__name__)

MAX_LISTED = 20
VERIFY_MIN_COSINE = 0.99


def min_cosine(backend: Backend) -> float:
    """How close re-encoded vectors must be: an int8 graph's move with their batch (as much as its export check
    allows), every other backend's are the same vectors."""
    return MIN_INT8_COSINE if backend is Backend.ONNX_INT8 else VERIFY_MIN_COSINE


def payload_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class CollectionDiff:
    """Ids only in the source (missing), only in the target (extra), and in both with other payloads (changed)."""

    source_count: int = 0
    target_count: int = 0
    missing: list[PointId] = field(default_factory=list)
    extra: list[PointId] = field(default_factory=list)
    changed: list[PointId] = field(default_factory=list)
    sampled: list[PointId] = field(default_factory=list)  # a uniform sample of the ids in both

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def summary(self) -> dict[str, Any]:
        return {
            "source_count": self.source_count,
            "target_count": self.target_count,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "changed": len(self.changed),
        }


def _stream(connector: Connector, collection: str, page_size: int) -> Iterator[Point]:
    for page in connector.scroll(collection, page_size=page_size, with_payload=True, with_vectors=False):
        yield from page.points


def diff(
    connector: Connector,
    source: str,
    target: str,
    *,
    page_size: int = 512,
    ignore: Sequence[PointId] = (),
    sample: int = 0,
    seed: int = 0,
) -> CollectionDiff:
    """Walk both collections in id order and list every difference of id set and payload.

    With ``sample``, also draws that many ids present in both, uniformly (reservoir sampling).
    """
    ignored = set(ignore)
    result = CollectionDiff()
    rng = random.Random(seed)
    matched = 0
    src, dst = _stream(connector, source, page_size), _stream(connector, target, page_size)
    a, b = next(src, None), next(dst, None)
    while a is not None or b is not None:
        if a is not None and a.id in ignored:
            result.source_count += 1
            a = next(src, None)
            continue
        if b is None or (a is not None and id_key(a.id) < id_key(b.id)):
            result.source_count += 1
            result.missing.append(a.id)  # type: ignore[union-attr]
            a = next(src, None)
        elif a is None or id_key(b.id) < id_key(a.id):
            result.target_count += 1
            result.extra.append(b.id)
            b = next(dst, None)
        else:
            result.source_count += 1
            result.target_count += 1
            if payload_hash(a.payload) != payload_hash(b.payload):
                result.changed.append(a.id)
            matched += 1
            if len(result.sampled) < sample:
                result.sampled.append(a.id)
            elif sample and (j := rng.randrange(matched)) < sample:
                result.sampled[j] = a.id
            a, b = next(src, None), next(dst, None)
    return result


def catch_up(
    connector: Connector,
    *,
    source: str,
    target: str,
    converter: PageConverter,
    vectors: list[str] | bool,
    skipped: Sequence[PointId] = (),
    page_size: int = 256,
) -> tuple[CollectionDiff, ReembedStats]:
    """Reconcile writes made to the source during the re-embed: new and changed points re-embedded, deleted ones
    deleted from the target. Points skipped by the missing-text policy stay skipped."""
    found = diff(connector, source, target, page_size=page_size, ignore=skipped)
    stats = ReembedStats()
    todo = found.missing + found.changed
    for start in range(0, len(todo), page_size):
        batch = connector.retrieve(source, todo[start : start + page_size], with_payload=True, with_vectors=vectors)
        connector.upsert(target, converter.convert(batch, stats), wait=True)
        stats.written += len(batch)
    if found.extra:
        connector.delete_points(target, found.extra, wait=True)
    if not found.clean:
        logger.info("catch-up: %s", found.summary())
    return found, stats


def verify(
    connector: Connector,
    *,
    source: str,
    target: str,
    converter: PageConverter,
    vector_name: str,
    dim: int,
    skipped: Sequence[PointId] = (),
    sample: int = 64,
    seed: int = 0,
    page_size: int = 512,
    backend: Backend = Backend.TORCH,
) -> dict[str, Any]:
    """Counts, id sets and payloads equal; a sample of target vectors re-computed on ``backend`` and compared (cosine
    at least :func:`min_cosine` of it). Raises on mismatch. Both collections are
    walked in pages of ``page_size``."""
    found = diff(connector, source, target, page_size=page_size, ignore=skipped, sample=sample, seed=seed)
    least = min_cosine(backend)
    report: dict[str, Any] = {**found.summary(), "skipped": len(skipped)}
    if not found.clean:
        raise VerificationFailed(
            f"target {target!r} differs from source {source!r}: {len(found.missing)} missing, {len(found.extra)} extra, "
            f"{len(found.changed)} with other payloads (e.g. {(found.missing + found.extra + found.changed)[:MAX_LISTED]})",
            hint="rerun the migration: the catch-up pass re-copies what differs",
            report=report,
        )
    ids = found.sampled
    if ids:
        target_points = {p.id: p for p in connector.retrieve(target, ids, with_vectors=True)}
        # the stored teacher vector only when the converter projects it (re-encoding needs the text alone)
        wanted = ([vector_name] if vector_name else True) if converter.needs_teacher_vector else False
        source_points = connector.retrieve(source, ids, with_payload=True, with_vectors=wanted)
        expected = {p.id: p for p in converter.convert(source_points, ReembedStats())}
        cosines = []
        for pid, exp in expected.items():
            got = np.asarray(target_points[pid].vectors[vector_name], dtype=np.float32)
            want = np.asarray(exp.vectors[vector_name], dtype=np.float32)
            if got.shape != (dim,):
                raise VerificationFailed(f"point {pid!r} has a vector of size {got.shape}, expected {dim}")
            cosines.append(float(got @ want / max(np.linalg.norm(got) * np.linalg.norm(want), 1e-12)))
        report["vectors_checked"] = len(cosines)
        report["min_cosine"] = min(cosines) if cosines else None
        if cosines and min(cosines) < least:
            raise VerificationFailed(
                f"re-encoded vectors differ from the stored ones (min cosine {min(cosines):.4f} < {least})",
                report=report,
            )
    logger.info("verify: %s of %s points in both, none missing, extra or changed; %s vectors re-encoded, min cosine "
                "%s", f"{report['target_count']:,}", f"{report['source_count']:,}", report.get("vectors_checked", 0),
                f"{report['min_cosine']:.4f}" if report.get("min_cosine") is not None else "-")
    return report
