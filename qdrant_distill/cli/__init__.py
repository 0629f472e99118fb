"""The ``qdrant-distill`` command line (:mod:`.app`), its rendering of plans and journals, and the demo.
"""

from qdrant_distill._lazy import face

_NAMES = {
    "app": ".app",
    "main": ".app",
    "run_demo": ".demo",
    "build_demo_collection": ".demo",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = face(__name__, _NAMES, globals())
