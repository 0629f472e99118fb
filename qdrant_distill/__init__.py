"""qdrant-distill: distil a smaller embedding model from the teacher vectors stored in a Qdrant collection.

The public API: configure a :class:`MigrationConfig`, call :func:`migrate`; or use the stages and the distillation
engine directly. :func:`encoder_for` gives an application the right query encoder for whatever collection an alias
points to. Errors are importable at once; everything else loads on first use (so ``connectors`` can import the
errors without importing the core, and ``import qdrant_distill`` stays light: no torch, no sentence-transformers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qdrant_distill._version import __version__
from qdrant_distill.errors import (
    AliasConflict,
    AuthenticationFailed,
    BrokenExport,
    CollectionError,
    CollectionExists,
    CollectionNotFound,
    ConfigError,
    ConnectionFailed,
    ConnectorError,
    DimensionError,
    DistillError,
    EmptyCollection,
    GateFailed,
    InvalidVectors,
    JournalError,
    MalformedAnswer,
    MigrationError,
    ModelNotFound,
    NoTextPayload,
    RunBusy,
    ServerError,
    StoreMismatch,
    StudentError,
    TeacherMismatch,
    UnsupportedVectors,
    VectorNotFound,
    VerificationFailed,
)

_LAZY = {
    "CollectionEncoder": "qdrant_distill.registry",
    "DimsReport": "qdrant_distill.dims",
    "DistillConfig": "qdrant_distill.config",
    "DistillResult": "qdrant_distill.distillation",
    "Encoder": "qdrant_distill.encoders",
    "FidelityEvaluator": "qdrant_distill.evaluate",
    "GateConfig": "qdrant_distill.config",
    "HeadInit": "qdrant_distill.config",
    "Journal": "qdrant_distill.journal",
    "MigrationConfig": "qdrant_distill.config",
    "MigrationPlan": "qdrant_distill.plan",
    "MigrationReport": "qdrant_distill.migration",
    "MissingTextPolicy": "qdrant_distill.config",
    "Mode": "qdrant_distill.config",
    "PCAProjection": "qdrant_distill.projection",
    "Stage": "qdrant_distill.journal",
    "StudentKind": "qdrant_distill.config",
    "beir_metrics": "qdrant_distill.gate",
    "dims_report": "qdrant_distill.dims",
    "distill": "qdrant_distill.distillation",
    "encoder_for": "qdrant_distill.registry",
    "export_edge": "qdrant_distill.edge_export",
    "fidelity": "qdrant_distill.evaluate",
    "finalize": "qdrant_distill.swap",
    "load_beir": "qdrant_distill.evaluate",
    "load_config": "qdrant_distill.config",
    "load_encoder": "qdrant_distill.encoders",
    "make_plan": "qdrant_distill.plan",
    "migrate": "qdrant_distill.migration",
    "open_journal": "qdrant_distill.runs",
    "plan_dims": "qdrant_distill.dims",
    "projection_model": "qdrant_distill.projection",
    "repoint": "qdrant_distill.registry",
    "retrieval_metrics": "qdrant_distill.evaluate",
    "rollback": "qdrant_distill.swap",
    "status": "qdrant_distill.runs",
    "swap": "qdrant_distill.swap",
}

if TYPE_CHECKING:  # static checkers see the real names
    from qdrant_distill.registry import CollectionEncoder
    from qdrant_distill.dims import DimsReport, dims_report, plan_dims
    from qdrant_distill.config import DistillConfig
    from qdrant_distill.distillation import DistillResult
    from qdrant_distill.encoders import Encoder
    from qdrant_distill.evaluate import FidelityEvaluator
    from qdrant_distill.config import GateConfig
    from qdrant_distill.config import HeadInit
    from qdrant_distill.journal import Journal
    from qdrant_distill.config import MigrationConfig
    from qdrant_distill.plan import MigrationPlan
    from qdrant_distill.migration import MigrationReport
    from qdrant_distill.config import MissingTextPolicy
    from qdrant_distill.config import Mode
    from qdrant_distill.projection import PCAProjection
    from qdrant_distill.journal import Stage
    from qdrant_distill.config import StudentKind
    from qdrant_distill.gate import beir_metrics
    from qdrant_distill.distillation import distill
    from qdrant_distill.registry import encoder_for, repoint
    from qdrant_distill.edge_export import export_edge
    from qdrant_distill.evaluate import fidelity
    from qdrant_distill.swap import finalize
    from qdrant_distill.evaluate import load_beir
    from qdrant_distill.config import load_config
    from qdrant_distill.encoders import load_encoder
    from qdrant_distill.plan import make_plan
    from qdrant_distill.migration import migrate
    from qdrant_distill.runs import open_journal
    from qdrant_distill.projection import projection_model
    from qdrant_distill.evaluate import retrieval_metrics
    from qdrant_distill.swap import rollback
    from qdrant_distill.runs import status
    from qdrant_distill.swap import swap


__all__ = [
    "AliasConflict",
    "AuthenticationFailed",
    "BrokenExport",
    "CollectionEncoder",
    "CollectionError",
    "CollectionExists",
    "CollectionNotFound",
    "ConfigError",
    "ConnectionFailed",
    "ConnectorError",
    "DimensionError",
    "DimsReport",
    "DistillConfig",
    "DistillError",
    "DistillResult",
    "EmptyCollection",
    "Encoder",
    "FidelityEvaluator",
    "GateConfig",
    "GateFailed",
    "HeadInit",
    "InvalidVectors",
    "Journal",
    "JournalError",
    "MalformedAnswer",
    "MigrationConfig",
    "MigrationError",
    "MigrationPlan",
    "MigrationReport",
    "MissingTextPolicy",
    "Mode",
    "ModelNotFound",
    "NoTextPayload",
    "PCAProjection",
    "RunBusy",
    "ServerError",
    "Stage",
    "StoreMismatch",
    "StudentError",
    "StudentKind",
    "TeacherMismatch",
    "UnsupportedVectors",
    "VectorNotFound",
    "VerificationFailed",
    "__version__",
    "beir_metrics",
    "dims_report",
    "distill",
    "encoder_for",
    "export_edge",
    "fidelity",
    "finalize",
    "load_beir",
    "load_config",
    "load_encoder",
    "make_plan",
    "migrate",
    "open_journal",
    "plan_dims",
    "projection_model",
    "repoint",
    "retrieval_metrics",
    "rollback",
    "status",
    "swap",
]


# ``swap`` is named like its module: it is bound now (torch-free), since once the submodule is imported the package
# attribute of that name would otherwise be the module. ``distill`` lives in ``distillation`` and loads lazily.
from qdrant_distill.swap import swap  # noqa: E402


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qdrant_distill' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
