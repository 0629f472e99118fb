"""repoint proves a model belongs to the collection before it writes anything (issue 31, item 3): another run's
export of the same size is refused in one line with the record unchanged; the collection's own export passes; a
projection-only collection given its run folder is told at once that the queries run on the teacher, and a teacher
that never made its vectors is found out."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from qdrant_distill.cli.app import app
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.migration import record
from tests.reliability.conftest import FIGURES
from tests.test_cli import common
from tests.test_migration import build_source

TARGET = "docs_v1_distilled16"


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory, demo_texts: list[str], tiny_model_path: Path) -> dict:
    """A swapped migration (its export recorded as the query model) and another run's export of the same size: the
    same student with its weights scrambled, exported by the CLI."""
    base = tmp_path_factory.mktemp("repoint")
    store, run_dir = base / "qdrant", base / "run"
    with QdrantConnector.open(path=str(store)) as conn:
        build_source(conn, demo_texts)
    done = run("migrate", "--alias", "docs", "--yes", *common(store, tiny_model_path, run_dir))
    assert done.exit_code == 0, done.output
    other = shutil.copytree(run_dir, base / "other")
    shutil.rmtree(other / "student" / "onnx")
    weights = other / "student" / "student" / "model.safetensors"
    rng = np.random.default_rng(7)
    save_file({k: (v + rng.normal(0, 0.5, v.shape).astype(v.dtype)) if v.dtype == np.float32 else v
               for k, v in load_file(str(weights)).items()}, str(weights))
    exported = run("export", other)
    assert exported.exit_code == 0, exported.output
    return {"store": store, "run": run_dir, "other": other}


def test_another_runs_export_of_the_same_size_is_refused_and_nothing_is_written(migrated) -> None:
    store = migrated["store"]
    with QdrantConnector.open(path=str(store)) as conn:
        before = record.read_from(conn, TARGET)
    line = one_line(run("repoint", "docs", "--model", migrated["other"], "--path", store))
    assert line.startswith(f"error: ConfigError: {migrated['other'] / 'student' / 'onnx'} is not the query model of "
                           f"'{TARGET}': it re-encodes 16 of its stored points at mean cosine "), line
    cosine = float(line.split("mean cosine ")[1].split(" ")[0])
    assert cosine < 0.5 and f"run id {before['run_id']}" in line, line
    with QdrantConnector.open(path=str(store)) as conn:
        assert record.read_from(conn, TARGET) == before
    FIGURES["repoint: another run's export, mean cosine"] = cosine


def test_the_collections_own_export_passes_the_proof(migrated, tmp_path: Path) -> None:
    store = migrated["store"]
    moved = shutil.copytree(migrated["run"] / "student" / "onnx", tmp_path / "onnx")
    done = run("repoint", "docs", "--model", moved, "--path", store)
    assert done.exit_code == 0, done.output
    assert f"query_model {migrated['run'] / 'student' / 'onnx'} -> {moved}" in done.stdout
    back = run("repoint", "docs", "--model", migrated["run"], "--path", store)
    assert back.exit_code == 0, back.output


def test_a_projection_only_run_folder_is_told_its_queries_run_on_the_teacher(demo_texts, teacher_path: Path,
                                                                             tmp_path: Path) -> None:
    store, run_dir = tmp_path / "qdrant", tmp_path / "run"
    with QdrantConnector.open(path=str(store)) as conn:
        build_source(conn, demo_texts)
    done = run("migrate", "--alias", "docs", "--yes", "--mode", "projection-only", "--teacher", teacher_path,
               "--no-teacher-check", "--export", "none", "--path", store, "--dim", "16", "--sample-size", "100",
               "--min-recall", "0", "--min-spearman", "-1", "--run-dir", run_dir, "--no-progress")
    assert done.exit_code == 0, done.output
    line = one_line(run("repoint", "docs", "--model", run_dir, "--path", store))
    assert line == (f"error: ConfigError: {run_dir} holds the projection of projection-only collection "
                    f"'{TARGET}', not a model: its queries run on the teacher followed by that projection (give the "
                    f"teacher and the projection: --model TEACHER_FOLDER --projection "
                    f"{run_dir / 'student' / 'projection.npz'})"), line
    # this teacher never made the stored vectors (the migration skipped the check): the proof finds it out
    line = one_line(run("repoint", "docs", "--model", teacher_path, "--projection",
                        run_dir / "student" / "projection.npz", "--path", store))
    assert line.startswith(f"error: ConfigError: {teacher_path} is not the query model of '{TARGET}'"), line
