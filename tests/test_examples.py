"""The examples run against a real migrated collection."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from connectors import QdrantConnector
from qdrant_distill import migrate
from tests.test_migration import build_source, config

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
