"""A transformer student whose whole body is trained onto a teacher's (projected) vectors: the LEAF recipe.

LEAF (arXiv 2509.12539) aligns a small encoder to a teacher with a plain distance onto the teacher's vectors of many
texts, mean pooling and a linear layer up to the target space, the whole body trained; no relevance labels, no
negatives. Here the targets are unit vectors in the collection's target space (e.g. the centred PCA-128 of the stored
document vectors, and the same projection of teacher labels of query-like cuts), and the student is

    Transformer (the base body) -> mean Pooling -> Dense(hidden -> dim, identity) -> Normalize

so it saves and loads as a plain sentence-transformers model. :func:`ridge_head` starts the Dense layer at the least
squares map from the base body's mean-pooled vectors to the targets (the frozen-body optimum), then
:func:`train_body_student` trains body and head with the cosine distance (sentence-transformers' ``EmbedDistillLoss``)
and AdamW (body and head at their own learning rates, warm-up then linear decay to zero at the end of the planned
epochs or of the time budget, whichever comes first).

Why an own loop and not ``SentenceTransformerTrainer``: every text keeps its own token limit (short cuts, long
documents truncated) in one run; batches are grouped by length, which on a CPU is most of the cost; the head learns
faster than the body; a wall-clock budget ends training cleanly; a checkpoint every few minutes resumes mid-epoch;
and the kept state is the epoch the holdout scores best. The loss itself is the library's ``EmbedDistillLoss``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer, models
from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss

Progress = Callable[[dict[str, Any]], None]
OnEpoch = Callable[[SentenceTransformer, float], dict[str, Any]]


@dataclass
class Holdout:
    """Texts kept out of training with their targets, and the vectors they are searched against (the target
    vectors of the collection's documents): the student is scored by teacher-neighbour recall@10 and cosine."""

    texts: list[str]
    targets: np.ndarray
    corpus: np.ndarray
    max_lengths: list[int]


@dataclass
class Recipe:
    """The hyperparameters of one run (what a row of a benchmark names)."""

    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5  # the body's peak learning rate
    head_lr: float = 1e-3  # the Dense head's peak learning rate
    warmup: float = 0.05  # share of the planned steps (or of the time budget left after the ridge start)
    weight_decay: float = 0.01
    ridge_alpha: float = 1.0
    ridge_sample: int = 4000  # texts the ridge head start is fitted on
    evals_per_epoch: int = 1  # holdout (and on_epoch) evaluations per epoch
    eval_every_s: float | None = None  # and one every so many seconds of training
    seed: int = 0
    checkpoint_every_s: float = 600.0
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------- the model
def build_student(base_model: str | Path, dim: int, *, max_seq_length: int | None = None) -> SentenceTransformer:
    """The base model's Transformer and mean Pooling, a ``Dense(hidden -> dim)`` (identity) and ``Normalize``; the
    token limit of ``encode`` stays the base model's unless ``max_seq_length`` is given."""
    base = SentenceTransformer(str(base_model), device="cpu")
    body, pooling = base[0], models.Pooling(base[0].get_embedding_dimension(), pooling_mode="mean")
    if max_seq_length:
        body.max_seq_length = max_seq_length
    dense = models.Dense(pooling.get_embedding_dimension(), dim, activation_function=torch.nn.Identity())
    return SentenceTransformer(modules=[body, pooling, dense, models.Normalize()], device="cpu")


def head(student: SentenceTransformer) -> models.Dense:
    return next(m for m in student if isinstance(m, models.Dense))


def tokenize(student: SentenceTransformer, texts: Sequence[str], max_lengths: Sequence[int]) -> list[list[int]]:
    """Token ids of every text, each truncated to its own limit."""
    ids: list[list[int]] = [[] for _ in texts]
    for limit in sorted(set(max_lengths)):
        pick = [i for i, m in enumerate(max_lengths) if m == limit]
        enc = student.tokenizer([texts[i] for i in pick], truncation=True, max_length=limit)["input_ids"]
        for i, row in zip(pick, enc):
            ids[i] = row
    return ids


def collate(student: SentenceTransformer, rows: Sequence[list[int]]) -> dict[str, torch.Tensor]:
    return dict(student.tokenizer.pad({"input_ids": list(rows)}, return_tensors="pt"))


def length_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of texts of similar length (sorted within chunks of 50 batches, then the batches shuffled)."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort([lengths[i] for i in part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


@torch.no_grad()
def encode_ids(student: SentenceTransformer, ids: Sequence[list[int]], *, output: str = "sentence_embedding",
               batch_size: int = 64) -> np.ndarray:
    """Embed pre-tokenised texts (``output="pooled"``: the mean-pooled body vector, before the head)."""
    student.eval()
    order = np.argsort([len(r) for r in ids])
    out: list[np.ndarray] = [np.empty(0)] * len(ids)
    n_body = 2 if output == "pooled" else len(student)
    for start in range(0, len(order), batch_size):
        pick = order[start:start + batch_size]
        features = collate(student, [ids[i] for i in pick])
        for module in list(student)[:n_body]:
            features = module(features)
        vecs = features["sentence_embedding"].float().numpy()
        for i, v in zip(pick, vecs):
            out[i] = v
    return np.stack(out)


def encode(student: SentenceTransformer, texts: Sequence[str], max_lengths: Sequence[int] | int, **kw: Any
           ) -> np.ndarray:
    limits = [max_lengths] * len(texts) if isinstance(max_lengths, int) else list(max_lengths)
    return encode_ids(student, tokenize(student, texts, limits), **kw)


# ---------------------------------------------------------------------------------------------- ridge head start
def ridge_head(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``W, b`` minimising ``|x W^T + b - y|^2 + alpha |W|^2`` (x centred, so the bias is not shrunk)."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    mx, my = x64.mean(0), y64.mean(0)
    xc = x64 - mx
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y64 - my))  # (hidden, dim)
    return w.T.astype(np.float32), (my - mx @ w).astype(np.float32)


def init_head(student: SentenceTransformer, ids: Sequence[list[int]], targets: np.ndarray, *, alpha: float = 1.0
              ) -> None:
    """Set the Dense head to the ridge map from the body's mean-pooled vectors of ``ids`` to ``targets``."""
    w, b = ridge_head(encode_ids(student, ids, output="pooled"), targets, alpha)
    dense = head(student).linear
    with torch.no_grad():
        dense.weight.copy_(torch.from_numpy(w))
        dense.bias.copy_(torch.from_numpy(b))


# ------------------------------------------------------------------------------------------------------ holdout
def holdout_scores(student: SentenceTransformer, holdout: Holdout, k: int = 10) -> dict[str, float]:
    """Teacher-neighbour recall@k (the student's top-k among ``corpus`` against the target's) and mean cosine."""
    vecs = encode(student, holdout.texts, holdout.max_lengths)
    corpus = holdout.corpus / np.linalg.norm(holdout.corpus, axis=1, keepdims=True)
    got = np.argsort(-(vecs @ corpus.T), axis=1)[:, :k]
    want = np.argsort(-(holdout.targets @ corpus.T), axis=1)[:, :k]
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(got, want)])
    return {"recall@10": float(recall), "cosine": float(np.mean(np.sum(vecs * holdout.targets, axis=1)))}


# ----------------------------------------------------------------------------------------------------- training
def _optimizer(student: SentenceTransformer, recipe: Recipe) -> torch.optim.Optimizer:
    """AdamW with the body and the head as two groups at their own peak learning rates (``peak_lr``)."""
    head_params = {id(p) for p in head(student).parameters()}
    body = [p for p in student.parameters() if id(p) not in head_params]
    return torch.optim.AdamW([{"params": body, "peak_lr": recipe.lr, "lr": recipe.lr},
                              {"params": list(head(student).parameters()), "peak_lr": recipe.head_lr,
                               "lr": recipe.head_lr}], weight_decay=recipe.weight_decay)


def lr_factor(step: int, total_steps: int, warmup: float, time_fraction: float = 0.0) -> float:
    """Linear warm-up over the first ``warmup`` share, then linear decay to zero at the end: the share of the planned
    steps or of the time budget (``time_fraction``: the share of it spent), whichever is further along."""
    done = max(step / max(1, total_steps), time_fraction)
    if done < warmup:
        return max(done / warmup, 1.0 / max(1, total_steps))
    return max(0.0, 1.0 - (done - warmup) / (1.0 - warmup))


def _set_lr(opt: torch.optim.Optimizer, factor: float) -> None:
    for group in opt.param_groups:
        group["lr"] = group["peak_lr"] * factor


def _save_state(path: Path, student: SentenceTransformer, opt: Any, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": student.state_dict(), "opt": opt.state_dict(), **state}, tmp)
    tmp.replace(path)


def train_body_student(
    base_model: str | Path,
    texts: list[str],
    targets: np.ndarray,
    *,
    max_seq_length: int | Sequence[int] = 64,
    recipe: Recipe | None = None,
    holdout: Holdout | None = None,
    checkpoint_dir: str | Path | None = None,
    time_budget_s: float | None = None,
    progress: Progress | None = None,
    on_epoch: OnEpoch | None = None,
) -> tuple[SentenceTransformer, list[dict[str, Any]]]:
    """Train a body student onto unit ``targets`` of ``texts``; returns the kept student and the per-epoch history.

    ``max_seq_length``: one token limit for all training texts or one per text (the saved student encodes with the
    base model's limit). Epoch 0 is the ridge start (body untrained).
    With ``holdout`` the kept state is the epoch of best teacher-neighbour recall@10 (cosine breaks ties), else the
    last. With ``checkpoint_dir`` a run resumes where a killed one stopped and every epoch is saved as a model
    folder (``epoch-N``). ``time_budget_s`` bounds the training time (the epoch in progress is evaluated and kept
    as a partial epoch). ``on_epoch(student, epoch)`` adds what the caller measures (reporting only).
    """
    recipe = recipe or Recipe()
    torch.manual_seed(recipe.seed)
    targets = np.asarray(targets, dtype=np.float32)
    limits = [max_seq_length] * len(texts) if isinstance(max_seq_length, int) else list(max_seq_length)
    student = build_student(base_model, targets.shape[1])
    ids = tokenize(student, texts, limits)
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    state_path = folder / "state.pt" if folder else None
    steps_per_epoch = math.ceil(len(texts) / recipe.batch_size)
    opt = _optimizer(student, recipe)
    total_steps = steps_per_epoch * recipe.epochs
    loss_fn = EmbedDistillLoss(student, distance_metric="cosine")
    history: list[dict[str, Any]] = []
    epoch, done_batches, elapsed = 1, 0, 0.0
    if state_path and state_path.exists():
        saved = torch.load(state_path, weights_only=False)
        student.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        epoch, done_batches, elapsed, history = saved["epoch"], saved["batch"], saved["elapsed"], saved["history"]
        train_start = saved.get("train_start", elapsed)
    else:
        clock = time.perf_counter()
        sample = np.random.default_rng(recipe.seed).permutation(len(ids))[:recipe.ridge_sample]
        init_head(student, [ids[i] for i in sample], targets[sample], alpha=recipe.ridge_alpha)
        history.append(_evaluate(student, 0, time.perf_counter() - clock, float("nan"), holdout, on_epoch, folder))
        elapsed = time.perf_counter() - clock - history[-1]["measure_s"]
        train_start = elapsed
        _write_history(folder, history)
    best_state = copy.deepcopy(student.state_dict())
    began, last_save = time.perf_counter() - elapsed, time.perf_counter()
    last_eval = elapsed  # training seconds at the last evaluation
    out_of_time = False
    while epoch <= recipe.epochs and not out_of_time:
        batches = length_batches([len(r) for r in ids], recipe.batch_size, np.random.default_rng(recipe.seed + epoch))
        marks = {round(len(batches) * k / recipe.evals_per_epoch) for k in range(1, recipe.evals_per_epoch)}
        student.train()
        losses: list[float] = []
        for b, pick in enumerate(batches):
            if b < done_batches:
                continue
            step = (epoch - 1) * steps_per_epoch + b
            spent = ((time.perf_counter() - began - train_start) / max(1.0, time_budget_s - train_start)
                     if time_budget_s else 0.0)
            _set_lr(opt, lr_factor(step, total_steps, recipe.warmup, spent))
            features = collate(student, [ids[i] for i in pick])
            loss = loss_fn([features], torch.from_numpy(targets[pick]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            now = time.perf_counter()
            done_batches = b + 1
            if progress and (b % 20 == 0 or b + 1 == len(batches)):
                eta = (now - began) / (step + 1) * (total_steps - step - 1)
                if time_budget_s:
                    eta = min(eta, max(0.0, time_budget_s - (now - began)))
                progress({"epoch": epoch, "batch": done_batches, "batches": len(batches), "loss": float(np.mean(
                    losses[-20:])), "lr": opt.param_groups[0]["lr"], "elapsed_s": now - began, "eta_s": eta})
            if time_budget_s is not None and now - began > time_budget_s:
                out_of_time = True
                break
            timed = recipe.eval_every_s is not None and now - began - last_eval > recipe.eval_every_s
            if (done_batches in marks or timed) and done_batches < len(batches):
                history.append(_evaluate(student, epoch - 1 + done_batches / len(batches), now - began,
                                         float(np.mean(losses)), holdout, on_epoch, folder))
                began += history[-1]["measure_s"]  # the caller's measurements are not training time
                last_eval = history[-1]["train_s"]
                best_state = _track(history, student, best_state, folder)
            if state_path and now - last_save > recipe.checkpoint_every_s:
                _save_state(state_path, student, opt, {"epoch": epoch, "batch": done_batches,
                                                              "elapsed": now - began, "history": history,
                                                   "train_start": train_start})
                last_save = now
        fraction = done_batches / len(batches)
        mark = epoch - 1 + fraction
        history.append(_evaluate(student, mark, time.perf_counter() - began, float(np.mean(losses or [np.nan])),
                                 holdout, on_epoch, folder))
        began += history[-1]["measure_s"]
        best_state = _track(history, student, best_state, folder)
        epoch, done_batches = (epoch + 1, 0) if fraction == 1 else (epoch, done_batches)
        if state_path:
            _save_state(state_path, student, opt, {"epoch": epoch, "batch": done_batches,
                                                          "elapsed": time.perf_counter() - began, "history": history,
                                                   "train_start": train_start})
            last_save = time.perf_counter()
    return _keep_best(student, history, folder, best_state), history


def _evaluate(student: SentenceTransformer, epoch: float, elapsed: float, loss: float, holdout: Holdout | None,
              on_epoch: OnEpoch | None, folder: Path | None) -> dict[str, Any]:
    row: dict[str, Any] = {"epoch": round(epoch, 3), "train_s": round(elapsed, 1), "loss": loss}
    if holdout is not None:
        row["holdout"] = holdout_scores(student, holdout)
    if folder is not None:
        student.save(str(folder / f"epoch-{row['epoch']:g}"))
    clock = time.perf_counter()
    if on_epoch is not None:
        row.update(on_epoch(student, row["epoch"]))
    row["measure_s"] = round(time.perf_counter() - clock, 1)
    student.train()
    return row


def _track(history: list[dict[str, Any]], student: SentenceTransformer, best: dict[str, Any], folder: Path | None
           ) -> dict[str, Any]:
    """Write the history; the student's state when its last evaluation is the best so far, else ``best``."""
    _write_history(folder, history)
    return copy.deepcopy(student.state_dict()) if kept_epoch(history) == history[-1]["epoch"] else best


def _write_history(folder: Path | None, history: list[dict[str, Any]]) -> None:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "history.json").write_text(json.dumps(_jsonable(history), indent=1))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def kept_epoch(history: list[dict[str, Any]]) -> float:
    """The epoch the holdout scores best (recall@10, then cosine); the last one without a holdout."""
    scored = [h for h in history if "holdout" in h]
    if not scored:
        return history[-1]["epoch"]
    return max(scored, key=lambda h: (h["holdout"]["recall@10"], h["holdout"]["cosine"], -h["epoch"]))["epoch"]


def _keep_best(student: SentenceTransformer, history: list[dict[str, Any]], folder: Path | None,
               best_state: dict[str, Any]) -> SentenceTransformer:
    """The student at the kept epoch: the last state, an earlier one from memory, or (after a resume) its folder."""
    best = kept_epoch(history)
    if best == history[-1]["epoch"]:
        return student
    if folder is not None and (folder / f"epoch-{best:g}").exists():
        return SentenceTransformer(str(folder / f"epoch-{best:g}"), device="cpu")
    student.load_state_dict(best_state)
    return student
