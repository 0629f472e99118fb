"""PCA teacher space: fit, transform, persistence and export as sentence-transformers modules."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from qdrant_distill.errors import DimensionError, InvalidVectors
from qdrant_distill.inference.projection import PCAProjection, projection_model
from tests.conftest import random_unit


def low_rank_unit(n: int, dim: int, rank: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, dim)) + 0.5
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("center", [False, True])
def test_fit_shapes_and_orthonormal_components(center: bool) -> None:
    x = random_unit(200, 48)
    proj = PCAProjection.fit(x, 16, center=center)
    assert (proj.in_dim, proj.dim, proj.center) == (48, 16, center)
    assert proj.components.shape == (16, 48)
    np.testing.assert_allclose(proj.components @ proj.components.T, np.eye(16), atol=1e-5)
    assert 0.0 < proj.explained_variance_ratio < 1.0
    if center:
        np.testing.assert_allclose(proj.mean, x.mean(axis=0), atol=1e-6)
    else:
        assert not proj.mean.any()
    y = proj.transform(x)
    assert y.dtype == np.float32 and y.shape == (200, 16)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)


def test_full_rank_data_round_trips_exactly() -> None:
    x = low_rank_unit(100, 32, rank=6)
    proj = PCAProjection.fit(x, 8)
    assert proj.explained_variance_ratio == pytest.approx(1.0, abs=1e-6)
    y = proj.transform(x, normalize=False)
    np.testing.assert_allclose(y @ proj.components, x, atol=1e-5)  # back to the teacher space
    # cosine geometry is kept exactly when nothing is lost
    np.testing.assert_allclose(proj.transform(x) @ proj.transform(x).T, x @ x.T, atol=1e-5)


def test_single_vector_and_wrong_width() -> None:
    proj = PCAProjection.fit(random_unit(50, 24), 4)
    assert proj.transform(random_unit(1, 24)[0]).shape == (4,)
    with pytest.raises(InvalidVectors):
        proj.transform(random_unit(3, 10))


@pytest.mark.parametrize("dim", [0, 24, 30])
def test_dimension_out_of_range(dim: int) -> None:
    with pytest.raises(DimensionError):
        PCAProjection.fit(random_unit(50, 24), dim)


def test_non_finite_vectors_rejected() -> None:
    x = random_unit(20, 8)
    x[3, 2] = np.nan
    with pytest.raises(InvalidVectors):
        PCAProjection.fit(x, 4)


def test_dimension_clamped_to_samples(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="qdrant_distill.inference.projection"):
        proj = PCAProjection.fit(random_unit(5, 32), 16)
    assert proj.dim == 5
    assert "clamped" in caplog.text


def test_save_load_round_trip(tmp_path) -> None:
    proj = PCAProjection.fit(random_unit(60, 20), 6, center=True)
    path = proj.save(tmp_path / "proj")
    assert path.suffix == ".npz"
    back = PCAProjection.load(path)
    np.testing.assert_array_equal(back.components, proj.components)
    np.testing.assert_array_equal(back.mean, proj.mean)
    assert back.center and back.explained_variance_ratio == pytest.approx(proj.explained_variance_ratio)


@pytest.mark.parametrize("center", [False, True])
def test_module_export_equals_transform(center: bool) -> None:
    x = random_unit(40, 12)
    proj = PCAProjection.fit(x, 5, center=center)
    for normalize in (True, False):
        features = {"sentence_embedding": torch.from_numpy(x)}
        for module in proj.to_module(normalize=normalize):
            features = module(features)
        np.testing.assert_allclose(
            features["sentence_embedding"].detach().numpy(), proj.transform(x, normalize=normalize), atol=1e-5
        )


def test_projection_model_is_teacher_then_projection(tiny_model, demo_texts, tmp_path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = demo_texts[:60]
    stored = tiny_model.encode(texts, normalize_embeddings=True)
    proj = PCAProjection.fit(stored, 8)
    model = projection_model(tiny_model, proj)
    got = model.encode(texts[:5])
    np.testing.assert_allclose(got, proj.transform(stored[:5]), atol=1e-4)
    model.save(str(tmp_path / "pm"))
    again = SentenceTransformer(str(tmp_path / "pm"), device="cpu").encode(texts[:5])
    np.testing.assert_allclose(again, got, atol=1e-5)
    with pytest.raises(DimensionError):
        projection_model(tiny_model, PCAProjection.fit(random_unit(30, 16), 4))
