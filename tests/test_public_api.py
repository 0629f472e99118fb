"""The public surface: ``__all__`` is exactly what the package offers, and every name resolves."""

from __future__ import annotations

import qdrant_distill
from qdrant_distill import connectors, errors


def test_all_is_sorted_unique_and_resolves() -> None:
    names = qdrant_distill.__all__
    assert names == sorted(names) and len(names) == len(set(names))
    for name in names:
        assert getattr(qdrant_distill, name) is not None
    assert callable(qdrant_distill.distill) and callable(qdrant_distill.swap) and callable(qdrant_distill.migrate)  # not the packages or modules of a like name


def test_every_error_is_public_and_derives_from_the_base() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert name in qdrant_distill.__all__ and issubclass(cls, errors.DistillError)


def test_connectors_surface() -> None:
    assert connectors.QdrantConnector.__name__ == "QdrantConnector"
    assert set(connectors.__all__) >= {"Connector", "QdrantConnector", "TextSource", "Point", "Page", "Sample"}
