"""``qdrant-distill serve``: the query encoder of whatever collection an alias points to *now*, over HTTP.

Routes (Starlette under uvicorn):

    POST /v1/embeddings   OpenAI shape: {"input": str | [str], "model": ALIAS, "encoding_format"?: "float" | "base64",
                          "input_type"?: "query" | "document", "dimensions"?: int}  (``input_type`` defaults to query)
    POST /embed           TEI shape: {"inputs": str | [str]} -> [[floats], ...]
    GET  /v1/models       the alias, and the collection it points to now
    GET  /health          {"status": "ok", "collection": ..., "model": ...}

Every answer carries ``x-qdrant-distill-collection``: the collection whose encoder made the vectors (query it). A
request is answered against *one* lookup of the alias: its checks (``model``, ``dimensions``), the encoder and the
header all come from the same resolution, even while the alias is swapped back and forth. The encoder of each
collection is loaded once, so after ``swap`` or ``rollback`` the next request gets the new model without a restart.
Requests that wait together are resolved and encoded in one call (:class:`Batcher`): many small requests cost what
one large one does. Limits: inputs a request, bytes a request and UTF-8 bytes an input (413, naming the flag); texts
are cut to what the model reads (``CHARS_PER_TOKEN`` x its ``max_seq_length``) before they are tokenised; bad JSON,
shape or text (a lone surrogate) 400; an optional API key (401; ``/health`` is open to probes). Errors are answered
as one line of JSON and logged as one line (the traceback of an unexpected one only at debug level).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from qdrant_distill.connectors.base import Connector
from qdrant_distill.errors import ConfigError, DistillError
from qdrant_distill.query.registry import CollectionEncoder, encoder_for

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_INPUTS",
    "DEFAULT_MAX_INPUT_BYTES",
    "AliasEncoders",
    "Batcher",
    "ServeSettings",
    "create_app",
    "run",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_INPUTS = 2048  # as OpenAI
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_INPUT_BYTES = 64 * 1024  # UTF-8 bytes of one text: ~16k tokens of English, far past any model's window
DEFAULT_MAX_BATCH = 256  # texts of waiting requests merged into one encode call: fewer, fuller forward passes
# a text is cut at this many characters per token of the model's max_seq_length before it is tokenised (the tokenizer
# would drop the rest anyway, after doing all the work): ordinary text runs 3-8 characters a token
CHARS_PER_TOKEN = 32
COLLECTION_HEADER = "x-qdrant-distill-collection"
ENCODERS_KEPT = 2  # encoders of the last collections the alias pointed to (the one now and the one before)
_FLAGS = {"api_key": "--require-key"}  # the serve option of each setting (the rest: --field-name)


class ServeSettings(BaseModel):
    """What ``serve`` answers for and its limits. ``api_key`` (optional) is what clients must send as a bearer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alias: str
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_key: SecretStr | None = None
    default_model: str | None = Field(default=None, description="encoder of a collection without qdrant-distill "
                                                                "metadata (say the original, after a rollback)")
    max_inputs: int = Field(default=DEFAULT_MAX_INPUTS, gt=0)
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0, description="bytes of one request body")
    max_input_bytes: int = Field(default=DEFAULT_MAX_INPUT_BYTES, gt=0, description="UTF-8 bytes of one input text")
    max_batch: int = Field(default=DEFAULT_MAX_BATCH, gt=0, description="texts of concurrent requests encoded together")

    @classmethod
    def parse(cls, **values: Any) -> ServeSettings:
        """Validate options; a bad value raises :class:`ConfigError` naming its serve option."""
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else ""
            flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
            given = "" if name == "api_key" else f" {first.get('input')!r}"  # a key is never echoed
            raise ConfigError(f"invalid serve option {flag}{given}: {first['msg']}",
                              hint="see qdrant-distill serve --help") from None


class AliasEncoders:
    """The encoder of the alias's collection now: the alias is looked up each time, the encoder of each collection
    is loaded once (the last ``ENCODERS_KEPT`` are kept). Thread-safe (the connector is used under a lock)."""

    def __init__(self, connector: Connector, alias: str, *, default: str | None = None) -> None:
        self.connector = connector
        self.alias = alias
        self.default = default
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, CollectionEncoder] = OrderedDict()

    def current(self) -> CollectionEncoder:
        with self._lock:
            collection, _ = self.connector.resolve(self.alias)
            cached = self._cache.get(collection)
            if cached is None:  # its own lookup of the alias: what it returns is consistent in itself
                cached = encoder_for(self.connector, self.alias, default=self.default)
                self._cache[cached.collection] = cached
                logger.info("serving %s", cached.describe())
            self._cache.move_to_end(cached.collection)
            while len(self._cache) > ENCODERS_KEPT:
                self._cache.popitem(last=False)
            return cached


class _Refused(Exception):
    """An answer other than 200: status and one line for the client."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate quoted back
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


@dataclass
class _Ask:
    """One request for vectors: its texts, their kind, what it asked of the collection, and where its answer goes."""

    texts: list[str]
    kind: str
    model: str | None = None
    dimensions: int | None = None
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def refusal(self, current: CollectionEncoder, alias: str) -> _Refused | None:
        """Why ``current`` (the collection the alias resolved to for this request) cannot answer it, if it cannot."""
        if self.model not in (None, alias, current.collection):
            return _Refused(404, f"model {self.model!r} is not served here; this server serves {alias!r}",
                            "model_not_found")
        if self.dimensions not in (None, current.dim):
            return _Refused(400, f"{alias!r} answers {current.dim}-d vectors, not {self.dimensions}-d")
        return None


def _cut(texts: list[str], current: CollectionEncoder) -> list[str]:
    """``texts`` cut to what the model reads: ``CHARS_PER_TOKEN`` characters a token of its ``max_seq_length``
    (unchanged for an encoder without one: a static model averages every token, an endpoint cuts for itself)."""
    tokens = getattr(current.encoder, "max_seq_length", None)
    if not isinstance(tokens, int) or tokens <= 0:
        return texts
    chars = tokens * CHARS_PER_TOKEN
    return [text[:chars] for text in texts]


class Batcher:
    """Answers the requests that wait together with one lookup of the alias and one encode call (as TEI batches its
    clients): one encode at a time, of up to ``max_batch`` texts (a larger request goes alone). Each request is
    checked against that lookup and gets its rows back with the collection whose encoder made them."""

    def __init__(self, encoders: AliasEncoders, max_batch: int) -> None:
        self.encoders = encoders
        self.max_batch = max_batch
        self._queue: list[_Ask] = []
        self._worker: asyncio.Task[None] | None = None

    async def encode(self, ask: _Ask) -> tuple[CollectionEncoder, np.ndarray]:
        self._queue.append(ask)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await ask.future

    def _take(self) -> list[_Ask]:
        """The oldest waiting request, and the later ones of the same kind that fit beside it."""
        group = [self._queue.pop(0)]
        size, kind, index = len(group[0].texts), group[0].kind, 0
        while index < len(self._queue):
            ask = self._queue[index]
            if ask.kind == kind and size + len(ask.texts) <= self.max_batch:
                group.append(self._queue.pop(index))
                size += len(ask.texts)
            else:
                index += 1
        return group

    def _run(self, group: list[_Ask]) -> tuple[CollectionEncoder, list[np.ndarray | _Refused]]:
        """One lookup of the alias for the whole group: each request's checks, then one encode of those it passes."""
        current = self.encoders.current()
        answers: list[np.ndarray | _Refused | None] = [ask.refusal(current, self.encoders.alias) for ask in group]
        accepted = [ask for ask, answer in zip(group, answers) if answer is None]
        texts = _cut([t for ask in accepted for t in ask.texts], current)
        vectors = current.encoder.encode(texts, kind=group[0].kind) if texts else None  # type: ignore[arg-type]
        start = 0
        for i, ask in enumerate(group):
            if answers[i] is None:
                answers[i] = vectors[start : start + len(ask.texts)]  # type: ignore[index]
                start += len(ask.texts)
        return current, answers  # type: ignore[return-value]

    async def _drain(self) -> None:
        import anyio

        while self._queue:
            group = [ask for ask in self._take() if not ask.future.done()]  # a client that left is skipped
            if not group:
                continue
            try:
                current, answers = await anyio.to_thread.run_sync(self._run, group)
            except Exception as exc:  # noqa: BLE001 - handed to every request of the group, answered there
                for ask in group:
                    if not ask.future.done():
                        ask.future.set_exception(exc)
                continue
            for ask, answer in zip(group, answers):
                if ask.future.done():
                    continue
                if isinstance(answer, _Refused):
                    ask.future.set_exception(answer)
                else:
                    ask.future.set_result((current, answer))


# ------------------------------------------------------------------------------------------------------------ the app
def _texts(value: Any, field: str, settings: ServeSettings) -> list[str]:
    """The texts of a request, each valid Unicode and within ``max_input_bytes`` of UTF-8, at most ``max_inputs``."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise _Refused(400, f"{field!r} must be a string or a non-empty list of strings")
    if len(texts) > settings.max_inputs:
        raise _Refused(413, f"{len(texts)} inputs in one request; at most {settings.max_inputs} (serve --max-inputs)")
    for i, text in enumerate(texts):
        try:  # ASCII is its own UTF-8; any other text is encoded once, which also finds a lone surrogate
            size = len(text) if text.isascii() else len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise _Refused(400, f"{field} {i} is not valid Unicode: it holds a lone surrogate") from None
        if size > settings.max_input_bytes:
            raise _Refused(413, f"{field} {i} is {size} bytes of UTF-8; at most {settings.max_input_bytes} a text "
                                "(serve --max-input-bytes)")
    return texts


def _dimensions(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise _Refused(400, "dimensions must be an integer")


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Handlers:
    """The endpoints: each reads and checks its request, encodes through the batcher, and answers JSON; refusals
    and failures become one JSON line with a status, and one line in the log (no traceback reaches the client)."""

    def __init__(self, encoders: AliasEncoders, settings: ServeSettings) -> None:
        self.encoders, self.settings = encoders, settings
        self.batcher = Batcher(encoders, settings.max_batch)

    @staticmethod
    def refused(exc: _Refused) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"error": {"message": exc.message, "type": exc.kind, "code": exc.status}},
                            status_code=exc.status)

    def authorise(self, request: Any) -> None:
        if self.settings.api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else request.headers.get("api-key", "")
        if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"),
                                   self.settings.api_key.get_secret_value().encode()):
            raise _Refused(401, "missing or wrong API key (send Authorization: Bearer KEY)", "authentication_error")

    async def read_json(self, request: Any) -> dict[str, Any]:
        limit = self.settings.max_bytes
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise _Refused(413, f"request of {length} bytes; at most {limit} (serve --max-bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _Refused(413, f"request over {limit} bytes (serve --max-bytes)")
        try:
            payload = json.loads(b"".join(chunks))
        except (ValueError, RecursionError):
            raise _Refused(400, "the body is not valid JSON (UTF-8)") from None
        if not isinstance(payload, dict):
            raise _Refused(400, "the body must be a JSON object")
        return payload

    async def current(self) -> CollectionEncoder:
        import anyio

        return await anyio.to_thread.run_sync(self.encoders.current)

    def guarded(self, handler: Any, *, open_to_all: bool = False) -> Any:
        async def endpoint(request: Any) -> Any:
            try:
                if not open_to_all:
                    self.authorise(request)
                return await handler(request)
            except _Refused as exc:
                return self.refused(exc)
            except DistillError as exc:  # the alias or its encoder is unusable now: one line, no traceback
                logger.warning("cannot answer %s %s: %s: %s", request.method, request.url.path, type(exc).__name__,
                               _one_line(str(exc)))
                return self.refused(_Refused(503, f"{type(exc).__name__}: {_one_line(exc.message)}", "server_error"))
            except Exception as exc:  # noqa: BLE001 - one line in the log (the traceback with --debug), not sent
                logger.error("internal error answering %s %s: %s: %s", request.method, request.url.path,
                             type(exc).__name__, _one_line(str(exc)))
                logger.debug("the traceback", exc_info=True)
                return self.refused(_Refused(500, "internal error", "server_error"))

        return endpoint

    async def embeddings(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        payload = await self.read_json(request)
        texts = _texts(payload.get("input"), "input", self.settings)
        fmt, kind = payload.get("encoding_format") or "float", payload.get("input_type") or "query"
        if fmt not in ("float", "base64") or kind not in ("query", "document"):
            raise _Refused(400, "encoding_format must be float or base64, input_type query or document")
        model = payload.get("model")
        ask = _Ask(texts, kind, model if model is None else str(model), _dimensions(payload.get("dimensions")))
        current, vectors = await self.batcher.encode(ask)
        data = [{"object": "embedding", "index": i, "embedding": _encoded(v, fmt)} for i, v in enumerate(vectors)]
        tokens = sum(len(t.split()) for t in texts)  # words: no tokenizer is loaded for this
        return JSONResponse({"object": "list", "data": data, "model": self.encoders.alias,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                            headers={COLLECTION_HEADER: current.collection})

    async def embed(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        payload = await self.read_json(request)
        texts = _texts(payload.get("inputs"), "inputs", self.settings)
        current, vectors = await self.batcher.encode(_Ask(texts, "query"))
        return JSONResponse(vectors.tolist(), headers={COLLECTION_HEADER: current.collection})

    async def models(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        current = await self.current()
        entries = [{"id": name, "object": "model", "owned_by": "qdrant-distill"}
                   for name in dict.fromkeys([self.encoders.alias, current.collection])]
        return JSONResponse({"object": "list", "data": entries}, headers={COLLECTION_HEADER: current.collection})

    async def health(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        current = await self.current()
        return JSONResponse({"status": "ok", "alias": self.encoders.alias, "collection": current.collection,
                             "dim": current.dim, "mode": current.mode, "model": current.encoder.name},
                            headers={COLLECTION_HEADER: current.collection})

    async def not_found(self, request: Any, exc: Exception) -> Any:
        status = getattr(exc, "status_code", 404)
        return self.refused(_Refused(status, f"no route {request.method} {request.url.path}"))


def create_app(encoders: AliasEncoders, settings: ServeSettings) -> Any:
    """The ASGI app (Starlette)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    h = _Handlers(encoders, settings)
    routes = [Route("/v1/embeddings", h.guarded(h.embeddings), methods=["POST"]),
              Route("/embeddings", h.guarded(h.embeddings), methods=["POST"]),
              Route("/embed", h.guarded(h.embed), methods=["POST"]),
              Route("/v1/models", h.guarded(h.models), methods=["GET"]),
              Route("/health", h.guarded(h.health, open_to_all=True), methods=["GET"])]
    return Starlette(routes=routes, exception_handlers={404: h.not_found, 405: h.not_found})


def _encoded(vector: np.ndarray, fmt: str) -> Any:
    if fmt == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.tolist()


def run(connector: Connector, settings: ServeSettings, *, log_level: str = "warning") -> None:
    """Resolve the alias once (fail fast), then serve on ``settings.host:port`` until interrupted."""
    import uvicorn

    encoders = AliasEncoders(connector, settings.alias, default=settings.default_model)
    current = encoders.current()
    logger.info("serving alias %r on http://%s:%d: %s", settings.alias, settings.host, settings.port,
                current.describe())
    uvicorn.run(create_app(encoders, settings), host=settings.host, port=settings.port, log_level=log_level,
                access_log=False)
