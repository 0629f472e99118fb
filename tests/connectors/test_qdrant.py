"""The Qdrant connector against real qdrant-client local mode (``:memory:`` and a folder)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from tenacity import wait_none

from qdrant_distill.connectors import QdrantConnector, TextSource
from qdrant_distill.connectors._faults import RetryPolicy
from qdrant_distill.connectors.base import UNNAMED, Point
from qdrant_distill.errors import (
    AliasConflict,
    AuthenticationFailed,
    CollectionExists,
    CollectionNotFound,
    ConnectionFailed,
    EmptyCollection,
    NoTextPayload,
    ServerError,
    UnsupportedVectors,
    VectorNotFound,
)
from tests.conftest import random_unit
from tests.faults import FlakyClient, http_error

DIM = 16


def fill(client: Any, name: str, n: int, *, named: str | None = None, sparse: bool = False, text: bool = True) -> np.ndarray:
    vectors = random_unit(n, DIM, seed=1)
    vp = qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)
    client.create_collection(
        name,
        vectors_config={named: vp} if named else vp,
        sparse_vectors_config={"bm25": qm.SparseVectorParams()} if sparse else None,
        hnsw_config=qm.HnswConfigDiff(m=24, ef_construct=64),
        metadata={"owner": "tests"},
    )
    points = []
    for i in range(n):
        vec: Any = vectors[i].tolist()
        if named:
            vec = {named: vec}
            if sparse:
                vec["bm25"] = qm.SparseVector(indices=[i % 7], values=[1.0])
        payload = {"text": f"document number {i}", "title": f"t{i}", "group": i % 3} if text else {"other": i}
        points.append(qm.PointStruct(id=i, vector=vec, payload=payload))
    client.upsert(name, points)
    return vectors


@pytest.fixture
def conn() -> QdrantConnector:
    c = QdrantConnector.open(location=":memory:", retry=RetryPolicy(wait=wait_none()))
    yield c
    c.close()


def test_describe_unnamed_directly_and_through_alias(conn: QdrantConnector) -> None:
    fill(conn.client, "docs_v1", 20)
    conn.create_alias("docs", "docs_v1")
    for name in ("docs_v1", "docs"):
        info = conn.describe(name)
        assert info.name == "docs_v1" and info.requested == name
        assert info.alias == ("docs" if name == "docs" else None)
        assert info.vectors[UNNAMED].size == DIM and info.vectors[UNNAMED].distance == "Cosine"
        assert info.points_count == 20 and info.metadata == {"owner": "tests"}
        assert info.vector().name == UNNAMED and not info.named


def test_describe_named_with_sparse(conn: QdrantConnector) -> None:
    fill(conn.client, "hybrid", 5, named="dense", sparse=True)
    info = conn.describe("hybrid")
    assert info.named and set(info.vectors) == {"dense"} and set(info.sparse_vectors) == {"bm25"}
    assert info.sparse_vectors["bm25"].sparse
    assert info.vector().name == "dense" and info.vector("dense").size == DIM
    with pytest.raises(VectorNotFound, match="no vector named 'nope'"):
        info.vector("nope")
    with pytest.raises(UnsupportedVectors):
        info.vector("bm25")


def test_multivector_and_sparse_only_are_unsupported(conn: QdrantConnector) -> None:
    mv = qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM)
    conn.client.create_collection("mv", vectors_config=qm.VectorParams(size=4, distance=qm.Distance.DOT, multivector_config=mv))
    conn.client.create_collection("sp", vectors_config={}, sparse_vectors_config={"s": qm.SparseVectorParams()})
    with pytest.raises(UnsupportedVectors, match="multivector"):
        conn.describe("mv").vector()
    with pytest.raises(UnsupportedVectors, match="sparse-only"):
        conn.describe("sp").vector()


def test_missing_collection(conn: QdrantConnector) -> None:
    with pytest.raises(CollectionNotFound, match="no collection or alias named 'ghost'"):
        conn.describe("ghost")


def test_sample_sizes_filter_and_dedupe(conn: QdrantConnector) -> None:
    vectors = fill(conn.client, "docs", 60)
    s = conn.sample("docs", 25, text=TextSource())
    assert len(s) == 25 and len(set(s.ids)) == 25 and s.method == "random"
    assert s.vectors.shape == (25, DIM) and s.vectors.dtype == np.float32
    for pid, t, v in zip(s.ids, s.texts, s.vectors):
        assert t == f"document number {pid}"
        np.testing.assert_allclose(v, vectors[pid], atol=1e-6)
    everything = conn.sample("docs", 1000, text=TextSource())
    assert sorted(everything.ids) == list(range(60))
    only = qm.Filter(must=[qm.FieldCondition(key="group", match=qm.MatchValue(value=1))])
    filtered = conn.sample("docs", 100, text=TextSource(), filter=only)
    assert sorted(filtered.ids) == [i for i in range(60) if i % 3 == 1]


def test_sample_with_seed_is_reproducible_reservoir(conn: QdrantConnector) -> None:
    fill(conn.client, "docs", 80)
    a = conn.sample("docs", 10, text=TextSource(), seed=3)
    b = conn.sample("docs", 10, text=TextSource(), seed=3)
    c = conn.sample("docs", 10, text=TextSource(), seed=4)
    assert a.method == "reservoir" and a.ids == b.ids and a.ids != c.ids and len(set(a.ids)) == 10


def test_sample_counts_missing_text_and_templates(conn: QdrantConnector) -> None:
    fill(conn.client, "docs", 10)
    conn.client.set_payload("docs", payload={"text": "   "}, points=[0, 1, 2])
    s = conn.sample("docs", 10, text=TextSource())
    assert len(s) == 7 and s.missing_text == 3
    t = conn.sample("docs", 10, text=TextSource(template="{title}: {text}"))
    assert len(t) == 10 and "t5: document number 5" in t.texts
    with pytest.raises(NoTextPayload, match="'subtitle'"):
        conn.sample("docs", 10, text=TextSource(template="{subtitle} {text}"))


def test_sample_errors(conn: QdrantConnector) -> None:
    conn.client.create_collection("empty", vectors_config=qm.VectorParams(size=4, distance=qm.Distance.COSINE))
    with pytest.raises(EmptyCollection):
        conn.sample("empty", 5, text=TextSource())
    fill(conn.client, "notext", 5, text=False)
    with pytest.raises(NoTextPayload, match="payload keys seen: \\['other'\\]"):
        conn.sample("notext", 5, text=TextSource())


def test_scroll_resumes_and_yields_every_point_once(conn: QdrantConnector) -> None:
    fill(conn.client, "docs", 103)
    seen: list[int] = []
    pages = conn.scroll("docs", page_size=10)
    checkpoint = None
    for _ in range(4):
        page = next(pages)
        seen += [p.id for p in page.points]
        checkpoint = page.next_offset
    pages.close()  # the process "dies" here; a new iterator resumes from the checkpoint
    for page in conn.scroll("docs", page_size=10, offset=checkpoint):
        seen += [p.id for p in page.points]
    assert len(seen) == 103 and set(seen) == set(range(103))
    assert conn.count("docs") == 103


def test_create_like_mirrors_and_refuses_to_overwrite(conn: QdrantConnector) -> None:
    fill(conn.client, "src", 5, named="dense", sparse=True)
    conn.client.create_payload_index("src", "group", qm.PayloadSchemaType.INTEGER)
    info = conn.describe("src")
    conn.create_like(info, name="dst", vector_name="dense", size=4, metadata={"qdrant_distill": {"dim": 4}})
    out = conn.describe("dst")
    assert out.vectors["dense"].size == 4 and out.vectors["dense"].distance == "Cosine"
    assert set(out.sparse_vectors) == {"bm25"}
    assert out.hnsw == info.hnsw and out.optimizers == info.optimizers
    assert out.shard_number == info.shard_number and out.replication_factor == info.replication_factor
    assert out.metadata == {"qdrant_distill": {"dim": 4}} and out.points_count == 0
    assert conn.describe("src").points_count == 5  # the source is untouched
    with pytest.raises(CollectionExists):
        conn.create_like(info, name="dst", vector_name="dense", size=4)


def test_upsert_preserves_ids_payloads_and_other_vectors(conn: QdrantConnector) -> None:
    fill(conn.client, "src", 3, named="dense", sparse=True)
    conn.create_like(conn.describe("src"), name="dst", vector_name="dense", size=2)
    uuid = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"
    conn.client.create_collection("u", vectors_config=qm.VectorParams(size=2, distance=qm.Distance.DOT))
    conn.upsert("u", [Point(id=uuid, payload={"a": [1, {"b": None}]}, vectors={UNNAMED: np.array([0.5, 0.25])})])
    got = conn.retrieve("u", [uuid], with_vectors=True)[0]
    assert got.id == uuid and got.payload == {"a": [1, {"b": None}]} and got.vectors[UNNAMED] == [0.5, 0.25]
    for page in conn.scroll("src", with_vectors=True):
        conn.upsert("dst", [Point(p.id, p.payload, {**p.vectors, "dense": [1.0, 0.0]}) for p in page.points])
    src = {p.id: p for p in conn.scroll("src", with_vectors=True).__next__().points}
    dst = {p.id: p for p in conn.scroll("dst", with_vectors=True).__next__().points}
    assert src.keys() == dst.keys()
    for pid in src:
        assert dst[pid].payload == src[pid].payload
        assert dst[pid].vectors["bm25"] == src[pid].vectors["bm25"]


class Recording:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name == "update_collection_aliases":
            def call(*a: Any, **k: Any) -> Any:
                self.calls.append(name)
                return attr(*a, **k)
            return call
        return attr


def test_alias_swap_is_one_call_and_returns_previous_target(conn: QdrantConnector) -> None:
    fill(conn.client, "v1", 3)
    fill(conn.client, "v2", 3)
    rec = Recording(conn.client)
    c = QdrantConnector(rec)
    assert c.swap_alias("docs", "v1") is None
    rec.calls.clear()
    assert c.swap_alias("docs", "v2") == "v1"
    assert rec.calls == ["update_collection_aliases"]
    assert c.alias_target("docs") == "v2" and c.resolve("docs") == ("v2", "docs")
    with pytest.raises(AliasConflict, match="is a collection"):
        c.swap_alias("v1", "v2")
    with pytest.raises(AliasConflict, match="already points"):
        c.create_alias("docs", "v1")
    with pytest.raises(AliasConflict, match="refusing to drop"):
        c.delete_collection("v2")


def test_metadata_merges(conn: QdrantConnector) -> None:
    fill(conn.client, "docs", 2)
    assert conn.set_metadata("docs", {"qd": {"stage": "swap"}}) == {"owner": "tests", "qd": {"stage": "swap"}}
    assert conn.describe("docs").metadata == {"owner": "tests", "qd": {"stage": "swap"}}


def test_transient_faults_are_retried_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    real = QdrantClient(":memory:")
    fill(real, "docs", 200)
    flaky = FlakyClient(real, rate=0.3, seed=1)
    conn = QdrantConnector(flaky, retry=RetryPolicy(attempts=12, wait=wait_none()))
    with caplog.at_level(logging.WARNING, logger="qdrant_distill.connectors.qdrant"):
        ids = [p.id for page in conn.scroll("docs", page_size=7) for p in page.points]
        s = conn.sample("docs", 50, text=TextSource())
    assert sorted(ids) == list(range(200)) and len(s) == 50
    assert flaky.injected > 5 and conn.retry.retries == flaky.injected
    assert sum("Retrying" in r.getMessage() for r in caplog.records) == flaky.injected


@pytest.mark.parametrize(
    ("fault", "error"),
    [(lambda: http_error(400), ServerError), (lambda: http_error(404), CollectionNotFound),
     (lambda: http_error(401), AuthenticationFailed), (lambda: http_error(403), AuthenticationFailed)],
)
def test_client_errors_fail_at_once(fault: Any, error: type) -> None:
    real = QdrantClient(":memory:")
    fill(real, "docs", 3)
    flaky = FlakyClient(real, rate=1.0, faults=[fault], methods={"count"})
    conn = QdrantConnector(flaky, retry=RetryPolicy(attempts=5, wait=wait_none()))
    with pytest.raises(error):
        conn.count("docs")
    assert flaky.calls == 1 and conn.retry.retries == 0


def test_refused_connection_is_typed_and_hides_the_key() -> None:
    conn = QdrantConnector.open(url="http://127.0.0.1:9", api_key="s3cret-key", retry=RetryPolicy(attempts=2, wait=wait_none()))
    with pytest.raises(ConnectionFailed) as info:
        conn.collections()
    assert "s3cret-key" not in str(info.value) and "s3cret-key" not in repr(conn)
    assert conn.retry.retries == 1


def test_embedded_folder_persists(tmp_path: Any) -> None:
    with QdrantConnector.open(path=str(tmp_path / "q")) as conn:
        fill(conn.client, "docs", 4)
        conn.create_alias("live", "docs")
    with QdrantConnector.open(path=str(tmp_path / "q")) as conn:
        assert conn.resolve("live") == ("docs", "live") and conn.count("docs") == 4
