"""A tiny HTTP server in a thread that answers every request with one status (401, 403, ...): a Qdrant server that
refuses the API key, for tests on a machine with no server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler], **state: Any) -> Iterator[Any]:
    """``handler`` served on a free loopback port in a thread; ``server.url``, and ``state`` as attributes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in state.items():
        setattr(server, name, value)
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def refusing_server(status: int = 401) -> Iterator[Any]:
    """Yields the server; ``server.url`` to connect to, ``server.seen`` the API keys it was sent."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            server.seen.append(self.headers.get("api-key"))
            body = json.dumps({"status": {"error": "Unauthorized: invalid api key"}, "time": 0}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    with _serving(Handler, seen=[]) as server:
        yield server


@contextmanager
def answering_server(answer: Any) -> Iterator[Any]:
    """An embeddings endpoint that answers every POST with 200 and the JSON ``answer(texts)`` gives (a str is sent as
    it is: numbers JSON cannot spell, like 1e39 written out). ``server.url``; ``server.posts`` counts the requests."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            payload = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            server.posts += 1
            body = answer(payload.get("input") or payload.get("inputs") or [])
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    with _serving(Handler, posts=0) as server:
        yield server
