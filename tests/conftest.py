"""Shared fixtures: a tiny real sentence-transformers model and real Qdrant local mode."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MINILM = REPO / "models" / "all-MiniLM-L6-v2"
MPNET = REPO / "models" / "all-mpnet-base-v2"


def build_tiny_model(path: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's real tokenizer, saved in sentence-transformers format."""
    import torch
    from sentence_transformers import SentenceTransformer

    from qdrant_distill._compat import st_models, word_embedding_dimension

    models = st_models()
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(MINILM))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=256,
    )
    raw = path / "raw"
    BertModel(config).save_pretrained(str(raw))
    tokenizer.save_pretrained(str(raw))
    body = models.Transformer(str(raw), max_seq_length=128)
    pooling = models.Pooling(word_embedding_dimension(body), pooling_mode="mean")
    model = SentenceTransformer(modules=[body, pooling], device="cpu")
    out = path / "model"
    model.save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def teacher_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model (another seed, 48-d, 3 layers) that plays a teacher: pruned students are cut from it."""
    return build_tiny_model(tmp_path_factory.mktemp("teacher"), hidden=48, layers=3, seed=1)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model_path), device="cpu")


@pytest.fixture(scope="session")
def demo_texts() -> list[str]:
    """Real short texts shipped with the package (WordNet glosses)."""
    from qdrant_distill.cli.demo_data import load_demo_texts

    return [row["text"] for row in load_demo_texts()]


def encode(model, texts) -> np.ndarray:
    """Normalised float32 document vectors of ``texts`` through the encoder seam (a model in memory or an encoder)."""
    from qdrant_distill.inference.encoders import as_encoder

    return as_encoder(model).encode(texts)


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
