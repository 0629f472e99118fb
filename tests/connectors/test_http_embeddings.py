"""The HTTP embeddings connector against a real loopback endpoint (tests/connectors/fake_embeddings.py): the three API
shapes, batching, bounded concurrency, retries through faults, and one typed line for every bad answer."""

from __future__ import annotations

import logging
import secrets

import numpy as np
import pytest
from tenacity import wait_none

from qdrant_distill.connectors.http_embeddings import (
    API_KEY_ENV,
    EmbeddingsSettings,
    HttpEncoder,
    is_http_reference,
    plan_batches,
)
from qdrant_distill.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectionFailed,
    DimensionError,
    MalformedAnswer,
    ModelNotFound,
    ServerError,
)
from qdrant_distill.inference.encoders import Encoder, load_encoder
from tests.connectors.fake_embeddings import FakeEndpoint, expected, fake_endpoint

TEXTS = [f"text number {i}: " + "word " * (i % 7) for i in range(40)]


@pytest.fixture
def endpoint():
    with fake_endpoint() as server:
        yield server


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    for name in (API_KEY_ENV, "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def encoder(server: FakeEndpoint, provider: str = "openai", **options) -> HttpEncoder:
    options = {"timeout": 0.3, "attempts": 4, "wait_max": 0.05} | options
    model = None if provider == "tei" else "fake-model"
    return HttpEncoder(EmbeddingsSettings(provider=provider, url=server.url, model=model, **options), wait=wait_none())


# ---------------------------------------------------------------------------------------------------- references
def test_references_parse_into_settings_and_print_without_a_key() -> None:
    ref = "openai+https://api.example.com/v1?model=text-embedding-3-small&dimensions=256"
    s = EmbeddingsSettings.from_reference(ref)
    assert (s.provider.value, s.model, s.dimensions) == ("openai", "text-embedding-3-small", 256)
    assert s.endpoint == "https://api.example.com/v1/embeddings"
    assert s.reference == "openai+https://api.example.com/v1?model=text-embedding-3-small&dimensions=256"
    assert EmbeddingsSettings.from_reference("openai+http://127.0.0.1:8000?model=docs").endpoint == \
        "http://127.0.0.1:8000/v1/embeddings"
    tei = EmbeddingsSettings.from_reference("tei+http://host:8080?batch=16&in_flight=2")
    assert (tei.endpoint, tei.batch_size, tei.in_flight) == ("http://host:8080/embed", 16, 2)
    assert EmbeddingsSettings.from_reference("ollama+http://h:11434?model=nomic").endpoint == "http://h:11434/api/embed"
    assert is_http_reference("tei+http://h") and not is_http_reference("models/all-MiniLM-L6-v2")


@pytest.mark.parametrize("ref, says", [
    ("openai+http://h:1?model=m&api_key=sk-123", "'openai+http://h:1' holds an API key"),
    ("openai+http://user:pw@h:1?model=m", "'http://h:1' holds credentials"),
    ("openai+http://h:1", "needs a model"),
    ("tei+ftp://h:1", "bad embeddings URL"),
    ("tei+http://h:1?bogus=1", "unknown option 'bogus'"),
    ("openai+http://h:1?model=m&batch=zero", "batch_size"),
    ("openai+http://u:sk-123@h:1?model=m&batch=zero", "'openai+http://h:1': batch_size"),
    ("openai+http://h:1?model=m&secret=sk-123",
     "unknown option 'secret' in the embeddings reference 'openai+http://h:1'"),
    ("tei+http://h:port", "bad embeddings URL 'http://h:port'"),
])
def test_bad_references_are_one_config_line(ref: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        EmbeddingsSettings.from_reference(ref)
    assert says in str(info.value) and "\n" not in str(info.value) and "sk-123" not in str(info.value)


def test_batches_respect_the_count_and_the_token_budget() -> None:
    texts = ["x" * 30] * 10  # 11 estimated tokens each
    assert plan_batches(texts, 4, None) == [(0, 4), (4, 8), (8, 10)]
    assert plan_batches(texts, 100, 33) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert plan_batches(["x" * 300], 100, 10) == [(0, 1)]  # alone over budget: sent alone


# ---------------------------------------------------------------------------------------------------- the shapes
@pytest.mark.parametrize("provider", ["openai", "tei", "ollama"])
def test_each_api_shape_gives_the_vectors_in_order(endpoint: FakeEndpoint, provider: str) -> None:
    with encoder(endpoint, provider, batch_size=8) as enc:
        got = enc.encode(TEXTS, kind="query")
        assert isinstance(enc, Encoder) and enc.dim == endpoint.dim
    np.testing.assert_allclose(got, expected(TEXTS), atol=1e-6)  # openai answers out of order: sorted by index
    assert len(endpoint.requests) == 5
    body = endpoint.requests[0]["body"]
    if provider == "openai":
        assert body["encoding_format"] == "base64" and body["model"] == "fake-model"
    elif provider == "tei":
        assert body["normalize"] is True and body["truncate"] is True
    else:
        assert body["model"] == "fake-model" and len(body["input"]) == 8


def test_load_encoder_dispatches_references_to_the_http_backend(endpoint: FakeEndpoint) -> None:
    enc = load_encoder(f"openai+{endpoint.url}?model=fake-model&timeout=5")
    assert enc.name == f"openai+{endpoint.url}?model=fake-model" and "http" in enc.describe()
    np.testing.assert_allclose(enc.encode(TEXTS[:3]), expected(TEXTS[:3]), atol=1e-6)
    assert load_encoder(f"openai+{endpoint.url}?model=fake-model&timeout=5") is enc  # one pool per endpoint


def test_requests_in_flight_are_bounded(endpoint: FakeEndpoint) -> None:
    endpoint.delay = 0.05
    with encoder(endpoint, batch_size=2, in_flight=3) as enc:
        np.testing.assert_allclose(enc.encode(TEXTS), expected(TEXTS), atol=1e-6)
    assert len(endpoint.requests) == 20 and 2 <= endpoint.peak_in_flight <= 3


def test_a_batch_refused_as_too_large_is_split_and_the_size_remembered(endpoint: FakeEndpoint, caplog) -> None:
    endpoint.max_batch = 5
    with caplog.at_level(logging.INFO, "qdrant_distill.connectors.http_embeddings"), encoder(endpoint, "tei", in_flight=1) as enc:
        np.testing.assert_allclose(enc.encode(TEXTS), expected(TEXTS), atol=1e-6)
        first = len(endpoint.requests)
        enc.encode(TEXTS)
    assert enc._batch <= 5 and len(endpoint.requests) - first == 10  # the second call plans batches of 4 at once
    assert "batches of" in caplog.text


# ---------------------------------------------------------------------------------------------------- faults
def test_faults_are_retried_and_the_result_equals_the_fault_free_run(endpoint: FakeEndpoint, caplog) -> None:
    with encoder(endpoint, batch_size=10, in_flight=1) as enc:
        clean = enc.encode(TEXTS)
    endpoint.faults = [(429, "0.02"), 503, "reset", "stall", 502, (429, "60")]
    with caplog.at_level(logging.WARNING, "qdrant_distill.connectors.http_embeddings"), \
            encoder(endpoint, batch_size=10, in_flight=1, attempts=8) as enc:
        faulty = enc.encode(TEXTS)
    np.testing.assert_array_equal(faulty, clean)
    assert enc.retries == 6 and caplog.text.count("Retrying") == 6
    assert enc.waits[0] == pytest.approx(0.02)  # Retry-After honoured
    assert enc.waits[-1] == pytest.approx(0.05)  # ... up to wait_max
    assert enc.waits[1:5] == [0, 0, 0, 0]  # no Retry-After: the backoff (none in tests)


def test_transient_faults_that_never_end_are_one_typed_line(endpoint: FakeEndpoint) -> None:
    endpoint.faults = [503] * 10
    with encoder(endpoint, attempts=3) as enc, pytest.raises(ServerError) as info:
        enc.encode(TEXTS[:2])
    assert "answered 503 3 times" in str(info.value) and "\n" not in str(info.value)
    gone = HttpEncoder(EmbeddingsSettings(provider="tei", url="http://127.0.0.1:9", attempts=2), wait=wait_none())
    with pytest.raises(ConnectionFailed) as info:
        gone.encode("x")
    assert "endpoint tei+http://127.0.0.1:9 (" in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------------- bad answers
@pytest.mark.parametrize("fault, error, says", [
    (401, AuthenticationFailed, "refused the credentials (401)"),
    (403, AuthenticationFailed, "refused the credentials (403)"),
    (404, ModelNotFound, "does not serve the model 'fake-model' (404)"),
    (400, ServerError, "answered 400"),
    ("html", MalformedAnswer, "answered text/html, not JSON"),
    ("fewer", MalformedAnswer, "answered 3 vectors for 4 texts"),
    ("nan", MalformedAnswer, "non-finite"),
])
def test_each_bad_answer_is_one_typed_line(endpoint: FakeEndpoint, fault, error, says, monkeypatch) -> None:
    key = f"sk-{secrets.token_hex(12)}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    endpoint.faults = [fault]
    with encoder(endpoint) as enc, pytest.raises(error) as info:
        enc.encode(TEXTS[:4])
    message = str(info.value)
    assert says in message and endpoint.url in message and "\n" not in message and key not in message
    assert endpoint.requests[0]["auth"] == f"Bearer {key}"  # the key did reach the endpoint
    assert key not in enc.describe() and "key set" in enc.describe()


def test_a_dimension_other_than_asked_is_refused(endpoint: FakeEndpoint) -> None:
    with encoder(endpoint, dimensions=8) as enc, pytest.raises(DimensionError) as info:
        enc.encode(TEXTS[:2])
    assert "answered 12-d vectors, 8-d asked for" in str(info.value)
    assert endpoint.requests[0]["body"]["dimensions"] == 8


def test_the_key_comes_from_settings_or_the_environment(endpoint: FakeEndpoint, monkeypatch) -> None:
    def sent(**kw) -> str | None:
        with encoder(endpoint, **kw) as enc:
            enc.encode("x")
        return endpoint.requests[-1]["auth"]

    assert sent() is None
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai-env")
    assert sent() == "Bearer from-openai-env"
    monkeypatch.setenv(API_KEY_ENV, "from-our-env")
    assert sent() == "Bearer from-our-env"
    assert sent(api_key="from-settings") == "Bearer from-settings"
    with load_encoder(f"openai+{endpoint.url}?model=fake-model", api_key="from-the-flag") as enc:  # the flag's
        enc.encode("x")
    assert endpoint.requests[-1]["auth"] == "Bearer from-the-flag"


def test_an_http_encoder_needs_no_torch(endpoint: FakeEndpoint) -> None:
    """A process that cannot import torch or sentence-transformers encodes through the seam over HTTP."""
    import json
    import subprocess
    import sys
    import textwrap

    from tests.conftest import REPO

    child = textwrap.dedent(f'''
        import importlib.abc, json, sys

        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "sentence_transformers", "transformers"):
                    raise ImportError(name)
                return None

        sys.meta_path.insert(0, Blocker())
        import qdrant_distill as qd
        enc = qd.load_encoder("tei+{endpoint.url}")
        print(json.dumps(enc.encode(["a", "b"]).tolist()))
    ''')
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(json.loads(done.stdout), expected(["a", "b"]), atol=1e-6)
