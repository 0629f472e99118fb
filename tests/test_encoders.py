"""The encoder seam: every backend load_encoder picks gives the vectors sentence-transformers gives, with the right
prompts per kind, cached, with typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from qdrant_distill import (
    DimensionError,
    PCAProjection,
    StudentError,
    load_encoder,
    projection_model,
)
from qdrant_distill.distillation.config import DistillConfig
from qdrant_distill.distillation.recipe import distill
from qdrant_distill.distillation.students import static_student
from qdrant_distill.inference.encoders import (
    Encoder,
    ProjectedEncoder,
    SentenceTransformerEncoder,
    StaticEncoder,
    as_encoder,
)
from tests.conftest import random_unit


def test_sentence_transformers_backend_is_cached_and_gives_normalised_float32(tiny_model_path, demo_texts) -> None:
    enc = load_encoder(tiny_model_path)
    assert isinstance(enc, SentenceTransformerEncoder) and isinstance(enc, Encoder)
    assert load_encoder(str(tiny_model_path)).model is enc.model  # loaded once per process
    vecs = enc.encode(demo_texts[:5])
    assert vecs.dtype == np.float32 and vecs.shape == (5, enc.dim) == (5, 32)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vecs, enc.model.encode(demo_texts[:5], normalize_embeddings=True), atol=1e-6)
    assert enc.encode("one text").shape == (1, 32) and enc.encode([]).shape == (0, 32)
    assert str(tiny_model_path) in enc.describe() and "32-d" in enc.describe()


def test_queries_and_documents_get_the_models_prompts(tiny_model_path, tmp_path, demo_texts) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_path), device="cpu",
                                prompts={"query": "query: ", "document": "passage: "})
    model.save(str(tmp_path / "prompted"))
    enc = load_encoder(tmp_path / "prompted")
    texts = demo_texts[:4]
    plain = SentenceTransformer(str(tiny_model_path), device="cpu")
    np.testing.assert_allclose(enc.encode(texts, kind="query"),
                               plain.encode([f"query: {t}" for t in texts], normalize_embeddings=True), atol=1e-5)
    np.testing.assert_allclose(enc.encode(texts, kind="document"),
                               plain.encode([f"passage: {t}" for t in texts], normalize_embeddings=True), atol=1e-5)


def test_static_student_loads_from_its_files_and_matches_sentence_transformers(tiny_model, demo_texts,
                                                                              tmp_path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = demo_texts[:200]
    model = static_student(tiny_model, texts, random_unit(len(texts), 12, seed=3))
    model.save(str(tmp_path / "static"))
    enc = load_encoder(tmp_path / "static")
    assert isinstance(enc, StaticEncoder) and enc.dim == 12
    reference = SentenceTransformer(str(tmp_path / "static"), device="cpu")
    probe = [*texts[:20], "", "   ", "an unseen word: zyxwvut"]
    np.testing.assert_allclose(enc.encode(probe, kind="query"),
                               reference.encode(probe, normalize_embeddings=True), atol=1e-6)
    # a model in memory gets the same fast path, reading its current weights
    np.testing.assert_allclose(as_encoder(model).encode(probe), enc.encode(probe), atol=1e-6)


def test_projection_on_top_equals_the_projection_model(tiny_model, tiny_model_path, demo_texts, tmp_path) -> None:
    stored = tiny_model.encode(demo_texts[:300], normalize_embeddings=True)
    projection = PCAProjection.fit(stored, 8)
    path = projection.save(tmp_path / "p.npz")
    enc = load_encoder(tiny_model_path, projection=path)
    assert isinstance(enc, ProjectedEncoder) and enc.dim == 8 and "PCA 32 -> 8" in enc.describe()
    expected = projection_model(tiny_model, projection).encode(demo_texts[:6], normalize_embeddings=True)
    np.testing.assert_allclose(enc.encode(demo_texts[:6], kind="query"), expected, atol=1e-5)
    with pytest.raises(DimensionError):
        load_encoder(tiny_model_path, projection=PCAProjection.fit(random_unit(50, 48), 8))


def test_a_distill_output_folder_stands_for_its_student(tiny_model_path, demo_texts, tmp_path) -> None:
    texts = demo_texts[:80]
    cfg = DistillConfig(base_model=str(tiny_model_path), dim=8, max_steps=1, head_init_samples=32,
                        early_stopping_patience=None)
    result = distill(texts, random_unit(len(texts), 48, seed=2), cfg, output_dir=tmp_path / "run", progress=False)
    assert load_encoder(tmp_path / "run").encode(texts[:2]).shape == (2, 8)
    np.testing.assert_allclose(load_encoder(tmp_path / "run").encode(texts[:3]),
                               load_encoder(result.student_path).encode(texts[:3]), atol=1e-6)


def test_load_failures_are_one_typed_error(tmp_path) -> None:
    with pytest.raises(StudentError, match="cannot load the model"):
        load_encoder(tmp_path / "nothing-here")
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "modules.json").write_text("[]")
    with pytest.raises(StudentError):
        load_encoder(tmp_path / "not-a-model")
    with pytest.raises(StudentError):
        as_encoder(object())
