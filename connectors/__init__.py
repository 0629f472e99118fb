"""Adapters between qdrant-distill's core and the outside world: Qdrant (qdrant-client) and HTTP embedding endpoints.

The core depends only on the protocol and plain types in :mod:`qdrant_distill.connectors.base`.
"""

from qdrant_distill.connectors.base import (
    UNNAMED,
    CollectionInfo,
    Connector,
    Page,
    Point,
    Sample,
    TextSource,
    VectorSpec,
)

__all__ = [
    "UNNAMED",
    "CollectionInfo",
    "Connector",
    "Page",
    "Point",
    "QdrantConnector",
    "Sample",
    "TextSource",
    "VectorSpec",
]


def __getattr__(name: str):  # lazy: importing the protocol must not import qdrant-client
    if name == "QdrantConnector":
        from qdrant_distill.connectors.qdrant import QdrantConnector

        return QdrantConnector
    raise AttributeError(name)
