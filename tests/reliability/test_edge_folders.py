"""A damaged Edge folder never answers in silence (issue 31, item 4): the loader checks edge.json against the shard
(points, dimension, vector name, vectors a cosine can score) and refuses with one BrokenEdgeFolder;
examples/edge_search.py prints one line for each kind of damage, never a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_edge", reason="needs qdrant-edge-py: pip install 'qdrant-distill[edge]'")

from qdrant_distill import edge, export_edge, migrate  # noqa: E402
from qdrant_distill.connectors import QdrantConnector  # noqa: E402
from qdrant_distill.errors import BrokenEdgeFolder, ConfigError  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.reliability.conftest import FIGURES  # noqa: E402
from tests.test_migration import N, build_source, config  # noqa: E402


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, demo_texts: list[str], tiny_model_path: Path) -> Path:
    root = tmp_path_factory.mktemp("edge-damage")
    with QdrantConnector.open(path=str(root / "store")) as conn:
        build_source(conn, demo_texts)
        migrate(config(tiny_model_path, root / "run"), connector=conn)
        assert export_edge(root / "run", root / "edge", connector=conn, progress=False).points == N
    return root / "edge"


def _segments(folder: Path) -> list[Path]:
    return sorted((folder / "shard" / "segments").iterdir())


def _edit(**fields: object) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / "edge.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    return edit


def _scramble(folder: Path) -> None:
    chunk = _segments(folder)[0] / "vector_storage" / "vectors" / "chunk_0.mmap"
    with chunk.open("r+b") as fh:
        fh.write(np.random.default_rng(1).bytes(N * 16 * 4))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "segments removed": (lambda f: shutil.rmtree(f / "shard" / "segments"), f"holds 0 points, edge.json says {N}"),
    "segments emptied": (lambda f: [shutil.rmtree(s) for s in _segments(f)], f"holds 0 points, edge.json says {N}"),
    "id tracker deleted": (lambda f: [p.unlink() for s in _segments(f) for p in s.glob("mutable_id_tracker.*")],
                           "Edge shard"),
    "vector bytes scrambled": (_scramble, "holds damaged vectors (a probe scored"),
    "points in edge.json": (_edit(points=999), f"holds {N} points, edge.json says 999"),
    "dim in edge.json": (_edit(dim=8), "encodes 16-d vectors, edge.json says 8"),
    "vector name in edge.json": (_edit(vector_name="dense"), "has no vector 'dense' (it has '')"),
    "shard removed": (lambda f: shutil.rmtree(f / "shard"), "has no shard"),
}  # edge_config.json deleted is no damage: the shard writes it again from its segments, and answers rightly


def damaged(written: Path, tmp_path: Path, case: str) -> Path:
    folder = shutil.copytree(written, tmp_path / "edge")
    DAMAGE[case][0](folder)
    return folder


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_folder_is_refused_when_opened(case: str, written: Path, tmp_path: Path) -> None:
    folder = damaged(written, tmp_path, case)
    with pytest.raises(ConfigError) as raised:
        edge.open(folder).close()
    assert isinstance(raised.value, BrokenEdgeFolder), repr(raised.value)
    assert DAMAGE[case][1] in str(raised.value) and "export-edge" in str(raised.value), str(raised.value)
    with edge.open(shutil.copytree(written, tmp_path / "whole")) as index:  # the undamaged copy still answers
        assert index.count() == N
    FIGURES.setdefault("edge: damaged folders refused", set()).add(case)


@pytest.mark.parametrize("case", [*DAMAGE, "vector chunk truncated"])
def test_the_example_prints_one_line_for_each_damage(case: str, written: Path, tmp_path: Path) -> None:
    if case == "vector chunk truncated":
        folder = shutil.copytree(written, tmp_path / "edge")
        chunk = _segments(folder)[0] / "vector_storage" / "vectors" / "chunk_0.mmap"
        chunk.write_bytes(chunk.read_bytes()[:100])
    else:
        folder = damaged(written, tmp_path, case)
    done = subprocess.run([sys.executable, str(REPO / "examples" / "edge_search.py"), "a stream of water",
                           "--folder", str(folder)], capture_output=True, text=True, timeout=120, cwd=REPO)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: BrokenEdgeFolder: ") and not done.stdout, done.stderr
