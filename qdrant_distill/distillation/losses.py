"""Distillation losses as pure functions on tensors (no model inside), plus a weighted sum.

``student`` is a ``(batch, dim)`` tensor of the student's vectors, ``target`` the same points' projected teacher
vectors. Each loss is zero (or minimal) when ``student`` equals ``target`` and grows otherwise:

- :func:`mse_loss`: mean squared L2 distance, per point (``2 - 2 cos`` for unit vectors);
- :func:`cosine_loss`: mean ``1 - cos``;
- :func:`info_nce`: in-batch contrastive; each student vector must pick its own target among the batch's targets;
- :func:`info_nce_bank`: the same against a bank of targets (e.g. every training target: they are fixed, so the
  whole sample serves as negatives at the cost of one matrix product);
- :func:`similarity_kl`: KL between the teacher's and the student's in-batch similarity distributions (each row a
  softmax over the other points), as sentence-transformers' ``DistillKLDivLoss`` does for scores;
- :func:`matryoshka`: any of these over nested prefixes (e.g. 32, 64, 128), so a user can truncate vectors later.
  With PCA targets, a prefix of the target is exactly the PCA to that smaller dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_TEMPERATURE",
    "LossFn",
    "cosine_loss",
    "info_nce",
    "info_nce_bank",
    "matryoshka",
    "mse_loss",
    "similarity_kl",
    "weighted_sum",
]

DEFAULT_TEMPERATURE = 0.05

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check(student: torch.Tensor, target: torch.Tensor) -> None:
    if student.shape != target.shape:
        raise ValueError(f"student {tuple(student.shape)} and target {tuple(target.shape)} differ in shape")


def mse_loss(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over points of the squared L2 distance ``||s - t||^2``."""
    _check(student, target)
    return ((student - target) ** 2).sum(dim=-1).mean()


def cosine_loss(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 - cos(s, t)``."""
    _check(student, target)
    return (1.0 - F.cosine_similarity(student, target, dim=-1)).mean()


def info_nce(
    student: torch.Tensor,
    target: torch.Tensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    symmetric: bool = True,
) -> torch.Tensor:
    """In-batch contrastive loss: row ``i`` of ``cos(student, target) / temperature`` must peak at column ``i``.

    ``symmetric`` adds the transposed direction (each target picks its student vector). Minimal, for fixed targets,
    when the student equals the target (up to how separable the targets themselves are).
    """
    _check(student, target)
    logits = F.normalize(student, dim=-1) @ F.normalize(target, dim=-1).T / temperature
    labels = torch.arange(len(student), device=student.device)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, labels))
    return loss


def info_nce_bank(
    student: torch.Tensor,
    bank: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    dims: Sequence[int] | None = None,
) -> torch.Tensor:
    """Contrastive loss against a bank: row ``i`` of ``cos(student, bank) / temperature`` must peak at ``labels[i]``.

    With fixed targets as the bank (every training point's projected teacher vector), each student vector competes
    against the whole sample rather than its batch. ``dims`` adds nested prefixes, as :func:`matryoshka` does.
    """
    if student.shape[-1] != bank.shape[-1]:
        raise ValueError(f"student vectors are {student.shape[-1]}-d but the bank is {bank.shape[-1]}-d")
    if len(student) != len(labels):
        raise ValueError(f"{len(student)} student vectors but {len(labels)} labels")
    full = student.shape[-1]
    nested = sorted({d for d in (dims or ()) if 0 < d < full} | {full})
    total = student.new_zeros(())
    for d in nested:
        logits = F.normalize(student[:, :d], dim=-1) @ F.normalize(bank[:, :d], dim=-1).T / temperature
        total = total + F.cross_entropy(logits, labels)
    return total / len(nested)


def similarity_kl(
    student: torch.Tensor,
    target: torch.Tensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
) -> torch.Tensor:
    """KL(teacher || student) of the in-batch cosine-similarity distributions, one softmax per row.

    Self-similarities (the diagonal) are left out: they are 1 in both spaces and would swamp the softmax. Zero when
    the student's pairwise cosines equal the target's, whatever the rotation. Only the batch sizes must agree: the
    target may live in another space (e.g. the untrained body's, to keep its similarity structure).
    """
    if len(student) != len(target):
        raise ValueError(f"student batch {len(student)} and target batch {len(target)} differ")
    n = len(student)
    if n < 3:
        return student.sum() * 0.0
    s = F.normalize(student, dim=-1)
    t = F.normalize(target, dim=-1)
    off = ~torch.eye(n, dtype=torch.bool, device=student.device)
    s_logits = (s @ s.T / temperature)[off].view(n, n - 1)
    t_logits = (t @ t.T / temperature)[off].view(n, n - 1)
    return F.kl_div(F.log_softmax(s_logits, dim=-1), F.log_softmax(t_logits, dim=-1), log_target=True, reduction="batchmean")


def matryoshka(
    loss_fn: LossFn,
    student: torch.Tensor,
    target: torch.Tensor,
    dims: Sequence[int],
    *,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Weighted mean of ``loss_fn`` over nested prefixes ``[:, :d]`` of student and target, each re-normalised.

    Dimensions larger than the vectors are ignored; the full dimension is always included.
    """
    _check(student, target)
    full = student.shape[-1]
    nested = sorted({d for d in dims if 0 < d < full} | {full})
    w = list(weights) if weights is not None else [1.0] * len(nested)
    if len(w) != len(nested):
        raise ValueError(f"{len(w)} weights for {len(nested)} nested dimensions {nested}")
    total = student.new_zeros(())
    for d, wd in zip(nested, w):
        total = total + wd * loss_fn(F.normalize(student[:, :d], dim=-1), F.normalize(target[:, :d], dim=-1))
    return total / sum(w)


def weighted_sum(
    terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]
) -> tuple[torch.Tensor, dict[str, float]]:
    """``sum(weights[k] * terms[k])`` over the terms with a non-zero weight; also the parts as floats for logging."""
    total: torch.Tensor | None = None
    parts: dict[str, float] = {}
    for name, value in terms.items():
        w = float(weights.get(name, 0.0))
        if w == 0.0:
            continue
        parts[name] = float(value.detach())
        total = w * value if total is None else total + w * value
    if total is None:
        raise ValueError("every loss weight is zero")
    return total, parts
