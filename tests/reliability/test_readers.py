"""Readers during the swap: a thread queries through the alias while the alias is swapped, rolled back and swapped
again, many times over. Every answer must come from one collection, queried with that collection's own encoder."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from tenacity import wait_none

from qdrant_distill import Stage, encoder_for, migrate, open_journal, rollback, swap
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.connectors._faults import RetryPolicy
from qdrant_distill.connectors.base import UNNAMED, Point
from tests.reliability.conftest import FIGURES
from tests.test_migration import config

M = 300
MIN_QUERIES = 1000


def test_readers_through_the_alias_see_one_consistent_collection(demo_texts, tiny_model, tiny_model_path,
                                                                   tmp_path) -> None:
    # the source's "teacher" vectors are the tiny model's own (32-d), so the original collection has a real encoder
    texts = list(dict.fromkeys(demo_texts))[:M]
    client = QdrantClient(":memory:")
    conn = QdrantConnector(client, retry=RetryPolicy(wait=wait_none()))
    teacher = tiny_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    client.create_collection("docs_v1", vectors_config=qm.VectorParams(size=teacher.shape[1],
                                                                       distance=qm.Distance.COSINE))
    conn.upsert("docs_v1", [Point(i, {"text": t}, {UNNAMED: teacher[i]}) for i, t in enumerate(texts)])
    conn.create_alias("docs", "docs_v1")
    report = migrate(config(tiny_model_path, tmp_path / "run", sample_size=150), connector=conn)
    journal = open_journal(tmp_path / "run")
    rollback(conn, journal)  # start on the original collection

    stop = threading.Event()
    errors: list[str] = []
    served: Counter[str] = Counter()
    queries = [0]

    def reader() -> None:
        i = 0
        while not stop.is_set() or queries[0] < MIN_QUERIES:
            text = texts[i % M]
            i += 1
            try:
                enc = encoder_for(conn, "docs", default=str(tiny_model_path))
                q = enc.encode(text)[0]
                hits = conn.search(enc.collection, q, limit=3, vector_name=enc.vector_name or None)
                top = conn.retrieve(enc.collection, [hits[0][0]], with_payload=True, with_vectors=True)[0]
                stored = np.asarray(top.vectors[enc.vector_name or UNNAMED], dtype=np.float32)
                cosine = float(q @ stored / (np.linalg.norm(q) * np.linalg.norm(stored)))
                # the query vector has the collection's size, the score is the cosine with the stored vector, and a
                # document's own text finds itself: the encoder is the one that made these vectors
                if not (q.shape == stored.shape == (enc.dim,) and abs(cosine - hits[0][1]) < 1e-4
                        and hits[0][1] > 0.999 and top.payload["text"] == text):
                    errors.append(f"inconsistent: {enc.collection} dim {enc.dim} q {q.shape} stored {stored.shape} "
                                  f"score {hits[0][1]:.4f} cosine {cosine:.4f}")
                served[enc.collection] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                errors.append(f"{type(exc).__name__}: {exc}")
            queries[0] += 1

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    moves = 0
    started = time.monotonic()
    while queries[0] < MIN_QUERIES and time.monotonic() - started < 240 or moves < 3:
        time.sleep(0.02)
        swap(conn, journal) if moves % 2 == 0 else rollback(conn, journal)
        moves += 1
    if moves % 2 == 0:  # end swapped
        swap(conn, journal)
        moves += 1
    stop.set()
    thread.join(timeout=120)

    assert not thread.is_alive()
    assert errors == [], errors[:5]
    assert queries[0] >= MIN_QUERIES and moves >= 3
    assert served["docs_v1"] > 0 and served[report.target] > 0  # both sides of the swap were read
    assert journal.stage is Stage.SWAPPED and conn.alias_target("docs") == report.target
    FIGURES["reads during swap"] = (f"{queries[0]} queries, {len(errors)} errors, {moves} alias moves "
                                    f"({dict(served)})")
