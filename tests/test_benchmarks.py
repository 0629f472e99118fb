"""Smoke tests: the benchmark scripts run end to end in their quick mode (figures are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MPNET, REPO, SHARED_DATA

pytestmark = pytest.mark.slow


def run(script: str, out: Path) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.skipif(not MPNET.exists() or not (SHARED_DATA / "scifact").exists(),
                    reason="needs models/all-mpnet-base-v2 (scripts/setup.sh) and ../shared/data")
def test_speed_quick(tmp_path: Path) -> None:
    result = run("speed.py", tmp_path / "speed.json")
    assert {"encode", "pipeline", "memory", "project", "distill", "ray"} <= result.keys()
    assert result["ray"]["ray_points_per_s_steady"] > 0 and result["ray"]["local_points_per_s"] > 0
    assert len(result["encode"]) == 5 and len(result["memory"]) == 2


@pytest.mark.skipif(not (SHARED_DATA / "scifact").exists(), reason="needs ../shared/data/scifact")
def test_quality_quick(tmp_path: Path) -> None:
    result = run("quality.py", tmp_path / "quality.json")
    names = [row["row"] for row in result["rows"]]
    assert result["quick"] and any("teacher" in n for n in names) and any("static" in n for n in names)
    assert any(n.startswith("query student") for n in names)
    assert all(0.0 <= row["ndcg@10"] <= 1.0 for row in result["rows"])


@pytest.mark.skipif(not (REPO / "models" / "all-MiniLM-L6-v2").exists(),
                    reason="needs models/all-MiniLM-L6-v2 (scripts/setup.sh)")
def test_http_teacher_quick(tmp_path: Path) -> None:
    result = run("http_teacher.py", tmp_path / "http.json")
    rows = result["rows"]
    assert len(rows) == 4 and all(row["texts_per_s"] > 0 for row in rows.values())
    assert all(row["min_cosine_vs_in_process"] > 0.999 for row in list(rows.values())[1:])


@pytest.mark.skipif(not (SHARED_DATA / "scifact").exists(), reason="needs ../shared/data/scifact")
def test_backends_quick(tmp_path: Path) -> None:
    result = run("backends.py", tmp_path / "backends.json")
    rows = {(r["model"].split()[0], r["backend"]) for r in result["rows"]}
    assert {("student", "torch"), ("student", "onnx"), ("student", "onnx-int8"), ("static", "numpy")} <= rows
    assert result["query_service"]["torch_loaded"] is False and result["query_service"]["peak_rss_mb"] > 0
