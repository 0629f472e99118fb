"""Translate qdrant-client, httpx and gRPC exceptions into qdrant-distill errors, and decide what is transient.

Transient (retried): connection errors, timeouts, HTTP 429/500/502/503/504, gRPC UNAVAILABLE, DEADLINE_EXCEEDED and
RESOURCE_EXHAUSTED. Everything else fails at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from qdrant_distill.errors import (
    AuthenticationFailed,
    CollectionExists,
    CollectionNotFound,
    ConnectionFailed,
    ConnectorError,
    DistillError,
    ServerError,
)
from qdrant_distill.redact import redact_text

logger = logging.getLogger("qdrant_distill.connectors.qdrant")

T = TypeVar("T")

TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})
DEFAULT_ATTEMPTS = 6
DEFAULT_WAIT_MAX = 20.0


def _http_status(exc: BaseException) -> int | None:
    from qdrant_client.http.exceptions import UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        return exc.status_code
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    return None


def _grpc_code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if callable(code) and type(exc).__module__.startswith("grpc"):
        try:
            return code().name
        except Exception:  # noqa: BLE001 - a grpc error without a status
            return None
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may help."""
    from qdrant_client.http.exceptions import ResponseHandlingException

    if isinstance(exc, DistillError):
        return False
    if isinstance(exc, ResponseHandlingException):
        return is_transient(exc.source) if exc.source is not None else True
    if isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError)):
        return True
    status = _http_status(exc)
    if status is not None:
        return status in TRANSIENT_HTTP
    code = _grpc_code(exc)
    return code in TRANSIENT_GRPC if code is not None else False


def translate(exc: BaseException, *, op: str, target: str, collection: str | None = None) -> DistillError:
    """One typed error for a foreign exception. Never includes credentials, nor more of a URL than its scheme, host
    and port (``target`` is already shown so: :attr:`qdrant_distill.connectors.settings.QdrantSettings.target`)."""
    from qdrant_client.http.exceptions import ResponseHandlingException

    if isinstance(exc, DistillError):
        return exc
    where = f"{op} on {target}" + (f" (collection {collection!r})" if collection else "")
    status = _http_status(exc)
    code = _grpc_code(exc)
    if status in (401, 403) or code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return AuthenticationFailed(
            f"{where}: the server refused the credentials ({status or code})",
            hint="check the API key (--api-key or QDRANT_API_KEY)",
            status=status or code,
        )
    if status == 404 or code == "NOT_FOUND" or _local_not_found(exc):
        return CollectionNotFound(
            f"{where}: not found", hint="check the collection or alias name", collection=collection
        )
    if _local_exists(exc) or status == 409 or code == "ALREADY_EXISTS":
        return CollectionExists(f"{where}: already exists", collection=collection)
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):  # nothing listens, the socket closed, no answer in time
        return ConnectionFailed(f"{where}: cannot reach the server (gRPC {code})",
                                hint="check the URL, the gRPC port (--grpc dials 6334 unless told) and that Qdrant "
                                "is running")
    if isinstance(exc, ResponseHandlingException) or isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError)):
        return ConnectionFailed(
            f"{where}: cannot reach the server ({type(getattr(exc, 'source', None) or exc).__name__})",
            hint="check the URL and that Qdrant is running",
        )
    if status is not None or code is not None:
        detail = _short(exc)
        return ServerError(f"{where}: server answered {status or code}: {detail}", status=status or code)
    return ConnectorError(f"{where}: {type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException, limit: int = 300) -> str:
    """The foreign exception's text on one line, any URL in it reduced to scheme, host and port (of a gRPC error,
    its details only: never its debug string)."""
    details = getattr(exc, "details", None)
    raw = details() if callable(details) and _grpc_code(exc) is not None else str(exc)
    text = redact_text(" ".join(str(raw).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _local_not_found(exc: BaseException) -> bool:
    return isinstance(exc, (ValueError, KeyError)) and "not found" in str(exc).lower()


def _local_exists(exc: BaseException) -> bool:
    return isinstance(exc, ValueError) and "already exists" in str(exc).lower()


class RetryPolicy:
    """Exponential backoff with jitter on transient errors only; every retry is logged."""

    def __init__(self, *, attempts: int = DEFAULT_ATTEMPTS, wait_max: float = DEFAULT_WAIT_MAX, wait: Any = None) -> None:
        self.attempts = attempts
        self.wait = wait if wait is not None else wait_random_exponential(multiplier=0.5, max=wait_max)
        self.retries = 0  # how many retries fired, for reports and tests

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def count(state: Any) -> None:
            self.retries += 1

        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.attempts),
            wait=self.wait,
            reraise=True,
            before_sleep=lambda state: (count(state), _log_retry(state, self.attempts)),
        )
        return retrying(fn, *args, **kwargs)


def _log_retry(state: Any, attempts: int) -> None:
    """One line a retry: what failed, briefly (a gRPC error by its code, never its debug string)."""
    exc = state.outcome.exception() if state.outcome else None
    code = _grpc_code(exc) if exc is not None else None
    why = f"gRPC: {code}" if code else f"{type(exc).__name__}: {_short(exc, 120)}" if exc else "?"
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.warning("Retrying in %.1f s (attempt %d of %d) as it raised %s", wait, state.attempt_number, attempts, why)
