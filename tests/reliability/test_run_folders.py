"""Run folders: a folder belongs to one migration on one store. A journal that is not ours is refused by every command
with one line and no change; a store that is not the run's is refused; a running migration locks its folder; a journal
that contradicts the store is caught before anything is dropped or moved; commands report what the store shows."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import Result
from qdrant_client import models as qm
from typer.testing import CliRunner

from qdrant_distill.cli.app import app
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.connectors.base import UNNAMED, Point
from qdrant_distill.distillation.config import DistillConfig
from qdrant_distill.migration.pipeline import migrate
from tests.conftest import REPO
from tests.reliability.conftest import FIGURES, fast_dir, store_state
from tests.test_migration import DIM, TEACHER_DIM, build_source, config

TARGET = "docs_v1_distilled16"
TRAP = [sys.executable, "-m", "tests.reliability.crashpoints"]


def cli(*args: Any) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(result: Result) -> str:
    """The one line of a refused command: exit 1, nothing on stdout, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert not result.stdout.strip() and "Traceback" not in result.output
    return lines[0]


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its hash (the lock file aside: a command that takes the lock names itself in
    it; it is not the run's data)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "run.lock"}


def edit_journal(run_dir: Path, **fields: Any) -> None:
    path = run_dir / "journal.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


# -- a journal that is not one of ours -----------------------------------------------------------------------------
FOREIGN: dict[str, tuple[bytes, str]] = {  # file content, what the line must say
    "json-list": (b'[{"run_id": "r1", "stage": "swapped"}]', "JSON list"),
    "null": (b"null", "JSON null"),
    "binary": (bytes(range(256)) * 4, "not UTF-8"),
    "unknown-stage": (json.dumps({"run_id": "r1", "stage": "exploded", "fingerprint": {}}).encode(), "stage"),
    "wrong-types": (json.dumps({"run_id": "r1", "stage": "swapped", "fingerprint": {}, "target": ["a"],
                                "points_written": "many"}).encode(), "target"),
    "foreign-object": (b'{"hello": "world"}', "no run_id"),
}
COMMANDS: dict[str, list[str]] = {  # what each command takes besides the run folder (STORE: a store path)
    "status": [], "swap": ["--path", "STORE"], "rollback": ["--path", "STORE"],
    "finalize": ["--yes", "--path", "STORE"], "abandon": ["--yes", "--path", "STORE"], "export": [],
}


@pytest.mark.parametrize("kind", list(FOREIGN))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_journal_that_is_not_ours_is_one_line_and_changes_nothing(command: str, kind: str, tmp_path: Path) -> None:
    run_dir, store = tmp_path / "run", tmp_path / "store"
    (run_dir / "student").mkdir(parents=True)
    content, what = FOREIGN[kind]
    (run_dir / "journal.json").write_bytes(content)
    (run_dir / "sample.npz").write_bytes(b"someone else's file")
    (run_dir / "student" / "notes.txt").write_text("keep me")
    before = {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    line = refused(cli(command, run_dir, *[str(store) if a == "STORE" else a for a in COMMANDS[command]]))
    assert f"JournalError: '{(run_dir / 'journal.json').resolve()}' is not a qdrant-distill journal" in line, line
    assert what in line, line
    assert {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    assert not store.exists()  # refused before connecting: the store was not even opened
    FIGURES.setdefault("run folders: foreign journals refused (kind x command)", set()).add((kind, command))


# -- a finished migration, copied for each test ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def swapped(demo_texts: list[str], tiny_model_path: Path) -> Iterator[Path]:
    """``store``: docs_v1 behind docs, migrated and swapped (run folder ``run``), plus ``others``, a plain collection
    of someone else; ``other``: another store with the same names (docs_v1 behind docs)."""
    root = fast_dir("runs")
    with QdrantConnector.open(path=str(root / "store")) as conn:
        build_source(conn, demo_texts)
        conn.client.create_collection("others", vectors_config=qm.VectorParams(size=TEACHER_DIM,
                                                                               distance=qm.Distance.COSINE))
        conn.upsert("others", [Point(id=1, payload={"text": "not ours"}, vectors={UNNAMED: np.ones(TEACHER_DIM)})])
        student = DistillConfig(base_model=str(tiny_model_path), max_steps=2, batch_size=16, head_init_samples=32,
                                early_stopping_patience=None, export="none")
        assert migrate(config(tiny_model_path, root / "run", student=student), connector=conn).target == TARGET
    with QdrantConnector.open(path=str(root / "other")) as conn:
        build_source(conn, demo_texts, n=20)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def copy_run(swapped: Path, dest: Path) -> tuple[Path, Path]:
    """The swapped run and its store, moved together to ``dest``."""
    store, run_dir = dest / "store", dest / "run"
    shutil.copytree(swapped / "store", store)
    shutil.copytree(swapped / "run", run_dir)
    journal = json.loads((run_dir / "journal.json").read_text())
    if "store" in journal:  # the store it records moved with it
        edit_journal(run_dir, store=f"embedded:{store.resolve()}")
    return store, run_dir


@pytest.mark.parametrize("command", ["swap", "rollback", "finalize", "abandon"])
def test_a_run_folder_refuses_a_store_that_is_not_its_own(command: str, swapped: Path, fast_tmp: Path) -> None:
    """Another store with the same collection and alias names: the run folder names its own store and refuses."""
    store, run_dir = copy_run(swapped, fast_tmp)
    other = fast_tmp / "other"
    shutil.copytree(swapped / "other", other)
    if command == "abandon":  # a run that may be abandoned (on its own store)
        assert cli("rollback", run_dir, "--path", store).exit_code == 0
    files, state, other_state = tree(run_dir), store_state(store), store_state(other)
    line = refused(cli(command, run_dir, *(["--yes"] if command in ("finalize", "abandon") else []),
                       "--path", other))
    assert "StoreMismatch" in line and f"belongs to the store embedded:{store.resolve()}" in line, line
    assert tree(run_dir) == files and store_state(store) == state and store_state(other) == other_state
    FIGURES.setdefault("run folders: another store refused", set()).add(command)


def test_a_journal_from_before_stores_were_recorded_is_checked_by_its_collections(swapped: Path,
                                                                                  fast_tmp: Path) -> None:
    """No ``store`` in the journal: unknown, not a mismatch (said in a log line). A store without the run's target
    is still refused; its own store works."""
    store, run_dir = copy_run(swapped, fast_tmp)
    other = fast_tmp / "other"
    shutil.copytree(swapped / "other", other)
    journal = json.loads((run_dir / "journal.json").read_text())
    journal.pop("store", None)
    (run_dir / "journal.json").write_text(json.dumps(journal))
    files = tree(run_dir)
    result = cli("rollback", run_dir, "--path", other)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and "does not record its store" in " ".join(result.stderr.split()), result.output
    assert lines[-1].startswith(f"error: StoreMismatch: this store has no {TARGET!r}, the run's target"), lines
    assert tree(run_dir) == files
    done = cli("rollback", run_dir, "--path", store)
    assert done.exit_code == 0, done.output
    assert "does not record its store" in " ".join(done.stderr.split())
    assert "alias 'docs' moved: docs_v1_distilled16 -> docs_v1" in done.stdout
    with QdrantConnector.open(path=str(store)) as conn:
        assert conn.alias_target("docs") == "docs_v1"


def test_a_running_migration_locks_its_run_folder(demo_texts: list[str], tiny_model_path: Path,
                                                  fast_tmp: Path) -> None:
    """A migration stopped (SIGSTOP) right after its sample is saved: abandon, swap, rollback and finalize, given
    another store, are refused with one line naming it; status still reads. Once it is killed, the lock is gone."""
    store, other, run_dir = fast_tmp / "store", fast_tmp / "other", fast_tmp / "run"
    for path in (store, other):
        with QdrantConnector.open(path=str(path)) as conn:
            build_source(conn, demo_texts, n=60)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("QDRANT_", "QD_CRASH"))},
           "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "QD_CRASH_AT": "after:sampled", "QD_CRASH_SIGNAL": "STOP"}
    proc = subprocess.Popen(
        [*TRAP, "migrate", "--alias", "docs", "--yes", "--path", str(store), "--student", str(tiny_model_path),
         "--dim", str(DIM), "--sample-size", "30", "--max-steps", "1", "--run-dir", str(run_dir), "--no-progress",
         "--export", "none"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_stopped(proc)
        assert (run_dir / "sample.npz").is_file()
        files = tree(run_dir)
        for command in ("abandon", "swap", "rollback", "finalize"):
            line = refused(cli(command, run_dir, *(["--yes"] if command in ("abandon", "finalize") else []),
                               "--path", other))
            assert f"RunBusy: the run folder '{run_dir.resolve()}' is in use by qdrant-distill migrate (pid {proc.pid}"\
                in line, line
        status = cli("status", run_dir, "--json")
        assert status.exit_code == 0 and json.loads(status.stdout)["stage"] == "sampled"
        assert tree(run_dir) == files
    finally:
        proc.kill()
        proc.wait(timeout=60)
    done = cli("abandon", run_dir, "--yes", "--path", store)  # the kernel dropped the killed process's lock
    assert done.exit_code == 0, done.output
    assert not (run_dir / "journal.json").exists() and not (run_dir / "sample.npz").exists()


def _wait_stopped(proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the migration ended ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        with open(f"/proc/{proc.pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "T":  # stopped
                return
        time.sleep(0.05)
    raise AssertionError("the migration did not reach its crash point")


# -- a journal that contradicts the store ---------------------------------------------------------------------------
FORGED: dict[str, tuple[dict[str, Any], list[str], int, str]] = {  # journal fields, command, exit code, output
    "previous-nope/finalize": ({"previous_target": "nope"}, ["finalize", "--yes"], 1,
                               "StoreMismatch: the journal's previous collection 'nope' is not the one"),
    "previous-nope/swap": ({"previous_target": "nope"}, ["swap"], 0,
                           f"alias 'docs' already points to {TARGET!r}; nothing moved"),
    "previous-nope/rollback": ({"previous_target": "nope"}, ["rollback"], 1,
                               "StoreMismatch: cannot roll back: the previous collection 'nope' does not exist"),
    "target-not-ours/swap": ({"target": "others"}, ["swap"], 1,
                             "StoreMismatch: 'others' was not created by this run"),
    "target-not-ours/finalize": ({"target": "others"}, ["finalize", "--yes"], 1,
                                 "StoreMismatch: 'others' was not created by this run"),
}


@pytest.mark.parametrize("case", list(FORGED))
def test_a_journal_that_contradicts_the_store_moves_and_drops_nothing(case: str, swapped: Path,
                                                                      fast_tmp: Path) -> None:
    fields, command, code, text = FORGED[case]
    store, run_dir = copy_run(swapped, fast_tmp)
    edit_journal(run_dir, **fields)
    files, state = tree(run_dir), store_state(store)
    result = cli(*command, run_dir, "--path", store)
    if code:
        assert text in refused(result)
    else:
        assert result.exit_code == 0 and text in result.stdout, result.output
    assert "nope" not in result.stdout  # never reported as dropped or as the way back
    assert tree(run_dir) == files and store_state(store) == state
    FIGURES.setdefault("run folders: forged journals caught", set()).add(case)


def test_finalize_says_what_it_dropped_and_abandon_then_does_not_suggest_rolling_back(swapped: Path,
                                                                                       fast_tmp: Path) -> None:
    """The previous collection dropped by hand: finalize drops nothing and says so. After finalize, abandon refuses
    without pointing at a rollback that is no longer possible."""
    store, run_dir = copy_run(swapped, fast_tmp)
    with QdrantConnector.open(path=str(store)) as conn:
        conn.delete_collection("docs_v1")
    done = cli("finalize", run_dir, "--yes", "--path", store)
    assert done.exit_code == 0 and "finalized; nothing dropped" in done.stdout, done.output
    assert "dropped docs_v1" not in done.stdout and "'docs_v1' no longer exists" in " ".join(done.stderr.split())
    line = refused(cli("abandon", run_dir, "--yes", "--path", store))
    assert "the migration is finalized" in line and "roll" not in line.split("(hint:")[-1], line
    with QdrantConnector.open(path=str(store)) as conn:
        assert sorted(conn.collections()) == ["docs_v1_distilled16", "others"]


def test_finalize_checks_every_alias_before_it_says_it_drops(swapped: Path, fast_tmp: Path) -> None:
    """Issue 31, item 10: another alias still points to the previous collection. finalize refuses in one line before
    it logs a word about dropping it, and the store, the run folder and the journal's stage stay as they were."""
    store, run_dir = copy_run(swapped, fast_tmp)
    with QdrantConnector.open(path=str(store)) as conn:
        conn.swap_alias("legacy", "docs_v1")
    files, state = tree(run_dir), store_state(store)
    line = refused(cli("finalize", run_dir, "--yes", "--path", store))
    assert line == ("error: AliasConflict: refusing to drop 'docs_v1': alias 'legacy' points to it (move or "
                    "delete that alias first; nothing was dropped)"), line
    assert tree(run_dir) == files and store_state(store) == state
    assert json.loads((run_dir / "journal.json").read_text())["stage"] == "swapped"


# -- damaged files beside the journal (issue 31, item 7) --------------------------------------------------------------
DAMAGE: dict[str, tuple[str, bytes | None, str]] = {  # file, content (None: a folder), what the line says
    "report.json not JSON": ("report.json", b"{not json", "is not the run's report figures: Invalid JSON"),
    "report.json a list": ("report.json", b"[1, 2]", "is not the run's report figures: Input should be an object"),
    "report.json wrong types": ("report.json", b'{"points": "many", "notes": 3}',
                                "is not the run's report figures: points: Input should be a valid integer"),
    "report.json binary": ("report.json", bytes(range(256)) * 4, "is not the run's report figures: Invalid JSON"),
    "report.json a folder": ("report.json", None, "is not the run's report figures: it is a folder"),
    "dims.json not JSON": ("dims.json", b"dims!", "is not a dimension table: Invalid JSON"),
    "dims.json binary": ("dims.json", bytes(range(256)) * 4, "is not a dimension table: Invalid JSON"),
    "dims.json wrong types": ("dims.json", b'{"rows": "none"}', "is not a dimension table: "),
    "report.html a folder": ("report.html", None, "is not a file: the report cannot be written there"),
}


def damage(run_dir: Path, name: str, content: bytes | None) -> Path:
    path = run_dir / name
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if content is None:
        (path / "kept").mkdir(parents=True)
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", list(DAMAGE))
def test_status_html_on_a_damaged_file_is_one_line_and_writes_nothing(case: str, swapped: Path,
                                                                       fast_tmp: Path) -> None:
    name, content, says = DAMAGE[case]
    _, run_dir = copy_run(swapped, fast_tmp)
    path = damage(run_dir, name, content)
    files = tree(run_dir)
    line = refused(cli("status", run_dir, "--html"))
    assert line.startswith(f"error: RunFolderError: {path}") and says in line, line
    assert tree(run_dir) == files and not (run_dir / "report.tmp").exists()  # nothing written, nothing left behind
    assert cli("status", run_dir).exit_code == 0  # the journal still reads
    FIGURES.setdefault("run folders: damaged files, one line (status --html)", set()).add(case)


def test_alias_commands_on_a_damaged_folder_say_what_moved_and_warn_in_one_line(swapped: Path,
                                                                                  fast_tmp: Path) -> None:
    """report.json corrupt, then report.html a folder: rollback, swap and finalize do their work and say so on
    stdout; the report they cannot refresh is one warning line, never a traceback."""
    store, run_dir = copy_run(swapped, fast_tmp)
    damage(run_dir, "report.json", b"{not json")
    steps = [(("rollback",), f"alias 'docs' moved: {TARGET} -> docs_v1"),
             (("swap",), f"alias 'docs' moved: docs_v1 -> {TARGET}"),
             (("finalize", "--yes"), "finalized; dropped docs_v1")]
    for n, (command, says) in enumerate(steps):
        if n == 1:
            damage(run_dir, "report.json", None)
            damage(run_dir, "report.html", None)
        done = cli(*command, run_dir, "--path", store)
        assert done.exit_code == 0 and done.stdout.strip() == says, done.output
        warning = " ".join(done.stderr.split())
        assert "Traceback" not in done.output and warning.count("the report was not refreshed") == 1, done.stderr
        assert "WARNING the report was not refreshed: /" in warning and ".py" not in warning, warning
        assert not (run_dir / "report.tmp").exists()
    with QdrantConnector.open(path=str(store)) as conn:
        assert sorted(conn.collections()) == [TARGET, "others"] and conn.alias_target("docs") == TARGET
