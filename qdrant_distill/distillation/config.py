"""How to distil a student: :class:`DistillConfig` (pydantic) and the student kinds, head starts and loss weights."""

from __future__ import annotations

import enum
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qdrant_distill.errors import ConfigError
from qdrant_distill.evaluation.metrics import PRIMARY_METRIC
from qdrant_distill.inference.formats import ExportChoice

__all__ = ["DEFAULT_BASE_MODEL", "MIN_HOLDOUT", "MIN_TRAIN_PAIRS", "DistillConfig", "HeadInit", "LossWeights",
           "StudentKind"]

DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MIN_TRAIN_PAIRS = 4  # pairs a student trains on, at the least
MIN_HOLDOUT = 2  # held-out pairs fidelity needs, at the least

# the teacher check: its vectors of sampled texts against the stored ones, mean cosine at least this. Measured on
# SciFact with all-mpnet-base-v2 (docs/encoders.md): the right teacher and template reproduce the stored vectors at
# 1.0000; "{text}" for "{title} {text}" gives 0.9898, the teacher with 11 of its 12 layers 0.9742
TEACHER_MIN_COSINE = 0.995


class StudentKind(str, enum.Enum):
    """What the student is: ``transformer`` (a small model + head), ``pruned`` (the teacher with fewer layers +
    the projection), ``static`` (a bag of token embeddings)."""

    TRANSFORMER = "transformer"
    PRUNED = "pruned"
    STATIC = "static"


class HeadInit(str, enum.Enum):
    """How a transformer student's head starts: ``own_pca`` (the body's own uncentred PCA, rotated onto the targets
    by orthogonal Procrustes), ``ridge`` (least squares from the body's vectors onto the targets), ``random``."""

    OWN_PCA = "own_pca"
    RIDGE = "ridge"
    RANDOM = "random"



class LossWeights(BaseModel):
    """Weights of the loss terms (0 switches a term off). ``pseudo_query`` needs ``DistillConfig.pseudo_queries``.

    The defaults pull gently: on SciFact every term that fits the teacher's *document* geometry (contrastive, KL,
    a strong MSE) raised document fidelity but lowered query nDCG (docs/benchmarks.md).
    """

    model_config = ConfigDict(extra="forbid")

    mse: float = Field(0.3, ge=0)
    cosine: float = Field(0.0, ge=0)
    contrastive: float = Field(0.0, ge=0)
    kl: float = Field(0.0, ge=0)
    pseudo_query: float = Field(1.0, ge=0)
    # a pseudo-query's student vector against the student's own vectors of the batch's documents (in-batch,
    # student to student): the search the student will answer. Measured for the static student on SciFact: without
    # it 0.5878 nDCG@10, with it 0.6155 (docs/benchmarks.md, "Static tier")
    query_document: float = Field(0.0, ge=0)


class DistillConfig(BaseModel):
    """How to distil. Defaults are the recipe measured in docs/benchmarks.md.

    By default a transformer student keeps its body frozen (``lr_body=0``): body vectors are computed once per text,
    so distillation costs about one encoding pass of the sample, and the head starts from the body's own PCA rotated
    onto the teacher space (``head_init="own_pca"``). Training the body (``lr_body > 0``, optionally only the top
    ``trainable_layers``) raises document fidelity but, measured on SciFact, lowered query quality.
    """

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    kind: StudentKind = StudentKind.TRANSFORMER
    base_model: str = DEFAULT_BASE_MODEL
    teacher_model: str | None = None
    keep_layers: int | None = Field(None, ge=1, description="pruned: layers kept (default a third, at least 2)")
    dim: int = Field(128, ge=1)
    center: bool = False
    holdout_fraction: float = Field(0.1, ge=0.0, le=0.5)
    max_holdout: int = Field(1000, ge=2)
    epochs: int = Field(1, ge=0)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(32, ge=2)
    lr_body: float = Field(0.0, ge=0, description="0 freezes the body (the measured default)")
    lr_head: float = Field(3e-4, ge=0)
    lr_static: float = Field(2e-2, ge=0, description="static: learning rate of the token table")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weights: LossWeights = Field(default_factory=LossWeights)
    temperature: float = Field(0.05, gt=0)
    matryoshka_dims: tuple[int, ...] | None = None
    max_seq_length: int | None = Field(256, ge=8)
    train_max_seq_length: int | None = Field(
        None, ge=8, description="shorter inputs while training (cheaper); the saved student keeps max_seq_length"
    )
    trainable_layers: int | None = Field(
        None, ge=0, description="transformer/pruned: train only the top n encoder layers (None: the whole body)"
    )
    head_init: HeadInit = HeadInit.OWN_PCA
    head_init_samples: int = Field(2000, ge=2, description="texts encoded by the body to initialise the head")
    token_source: str = Field("body", pattern="^(body|input)$", description="static: token vectors from")
    pseudo_queries: bool = True
    pseudo_query_negatives: Literal["batch", "sample"] = Field(
        "batch", description="pseudo-query term: negatives from the batch, or every training target (the sample)"
    )
    primary_metric: Literal[
        "fidelity/recall@10", "fidelity/spearman", "pseudo_query/mrr@10", "pseudo_query/self_mrr@10"
    ] = Field(PRIMARY_METRIC, description="holdout metric for early stopping and the kept state")
    eval_steps: int | None = Field(None, ge=1, description="evaluate every n steps (default: once per epoch)")
    early_stopping_patience: int | None = Field(2, ge=1)
    encode_batch_size: int = Field(64, ge=1)
    label_queries: int = Field(
        0, ge=0, description="query-like texts cut from the training sample and labelled by the teacher (needs one)"
    )
    export: ExportChoice = Field(
        ExportChoice.ONNX_INT8, description="after distilling, export the student for onnxruntime (onnx-int8: fp32 and int8; a "
        "static student: its token table); the fastest format that passes its checks is used"
    )
    time_budget_s: float | None = Field(
        None, gt=0, description="stop training after this many seconds (the best state so far is kept); None: no limit"
    )
    recipe: str | None = Field(None, description="the measured recipe whose values fill the unset fields (recipes.py)")
    seed: int = 0
    device: str = "cpu"

    @field_validator("matryoshka_dims")
    @classmethod
    def _positive_dims(cls, dims: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if dims is not None and any(d < 1 for d in dims):
            raise ValueError("matryoshka dimensions must be positive")
        return tuple(sorted(set(dims))) if dims else None

    def holdout_size(self, n: int) -> int:
        """Held-out pairs of a sample of ``n``: ``holdout_fraction`` of it, at least 2, at most ``max_holdout``,
        leaving at least 4 to train on (0 when ``n`` cannot give both)."""
        size = min(max(MIN_HOLDOUT, round(n * self.holdout_fraction)), self.max_holdout, n - MIN_TRAIN_PAIRS)
        return size if size >= MIN_HOLDOUT else 0

    def holdout_split(self, n: int) -> tuple[list[int], list[int]]:
        """The training and held-out indices (each ascending) of a sample of ``n``: a permutation seeded by ``seed``,
        its first :meth:`holdout_size` held out. The one home of the split (distillation, the dimension table and the
        report's examples)."""
        order = np.random.default_rng(self.seed).permutation(n)
        size = self.holdout_size(n)
        return sorted(order[size:].tolist()), sorted(order[:size].tolist())

    @classmethod
    def parse(cls, data: dict[str, Any]) -> DistillConfig:
        """Validate a mapping; invalid values raise :class:`ConfigError` with pydantic's explanation."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid distillation config: {exc}") from exc
