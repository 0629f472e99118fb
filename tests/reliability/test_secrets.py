"""Secrets: an API key given by flag, environment or config file never appears in logs, output, journal, report,
run folder, exception text (even with --debug) or collection metadata -- while it does reach the server."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qdrant_distill.cli.app import app
from qdrant_distill.connectors import QdrantConnector
from tests.conftest import MINILM
from tests.reliability.conftest import FIGURES, no_sleep_retries
from tests.reliability.fake_server import refusing_server
from tests.test_migration import build_source

LOGGERS = ("qdrant_distill", "connectors", "qdrant_client", "httpx", "httpcore", "urllib3", "grpc")


class Records(logging.Handler):
    """Every log record of the libraries involved, formatted with its arguments and any traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    saved = {}
    for name in LOGGERS:  # on named loggers: the CLI replaces the root logger's handlers
        log = logging.getLogger(name)
        saved[name] = log.level
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    yield handler
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).setLevel(saved[name])


def given(how: str, key: str, tmp: Path) -> tuple[list[str], dict[str, str]]:
    """CLI arguments and environment that pass ``key`` the given way."""
    if how == "flag":
        return ["--api-key", key], {}
    if how == "env":
        return [], {"QDRANT_API_KEY": key}
    config = tmp / "input" / "config.toml"
    config.parent.mkdir()
    config.write_text(f'[qdrant]\napi_key = "{key}"\n')
    return ["--config", str(config)], {}


def files_text(folder: Path) -> Iterator[tuple[Path, bytes]]:
    for path in folder.rglob("*"):
        if path.is_file():
            yield path, path.read_bytes()


@pytest.mark.parametrize("how", ["flag", "env", "config"])
def test_the_api_key_never_leaks(how, demo_texts, tiny_model_path, tmp_path, fast_tmp, records, monkeypatch) -> None:
    no_sleep_retries(monkeypatch)
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    key = f"qd-{secrets.token_hex(16)}"
    fragments = [key, key[3:19], key[-16:]]  # the whole key, or a recognisable part of it
    store, run_dir = fast_tmp / "qdrant", tmp_path / "run"
    with QdrantConnector.open(path=str(store)) as conn:
        build_source(conn, demo_texts)
    key_args, env = given(how, key, tmp_path)
    runner = CliRunner()
    outputs: list[str] = []

    def cli(*args: str, code: int = 0, with_key: bool = True) -> Any:
        result = runner.invoke(app, [*args, *(key_args if with_key else [])], env=env)
        assert result.exit_code == code, result.output
        outputs.append(result.output + (result.stderr or ""))
        if result.exception and not isinstance(result.exception, SystemExit):
            outputs.append(repr(result.exception))
        return result

    # a whole migration on the embedded store (the key is accepted and unused), with debug logs and a JSON report
    common = ["--path", str(store), "--student", str(tiny_model_path), "--dim", "16", "--sample-size", "100",
              "--max-steps", "1", "--min-recall", "0", "--min-spearman", "-1", "--run-dir", str(run_dir),
              "--no-progress", "--debug"]
    cli("plan", "--alias", "docs", *common)
    report = cli("migrate", "--alias", "docs", "--yes", "--json", *common)
    assert '"stage": "swapped"' in report.stdout or '"stage":"swapped"' in report.stdout
    if how != "config":  # the alias commands take the key by flag or environment
        for command in ("rollback", "swap"):
            cli(command, str(run_dir), "--path", str(store), "--debug")
    cli("status", str(run_dir), "--json", with_key=False)

    # against servers that refuse the key (401, 403) and one that is not there: errors and --debug tracebacks
    for status in (401, 403):
        with refusing_server(status) as server:
            failed = cli("plan", "--alias", "docs", "--url", server.url, "--dim", "16", "--debug", code=1)
            assert key in server.seen  # the key did reach the server: it was really given
            assert "AuthenticationFailed" in failed.stderr
    cli("plan", "--alias", "docs", "--url", "http://127.0.0.1:9", "--dim", "16", "--debug", code=1)

    with QdrantConnector.open(path=str(store)) as conn:
        metadata = [repr(conn.client.get_collection(c).config) for c in conn.collections()]
    haystacks = {"cli output": "\n".join(outputs), "logs": "\n".join(records.lines), "metadata": "\n".join(metadata)}
    blobs = dict(files_text(run_dir)) | dict(files_text(store))  # journal, report, student files, the store itself
    for fragment in fragments:
        for where, text in haystacks.items():
            assert fragment not in text, f"key found in {where}"
        for path, blob in blobs.items():
            assert fragment.encode() not in blob, f"key found in {path}"
    assert len(records.lines) > 20 and len(blobs) > 5  # there was plenty to search
    FIGURES.setdefault("secrets: places searched", {})[how] = (
        f"{len(outputs)} command outputs, {len(records.lines)} log records, {len(blobs)} files, "
        f"{len(metadata)} collection configs")


@pytest.mark.parametrize("how", ["flag", "env", "config"])
def test_an_http_teachers_key_never_leaks(how, demo_texts, tmp_path, fast_tmp, records, monkeypatch) -> None:
    """The key of a teacher behind an embeddings API (``--teacher openai+http://...``) reaches the endpoint as a bearer
    token and nowhere else: a projection-only migration through it, a refusing endpoint, an unreachable one."""
    from tests.connectors.fake_embeddings import fake_endpoint
    from tests.test_migration import TEACHER_DIM

    for name in ("QDRANT_DISTILL_EMBEDDINGS_API_KEY", "OPENAI_API_KEY", "QDRANT_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    key = f"sk-{secrets.token_hex(16)}"
    fragments = [key, key[3:19], key[-16:]]
    store, run_dir = fast_tmp / "qdrant", tmp_path / "run"
    with QdrantConnector.open(path=str(store)) as conn:
        build_source(conn, demo_texts)
    if how == "flag":
        key_args, env = ["--embeddings-api-key", key], {}
    elif how == "env":
        key_args, env = [], {"QDRANT_DISTILL_EMBEDDINGS_API_KEY": key}
    else:
        (tmp_path / "input").mkdir()
        (tmp_path / "input" / "config.toml").write_text(f'embeddings_api_key = "{key}"\n')
        key_args, env = ["--config", str(tmp_path / "input" / "config.toml")], {}
    runner = CliRunner()
    outputs: list[str] = []

    def cli(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, [*args, *key_args], env=env)
        outputs.append(result.output + (result.stderr or ""))
        if result.exception and not isinstance(result.exception, SystemExit):
            outputs.append(repr(result.exception))
        assert result.exit_code == code, result.output
        return result

    common = ["--path", str(store), "--dim", "16", "--sample-size", "100", "--mode", "projection-only",
              "--min-recall", "0", "--min-spearman", "-1", "--run-dir", str(run_dir), "--no-progress", "--debug",
              "--no-teacher-check"]
    plan_args = ["--dim", "8", "--sample-size", "100", "--path", str(store), "--run-dir", str(tmp_path / "other"),
                 "--mode", "projection-only", "--debug"]  # no student to resolve: the teacher's answer decides
    with fake_endpoint() as endpoint:
        endpoint.dim = TEACHER_DIM
        teacher = f"openai+{endpoint.url}?model=teacher-model&wait_max=0.01&attempts=2"
        cli("migrate", "--alias", "docs", "--teacher", teacher, "--yes", *common)  # the alias moves to the new one
        assert endpoint.requests and {r["auth"] for r in endpoint.requests} == {f"Bearer {key}"}
        for status in (401, 403):
            endpoint.faults = [status]
            failed = cli("plan", "--collection", "docs_v1", "--teacher", teacher, *plan_args, code=1)
            assert "AuthenticationFailed" in failed.stderr and endpoint.url in failed.stderr
    gone = "openai+http://127.0.0.1:9?model=m&attempts=2&wait_max=0.01"
    unreachable = cli("plan", "--collection", "docs_v1", "--teacher", gone, *plan_args, code=1)
    assert "ConnectionFailed" in unreachable.stderr
    with QdrantConnector.open(path=str(store)) as conn:
        metadata = [repr(conn.client.get_collection(c).config) for c in conn.collections()]
    assert any("openai+http" in m for m in metadata)  # the reference is recorded, without its key
    haystacks = {"cli output": "\n".join(outputs), "logs": "\n".join(records.lines), "metadata": "\n".join(metadata)}
    blobs = dict(files_text(run_dir)) | dict(files_text(store))
    for fragment in fragments:
        for where, text in haystacks.items():
            assert fragment not in text, f"key found in {where}"
        for path, blob in blobs.items():
            assert fragment.encode() not in blob, f"key found in {path}"
    FIGURES.setdefault("secrets: HTTP teacher, places searched", {})[how] = (
        f"{len(outputs)} command outputs, {len(records.lines)} log records, {len(blobs)} files")


# -- secrets written into URLs (issue 20, section 3) ------------------------------------------------------------------
def free_port() -> int:
    """A loopback port nobody listens on (bound, read, released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def url_secrets(*parts: str) -> dict[str, str]:
    """One random secret for each part of a URL it is written into."""
    return {part: f"{part}-{secrets.token_hex(8)}" for part in parts}


class Cli:
    """Runs the CLI in this process and keeps everything it printed (stdout, stderr, an exception's repr)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        no_sleep_retries(monkeypatch)
        for name in ("QDRANT_URL", "QDRANT_API_KEY", "QDRANT_DISTILL_EMBEDDINGS_API_KEY", "OPENAI_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        self.runner = CliRunner()
        self.outputs: list[str] = []

    def __call__(self, *args: str, code: int = 1) -> Any:
        result = self.runner.invoke(app, list(args))
        self.outputs.append(result.output + (result.stderr or ""))
        if result.exception and not isinstance(result.exception, SystemExit):
            self.outputs.append(repr(result.exception))
        assert result.exit_code == code, result.output
        return result


def assert_never_shown(hidden: dict[str, str], cli: Cli, records: Records, *folders: Path) -> None:
    """No secret in any output, any log record (DEBUG included) or any file of the given folders."""
    texts = {"cli output": "\n".join(cli.outputs), "logs": "\n".join(records.lines)}
    files = {path: blob for folder in folders for path, blob in files_text(folder)}
    for part, secret in hidden.items():
        for where, text in texts.items():
            assert secret not in text, f"the URL's {part} was shown in the {where}"
        for path, blob in files.items():
            assert secret.encode() not in blob, f"the URL's {part} was written to {path}"


def stage_journal(run_dir: Path, url: str, stage: str) -> Path:
    """A run folder whose journal was made with ``--url url`` and stands at ``stage`` (for the alias commands)."""
    from qdrant_distill.migration.config import load_config
    from qdrant_distill.migration.journal import Journal, Stage

    config = load_config(environ={}, source="docs", dim=16, qdrant={"url": url})
    journal = Journal.open(run_dir, config.fingerprint())
    journal.source_collection, journal.source_alias, journal.target, journal.alias = (
        "docs_v1", "docs", "docs_v1_distilled16", "docs")
    journal.stage, journal.previous_target = Stage(stage), "docs_v1"
    journal.save()
    return run_dir


def test_secrets_in_a_qdrant_url_are_never_shown(tmp_path, records, monkeypatch) -> None:
    """Every command that takes a Qdrant URL, given one with secrets in its userinfo, path, query and fragment,
    against a port nobody listens on (and plan, with --debug, against a server that answers 401); plan also with a
    secret in each part alone. Each error line names the server by scheme, host and port only, and no secret reaches
    the output, a traceback, the logs (DEBUG included), a journal or status."""
    cli = Cli(monkeypatch)
    hidden = url_secrets("user", "password", "path", "query", "fragment")

    def url(where: str, *parts: str) -> str:
        every = not parts
        userinfo = f"{hidden['user']}:{hidden['password']}@" if every or "user" in parts else ""
        path = f"/{hidden['path']}" if every or "path" in parts else "/"
        query = f"?api_key={hidden['query']}&timeout=1" if every or "query" in parts else ""
        fragment = f"#{hidden['fragment']}" if every or "fragment" in parts else ""
        return f"http://{userinfo}{where}{path}{query}{fragment}"

    gone = f"127.0.0.1:{free_port()}"
    runs = {stage: stage_journal(tmp_path / stage, url(gone), stage) for stage in ("created", "verified", "swapped")}
    failures = [cli("plan", "--alias", "docs", "--dim", "16", "--url", url(gone, part))
                for part in ("user", "path", "query", "fragment")]
    every = ["--url", url(gone)]
    failures += [
        cli("plan", "--alias", "docs", "--dim", "16", *every),
        cli("migrate", "--alias", "docs", "--dim", "16", "--yes", *every),
        cli("serve", "--alias", "docs", *every),
        cli("swap", str(runs["verified"]), *every),
        cli("rollback", str(runs["swapped"]), *every),
        cli("finalize", str(runs["swapped"]), "--yes", *every),
        cli("abandon", str(runs["created"]), "--yes", *every),
    ]
    for failed in failures:  # one line, which still says which server
        assert re.search(rf"error: ConnectionFailed: \w+ on http://{gone}: cannot reach", failed.stderr), failed.stderr
    with refusing_server(401) as server:  # answered: httpx logs the request; --debug: the traceback's texts too
        where = server.url.removeprefix("http://")
        refused = cli("plan", "--alias", "docs", "--dim", "16", "--url", url(where), "--debug")
        assert f"AuthenticationFailed: get_aliases on http://{where}:" in refused.stderr, refused.stderr
    assert server.seen and any("HTTP Request" in line for line in records.lines)
    cli("status", str(runs["swapped"]), code=0)
    assert f'"qdrant": "http://{gone}"' in cli("status", str(runs["swapped"]), "--json", code=0).stdout
    assert_never_shown(hidden, cli, records, tmp_path)
    FIGURES["secrets: Qdrant URLs, places searched"] = (
        f"{len(cli.outputs)} command outputs, {len(records.lines)} log records, 3 journals")


def test_secrets_in_an_embeddings_url_are_never_shown(demo_texts, tmp_path, fast_tmp, records, monkeypatch) -> None:
    """Every command that takes an embeddings endpoint (plan and migrate's --teacher, evaluate's --model, export),
    given one with a secret in its path, its userinfo or its query: refused, unreachable, answering (its requests
    logged by httpx) and redirecting. No secret reaches the output, the logs or the files written."""
    from tests.connectors.fake_embeddings import fake_endpoint
    from tests.test_migration import TEACHER_DIM, write_beir

    cli = Cli(monkeypatch)
    hidden = url_secrets("path", "user", "query", "option", "redirect")
    store = fast_tmp / "qdrant"
    with QdrantConnector.open(path=str(store)) as conn:
        build_source(conn, demo_texts)
    beir = tmp_path / "beir"
    write_beir(beir, demo_texts, n=20)
    plan = ["--collection", "docs_v1", "--dim", "8", "--sample-size", "100", "--path", str(store),
            "--run-dir", str(tmp_path / "run"), "--student", str(MINILM)]  # a local student: the teacher decides
    gone = f"127.0.0.1:{free_port()}"
    refused = [f"openai+http://{gone}/{hidden['path']}/v1?model=m&attempts=2&wait_max=0.01",  # unreachable
               f"openai+http://me:{hidden['user']}@{gone}/v1?model=m",  # credentials in the URL: refused
               f"tei+http://{gone}?api_key={hidden['query']}",  # a key in the reference: refused
               f"openai+http://{gone}/v1?model=m&secret={hidden['option']}"]  # an unknown option: refused
    for n, ref in enumerate(refused):
        debug = ["--debug"] if n == 0 else []  # the traceback's texts too (once: a rich traceback takes seconds)
        for failed in (cli("plan", "--teacher", ref, *plan, *debug), cli("migrate", "--teacher", ref, "--yes", *plan),
                       cli("evaluate", "--model", ref, "--beir", str(beir)), cli("export", ref)):
            assert "error:" in failed.stderr and gone in failed.stderr, failed.stderr
    with fake_endpoint() as endpoint:
        endpoint.dim = TEACHER_DIM
        live = f"openai+{endpoint.url}/{hidden['path']}/v1?model=m&attempts=2&wait_max=0.01"
        shown = cli("plan", "--teacher", live, "--no-teacher-check", *plan, code=0)
        assert f"teacher     openai+{endpoint.url} model m" in shown.stdout
        cli("evaluate", "--model", live, "--beir", str(beir), code=0)  # httpx logs every request
        assert endpoint.requests and all(hidden["path"] in r["path"] for r in endpoint.requests)
        endpoint.faults = [(301, f"https://elsewhere.example:8443/{hidden['redirect']}?key={hidden['redirect']}")]
        moved = cli("evaluate", "--model", live, "--beir", str(beir), "--debug")
        assert "redirected (301) to https://elsewhere.example:8443" in moved.stderr, moved.stderr
    assert any("HTTP Request: POST" in line for line in records.lines)  # httpx's own log lines were searched
    assert_never_shown(hidden, cli, records, tmp_path, store)
    FIGURES["secrets: embeddings URLs, places searched"] = (
        f"{len(cli.outputs)} command outputs, {len(records.lines)} log records")


def test_a_secret_in_any_part_of_a_teachers_url_is_never_shown_or_stored(demo_texts, tmp_path, fast_tmp, records,
                                                                         monkeypatch) -> None:
    """Issue 31, item 1: a teacher endpoint with a secret in its path and its fragment is accepted and used; one with a
    secret in its userinfo, its query or an unknown option is refused. plan (text and --json), a projection-only
    migrate (--json, --debug) and status (--html, --json) show the endpoint by API, scheme, host, port and model
    only, and nothing the run writes (journal, report.html, report.json, the projection, the store, the collection's
    metadata) holds a secret. (distill.json records its teacher the same way: tests/test_distill.py.)"""
    from tests.connectors.fake_embeddings import fake_endpoint
    from tests.test_migration import TEACHER_DIM

    cli = Cli(monkeypatch)
    hidden = url_secrets("path", "fragment", "user", "password", "query", "option")
    store, run_dir = fast_tmp / "qdrant", tmp_path / "run"
    with QdrantConnector.open(path=str(store)) as conn:
        build_source(conn, demo_texts)
    common = ["--collection", "docs_v1", "--dim", "8", "--sample-size", "100", "--path", str(store),
              "--mode", "projection-only", "--no-teacher-check", "--no-progress"]
    with fake_endpoint() as endpoint:
        endpoint.dim = TEACHER_DIM
        host = endpoint.url.removeprefix("http://")
        live = f"openai+http://{host}/{hidden['path']}/v1?model=m&attempts=2&wait_max=0.01#{hidden['fragment']}"
        for bad in (f"openai+http://{hidden['user']}:{hidden['password']}@{host}/v1?model=m",
                    f"openai+http://{host}/v1?model=m&api_key={hidden['query']}",
                    f"openai+http://{host}/v1?model=m&secret={hidden['option']}"):
            refused = cli("plan", "--teacher", bad, *common, "--run-dir", str(tmp_path / "refused"))
            assert "error: ConfigError" in refused.stderr and f"http://{host}" in refused.stderr, refused.stderr
        shown = cli("plan", "--teacher", live, *common, "--run-dir", str(run_dir), code=0)
        assert f"openai+http://{host} model m" in shown.stdout, shown.stdout
        as_json = cli("plan", "--teacher", live, *common, "--run-dir", str(run_dir), "--json", code=0)
        assert f"openai+http://{host}" in as_json.stdout
        done = cli("migrate", "--teacher", live, *common, "--run-dir", str(run_dir), "--yes", "--json",
                   "--min-recall", "0", "--min-spearman", "-1", "--debug", code=0)
        assert '"stage": "verified"' in done.stdout, done.stdout
        assert endpoint.requests and all(f"/{hidden['path']}/v1/embeddings" == r["path"] for r in endpoint.requests)
        cli("status", str(run_dir), "--html", code=0)
        cli("status", str(run_dir), "--json", code=0)
    with QdrantConnector.open(path=str(store)) as conn:
        metadata = [repr(conn.client.get_collection(c).config) for c in conn.collections()]
    assert any(f"openai+http://{host}?model=m" in m for m in metadata)  # recorded: API, scheme, host, port, model
    cli.outputs.extend(metadata)
    assert {p.name for p in run_dir.rglob("*")} >= {"journal.json", "report.html", "report.json", "projection.npz"}
    assert_never_shown(hidden, cli, records, tmp_path, store)
