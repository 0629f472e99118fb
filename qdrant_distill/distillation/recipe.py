"""Distil a student from (text, stored teacher vector) pairs: the teacher need not run.

The recipe, in :func:`distill`:

1. split the pairs into training and held-out points;
2. fit the teacher space: a PCA of the training teacher vectors to ``config.dim``; the projected vectors are the targets;
   with a teacher at hand (``label_queries``), query-like cuts of the training texts and their projected teacher
   vectors join the training pairs (:mod:`qdrant_distill.distillation.teacher`; cached in ``output_dir``);
3. build the student (:mod:`qdrant_distill.distillation.students`) with its head initialised from the training pairs;
4. train it (:mod:`qdrant_distill.distillation.training`), measuring holdout fidelity before, during and after;
5. save the student in sentence-transformers format, the projection, and ``distill.json`` describing both.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import SecretStr

from qdrant_distill._compat import embedding_dimension
from qdrant_distill._quiet import quiet_loading
from qdrant_distill.connectors.http_embeddings import stored_reference
from qdrant_distill.distillation.config import (
    MIN_HOLDOUT,
    MIN_TRAIN_PAIRS,
    DistillConfig,
    HeadInit,
    StudentKind,
)
from qdrant_distill.distillation.pseudo_queries import cut_queries, pseudo_query
from qdrant_distill.distillation.recipes import PRUNED_LR_BODY, Use, with_recipe
from qdrant_distill.distillation.result import DistillResult
from qdrant_distill.distillation.students import (
    add_head,
    body_and_head,
    fit_head,
    freeze_lower_layers,
    head_start,
    load_body,
    pruned_student,
    static_student,
)
from qdrant_distill.distillation.teacher import label_queries
from qdrant_distill.distillation.training import (
    FrozenBodyForward,
    TrainOutcome,
    TrainSettings,
    train,
)
from qdrant_distill.errors import (
    ConfigError,
    DimensionError,
    InvalidVectors,
    StudentError,
)
from qdrant_distill.evaluation.metrics import FidelityEvaluator, fidelity
from qdrant_distill.folders import DistillFolder, recorded_path, stored_path
from qdrant_distill.inference.encoders import as_encoder, load_teacher
from qdrant_distill.inference.export import export_model, formats_for
from qdrant_distill.inference.formats import (
    GRAPHS,
    Backend,
    ExportChoice,
)
from qdrant_distill.inference.projection import PCAProjection
from qdrant_distill.vectors import unit_rows

__all__ = ["distill", "export_student"]

logger = logging.getLogger(__name__)

QUERY_SIDE_GUARD = "pseudo_query/self_mrr@10"
QUERY_SIDE_TOLERANCE = 0.005  # a plain head replacing the trained state may lose at most this on the query side


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


@dataclass
class _Pairs:
    """Training and held-out (text, unit teacher vector) pairs."""

    train_texts: list[str]
    train_vecs: np.ndarray
    hold_texts: list[str]
    hold_vecs: np.ndarray


@dataclass
class _Space:
    """The teacher space: the projection, the training targets in it (teacher labels included), the holdout's."""

    projection: PCAProjection
    texts: list[str]
    targets: np.ndarray
    hold_targets: np.ndarray
    label_pairs: int


@dataclass
class _Student:
    """The untrained student, its learning rates, and the heads it could start from (name -> weight)."""

    model: Any
    lr_body: float
    lr_head: float
    heads: dict[str, np.ndarray] = field(default_factory=dict)


def _pairs(texts: Sequence[str], vectors: np.ndarray, config: DistillConfig,
           holdout: tuple[Sequence[str], np.ndarray] | None) -> _Pairs:
    """Checked pairs, split into training and held-out ones (or the held-out pairs given)."""
    texts = list(texts)
    vecs = _check_pairs(texts, vectors)
    if holdout is not None:
        pairs = _Pairs(texts, vecs, list(holdout[0]), _check_pairs(list(holdout[0]), holdout[1]))
        if pairs.hold_vecs.shape[1] != vecs.shape[1]:
            raise InvalidVectors(
                f"holdout vectors are {pairs.hold_vecs.shape[1]}-d, training ones {vecs.shape[1]}-d")
    else:
        train_idx, hold_idx = config.holdout_split(len(texts))
        pairs = _Pairs([texts[i] for i in train_idx], vecs[train_idx], [texts[i] for i in hold_idx], vecs[hold_idx])
    if len(pairs.train_texts) < MIN_TRAIN_PAIRS:
        raise ConfigError(f"{len(pairs.train_texts)} training pairs: at least {MIN_TRAIN_PAIRS} are needed")
    if len(pairs.hold_texts) < 2:
        n = len(pairs.train_texts) + len(pairs.hold_texts)
        raise ConfigError(f"{n} pairs: at least {MIN_TRAIN_PAIRS + MIN_HOLDOUT} are needed ({MIN_TRAIN_PAIRS} to "
                          f"train, {MIN_HOLDOUT} held out)", hint="sample more points (--sample-size)")
    return pairs


def _teacher_space(config: DistillConfig, pairs: _Pairs, output_dir: Path, progress: bool,
                   api_key: str | SecretStr | None = None) -> _Space:
    """The PCA of the training teacher vectors; targets are the projected vectors, teacher labels joining them."""
    projection = PCAProjection.fit(pairs.train_vecs, config.dim, center=config.center)
    targets = projection.transform(pairs.train_vecs)
    label_texts, label_targets = _teacher_labels(config, pairs.train_texts, projection, output_dir, progress,
                                                 api_key)
    return _Space(projection, pairs.train_texts + label_texts, np.concatenate([targets, label_targets]),
                  projection.transform(pairs.hold_vecs), len(label_texts))


def _build_student(
    config: DistillConfig,
    texts: list[str],
    targets: np.ndarray,
    projection: PCAProjection,
    body_cache: dict[str, np.ndarray] | None = None,
) -> _Student:
    """The untrained student, the learning rates of its body and head, and (transformer) the heads it could have."""
    kind = StudentKind(config.kind)
    if kind is StudentKind.PRUNED:
        return _pruned(config, projection)
    body = load_body(config.base_model, device=config.device, max_seq_length=config.max_seq_length)
    if kind is StudentKind.STATIC:
        return _Student(static_student(body, texts, targets, token_source=config.token_source), config.lr_static, 0.0)
    # transformer: the head starts from the body's vectors of (a sample of) the training texts
    head_init = HeadInit(config.head_init)
    if head_init is HeadInit.RANDOM:
        return _Student(add_head(body, None, dim=projection.dim), config.lr_body, config.lr_head)
    rng = np.random.default_rng(config.seed)
    take = np.sort(rng.permutation(len(texts))[: config.head_init_samples])
    body_vecs = _body_vectors(body, [texts[i] for i in take], config, body_cache)
    heads = _heads(body_vecs, targets[take], head_init)
    return _Student(add_head(body, heads[head_init.value]), config.lr_body, config.lr_head, heads)


def _pruned(config: DistillConfig, projection: PCAProjection) -> _Student:
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
    return _Student(pruned_student(teacher, projection, keep), lr_body, config.lr_head)


def _body_vectors(body: Any, texts: list[str], config: DistillConfig,
                  body_cache: dict[str, np.ndarray] | None) -> np.ndarray:
    if body_cache and all(t in body_cache for t in texts):
        vecs = np.stack([body_cache[t] for t in texts]).astype(np.float32)
        return unit_rows(vecs)
    return as_encoder(body, batch_size=config.encode_batch_size).encode(texts)


def _heads(body_vecs: np.ndarray, targets: np.ndarray, first: HeadInit) -> dict[str, np.ndarray]:
    """Every non-random head fitted on the body's vectors: the chosen one, and the others as plain baselines."""
    heads = {}
    for mode in (HeadInit.OWN_PCA, HeadInit.RIDGE):
        try:
            heads[mode.value] = fit_head(body_vecs, targets, mode)
        except DimensionError:
            if mode is first:
                raise
    return heads


def _teacher_labels(
    config: DistillConfig, texts: list[str], projection: PCAProjection, output_dir: Path, progress: bool,
    api_key: str | SecretStr | None = None,
) -> tuple[list[str], np.ndarray]:
    """``config.label_queries`` query-like cuts of ``texts`` and their teacher vectors, projected like the targets."""
    if not config.label_queries:
        return [], np.zeros((0, projection.dim), dtype=np.float32)
    if not config.teacher_model:
        raise ConfigError("teacher labels (label_queries) need teacher_model", hint="pass --teacher MODEL")
    teacher = load_teacher(config.teacher_model, batch_size=config.encode_batch_size, api_key=api_key)
    queries = cut_queries(texts, config.label_queries, seed=config.seed)
    vectors = _check_pairs(queries, label_queries(teacher, queries, DistillFolder(output_dir).labels,
                                                  progress=progress))
    if vectors.shape[1] != projection.in_dim:
        raise DimensionError(f"the teacher labels {vectors.shape[1]}-d vectors, the stored ones are "
                             f"{projection.in_dim}-d", hint="--teacher must be the model the collection was indexed "
                             "with")
    return queries, projection.transform(vectors)


# ----------------------------------------------------------------------------------------------------------- training
@dataclass
class _Run:
    """What the training loop works with: parameters by part, the forward pass, and the holdout evaluation."""

    body_params: list[Any]
    head_params: list[Any]
    forward: Any
    evaluate: Callable[[Any], dict[str, float]]
    frozen: bool
    evaluator: FidelityEvaluator  # the same holdout evaluation of any encoder (the export checks its formats on it)


def _evaluator(config: DistillConfig, pairs: _Pairs, hold_targets: np.ndarray) -> FidelityEvaluator:
    """The holdout evaluation; one deterministic query-like cut per held-out text gives the query-side metrics."""
    hold_queries = [pseudo_query(t, random.Random(config.seed + i)) for i, t in enumerate(pairs.hold_texts)]
    return FidelityEvaluator(
        pairs.hold_texts, pairs.hold_vecs, projected_targets=hold_targets,
        batch_size=config.encode_batch_size, primary_metric=config.primary_metric, pseudo_queries=hold_queries,
    )


def _run(config: DistillConfig, student: _Student, pairs: _Pairs, space: _Space,
         body_cache: dict[str, np.ndarray] | None) -> _Run:
    """Freeze what does not learn and build the holdout evaluation (on cached body vectors for a frozen body)."""
    model = student.model
    evaluator = _evaluator(config, pairs, space.hold_targets)
    hold_queries = evaluator.pseudo_queries or []
    body_params, head_params = body_and_head(model)
    frozen = config.kind is not StudentKind.STATIC and (student.lr_body == 0 or config.trainable_layers == 0)
    if not frozen:
        if config.trainable_layers is not None and config.kind is not StudentKind.STATIC:
            body_params = freeze_lower_layers(model, config.trainable_layers)
        return _Run(body_params, head_params, None, _full_length_evaluate(config, model, evaluator), False, evaluator)
    # only the head learns: body vectors are computed once per text and reused by every epoch and evaluation
    for p in body_params:
        p.requires_grad_(False)
    forward = FrozenBodyForward(model, head_start(model), device=config.device,
                                batch_size=config.encode_batch_size, cache=body_cache)

    @torch.no_grad()
    def evaluate(_: Any) -> dict[str, float]:
        docs = forward(pairs.hold_texts).detach().cpu().numpy()
        return evaluator.evaluate_vectors(docs, forward(hold_queries).detach().cpu().numpy())

    return _Run([], head_params, forward, evaluate, True, evaluator)


def _full_length_evaluate(config: DistillConfig, model: Any, evaluator: FidelityEvaluator) -> Callable:
    """Holdout fidelity at the length the student will be used with (training may use shorter inputs)."""
    full_length = model.max_seq_length

    def as_is(m: Any) -> dict[str, float]:
        return evaluator(as_encoder(m, batch_size=config.encode_batch_size))

    if not config.train_max_seq_length or full_length == math.inf:
        return as_is
    model.max_seq_length = config.train_max_seq_length

    def evaluate(m: Any) -> dict[str, float]:
        m.max_seq_length = full_length
        try:
            return as_is(m)
        finally:
            m.max_seq_length = config.train_max_seq_length

    return evaluate


def _settings(config: DistillConfig, student: _Student, run: _Run, n_pairs: int) -> TrainSettings:
    # a frozen body evaluates on cached vectors, nearly free: four times an epoch, so a run that cannot gain stops
    # within the first epoch
    eval_steps = config.eval_steps
    if eval_steps is None and run.frozen:
        eval_steps = max(1, math.ceil(n_pairs / max(2, config.batch_size)) // 4)
    return TrainSettings.from_config(
        config, lr_body=student.lr_body, lr_head=student.lr_head, eval_steps=eval_steps,
        weight_decay=0.0 if config.kind is StudentKind.STATIC else config.weight_decay,
    )


# ---------------------------------------------------------------------------------------------------------- selection
def _select(config: DistillConfig, student: _Student, run: _Run, outcome: TrainOutcome) -> dict[str, Any]:
    """Keep the best of the trained state, the untrained start and the plain heads (frozen body only), by the
    primary holdout metric; the model is left in the chosen state. Returns what was compared and what won."""
    key = config.primary_metric
    # train() already kept the better of its best step and the untrained start (reported, not chosen again here)
    trained_name = "trained" if outcome.best_step > 0 else "untrained"
    candidates = {trained_name: outcome.metrics}
    dense = _dense(student.model) if run.frozen else None
    kept = None
    if dense is not None:
        bias = dense.linear.bias
        kept = (dense.linear.weight.detach().clone(), None if bias is None else bias.detach().clone())
        for name, weight in student.heads.items():
            _set_head(dense, weight)
            candidates[f"{name} head"] = run.evaluate(student.model)
    best = _best(candidates, trained_name, key)
    if outcome.best_step > 0:
        candidates["untrained"] = outcome.baseline_metrics
    if dense is not None and best.endswith(" head"):
        _set_head(dense, student.heads[best[: -len(" head")]])
    elif kept is not None:
        dense.linear.weight.data.copy_(kept[0])
        if kept[1] is not None:
            dense.linear.bias.data.copy_(kept[1])
    ranked = sorted((c[key] for n, c in candidates.items() if n != best and key in c), reverse=True)
    margin = candidates[best].get(key, math.nan) - (ranked[0] if ranked else math.nan)
    logger.info("kept the %s state: %s %.4f (%s)", best, key, candidates[best].get(key, math.nan),
                ", ".join(f"{n} {c.get(key, math.nan):.4f}" for n, c in candidates.items() if n != best))
    return {"primary_metric": key, "chosen": best, "margin": margin,
            "candidates": {n: dict(c) for n, c in candidates.items()}}


def _best(candidates: dict[str, dict[str, float]], incumbent: str, key: str) -> str:
    """The incumbent (what training kept), unless a plain head beats it on ``key`` without losing on the query side.

    A head fitted to document targets can raise document fidelity while it bends the geometry queries rely on (on
    SciFact the ridge head raised teacher-neighbour recall@10 from 0.608 to 0.643 but lowered nDCG@10 from 0.636 to
    0.566): with a document-side primary metric, a challenger must also keep ``pseudo_query/self_mrr@10`` (held-out
    pseudo-queries finding their own document among the student's vectors) within :data:`QUERY_SIDE_TOLERANCE`.
    """
    guard = QUERY_SIDE_GUARD if key.startswith("fidelity/") else None
    best = incumbent
    for name, metrics in candidates.items():
        wins = metrics.get(key, -math.inf) > candidates[best].get(key, -math.inf) + 1e-4
        keeps = guard is None or metrics.get(guard, -math.inf) >= candidates[incumbent].get(guard, math.inf) - (
            QUERY_SIDE_TOLERANCE)
        if name != incumbent and wins and keeps:
            best = name
    return best


def _dense(model: Any) -> Any | None:
    """The student's head ``Dense`` module (the one before ``Normalize``), if it has exactly one."""
    mods = [model[i] for i in range(head_start(model), len(model))]
    dense = [m for m in mods if hasattr(m, "linear")]
    return dense[0] if len(dense) == 1 else None


def _set_head(dense: Any, weight: np.ndarray) -> None:
    dense.linear.weight.data.copy_(torch.as_tensor(np.asarray(weight, dtype=np.float32)))
    if dense.linear.bias is not None:
        dense.linear.bias.data.zero_()


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
    teacher_api_key: str | SecretStr | None = None,
    use: Use = "symmetric",
) -> DistillResult:
    """Distil a student from ``texts`` and their stored ``teacher_vectors``; save it under ``output_dir``.

    ``use`` says what the student will encode (``symmetric``: documents and queries; ``queries``: queries only, the
    documents keeping the projection of their stored vectors): the measured recipe of the student's kind for that use
    (:mod:`qdrant_distill.distillation.recipes`) fills every field of ``config`` left unset.

    ``holdout`` gives the held-out pairs explicitly; otherwise ``config.holdout_fraction`` of the pairs is held out.
    ``body_cache`` (text -> the base model's vector) saves encoding again what was encoded before; it is used only
    when the body is frozen (``lr_body=0`` or ``trainable_layers=0``). ``teacher_api_key`` is the key of a teacher
    behind an embeddings API (teacher labels).
    """
    started = time.perf_counter()
    config = with_recipe(config, use)
    _seed(config.seed)
    output_dir = Path(output_dir)
    pairs = _pairs(texts, teacher_vectors, config, holdout)
    # the teacher space, the targets in it (teacher labels included) and the untrained student
    space = _teacher_space(config, pairs, output_dir, progress, teacher_api_key)
    student = _build_student(config, space.texts, space.targets, space.projection, body_cache)
    # train with the holdout as the early-stopping signal, then keep the best of trained, untrained and plain heads
    run = _run(config, student, pairs, space, body_cache)
    full_length = student.model.max_seq_length
    outcome = train(student.model, space.texts, space.targets, _settings(config, student, run, len(space.texts)),
                    body_params=run.body_params, head_params=run.head_params, evaluate=run.evaluate,
                    progress=progress, forward=run.forward)
    if full_length != math.inf:
        student.model.max_seq_length = full_length
    selection = _select(config, student, run, outcome)
    result = _save(config, student.model, space, pairs, outcome, selection, output_dir, teacher_id, started)
    if ExportChoice(config.export) is not ExportChoice.NONE:
        _export(config, student.model, run, pairs, result, output_dir)
    return result


def _export(config: DistillConfig, model: Any, run: _Run, pairs: _Pairs, result: DistillResult,
            output_dir: Path) -> None:
    """Export the saved student (:mod:`qdrant_distill.inference.export`), int8 checked on the holdout; record the outcome."""
    export_model(model, DistillFolder(output_dir).export.root, formats=formats_for(config.export),
                 check_texts=pairs.hold_texts[:256], evaluate=run.evaluator, source=result.student_path)
    _record_export(result, output_dir)


def _record_export(result: DistillResult, output_dir: Path) -> None:
    result.export_path = str(DistillFolder(output_dir).export.root)  # its checks and choice: export.json
    _write_result(result, output_dir)


def export_student(output_dir: str | Path, *, formats: Sequence[Backend | str] = GRAPHS,
                   sample: tuple[Sequence[str], np.ndarray] | None = None) -> DistillResult:
    """Export the student of a :func:`distill` output folder again (``qdrant-distill export``). With the ``sample``
    it was distilled from, int8 is checked on the same holdout; without it, on the built-in check texts."""
    output_dir = Path(output_dir).resolve()
    try:
        result = _read_result(output_dir)
    except (OSError, ValueError) as exc:
        raise StudentError(f"{output_dir} holds no readable {DistillFolder.RESULT}: {exc}") from exc
    config = DistillConfig.model_validate(result.config)
    evaluator = None
    if sample is not None:
        pairs = _pairs(sample[0], sample[1], config, None)
        evaluator = _evaluator(config, pairs, PCAProjection.load(result.projection_path).transform(pairs.hold_vecs))
    export_model(result.student_path, DistillFolder(output_dir).export.root, formats=formats,
                 check_texts=evaluator.texts[:256] if evaluator else None, evaluate=evaluator,
                 source=result.student_path)
    _record_export(result, output_dir)
    return result


_RESULT_PATHS = ("student_path", "projection_path", "export_path")


def _read_result(output_dir: Path) -> DistillResult:
    """``distill.json`` of ``output_dir``, its paths read as this folder's own files (a copied folder exports its own
    student; an older absolute path under another folder gives way to this folder's copy of the file)."""
    folder = DistillFolder(output_dir)
    data = json.loads(folder.result.read_text(encoding="utf-8"))
    student = Path(data.get("student_path") or "")
    written_in = student.parent if student.is_absolute() and student.name == DistillFolder.STUDENT else None
    for key in _RESULT_PATHS:
        data[key] = recorded_path(output_dir, data.get(key), written_in=written_in)
    return DistillResult.model_validate(data)


def _write_result(result: DistillResult, output_dir: Path) -> None:
    data = result.model_dump(mode="json")
    for key in _RESULT_PATHS:  # every one a file of this folder: recorded relative to it
        data[key] = stored_path(output_dir, Path(data[key]).resolve()) if data[key] else None
    text = json.dumps(data, indent=2)
    for where in DistillFolder(output_dir).result_copies:
        where.write_text(text, encoding="utf-8")


def _recorded(config: DistillConfig) -> dict[str, Any]:
    """The config as ``distill.json`` keeps it: a teacher behind an endpoint by the part of its reference that can
    hold no secret (its path, userinfo and options stay in this process)."""
    recorded = config.model_dump(mode="json")
    if recorded.get("teacher_model"):
        recorded["teacher_model"] = stored_reference(recorded["teacher_model"])
    return recorded


def _save(config: DistillConfig, model: Any, space: _Space, pairs: _Pairs, outcome: TrainOutcome,
          selection: dict[str, Any], output_dir: Path, teacher_id: str, started: float) -> DistillResult:
    """Save the student, the projection and ``distill.json`` describing both."""
    output_dir.mkdir(parents=True, exist_ok=True)
    student_path = DistillFolder(output_dir).student
    try:
        with quiet_loading():
            model.save(str(student_path))
    except Exception as exc:
        raise StudentError(f"cannot save the student to {student_path}: {exc}") from exc
    projection = space.projection
    result = DistillResult(
        student_path=str(student_path), projection_path=str(projection.save(DistillFolder(output_dir).projection)),
        kind=config.kind, base_model=config.teacher_model if config.kind is StudentKind.PRUNED else config.base_model,
        dim=projection.dim, teacher_dim=projection.in_dim, teacher_id=teacher_id, center=config.center,
        explained_variance=projection.explained_variance_ratio, train_size=len(space.texts),
        label_pairs=space.label_pairs, holdout_size=len(pairs.hold_texts),
        metrics=selection["candidates"][selection["chosen"]], baseline_metrics=outcome.baseline_metrics,
        projection_metrics=fidelity(space.hold_targets, pairs.hold_vecs, projected_targets=space.hold_targets),
        selection=selection, wall_time_s=time.perf_counter() - started, steps=outcome.steps,
        best_step=outcome.best_step, epochs_run=outcome.epochs_run, stopped_early=outcome.stopped_early,
        out_of_time=outcome.out_of_time, recipe=config.recipe,
        losses=outcome.history, evaluations=outcome.evaluations, config=_recorded(config),
        primary_metric=config.primary_metric,
    )
    _write_result(result, output_dir)
    key = config.primary_metric
    logger.info("distilled a %s student (%d -> %d dims) in %.0f s: kept %s, %s %.4f (untrained %.4f, projection "
                "%.4f)", config.kind.value, projection.in_dim, projection.dim, result.wall_time_s,
                selection["chosen"], key, result.metrics.get(key, math.nan), result.baseline_metrics.get(key, math.nan),
                result.projection_metrics.get(key, math.nan))
    return result
