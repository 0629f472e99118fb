"""What each embeddings API expects and answers: the request body, the path, and the answer read into vectors.

    openai   POST {base}/v1/embeddings  {"input": [...], "model": M, "dimensions"?: D, "encoding_format": "base64"}
             -> {"data": [{"index": i, "embedding": base64 float32 | [floats]}, ...]}, ordered here by ``index``
    tei      POST {base}/embed          {"inputs": [...], "normalize": true, "truncate": true} -> [[floats], ...]
    ollama   POST {base}/api/embed      {"model": M, "input": [...]} -> {"embeddings": [[floats], ...]}

Pure functions: no network, so every shape (and every malformed answer) is testable on its own.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from qdrant_distill.errors import MalformedAnswer

__all__ = ["Provider", "embeddings_path", "read_answer", "request_body"]

FLOAT32_MAX = float(np.finfo(np.float32).max)


class Provider(str, enum.Enum):
    """The API an endpoint speaks: ``openai`` (OpenAI-compatible: OpenAI, vLLM, infinity, TEI's /v1 route,
    ``qdrant-distill serve``), ``tei`` (Hugging Face text-embeddings-inference) or ``ollama``."""

    OPENAI = "openai"
    TEI = "tei"
    OLLAMA = "ollama"


def embeddings_path(provider: Provider, base_path: str) -> str:
    """The request path under the base URL's path (``/v1`` given or not, for OpenAI)."""
    base = base_path.rstrip("/")
    if provider is Provider.OPENAI:
        return f"{base}/embeddings" if base.endswith("/v1") else f"{base}/v1/embeddings"
    if provider is Provider.TEI:
        return f"{base}/embed"
    return f"{base}/api/embed"


def request_body(
    provider: Provider, texts: Sequence[str], *, model: str | None, dimensions: int | None
) -> dict[str, Any]:
    """The JSON body of one request for ``texts``."""
    if provider is Provider.OPENAI:
        body: dict[str, Any] = {"input": list(texts), "model": model, "encoding_format": "base64"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        return body
    if provider is Provider.TEI:
        return {"inputs": list(texts), "normalize": True, "truncate": True}
    return {"model": model, "input": list(texts)}


def read_answer(provider: Provider, payload: Any, count: int, *, where: str) -> np.ndarray:
    """``count`` float32 vectors from a decoded JSON answer, checked before they are trusted: one per text (OpenAI's
    ``index`` values exactly ``0..count-1``, once each, in any order), all of one size, finite and within float32.
    Anything else is :class:`MalformedAnswer` naming ``where`` (not retried: the endpoint would answer the same)."""
    if provider is Provider.OPENAI:
        rows = _openai_rows(payload, count, where)
    elif provider is Provider.TEI:
        rows = payload if isinstance(payload, list) else None
    else:
        rows = payload.get("embeddings") if isinstance(payload, dict) else None
    if rows is None:
        raise MalformedAnswer(f"{where} answered JSON without embeddings ({_shape(payload)})")
    if len(rows) != count:
        raise MalformedAnswer(f"{where} answered {len(rows)} vectors for {count} texts")
    vectors = [_vector(row, where) for row in rows]
    sizes = {len(v) for v in vectors}
    if len(sizes) > 1:
        raise MalformedAnswer(f"{where} answered vectors of different sizes ({sorted(sizes)})")
    matrix = np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise MalformedAnswer(f"{where} answered non-finite numbers (NaN or infinity)")
    return matrix


def _openai_rows(payload: Any, count: int, where: str) -> list[Any] | None:
    """The embeddings of an OpenAI answer in the order of the texts, by their ``index``."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return None
    try:
        indices, rows = [item["index"] for item in data], [item["embedding"] for item in data]
    except (KeyError, TypeError):
        raise MalformedAnswer(f"{where} answered data items without index or embedding") from None
    if len(rows) != count:
        raise MalformedAnswer(f"{where} answered {len(rows)} vectors for {count} texts")
    if any(type(i) is not int for i in indices):
        odd = next(i for i in indices if type(i) is not int)
        raise MalformedAnswer(f"{where} answered an embedding index that is not a whole number ({odd!r})")
    if sorted(indices) != list(range(count)):
        raise MalformedAnswer(f"{where} answered embedding indices that are not 0..{count - 1} once each "
                              f"({_index_faults(indices, count)}): the vectors cannot be matched to the texts")
    by_index = dict(zip(indices, rows))
    return [by_index[i] for i in range(count)]


def _index_faults(indices: list[int], count: int) -> str:
    """What is wrong with a list of indices: the first few missing, repeated and out-of-range ones."""
    seen = Counter(indices)
    parts = [f"{name} {', '.join(map(str, values[:3]))}{', ...' if len(values) > 3 else ''}" for name, values in (
        ("missing", sorted(set(range(count)) - set(seen))),
        ("repeated", sorted(i for i, n in seen.items() if n > 1)),
        ("out of range", sorted(i for i in seen if not 0 <= i < count)),
    ) if values]
    return "; ".join(parts)


def _vector(row: Any, where: str) -> np.ndarray:
    """One vector: a base64 string of little-endian float32 (OpenAI's base64 format) or a list of numbers."""
    if isinstance(row, str):
        try:
            raw = base64.b64decode(row, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedAnswer(f"{where} answered an embedding that is not base64") from None
        if len(raw) % 4 or not raw:
            raise MalformedAnswer(f"{where} answered a base64 embedding of {len(raw)} bytes (not float32)")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if isinstance(row, list) and row and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row):
        try:  # read wide, then checked: a cast of 1e39 to float32 would warn and give infinity
            wide = np.asarray(row, dtype=np.float64)
        except OverflowError:  # an integer beyond float64
            wide = np.asarray([math.inf])
        if not np.isfinite(wide).all():
            raise MalformedAnswer(f"{where} answered non-finite numbers (NaN or infinity)")
        if np.abs(wide).max() > FLOAT32_MAX:
            raise MalformedAnswer(f"{where} answered numbers beyond float32 (up to {np.abs(wide).max():.3g}; "
                                  f"float32 holds {FLOAT32_MAX:.3g})")
        return wide.astype(np.float32)
    raise MalformedAnswer(f"{where} answered an embedding that is not a list of numbers")


def _shape(payload: Any) -> str:
    if isinstance(payload, dict):
        return "keys " + ", ".join(sorted(map(str, payload))[:8])
    return type(payload).__name__
