"""A migration and its run folder: plan (checks everything first), the pipeline (sample -> distill -> gate ->
re-embed -> verify -> swap), the journal, the alias moves (swap, rollback, finalize, abandon), the report and the
dimension table. Re-embed engines live in :mod:`.engines`.
"""

from qdrant_distill._lazy import face

_NAMES = {
    "migrate": ".pipeline",
    "MigrationReport": ".pipeline",
    "make_plan": ".plan",
    "MigrationPlan": ".plan",
    "MigrationConfig": ".config",
    "GateConfig": ".config",
    "Mode": ".config",
    "MissingTextPolicy": ".config",
    "Engine": ".config",
    "RayConfig": ".config",
    "load_config": ".config",
    "Journal": ".journal",
    "Stage": ".journal",
    "swap": ".aliases",
    "rollback": ".aliases",
    "finalize": ".aliases",
    "abandon": ".aliases",
    "AliasMove": ".aliases",
    "open_journal": ".operate",
    "DimsReport": ".dims",
    "dims_report": ".dims",
    "plan_dims": ".dims",
    "beir_metrics": ".gate",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = face(__name__, _NAMES, globals())
