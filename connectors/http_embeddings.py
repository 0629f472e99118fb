"""Embedding models behind HTTP (httpx): OpenAI-compatible, Hugging Face TEI and Ollama endpoints.

A reference names the API, the endpoint and the model, and reads the same on the command line and in TOML::

    openai+https://api.openai.com/v1?model=text-embedding-3-small&dimensions=512
    openai+http://127.0.0.1:8000?model=docs          (qdrant-distill serve, vLLM, infinity, TEI's /v1 route)
    tei+http://127.0.0.1:8080
    ollama+http://127.0.0.1:11434?model=nomic-embed-text

Query options: ``model``, ``dimensions`` (sent to OpenAI, checked for all), ``batch`` (texts a request), ``tokens``
(approximate tokens a request), ``in_flight`` (requests at once), ``timeout`` (seconds), ``attempts``, ``wait_max``
(seconds: the longest wait between attempts, Retry-After included). The API key
never goes into a reference (references are written to journals and collection metadata): it travels with the
encoder's settings (``EmbeddingsSettings(api_key=...)``, ``open_encoder(ref, api_key=...)``,
``load_encoder(ref, api_key=...)``, which the migration passes ``MigrationConfig.embeddings_api_key``: the CLI's
``--embeddings-api-key`` or the config file), else it comes from the environment
(``QDRANT_DISTILL_EMBEDDINGS_API_KEY``; ``OPENAI_API_KEY`` for ``openai``); it is sent only as a bearer token.

:class:`HttpEncoder` is an :class:`~qdrant_distill.inference.encoders.Encoder`: ``load_encoder`` returns one for these
references. Texts go out in batches of like lengths (by count and an approximate token budget; a batch refused with
413/422 is split and the smaller size kept), a bounded number at once over one connection pool; connection errors,
timeouts, 429 and 5xx are retried (``Retry-After`` honoured, every retry logged). The transport is a seam
(``transport=``: tests pass ``httpx.MockTransport``). Encoders from :func:`open_encoder` are shared per process until
closed, and closed at interpreter exit. Importing this module does not import httpx.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from qdrant_distill.connectors._http_providers import (
    Provider,
    embeddings_path,
    read_answer,
    request_body,
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
from qdrant_distill.redact import redact_text, redact_url
from qdrant_distill.vectors import unit_rows

if TYPE_CHECKING:
    import httpx

__all__ = [
    "API_KEY_ENV",
    "EmbeddingsSettings",
    "HttpEncoder",
    "Provider",
    "approx_tokens",
    "check_reference_prefix",
    "is_http_reference",
    "open_encoder",
    "plan_batches",
    "in_memory_reference",
    "shown_reference",
    "stored_reference",
]

logger = logging.getLogger(__name__)

API_KEY_ENV = "QDRANT_DISTILL_EMBEDDINGS_API_KEY"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_BATCH = {Provider.OPENAI: 2048, Provider.TEI: 32, Provider.OLLAMA: 32}  # OpenAI: 2,048 inputs a request
DEFAULT_TOKENS = {Provider.OPENAI: 300_000, Provider.TEI: None, Provider.OLLAMA: None}  # OpenAI: 300k tokens a request
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
SPLIT_STATUS = frozenset({413, 422})  # TEI: batch larger than its max_client_batch_size / max_batch_tokens
_OPTIONS = {"model": "model", "dimensions": "dimensions", "batch": "batch_size", "tokens": "max_tokens",
            "in_flight": "in_flight", "timeout": "timeout", "attempts": "attempts", "wait_max": "wait_max"}
_SECRET_OPTIONS = {"api_key", "key", "token", "apikey", "api-key"}


def is_http_reference(ref: object) -> bool:
    """Whether ``ref`` names an embeddings endpoint (``openai+http...``, ``tei+http...``, ``ollama+http...``)."""
    return isinstance(ref, str) and any(ref.startswith(f"{p.value}+http") for p in Provider)


_PREFIXED_URL = re.compile(r"^(?P<prefix>[A-Za-z][A-Za-z0-9_.-]*)\+(?P<scheme>[A-Za-z][A-Za-z0-9.-]*)://")


def check_reference_prefix(ref: object) -> None:
    """Refuse what looks like an embeddings reference with an unknown API prefix (``openia+http://...``): it would
    otherwise be taken for a model folder or hub name, and fail as a missing file."""
    match = _PREFIXED_URL.match(ref) if isinstance(ref, str) else None
    if match is None or is_http_reference(ref):
        return
    valid = ", ".join(f"{p.value}+" for p in Provider)
    raise ConfigError(f"unknown embeddings API {match.group('prefix')!r} in {redact_url(ref)!r}",
                      hint=f"an embeddings reference starts with {valid} followed by http:// or https://")


def stored_reference(ref: str) -> str:
    """A model reference as it is recorded (journal, fingerprint, report, ``distill.json``, collection metadata): an
    embeddings endpoint by its API, scheme, host, port, model and dimensions only, a form that can hold no secret
    (its userinfo, path, other options and fragment may hold a token: they stay in the memory of the process they
    were given to, see :func:`in_memory_reference`); any other reference as it is, any URL in it redacted."""
    if not is_http_reference(ref):
        return redact_text(ref) if "://" in str(ref) else ref
    try:
        settings = EmbeddingsSettings.from_reference(ref)
    except ConfigError:
        provider, _, url = ref.partition("+")
        return f"{provider}+{redact_url(url)}"
    return settings.recorded


def shown_reference(ref: str) -> str:
    """How a model reference is shown in plans, reports, tables and messages, the one function that shows one: an
    embeddings endpoint by its API, scheme, host, port and model (:func:`stored_reference`), any other reference as
    it is recorded."""
    stored = stored_reference(ref)
    if not is_http_reference(stored):
        return stored
    head, _, query = stored.partition("?")
    model = dict(parse_qsl(query)).get("model")
    return f"{head} model {model}" if model else head


def in_memory_reference(stored: str, given: str | None) -> str:
    """The reference to load a recorded one by: ``given`` (what this process was handed, path and all) when it is
    the same model as ``stored``, else ``stored`` itself (an endpoint then answers at its default path)."""
    return given if given is not None and stored_reference(given) == stored else stored


def approx_tokens(text: str) -> int:
    """A cautious token estimate (about 3 bytes a token; English runs nearer 4): never over an API's budget."""
    return len(text.encode("utf-8", "surrogatepass")) // 3 + 1


def plan_batches(texts: Sequence[str], max_items: int, max_tokens: int | None) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges of at most ``max_items`` texts and ``max_tokens`` estimated tokens (a
    single text over the budget goes alone: the endpoint truncates it or says why not)."""
    batches, start, tokens = [], 0, 0
    for i, text in enumerate(texts):
        cost = approx_tokens(text)
        if i > start and (i - start >= max_items or (max_tokens is not None and tokens + cost > max_tokens)):
            batches.append((start, i))
            start, tokens = i, 0
        tokens += cost
    if start < len(texts):
        batches.append((start, len(texts)))
    return batches


# ----------------------------------------------------------------------------------------------------------- settings
class EmbeddingsSettings(BaseModel):
    """One endpoint and model. ``reference`` names it in full (path included: held in memory only); ``recorded``
    is its secret-free name (the encoder's ``name``, what is recorded and shown: :func:`stored_reference`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Provider
    url: str = Field(description="base URL: scheme, host, port and any path prefix (e.g. https://host/v1)")
    model: str | None = None
    dimensions: int | None = Field(default=None, gt=0)
    api_key: SecretStr | None = None
    batch_size: int | None = Field(default=None, gt=0, description="texts a request [default: by provider]")
    max_tokens: int | None = Field(default=None, gt=0, description="approximate tokens a request [by provider]")
    in_flight: int = Field(default=4, gt=0, description="requests at once over the connection pool")
    timeout: float = Field(default=60.0, gt=0)
    attempts: int = Field(default=6, gt=0)
    wait_max: float = Field(default=20.0, ge=0, description="cap of a backoff wait and of an honoured Retry-After")

    @model_validator(mode="after")
    def _check(self) -> EmbeddingsSettings:
        parts = urlsplit(self.url)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            parts = parts._replace(scheme="")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"bad embeddings URL {redact_url(self.url)!r}",
                              hint="expected http(s)://host[:port][/path]")
        if parts.username or parts.password or parts.query:
            raise ConfigError(f"the embeddings URL {redact_url(self.url)!r} holds credentials or a query: it must not "
                              "(it is recorded in journals and metadata)",
                              hint=f"give the key by --embeddings-api-key or {API_KEY_ENV}")
        if self.provider is not Provider.TEI and not self.model:
            raise ConfigError(f"the {self.provider.value} endpoint {self.shown} needs a model",
                              hint=f"add ?model=NAME to the reference: {self.provider.value}+URL?model=NAME")
        return self

    @classmethod
    def from_reference(cls, ref: str, **overrides: Any) -> EmbeddingsSettings:
        """Parse ``provider+http(s)://host[:port][/path]?model=...&...`` (see the module docstring)."""
        provider, _, url = ref.partition("+")
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        shown = f"{provider}+{redact_url(url)}"  # messages show scheme, host and port (qdrant_distill.redact)
        secret = _SECRET_OPTIONS & {k.lower() for k in options}
        if secret:
            raise ConfigError(f"the embeddings reference {shown!r} holds an API key: it must not (it is recorded in "
                              "journals and metadata)", hint=f"give it by --embeddings-api-key or {API_KEY_ENV}")
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r} in the embeddings reference {shown!r}",
                              hint="options: " + ", ".join(_OPTIONS))
        fields = {_OPTIONS[k]: v for k, v in options.items()}
        try:
            return cls(provider=provider, url=urlunsplit(parts._replace(query="", fragment="")), **fields,
                       **overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "reference"
            raise ConfigError(f"bad embeddings reference {shown!r}: {where}: {first['msg']}",
                              hint="expected openai|tei|ollama+http(s)://host[:port][/path][?model=NAME]") from None

    @property
    def reference(self) -> str:
        options = {"model": self.model, "dimensions": self.dimensions}
        query = "&".join(f"{k}={v}" for k, v in options.items() if v is not None)
        return f"{self.provider.value}+{self.url}" + (f"?{query}" if query else "")

    @property
    def recorded(self) -> str:
        """The reference without its path: API, scheme, host, port, model and dimensions (safe to record)."""
        options = {"model": self.model, "dimensions": self.dimensions}
        query = "&".join(f"{k}={v}" for k, v in options.items() if v is not None)
        return self.shown + (f"?{query}" if query else "")

    @property
    def shown(self) -> str:
        """What messages and logs name the endpoint by: the API, scheme, host and port; never the path, which may
        hold a token (:func:`qdrant_distill.redact.redact_url`)."""
        return f"{self.provider.value}+{redact_url(self.url)}"

    @property
    def endpoint(self) -> str:
        """The URL requests go to."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=embeddings_path(self.provider, parts.path)))

    def key(self) -> SecretStr | None:
        """The API key: the settings', else the environment's."""
        if self.api_key is not None:
            return self.api_key
        names = [API_KEY_ENV] + ([OPENAI_KEY_ENV] if self.provider is Provider.OPENAI else [])
        value = next((os.environ[n] for n in names if os.environ.get(n)), None)
        return SecretStr(value) if value else None


# ------------------------------------------------------------------------------------------------------------ retries
class _Retryable(Exception):
    """A transient answer (429, 5xx): retried; ``retry_after`` in seconds when the server said."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a number; an HTTP date counts as unknown)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


class _Wait:
    """Honour ``Retry-After`` (capped at ``cap``), else back off exponentially with jitter; records every wait."""

    def __init__(self, cap: float, fallback: Callable[[Any], float] | None = None) -> None:
        self.cap = cap
        self.fallback = fallback or wait_random_exponential(multiplier=0.5, max=cap)
        self.waits: list[float] = []

    def __call__(self, state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = getattr(exc, "retry_after", None)
        seconds = min(hinted, self.cap) if hinted is not None else float(self.fallback(state))
        self.waits.append(seconds)
        return seconds


# ------------------------------------------------------------------------------------------------------------ encoder
class HttpEncoder:
    """An :class:`~qdrant_distill.inference.encoders.Encoder` over an embeddings endpoint. ``close()`` ends its connections.

    ``wait`` replaces the backoff (tests pass ``tenacity.wait_none()``); ``Retry-After`` is honoured up to
    ``settings.wait_max``. ``retries`` counts the retries fired and ``waits`` lists their waits. ``transport`` is
    the ``httpx`` transport requests go through (default: the network); ``sleep`` what waits between attempts.
    """

    def __init__(
        self, settings: EmbeddingsSettings, *, normalize: bool = True, wait: Any = None,
        transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx

        self.settings = settings
        self.normalize = normalize
        self._wait = _Wait(settings.wait_max, wait)
        self._sleep = sleep
        self._batch = settings.batch_size or DEFAULT_BATCH[settings.provider]
        self._tokens = settings.max_tokens or DEFAULT_TOKENS[settings.provider]
        self._dim = settings.dimensions
        self._lock = threading.Lock()
        self.retries = 0
        key = settings.key()
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        limits = httpx.Limits(max_connections=settings.in_flight, max_keepalive_connections=settings.in_flight)
        self._client = httpx.Client(headers=headers, limits=limits, timeout=httpx.Timeout(settings.timeout),
                                    transport=transport)

    @property
    def name(self) -> str:
        return self.settings.recorded

    @property
    def dim(self) -> int:
        if self._dim is None:  # asked before any text was encoded: one probe request
            self.encode(["dimension probe"])
        assert self._dim is not None
        return self._dim

    @property
    def waits(self) -> list[float]:
        return self._wait.waits

    def __repr__(self) -> str:
        return f"HttpEncoder({self.describe()})"

    def describe(self) -> str:
        key = "key set" if self.settings.key() else "no key"
        dim = f"{self._dim}-d, " if self._dim else ""
        return f"endpoint {self.settings.shown} model {self.settings.model or '-'} ({dim}http, {key})"

    def encode(self, texts: str | Sequence[str], *, kind: str = "document") -> np.ndarray:
        """Float32 ``[n, dim]``; ``kind`` is accepted for the interface (these APIs take no query/document flag)."""
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        order = np.argsort([len(t) for t in items], kind="stable")  # batches of like lengths: less padding there
        ordered = [items[i] for i in order]
        batches = plan_batches(ordered, self._batch, self._tokens)
        if len(batches) == 1:
            parts = [self._encode_batch(ordered)]
        else:
            with ThreadPoolExecutor(max_workers=min(self.settings.in_flight, len(batches))) as pool:
                parts = list(pool.map(lambda r: self._encode_batch(ordered[r[0]:r[1]]), batches))
        stacked = np.concatenate(parts)
        vectors = np.empty_like(stacked)
        vectors[order] = stacked  # back in the order given
        self._check_dim(vectors.shape[1])
        if self.normalize:
            vectors = unit_rows(vectors)
        return vectors.astype(np.float32, copy=False)

    @property
    def closed(self) -> bool:
        return self._client.is_closed

    def close(self) -> None:
        """End the connections (an encoder from :func:`open_encoder` is then opened anew by the next call)."""
        self._client.close()

    def __enter__(self) -> HttpEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one batch --------------------------------------------------------------------------------------------------

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        """One request (retried); a batch the endpoint finds too large is split in two, and the smaller size kept."""
        response = self._post(texts)
        if response.status_code in SPLIT_STATUS and len(texts) > 1:
            half = len(texts) // 2
            with self._lock:
                if half < self._batch:
                    logger.info("%s refused a batch of %d texts (%d): batches of %d from now on",
                                self.settings.shown, len(texts), response.status_code, half)
                    self._batch = half
            return np.concatenate([self._encode_batch(texts[:half]), self._encode_batch(texts[half:])])
        self._raise_for_status(response)
        return read_answer(self.settings.provider, self._json(response), len(texts), where=self.settings.shown)

    def _post(self, texts: list[str]) -> httpx.Response:
        import httpx

        body = request_body(self.settings.provider, texts, model=self.settings.model,
                            dimensions=self.settings.dimensions)

        def attempt() -> httpx.Response:
            response = self._client.post(self.settings.endpoint, json=body)
            if response.status_code in TRANSIENT_STATUS:
                response.read()
                raise _Retryable(response.status_code, _retry_after(response.headers.get("retry-after")))
            return response

        def count(state: Any) -> None:
            with self._lock:
                self.retries += 1

        retrying = Retrying(
            retry=retry_if_exception_type((httpx.TransportError, _Retryable)),
            stop=stop_after_attempt(self.settings.attempts),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda state: (count(state), before_sleep_log(logger, logging.WARNING)(state)),
        )
        try:
            return retrying(attempt)
        except _Retryable as exc:
            raise ServerError(f"{self.settings.shown} answered {exc.status} {self.settings.attempts} times",
                              hint="the endpoint is overloaded or down; try later", status=exc.status) from None
        except httpx.RequestError as exc:  # transport errors after the retries; a body that cannot be decoded
            raise ConnectionFailed(f"cannot reach the embeddings endpoint {self.settings.shown} "
                                   f"({type(exc).__name__}, {self.settings.attempts} attempts)",
                                   hint="check the URL and that the server is running") from None

    def _raise_for_status(self, response: httpx.Response) -> None:
        status, where = response.status_code, self.settings.shown
        if 300 <= status < 400:
            self._refuse_redirect(response)
        if status < 400:
            return
        if status in (401, 403):
            raise AuthenticationFailed(f"the embeddings endpoint {where} refused the credentials ({status})",
                                       hint=f"check the API key (--embeddings-api-key or {API_KEY_ENV})", status=status)
        if status == 404:
            raise ModelNotFound(f"{where} does not serve the model {self.settings.model or '(default)'!r} (404)",
                                hint="check the model name and the URL's path", status=status)
        raise ServerError(f"{where} answered {status}: {self._detail(response)}", status=status)

    def _refuse_redirect(self, response: httpx.Response) -> None:
        """A redirect is not followed (it could take the texts and the key elsewhere): say where it leads."""
        location = response.headers.get("location")
        status, target = response.status_code, urljoin(self.settings.endpoint, location) if location else None
        if target is None:
            to = "without saying where"
        elif redact_url(target) == redact_url(self.settings.endpoint):
            to = "to another path on the same server"
        else:
            to = f"to {redact_url(target)}"
        raise ServerError(f"{self.settings.shown} redirected ({status}) {to}; redirects are not followed",
                          hint="give the URL the endpoint redirects to (its https:// address, or its exact path)",
                          status=status)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content-type").split(";")[0]
            raise MalformedAnswer(f"{self.settings.shown} answered {kind}, not JSON: "
                                  f"{self._detail(response)!r}", hint="is the URL an embeddings API?") from None

    def _detail(self, response: httpx.Response, limit: int = 120) -> str:
        text = redact_text(" ".join(response.text.split()))
        key = self.settings.key()
        if key and key.get_secret_value():
            text = text.replace(key.get_secret_value(), "**********")
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def _check_dim(self, dim: int) -> None:
        with self._lock:
            if self.settings.dimensions is not None and dim != self.settings.dimensions:
                raise DimensionError(f"{self.settings.shown} answered {dim}-d vectors, {self.settings.dimensions}-d asked for",
                                     hint="the model does not support dimensions=; drop it or pick another model")
            if self._dim is not None and dim != self._dim:
                raise MalformedAnswer(f"{self.settings.shown} answered {dim}-d vectors after {self._dim}-d ones")
            self._dim = dim


_shared: dict[tuple[Any, ...], HttpEncoder] = {}  # a process talks to few endpoints: kept until closed
_shared_lock = threading.Lock()


def open_encoder(
    ref: str, *, normalize: bool = True, api_key: str | SecretStr | None = None,
    transport: httpx.BaseTransport | None = None,
) -> HttpEncoder:
    """The encoder of a reference, shared per process (one connection pool per endpoint, model, key and transport)
    until it is closed. ``api_key`` is the endpoint's key (None: the environment's, see the module docstring)."""
    key = SecretStr(api_key) if isinstance(api_key, str) else api_key
    settings = EmbeddingsSettings.from_reference(ref, **({"api_key": key} if key is not None else {}))
    resolved = settings.key()
    fingerprint = hashlib.sha256(resolved.get_secret_value().encode()).hexdigest() if resolved else ""
    shared_as = (settings.model_copy(update={"api_key": None}), normalize, fingerprint, transport)
    with _shared_lock:
        encoder = _shared.get(shared_as)
        if encoder is None or encoder.closed:
            encoder = _shared[shared_as] = HttpEncoder(settings, normalize=normalize, transport=transport)
    return encoder


@atexit.register
def _close_shared() -> None:
    """Close the shared encoders' connections (at interpreter exit)."""
    with _shared_lock:
        encoders = list(_shared.values())
        _shared.clear()
    for encoder in encoders:
        encoder.close()
