"""Small shims over sentence-transformers 3.x .. 6.x API renames."""

from __future__ import annotations

from typing import Any

__all__ = ["embedding_dimension", "st_models", "word_embedding_dimension"]


def st_models() -> Any:
    """The module namespace holding Transformer, Pooling, Dense, Normalize, StaticEmbedding."""
    try:
        from sentence_transformers.sentence_transformer import modules  # 6.x

        if hasattr(modules, "Dense"):
            return modules
    except ImportError:  # pragma: no cover - older releases
        pass
    from sentence_transformers import models  # 3.x - 5.x

    return models


def embedding_dimension(model: Any) -> int:
    """Output dimension of a SentenceTransformer (``get_embedding_dimension`` in 6.x)."""
    for attr in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        fn = getattr(model, attr, None)
        if fn is not None:
            dim = fn()
            if dim is not None:
                return int(dim)
    raise ValueError("cannot tell the model's output dimension")


def word_embedding_dimension(module: Any) -> int:
    """Token embedding width of a Transformer module."""
    for attr in ("get_embedding_dimension", "get_word_embedding_dimension"):
        fn = getattr(module, attr, None)
        if fn is not None:
            return int(fn())
    raise ValueError("cannot tell the module's embedding dimension")
