"""``qdrant-distill serve``: the query encoder of whatever collection an alias points to *now*, over HTTP.

Routes (Starlette under uvicorn):

    POST /v1/embeddings   OpenAI shape: {"input": str | [str], "model": ALIAS, "encoding_format"?: "float" | "base64",
                          "input_type"?: "query" | "document"}  (``input_type`` defaults to query)
    POST /embed           TEI shape: {"inputs": str | [str]} -> [[floats], ...]
    GET  /v1/models       the alias, and the collection it points to now
    GET  /health          {"status": "ok", "collection": ..., "model": ...}

Every answer carries ``x-qdrant-distill-collection``: the collection whose encoder made the vectors (query it). The
alias is resolved on each encode (one cheap alias lookup); the encoder of each collection is loaded once, so after
``swap`` or ``rollback`` the next request gets the new model without a restart. Requests that wait together are
encoded in one call (:class:`Batcher`): many small requests cost what one large one does. Limits: inputs and bytes
a request (413), bad JSON or shape (400), an optional API key (401; ``/health`` is open to probes), errors answered
as one line, never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import threading
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base import Connector
from qdrant_distill.errors import DistillError
from qdrant_distill.registry import CollectionEncoder, encoder_for

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_INPUTS",
    "AliasEncoders",
    "Batcher",
    "ServeSettings",
    "create_app",
    "run",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_INPUTS = 2048  # as OpenAI
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_BATCH = 256  # texts of waiting requests merged into one encode call: fewer, fuller forward passes
COLLECTION_HEADER = "x-qdrant-distill-collection"


class ServeSettings(BaseModel):
    """What ``serve`` answers for and its limits. ``api_key`` (optional) is what clients must send as a bearer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alias: str
    api_key: SecretStr | None = None
    default_model: str | None = Field(default=None, description="encoder of a collection without qdrant-distill "
                                                                "metadata (say the original, after a rollback)")
    max_inputs: int = Field(default=DEFAULT_MAX_INPUTS, gt=0)
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0)
    max_batch: int = Field(default=DEFAULT_MAX_BATCH, gt=0, description="texts of concurrent requests encoded together")


class AliasEncoders:
    """The encoder of the alias's collection now: the alias is looked up each time, each collection's encoder is
    loaded once. Thread-safe (the connector is used under a lock)."""

    def __init__(self, connector: Connector, alias: str, *, default: str | None = None) -> None:
        self.connector = connector
        self.alias = alias
        self.default = default
        self._lock = threading.Lock()
        self._cache: dict[str, CollectionEncoder] = {}

    def current(self) -> CollectionEncoder:
        with self._lock:
            collection, _ = self.connector.resolve(self.alias)
            cached = self._cache.get(collection)
            if cached is None:
                cached = encoder_for(self.connector, self.alias, default=self.default)
                self._cache[cached.collection] = cached
                logger.info("serving %s", cached.describe())
            return cached


class Batcher:
    """Encodes the texts of requests that wait together in one call (as TEI batches its clients): one encode at a
    time, of up to ``max_batch`` texts (a larger request goes alone); each request gets its rows back, with the
    collection whose encoder made them."""

    def __init__(self, encoders: AliasEncoders, max_batch: int) -> None:
        self.encoders = encoders
        self.max_batch = max_batch
        self._queue: list[tuple[list[str], str, asyncio.Future[Any]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def encode(self, texts: list[str], kind: str) -> tuple[CollectionEncoder, np.ndarray]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((texts, kind, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[list[str], str, asyncio.Future[Any]]]:
        """The oldest waiting request, and the later ones of the same kind that fit beside it."""
        group = [self._queue.pop(0)]
        size, kind, index = len(group[0][0]), group[0][1], 0
        while index < len(self._queue):
            texts, other, _ = self._queue[index]
            if other == kind and size + len(texts) <= self.max_batch:
                group.append(self._queue.pop(index))
                size += len(texts)
            else:
                index += 1
        return group

    def _run(self, texts: list[str], kind: str) -> tuple[CollectionEncoder, np.ndarray]:
        current = self.encoders.current()
        return current, current.encoder.encode(texts, kind=kind)  # type: ignore[arg-type]

    async def _drain(self) -> None:
        import anyio

        while self._queue:
            group = [item for item in self._take() if not item[2].done()]  # a client that left is skipped
            if not group:
                continue
            try:
                current, vectors = await anyio.to_thread.run_sync(
                    self._run, [t for texts, _, _ in group for t in texts], group[0][1])
            except Exception as exc:  # noqa: BLE001 - handed to every request of the group, answered there
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for texts, _, future in group:
                if not future.done():
                    future.set_result((current, vectors[start : start + len(texts)]))
                start += len(texts)


# ------------------------------------------------------------------------------------------------------------ the app
class _Refused(Exception):
    """An answer other than 200: status and one line for the client."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def _texts(value: Any, field: str, limit: int) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise _Refused(400, f"{field!r} must be a string or a non-empty list of strings")
    if len(texts) > limit:
        raise _Refused(413, f"{len(texts)} inputs in one request; at most {limit}")
    return texts


class _Handlers:
    """The endpoints: each reads and checks its request, encodes through the batcher, and answers JSON; refusals
    and failures become one JSON line with a status (no traceback reaches the client)."""

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
        if not hmac.compare_digest(token.encode(), self.settings.api_key.get_secret_value().encode()):
            raise _Refused(401, "missing or wrong API key (send Authorization: Bearer KEY)", "authentication_error")

    async def read_json(self, request: Any) -> dict[str, Any]:
        limit = self.settings.max_bytes
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise _Refused(413, f"request of {length} bytes; at most {limit}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _Refused(413, f"request over {limit} bytes")
        try:
            payload = json.loads(body)
        except ValueError:
            raise _Refused(400, "the body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise _Refused(400, "the body must be a JSON object")
        return payload

    async def current(self) -> CollectionEncoder:
        import anyio

        return await anyio.to_thread.run_sync(self.encoders.current)

    async def encode(self, texts: list[str], kind: str, model: Any = None,
                     dimensions: Any = None) -> tuple[CollectionEncoder, np.ndarray]:
        if model is not None or dimensions is not None:
            current = await self.current()
            if model not in (None, self.encoders.alias, current.collection):
                raise _Refused(404, f"model {model!r} is not served here; this server serves "
                               f"{self.encoders.alias!r}", "model_not_found")
            if dimensions not in (None, current.dim):
                raise _Refused(400, f"{self.encoders.alias!r} answers {current.dim}-d vectors, not {dimensions}-d")
        return await self.batcher.encode(texts, kind)

    def guarded(self, handler: Any, *, open_to_all: bool = False) -> Any:
        async def endpoint(request: Any) -> Any:
            try:
                if not open_to_all:
                    self.authorise(request)
                return await handler(request)
            except _Refused as exc:
                return self.refused(exc)
            except DistillError as exc:  # the alias or its encoder is unusable now: one line, no traceback
                logger.warning("cannot answer: %s", exc)
                return self.refused(_Refused(503, f"{type(exc).__name__}: {exc.message}", "server_error"))
            except Exception:  # noqa: BLE001 - logged here with its traceback, never sent to the client
                logger.exception("internal error answering %s %s", request.method, request.url.path)
                return self.refused(_Refused(500, "internal error", "server_error"))

        return endpoint

    async def embeddings(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        payload = await self.read_json(request)
        texts = _texts(payload.get("input"), "input", self.settings.max_inputs)
        fmt, kind = payload.get("encoding_format") or "float", payload.get("input_type") or "query"
        if fmt not in ("float", "base64") or kind not in ("query", "document"):
            raise _Refused(400, "encoding_format must be float or base64, input_type query or document")
        current, vectors = await self.encode(texts, kind, payload.get("model"), payload.get("dimensions"))
        data = [{"object": "embedding", "index": i, "embedding": _encoded(v, fmt)} for i, v in enumerate(vectors)]
        tokens = sum(len(t.split()) for t in texts)  # words: no tokenizer is loaded for this
        return JSONResponse({"object": "list", "data": data, "model": self.encoders.alias,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                            headers={COLLECTION_HEADER: current.collection})

    async def embed(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        payload = await self.read_json(request)
        texts = _texts(payload.get("inputs"), "inputs", self.settings.max_inputs)
        current, vectors = await self.encode(texts, "query")
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


def run(connector: Connector, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000,
        log_level: str = "warning") -> None:
    """Resolve the alias once (fail fast), then serve until interrupted."""
    import uvicorn

    encoders = AliasEncoders(connector, settings.alias, default=settings.default_model)
    current = encoders.current()
    logger.info("serving alias %r on http://%s:%d: %s", settings.alias, host, port, current.describe())
    uvicorn.run(create_app(encoders, settings), host=host, port=port, log_level=log_level, access_log=False)
