"""Distil a student from (text, stored teacher vector) pairs: the teacher need not run.

The recipe, in :func:`distill`:

1. split the pairs into training and held-out points;
2. fit the teacher space: a PCA of the training teacher vectors to ``config.dim``; the projected vectors are the targets;
   with a teacher at hand (``label_queries``), query-like cuts of the training texts and their projected teacher
   vectors join the training pairs (:mod:`qdrant_distill.teacher`; cached in ``output_dir``);
3. build the student (:mod:`qdrant_distill.students`) with its head initialised from the training pairs;
4. train it (:mod:`qdrant_distill.training`), measuring holdout fidelity before, during and after;
5. save the student in sentence-transformers format, the projection, and ``distill.json`` describing both.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from qdrant_distill._compat import embedding_dimension
from qdrant_distill._quiet import quiet_loading
from qdrant_distill.config import DistillConfig, HeadInit, LossWeights, StudentKind
from qdrant_distill.encoders import STUDENT_DIR, as_encoder, load_encoder
from qdrant_distill.errors import ConfigError, DimensionError, InvalidVectors, StudentError
from qdrant_distill.evaluate import PRIMARY_METRIC, QUERY_METRIC, FidelityEvaluator, fidelity
from qdrant_distill.projection import PCAProjection
from qdrant_distill.students import (
    add_head,
    body_and_head,
    fit_head,
    freeze_lower_layers,
    head_start,
    load_body,
    pruned_student,
    static_student,
)
from qdrant_distill.pseudo_queries import cut_queries, pseudo_query
from qdrant_distill.teacher import label_queries
from qdrant_distill.training import FrozenBodyForward, TrainSettings, train

__all__ = ["DISTILL_JSON", "QUERY_RECIPE", "DistillResult", "distill", "for_queries"]

logger = logging.getLogger(__name__)

DISTILL_JSON = "distill.json"
PROJECTION_FILE = "projection.npz"
LABELS_DIR = "teacher_labels"
MIN_PAIRS = 4
PRUNED_LR_BODY = 1e-4  # body learning rate of a pruned teacher when none is given (measured in docs/benchmarks.md)


class DistillResult(BaseModel):
    """What :func:`distill` made and measured; also written as ``distill.json``."""

    student_path: str
    projection_path: str
    kind: StudentKind
    base_model: str
    dim: int
    teacher_dim: int
    teacher_id: str
    center: bool
    explained_variance: float
    train_size: int
    label_pairs: int = 0
    holdout_size: int
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    projection_metrics: dict[str, float]
    primary_metric: str = PRIMARY_METRIC
    query_metric: str = QUERY_METRIC
    wall_time_s: float
    steps: int
    best_step: int
    epochs_run: float
    stopped_early: bool
    losses: list[dict[str, float]]
    evaluations: list[dict[str, float]]
    config: dict[str, Any]


# measured on SciFact (docs/benchmarks.md, "query student"): for a student that encodes only queries against the
# PCA of the stored document vectors, pseudo-queries contrasted against every training target, the kept state chosen
# by the holdout pseudo-query MRR. Transformer: frozen body, ridge head (0.558 nDCG@10 against 0.485 for the
# symmetric recipe). Pruned teacher: its PCA head, the body trained on the pseudo-queries only (short inputs).
_QUERY_COMMON: dict[str, Any] = {
    "weights": LossWeights(mse=0.0, cosine=0.0, contrastive=0.0, kl=0.0, pseudo_query=1.0),
    "pseudo_query_negatives": "sample",
    "primary_metric": QUERY_METRIC,
    "batch_size": 64,
    "early_stopping_patience": 3,
}
QUERY_RECIPE: dict[str, Any] = {**_QUERY_COMMON, "head_init": HeadInit.RIDGE, "lr_head": 1e-3, "epochs": 8}
PRUNED_QUERY_RECIPE: dict[str, Any] = {**_QUERY_COMMON, "lr_body": 5e-5, "lr_head": 1e-4, "epochs": 3}


def for_queries(config: DistillConfig) -> DistillConfig:
    """``config`` with the query-student recipe in every field the user left unset.

    For asymmetric use (``project`` mode): documents keep the projection of their stored vectors and the student
    encodes queries only. Transformer students get :data:`QUERY_RECIPE`, pruned teachers
    :data:`PRUNED_QUERY_RECIPE`; static students are returned unchanged.
    """
    recipe = {StudentKind.TRANSFORMER: QUERY_RECIPE, StudentKind.PRUNED: PRUNED_QUERY_RECIPE}.get(config.kind)
    if recipe is None or not config.pseudo_queries:
        return config
    update = {k: v.model_copy() if isinstance(v, BaseModel) else v for k, v in recipe.items()
              if k not in config.model_fields_set}
    return config.model_copy(update=update)


# ------------------------------------------------------------------------------------------------------------ helpers
def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_pairs(texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2:
        raise InvalidVectors(f"teacher vectors must be 2-d, got shape {arr.shape}")
    if len(texts) != len(arr):
        raise InvalidVectors(f"{len(texts)} texts but {len(arr)} teacher vectors")
    if not np.all(np.isfinite(arr)):
        raise InvalidVectors("teacher vectors contain non-finite values", hint="drop or fix those points")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise InvalidVectors("teacher vectors contain zero vectors")
    return arr / norms


def _split(n: int, config: DistillConfig) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(config.seed).permutation(n)
    size = min(round(n * config.holdout_fraction), config.max_holdout, n - MIN_PAIRS)
    size = size if size >= 2 else 0
    return np.sort(order[size:]), np.sort(order[:size])


def _build_student(
    config: DistillConfig,
    texts: list[str],
    targets: np.ndarray,
    projection: PCAProjection,
    body_cache: dict[str, np.ndarray] | None = None,
) -> tuple[Any, float, float]:
    """The untrained student and the learning rates of its body and head."""
    kind = StudentKind(config.kind)
    if kind is StudentKind.PRUNED:
        if not config.teacher_model:
            raise ConfigError("a pruned student needs teacher_model", hint="pass the teacher's name or path")
        teacher = load_body(config.teacher_model, device=config.device, max_seq_length=config.max_seq_length)
        if embedding_dimension(teacher) != projection.in_dim:
            raise ConfigError(
                f"teacher_model encodes {embedding_dimension(teacher)}-d vectors but the stored ones are "
                f"{projection.in_dim}-d: it is not the collection's teacher"
            )
        n_layers = len(teacher[0].auto_model.encoder.layer) if hasattr(teacher[0], "auto_model") else 0
        keep = config.keep_layers or max(2, n_layers // 3)
        # removing layers damages the body (holdout recall@10 0.285 untrained on SciFact): unless the user chose a
        # body learning rate, the pruned body trains (the frozen-body default suits only intact transformer bodies)
        lr_body = config.lr_body if "lr_body" in config.model_fields_set else PRUNED_LR_BODY
        logger.info("pruned student: %d of %d layers kept; body learning rate %g", keep, n_layers, lr_body)
        return pruned_student(teacher, projection, keep), lr_body, config.lr_head
    body = load_body(config.base_model, device=config.device, max_seq_length=config.max_seq_length)
    if kind is StudentKind.STATIC:
        model = static_student(body, texts, targets, token_source=config.token_source)
        return model, config.lr_static, 0.0
    # transformer: the head starts from the body's vectors of (a sample of) the training texts
    head_init = HeadInit(config.head_init)
    weight = None
    if head_init is not HeadInit.RANDOM:
        rng = np.random.default_rng(config.seed)
        take = np.sort(rng.permutation(len(texts))[: config.head_init_samples])
        sample = [texts[i] for i in take]
        if body_cache and all(t in body_cache for t in sample):
            body_vecs = np.stack([body_cache[t] for t in sample]).astype(np.float32)
            body_vecs /= np.maximum(np.linalg.norm(body_vecs, axis=1, keepdims=True), 1e-12)
        else:
            body_vecs = as_encoder(body, batch_size=config.encode_batch_size).encode(sample)
        weight = fit_head(body_vecs, targets[take], head_init)
    return add_head(body, weight, dim=projection.dim if weight is None else None), config.lr_body, config.lr_head


def _teacher_labels(
    config: DistillConfig, texts: list[str], projection: PCAProjection, output_dir: Path, progress: bool
) -> tuple[list[str], np.ndarray]:
    """``config.label_queries`` query-like cuts of ``texts`` and their teacher vectors, projected like the targets."""
    if not config.label_queries:
        return [], np.zeros((0, projection.dim), dtype=np.float32)
    if not config.teacher_model:
        raise ConfigError("teacher labels (label_queries) need teacher_model", hint="pass --teacher MODEL")
    teacher = load_encoder(config.teacher_model, batch_size=config.encode_batch_size)
    queries = cut_queries(texts, config.label_queries, seed=config.seed)
    vectors = _check_pairs(queries, label_queries(teacher, queries, output_dir / LABELS_DIR, progress=progress))
    if vectors.shape[1] != projection.in_dim:
        raise DimensionError(f"the teacher labels {vectors.shape[1]}-d vectors, the stored ones are "
                             f"{projection.in_dim}-d", hint="--teacher must be the model the collection was indexed with")
    return queries, projection.transform(vectors)


# ------------------------------------------------------------------------------------------------------------ distill
def distill(
    texts: Sequence[str],
    teacher_vectors: np.ndarray,
    config: DistillConfig,
    *,
    output_dir: Path | str,
    teacher_id: str = "unknown",
    progress: bool = True,
    holdout: tuple[list[str], np.ndarray] | None = None,
    body_cache: dict[str, np.ndarray] | None = None,
) -> DistillResult:
    """Distil a student from ``texts`` and their stored ``teacher_vectors``; save it under ``output_dir``.

    ``holdout`` gives the held-out pairs explicitly; otherwise ``config.holdout_fraction`` of the pairs is held out.
    ``body_cache`` (text -> the base model's vector) saves encoding again what was encoded before; it is used only
    when the body is frozen (``lr_body=0`` or ``trainable_layers=0``).
    """
    started = time.perf_counter()
    _seed(config.seed)
    texts = list(texts)
    vectors = _check_pairs(texts, teacher_vectors)
    if holdout is not None:
        train_texts, train_vecs = texts, vectors
        hold_texts, hold_vecs = list(holdout[0]), _check_pairs(list(holdout[0]), holdout[1])
        if hold_vecs.shape[1] != vectors.shape[1]:
            raise InvalidVectors(f"holdout vectors are {hold_vecs.shape[1]}-d, training ones {vectors.shape[1]}-d")
    else:
        train_idx, hold_idx = _split(len(texts), config)
        train_texts, train_vecs = [texts[i] for i in train_idx], vectors[train_idx]
        hold_texts, hold_vecs = [texts[i] for i in hold_idx], vectors[hold_idx]
    if len(train_texts) < MIN_PAIRS:
        raise ConfigError(f"{len(train_texts)} training pairs: at least {MIN_PAIRS} are needed")
    if len(hold_texts) < 2:
        raise ConfigError("no holdout: fidelity needs at least 2 held-out pairs", hint="raise holdout_fraction")

    # the teacher space and the targets in it; teacher labels (query-like cuts of training texts) join the pairs
    projection = PCAProjection.fit(train_vecs, config.dim, center=config.center)
    targets = projection.transform(train_vecs)
    hold_targets = projection.transform(hold_vecs)
    label_texts, label_targets = _teacher_labels(config, train_texts, projection, Path(output_dir), progress)
    train_texts, targets = train_texts + label_texts, np.concatenate([targets, label_targets])
    projection_metrics = fidelity(hold_targets, hold_vecs, projected_targets=hold_targets)

    # the student, trained with holdout fidelity as the early-stopping signal
    model, lr_body, lr_head = _build_student(config, train_texts, targets, projection, body_cache)
    # one deterministic query-like cut per held-out text: the query-side metrics (pseudo_query/*)
    hold_queries = [pseudo_query(t, random.Random(config.seed + i)) for i, t in enumerate(hold_texts)]
    evaluator = FidelityEvaluator(
        hold_texts, hold_vecs, projected_targets=hold_targets, batch_size=config.encode_batch_size,
        primary_metric=config.primary_metric, pseudo_queries=hold_queries,
    )
    body_params, head_params = body_and_head(model)
    forward = None
    frozen = config.kind is not StudentKind.STATIC and (lr_body == 0 or config.trainable_layers == 0)
    if frozen:
        # only the head learns: body vectors are computed once per text and reused by every epoch
        for p in body_params:
            p.requires_grad_(False)
        body_params = []
        forward = FrozenBodyForward(model, head_start(model), device=config.device,
                                    batch_size=config.encode_batch_size, cache=body_cache)
    elif config.trainable_layers is not None and config.kind is not StudentKind.STATIC:
        body_params = freeze_lower_layers(model, config.trainable_layers)
    full_length = model.max_seq_length

    def evaluate(m: Any) -> dict[str, float]:
        # holdout fidelity at the length the student will be used with
        if config.train_max_seq_length and full_length != math.inf and not frozen:
            m.max_seq_length = full_length
            try:
                return evaluator(m)
            finally:
                m.max_seq_length = config.train_max_seq_length
        return evaluator(m)

    if config.train_max_seq_length and full_length != math.inf and not frozen:
        model.max_seq_length = config.train_max_seq_length
    settings = TrainSettings(
        epochs=config.epochs,
        max_steps=config.max_steps,
        batch_size=config.batch_size,
        lr_body=lr_body,
        lr_head=lr_head,
        weight_decay=0.0 if config.kind is StudentKind.STATIC else config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        weights=config.weights.model_dump(),
        temperature=config.temperature,
        matryoshka_dims=config.matryoshka_dims,
        pseudo_queries=config.pseudo_queries,
        pseudo_query_negatives=config.pseudo_query_negatives,
        eval_steps=config.eval_steps,
        early_stopping_patience=config.early_stopping_patience,
        primary_metric=evaluator.primary_metric,
        seed=config.seed,
        device=config.device,
    )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    outcome = train(
        model,
        train_texts,
        targets,
        settings,
        body_params=body_params,
        head_params=head_params,
        evaluate=evaluate,
        progress=progress,
        forward=forward,
    )
    if full_length != math.inf:
        model.max_seq_length = full_length

    # save the student, the projection and what they are
    student_path = output_dir / STUDENT_DIR
    try:
        with quiet_loading():
            model.save(str(student_path))
    except Exception as exc:
        raise StudentError(f"cannot save the student to {student_path}: {exc}") from exc
    projection_path = projection.save(output_dir / PROJECTION_FILE)
    result = DistillResult(
        student_path=str(student_path),
        projection_path=str(projection_path),
        kind=config.kind,
        base_model=config.teacher_model if config.kind is StudentKind.PRUNED else config.base_model,
        dim=projection.dim,
        teacher_dim=projection.in_dim,
        teacher_id=teacher_id,
        center=config.center,
        explained_variance=projection.explained_variance_ratio,
        train_size=len(train_texts),
        label_pairs=len(label_texts),
        holdout_size=len(hold_texts),
        metrics=outcome.metrics,
        baseline_metrics=outcome.baseline_metrics,
        projection_metrics=projection_metrics,
        wall_time_s=time.perf_counter() - started,
        steps=outcome.steps,
        best_step=outcome.best_step,
        epochs_run=outcome.epochs_run,
        stopped_early=outcome.stopped_early,
        losses=outcome.history,
        evaluations=outcome.evaluations,
        config=config.model_dump(mode="json"),
        primary_metric=config.primary_metric,
    )
    text = json.dumps(result.model_dump(mode="json"), indent=2)
    for where in (output_dir / DISTILL_JSON, student_path / DISTILL_JSON):
        where.write_text(text, encoding="utf-8")
    logger.info(
        "distilled a %s student (%d -> %d dims) in %.0f s: %s %.4f (untrained %.4f, projection %.4f)",
        config.kind.value,
        projection.in_dim,
        projection.dim,
        result.wall_time_s,
        config.primary_metric,
        result.metrics.get(config.primary_metric, float("nan")),
        result.baseline_metrics.get(config.primary_metric, float("nan")),
        projection_metrics.get(config.primary_metric, float("nan")),
    )
    return result
