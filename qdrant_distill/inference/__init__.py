"""Running a student or teacher: the one seam for models (:func:`load_encoder`: torch, ONNX, static, HTTP),
the export formats and their manifest, ONNX/int8 export, the PCA projection, CPU features.
"""

from qdrant_distill._lazy import face

_NAMES = {
    "load_encoder": ".encoders",
    "Encoder": ".encoders",
    "DEFAULT_BATCH_SIZE": ".encoders",
    "PCAProjection": ".projection",
    "projection_model": ".projection",
    "Backend": ".formats",
    "ExportChoice": ".formats",
    "ExportManifest": ".formats",
    "read_manifest": ".formats",
    "export_model": ".export",
    "fastembed_model": ".export",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = face(__name__, _NAMES, globals())
