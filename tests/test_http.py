"""``qdrant-distill serve`` over a real migrated collection, and teachers over HTTP, with real parts only:

- serve as a real uvicorn process on a loopback port; the HTTP connector and the official ``openai`` client against
  it; bad requests each answered with one line (401, 400, 404, 413), never a traceback;
- serve in this process (uvicorn in a thread, the embedded store being single-process) following a rollback and a
  swap without a restart;
- a teacher behind serve: the plan's teacher check, teacher labels and a projection-only migration through it, and
  through a loopback proxy that answers 429 + Retry-After, 503, resets and stalls: equal to the fault-free run.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from qdrant_distill import (
    DistillConfig,
    GateConfig,
    MigrationConfig,
    Stage,
    encoder_for,
    make_plan,
    migrate,
)
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.connectors.base import UNNAMED, Point
from qdrant_distill.connectors.http_embeddings import EmbeddingsSettings, HttpEncoder
from qdrant_distill.connectors.settings import QdrantSettings
from qdrant_distill.distillation.teacher import label_queries
from qdrant_distill.errors import (
    DistillError,
    MalformedAnswer,
    ServerError,
    TeacherMismatch,
)
from qdrant_distill.inference.encoders import load_encoder
from qdrant_distill.migration.journal import Journal
from qdrant_distill.migration.operate import rollback_run, swap_run
from qdrant_distill.query.serve import (
    COLLECTION_HEADER,
    AliasEncoders,
    ServeSettings,
    create_app,
)
from tests.conftest import REPO, encode
from tests.connectors.fake_embeddings import fake_endpoint
from tests.test_migration import snapshot

KEY = f"serve-{secrets.token_hex(8)}"
QUERIES = [f"what is a {w}?" for w in ("river", "tree", "bank", "star", "song", "stone", "king", "bird")] * 5
MAX_INPUTS = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> str:
    """Stop a server process (SIGTERM, then SIGKILL after 20 s) and return what it wrote to stderr."""
    proc.terminate()
    try:
        return proc.communicate(timeout=20)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


STARTUP_S = 900  # a ceiling, not a speed target: a server still starting on a loaded machine is waited for


def wait_healthy(url: str, proc: subprocess.Popen | None = None, headers: dict | None = None) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not come up")


def build_store(path: Path, texts: list[str], vectors: np.ndarray) -> QdrantConnector:
    from qdrant_client import models as qm

    memory = path.name == ":memory:"
    conn = QdrantConnector.open(location=":memory:") if memory else QdrantConnector.open(path=str(path))
    conn.client.create_collection("docs_v1", vectors_config=qm.VectorParams(size=vectors.shape[1],
                                                                           distance=qm.Distance.COSINE))
    conn.upsert("docs_v1", [Point(id=i, payload={"text": t}, vectors={UNNAMED: v})
                            for i, (t, v) in enumerate(zip(texts, vectors))])
    conn.create_alias("docs", "docs_v1")
    return conn


@pytest.fixture(scope="module")
def migrated(tmp_path_factory, demo_texts, tiny_model, tiny_model_path) -> dict[str, Any]:
    """A real migration (static student, 8-d) on an embedded store, a copy of it for the in-process server, and the
    vectors the served encoders must give: the student's (after the swap) and the teacher's (after a rollback)."""
    root = tmp_path_factory.mktemp("http")
    texts = list(dict.fromkeys(demo_texts))[:200]
    conn = build_store(root / "store", texts, encode(tiny_model, texts))
    config = MigrationConfig(
        source="docs", dim=8, sample_size=150, run_dir=str(root / "run"), progress=False,
        student=DistillConfig(kind="static", base_model=str(tiny_model_path), max_steps=2),
        gate=GateConfig(min_recall_at_10=0.0, min_spearman=-1.0),
    )
    assert migrate(config, connector=conn).stage is Stage.SWAPPED
    current = encoder_for(conn, "docs")
    conn.close()  # the embedded store is single-process: serve opens it next
    shutil.copytree(root / "store", root / "store2")
    shutil.copytree(root / "run", root / "run2")
    moved = Journal.load(root / "run2")  # the run moved with its store: it records the copy
    moved.store = QdrantSettings(path=str(root / "store2")).identity
    moved.save()
    teacher = load_encoder(str(tiny_model_path))
    return {"store": root / "store", "store2": root / "store2", "run2": root / "run2", "texts": texts,
            "collection": current.collection, "student": current.encode(QUERIES),
            "teacher": teacher.encode(QUERIES, kind="query"), "teacher_docs": teacher.encode(texts)}


@pytest.fixture(scope="module")
def served(migrated, tiny_model_path) -> Iterator[str]:
    """``qdrant-distill serve`` as a real process on the first store."""
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "qdrant-distill"), "serve", "--path", str(migrated["store"]),
           "--alias", "docs", "--port", str(port), "--max-inputs", str(MAX_INPUTS), "--max-bytes", "100000"]
    env = os.environ | {"QDRANT_DISTILL_SERVE_API_KEY": KEY}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        stderr = stop(proc)
        assert "Traceback" not in stderr and KEY not in stderr, stderr[-2000:]


def http_encoder(url: str, provider: str = "openai", **options: Any) -> HttpEncoder:
    model = "docs" if provider == "openai" else None
    return HttpEncoder(EmbeddingsSettings(provider=provider, url=url, model=model, api_key=KEY, **options))


# ------------------------------------------------------------------------------------------------- serve (process)
@pytest.mark.parametrize("provider", ["openai", "tei"])
def test_the_http_connector_gets_the_served_students_vectors(served, migrated, provider) -> None:
    with http_encoder(served, provider, batch_size=6, in_flight=3) as enc:
        got = enc.encode(QUERIES, kind="query")
    np.testing.assert_allclose(got, migrated["student"], atol=1e-6)
    assert got.shape == (len(QUERIES), 8)


def test_the_official_openai_client_talks_to_serve(served, migrated) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{served}/v1", api_key=KEY, max_retries=0)
    for fmt in ("float", "base64"):
        answer = client.embeddings.create(model="docs", input=QUERIES[:10], encoding_format=fmt)
        rows = [np.frombuffer(base64.b64decode(d.embedding), "<f4") if fmt == "base64" else d.embedding
                for d in answer.data]  # asked for base64 explicitly, the client hands the strings over as they are
        got = np.array(rows, dtype=np.float32)
        np.testing.assert_allclose(got, migrated["student"][:10], atol=1e-6)
    default = client.embeddings.create(model="docs", input=QUERIES[0])  # the client asks for base64 by default
    np.testing.assert_allclose(default.data[0].embedding, migrated["student"][0], atol=1e-6)
    assert {m.id for m in client.models.list()} == {"docs", migrated["collection"]}
    health = httpx.get(f"{served}/health").json()
    assert health["status"] == "ok" and health["collection"] == migrated["collection"] and health["dim"] == 8


@pytest.mark.parametrize("case, status", [
    ("no key", 401), ("wrong key", 401), ("bad json", 400), ("not strings", 400), ("empty", 400),
    ("too many inputs", 413), ("too many bytes", 413), ("unknown model", 404), ("wrong dimensions", 400),
    ("no route", 404), ("lone surrogate", 400), ("escaped lone surrogate", 400), ("input too long", 413),
    ("dimensions not a number", 400),
])
def test_bad_requests_get_one_line_and_no_traceback(served, case, status) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    body: Any = {"model": "docs", "input": ["a river"]}
    path = "/v1/embeddings"
    if case == "no key":
        headers = {}
    elif case == "wrong key":
        headers = {"authorization": "Bearer not-the-key"}
    elif case == "not strings":
        body["input"] = [1, 2]
    elif case == "empty":
        body["input"] = []
    elif case == "too many inputs":
        body["input"] = ["a"] * (MAX_INPUTS + 1)
    elif case == "too many bytes":
        body["input"] = ["a river " * 20_000]
    elif case == "unknown model":
        body["model"] = "text-embedding-3-small"
    elif case == "wrong dimensions":
        body["dimensions"] = 256
    elif case == "no route":
        path = "/v2/things"
    elif case == "input too long":  # under the body's limit (--max-bytes 100000), over one text's (64 KiB)
        body["input"] = ["a river", "é" * 40_000]
    elif case == "dimensions not a number":
        body["dimensions"] = "eight"
    if case == "bad json":
        answer = httpx.post(served + path, content=b'{"input": ["a"', headers=headers)
    elif case == "lone surrogate":  # UTF-8 bytes of U+D800: Python's json reads them as a lone surrogate
        answer = httpx.post(served + path, content=b'{"model": "docs", "input": ["a \xed\xa0\x80 river"]}',
                            headers=headers)
    elif case == "escaped lone surrogate":
        answer = httpx.post(served + path, content=b'{"model": "docs", "input": "a \\ud800 river"}', headers=headers)
    else:
        answer = httpx.post(served + path, json=body, headers=headers)
    message = answer.json()["error"]["message"]
    assert answer.status_code == status and "\n" not in message and "Traceback" not in answer.text
    assert KEY not in answer.text
    limits = {"too many inputs": f"at most {MAX_INPUTS} (serve --max-inputs)",
              "too many bytes": "at most 100000 (serve --max-bytes)",
              "input too long": "input 1 is 80000 bytes of UTF-8; at most 65536 a text (serve --max-input-bytes)",
              "lone surrogate": "input 0 is not valid Unicode", "escaped lone surrogate": "input 0 is not valid"}
    assert limits.get(case, "") in message


def test_the_connector_says_which_line_serve_refused(served) -> None:
    from qdrant_distill.errors import AuthenticationFailed, ModelNotFound

    with HttpEncoder(EmbeddingsSettings(provider="openai", url=served, model="docs", api_key="wrong")) as enc, \
            pytest.raises(AuthenticationFailed, match="refused the credentials"):
        enc.encode("x")
    with HttpEncoder(EmbeddingsSettings(provider="openai", url=served, model="nope", api_key=KEY)) as enc, \
            pytest.raises(ModelNotFound, match="does not serve the model 'nope'"):
        enc.encode("x")


# ------------------------------------------------------------------------------------------------- serve (in-process)
class InProcessServer:
    """uvicorn in a thread, serving an app over a connector this process holds."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        wait_healthy(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live(migrated, tiny_model_path) -> Iterator[tuple[QdrantConnector, InProcessServer]]:
    conn = QdrantConnector.open(path=str(migrated["store2"]))
    settings = ServeSettings(alias="docs", default_model=str(tiny_model_path))
    encoders = AliasEncoders(conn, "docs", default=settings.default_model)
    with InProcessServer(create_app(encoders, settings)) as srv:
        srv.encoders = encoders  # type: ignore[attr-defined]
        yield conn, srv
    conn.close()


def test_serve_follows_a_rollback_and_a_swap_without_a_restart(live, migrated) -> None:
    conn, srv = live

    def ask() -> tuple[str, np.ndarray]:
        answer = httpx.post(f"{srv.url}/v1/embeddings", json={"model": "docs", "input": QUERIES})
        vectors = np.array([d["embedding"] for d in answer.json()["data"]], dtype=np.float32)
        return answer.headers[COLLECTION_HEADER], vectors

    collection, vectors = ask()
    assert collection == migrated["collection"]
    np.testing.assert_allclose(vectors, migrated["student"], atol=1e-6)
    rollback_run(migrated["run2"], conn)  # the alias back on the original: its teacher (--default-model) answers
    collection, vectors = ask()
    assert collection == "docs_v1" and vectors.shape[1] == 32
    np.testing.assert_allclose(vectors, migrated["teacher"], atol=1e-5)
    swap_run(migrated["run2"], conn)
    collection, vectors = ask()
    assert collection == migrated["collection"]
    np.testing.assert_allclose(vectors, migrated["student"], atol=1e-6)


# ------------------------------------------------------------------------------------------------- a teacher over HTTP
def teacher_migration(tmp: Path, texts: list[str], vectors: np.ndarray, teacher: str) -> tuple[Any, str, np.ndarray]:
    conn = build_store(Path(":memory:"), texts, vectors)
    config = MigrationConfig(
        source="docs", dim=8, sample_size=150, sample_seed=1, run_dir=str(tmp), progress=False, mode="projection-only",
        teacher_model=teacher, gate=GateConfig(min_recall_at_10=0.0, min_spearman=-1.0),
    )
    check = make_plan(config, conn).teacher_check  # the teacher over HTTP reproduces the stored vectors
    assert check is not None and check.mean_cosine > 0.999 and "http" in check.teacher
    report = migrate(config, connector=conn)
    enc = encoder_for(conn, "docs")
    state = snapshot(conn, enc.collection)
    query_vectors = enc.encode(QUERIES)
    conn.close()
    return report, state, query_vectors


def test_a_teacher_behind_serve_checks_labels_and_migrates_through_faults(live, migrated, tiny_model_path,
                                                                          tmp_path) -> None:
    conn, srv = live
    rollback_run(migrated["run2"], conn)  # serve answers with the original collection's model: the teacher
    try:
        direct = f"openai+{srv.url}?model=docs&wait_max=0.05&timeout=2"
        texts = migrated["texts"]
        cuts = [t.split(" ")[0] + " " + t.split(" ")[-1] for t in texts[:100]]
        clean_labels = label_queries(load_encoder(direct), cuts, tmp_path / "labels-clean", progress=False)
        in_process = load_encoder(str(tiny_model_path)).encode(cuts, kind="query")
        np.testing.assert_allclose(clean_labels, in_process, atol=1e-5)
        clean = teacher_migration(tmp_path / "clean", texts, migrated["teacher_docs"], direct)
        assert clean[0].stage is Stage.SWAPPED and clean[0].mode.value == "projection-only"
        with fake_endpoint() as proxy:
            proxy.upstream = srv.url
            proxy.faults = [(429, "0.01"), 503, "reset", "stall", 502]
            flaky = f"openai+{proxy.url}?model=docs&wait_max=0.05&timeout=0.5&batch=32"
            labels = label_queries(load_encoder(flaky), cuts, tmp_path / "labels-flaky", progress=False)
            proxy.faults = [503, (429, "0.01"), "reset", "stall"]
            faulty = teacher_migration(tmp_path / "faulty", texts, migrated["teacher_docs"], flaky)
            assert not proxy.faults  # every fault was met
        np.testing.assert_allclose(labels, clean_labels, atol=1e-6)
        assert faulty[1] == clean[1]  # the new collection: same ids, payloads, vectors
        np.testing.assert_allclose(faulty[2], clean[2], atol=1e-6)  # the teacher over HTTP + PCA answers queries
        assert faulty[0].metrics == clean[0].metrics
    finally:
        swap_run(migrated["run2"], conn)


@pytest.mark.parametrize("fault, error, says", [
    (None, TeacherMismatch, "encodes 12-d vectors, the stored ones are 32-d"),
    ("html", MalformedAnswer, "answered text/html, not JSON"),
    ("fewer", MalformedAnswer, "answered 15 vectors for 16 texts"),
    (500, ServerError, "answered 500 2 times"),
])
def test_a_bad_http_teacher_is_one_line_and_nothing_is_written(migrated, tmp_path, fault, error, says) -> None:
    texts = migrated["texts"]
    conn = build_store(Path(":memory:"), texts, migrated["teacher_docs"])
    with fake_endpoint() as endpoint:
        endpoint.faults = [fault] * 2
        config = MigrationConfig(
            source="docs", dim=8, sample_size=150, run_dir=str(tmp_path / "run"), progress=False,
            mode="projection-only", teacher_model=f"openai+{endpoint.url}?model=m&attempts=2&wait_max=0.01",
        )
        with pytest.raises(DistillError) as info:
            migrate(config, connector=conn)
    assert isinstance(info.value, error) and says in str(info.value) and "\n" not in str(info.value)
    assert conn.collections() == ["docs_v1"] and not (tmp_path / "run").exists()
    conn.close()


def test_concurrent_small_requests_are_encoded_together_and_each_gets_its_rows(live, migrated) -> None:
    from concurrent.futures import ThreadPoolExecutor

    conn, srv = live
    calls: list[int] = []
    current = srv.encoders.current().encoder  # the one the server uses
    original = current.encode

    def counting(texts, **kw):  # the real encoder, counted: how many encode calls the requests cost
        calls.append(len(texts))
        return original(texts, **kw)

    current.encode = counting
    try:
        with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda q: client.post(f"{srv.url}/embed", json={"inputs": [q]}).json(),
                                    QUERIES))
    finally:
        del current.encode
    np.testing.assert_allclose(np.array([a[0] for a in answers], np.float32), migrated["student"], atol=1e-6)
    assert sum(calls) == len(QUERIES) and len(calls) < len(QUERIES)


# ------------------------------------------------------------------------------------ serve: swaps, limits, memory
def test_each_answer_comes_from_one_lookup_of_the_alias_while_it_is_swapped(live, migrated) -> None:
    """400 requests (asking for 8-d, 32-d or any vectors) while a thread rolls the alias back and swaps it again
    without a pause: every 200 has the size and the exact vectors of the collection its header names, and the size
    it asked for; every 400 names the other size."""
    from concurrent.futures import ThreadPoolExecutor

    conn, srv = live
    expected = {migrated["collection"]: migrated["student"], "docs_v1": migrated["teacher"]}
    stop, moves, failures = threading.Event(), [], []

    def swapper() -> None:
        try:
            while not stop.is_set():  # each turn ends swapped: the state the other tests expect
                rollback_run(migrated["run2"], conn)
                swap_run(migrated["run2"], conn)
                moves.append(2)
        except Exception as exc:  # noqa: BLE001 - re-raised in the test
            failures.append(exc)

    def ask(i: int) -> tuple[int, int | None, httpx.Response]:
        dims = (8, 32, None)[i % 3]
        body = {"model": "docs", "input": [QUERIES[i % len(QUERIES)]]} | ({"dimensions": dims} if dims else {})
        return i, dims, client.post(f"{srv.url}/v1/embeddings", json=body)

    thread = threading.Thread(target=swapper)
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(8) as pool:
        thread.start()
        try:
            answers: list[tuple[int, int | None, httpx.Response]] = []
            # at least 400 requests and 4 alias moves (a swap also rewrites the run's report: slow under load)
            while len(answers) < 400 or (sum(moves) < 4 and len(answers) < 4000):
                answers += pool.map(ask, range(len(answers), len(answers) + 100))
        finally:
            stop.set()
            thread.join()
    assert not failures, failures
    seen: dict[str, int] = {}
    wrong = [(i, dims, answer.status_code) for i, dims, answer in answers
             if not one_lookup(i, dims, answer, expected, seen)]
    print(f"{len(answers)} requests, {sum(moves)} alias moves: {seen}; answers not of one lookup: {len(wrong)}")
    assert not wrong, wrong[:5]
    assert sum(moves) >= 4 and seen.get("docs_v1") and seen.get(migrated["collection"]), (sum(moves), seen)
    assert conn.alias_target("docs") == migrated["collection"]


def one_lookup(i: int, dims: int | None, answer: httpx.Response, expected: dict[str, np.ndarray],
               seen: dict[str, int]) -> bool:
    """Whether ``answer`` is all of one collection: a 200 of its size, its vectors and the size asked for; or a 400
    naming the size of the collection looked up, not the one asked for."""
    import re

    if answer.status_code == 400:
        said = re.search(r"answers (\d+)-d vectors, not (\d+)-d", answer.json()["error"]["message"])
        seen["refused"] = seen.get("refused", 0) + 1
        return bool(said) and int(said[2]) == dims and int(said[1]) in (8, 32) and int(said[1]) != dims
    if answer.status_code != 200:
        return False
    collection = answer.headers[COLLECTION_HEADER]
    vector = np.array(answer.json()["data"][0]["embedding"], dtype=np.float32)
    seen[collection] = seen.get(collection, 0) + 1
    want = expected[collection][i % len(QUERIES)]
    return vector.shape == want.shape and dims in (None, len(vector)) and bool(np.allclose(vector, want, atol=1e-5))


@pytest.fixture
def store_copy(migrated, tmp_path) -> Path:
    """A copy of the migrated store for a serve process of its own (the embedded store is single-process)."""
    shutil.copytree(migrated["store"], tmp_path / "store")
    return tmp_path / "store"


@pytest.mark.parametrize("options, says", [
    (["--port", "99999"], "--port 99999"), (["--port", "-1"], "--port -1"), (["--max-inputs", "0"], "--max-inputs 0"),
    (["--max-input-bytes", "-5"], "--max-input-bytes -5"), ([], "serve --default-model MODEL"),
])
def test_serve_options_and_a_collection_without_a_model_are_one_line(store_copy, options, says) -> None:
    from typer.testing import CliRunner

    from qdrant_distill.cli.app import app

    alias = "docs" if options else "docs_v1"  # the original collection records no encoder: --default-model is asked
    result = CliRunner().invoke(app, ["serve", "--path", str(store_copy), "--alias", alias, *options])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, lines
    assert len(lines) == 1 and lines[0].startswith("error: ConfigError") and says in lines[0], lines
    assert "Traceback" not in result.output and "default= " not in result.output


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_large_requests_are_refused_fast_and_memory_stays_flat(store_copy, migrated) -> None:
    """serve (its own process, over the migrated alias) gets 20 large requests in turn: one 7 MB text (413 before
    any tokenising, naming the limit) and 15 texts of up to 60 KB (answered, the short ones with the student's
    exact vectors). Its resident memory stays within a bound of what it was after the first two, and each answer
    comes in seconds."""
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "qdrant-distill"), "serve", "--path", str(store_copy),
           "--alias", "docs", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    long_text = (" ".join(migrated["texts"]) + " ")
    long_text = (long_text * (60_000 // len(long_text) + 1))[:60_000]
    huge = {"input": ["a river bank " * 540_000]}  # 7.0 MB: under the body's limit (8 MiB), over one text's
    many = {"input": QUERIES[:3] + [f"{i} {long_text}" for i in range(12)]}
    try:
        wait_healthy(url, proc)
        rss, took = [], []
        with httpx.Client(timeout=30) as client:
            for i in range(20):
                start = time.monotonic()
                answer = client.post(f"{url}/v1/embeddings", json=huge if i % 2 == 0 else many)
                took.append(time.monotonic() - start)
                rss.append(rss_mb(proc.pid))
                if i % 2 == 0:
                    assert answer.status_code == 413, answer.text[:300]
                    assert "at most 65536 a text (serve --max-input-bytes)" in answer.json()["error"]["message"]
                    continue
                assert answer.status_code == 200 and answer.headers[COLLECTION_HEADER] == migrated["collection"]
                got = np.array([d["embedding"] for d in answer.json()["data"]], dtype=np.float32)
                assert got.shape == (15, 8)
                np.testing.assert_allclose(got[:3], migrated["student"][:3], atol=1e-6)
        print(f"RSS MB after each request: {[round(r) for r in rss]}; seconds: {[round(t, 2) for t in took]}")
        assert max(rss) - rss[1] < 100 and rss[-1] - rss[1] < 50, rss
        assert max(took) < 15, took
    finally:
        stderr = stop(proc)
    assert "Traceback" not in stderr, stderr[-2000:]


@pytest.fixture(scope="module")
def onnx_export(tiny_model_path, tmp_path_factory) -> Path:
    from qdrant_distill.inference.export import export_model

    out = tmp_path_factory.mktemp("serve-onnx") / "onnx"
    export_model(str(tiny_model_path), out, formats=["onnx"])
    return out


def test_an_onnx_model_reads_long_texts_cut_and_a_broken_one_is_one_json_line(migrated, onnx_export, tmp_path,
                                                                              caplog) -> None:
    """A collection whose recorded model is an ONNX export answers a 48 KB text with the vectors of its first
    4,096 characters; after its alias moves to one whose model.onnx is truncated, each request gets a JSON error and
    the log one line (no traceback), and moving the alias back answers again."""
    import logging

    from qdrant_client import models as qm

    from qdrant_distill.migration import record

    broken = tmp_path / "broken"
    shutil.copytree(onnx_export, broken)
    (broken / "model.onnx").write_bytes((onnx_export / "model.onnx").read_bytes()[:5000])
    conn = build_store(Path(":memory:"), migrated["texts"], migrated["teacher_docs"])
    for name, folder in (("good", onnx_export), ("bad", broken)):
        conn.client.create_collection(f"docs_{name}", vectors_config=qm.VectorParams(size=32,
                                                                                    distance=qm.Distance.COSINE))
        record.write(conn, f"docs_{name}", {"query_model": str(folder), "query_backend": "onnx", "dim": 32})
    conn.create_alias("onnx", "docs_good")
    text = (" ".join(migrated["texts"]) * 10)[:48_000]
    direct = load_encoder(str(onnx_export), backend="onnx").encode([text[:128 * 32], QUERIES[0]], kind="query")
    with InProcessServer(create_app(AliasEncoders(conn, "onnx"), ServeSettings(alias="onnx"))) as srv:
        def ask() -> httpx.Response:
            return httpx.post(f"{srv.url}/v1/embeddings", json={"input": [text, QUERIES[0]]}, timeout=30)

        good = ask()
        got = np.array([d["embedding"] for d in good.json()["data"]], dtype=np.float32)
        np.testing.assert_allclose(got, direct, atol=1e-5)
        conn.swap_alias("onnx", "docs_bad")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="qdrant_distill"):
            answers = [ask() for _ in range(2)]
        conn.swap_alias("onnx", "docs_good")
        again = ask()
    for answer in answers:
        error = answer.json()["error"]
        assert answer.status_code in (500, 503) and error["code"] == answer.status_code and "\n" not in error["message"]
    records = [r for r in caplog.records if r.name == "qdrant_distill.query.serve"]
    assert len(records) == 2 and all(r.exc_info is None and "\n" not in r.getMessage() for r in records), records
    assert again.status_code == 200 and again.headers[COLLECTION_HEADER] == "docs_good"
    conn.close()
