"""A small embeddings endpoint on loopback (http.server in a thread) that speaks the OpenAI, TEI and Ollama shapes
(or forwards to a real one: ``upstream``) and misbehaves on cue: 429 with Retry-After, 503, a reset connection, a stall, HTML, too few vectors, NaN,
413.

Its "model" is deterministic (a vector seeded by each text's hash), so answers through faults can be compared with
the fault-free ones exactly. ``faults`` is a list consumed one entry per request (None: answer normally).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

DIM = 12


def vector_of(text: str, dim: int = DIM) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def expected(texts: list[str], dim: int = DIM) -> np.ndarray:
    vecs = np.stack([vector_of(t, dim) for t in texts])
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


class FakeEndpoint(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.faults: list[Any] = []
        self.requests: list[dict[str, Any]] = []  # path, body size, authorization
        self.max_batch: int | None = None  # TEI-like: 413 above this
        self.dim = DIM
        self.upstream: str | None = None  # set: a faulty proxy in front of a real server
        self.delay = 0.0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:  # reset connections: expected, quiet
        pass

    def next_fault(self) -> Any:
        with self.lock:
            return self.faults.pop(0) if self.faults else None


class _Handler(BaseHTTPRequestHandler):
    server: FakeEndpoint
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        srv = self.server
        payload = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        with srv.lock:
            srv.in_flight += 1
            srv.peak_in_flight = max(srv.peak_in_flight, srv.in_flight)
            srv.requests.append({"path": self.path, "auth": self.headers.get("authorization"), "body": payload})
        try:
            self._answer(srv, payload)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _answer(self, srv: FakeEndpoint, payload: dict[str, Any]) -> None:
        fault = srv.next_fault()
        texts = payload.get("input") if "input" in payload else payload.get("inputs")
        if srv.delay:
            time.sleep(srv.delay)
        if fault == "reset":  # close without an answer: the client sees a dropped connection
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if fault == "stall":
            time.sleep(1.0)  # past the client's timeout in the tests
            self.close_connection = True
            return
        if isinstance(fault, tuple) and 300 <= fault[0] < 400:  # a redirect, with its Location
            return self._send(fault[0], b"Moved Permanently", "text/plain", headers={"location": fault[1]})
        if isinstance(fault, tuple) and fault[0] == 429:
            return self._send(429, b'{"error": "slow down"}', headers={"retry-after": fault[1]})
        if isinstance(fault, int):
            return self._send(fault, json.dumps({"error": f"status {fault}"}).encode())
        if fault == "html":
            return self._send(200, b"<!DOCTYPE html><html><body>Login</body></html>", "text/html")
        if srv.upstream:
            import httpx

            auth = {"authorization": self.headers["authorization"]} if self.headers.get("authorization") else {}
            answer = httpx.post(srv.upstream + self.path, json=payload, headers=auth, timeout=60)
            return self._send(answer.status_code, answer.content, answer.headers.get("content-type", ""))
        if srv.max_batch is not None and len(texts) > srv.max_batch:
            return self._send(413, b'{"error": "batch too large"}')
        vecs = np.stack([vector_of(t, srv.dim) for t in texts])
        if fault == "fewer":
            vecs = vecs[:-1]
        if fault == "nan":
            vecs[0, 0] = np.nan
        self._send(200, json.dumps(_shape(self.path, vecs, payload), allow_nan=True).encode())


def _shape(path: str, vecs: np.ndarray, payload: dict[str, Any]) -> Any:
    if path.endswith("/embeddings"):
        b64 = payload.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if b64 else v.tolist()}
                for i, v in enumerate(vecs)]
        return {"object": "list", "data": data[::-1], "model": payload.get("model")}  # out of order on purpose
    if path.endswith("/api/embed"):
        return {"model": payload.get("model"), "embeddings": vecs.tolist()}
    return vecs.tolist()


@contextmanager
def fake_endpoint() -> Iterator[FakeEndpoint]:
    server = FakeEndpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
