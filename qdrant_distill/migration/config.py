"""Migration configuration: pydantic models, loadable from code, a TOML/YAML file, or environment variables.

Precedence: keyword overrides > environment (``QDRANT_DISTILL_*``, plus ``QDRANT_URL`` / ``QDRANT_API_KEY``) > file.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from qdrant_distill.connectors.base import TextSource
from qdrant_distill.connectors.settings import QdrantSettings
from qdrant_distill.distillation.config import TEACHER_MIN_COSINE, DistillConfig
from qdrant_distill.errors import ConfigError, DimensionError

__all__ = ["Engine", "GateConfig", "MigrationConfig", "MissingTextPolicy", "Mode", "RayConfig", "load_config"]

ENV_PREFIX = "QDRANT_DISTILL_"
DEFAULT_DIM = 128
DEFAULT_SAMPLE_SIZE = 5000
DEFAULT_RUNS_DIR = "./runs"
FINGERPRINT_FIELDS = {
    "source", "target", "alias", "text_field", "text_template", "vector_name", "dim", "mode", "student",
    "teacher_model", "sample_size", "sample_seed",
}


# declared by MigrationConfig; a migration's student config derives them (MigrationConfig.distill_config)
DERIVED_FIELDS = ("dim", "teacher_model", "encode_batch_size")


class Mode(str, enum.Enum):
    """How documents and queries get their vectors.

    - ``reembed``: the student encodes every document and every query (symmetric; the default).
    - ``project``: documents get the PCA projection of their stored teacher vectors (no text encoded); the student
      encodes queries.
    - ``projection-only``: documents as in ``project``; queries by the teacher plus the same projection. No training.
    """

    REEMBED = "reembed"
    PROJECT = "project"
    PROJECTION_ONLY = "projection-only"


class MissingTextPolicy(str, enum.Enum):
    """What re-embedding does with a point that has no usable text.

    - ``fail``: stop before writing it (the default).
    - ``skip``: leave it out of the target and list its id in the journal.
    - ``project``: give it the PCA projection of its stored teacher vector.
    """

    FAIL = "fail"
    SKIP = "skip"
    PROJECT = "project"


class Engine(str, enum.Enum):
    """What runs the re-embed stage.

    - ``local``: threads in this process (the default; needs nothing more).
    - ``ray``: Ray actors encode, on this machine or an existing Ray cluster (``pip install 'qdrant-distill[ray]'``).
    """

    LOCAL = "local"
    RAY = "ray"


DEFAULT_RANGE_SIZE = 4096


class RayConfig(BaseModel):
    """How the Ray engine runs (ignored by the local engine). See docs/scale.md."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="an existing Ray cluster (e.g. ray://head:10001 or auto); "
                                "default: start a local one on this machine's cores")
    workers: int = Field(2, ge=1, description="encoder actors, each with the student loaded once")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs each actor reserves (0: CPU actors)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs each actor reserves (its torch threads)")
    range_size: int = Field(DEFAULT_RANGE_SIZE, ge=1, description="points per id range (the unit of resume)")
    connect_timeout_s: float = Field(5.0, gt=0, description="plan's TCP connect to the cluster address")
    init_timeout_s: float = Field(120.0, gt=0, description="connecting to (or starting) Ray")
    wait_timeout_s: float = Field(900.0, gt=0, description="the longest wait for one page's vectors from an actor")


class GateConfig(BaseModel):
    """Minimum quality before anything is written. Metric keys as :func:`qdrant_distill.evaluation.metrics.fidelity` returns."""

    model_config = ConfigDict(extra="forbid")

    min_recall_at_10: float = Field(0.3, ge=0, le=1, description="teacher-neighbour recall@10 on holdout points")
    min_spearman: float = Field(0.5, ge=-1, le=1, description="Spearman of pairwise cosines, student vs teacher")
    min_ndcg_at_10: float | None = Field(None, ge=0, le=1, description="nDCG@10 on labelled queries, when given")
    queries: str | None = Field(
        None, description="BEIR-style folder (queries.jsonl + qrels/<split>.tsv) whose corpus ids are point ids"
    )
    split: str = "test"

    def thresholds(self) -> dict[str, float]:
        out = {"fidelity/recall@10": self.min_recall_at_10, "fidelity/spearman": self.min_spearman}
        if self.min_ndcg_at_10 is not None:
            out["labelled/ndcg@10"] = self.min_ndcg_at_10
        return out


class MigrationConfig(BaseModel):
    """Everything one migration needs. Only ``source`` is required."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="alias (swapped in place) or collection name to migrate from")
    target: str | None = Field(None, description="new collection; default <source collection>_distilled<dim>")
    alias: str | None = Field(None, description="alias to create for the target when the source is a plain collection")
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    text_field: str | None = None
    text_template: str | None = None
    vector_name: str | None = None
    dim: int = DEFAULT_DIM
    mode: Mode = Mode.REEMBED
    student: DistillConfig = Field(default_factory=DistillConfig)
    teacher_model: str | None = Field(
        None, description="the teacher, any load_encoder reference: checked against the stored vectors in plan; "
        "needed by projection-only mode, pruned students and teacher labels",
    )
    embeddings_api_key: SecretStr | None = Field(
        None, description="API key of an HTTP teacher (openai+https://...); never printed, logged or stored",
    )
    teacher_check: bool = Field(True, description="plan: re-encode sampled texts with the teacher and compare")
    teacher_min_cosine: float = Field(TEACHER_MIN_COSINE, ge=-1, le=1, description="teacher check: minimum mean cosine")
    sample_size: int = Field(DEFAULT_SAMPLE_SIZE, ge=2)
    sample_seed: int | None = None
    gate: GateConfig = Field(default_factory=GateConfig)
    missing_text: MissingTextPolicy = MissingTextPolicy.FAIL
    page_size: int = Field(1024, ge=1, description="points per scroll page and upsert (larger pages encode faster)")
    encode_batch_size: int = Field(64, ge=1)
    prefetch_pages: int = Field(2, ge=1, description="pages read ahead of the encoder (bounds memory)")
    engine: Engine = Engine.LOCAL
    ray: RayConfig = Field(default_factory=RayConfig)
    verify_sample: int = Field(64, ge=0, description="target vectors re-encoded and compared during verify")
    run_dir: str | None = Field(None, description="folder for the journal and student; default ./runs/<source>-<dim>")
    progress: bool = True

    @field_validator("dim")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise DimensionError(f"target dimension must be >= 1, got {v}")
        return v

    @model_validator(mode="after")
    def _valid_text(self) -> MigrationConfig:
        _ = self.text  # a field and a template together, or a template naming nothing, fail here
        return self

    @model_validator(mode="after")
    def _one_declaration(self) -> MigrationConfig:
        """In a migration, the size, the teacher and the encode batch are the migration's: a student config that
        sets one of them otherwise is refused (one place says it, :meth:`distill_config` hands it on)."""
        for name in DERIVED_FIELDS:
            ours, theirs = getattr(self, name), getattr(self.student, name)
            if name in self.student.model_fields_set and ours is not None and theirs != ours:
                raise ConfigError(f"student.{name} = {theirs!r} contradicts the migration's {name} = {ours!r}",
                                  hint=f"set {name} once, at the top level of the migration config")
        return self

    def distill_config(self) -> DistillConfig:
        """The student's configuration in this migration: its ``dim``, ``teacher_model`` and ``encode_batch_size``
        derived from the migration's (the teacher only when the migration names one)."""
        update: dict[str, Any] = {"dim": self.dim, "encode_batch_size": self.encode_batch_size}
        if self.teacher_model:
            update["teacher_model"] = self.teacher_model
        return self.student.model_copy(update=update)

    @property
    def text(self) -> TextSource:
        return TextSource(field=self.text_field, template=self.text_template)

    def target_name(self, source_collection: str) -> str:
        return self.target or f"{source_collection}_distilled{self.dim}"

    def resolved_run_dir(self) -> Path:
        """Where the journal lives; derived from what the user named, so it does not move when an alias does."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.source)
        return Path(self.run_dir) if self.run_dir else Path(DEFAULT_RUNS_DIR) / f"{safe}-{self.dim}"

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this migration in its journal. Settings that may change on a resume (batch sizes, the
        gate, progress) are left out; so are secrets."""
        from qdrant_distill.connectors.http_embeddings import stored_reference

        data = self.model_dump(mode="json", include=FINGERPRINT_FIELDS)
        data["qdrant"] = self.qdrant.target
        if data.get("teacher_model"):  # an endpoint's path may hold a token: recorded without it
            data["teacher_model"] = stored_reference(data["teacher_model"])
        if data["student"].get("teacher_model"):
            data["student"]["teacher_model"] = stored_reference(data["student"]["teacher_model"])
        return data


QDRANT_VARIABLES = {"QDRANT_URL": ("qdrant", "url"), "QDRANT_API_KEY": ("qdrant", "api_key")}  # read too, into MigrationConfig.qdrant


def given(values: dict[str, Any]) -> dict[str, Any]:
    """Overrides without the ones not given: ``None``, and groups with nothing given (``{}``), at every depth."""
    kept = {k: given(v) if isinstance(v, dict) else v for k, v in values.items() if v is not None}
    return {k: v for k, v in kept.items() if v != {}}


def load_config(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None, **overrides: Any
) -> MigrationConfig:
    """Build a :class:`MigrationConfig` from a file, the environment (``os.environ`` unless ``environ`` is given),
    and keyword overrides (highest first)."""
    from pydantic_settings import SettingsError

    from qdrant_distill.migration.settings import (
        read_settings,  # pydantic-settings: only when a config is loaded
    )

    try:
        settings = read_settings(MigrationConfig, path=path, environ=os.environ if environ is None else environ,
                                 overrides=given(overrides), prefix=ENV_PREFIX, extra=QDRANT_VARIABLES)
    except SettingsError as exc:  # a variable holding JSON that does not parse
        raise ConfigError(f"invalid configuration: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"invalid configuration: {where}: {first['msg']}", errors=len(exc.errors())) from exc
    # the same values, already validated, in the plain model (which reads no environment); fields_set is kept
    return MigrationConfig.model_construct(settings.model_fields_set, **dict(settings))
