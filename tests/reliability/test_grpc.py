"""gRPC failures are one line naming the address actually dialled (issue 31, item 8): nothing listening on the gRPC
port, and a socket that accepts and closes at once. No gRPC debug string, no qdrant-client UserWarning with a file
path, one short line a retry."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qdrant_distill.cli.app import app
from tests.reliability.conftest import FIGURES, no_sleep_retries
from tests.reliability.test_secrets import free_port


@contextmanager
def closing_server() -> Iterator[int]:
    """A port whose socket accepts every connection and closes it at once."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def config(tmp_path: Path, grpc_port: int) -> Path:
    path = tmp_path / "grpc.toml"  # the REST URL names port 1; the client dials the gRPC port
    path.write_text(f'[qdrant]\nurl = "http://127.0.0.1:1"\nprefer_grpc = true\ngrpc_port = {grpc_port}\n')
    return path


def expected(port: int) -> str:
    return (f"error: ConnectionFailed: get_aliases on grpc://127.0.0.1:{port}: cannot reach the server (gRPC "
            "UNAVAILABLE) (check the URL, the gRPC port (--grpc dials 6334 unless told) and that Qdrant is running)")


@pytest.mark.parametrize("server", ["nothing listens", "accepts and closes"])
def test_a_grpc_failure_is_one_line_naming_the_port_dialled(server: str, tmp_path: Path, tiny_model_path: Path) -> None:
    """In a process of its own, as a user runs it (pytest would catch the warnings before the screen). The student
    is a local folder, so the unreachable server is plan's only problem."""
    with (closing_server() if server == "accepts and closes" else _nothing(free_port())) as port:
        done = subprocess.run(
            [sys.executable, "-c", "from qdrant_distill.cli.app import main; main()", "plan", "--alias", "docs",
             "--dim", "16", "--student", str(tiny_model_path), "--config", str(config(tmp_path, port))],
            capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "200"})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and lines[-1] == expected(port), done.stderr
    retries = lines[:-1]
    assert all("gRPC: UNAVAILABLE" in line and "retrying" in line for line in retries), done.stderr
    assert len(retries) <= 5 and sum(len(line.strip()) for line in lines) < 800, done.stderr
    for dump in ("_InactiveRpcError", "debug_error_string", "UserWarning", ".py:", "127.0.0.1:1:"):
        assert dump not in done.stderr, done.stderr
    FIGURES.setdefault("grpc: failures, one line", set()).add(server)


@contextmanager
def _nothing(port: int) -> Iterator[int]:
    yield port


@pytest.mark.parametrize("command", [["serve", "--alias", "docs"], ["repoint", "docs", "--model", "."],
                                     ["export-edge", "docs", "--out", "{out}"]])
def test_every_command_on_grpc_names_the_port_dialled(command: list[str], tmp_path: Path, monkeypatch) -> None:
    no_sleep_retries(monkeypatch)
    port = free_port()
    args = [str(tmp_path / "edge") if a == "{out}" else a for a in command]
    result = CliRunner().invoke(app, [*args, "--url", "http://127.0.0.1:1", "--grpc"],
                                env={"QDRANT_URL": "", "QDRANT_API_KEY": ""})
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert errors[0].startswith("error: ConnectionFailed: ") and "on grpc://127.0.0.1:6334: cannot reach the server " \
        "(gRPC UNAVAILABLE)" in errors[0], errors[0]
    assert "debug_error_string" not in result.output and port  # the default gRPC port is the one named
