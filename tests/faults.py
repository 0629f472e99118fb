"""Fault injection for real clients: a proxy that makes some calls fail the way a server or network does."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse


def http_error(status: int) -> Exception:
    return UnexpectedResponse(status, "injected", b'{"status":{"error":"injected"}}', httpx.Headers())


class GrpcError(Exception):
    """Shaped like grpc.RpcError: ``code()`` returns an object with ``.name``."""

    __module__ = "grpc._injected"

    def __init__(self, name: str) -> None:
        super().__init__(f"injected gRPC {name}")
        self._name = name

    def code(self) -> Any:
        return type("Code", (), {"name": self._name})()


TRANSIENT_FAULTS: list[Callable[[], Exception]] = [
    lambda: ResponseHandlingException(httpx.ConnectError("injected connection reset")),
    lambda: ResponseHandlingException(httpx.ReadTimeout("injected timeout")),
    lambda: http_error(503),
    lambda: http_error(429),
    lambda: GrpcError("UNAVAILABLE"),
    lambda: GrpcError("DEADLINE_EXCEEDED"),
]


class FlakyClient:
    """Wraps a real QdrantClient; each listed method call fails with probability ``rate`` (seeded).

    By default a failing call raises before it reaches the client, so it has no effect: a dropped request. With
    ``lost_answer=True`` the call reaches the client first and only its answer is lost (a timeout after the server
    applied the request), so a retry repeats a request that already took effect.
    """

    lost_answer = False

    def __init__(
        self,
        client: Any,
        *,
        rate: float = 0.1,
        seed: int = 0,
        faults: list[Callable[[], Exception]] | None = None,
        methods: Iterable[str] | None = None,
    ) -> None:
        self._client = client
        self._rate = rate
        self._rng = random.Random(seed)
        self._faults = faults or TRANSIENT_FAULTS
        self._methods = set(methods) if methods is not None else None
        self.injected = 0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_") or (self._methods is not None and name not in self._methods):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            result = attr(*args, **kwargs) if self.lost_answer else None
            if self._rng.random() < self._rate:
                self.injected += 1
                raise self._rng.choice(self._faults)()
            return result if self.lost_answer else attr(*args, **kwargs)

        return call
