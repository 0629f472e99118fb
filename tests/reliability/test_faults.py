"""Transient faults are retried (visibly) and change nothing in the result; other faults stop at once, typed, with
nothing half-done."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from tenacity import wait_none

from qdrant_distill import (
    CollectionNotFound,
    ConnectorError,
    DistillError,
    ServerError,
    Stage,
    migrate,
    open_journal,
)
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.connectors._faults import RetryPolicy
from qdrant_distill.connectors.base import UNNAMED
from tests.faults import FlakyClient, http_error
from tests.reliability.conftest import FIGURES, connector_state
from tests.test_migration import build_source, config, points_of

N = 600
PAGE = 20  # small pages: many calls, so a 10% fault rate injects a dozen faults or more
FAULT_KINDS = ("connection reset", "timeout", "503", "429", "UNAVAILABLE", "DEADLINE_EXCEEDED", "504")


class LostAnswers(FlakyClient):
    """Like FlakyClient, but the call reaches the store first and only the answer is lost."""

    lost_answer = True


def source(demo_texts: list[str]) -> QdrantClient:
    client = QdrantClient(":memory:")
    build_source(QdrantConnector(client), demo_texts, n=N)
    return client


def run(client: Any, tiny_model_path: Path, run_dir: Path) -> Any:
    conn = QdrantConnector(client, retry=RetryPolicy(attempts=10, wait=wait_none()))
    report = migrate(config(tiny_model_path, run_dir, page_size=PAGE, sample_size=120), connector=conn)
    return report, conn


@pytest.fixture(scope="module")
def fault_free(demo_texts, tiny_model_path, tmp_path_factory) -> dict[Any, Any]:
    client = source(demo_texts)
    report, conn = run(client, tiny_model_path, tmp_path_factory.mktemp("clean") / "run")
    assert report.stage is Stage.SWAPPED and conn.retry.retries == 0
    return points_of(conn, report.target)


@pytest.mark.parametrize("kind", [FlakyClient, LostAnswers], ids=["dropped-requests", "lost-answers"])
def test_ten_percent_transient_faults_give_the_fault_free_result(kind, fault_free, demo_texts, tiny_model_path,
                                                                  tmp_path, caplog) -> None:
    real = source(demo_texts)
    flaky = kind(real, rate=0.1, seed=15)  # a seed whose first 125 draws hold all six kinds
    caplog.set_level(logging.WARNING, logger="qdrant_distill.connectors.qdrant")
    report, conn = run(flaky, tiny_model_path, tmp_path / "run")

    assert report.stage is Stage.SWAPPED and real.get_aliases().aliases[0].collection_name == report.target
    retries = [r for r in caplog.records if r.name == "qdrant_distill.connectors.qdrant" and r.getMessage().startswith("Retrying")]
    assert flaky.injected >= 10 and conn.retry.retries == flaky.injected == len(retries)
    raised = [r.getMessage().split(" raised ")[-1] for r in retries]
    assert len({m.split(":")[0] for m in raised}) == 3  # httpx errors, HTTP statuses and gRPC codes, all retried
    kinds = Counter(next((k for k in FAULT_KINDS if k in m), m) for m in raised)
    assert set(kinds) == set(FAULT_KINDS) - {"504"}  # every kind of transient fault was met, and retried
    got = points_of(QdrantConnector(real), report.target)
    assert got.keys() == fault_free.keys() and len(got) == N
    for pid, p in fault_free.items():
        assert got[pid].payload == p.payload
        np.testing.assert_allclose(got[pid].vectors[UNNAMED], p.vectors[UNNAMED], atol=1e-5)
    FIGURES[f"transient faults injected ({kind.__name__})"] = (
        f"{flaky.injected} of {flaky.calls} calls, all retried: {dict(sorted(kinds.items()))}")


class LoseFirstAnswer(FlakyClient):
    """The first call of each listed method reaches the store, then its answer is lost (a read timeout)."""

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.lost: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name not in (self._methods or ()):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            result = attr(*args, **kwargs)
            if name not in self.lost:
                self.lost.add(name)
                self.injected += 1
                raise self._faults[0]()
            return result

        return call


WRITES = {"create_collection", "upsert", "update_collection", "update_collection_aliases"}


def test_a_lost_answer_to_every_kind_of_write_is_harmless(fault_free, demo_texts, tiny_model_path, tmp_path) -> None:
    real = source(demo_texts)
    flaky = LoseFirstAnswer(real, methods=WRITES, faults=[lambda: http_error(504)])
    report, conn = run(flaky, tiny_model_path, tmp_path / "run")
    assert report.stage is Stage.SWAPPED and flaky.lost == WRITES and conn.retry.retries == len(WRITES)
    got = points_of(QdrantConnector(real), report.target)
    assert got.keys() == fault_free.keys()
    for pid, p in fault_free.items():
        np.testing.assert_allclose(got[pid].vectors[UNNAMED], p.vectors[UNNAMED], atol=1e-5)
    FIGURES["lost answers retried"] = f"{len(WRITES)} ({', '.join(sorted(WRITES))})"


def validation_error() -> Exception:
    try:
        qm.VectorParams(size="many", distance="nowhere")  # type: ignore[arg-type]
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a validation error")


# (client method failing, the fault, the typed error, the journal stage the run stops at)
PERMANENT = [
    ("get_collection", validation_error, ConnectorError, None),  # in the plan
    ("scroll", lambda: http_error(404), CollectionNotFound, None),  # in the plan: its checks read the collection first
    ("create_collection", lambda: http_error(422), ServerError, "gated"),
    ("upsert", lambda: http_error(400), ServerError, "created"),  # the first page of the re-embed
    ("update_collection_aliases", lambda: http_error(400), ServerError, "verified"),  # the swap itself
]


@pytest.mark.parametrize(("method", "fault", "error", "stage"), PERMANENT, ids=[p[0] for p in PERMANENT])
def test_a_permanent_fault_stops_at_once_typed_and_nothing_half_done(method, fault, error, stage, demo_texts,
                                                                     tiny_model_path, tmp_path, caplog) -> None:
    real = source(demo_texts)
    before = connector_state(QdrantConnector(real))
    flaky = FlakyClient(real, rate=1.0, methods={method}, faults=[fault])
    caplog.set_level(logging.WARNING, logger="qdrant_distill.connectors.qdrant")
    conn = QdrantConnector(flaky, retry=RetryPolicy(attempts=10, wait=wait_none()))
    with pytest.raises(error) as info:
        migrate(config(tiny_model_path, tmp_path / "run", page_size=PAGE, sample_size=120), connector=conn)

    assert flaky.calls == 1 and conn.retry.retries == 0  # not retried: stopped at the first failure
    assert not [r for r in caplog.records if r.getMessage().startswith("Retrying")]
    message = str(info.value)
    assert isinstance(info.value, DistillError) and "\n" not in message and method.split("_")[0] in message
    assert info.value.__cause__ is not None  # the original error is chained, for --debug
    after = connector_state(QdrantConnector(real))
    assert after["aliases"] == before["aliases"] == {"docs": "docs_v1"}  # the alias never moved
    assert after["collections"]["docs_v1"] == before["collections"]["docs_v1"]  # the source is untouched
    FIGURES["permanent faults stopped at once"] = FIGURES.get("permanent faults stopped at once", 0) + 1
    journal_file = tmp_path / "run" / "journal.json"
    assert (open_journal(tmp_path / "run").stage.value if journal_file.exists() else None) == stage
    if method != "update_collection_aliases":
        return
    # the run stopped at the swap with a verified target: the same command without the fault only moves the alias
    report = migrate(config(tiny_model_path, tmp_path / "run", page_size=PAGE, sample_size=120),
                     connector=QdrantConnector(real))
    assert report.stage is Stage.SWAPPED and len(points_of(QdrantConnector(real), report.target)) == N
