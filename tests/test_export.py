"""Exports for onnxruntime: the whole model in one graph (fp32 and int8), checked against torch; the static token
table; the backends of ``load_encoder``; FastEmbed and qdrant-client inference on an exported folder; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qdrant_distill.cli.app import app
from qdrant_distill.errors import ConfigError, StudentError
from qdrant_distill.inference import export as export_module
from qdrant_distill.inference.encoders import load_encoder
from qdrant_distill.inference.export import export_model, fastembed_model
from qdrant_distill.inference.formats import MANIFEST, read_manifest
from tests.conftest import encode

# lengths from one token to past max_seq_length, in batches of one, a few, and more than one batch
TEXTS = ["a", "river", "a large natural stream of water flowing in a channel to the sea"] + [
    " ".join(["word"] * n) + f" {n}" for n in (2, 7, 30, 90, 300)
]


@pytest.fixture(scope="module")
def exported(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "tiny-onnx"
    export_model(str(tiny_model_path), out)
    return out


def test_the_export_folder_holds_both_graphs_the_tokenizer_and_its_checks(exported: Path, tiny_model_path) -> None:
    names = {p.name for p in exported.iterdir()}
    assert {"model.onnx", "model_int8.onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "config.json", MANIFEST} <= names
    manifest = read_manifest(exported)
    assert manifest is not None and manifest.kind == "transformer" and manifest.dim == 32
    assert manifest.files == {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}
    assert manifest.checks["onnx"].cosine_min >= 0.999 and manifest.checks["onnx-int8"].cosine_mean >= 0.98
    assert manifest.preferred == "onnx-int8"
    # FastEmbed truncates where the model does
    config = json.loads((exported / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == manifest.max_seq_length
    assert (exported / "model_int8.onnx").stat().st_size < (exported / "model.onnx").stat().st_size


def test_every_backend_reproduces_the_torch_model_at_any_length_and_batch(exported: Path, tiny_model) -> None:
    reference = encode(tiny_model, TEXTS)
    fp32 = load_encoder(exported, backend="onnx", batch_size=3)
    int8 = load_encoder(exported, backend="onnx-int8", batch_size=3)
    assert fp32.describe().startswith("onnx ") and int8.describe().startswith("onnx-int8 ")
    np.testing.assert_allclose(fp32.encode(TEXTS), reference, atol=1e-4)
    for one, text in zip(reference, TEXTS):  # one text at a time: no padding at all
        np.testing.assert_allclose(fp32.encode(text)[0], one, atol=1e-4)
    assert float((int8.encode(TEXTS) * reference).sum(axis=1).min()) > 0.97
    assert load_encoder(exported).describe().startswith("onnx-int8")  # auto: what the checks chose
    assert load_encoder(exported, backend="torch").describe().startswith("sentence-transformers")  # its source
    assert fp32.encode([]).shape == (0, 32)


def test_prompts_are_applied_like_encode_query(tiny_model_path: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_path), device="cpu",
                                prompts={"query": "query: ", "document": "passage: "})
    manifest = export_model(model, tmp_path / "prompted", formats=("onnx",))
    assert manifest.prompts == {"query": "query: ", "document": "passage: "}
    enc = load_encoder(tmp_path / "prompted", backend="onnx")
    np.testing.assert_allclose(enc.encode(TEXTS[:4], kind="query"),
                               model.encode_query(TEXTS[:4], normalize_embeddings=True), atol=1e-4)
    np.testing.assert_allclose(enc.encode(TEXTS[:4], kind="document"),
                               model.encode_document(TEXTS[:4], normalize_embeddings=True), atol=1e-4)


def test_a_static_student_exports_as_its_token_table(tiny_model, tmp_path: Path) -> None:
    from qdrant_distill.distillation.students import static_student
    from tests.conftest import random_unit

    texts = [f"text number {i} about rivers and seas" for i in range(40)]
    student = static_student(tiny_model, texts, random_unit(40, 8))
    manifest = export_model(student, tmp_path / "static")
    assert manifest.kind == "static" and set(manifest.files) == {"static"} and manifest.preferred == "static"
    assert manifest.checks["static"].cosine_min >= 0.999
    enc = load_encoder(tmp_path / "static")
    assert "numpy" in enc.describe()
    np.testing.assert_allclose(enc.encode(texts[:5]), encode(student, texts[:5]), atol=1e-5)


def test_int8_that_loses_on_the_holdout_is_refused_and_says_why(tiny_model_path, tmp_path, monkeypatch) -> None:
    # fault injection: no loss at all is tolerated, so the int8 graph (which always loses a little) is refused
    monkeypatch.setattr(export_module, "INT8_TOLERANCE", -1.0)
    texts = [f"sentence {i} on a topic of its own" for i in range(30)]

    def holdout(encoder) -> dict[str, float]:
        vecs = encoder.encode(texts)
        return {"fidelity/recall@10": float((vecs @ vecs.T).mean())}

    manifest = export_model(str(tiny_model_path), tmp_path / "refused", evaluate=holdout)
    check = manifest.checks["onnx-int8"]
    assert not check.accepted and "loses more than" in (check.reason or "")
    assert manifest.preferred == "onnx" and manifest.reference_metrics
    assert load_encoder(tmp_path / "refused").describe().startswith("onnx ")


def test_bad_requests_change_nothing(tiny_model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier export"):
        export_model(str(tiny_model_path), tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    with pytest.raises(ConfigError, match="unknown export format"):
        export_model(str(tiny_model_path), tmp_path / "x", formats=("tflite",))
    assert not (tmp_path / "x").exists()
    with pytest.raises(StudentError, match="no export"):
        load_encoder(tiny_model_path, backend="onnx-int8")
    with pytest.raises(ConfigError, match="unknown backend"):
        load_encoder(tiny_model_path, backend="tensorrt")


def test_cli_export(tiny_model_path: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["export", str(tiny_model_path)])
    assert done.exit_code == 1 and "--out" in done.output and len(done.output.strip().splitlines()) <= 2
    done = runner.invoke(app, ["export", str(tiny_model_path), "--out", str(tmp_path / "e"), "--format", "fp8"])
    assert done.exit_code != 0 and not (tmp_path / "e").exists()
    done = runner.invoke(app, ["export", str(tiny_model_path), "--out", str(tmp_path / "e"), "--format", "onnx",
                               "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["files"] == {"onnx": "model.onnx"} and report["preferred"] == "onnx"


def test_fastembed_and_qdrant_inference_find_what_encoder_for_finds(exported: Path, demo_texts) -> None:
    pytest.importorskip("fastembed")
    from qdrant_client import QdrantClient, models

    name, options = fastembed_model(exported)
    assert fastembed_model(exported) == (name, options)  # registering twice is harmless
    ours = load_encoder(exported)
    texts = demo_texts[:60]
    client = QdrantClient(":memory:")
    client.create_collection("docs", vectors_config=models.VectorParams(size=ours.dim, distance=models.Distance.COSINE))
    client.upsert("docs", [models.PointStruct(id=i, vector=v.tolist(), payload={"text": t})
                           for i, (t, v) in enumerate(zip(texts, ours.encode(texts)))])
    from fastembed import TextEmbedding

    fast = np.array(list(TextEmbedding(name, **options).embed(texts[:10])))
    np.testing.assert_allclose(fast, ours.encode(texts[:10]), atol=1e-4)
    for query in ("a large natural stream of water", "a feeling of great happiness", "a tool for cutting"):
        by_document = client.query_points("docs", query=models.Document(text=query, model=name, options=options),
                                          limit=5).points
        by_vector = client.query_points("docs", query=ours.encode(query, kind="query")[0].tolist(), limit=5).points
        assert [p.id for p in by_document] == [p.id for p in by_vector]


def test_the_onnx_backends_honour_the_device(exported: Path) -> None:
    import onnxruntime as ort

    cpu = load_encoder(exported, backend="onnx", device="cpu")
    assert cpu.session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="cpu or cuda"):
        load_encoder(exported, backend="onnx-int8", device="mps")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        gpu = load_encoder(exported, backend="onnx", device="cuda")
        assert gpu.session.get_providers()[0] == "CUDAExecutionProvider"
    else:  # asked for a GPU that onnxruntime cannot use: one error naming the fix, not a silent CPU session
        with pytest.raises(StudentError, match="CUDA provider") as caught:
            load_encoder(exported, backend="onnx", device="cuda")
        assert "onnxruntime-gpu" in (caught.value.hint or "")
