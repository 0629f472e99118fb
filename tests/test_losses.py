"""Each loss is zero (or minimal) when the student equals the target and grows as it moves away."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from qdrant_distill.distillation.losses import (
    cosine_loss,
    info_nce,
    info_nce_bank,
    matryoshka,
    mse_loss,
    similarity_kl,
    weighted_sum,
)


def unit(n: int = 16, d: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1)


def noisy(t: torch.Tensor, scale: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(t + scale * torch.randn(t.shape, generator=g), dim=-1)


def test_mse_and_cosine_zero_at_equality_and_hand_values() -> None:
    t = unit()
    assert mse_loss(t, t).item() == pytest.approx(0.0, abs=1e-7)
    assert cosine_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    s = torch.tensor([[1.0, 0.0]])
    u = torch.tensor([[0.0, 1.0]])
    assert mse_loss(s, u).item() == pytest.approx(2.0)
    assert cosine_loss(s, u).item() == pytest.approx(1.0)
    assert cosine_loss(s, -s).item() == pytest.approx(2.0)


@pytest.mark.parametrize("loss", [mse_loss, cosine_loss, info_nce, similarity_kl])
def test_loss_grows_with_distance(loss) -> None:
    t = unit()
    values = [loss(noisy(t, scale), t).item() if scale else loss(t, t).item() for scale in (0.0, 0.03, 0.1, 0.3)]
    assert values == sorted(values)
    assert values[-1] > values[0] + 1e-3


def test_similarity_kl_zero_at_equality_and_rotation_invariant() -> None:
    t = unit()
    assert similarity_kl(t, t).item() == pytest.approx(0.0, abs=1e-6)
    q, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(3)))
    assert similarity_kl(t @ q, t).item() == pytest.approx(0.0, abs=1e-5)
    assert similarity_kl(t[:2], t[:2]).item() == 0.0  # too small a batch: no distribution
    # the target may live in another space: only its pairwise cosines count
    padded = torch.cat([t, torch.zeros(len(t), 8)], dim=1)
    assert similarity_kl(t, padded).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        similarity_kl(t, t[:-1])


def test_info_nce_hand_value_and_minimum() -> None:
    # orthogonal targets: each row's logits are [1/tau, 0, 0, ...]
    t = torch.eye(4)
    tau = 0.5
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 3.0))
    assert info_nce(t, t, temperature=tau).item() == pytest.approx(expected, rel=1e-5)
    shuffled = t[[1, 0, 3, 2]]
    assert info_nce(shuffled, t, temperature=tau).item() > info_nce(t, t, temperature=tau).item()
    assert info_nce(t, t, temperature=tau, symmetric=False).item() == pytest.approx(expected, rel=1e-5)


def test_info_nce_bank_hand_value_minimum_and_prefixes() -> None:
    # a bank of 6 orthogonal targets; each of the 4 students equals its own: logits [1/tau, 0 x 5]
    bank = torch.eye(6)
    tau = 0.5
    labels = torch.tensor([0, 1, 2, 3])
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 5.0))
    assert info_nce_bank(bank[:4], bank, labels, temperature=tau).item() == pytest.approx(expected, rel=1e-5)
    # the same rows against the batch only: fewer negatives, a lower loss
    assert info_nce(bank[:4], bank[:4], temperature=tau, symmetric=False).item() < expected
    t = unit(n=40, d=32)
    idx = torch.arange(8)
    at_target = info_nce_bank(t[idx], t, idx).item()
    assert info_nce_bank(noisy(t[idx], 0.5), t, idx).item() > at_target
    assert info_nce_bank(t[idx], t, idx.flip(0)).item() > at_target  # wrong labels
    # nested prefixes: the mean of the loss at each prefix, re-normalised
    s = noisy(t[idx], 0.3)
    manual = sum(info_nce_bank(s[:, :d], t[:, :d], idx) for d in (8, 16, 32)) / 3
    assert info_nce_bank(s, t, idx, dims=(8, 16)).item() == pytest.approx(manual.item(), rel=1e-5)
    with pytest.raises(ValueError):
        info_nce_bank(unit(4, 8), unit(10, 9), labels)
    with pytest.raises(ValueError):
        info_nce_bank(unit(3, 8), unit(10, 8), labels)


def test_matryoshka_nested_dims() -> None:
    t = unit(d=64)
    assert matryoshka(mse_loss, t, t, (16, 32)).item() == pytest.approx(0.0, abs=1e-6)
    s = noisy(t, 0.3)
    manual = sum(mse_loss(F.normalize(s[:, :d], dim=-1), F.normalize(t[:, :d], dim=-1)) for d in (16, 32, 64)) / 3
    assert matryoshka(mse_loss, s, t, (16, 32, 128)).item() == pytest.approx(manual.item(), rel=1e-5)
    with pytest.raises(ValueError):
        matryoshka(mse_loss, s, t, (16, 32), weights=(1.0,))


def test_weighted_sum_skips_zero_weights() -> None:
    t = unit()
    s = noisy(t, 0.2)
    terms = {"mse": mse_loss(s, t), "cosine": cosine_loss(s, t)}
    total, parts = weighted_sum(terms, {"mse": 2.0, "cosine": 0.0})
    assert total.item() == pytest.approx(2.0 * terms["mse"].item())
    assert set(parts) == {"mse"}
    with pytest.raises(ValueError):
        weighted_sum(terms, {})


def test_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError):
        mse_loss(unit(4, 8), unit(4, 9))
