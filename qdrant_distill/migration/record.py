"""The target collection's metadata record: what a migration writes under ``qdrant_distill`` in the new collection's
metadata, and what readers (``encoder_for``, ``serve``, resumed runs, ``abandon``) read back.

One home for the key and the layout: :func:`build` makes the record, :func:`read` reads it, :func:`write` merges a
change into it. It holds no secrets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qdrant_distill.connectors.base import Connector
from qdrant_distill.inference.formats import Backend

__all__ = ["METADATA_KEY", "build", "read", "read_from", "write"]

METADATA_KEY = "qdrant_distill"


def build(*, version: str, run_id: str, source: str, alias: str | None, mode: str, dim: int, vector_name: str,
          teacher: str, teacher_dim: int, student_path: str | None, projection_path: str | None,
          query_projection: bool, metrics: dict[str, float], journal_path: str, query_model: str | None = None,
          backend: Backend = Backend.TORCH, text_field: str | None = None,
          text_template: str | None = None) -> dict[str, Any]:
    """The record of a migration: enough for :func:`qdrant_distill.encoder_for` to load the query encoder
    (``query_model`` on ``query_backend``: the student's export folder when it runs on onnxruntime), and where
    the points' texts are (``text_field`` or ``text_template``: what ``repoint`` re-encodes to prove a model)."""
    return {
        "version": version,
        "run_id": run_id,
        "source": source,
        "alias": alias,
        "mode": mode,
        "dim": dim,
        "vector_name": vector_name,
        "text_field": text_field,
        "text_template": text_template,
        "teacher": teacher,
        "teacher_dim": teacher_dim,
        "student": student_path,
        "query_model": query_model or student_path,
        "query_backend": Backend(backend).value,
        "query_projection": projection_path if query_projection else None,
        "projection": projection_path,
        "metrics": metrics,
        "journal": str(Path(journal_path).resolve()),
    }


def read(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The record in a collection's metadata (empty when qdrant-distill did not make the collection)."""
    return dict((metadata or {}).get(METADATA_KEY) or {})


def read_from(connector: Connector, collection: str) -> dict[str, Any]:
    return read(connector.describe(collection).metadata)


def write(connector: Connector, collection: str, changes: dict[str, Any]) -> None:
    """Merge ``changes`` into the collection's record (other metadata keys are left alone)."""
    connector.set_metadata(collection, {METADATA_KEY: {**read_from(connector, collection), **changes}})
