"""Conversions between qdrant-client records and the plain types of :mod:`qdrant_distill.connectors.base`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qdrant_distill.connectors.base import (
    UNNAMED,
    Point,
    PointId,
    Sample,
    TextSource,
    lookup,
)
from qdrant_distill.errors import InvalidVectors, NoTextPayload

logger = logging.getLogger("qdrant_distill.connectors.qdrant")


def enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


def dump(model: Any) -> dict[str, Any] | None:
    if model is None:
        return None
    return model.model_dump(mode="json", exclude_none=True)


def clean(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def quantization(config: Mapping[str, Any] | None) -> Any:
    if not config:
        return None
    from pydantic import TypeAdapter
    from qdrant_client import models

    return TypeAdapter(models.QuantizationConfig).validate_python(dict(config))


def to_point(record: Any) -> Point:
    raw = record.vector
    if raw is None:
        vectors: dict[str, Any] = {}
    elif isinstance(raw, Mapping):
        vectors = {k: plain_vector(v) for k, v in raw.items()}
    else:
        vectors = {UNNAMED: raw}
    return Point(id=record.id, payload=dict(record.payload or {}), vectors=vectors)


def plain_vector(v: Any) -> Any:
    if hasattr(v, "indices") and hasattr(v, "values"):
        return {"indices": list(v.indices), "values": list(v.values)}
    return v


def vector_struct(vectors: Mapping[str, Any]) -> Any:
    from qdrant_client import models

    def conv(v: Any) -> Any:
        if isinstance(v, Mapping) and "indices" in v:
            return models.SparseVector(indices=list(v["indices"]), values=list(v["values"]))
        if isinstance(v, np.ndarray):
            return v.astype(np.float32).tolist()
        return v

    if set(vectors) == {UNNAMED}:
        return conv(vectors[UNNAMED])
    return {k: conv(v) for k, v in vectors.items()}


def to_sample(
    points: Sequence[Point], *, text: TextSource, vector_name: str, requested: int, method: str, size: int | None
) -> Sample:
    absent = [f for f in text.template_fields if points and not any(lookup(p.payload, f) is not None for p in points)]
    if absent:
        raise NoTextPayload(
            f"text template {text.template!r} names {absent}, which no sampled point has",
            hint=f"payload keys seen: {sorted({k for p in points for k in p.payload})[:12]}",
            fields=absent,
        )
    ids: list[PointId] = []
    texts: list[str] = []
    rows: list[Any] = []
    missing_text = missing_vector = 0
    for p in points:
        vec = p.vectors.get(vector_name) if vector_name else p.vectors.get(UNNAMED)
        if vec is None:
            missing_vector += 1
            continue
        t = text.render(p.payload)
        if t is None:
            missing_text += 1
            continue
        ids.append(p.id)
        texts.append(t)
        rows.append(vec)
    if not ids:
        fields = text.fields
        present = sorted({k for p in points for k in p.payload})
        objects = sorted({f for p in points for f in fields if isinstance(lookup(p.payload, f), Mapping)})
        why = (f"; {objects} hold objects, not text: name a nested key, e.g. --text-field {objects[0]}.KEY"
               if objects else "")
        raise NoTextPayload(
            f"none of the {len(points)} sampled points has text under {text.describe()}{why}",
            hint=f"payload keys seen: {present[:12] or 'none'}; set --text-field or --text-template",
            fields=fields,
        )
    vectors = np.asarray(rows, dtype=np.float32)
    if vectors.ndim != 2 or (size is not None and vectors.shape[1] != size):
        raise InvalidVectors(f"sampled vectors have shape {vectors.shape}, expected (*, {size})")
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        bad_ids = [ids[i] for i in np.flatnonzero(bad)[:5]]
        raise InvalidVectors(
            f"{int(bad.sum())} sampled points have non-finite teacher vectors (e.g. ids {bad_ids})",
            hint="repair or exclude them with a filter",
        )
    zero = ~np.any(vectors != 0, axis=1)
    if zero.any():
        zero_ids = [ids[i] for i in np.flatnonzero(zero)[:5]]
        raise InvalidVectors(
            f"{int(zero.sum())} of {len(ids)} sampled points have all-zero teacher vectors (e.g. ids {zero_ids})",
            hint="a zero vector has no direction to learn: repair or exclude those points",
        )
    if missing_text:
        logger.warning("%d of %d sampled points had no usable text and were skipped", missing_text, len(points))
    if vector_name and missing_vector:
        logger.warning("%d sampled points lack vector %r", missing_vector, vector_name)
    return Sample(
        ids=ids,
        texts=texts,
        vectors=vectors,
        requested=requested,
        method=method,
        missing_text=missing_text,
        missing_vector=missing_vector,
    )
