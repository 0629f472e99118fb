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
from collections.abc import Sequence
from typing import Any

import numpy as np

from qdrant_distill.errors import MalformedAnswer

__all__ = ["Provider", "embeddings_path", "read_answer", "request_body"]


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
    """``count`` float32 vectors from a decoded JSON answer; :class:`MalformedAnswer` for anything else."""
    if provider is Provider.OPENAI:
        rows = _openai_rows(payload, where)
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


def _openai_rows(payload: Any, where: str) -> list[Any] | None:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return None
    try:
        ordered = sorted(data, key=lambda item: int(item["index"]))
        return [item["embedding"] for item in ordered]
    except (KeyError, TypeError, ValueError):
        raise MalformedAnswer(f"{where} answered data items without index or embedding") from None


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
        return np.asarray(row, dtype=np.float32)
    raise MalformedAnswer(f"{where} answered an embedding that is not a list of numbers")


def _shape(payload: Any) -> str:
    if isinstance(payload, dict):
        return "keys " + ", ".join(sorted(map(str, payload))[:8])
    return type(payload).__name__
