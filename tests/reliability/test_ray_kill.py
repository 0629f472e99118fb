"""SIGKILL the driver of a Ray-engine migration in the middle of its re-embed, run the same command again: nothing is
lost or duplicated, the ranges written before the kill are not written again, and the target equals a clean local
run's."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.reliability.conftest import store_state
from tests.reliability.test_kill import (
    CLI,
    N,
    args,
    clean_run,
    journal,
    kill_when,
    pristine,
    run_to_end,
    target_points,
)

pytest.importorskip("ray")  # a guard only: scripts/setup.sh installs the ray extra, so CI runs this

__all__ = ["clean_run", "pristine"]  # the clean local run and the pristine store, shared with test_kill

RANGE_SIZE = 200  # 10 ranges of 2,000 points


def some_ranges_written(j: dict[str, Any], t: float) -> bool:
    done = sum(r["done"] for r in j.get("ranges", []))
    return 2 <= done < len(j["ranges"]) - 2


@pytest.mark.slow
def test_driver_killed_mid_reembed_then_rerun_redoes_only_unfinished_ranges(pristine: Path, clean_run: dict[str, Any],
                                                                           tiny_model_path: Path) -> None:
    store, run_dir = pristine / "ray", pristine / "ray-run"
    shutil.copytree(pristine / "pristine", store)
    settings = pristine / "ray.toml"
    settings.write_text(f"[ray]\nrange_size = {RANGE_SIZE}\n")
    cmd = CLI + args(store, run_dir, tiny_model_path) + ["--engine", "ray", "--workers", "2", "--config",
                                                         str(settings)]
    kill_when(cmd, run_dir, some_ranges_written)
    before = journal(run_dir)
    written_before = {i: r["written_at"] for i, r in enumerate(before["ranges"]) if r["done"]}
    assert 2 <= len(written_before) < len(before["ranges"]) and before["stage"] == "created"
    done = run_to_end(cmd)
    assert done.returncode == 0, done.stderr[-3000:]
    after = journal(run_dir)
    assert after["stage"] == "swapped" and after["points_written"] == N and len(after["ranges"]) == N // RANGE_SIZE
    assert all(r["done"] for r in after["ranges"])
    for i, at in written_before.items():  # finished ranges were not redone
        assert after["ranges"][i]["written_at"] == at
    assert store_state(store)["collections"]["docs_v1"] == clean_run["source"]  # the source never changes
    got, want = target_points(store), clean_run["points"]  # target_points also asserts no id twice
    assert got.keys() == want.keys() and len(got) == N
    for pid, (payload, vector) in want.items():
        assert got[pid][0] == payload
        np.testing.assert_allclose(got[pid][1], vector, atol=1e-5)
