"""The training loop: batches of (text, projected target) pairs, AdamW, warm-up and decay, early stopping.

A loss step calls the model and hands the vectors to the pure functions of :mod:`qdrant_distill.distillation.losses`. Holdout
fidelity is measured before the first step (the untrained baseline), every ``eval_steps`` and at the end; the best
state is kept and restored.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from qdrant_distill.distillation.config import DistillConfig
from qdrant_distill.distillation.losses import (
    cosine_loss,
    info_nce,
    info_nce_bank,
    matryoshka,
    mse_loss,
    similarity_kl,
    weighted_sum,
)
from qdrant_distill.distillation.pseudo_queries import pseudo_query
from qdrant_distill.errors import StudentError

__all__ = ["FrozenBodyForward", "TrainOutcome", "TrainSettings", "train"]

logger = logging.getLogger(__name__)



_DEFAULTS = DistillConfig()


@dataclass
class TrainSettings:
    """What the loop needs, as plain values. The defaults are :class:`~qdrant_distill.migration.config.DistillConfig`'s (declared
    there once); :meth:`from_config` takes a config's values and the ones a student's recipe derives from them."""

    epochs: int = _DEFAULTS.epochs
    max_steps: int | None = _DEFAULTS.max_steps
    batch_size: int = _DEFAULTS.batch_size
    lr_body: float = _DEFAULTS.lr_body
    lr_head: float = _DEFAULTS.lr_head
    weight_decay: float = _DEFAULTS.weight_decay
    warmup_ratio: float = _DEFAULTS.warmup_ratio
    weights: dict[str, float] = field(default_factory=lambda: _DEFAULTS.weights.model_dump())
    temperature: float = _DEFAULTS.temperature
    matryoshka_dims: Sequence[int] | None = _DEFAULTS.matryoshka_dims
    pseudo_queries: bool = _DEFAULTS.pseudo_queries
    pseudo_query_negatives: str = _DEFAULTS.pseudo_query_negatives
    eval_steps: int | None = _DEFAULTS.eval_steps
    early_stopping_patience: int | None = _DEFAULTS.early_stopping_patience
    primary_metric: str = _DEFAULTS.primary_metric
    time_budget_s: float | None = _DEFAULTS.time_budget_s
    grad_clip: float = 1.0
    seed: int = _DEFAULTS.seed
    device: str = _DEFAULTS.device

    @classmethod
    def from_config(cls, config: DistillConfig, **derived: Any) -> TrainSettings:
        """``config``'s values of every field here, ``derived`` (learning rates, weight decay, evaluation steps a
        student's recipe sets) replacing them."""
        names = {f.name for f in fields(cls)} - {"grad_clip"}
        values = {name: getattr(config, name) for name in names}
        values["weights"] = config.weights.model_dump()
        return cls(**{**values, **derived})


@dataclass
class TrainOutcome:
    steps: int
    epochs_run: float
    best_step: int
    baseline_metrics: dict[str, float]
    metrics: dict[str, float]
    history: list[dict[str, float]]
    evaluations: list[dict[str, float]]
    stopped_early: bool
    out_of_time: bool = False  # the time budget ended training before its last step


def _forward(model: Any, texts: list[str], device: str) -> torch.Tensor:
    prep = getattr(model, "preprocess", None) or model.tokenize
    features = prep(texts)
    features = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in features.items()}
    return model(features)["sentence_embedding"]


class FrozenBodyForward:
    """The student's forward pass when its body does not learn: body vectors are computed once per distinct text
    (no gradient, eval mode) and remembered, so every later epoch costs only the head.

    ``model`` is the whole student; its first ``n_body`` modules are the body, the rest (``Dense``, ``Normalize``)
    the head. ``cache`` may be pre-seeded with body vectors of texts (text -> vector).
    """

    def __init__(
        self, model: Any, n_body: int, *, device: str = "cpu", batch_size: int = 64,
        cache: dict[str, np.ndarray] | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        mods = [model[i] for i in range(len(model))]
        self.body = SentenceTransformer(modules=mods[:n_body], device=device)
        self.head = mods[n_body:]
        self.device = device
        self.batch_size = batch_size
        self.cache: dict[str, np.ndarray] = dict(cache or {})

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            was_training = self.body.training
            self.body.eval()
            vecs = self.body.encode(missing, batch_size=self.batch_size, convert_to_numpy=True,
                                    show_progress_bar=False)
            self.body.train(was_training)
            self.cache.update(zip(missing, np.asarray(vecs, dtype=np.float32)))
        features = {"sentence_embedding": torch.from_numpy(np.stack([self.cache[t] for t in texts])).to(self.device)}
        for module in self.head:
            features = module(features)
        return features["sentence_embedding"]


def _loss_terms(
    student: torch.Tensor, target: torch.Tensor, settings: TrainSettings, names: Sequence[str]
) -> dict[str, torch.Tensor]:
    tau = settings.temperature
    fns: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "mse": mse_loss,
        "cosine": cosine_loss,
        "contrastive": lambda s, t: info_nce(s, t, temperature=tau),
        "kl": lambda s, t: similarity_kl(s, t, temperature=tau),
        "pseudo_query": lambda s, t: info_nce(s, t, temperature=tau, symmetric=False),
    }
    out = {}
    for name in names:
        fn = fns[name]
        if settings.matryoshka_dims:
            out[name] = matryoshka(fn, student, target, settings.matryoshka_dims)
        else:
            out[name] = fn(student, target)
    return out


@dataclass
class _Plan:
    """The steps training plans to take: the epochs' (or ``max_steps``), fewer when the time budget cannot fit them.
    The learning rate warms up, then decays to zero at the planned end, so a budget ends on a cooled-down state."""

    total: int
    warmup: int
    deadline: float = math.inf  # time.monotonic() at which the budget ends
    started: float = field(default_factory=time.monotonic)

    def factor(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))

    def fit_budget(self, step: int) -> None:
        """After ``step`` steps, plan no more than the budget's remaining time fits at the pace so far."""
        if self.deadline == math.inf or step <= 0:
            return
        pace = (time.monotonic() - self.started) / step
        fits = step + int(max(0.0, self.deadline - time.monotonic()) / pace)
        if fits < self.total:
            logger.info("the time budget fits %d of %d planned steps (%.2f s a step): the learning rate decays over "
                        "those", fits, self.total, pace)
            self.total = max(fits, step)


@dataclass
class _Tracker:
    """Holdout evaluations during training: the best state so far, and when to stop early."""

    model: Any
    evaluate: Callable[[Any], dict[str, float]]
    settings: TrainSettings
    checkpoint_dir: Path | None = None
    evaluations: list[dict[str, float]] = field(default_factory=list)
    best_value: float = -math.inf
    best_step: int = 0
    best_state: Any = None
    bad: int = 0

    def start(self) -> dict[str, float]:
        """Evaluate the untrained model: the baseline, and the first best state."""
        baseline = self.evaluate(self.model)
        self.best_value = baseline.get(self.settings.primary_metric, -math.inf)
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.evaluations.append({"step": 0, **baseline})
        return baseline

    def observe(self, step: int) -> bool:
        """Evaluate at ``step``; keep the state when it is the best so far. True when training should stop."""
        self.model.eval()
        scores = self.evaluate(self.model)
        self.model.train()
        self.evaluations.append({"step": step, **scores})
        value = scores.get(self.settings.primary_metric, -math.inf)
        logger.info("step %d: %s = %.4f (best %.4f)", step, self.settings.primary_metric, value, self.best_value)
        if value > self.best_value + 1e-4:
            self.bad, self.best_value, self.best_step = 0, value, step
            self.best_state = copy.deepcopy(self.model.state_dict())
            if self.checkpoint_dir is not None:
                self.model.save(str(self.checkpoint_dir))
        else:
            self.bad += 1
        patience = self.settings.early_stopping_patience
        if patience and self.bad >= patience:
            logger.info("early stop at step %d: no gain for %d evaluations", step, self.bad)
            return True
        return False

    def restore(self, step: int) -> dict[str, float]:
        """Put the best state back; its metrics."""
        self.model.eval()
        if self.best_step != step:
            self.model.load_state_dict(self.best_state)
        final = next((e for e in self.evaluations if e["step"] == self.best_step), self.evaluations[0])
        return {k: v for k, v in final.items() if k != "step"}


def _optimizer(
    settings: TrainSettings, body_params: list[torch.nn.Parameter], head_params: list[torch.nn.Parameter], plan: _Plan
) -> tuple[list[dict[str, Any]], torch.optim.Optimizer, Any]:
    """AdamW with body and head at their own rates (a zero rate freezes that part and saves its backward pass)."""
    groups = []
    # (parameters in neither list, e.g. frozen lower layers, keep their requires_grad as the caller set it)
    for params, lr in ((body_params, settings.lr_body), (head_params, settings.lr_head)):
        for p in params:
            p.requires_grad_(lr > 0)
        if params and lr > 0:
            groups.append({"params": params, "lr": lr})
    if not groups:
        raise StudentError("both learning rates are zero: nothing to train")
    optimizer = torch.optim.AdamW(groups, weight_decay=settings.weight_decay)
    return groups, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, plan.factor)


def _batch_loss(
    embed: Callable[[list[str]], torch.Tensor], texts: list[str], idx: list[int], targets: torch.Tensor,
    settings: TrainSettings, doc_terms: list[str], use_pq: bool, rng: random.Random,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The student's vectors of the documents, and of query-like cuts of them, against the documents' targets (and,
    with ``query_document``, against the student's own vectors of the documents)."""
    tgt = targets[idx]  # targets live on the training device
    weights = settings.weights
    student_docs = embed(texts) if doc_terms or weights.get("query_document", 0.0) else None
    terms = _loss_terms(student_docs, tgt, settings, doc_terms) if doc_terms else {}
    if use_pq:
        queries = embed([pseudo_query(t, rng) for t in texts])
        if weights.get("query_document", 0.0):
            terms["query_document"] = info_nce(queries, student_docs, temperature=settings.temperature,
                                               symmetric=False)
        if weights.get("pseudo_query", 0.0) and settings.pseudo_query_negatives == "sample":
            # every training target is a negative: they are fixed, so this costs one matrix product
            terms["pseudo_query"] = info_nce_bank(
                queries, targets, torch.as_tensor(idx, device=settings.device),
                temperature=settings.temperature, dims=settings.matryoshka_dims,
            )
        elif weights.get("pseudo_query", 0.0):
            terms |= _loss_terms(queries, tgt, settings, ["pseudo_query"])
    return weighted_sum(terms, settings.weights)


def _total_steps(settings: TrainSettings, steps_per_epoch: int) -> int:
    total = settings.epochs * steps_per_epoch
    if settings.max_steps is not None:
        total = min(total, settings.max_steps) if settings.epochs > 0 else settings.max_steps
    return total


def _weighted_terms(settings: TrainSettings) -> tuple[list[str], bool]:
    """The document terms with a weight, and whether pseudo-queries are cut; refuses a loss that is all zero."""
    doc_terms = [k for k in ("mse", "cosine", "contrastive", "kl") if settings.weights.get(k, 0.0)]
    use_pq = settings.pseudo_queries and (settings.weights.get("pseudo_query", 0.0) > 0
                                          or settings.weights.get("query_document", 0.0) > 0)
    if not doc_terms and not use_pq:
        raise StudentError("every loss weight is zero: nothing to train")
    return doc_terms, use_pq


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler: Any, groups: list[dict[str, Any]],
          grad_clip: float) -> None:
    """One optimiser step on ``loss``, gradients clipped, the learning rate moved on."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], grad_clip)
    optimizer.step()
    scheduler.step()


def train(
    model: Any,
    texts: Sequence[str],
    targets: np.ndarray,
    settings: TrainSettings,
    *,
    body_params: list[torch.nn.Parameter],
    head_params: list[torch.nn.Parameter],
    evaluate: Callable[[Any], dict[str, float]],
    progress: bool = True,
    checkpoint_dir: Path | None = None,
    forward: Callable[[list[str]], torch.Tensor] | None = None,
) -> TrainOutcome:
    """Train ``model`` in place on ``(texts[i], targets[i])`` pairs and restore its best evaluated state.

    ``forward`` maps texts to the student's vectors (default: the model's own forward pass; a
    :class:`FrozenBodyForward` when only the head learns).
    """
    embed = forward or (lambda batch_texts: _forward(model, batch_texts, settings.device))
    if len(texts) != len(targets):
        raise StudentError(f"{len(texts)} texts but {len(targets)} targets")
    n = len(texts)
    batch = max(2, min(settings.batch_size, n))
    steps_per_epoch = math.ceil(n / batch)
    total = _total_steps(settings, steps_per_epoch)
    eval_every = settings.eval_steps or steps_per_epoch
    doc_terms, use_pq = _weighted_terms(settings)
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    target_t = torch.as_tensor(np.asarray(targets, dtype=np.float32)).to(settings.device)
    plan = _Plan(total=total, warmup=round(total * settings.warmup_ratio))
    groups, optimizer, scheduler = _optimizer(settings, body_params, head_params, plan)
    tracker = _Tracker(model, evaluate, settings, checkpoint_dir)
    baseline = tracker.start()
    if settings.time_budget_s:
        plan.started, plan.deadline = time.monotonic(), time.monotonic() + settings.time_budget_s
    probe = max(1, min(20, total // 20))  # steps before the pace is first measured
    history: list[dict[str, float]] = []
    step, stopped, out_of_time = 0, False, False
    bar = tqdm(total=total, desc="distilling", file=sys.stderr, disable=not progress, leave=False)
    model.train()
    while step < plan.total and not stopped:
        order = list(range(n))
        rng.shuffle(order)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            if len(idx) < 2 or step >= plan.total:
                continue
            loss, parts = _batch_loss(embed, [texts[i] for i in idx], idx, target_t, settings, doc_terms, use_pq, rng)
            _step(loss, optimizer, scheduler, groups, settings.grad_clip)
            step += 1
            history.append({"step": step, "loss": float(loss.detach()), **parts})
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", fid=f"{tracker.best_value:.3f}")
            if step == probe or step % eval_every == 0:
                plan.fit_budget(step)
                bar.total = plan.total
            out_of_time = time.monotonic() >= plan.deadline and step < plan.total
            if (step % eval_every == 0 or step == plan.total or out_of_time) and tracker.observe(step):
                stopped = True
            if stopped or out_of_time:
                break
        stopped = stopped or out_of_time
    bar.close()
    out_of_time = out_of_time or plan.total < total
    if out_of_time:
        logger.info("the time budget (%.0f s) ended training at step %d of %d planned; the best state so far is kept",
                    settings.time_budget_s, step, total)
    metrics = tracker.restore(step)
    return TrainOutcome(steps=step, epochs_run=step / steps_per_epoch, best_step=tracker.best_step,
                        baseline_metrics=baseline, metrics=metrics, history=history,
                        evaluations=tracker.evaluations, stopped_early=stopped, out_of_time=out_of_time)
