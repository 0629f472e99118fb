"""The HTTP embeddings encoder through its transport seam (``httpx.MockTransport``): batching, a refused batch split,
Retry-After honoured without sleeping, one typed error for refused credentials, a key that travels only as a bearer
header, and clients closed (by the encoder, and at interpreter exit for the shared ones)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap

import httpx
import numpy as np
import pytest
from tenacity import wait_none

from qdrant_distill.connectors.http_embeddings import (
    API_KEY_ENV,
    EmbeddingsSettings,
    HttpEncoder,
    open_encoder,
)
from qdrant_distill.errors import AuthenticationFailed, ServerError
from tests.conftest import REPO

URL = "http://embeddings.test/v1"
KEY = f"sk-{secrets.token_hex(12)}"
TEXTS = [f"text {'x' * i}" for i in range(10)]  # ten lengths: each vector says which text it is


def vector(text: str) -> list[float]:
    return [float(len(text)), 1.0]


class Endpoint:
    """An OpenAI-compatible answerer: ``answers`` (status, headers) are played first, then 200s; requests kept."""

    def __init__(self, *answers: tuple[int, dict[str, str]], max_batch: int | None = None) -> None:
        self.answers = list(answers)
        self.max_batch = max_batch
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        texts = json.loads(request.content)["input"]
        if self.answers:
            status, headers = self.answers.pop(0)
            echoed = request.headers.get("authorization")
            return httpx.Response(status, headers=headers, json={"error": f"refused ({echoed})"})
        if self.max_batch is not None and len(texts) > self.max_batch:
            return httpx.Response(413, json={"error": "batch too large"})
        return httpx.Response(200, json={"data": [{"index": i, "embedding": vector(t)} for i, t in enumerate(texts)]})

    @property
    def sizes(self) -> list[int]:
        return [len(json.loads(r.content)["input"]) for r in self.requests]


def encoder(endpoint: Endpoint, sleeps: list[float] | None = None, **options) -> HttpEncoder:
    settings = EmbeddingsSettings(provider="openai", url=URL, model="m", api_key=KEY, **({"in_flight": 1} | options))
    return HttpEncoder(settings, normalize=False, wait=wait_none(), transport=endpoint.transport,
                       sleep=(sleeps if sleeps is not None else []).append)


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    for name in (API_KEY_ENV, "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_texts_go_in_batches_of_the_configured_size_and_come_back_in_order() -> None:
    endpoint = Endpoint()
    with encoder(endpoint, batch_size=3) as enc:
        vectors = enc.encode(TEXTS)
    assert sorted(endpoint.sizes) == [1, 3, 3, 3]
    np.testing.assert_array_equal(vectors, [vector(t) for t in TEXTS])
    assert {r.url.path for r in endpoint.requests} == {"/v1/embeddings"}


def test_a_batch_refused_as_too_large_is_split_and_the_smaller_size_kept() -> None:
    endpoint = Endpoint(max_batch=2)
    with encoder(endpoint, batch_size=8) as enc:
        np.testing.assert_array_equal(enc.encode(TEXTS[:8]), [vector(t) for t in TEXTS[:8]])
        assert endpoint.sizes == [8, 4, 2, 2, 4, 2, 2]  # 8 and each 4 refused (413), then halves
        endpoint.requests.clear()
        np.testing.assert_array_equal(enc.encode(TEXTS[:8]), [vector(t) for t in TEXTS[:8]])
    assert endpoint.sizes == [2, 2, 2, 2]  # the size that worked, straight away


def test_retry_after_is_honoured_up_to_wait_max_without_sleeping_here() -> None:
    endpoint = Endpoint((429, {"Retry-After": "3"}), (503, {"Retry-After": "600"}),
                        (502, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    sleeps: list[float] = []
    with encoder(endpoint, sleeps, wait_max=20) as enc:
        np.testing.assert_array_equal(enc.encode(["a", "bb"]), [vector("a"), vector("bb")])
        assert enc.retries == 3 and enc.waits == [3.0, 20.0, 0.0]  # capped; a date falls back to the backoff
    assert sleeps == [3.0, 20.0, 0.0] and len(endpoint.requests) == 4


def test_too_many_transient_answers_end_in_one_server_error() -> None:
    endpoint = Endpoint(*[(503, {"Retry-After": "1"})] * 3)
    with encoder(endpoint, attempts=3) as enc, pytest.raises(ServerError) as info:
        enc.encode("x")
    assert info.value.context["status"] == 503 and len(endpoint.requests) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_one_typed_error_without_retries(status: int) -> None:
    endpoint = Endpoint((status, {}))
    with encoder(endpoint) as enc, pytest.raises(AuthenticationFailed) as info:
        enc.encode(TEXTS)
    assert len(endpoint.requests) == 1 and info.value.context["status"] == status
    assert "openai+http://embeddings.test refused" in str(info.value)  # named by host: the path may hold a token
    assert "/v1" not in str(info.value) and KEY not in f"{info.value} {info.value!r} {info.value.hint}"


def test_the_key_is_sent_as_a_bearer_header_and_shown_nowhere() -> None:
    endpoint = Endpoint((400, {}))  # its body repeats the request's authorization header
    with encoder(endpoint) as enc:
        with pytest.raises(ServerError) as info:
            enc.encode("x")
        shown = [enc.describe(), repr(enc), str(enc.settings), repr(enc.settings), enc.name,
                 enc.settings.model_dump_json(), str(info.value), repr(info.value), str(info.value.hint)]
    assert endpoint.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert "key set" in enc.describe() and "**********" in str(info.value)  # the echoed key, redacted
    assert not [text for text in shown if KEY in text or KEY[3:15] in text]


def test_an_encoder_closes_its_client_and_shared_ones_reopen_after_close() -> None:
    endpoint = Endpoint()
    with encoder(endpoint) as enc:
        assert not enc.closed
    assert enc.closed
    with pytest.raises(RuntimeError):  # httpx: a closed client sends nothing
        enc.encode("x")

    ref = f"openai+{URL}?model=m"
    shared = open_encoder(ref, api_key=KEY, transport=endpoint.transport)
    assert open_encoder(ref, api_key=KEY, transport=endpoint.transport) is shared  # one pool per endpoint and key
    assert open_encoder(ref, api_key="another", transport=endpoint.transport) is not shared
    shared.encode("x")
    assert endpoint.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    shared.close()
    reopened = open_encoder(ref, api_key=KEY, transport=endpoint.transport)
    assert reopened is not shared and not reopened.closed
    reopened.close()


def test_shared_clients_are_closed_at_interpreter_exit() -> None:
    child = textwrap.dedent('''
        import atexit
        encoders = []
        atexit.register(lambda: print("closed:", [e.closed for e in encoders]))  # runs after the module's own

        import httpx
        from qdrant_distill.connectors.http_embeddings import open_encoder

        answer = lambda request: httpx.Response(200, json=[[1.0, 0.0]])
        enc = open_encoder("tei+http://127.0.0.1:9", transport=httpx.MockTransport(answer))
        enc.encode("x")
        encoders.append(enc)
        print("open:", [e.closed for e in encoders])
    ''')
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["open: [False]", "closed: [True]"]


def test_a_distillation_sends_its_teachers_key_with_the_teacher_labels(tiny_model_path, demo_texts, tmp_path) -> None:
    """No process-wide key: ``distill(teacher_api_key=...)`` (what a migration passes from embeddings_api_key) reaches
    the endpoint that labels the query-like cuts (a real loopback server)."""
    from qdrant_distill.distillation.config import DistillConfig
    from qdrant_distill.distillation.recipe import distill
    from tests.connectors.fake_embeddings import expected, fake_endpoint

    texts = demo_texts[:40]
    with fake_endpoint() as endpoint:
        config = DistillConfig(base_model=str(tiny_model_path), teacher_model=f"openai+{endpoint.url}?model=m",
                               dim=4, label_queries=8, max_steps=1)
        distill(texts, expected(texts), config, output_dir=tmp_path / "run", progress=False, teacher_api_key=KEY)
    assert endpoint.requests and {r["auth"] for r in endpoint.requests} == {f"Bearer {KEY}"}
