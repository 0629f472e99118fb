"""Each kind of student builds, trains a few steps, lowers its loss, saves and reloads with identical outputs."""

from __future__ import annotations

import numpy as np
import pytest

from qdrant_distill._compat import embedding_dimension
from qdrant_distill.distillation.config import HeadInit, StudentKind
from qdrant_distill.distillation.pseudo_queries import pseudo_query
from qdrant_distill.distillation.students import (
    add_head,
    body_and_head,
    fit_head,
    load_body,
    prune_layers,
    pruned_student,
    static_student,
    transformer_student,
)
from qdrant_distill.distillation.training import TrainSettings, train
from qdrant_distill.errors import DimensionError, StudentError
from qdrant_distill.inference.projection import PCAProjection
from tests.conftest import build_tiny_model, encode

DIM = 12


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A second tiny model (another seed, wider, 4 layers) plays the teacher: its vectors are learnable targets."""
    return load_body(str(build_tiny_model(tmp_path_factory.mktemp("teacher"), hidden=48, layers=4, seed=1)))


@pytest.fixture(scope="module")
def pairs(teacher, demo_texts):
    texts = demo_texts[:96]
    vecs = encode(teacher, texts)
    proj = PCAProjection.fit(vecs, DIM)
    return texts, proj, proj.transform(vecs)


def _train(model, texts, targets, **over):
    body, head = body_and_head(model)
    settings = TrainSettings(
        epochs=3, batch_size=16, lr_body=over.pop("lr_body", 1e-3), lr_head=over.pop("lr_head", 1e-2),
        warmup_ratio=0.0, weights={"mse": 1.0, "contrastive": 0.2, "kl": 0.2, "pseudo_query": 0.1},
        early_stopping_patience=None, eval_steps=1000, **over,
    )
    return train(model, texts, targets, settings, body_params=body, head_params=head,
                 evaluate=lambda m: {"fidelity/recall@10": 0.0}, progress=False)


def _mean_loss(history, first: bool, n: int = 4) -> float:
    part = history[:n] if first else history[-n:]
    return float(np.mean([h["loss"] for h in part]))


def _round_trip(model, texts, tmp_path):
    from sentence_transformers import SentenceTransformer

    before = encode(model, texts[:8])
    model.save(str(tmp_path / "student"))
    again = SentenceTransformer(str(tmp_path / "student"), device="cpu")
    np.testing.assert_allclose(encode(again, texts[:8]), before, atol=1e-5)
    return again


def test_kinds_are_str_enums() -> None:
    assert StudentKind("static") is StudentKind.STATIC and StudentKind.PRUNED == "pruned"
    assert HeadInit("own_pca") is HeadInit.OWN_PCA


@pytest.mark.parametrize("mode", list(HeadInit))
def test_transformer_student_trains_and_round_trips(tiny_model, pairs, mode, tmp_path) -> None:
    texts, _, targets = pairs
    weight = fit_head(encode(tiny_model, texts), targets, mode)
    model = transformer_student(tiny_model, weight, dim=DIM)
    assert embedding_dimension(model) == DIM
    assert model[0] is not tiny_model[0]  # the fixture's body is left alone
    outcome = _train(model, texts, targets)
    assert outcome.steps == 18
    assert _mean_loss(outcome.history, False) < _mean_loss(outcome.history, True)
    _round_trip(model, texts, tmp_path)


def test_own_pca_head_keeps_body_geometry_and_aligns(tiny_model, pairs) -> None:
    texts, _, targets = pairs
    body_vecs = encode(tiny_model, texts)
    weight = fit_head(body_vecs, targets, HeadInit.OWN_PCA)
    np.testing.assert_allclose(weight @ weight.T, np.eye(DIM), atol=1e-4)  # a rotated orthonormal PCA basis
    pca = PCAProjection.fit(body_vecs, DIM)
    y = body_vecs @ weight.T
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    np.testing.assert_allclose(y @ y.T, pca.transform(body_vecs) @ pca.transform(body_vecs).T, atol=1e-4)
    # the rotation points the head at the targets: better than the unrotated PCA
    assert np.mean(np.sum(y * targets, axis=1)) > np.mean(np.sum(pca.transform(body_vecs) * targets, axis=1))
    with pytest.raises(DimensionError):
        fit_head(body_vecs, np.zeros((len(texts), 40)), HeadInit.OWN_PCA)


def test_ridge_head_solves_least_squares(pairs) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 10))
    w_true = rng.standard_normal((4, 10))
    w = fit_head(x, x @ w_true.T, HeadInit.RIDGE, alpha=1e-8)
    np.testing.assert_allclose(w, w_true, atol=1e-4)
    assert fit_head(x, x @ w_true.T, HeadInit.RANDOM) is None


def test_pruned_student_keeps_even_layers_and_trains(teacher, pairs, tmp_path) -> None:
    texts, proj, targets = pairs
    student = pruned_student(teacher, proj, keep=2)
    assert len(student[0].auto_model.encoder.layer) == 2
    assert student[0].auto_model.config.num_hidden_layers == 2
    assert len(teacher[0].auto_model.encoder.layer) == 4  # the teacher is untouched
    assert embedding_dimension(student) == DIM
    outcome = _train(student, texts, targets, lr_body=5e-4, lr_head=1e-3)
    assert _mean_loss(outcome.history, False) < _mean_loss(outcome.history, True)
    again = _round_trip(student, texts, tmp_path)
    assert again[0].auto_model.config.num_hidden_layers == 2


def test_prune_layers_indices(tmp_path) -> None:
    model = load_body(str(build_tiny_model(tmp_path, hidden=16, layers=6, seed=2)))
    assert prune_layers(model, 3) == [0, 2, 5]
    assert len(model[0].auto_model.encoder.layer) == 3
    with pytest.raises(StudentError):
        prune_layers(model, 9)


def test_pruned_student_rejects_wrong_teacher(tiny_model, pairs) -> None:
    _, proj, _ = pairs
    with pytest.raises(DimensionError):
        pruned_student(tiny_model, proj, keep=1)


def test_static_student_trains_and_round_trips(tiny_model, pairs, tmp_path) -> None:
    texts, _, targets = pairs
    model = static_student(tiny_model, texts, targets)
    assert embedding_dimension(model) == DIM
    start = encode(model, texts)
    # least squares already points the static vectors at their targets
    assert np.mean(np.sum(start * targets, axis=1)) > 0.3
    outcome = _train(model, texts, targets, lr_body=5e-2, lr_head=0.0)
    assert _mean_loss(outcome.history, False) < _mean_loss(outcome.history, True)
    again = _round_trip(model, texts, tmp_path)
    # the direct static path of encode() gives sentence-transformers' vectors
    np.testing.assert_allclose(encode(again, texts[:8]), again.encode(texts[:8], normalize_embeddings=True), atol=1e-6)
    # the body's tokenizer keeps its own truncation and padding settings
    assert tiny_model.encode(["a"]).shape == (1, 32)


def test_add_head_random_needs_dimension(tiny_model) -> None:
    assert embedding_dimension(add_head(tiny_model, None, dim=5)) == 5
    with pytest.raises(StudentError):
        add_head(tiny_model, None)


def test_load_body_failure_is_typed(tmp_path) -> None:
    with pytest.raises(StudentError):
        load_body(str(tmp_path / "missing"))


def test_pseudo_query_cuts_a_sentence() -> None:
    import random

    text = "Cats purr when content. Dogs bark at strangers loudly. Birds sing at dawn every day."
    rng = random.Random(0)
    cuts = {pseudo_query(text, rng) for _ in range(30)}
    assert "Cats purr when content." in cuts and len(cuts) > 1
    assert all(c in text for c in cuts)
    assert pseudo_query("two words", rng) == "two words"


def test_freeze_lower_layers_leaves_top_layers_trainable(tmp_path) -> None:
    from qdrant_distill.distillation.students import freeze_lower_layers

    model = load_body(str(build_tiny_model(tmp_path, hidden=16, layers=3, seed=3)))
    params = freeze_lower_layers(model, 1)
    auto = model[0].auto_model
    top = {id(p) for p in auto.encoder.layer[2].parameters()}
    assert {id(p) for p in params} == top
    assert not auto.get_input_embeddings().weight.requires_grad
    assert all(p.requires_grad == (id(p) in top) for p in auto.parameters())


def test_add_head_copies_the_weight_it_is_given(tiny_model) -> None:
    """Training the head must not write into the caller's array (the plain heads are compared after training)."""
    weight = np.ones((5, 32), dtype=np.float32)
    model = add_head(tiny_model, weight)
    dense = model[len(model) - 2]
    dense.linear.weight.data.mul_(3.0)
    assert np.all(weight == 1.0)
