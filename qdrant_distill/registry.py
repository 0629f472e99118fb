"""Which model belongs to which collection: read from the collection's metadata at query time.

A migrated collection records its query encoder under the metadata key ``qdrant_distill``. :func:`encoder_for`
resolves an alias *now* and returns the encoder of whatever collection it points to, so an application never queries
a collection with the wrong model, before or after a swap or a rollback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from connectors.base import Connector
from qdrant_distill.encoders import Encoder, load_encoder
from qdrant_distill.record import read as read_record
from qdrant_distill.errors import ConfigError, StudentError
from qdrant_distill.export_folder import Backend

__all__ = ["CollectionEncoder", "encoder_for"]

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class CollectionEncoder:
    """The query encoder of one collection, with what it was resolved from."""

    collection: str
    requested: str
    vector_name: str
    dim: int
    mode: str
    model_path: str
    encoder: Encoder

    def encode(self, texts: str | Sequence[str]) -> np.ndarray:
        """Normalised float32 query vectors (one row per text; a single string gives one row)."""
        return self.encoder.encode(texts, kind="query")

    def describe(self) -> str:
        return f"{self.collection} ({self.mode}, {self.dim}-d): {self.encoder.describe()}"


def encoder_for(connector_or_client: Any, alias_or_collection: str, *, default: str | None = None,
                backend: Backend | str | None = None) -> CollectionEncoder:
    """The encoder for the collection behind ``alias_or_collection`` at this moment, on the backend the migration
    recorded (``backend`` overrides it: ``torch``, ``onnx``, ``onnx-int8`` or ``auto``).

    Accepts a :class:`connectors.base.Connector` or a ``QdrantClient``. A collection without qdrant-distill metadata
    (say the teacher's original collection after a rollback) uses ``default`` (any reference
    :func:`~qdrant_distill.encoders.load_encoder` accepts) when given.
    """
    connector = _as_connector(connector_or_client)
    info = connector.describe(alias_or_collection)
    record = read_record(info.metadata)
    path = record.get("query_model")
    if not path:
        if default is None:
            raise ConfigError(
                f"collection {info.name!r} (behind {alias_or_collection!r}) records no qdrant-distill encoder",
                hint="it was not made by qdrant-distill: name the model its vectors came from "
                     "(serve --default-model MODEL; encoder_for(..., default=MODEL))",
            )
        spec = info.vector(None)
        return CollectionEncoder(info.name, alias_or_collection, spec.name, int(spec.size or 0), "original", default,
                                 _load(default, None, backend or Backend.AUTO))
    return CollectionEncoder(
        collection=info.name,
        requested=alias_or_collection,
        vector_name=record.get("vector_name", ""),
        dim=int(record["dim"]),
        mode=record.get("mode", "reembed"),
        model_path=path,
        encoder=_load(path, record.get("query_projection"), backend or record.get("query_backend", Backend.AUTO)),
    )


def _load(ref: str, projection: str | None, backend: Backend | str) -> Encoder:
    try:
        return load_encoder(ref, projection=projection, backend=backend)
    except StudentError as exc:
        raise StudentError(f"cannot load the encoder recorded for this collection: {exc.message}", hint=exc.hint) from exc


def _as_connector(obj: Any) -> Connector:
    if isinstance(obj, Connector):
        return obj
    from connectors.qdrant import QdrantConnector

    return QdrantConnector(obj)
