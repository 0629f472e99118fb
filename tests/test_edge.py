"""Qdrant Edge: a real migration, then export-edge, then the same queries through the Qdrant collection and through
the Edge folder (in this process and in a child that cannot import torch); resume after a crash; bad input is one
line. Skipped where qdrant-edge-py (the [edge] extra) is not installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qdrant_edge", reason="needs qdrant-edge-py: pip install 'qdrant-distill[edge]'")

from typer.testing import CliRunner  # noqa: E402

from qdrant_distill import (  # noqa: E402
    ConfigError,
    MigrationError,
    Stage,
    edge,  # noqa: E402
    encoder_for,
    export_edge,
    migrate,
)
from qdrant_distill.cli.app import app  # noqa: E402
from qdrant_distill.connectors import QdrantConnector  # noqa: E402
from qdrant_distill.folders import EdgeFolder  # noqa: E402
from qdrant_distill.inference.formats import Backend  # noqa: E402
from qdrant_distill.migration.journal import Journal  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.test_migration import FailingUpserts, N, build_source, config  # noqa: E402
from tests.test_torch_free import BLOCK, BLOCKED  # noqa: E402

TARGET = "docs_v1_distilled16"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, demo_texts: list[str], tiny_model_path: Path) -> SimpleNamespace:
    """One embedded store: a finished migration (16-d, int8 ONNX student) behind the alias ``docs``, and a second
    one (8-d) that crashed in the middle of re-embed."""
    root = tmp_path_factory.mktemp("edge")
    store = root / "store"
    with QdrantConnector.open(path=str(store)) as conn:
        build_source(conn, demo_texts)
        report = migrate(config(tiny_model_path, root / "run"), connector=conn)
        assert report.stage is Stage.SWAPPED and report.backend == "onnx-int8"
        with pytest.raises(RuntimeError, match="injected crash"):
            migrate(config(tiny_model_path, root / "crashed", dim=8), connector=FailingUpserts(conn, fail_at=2))
    queries = [demo_texts[i][:40] for i in range(0, 200, 20)]  # 10 queries cut from the documents
    return SimpleNamespace(root=root, store=store, run=root / "run", crashed=root / "crashed", queries=queries)


@pytest.fixture(scope="module")
def folder(runs: SimpleNamespace) -> Path:
    """The finished migration exported through the API (from its run folder)."""
    out = runs.root / "edge"
    with QdrantConnector.open(path=str(runs.store)) as conn:
        manifest = export_edge(runs.run, out, connector=conn, progress=False)
    assert manifest.finished and manifest.points == manifest.expected == N
    return out


def collection_top10(runs: SimpleNamespace) -> tuple[list[list[Any]], dict[Any, dict]]:
    """The top-10 ids of each query through the Qdrant collection (local mode: exact), with their payloads."""
    with QdrantConnector.open(path=str(runs.store)) as conn:
        enc = encoder_for(conn, "docs")
        ids = [[pid for pid, _ in conn.search(enc.collection, vec, limit=10, vector_name=enc.vector_name or None)]
               for vec in (enc.encode(q)[0] for q in runs.queries)]  # one at a time, as the Edge folder answers
        payloads = {p.id: p.payload for p in conn.retrieve(enc.collection, sorted({i for row in ids for i in row}))}
    return ids, payloads


def cli(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr together, and stdout alone."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output, result.stdout


def test_the_edge_folder_answers_like_the_collection(runs: SimpleNamespace, folder: Path) -> None:
    expected, payloads = collection_top10(runs)
    with edge.open(folder) as index, edge.open(folder) as second:  # readers share a folder
        got = [index.search(q, limit=10, exact=True) for q in runs.queries]
        assert index.count() == second.count() == N and "onnx-int8" in index.describe()
    assert [[h.id for h in hits] for hits in got] == expected
    assert all(h.payload == payloads[h.id] for hits in got for h in hits)
    manifest = edge.read_edge_manifest(folder)
    assert manifest.source_collection == TARGET and manifest.source_alias == "docs" and manifest.dim == 16
    assert manifest.backend == "onnx-int8" and manifest.teacher.startswith("stored:docs_v1")
    student = sorted(p.name for p in EdgeFolder(folder).student.root.iterdir())
    assert "model_int8.onnx" in student and "model.onnx" not in student  # the one format the collection uses


def test_a_child_without_torch_answers_from_the_folder(runs: SimpleNamespace, folder: Path) -> None:
    child = BLOCK + textwrap.dedent('''
        from qdrant_distill import edge

        with edge.open(FOLDER) as index:
            ids = [[h.id for h in index.search(q, limit=10, exact=True)] for q in QUERIES]
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(json.dumps({"ids": ids, "loaded": loaded}))
    ''')
    script = f"BLOCKED = {BLOCKED!r}\nFOLDER = {str(folder)!r}\nQUERIES = {runs.queries!r}\n{child}"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [] and report["ids"] == collection_top10(runs)[0]


class CrashingScroll(QdrantConnector):
    """Raises after ``pages`` pages of the export's scroll: a kill in the middle of export-edge."""

    def __init__(self, inner: QdrantConnector, pages: int) -> None:
        super().__init__(inner.client)
        self.pages = pages

    def scroll(self, collection: str, **kwargs: Any):
        for n, page in enumerate(super().scroll(collection, **kwargs)):
            if n == self.pages:
                raise RuntimeError("injected crash")
            yield page


def test_a_killed_export_resumes_and_hnsw_agrees_with_exact_search(runs: SimpleNamespace) -> None:
    out = runs.root / "resumed"
    with QdrantConnector.open(path=str(runs.store)) as conn:
        with pytest.raises(RuntimeError, match="injected crash"):
            export_edge("docs", out, connector=CrashingScroll(conn, pages=2), page_size=50, hnsw=True, progress=False)
        half = edge.read_edge_manifest(out)
        assert not half.finished and half.points == 100 and half.checkpoint is not None
        with pytest.raises(ConfigError, match="did not finish"):
            edge.open(out)
        manifest = export_edge("docs", out, connector=conn, page_size=50, hnsw=True, progress=False)
    assert manifest.finished and manifest.points == N and manifest.started_at == half.started_at  # resumed
    expected = collection_top10(runs)[0]
    with edge.open(out) as index:
        assert index.shard.raw.info().indexed_vectors_count == N  # HNSW built at this size because asked
        approximate = [[h.id for h in index.search(q, limit=10)] for q in runs.queries]
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approximate, expected)])
    assert recall >= 0.9, recall  # HNSW is approximate; at 240 points it finds (nearly) every exact neighbour


def test_bad_input_is_one_line(runs: SimpleNamespace, folder: Path, tmp_path: Path) -> None:
    store = ["--path", str(runs.store)]

    def refused(*args: str) -> str:
        code, output, _ = cli("export-edge", *args, *store, "--no-progress")
        assert code == 1 and len(output.strip().splitlines()) == 1 and output.startswith("error:"), output
        return output

    assert "has not finished" in refused(str(runs.crashed), "--out", str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()
    assert "CollectionNotFound" in refused("nope", "--out", str(tmp_path / "a"))

    journal = Journal.load(runs.run)  # the same finished run, its export gone
    moved = tmp_path / "moved-run"
    moved.mkdir()
    journal.path, journal.export_path = str(moved / "journal.json"), str(tmp_path / "gone")
    journal.save()
    assert "export of the student is missing" in refused(str(moved), "--out", str(tmp_path / "b"))
    journal.backend = Backend.TORCH
    journal.save()
    assert "runs on torch" in refused(str(moved), "--out", str(tmp_path / "b"))

    busy = tmp_path / "busy"
    (busy / "notes.txt").parent.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert "is not empty" in refused(str(runs.run), "--out", str(busy))
    assert "already holds a finished Edge export" in refused(str(runs.run), "--out", str(folder))
    with edge.open(folder):  # open in an application: an export may not write into it
        assert "is in use" in refused(str(runs.run), "--out", str(folder), "--overwrite")
    assert "that no export-edge wrote" in refused(str(runs.run), "--out", str(runs.run), "--overwrite")
    assert (runs.run / "student").is_dir() and not (runs.run / ".lock").exists()  # a run folder is left alone
    with pytest.raises(ConfigError, match="not an Edge folder"):
        edge.open(busy)
    assert (busy / "notes.txt").read_text() == "mine"


def test_cli_exports_by_alias_beside_other_files_when_told(runs: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "device"
    out.mkdir()
    (out / "app.cfg").write_text("keep")
    code, output, _ = cli("export-edge", "docs", "--out", str(out), "--path", str(runs.store), "--overwrite",
                          "--no-progress")
    assert code == 0, output
    assert f"{N} points of {TARGET} (16-d, onnx-int8 student)" in output
    assert (out / "app.cfg").read_text() == "keep"
    code, _, again = cli("export-edge", "docs", "--out", str(out), "--path", str(runs.store), "--overwrite",
                         "--no-progress", "--json")
    assert code == 0 and json.loads(again)["points"] == N


def test_the_api_errors_are_typed(runs: SimpleNamespace, tmp_path: Path) -> None:
    with QdrantConnector.open(path=str(runs.store)) as conn:
        with pytest.raises(MigrationError, match="has not finished"):
            export_edge(runs.crashed, tmp_path / "x", connector=conn)
        with pytest.raises(ConfigError, match="not a run folder"):
            export_edge(tmp_path, tmp_path / "x", connector=conn)
