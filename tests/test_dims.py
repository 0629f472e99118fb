"""The dimension table (``plan --dims``): a real embedded collection, through the command line and the Python API."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qdrant_distill import DimsReport, dims_report, make_plan, plan_dims
from qdrant_distill.cli.app import app
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.distillation.config import DistillConfig
from qdrant_distill.errors import ConfigError, DimensionError
from qdrant_distill.evaluation.beir import load_beir
from qdrant_distill.evaluation.metrics import fidelity, retrieval_metrics
from qdrant_distill.inference.projection import PCAProjection
from qdrant_distill.migration.config import GateConfig, MigrationConfig
from qdrant_distill.migration.dims import parse_dims, recommend
from tests.conftest import MINILM, encode
from tests.test_migration import TEACHER_DIM, N, build_source, write_beir

SAMPLE = 200  # of N = 240 points: 20 held out, 180 to fit the PCA on


def low_rank(n: int = N, dim: int = TEACHER_DIM, rank: int = 12, seed: int = 3) -> np.ndarray:
    """Unit vectors that live (up to a little noise) in ``rank`` dimensions: 16 keeps them, 8 does not."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, dim)) + 0.01 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, demo_texts: list[str]) -> Path:
    """Read only (plans write nothing): built once for the module."""
    path = tmp_path_factory.mktemp("dims") / "qdrant"
    with QdrantConnector.open(path=str(path)) as conn:
        build_source(conn, demo_texts, vectors=low_rank())
    return path


def plan_cli(store: Path, tmp_path: Path, *args: str):
    return CliRunner().invoke(app, ["plan", "--alias", "docs", "--path", str(store), "--sample-size", str(SAMPLE),
                                    "--run-dir", str(tmp_path / "run"), "--no-progress", "--student", str(MINILM),
                                    *args])


def test_plan_dims_prints_the_table_and_writes_its_json(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "dims.json"
    result = plan_cli(store, tmp_path, "--dims", "32,8", "--dim", "16", "--dims-out", str(out))
    assert result.exit_code == 0, result.output
    assert "recall@10" in result.stdout and "recommended 16" in result.stdout and "<- --dim" in result.stdout
    report = DimsReport.read(out)
    assert [r.dim for r in report.rows] == [8, 16, 32]  # the candidates, sorted, with --dim added
    assert (report.teacher_dim, report.points, report.sample_size, report.chosen) == (TEACHER_DIM, N, SAMPLE, 16)
    assert report.holdout_size == DistillConfig().holdout_size(SAMPLE)  # the points distillation holds out
    for row in report.rows:
        assert row.bytes_per_point == {"float32": 4 * row.dim, "int8": row.dim, "binary": math.ceil(row.dim / 8)}
        assert row.bytes_collection == {k: v * N for k, v in row.bytes_per_point.items()}
        assert 0 < row.variance_kept <= 1 and row.ndcg_at_10 is None and -1 <= row.spearman <= 1
    assert report.row(8).variance_kept < report.row(16).variance_kept <= report.row(32).variance_kept
    assert report.row(8).neighbour_recall_at_10 < report.row(16).neighbour_recall_at_10
    # the rule: the smallest candidate within 1% of the largest's recall@10 (here 16: the data has rank 12)
    largest = report.rows[-1].neighbour_recall_at_10
    assert report.metric == "recall@10" and report.tolerance == 0.01
    assert report.recommended == min(r.dim for r in report.rows if r.neighbour_recall_at_10 >= 0.99 * largest) == 16
    assert "within 1%" in report.reason and not (tmp_path / "run").exists()  # the plan still writes no run folder

    as_json = plan_cli(store, tmp_path, "--dims", "8,16,32", "--dim", "16", "--json")
    plan = json.loads(as_json.stdout)
    table = DimsReport.model_validate(plan["dims"])  # the plan's JSON carries the same schema
    assert plan["dim"] == 16 and [r.dim for r in table.rows] == [8, 16, 32] and table.recommended == 16


def test_the_user_overrides_the_recommendation(store: Path, tmp_path: Path) -> None:
    """--dim decides: the table advises, marks the choice and says how to follow it; the plan keeps --dim."""
    result = plan_cli(store, tmp_path, "--dims", "8,16,32", "--dim", "8", "--json")
    plan = json.loads(result.stdout)
    report = DimsReport.model_validate(plan["dims"])
    assert plan["dim"] == 8 and report.chosen == 8 and report.recommended == 16
    assert "pass --dim 16 to follow the table" in report.render()
    # a looser rule (the Python API) moves the recommendation to the smallest candidate
    with QdrantConnector.open(path=str(store)) as conn:
        config = MigrationConfig(source="docs", dim=8, sample_size=SAMPLE, sample_seed=1)
        loose = plan_dims(config, conn, [8, 16, 32], tolerance=0.5)
    assert loose.recommended == 8 and loose.tolerance == 0.5


def test_defaults_stay_without_dims(store: Path, tmp_path: Path) -> None:
    result = plan_cli(store, tmp_path, "--dim", "16", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dims"] is None
    assert "recommended" not in plan_cli(store, tmp_path, "--dim", "16").stdout


BAD_DIMS = {
    "a,b": "ConfigError: --dims takes whole numbers",
    "": "ConfigError: --dims is empty",
    " , ": "ConfigError: --dims is empty",
    "0,8": "DimensionError: candidate dimension 0 is not positive",
    "8,48": f"DimensionError: candidate dimension 48 is not between 1 and {TEACHER_DIM - 1}",
}


def test_bad_dims_are_one_line(store: Path, tmp_path: Path) -> None:
    for dims, message in BAD_DIMS.items():
        result = plan_cli(store, tmp_path, "--dims", dims, "--dim", "16")
        assert result.exit_code == 1, dims
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
        assert "Traceback" not in result.output


def test_the_table_is_the_projection_of_the_held_out_points() -> None:
    """One row recomputed by hand: PCA fitted on the training part, fidelity on the held-out part."""
    vectors = low_rank()
    holdout = DistillConfig(seed=4)
    report = dims_report(vectors, [8, 16], holdout=holdout, points=10_000)
    fit, held = holdout.holdout_split(len(vectors))
    projection = PCAProjection.fit(vectors[fit], 8)
    expected = fidelity(projection.transform(vectors[held]), vectors[held])
    row = report.row(8)
    x = vectors[held].astype(np.float64)  # the share of the held-out points' second moment kept (uncentred)
    assert row.variance_kept == pytest.approx(float(((x @ projection.components.T) ** 2).sum() / (x**2).sum()))
    assert row.neighbour_recall_at_10 == pytest.approx(expected["fidelity/recall@10"])
    assert row.spearman == pytest.approx(expected["fidelity/spearman"])
    assert row.bytes_collection["binary"] == 10_000 and report.seconds > 0
    wide = np.hstack([vectors] * 7)  # 336-d: a 300-d candidate needs more than the 216 points the sample fits on
    with pytest.raises(ConfigError, match="needs at least 300 sampled points"):
        dims_report(wide, [300], holdout=holdout)
    with pytest.raises(DimensionError, match="not between 1 and"):
        dims_report(vectors, [TEACHER_DIM])
    assert parse_dims("384, 64,128,64") == [64, 128, 384]
    strict = min(r.dim for r in report.rows if r.neighbour_recall_at_10 >= report.rows[-1].neighbour_recall_at_10)
    assert recommend(report.rows, tolerance=0.0)[0] == strict


def test_labelled_queries_add_ndcg_through_the_teacher(tmp_path: Path, demo_texts: list[str], tiny_model,
                                                       tiny_model_path: Path) -> None:
    """With --queries and --teacher: the teacher's query vectors and the stored document vectors, both projected;
    without the teacher, the label-free figures alone and a note."""
    stored = encode(tiny_model, demo_texts[:N])  # the tiny model plays the teacher (32-d)
    write_beir(tmp_path / "beir", demo_texts)
    gate = GateConfig(queries=str(tmp_path / "beir"))
    with QdrantConnector.open(location=":memory:") as conn:
        build_source(conn, demo_texts, vectors=stored)
        config = MigrationConfig(source="docs", dim=16, sample_size=SAMPLE, sample_seed=1, gate=gate,
                                 teacher_model=str(tiny_model_path), student={"base_model": str(MINILM)})
        report = make_plan(config, conn, dims=[8]).dims
        assert report is not None
        blind = plan_dims(config.model_copy(update={"teacher_model": None}), conn, [8])
    data = load_beir(tmp_path / "beir")
    queries = encode(tiny_model, data.queries)
    docs = stored[[int(d) for d in data.doc_ids]]
    assert report.metric == "ndcg@10" and report.queries == len(data.query_ids)
    assert report.teacher_ndcg_at_10 == pytest.approx(
        retrieval_metrics(queries, docs, data.qrels, data.query_ids, data.doc_ids)["ndcg@10"], abs=1e-4)
    assert [r.dim for r in report.rows] == [8, 16] and all(0 <= r.ndcg_at_10 <= 1 for r in report.rows)
    assert report.recommended == recommend(report.rows, metric="ndcg@10")[0]
    assert "nDCG@10" in report.render() and "teacher 32-d" in report.render()
    assert blind.queries == 0 and all(r.ndcg_at_10 is None for r in blind.rows)
    assert any("--teacher" in n for n in blind.notes)
