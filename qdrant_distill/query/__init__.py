"""Query services: the encoder that belongs to whatever collection an alias points at (:func:`encoder_for`,
:func:`repoint`), and ``serve``, an OpenAI-compatible embeddings endpoint over it.
"""

from qdrant_distill._lazy import face

_NAMES = {
    "encoder_for": ".registry",
    "repoint": ".registry",
    "CollectionEncoder": ".registry",
    "Repointed": ".registry",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = face(__name__, _NAMES, globals())
