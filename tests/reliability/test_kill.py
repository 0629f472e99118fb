"""SIGKILL anywhere: the CLI migration killed at 16 moments over sample, distill, create, re-embed, verify and swap,
resumed by running the same command again, ends exactly where a clean run ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models as qm

from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.connectors.base import UNNAMED, Point
from tests.conftest import REPO, random_unit
from tests.reliability.conftest import FIGURES, fast_dir, store_state

N = 2000
TEACHER_DIM = 48
TARGET = "docs_v1_distilled16"
RUN_TIMEOUT_S = 180
TRAP = [sys.executable, "-m", "tests.reliability.crashpoints"]
SCRIPT = Path(sys.executable).with_name("qdrant-distill")
CLI = [str(SCRIPT)] if SCRIPT.exists() else TRAP  # the installed command; without a crash point the same thing

# A kill is ("trap", crash point) -- SIGKILL from inside at an exact moment (see crashpoints.py) -- or
# ("external", name) -- SIGKILL from this test when the journal shows the condition.
CHAINS: dict[str, list[tuple[str, str]]] = {
    "sample-distill": [
        ("trap", "sample-drawn"),
        ("trap", "before:sampled"),
        # 1 s after the start: imports, plan, the sample or the start of training. (It used to come first, but with
        # the torch-free import a run can be past its sample within 1 s, and the traps above were then unreachable.)
        ("external", "startup"),
        ("external", "distill"),  # 0.5 s into training
        ("trap", "before:distilled"),
    ],
    "create-reembed": [
        ("trap", "before:created"),  # the target exists, the journal does not know it
        ("external", "reembed-300"),
        ("trap", "upsert:3"),  # a page written, its checkpoint not
        ("trap", "journal-write:4"),  # a checkpoint half written (temporary file, no rename)
        ("external", "reembed-1400"),
        ("trap", "before:reembedded"),
    ],
    "verify-swap": [
        ("trap", "verify"),  # after the catch-up pass
        ("trap", "before:verified"),
        ("trap", "alias-request"),  # previous target journaled, alias request not sent
        ("trap", "before:swapped"),  # alias moved, the journal does not know it
        ("trap", "after:swapped"),  # journal says swapped, metadata not mirrored
    ],
}


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("QDRANT_", "QD_CRASH"))}
    e.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
             MKL_NUM_THREADS="1", QDRANT_DISTILL_SAMPLE_SEED="3", PYTHONPATH=str(REPO))
    return e


def args(store: Path, run_dir: Path, model: Path) -> list[str]:
    return ["migrate", "--alias", "docs", "--yes", "--path", str(store), "--student", str(model), "--dim", "16",
            "--sample-size", "100", "--max-steps", "2", "--min-recall", "0", "--min-spearman", "-1",
            "--page-size", "50", "--run-dir", str(run_dir), "--no-progress",
            "--export", "onnx"]  # fp32: a text's vector does not depend on its batch (the Ray engine batches otherwise)


def journal(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "journal.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def in_distill(j: dict[str, Any], t: float) -> bool:
    """0.5 s into training; should training be quicker than that, at once (still before the re-embed ends)."""
    if j.get("stage") == "sampled":
        return j["stage_times"]["sampled"] + 0.5 < time.time()
    return j.get("stage") in ("distilled", "gated", "created")


CONDITIONS: dict[str, Callable[[dict[str, Any], float], bool]] = {
    "startup": lambda j, t: t > 1.0,
    "distill": in_distill,
    "reembed-300": lambda j, t: j.get("points_written", 0) >= 300,
    "reembed-1400": lambda j, t: j.get("points_written", 0) >= 1400,
}


def run_to_end(cmd: list[str], extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env={**env(), **(extra or {})}, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)


def kill_when(cmd: list[str], run_dir: Path, condition: Callable[[dict[str, Any], float], bool]) -> int:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - started < RUN_TIMEOUT_S:
            if condition(journal(run_dir), time.monotonic() - started):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait(timeout=RUN_TIMEOUT_S)
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill ({proc.returncode}): {stderr[-2000:]}"
    return proc.returncode


def build_store(path: Path, texts: list[str]) -> None:
    vectors = random_unit(N, TEACHER_DIM, seed=7)
    with QdrantConnector.open(path=str(path)) as conn:
        conn.client.create_collection("docs_v1", vectors_config=qm.VectorParams(size=TEACHER_DIM,
                                                                               distance=qm.Distance.COSINE))
        points = [Point(id=i, payload={"text": texts[i % len(texts)], "n": i, "tags": ["a", str(i % 3)]},
                        vectors={UNNAMED: vectors[i]}) for i in range(N)]
        for start in range(0, N, 500):
            conn.upsert("docs_v1", points[start:start + 500])
        conn.create_alias("docs", "docs_v1")


def target_points(store: Path) -> dict[Any, tuple[dict[str, Any], np.ndarray]]:
    with QdrantConnector.open(path=str(store)) as conn:
        ids: list[Any] = []
        out: dict[Any, tuple[dict[str, Any], np.ndarray]] = {}
        for page in conn.scroll(TARGET, page_size=500, with_vectors=True):
            for p in page.points:
                ids.append(p.id)
                out[p.id] = (p.payload, np.asarray(p.vectors[UNNAMED], dtype=np.float32))
        assert len(ids) == len(set(ids)) == conn.count(TARGET)  # no duplicated point
    return out


@pytest.fixture(scope="module")
def pristine(demo_texts: list[str]) -> Iterator[Path]:
    root = fast_dir("kill")
    build_store(root / "pristine", demo_texts)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def clean_run(pristine: Path, tiny_model_path: Path) -> dict[str, Any]:
    store, run_dir = pristine / "clean", pristine / "clean-run"
    shutil.copytree(pristine / "pristine", store)
    done = run_to_end(CLI + args(store, run_dir, tiny_model_path))
    assert done.returncode == 0, done.stderr[-3000:]
    return {"points": target_points(store), "source": store_state(pristine / "pristine")["collections"]["docs_v1"]}


@pytest.mark.slow
@pytest.mark.parametrize("chain", list(CHAINS))
def test_sigkill_anywhere_then_rerun_matches_a_clean_run(chain, pristine, clean_run, tiny_model_path) -> None:
    store, run_dir = pristine / chain, pristine / f"{chain}-run"
    shutil.copytree(pristine / "pristine", store)
    cmd = args(store, run_dir, tiny_model_path)
    stages_at_kill = []
    for kind, point in CHAINS[chain]:
        if kind == "trap":
            done = run_to_end(TRAP + cmd, {"QD_CRASH_AT": point})
            assert done.returncode == -signal.SIGKILL, f"crash point {point} not reached: {done.stderr[-3000:]}"
        else:
            kill_when(CLI + cmd, run_dir, CONDITIONS[point])
        j = journal(run_dir)
        stages_at_kill.append((point, j.get("stage"), j.get("points_written")))
        # the folder's lock died with the process: the store reopens at once, and the alias is never on a half-built
        # target
        with QdrantConnector.open(path=str(store)) as conn:
            alias = conn.alias_target("docs")
            assert alias in ("docs_v1", TARGET)
            if alias == TARGET:
                assert conn.count(TARGET) == N and j.get("stage") in ("verified", "swapped")
        FIGURES["kills survived"] = FIGURES.get("kills survived", 0) + 1
    done = run_to_end(CLI + cmd)
    assert done.returncode == 0, done.stderr[-3000:]

    final = journal(run_dir)
    assert final["stage"] == "swapped" and final["points_written"] + len(final["skipped_ids"]) >= N
    state = store_state(store)
    assert state["aliases"] == {"docs": TARGET}
    assert state["collections"]["docs_v1"] == clean_run["source"]  # the source never changes
    assert set(state["collections"]) == {"docs_v1", TARGET}
    with QdrantConnector.open(path=str(store)) as conn:  # the metadata mirror caught up with the journal too
        recorded = conn.describe(TARGET).metadata["qdrant_distill"]
    assert recorded["run_id"] == final["run_id"] and recorded["stage"] == "swapped"
    assert recorded["previous_target"] == "docs_v1" and Path(recorded["query_model"]).is_dir()
    got, want = target_points(store), clean_run["points"]
    assert got.keys() == want.keys() and len(got) == N  # 0 lost, 0 extra
    worst = 0.0
    for pid, (payload, vector) in want.items():
        assert got[pid][0] == payload
        np.testing.assert_allclose(got[pid][1], vector, atol=1e-5)
        worst = max(worst, float(np.abs(got[pid][1] - vector).max()))
    FIGURES.setdefault("largest vector difference from the clean run", {})[chain] = f"{worst:.2e}"
    FIGURES.setdefault("kill moments (crash point, journal stage, points written)", {})[chain] = stages_at_kill
