"""Qdrant Edge: a distilled collection on a device with no server. :func:`open` loads an Edge folder (no torch);
:func:`export_edge` writes one from a migrated collection.
"""

from qdrant_distill._lazy import face

_NAMES = {
    "open": ".shard",
    "EdgeIndex": ".shard",
    "EdgeHit": ".shard",
    "EdgeManifest": ".shard",
    "EdgeShard": ".shard",
    "read_edge_manifest": ".shard",
    "export_edge": ".export",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = face(__name__, _NAMES, globals())
