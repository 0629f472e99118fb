"""Distilling a student from teacher vectors: the config, the student kinds, losses, training, the recipes,
and what the teacher at hand does (check the stored vectors, label query-like cuts). Torch stops here: the face
and :mod:`.config` / :mod:`.result` import none.
"""

from qdrant_distill._lazy import face

_NAMES = {
    "distill": ".recipe",
    "export_student": ".recipe",
    "DistillResult": ".result",
    "DistillConfig": ".config",
    "StudentKind": ".config",
    "HeadInit": ".config",
    "LossWeights": ".config",
    "DEFAULT_BASE_MODEL": ".config",
    "check_teacher": ".teacher",
    "label_queries": ".teacher",
    "cut_queries": ".pseudo_queries",
    "recipe_for": ".recipes",
    "with_recipe": ".recipes",
    "Recipe": ".recipes",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = face(__name__, _NAMES, globals())
