"""Shared pieces of the reliability suite: fast store folders, a store hash, a retry policy that never sleeps,
and the figures every test reports (printed at the end of the run, quoted in docs/reliability.md)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tenacity import wait_none

from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.connectors._faults import RetryPolicy

FIGURES: dict[str, Any] = {}


def fast_dir(prefix: str) -> Path:
    """A temporary folder on tmpfs when there is one: local mode commits every point to SQLite, and on a real disk
    2,000 points take ~40 s of fsync. A SIGKILL does not lose the page cache, so tmpfs changes nothing we test."""
    base = Path("/dev/shm")
    root = base if base.is_dir() and _writable(base) else None
    return Path(tempfile.mkdtemp(prefix=f"qd-rel-{prefix}-", dir=root))


@contextmanager
def source_store(prefix: str, texts: list[str]) -> Iterator[Path]:
    """A store on tmpfs (:func:`fast_dir`) holding ``docs_v1`` behind the alias ``docs`` (``build_source``: one point
    per text), removed afterwards: the shared source of a module's tests."""
    from tests.test_migration import build_source

    root = fast_dir(prefix)
    try:
        with QdrantConnector.open(path=str(root / "qdrant")) as conn:
            build_source(conn, texts)
        yield root / "qdrant"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _writable(path: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


@pytest.fixture
def fast_tmp() -> Iterator[Path]:
    path = fast_dir("t")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def store_state(path: Path) -> dict[str, Any]:
    """Every collection of an embedded store hashed (ids, payloads, vectors, config, metadata), plus the aliases."""
    with QdrantConnector.open(path=str(path)) as conn:
        return connector_state(conn)


def connector_state(conn: QdrantConnector) -> dict[str, Any]:
    state: dict[str, Any] = {"aliases": conn.aliases(), "collections": {}}
    for name in conn.collections():
        h = hashlib.sha256()
        info = conn.client.get_collection(name)
        h.update(info.config.model_dump_json().encode())
        for page in conn.scroll(name, page_size=500, with_vectors=True):
            for p in page.points:
                h.update(json.dumps([p.id, p.payload, p.vectors], sort_keys=True, default=str).encode())
        state["collections"][name] = h.hexdigest()
    return state


def no_sleep_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connectors the CLI opens retry without sleeping (the retry logic itself stays as it is)."""
    import qdrant_distill.connectors.qdrant as cq

    monkeypatch.setattr(cq, "RetryPolicy", lambda **kw: RetryPolicy(**{"wait": wait_none(), **kw}))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.write_sep("-", "reliability figures")
        for key in sorted(FIGURES):
            value = FIGURES[key]
            if isinstance(value, set):
                value = f"{len(value)} distinct cases"
            terminalreporter.write_line(f"{key}: {value}")
