"""Issue 20, section 4, through the real CLI: what would fail after training fails in `plan`, with a message that
names the problem (file and line, the ids that do not match, the address that does not answer), and no wait on Ray
is unbounded. The bad-input table (test_bad_input.py) runs the same inputs through `plan` and `migrate --yes`; these
tests check what the one line says, and `evaluate` and `export`, which have no plan."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qdrant_distill.cli.app import app
from tests.conftest import REPO
from tests.reliability.conftest import FIGURES, source_store
from tests.test_migration import write_beir

ERROR = re.compile(r"error: (\w+): (.*)")


@pytest.fixture(scope="module")
def store(demo_texts: list[str]) -> Iterator[Path]:
    """docs_v1 behind the alias docs: 240 points (ids 0..239), 48-d."""
    with source_store("early", demo_texts) as store:
        yield store


def run(*args: str) -> tuple[int, str, float]:
    """Exit code, the one error line (or the whole stderr), seconds taken."""
    started = time.perf_counter()
    result = CliRunner().invoke(app, list(args))
    took = time.perf_counter() - started
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    return result.exit_code, errors[0] if len(errors) == 1 else result.stderr, took


def plan(store: Path, student: Path, run_dir: Path, *extra: str) -> tuple[int, str, float]:
    return run("plan", "--path", str(store), "--alias", "docs", "--student", str(student), "--dim", "4",
               "--sample-size", "10", "--run-dir", str(run_dir), *extra)


def refused(outcome: tuple[int, str, float], error: str, pattern: str) -> str:
    code, line, _ = outcome
    assert code == 1, line
    match = ERROR.search(line)
    assert match and match.group(1) == error, line
    assert re.search(pattern, match.group(2)), line
    return match.group(2)


# -- Ray ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_plan_and_migrate_refuse_a_ray_address_nothing_listens_on_within_seconds(store, tiny_model_path, tmp_path,
                                                                                 address) -> None:
    """Before: `plan` accepted it and `migrate` waited on ray.init for minutes (240 s, stopped from outside)."""
    for command in ("plan", "migrate"):
        extra = ["--yes"] if command == "migrate" else []
        outcome = run(command, *extra, "--path", str(store), "--alias", "docs", "--student", str(tiny_model_path),
                      "--dim", "4", "--sample-size", "10", "--run-dir", str(tmp_path / "run"), "--engine", "ray",
                      "--ray-address", address)
        refused(outcome, "ConfigError", r"no Ray cluster at .*127\.0\.0\.1:1.*Connection ?Refused")
        assert outcome[2] < 15, f"{command} took {outcome[2]:.1f} s"
        assert not (tmp_path / "run" / "journal.json").exists()
    FIGURES.setdefault("ray addresses refused in plan", set()).add(address)


def test_ray_init_on_a_silent_port_gives_up_after_its_timeout() -> None:
    """A port that accepts and never answers passes the TCP probe; ray.init would then wait for minutes. The engine
    waits `ray.init_timeout_s` and raises one ConfigError. In a child process: the abandoned ray.init stays behind
    in its thread until the process ends, and must not meet the other tests' Ray."""
    script = textwrap.dedent("""
        import socket, sys, time
        from qdrant_distill.migration.config import RayConfig
        from qdrant_distill.errors import ConfigError
        from qdrant_distill.migration.engines.ray import session

        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        started = time.perf_counter()
        try:
            with session(RayConfig(address=f"127.0.0.1:{silent.getsockname()[1]}", init_timeout_s=3)):
                print("connected?!")
        except ConfigError as exc:
            print(f"{time.perf_counter() - started:.1f} {exc}")
    """)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    took = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines and "within 3 s" in lines[-1], done.stdout + done.stderr
    assert float(lines[-1].split()[0]) < 15 and took < 60  # 3 s, and importing Ray on a busy machine
    FIGURES["ray.init on a silent port gave up after (s)"] = lines[-1].split()[0]


# -- model references --------------------------------------------------------------------------------------------
def test_plan_resolves_each_model_without_loading_it(store, tiny_model_path, tmp_path, monkeypatch) -> None:
    """Before: a relative path and a hub name (hub offline) passed `plan` and failed after sampling."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    refused(plan(store, Path("no/such/model"), tmp_path / "r"), "ConfigError",
            r"student model path 'no/such/model' does not exist \(from /")
    refused(plan(store, tmp_path, tmp_path / "r"), "ConfigError", r"holds no model \(no modules\.json or config")
    refused(plan(store, Path("qd-nobody/no-such-model"), tmp_path / "r"), "ConfigError",
            r"'qd-nobody/no-such-model' is neither a folder here nor in the local Hugging Face cache")
    refused(plan(store, tiny_model_path, tmp_path / "r", "--teacher", "qd-nobody/no-such-teacher"), "ConfigError",
            r"teacher model 'qd-nobody/no-such-teacher' is neither")
    # a relative path that exists, given from its parent folder, is a model
    monkeypatch.chdir(tiny_model_path.parent)
    assert plan(store, Path(tiny_model_path.name), tmp_path / "r")[0] == 0


# -- labelled queries ----------------------------------------------------------------------------------------------
def test_qrels_that_match_nothing_are_named_in_plan_and_in_evaluate(store, tiny_model_path, demo_texts,
                                                                     tmp_path) -> None:
    """Before: `plan` passed, the gate failed after training with a hint about training more, and `evaluate`
    printed 0.0000 everywhere."""
    beir = tmp_path / "beir"
    write_beir(beir, demo_texts)
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                             + "".join(f"q{i}\tdoc-{i}\t1\n" for i in range(40)))
    pattern = r"none of the 40 documents judged in .*test\.tsv is in .*corpus\.jsonl \(judged ids: doc-0"
    refused(plan(store, tiny_model_path, tmp_path / "r", "--queries", str(beir)), "ConfigError", pattern)
    refused(run("evaluate", "--model", str(tiny_model_path), "--beir", str(beir)), "ConfigError", pattern)

    write_beir(tmp_path / "far", demo_texts, first_id=10_000)  # a fine folder, but no corpus id is a point id
    refused(plan(store, tiny_model_path, tmp_path / "r", "--queries", str(tmp_path / "far")), "ConfigError",
            r"none of the 40 documents judged in .*far is a point of docs_v1 \(judged ids: 10000, 10001, 10002\)")
    assert run("evaluate", "--model", str(tiny_model_path), "--beir", str(tmp_path / "far"))[0] == 0


def test_a_partly_matching_corpus_is_a_note_in_reembed_mode_and_refused_in_project_mode(
        store, tiny_model_path, demo_texts, tmp_path) -> None:
    write_beir(tmp_path / "half", demo_texts, first_id=220)  # ids 220..259: 20 of them are points
    result = CliRunner().invoke(app, ["plan", "--path", str(store), "--alias", "docs", "--student",
                                      str(tiny_model_path), "--dim", "4", "--sample-size", "10", "--run-dir",
                                      str(tmp_path / "r"), "--queries", str(tmp_path / "half")])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.stdout.split())  # the plan is wrapped at the terminal's width
    assert re.search(r"note labelled queries: only 20 of the 40 documents judged in .*half are points of docs_v1",
                     printed), result.stdout
    refused(plan(store, tiny_model_path, tmp_path / "r", "--mode", "project", "--queries", str(tmp_path / "half")),
            "ConfigError", r"20 of 40 labelled documents are not points of docs_v1 \(first ids: 240, 241, 242\); "
            "in project mode")


def broken(folder: Path, demo_texts: list[str], kind: str) -> tuple[str, str]:
    """A BEIR folder broken one way; the file and line the message must name."""
    write_beir(folder, demo_texts)
    if kind == "broken JSON line":
        lines = (folder / "corpus.jsonl").read_text().splitlines(keepends=True)
        lines[2] = '{"_id": "2", "text": \n'
        (folder / "corpus.jsonl").write_text("".join(lines))
        return r"corpus\.jsonl, line 3: not JSON", "corpus.jsonl"
    if kind == "binary file":
        (folder / "queries.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
        return r"queries\.jsonl, line 1: not UTF-8 text", "queries.jsonl"
    if kind == "query without _id":
        rows = [json.dumps({"_id": f"q{i}", "text": t}) for i, t in enumerate(demo_texts[:40])]
        rows[1] = json.dumps({"id": "q1", "text": demo_texts[1]})
        (folder / "queries.jsonl").write_text("\n".join(rows) + "\n")
        return r"queries\.jsonl, line 2: no \"_id\"", "queries.jsonl"
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\t0\t1\nq1 1 1\n")  # spaces, not tabs
    return r"test\.tsv, line 3: 1 tab-separated column\(s\)", "test.tsv"


@pytest.mark.parametrize("kind", ["broken JSON line", "binary file", "query without _id", "qrels row without tabs"])
def test_one_beir_reader_names_file_and_line_in_plan_and_evaluate(store, tiny_model_path, demo_texts, tmp_path,
                                                                  kind) -> None:
    """Before: `evaluate` gave a traceback for the first three, `plan` a message naming neither file nor line, and
    the qrels row was skipped without a word."""
    pattern, _ = broken(tmp_path / "beir", demo_texts, kind)
    refused(plan(store, tiny_model_path, tmp_path / "r", "--queries", str(tmp_path / "beir")), "ConfigError", pattern)
    refused(run("evaluate", "--model", str(tiny_model_path), "--beir", str(tmp_path / "beir")), "ConfigError",
            pattern)
    FIGURES.setdefault("malformed BEIR folders named by file and line", set()).add(kind)


# -- export ----------------------------------------------------------------------------------------------------------
def test_export_out_that_is_a_file_is_one_line(tiny_model_path, tmp_path) -> None:
    """Before: a NotADirectoryError traceback, after loading the model."""
    (tmp_path / "taken").write_text("not a folder")
    refused(run("export", str(tiny_model_path), "--out", str(tmp_path / "taken")), "ConfigError",
            r"export folder .*taken' is a file")
    refused(run("export", str(tiny_model_path), "--out", str(tmp_path / "taken" / "onnx")), "ConfigError",
            r"export folder .* lies under the file .*taken'")
    assert (tmp_path / "taken").read_text() == "not a folder"
