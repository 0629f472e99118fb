"""Admin commands and a static student's query path need neither torch nor sentence-transformers: a child process
that cannot import them imports the package and the connectors, runs status | rollback | swap | finalize on a real
migrated collection, and answers a query through the alias with the static student."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from qdrant_distill import DistillConfig, GateConfig, MigrationConfig, Stage, migrate
from qdrant_distill.connectors import QdrantConnector
from tests.conftest import REPO, encode

BLOCKED = ("torch", "sentence_transformers", "transformers")

BLOCK = textwrap.dedent('''
    import importlib.abc, json, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, Blocker())
''')

CHILD = BLOCK + textwrap.dedent('''
    import qdrant_distill as qd
    from qdrant_distill import cli, connectors, distillation, edge, evaluation, inference, migration, query  # the faces
    from qdrant_distill import errors
    from qdrant_distill.migration import config
    from qdrant_distill.cli.app import app
    from typer.testing import CliRunner

    names = [n for n in qd.__all__ if n not in {"distill", "FidelityEvaluator"}]  # DistillResult: torch-free
    resolved = [n for n in names if getattr(qd, n) is not None]
    runner = CliRunner()
    outputs = {}

    def cli(verb, *extra):
        result = runner.invoke(app, [verb, RUN_DIR, *extra])
        outputs[verb] = [result.exit_code, result.output]

    cli("status")
    cli("rollback", "--path", STORE)
    cli("swap", "--path", STORE)
    conn = connectors.QdrantConnector.open(path=STORE)
    enc = qd.encoder_for(conn, "docs")
    hits = conn.search(enc.collection, enc.encode("a large natural stream of water")[0], limit=3,
                       vector_name=enc.vector_name or None)
    conn.close()
    cli("finalize", "--path", STORE, "--yes")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"resolved": len(resolved), "names": len(names), "outputs": outputs, "loaded": loaded,
                      "encoder": enc.describe(), "hits": len(hits)}))
''')


def test_admin_commands_and_a_static_query_path_import_no_torch(tmp_path: Path, demo_texts, tiny_model,
                                                                tiny_model_path) -> None:
    store, run_dir = tmp_path / "store", tmp_path / "run"
    texts = demo_texts[:200]
    with QdrantConnector.open(path=str(store)) as conn:
        from qdrant_client import models as qm

        from qdrant_distill.connectors.base import UNNAMED, Point

        vectors = encode(tiny_model, texts)
        conn.client.create_collection("docs_v1", vectors_config=qm.VectorParams(size=32,
                                                                               distance=qm.Distance.COSINE))
        conn.upsert("docs_v1", [Point(id=i, payload={"text": t}, vectors={UNNAMED: v})
                                for i, (t, v) in enumerate(zip(texts, vectors))])
        conn.create_alias("docs", "docs_v1")
        config = MigrationConfig(
            source="docs", dim=8, sample_size=150, run_dir=str(run_dir), progress=False, teacher_model=str(tiny_model_path),
            student=DistillConfig(kind="static", base_model=str(tiny_model_path), max_steps=2),
            gate=GateConfig(min_recall_at_10=0.0, min_spearman=-1.0),
        )
        assert migrate(config, connector=conn).stage is Stage.SWAPPED
    script = f"BLOCKED = {BLOCKED!r}\nSTORE = {str(store)!r}\nRUN_DIR = {str(run_dir)!r}\n{CHILD}"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [] and report["resolved"] == report["names"]
    outputs = report["outputs"]
    assert {verb: code for verb, (code, _) in outputs.items()} == dict.fromkeys(
        ("status", "rollback", "swap", "finalize"), 0), outputs
    assert "swapped" in outputs["status"][1] and "docs_v1" in outputs["rollback"][1]
    assert "dropped docs_v1" in outputs["finalize"][1]
    # the query path after the swap: the static student, read from its files by numpy
    assert report["hits"] == 3 and "static" in report["encoder"] and "numpy" in report["encoder"]


ONNX_CHILD = BLOCK + textwrap.dedent('''
    sys.path.insert(0, "examples")
    import qdrant_distill as qd
    from qdrant_distill import cli, connectors, distillation, edge, evaluation, inference, migration, query  # the faces
    from query_service import search

    conn = connectors.QdrantConnector.open(path=STORE)
    enc = qd.encoder_for(conn, "docs")
    vectors = enc.encode(["a large natural stream of water", "a feeling of great happiness"]).tolist()
    hits = search(conn, "docs", "a large natural stream of water", fallback=None)
    conn.close()
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"encoder": enc.describe(), "hits": len(hits), "loaded": loaded, "vectors": vectors}))
''')


def test_an_exported_student_answers_queries_without_torch(tmp_path: Path, demo_texts, tiny_model,
                                                           tiny_model_path) -> None:
    """A transformer student runs as its int8 ONNX graph: the query service (examples/query_service.py) needs
    onnxruntime and tokenizers, not torch, and its vectors are the ones the migration recorded."""
    store, run_dir = tmp_path / "store", tmp_path / "run"
    texts = demo_texts[:200]
    with QdrantConnector.open(path=str(store)) as conn:
        from qdrant_client import models as qm

        from qdrant_distill.connectors.base import UNNAMED, Point

        conn.client.create_collection("docs_v1", vectors_config=qm.VectorParams(size=32,
                                                                               distance=qm.Distance.COSINE))
        conn.upsert("docs_v1", [Point(id=i, payload={"text": t}, vectors={UNNAMED: v})
                                for i, (t, v) in enumerate(zip(texts, encode(tiny_model, texts)))])
        conn.create_alias("docs", "docs_v1")
        config = MigrationConfig(
            source="docs", dim=8, sample_size=150, run_dir=str(run_dir), progress=False,
            student=DistillConfig(base_model=str(tiny_model_path), max_steps=2),
            gate=GateConfig(min_recall_at_10=0.0, min_spearman=-1.0),
        )
        report = migrate(config, connector=conn)
        assert report.stage is Stage.SWAPPED and report.backend == "onnx-int8"
    script = f"BLOCKED = {BLOCKED!r}\nSTORE = {str(store)!r}\n{ONNX_CHILD}"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["loaded"] == [] and "onnx-int8" in child["encoder"] and child["hits"] == 5
    from qdrant_distill.inference.encoders import load_encoder

    int8 = load_encoder(Path(report.student_path).parent, backend="onnx-int8")
    expected = int8.encode(["a large natural stream of water", "a feeling of great happiness"], kind="query")
    np.testing.assert_allclose(np.array(child["vectors"]), expected, atol=1e-5)


PLAN_CHILD = BLOCK + textwrap.dedent('''
    from typer.testing import CliRunner
    from qdrant_distill.cli.app import app

    args = ["plan", "--path", STORE, "--alias", "docs", "--dim", "8", "--sample-size", "40", "--run-dir", RUN_DIR]
    done = CliRunner().invoke(app, args)
    print(json.dumps({"code": done.exit_code, "output": done.output}))
''')


def test_distilling_without_torch_is_refused_in_one_line_before_anything(tmp_path: Path, demo_texts) -> None:
    """An install without the [train] extra can query and administer, not distil: `plan` says what to install."""
    from qdrant_client import models as qm

    from qdrant_distill.connectors.base import UNNAMED, Point
    from tests.conftest import random_unit

    store = tmp_path / "store"
    with QdrantConnector.open(path=str(store)) as conn:
        conn.client.create_collection("docs_v1", vectors_config=qm.VectorParams(size=32, distance=qm.Distance.COSINE))
        conn.upsert("docs_v1", [Point(id=i, payload={"text": t}, vectors={UNNAMED: v})
                                for i, (t, v) in enumerate(zip(demo_texts[:50], random_unit(50, 32)))])
        conn.create_alias("docs", "docs_v1")
    script = f"BLOCKED = {BLOCKED!r}\nSTORE = {str(store)!r}\nRUN_DIR = {str(tmp_path / 'run')!r}\n{PLAN_CHILD}"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["code"] == 1 and "pip install 'qdrant-distill[train]'" in child["output"], child
    assert len(child["output"].strip().splitlines()) == 1 and not (tmp_path / "run").exists()
