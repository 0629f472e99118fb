"""The examples run against a real migrated collection."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qdrant_distill import migrate
from qdrant_distill.connectors import QdrantConnector
from tests.test_migration import N, build_source, config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_query_service_follows_the_alias(demo_texts, tiny_model_path, tmp_path) -> None:
    service = load("query_service")
    conn = QdrantConnector.open(location=":memory:")
    build_source(conn, demo_texts)
    report = migrate(config(tiny_model_path, tmp_path / "run"), connector=conn)
    hits = service.search(conn, "docs", demo_texts[3], fallback=None, limit=3)
    assert len(hits) == 3 and all(text in demo_texts for _, _, text in hits)
    assert report.target == conn.alias_target("docs")


def test_migrate_job_parses_and_runs(demo_texts, tiny_model_path, tmp_path, monkeypatch) -> None:
    store = tmp_path / "q"
    with QdrantConnector.open(path=str(store)) as conn:
        build_source(conn, demo_texts)
    job = load("migrate_job")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QDRANT_DISTILL_STUDENT__MAX_STEPS", "2")
    monkeypatch.setenv("QDRANT_DISTILL_GATE__MIN_RECALL_AT_10", "0")
    monkeypatch.setenv("QDRANT_DISTILL_GATE__MIN_SPEARMAN", "-1")
    monkeypatch.setattr("sys.argv", ["migrate_job", "docs", "--path", str(store), "--student", str(tiny_model_path),
                                     "--dim", "16", "--sample-size", "100"])
    assert job.main() == 0
    with QdrantConnector.open(path=str(store)) as conn:
        assert conn.alias_target("docs") == "docs_v1_distilled16"
    monkeypatch.setenv("QDRANT_DISTILL_GATE__MIN_SPEARMAN", "0.999")
    monkeypatch.setattr("sys.argv", ["migrate_job", "docs", "--path", str(store), "--student", str(tiny_model_path),
                                     "--dim", "8", "--sample-size", "100"])
    assert job.main() == 1  # the gate refuses a student this poor, and says so


@pytest.mark.skipif(importlib.util.find_spec("qdrant_edge") is None,
                    reason="needs qdrant-edge-py: pip install 'qdrant-distill[edge]'")
def test_edge_search_answers_from_the_folder_without_torch(demo_texts, tiny_model_path, tmp_path) -> None:
    """A static student's Edge folder: the example runs in a child that cannot import torch, and answers what the
    collection answers."""
    from qdrant_distill import DistillConfig, encoder_for, export_edge
    from tests.conftest import REPO
    from tests.test_torch_free import BLOCK, BLOCKED

    conn = QdrantConnector.open(location=":memory:")
    build_source(conn, demo_texts)
    student = DistillConfig(kind="static", base_model=str(tiny_model_path), max_steps=2)
    assert migrate(config(tiny_model_path, tmp_path / "run", student=student), connector=conn).backend == "static"
    manifest = export_edge("docs", tmp_path / "edge", connector=conn, progress=False)
    assert manifest.backend == "static" and manifest.points == N
    query = demo_texts[3][:30]
    enc = encoder_for(conn, "docs")
    expected = [pid for pid, _ in conn.search(enc.collection, enc.encode(query)[0], limit=3)]
    conn.close()
    child = BLOCK + textwrap.dedent('''
        import runpy
        sys.argv = ["edge_search", QUERY, "--folder", FOLDER, "--limit", "3"]
        try:
            runpy.run_path(EXAMPLE, run_name="__main__")
        except SystemExit as done:
            assert done.code == 0, done.code
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)))
    ''')
    script = (f"BLOCKED = {BLOCKED!r}\nQUERY = {query!r}\nFOLDER = {str(tmp_path / 'edge')!r}\n"
              f"EXAMPLE = {str(EXAMPLES / 'edge_search.py')!r}\n{child}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == [] and "static" in done.stderr  # describe(): the numpy token table
    assert [int(line.split()[1]) for line in lines[1:-1]] == expected
