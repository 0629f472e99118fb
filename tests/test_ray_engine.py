"""The Ray engine on a real local Ray (2 CPUs), a real tiny student and real qdrant-client local mode: it writes what
the local engine writes, survives an actor killed mid-run, and its server path's stages run the same records."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdrant_distill import ConfigError, Stage, migrate, open_journal
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.connectors.base import UNNAMED, Point
from qdrant_distill.connectors.scroll import id_key, id_ranges, scroll_range
from tests.conftest import REPO
from tests.test_migration import build_source, points_of
from tests.test_migration import config as migration_config

ray = pytest.importorskip("ray")  # a guard only: scripts/setup.sh installs the ray extra, so CI runs these

TARGET = "docs_v1_distilled16"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def config(model: Path, run_dir: Path, **overrides: Any):
    """The students run as their fp32 ONNX graph: it gives a text the same vector in any batch, so the two engines
    (which batch differently) agree within 1e-5. An int8 graph quantises activations per batch (docs/encoders.md)."""
    cfg = migration_config(model, run_dir, **overrides)
    return cfg.model_copy(update={"student": cfg.student.model_copy(update={"export": "onnx"})})


def ray_config(model: Path, run_dir: Path, **overrides: Any):
    return config(model, run_dir, engine="ray", ray={"workers": 2, "range_size": 64, **overrides.pop("ray", {})},
                  **overrides)


def assert_same_points(a: dict[Any, Point], b: dict[Any, Point], vector: str = UNNAMED) -> None:
    assert a.keys() == b.keys() and len(a) > 0
    for pid in a:
        assert a[pid].payload == b[pid].payload
        assert a[pid].vectors.keys() == b[pid].vectors.keys()
        np.testing.assert_allclose(a[pid].vectors[vector], b[pid].vectors[vector], atol=1e-5)


@pytest.fixture(scope="module")
def local_result(demo_texts, tiny_model_path, tmp_path_factory) -> dict[Any, Point]:
    """The local engine's target (the reference every Ray run is compared with)."""
    conn = QdrantConnector.open(location=":memory:")
    build_source(conn, demo_texts)
    migrate(config(tiny_model_path, tmp_path_factory.mktemp("local")), connector=conn)
    return points_of(conn, TARGET)


@pytest.mark.parametrize("named", [False, True])
def test_the_ray_engine_writes_what_the_local_engine_writes(named, demo_texts, tiny_model_path, tmp_path) -> None:
    targets = []
    for engine in ("local", "ray"):
        conn = QdrantConnector.open(location=":memory:")
        build_source(conn, demo_texts, named=named)
        extra = {"vector_name": "dense"} if named else {}
        cfg = ray_config(tiny_model_path, tmp_path / engine, **extra) if engine == "ray" else config(
            tiny_model_path, tmp_path / engine, **extra)
        report = migrate(cfg, connector=conn)
        assert report.stage is Stage.SWAPPED and report.points_written == 240
        targets.append(points_of(conn, TARGET))
        conn.close()
    assert_same_points(*targets, vector="dense" if named else UNNAMED)  # ids, payloads, every vector kept
    journal = open_journal(tmp_path / "ray")
    assert [r.done for r in journal.ranges] == [True] * 4 and sum(r.written for r in journal.ranges) == 240
    assert journal.checkpoint is None and journal.reembed_finished


def test_an_actor_killed_mid_run_is_restarted_and_the_result_is_the_same(demo_texts, tiny_model_path, tmp_path,
                                                                         local_result) -> None:
    conn = QdrantConnector.open(location=":memory:")
    build_source(conn, demo_texts)
    run_dir = tmp_path / "run"
    # one page per call and a slow page write: the run lasts long enough to kill an actor in the middle of it
    cfg = ray_config(tiny_model_path, run_dir, page_size=10, ray={"range_size": 40})
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = migrate(cfg, connector=conn)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    killed = None
    deadline = time.monotonic() + 120
    while worker.is_alive() and time.monotonic() < deadline and killed is None:
        journal = _journal(run_dir)
        if any(r["done"] for r in journal.get("ranges", [])):
            actor = ray.get_actor(f"qd-encode-{journal['run_id'][:8]}-0")
            pid = ray.get(actor.pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed = sum(r["done"] for r in journal["ranges"]), len(journal["ranges"])
        time.sleep(0.02)
    worker.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    assert killed is not None and killed[0] < killed[1], f"no actor killed mid-run: {killed}"
    assert outcome["report"].stage is Stage.SWAPPED and outcome["report"].points_written == 240
    assert_same_points(points_of(conn, TARGET), local_result)


def _journal(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "journal.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_the_server_path_stages_write_the_same_records(demo_texts, tiny_model_path, tmp_path, local_result) -> None:
    """ReadRange -> EncodeBatch -> WriteRows -> tally, the Ray Data stages of the server path, run in this process
    on the embedded store (Ray Data runs them in workers, each with its own client, which only a server allows)."""
    from qdrant_distill.migration.engines.ray import (
        EncodeBatch,
        ReadRange,
        WriteRows,
        _tally,
        encoded_elsewhere,
    )
    from qdrant_distill.migration.journal import IdRange, Journal
    from qdrant_distill.migration.pipeline import _converter

    conn = QdrantConnector.open(location=":memory:")
    build_source(conn, demo_texts)
    report = migrate(config(tiny_model_path, tmp_path / "run"), connector=conn)  # the student, and a target
    conn.client.delete_collection(TARGET)
    info = conn.describe("docs_v1")
    conn.create_like(info, name=TARGET, vector_name=UNNAMED, size=16)
    journal = open_journal(tmp_path / "run")
    cfg = config(tiny_model_path, tmp_path / "run")
    plan = type("Plan", (), {"vector_name": UNNAMED})()
    converter = dataclasses.replace(_converter(cfg, journal, plan), encode=encoded_elsewhere)
    jr = Journal(path=str(tmp_path / "j" / "journal.json"))
    (tmp_path / "j").mkdir()
    jr.ranges = [IdRange(start=s, end=e) for s, e in id_ranges(conn, "docs_v1", 64)]
    read = ReadRange(conn, source="docs_v1", ranges=[(r.start, r.end) for r in jr.ranges], converter=converter,
                     vectors=False, page_size=50)
    encode = EncodeBatch(report.student_path, batch_size=16)
    write = WriteRows(conn, target=TARGET, converter=converter)
    rows = [row for i in range(len(jr.ranges)) for row in read({"range": i})]
    assert sum(r["count"] >= 0 for r in rows) == len(jr.ranges)
    tallies = []
    for start in range(0, len(rows), 50):  # batches cut across ranges, as Ray Data cuts them
        batch = {k: np.asarray([r[k] for r in rows[start:start + 50]]) for k in rows[0]}
        tallies.append(write(encode(batch)))

    class Bar:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

    bar = Bar()
    _tally(iter(tallies), jr, bar)
    assert all(r.done for r in jr.ranges) and jr.points_written == 240 and bar.n == 240
    assert_same_points(points_of(conn, TARGET), local_result)


def test_id_ranges_cover_every_point_once_in_scroll_order(tmp_path) -> None:
    conn = QdrantConnector.open(location=":memory:")
    from qdrant_client import models as qm

    conn.client.create_collection("c", vectors_config=qm.VectorParams(size=2, distance=qm.Distance.COSINE))
    ids: list[Any] = [*range(0, 300, 3), *(str(uuid.UUID(int=k * 7919)) for k in range(1, 60))]
    conn.upsert("c", [Point(id=i, payload={"k": n}, vectors={UNNAMED: [1.0, 0.5]}) for n, i in enumerate(ids)])
    ranges = id_ranges(conn, "c", 25)
    assert len(ranges) == -(-len(ids) // 25) and ranges[-1][1] is None
    assert [id_key(s) for s, _ in ranges] == sorted(id_key(s) for s, _ in ranges)  # ints first, then UUIDs
    conn.delete_points("c", [ranges[2][0]])  # a boundary point deleted after the split moves nothing
    seen = [p.id for s, e in ranges for page in scroll_range(conn, "c", s, e, page_size=7, vectors=False)
            for p in page.points]
    assert len(seen) == len(set(seen)) == len(ids) - 1


def test_a_gpu_request_the_cluster_cannot_meet_stops_before_sampling(demo_texts, tiny_model_path, tmp_path) -> None:
    conn = QdrantConnector.open(location=":memory:")
    build_source(conn, demo_texts)
    with pytest.raises(ConfigError, match="2 Ray workers with --gpus-per-worker 1 need 2 GPUs; this machine has 0"):
        migrate(ray_config(tiny_model_path, tmp_path / "run", ray={"gpus_per_worker": 1}), connector=conn)
    # refused in the plan: no journal, nothing created
    assert not (tmp_path / "run" / "journal.json").exists() and conn.collections() == ["docs_v1"]


BLOCK_RAY = textwrap.dedent('''
    import importlib.abc, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "ray":
                raise ImportError("blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    import importlib.util
    importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] == "ray" else _find(name, *a)
''')


def test_engine_ray_without_ray_is_one_line_and_changes_nothing(demo_texts, tiny_model_path, tmp_path) -> None:
    from tests.reliability.conftest import store_state

    store = tmp_path / "store"
    with QdrantConnector.open(path=str(store)) as conn:
        build_source(conn, demo_texts)
    before = store_state(store)
    child = ("import importlib.util as u\n_find = u.find_spec\n" + BLOCK_RAY +
             "from qdrant_distill.cli.app import main\nsys.argv[0] = 'qdrant-distill'\nmain()\n")
    done = subprocess.run(
        [sys.executable, "-c", child, "migrate", "--alias", "docs", "--yes", "--path", str(store), "--student",
         str(tiny_model_path), "--dim", "16", "--sample-size", "100", "--engine", "ray",
         "--run-dir", str(tmp_path / "run"), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'qdrant-distill[ray]'" in lines[0], done.stderr
    assert store_state(store) == before and not (tmp_path / "run" / "journal.json").exists()


def test_a_page_that_never_comes_back_is_one_error_after_the_wait_timeout() -> None:
    """Every wait on Ray is bounded: an actor that never answers is a MigrationError after `ray.wait_timeout_s`
    (here 0.5 s), not a hang; the journal keeps what was written and a rerun resumes."""
    from ray.util import ActorPool

    from qdrant_distill.errors import MigrationError
    from qdrant_distill.migration.engines.ray import next_result

    @ray.remote(num_cpus=0)
    class Stuck:
        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            time.sleep(120)
            return batch

    actor = Stuck.remote()
    pool = ActorPool([actor])
    pool.submit(lambda a, batch: a.__call__.remote(batch), {"text": ["never encoded"]})
    started = time.perf_counter()
    with pytest.raises(MigrationError, match=r"waited 0.5 s for a page's vectors in vain"):
        next_result(pool, 0.5)
    assert time.perf_counter() - started < 10
    ray.kill(actor)
