"""qdrant-distill: distil a smaller embedding model from the teacher vectors stored in a Qdrant collection."""

from qdrant_distill.errors import *  # noqa: F403  (public hierarchy)
from qdrant_distill.errors import __all__ as _errors_all

__version__ = "0.1.0"

__all__ = sorted([*_errors_all, "__version__"])
