"""qdrant-distill: distil a smaller embedding model from the teacher vectors stored in a Qdrant collection.

The public API: configure a :class:`MigrationConfig`, call :func:`migrate`; or use the stages and the distillation
engine directly. :func:`encoder_for` gives an application the right query encoder for whatever collection an alias
points to.
"""

from qdrant_distill.config import GateConfig, MigrationConfig, MissingTextPolicy, Mode, load_config
from qdrant_distill.distill import DistillConfig, DistillResult, distill, load_student
from qdrant_distill.errors import (
    AliasConflict,
    AuthenticationFailed,
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
    MigrationError,
    NoTextPayload,
    ServerError,
    StudentError,
    UnsupportedVectors,
    VectorNotFound,
    VerificationFailed,
)
from qdrant_distill.evaluate import FidelityEvaluator, fidelity, load_beir, retrieval_metrics
from qdrant_distill.journal import Journal, Stage
from qdrant_distill.migration import MigrationReport, beir_metrics, migrate, open_journal, status
from qdrant_distill.plan import MigrationPlan, make_plan
from qdrant_distill.projection import PCAProjection, projection_model
from qdrant_distill.registry import CollectionEncoder, encoder_for
from qdrant_distill.students import StudentKind
from qdrant_distill.swap import finalize, rollback, swap

from qdrant_distill._version import __version__

__all__ = [
    "AliasConflict",
    "AuthenticationFailed",
    "CollectionEncoder",
    "CollectionError",
    "CollectionExists",
    "CollectionNotFound",
    "ConfigError",
    "ConnectionFailed",
    "ConnectorError",
    "DimensionError",
    "DistillConfig",
    "DistillError",
    "DistillResult",
    "EmptyCollection",
    "FidelityEvaluator",
    "GateConfig",
    "GateFailed",
    "InvalidVectors",
    "Journal",
    "MigrationConfig",
    "MigrationError",
    "MigrationPlan",
    "MigrationReport",
    "MissingTextPolicy",
    "Mode",
    "NoTextPayload",
    "PCAProjection",
    "ServerError",
    "Stage",
    "StudentError",
    "StudentKind",
    "UnsupportedVectors",
    "VectorNotFound",
    "VerificationFailed",
    "__version__",
    "beir_metrics",
    "distill",
    "encoder_for",
    "fidelity",
    "finalize",
    "load_beir",
    "load_config",
    "load_student",
    "make_plan",
    "migrate",
    "open_journal",
    "projection_model",
    "retrieval_metrics",
    "rollback",
    "status",
    "swap",
]
