"""Embeddings answers are checked before they are trusted (issue 31, item 2): a real endpoint on loopback answers
badly on purpose; each bad answer is one :class:`MalformedAnswer` naming the endpoint, asked once (never retried), and
no numpy warning reaches the screen."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tenacity import wait_none

from qdrant_distill.connectors.http_embeddings import EmbeddingsSettings, HttpEncoder
from qdrant_distill.errors import MalformedAnswer
from tests.reliability.conftest import FIGURES
from tests.reliability.fake_server import answering_server

TEXTS = [f"text {i}" for i in range(10)]  # one length: one batch, in this order
ROWS = np.array([[i + 1.0, 0.5, -float(i), 2.0] for i in range(10)], dtype=np.float32)


def openai(indices: list[Any], rows: np.ndarray = ROWS) -> Any:
    """An OpenAI-shaped answer whose i-th item carries ``indices[i]`` and the vector of that index (or of i)."""
    def answer(texts: list[str]) -> Any:
        return {"data": [{"index": index, "embedding": rows[index if type(index) is int and 0 <= index < 10 else i]
                          .tolist()} for i, index in enumerate(indices)]}
    return answer


def encoder(url: str, provider: str = "openai") -> HttpEncoder:
    model = "?model=m" if provider != "tei" else ""
    return HttpEncoder(EmbeddingsSettings.from_reference(f"{provider}+{url}{model}"), normalize=False, wait=wait_none())


def refused(answer: Any, says: str, provider: str = "openai") -> str:
    """The answer is refused with one MalformedAnswer naming the endpoint, after one request, with no warning."""
    with answering_server(answer) as server, encoder(server.url, provider) as enc:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a RuntimeWarning (numpy's overflow in a cast) fails the test
            with pytest.raises(MalformedAnswer) as caught:
                enc.encode(TEXTS)
        assert server.posts == 1  # not transient: not retried
    message = str(caught.value)
    assert message.startswith(f"{provider}+{server.url} answered"), message
    assert says in message, message
    return message


@pytest.mark.parametrize(("indices", "says"), [
    ([0] * 10, "not 0..9 once each (missing 1, 2, 3, ...; repeated 0)"),
    ([9, 8, 7, 6, 5, 4, 3, 2, 1, 9], "not 0..9 once each (missing 0; repeated 9)"),
    (list(range(1, 11)), "not 0..9 once each (missing 0; out of range 10)"),
    ([*range(9), -1], "not 0..9 once each (missing 9; out of range -1)"),
    ([*range(9), "9"], "index that is not a whole number ('9')"),
    ([*range(9), 9.0], "index that is not a whole number (9.0)"),
    ([*range(9), True], "index that is not a whole number (True)"),
    (list(range(9)), "answered 9 vectors for 10 texts"),
])
def test_indices_must_be_each_text_once(indices, says) -> None:
    refused(openai(indices), says)
    FIGURES.setdefault("answers: bad indices refused", set()).add(str(indices)[:24])


def test_indices_in_any_order_give_each_text_its_vector() -> None:
    order = [3, 9, 0, 7, 1, 8, 2, 6, 4, 5]
    with answering_server(openai(order)) as server, encoder(server.url) as enc:
        got = enc.encode(TEXTS)
    np.testing.assert_array_equal(got, ROWS)  # row i is text i's, exactly


def _b64(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


@pytest.mark.parametrize(("provider", "body", "says"), [
    ("openai", '{"data": [%s]}' % ", ".join(f'{{"index": {i}, "embedding": [1e39, 0.5]}}' for i in range(10)),
     "numbers beyond float32 (up to 1e+39; float32 holds 3.4e+38)"),
    ("tei", "[%s]" % ", ".join(["[-3.5e38, 1.0]"] * 10), "numbers beyond float32 (up to 3.5e+38"),
    ("tei", "[%s]" % ", ".join(["[1" + "0" * 400 + ", 1.0]"] * 10), "non-finite numbers"),
    ("tei", "[%s]" % ", ".join(["[1e400, 1.0]"] * 10), "non-finite numbers"),
    ("ollama", '{"embeddings": [%s]}' % ", ".join(["[NaN, 1.0]"] * 10), "non-finite numbers"),
    ("tei", "[%s]" % ", ".join(["[1.0, 2.0]"] * 9 + ["[1.0]"]), "vectors of different sizes ([1, 2])"),
    ("openai", '{"data": [%s]}' % ", ".join(f'{{"index": {i}, "embedding": "{_b64([np.inf, 1.0])}"}}'
                                          for i in range(10)), "non-finite numbers"),
])
def test_numbers_must_be_finite_float32_of_one_size(provider, body, says) -> None:
    refused(lambda texts: body, says, provider)


def test_an_overflowing_answer_is_one_line_on_the_screen(tmp_path: Path) -> None:
    """Through the real command line, in a process of its own (pytest would catch a warning before the screen):
    ``evaluate --model`` against an endpoint answering 1e39 prints one line, no RuntimeWarning, no source line."""
    from tests.test_migration import write_beir

    write_beir(tmp_path / "beir", TEXTS, n=10)
    body = lambda texts: "[%s]" % ", ".join(["[1e39, 1.0]"] * len(texts))  # noqa: E731
    with answering_server(body) as server:
        done = subprocess.run(
            [sys.executable, "-c", "from qdrant_distill.cli.app import main; main()", "evaluate", "--model",
             f"tei+{server.url}", "--beir", str(tmp_path / "beir")],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert done.returncode == 1, done.stderr
    *said, last = done.stderr.strip().splitlines()  # what evaluate says it starts, then the error
    assert last == (f"error: MalformedAnswer: tei+{server.url} answered numbers beyond float32 (up to 1e+39; float32 "
                    "holds 3.4e+38)"), done.stderr
    assert len(said) == 1 and said[0].startswith("evaluating "), done.stderr
    assert server.posts == 1
