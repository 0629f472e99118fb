"""The command line on a persisted embedded store: plan, migrate, status, rollback, swap, finalize; errors; secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from qdrant_distill.cli.app import MIGRATION_OPTIONS as SHARED
from qdrant_distill.cli.app import _migration_overrides, app
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.migration.config import load_config
from tests.test_migration import DIM, build_source

SECRET = "sk-test-7f3a9c2e-do-not-leak"


@pytest.fixture
def store(tmp_path: Path, demo_texts: list[str]) -> Path:
    path = tmp_path / "qdrant"
    with QdrantConnector.open(path=str(path)) as conn:
        build_source(conn, demo_texts)
    return path


# each plan/migrate option: a value for it, the configuration field it sets, and (when not the same) what that reads
MIGRATION_OPTIONS: dict[str, tuple] = {
    "alias": ("docs", "source"), "collection": ("docs_v1", "source"), "new_alias": ("docs_new", "alias"),
    "target": ("docs_v2", "target"), "text_field": ("body", "text_field"), "text_template": ("{t}", "text_template"),
    "vector_name": ("dense", "vector_name"), "dim": (64, "dim"), "mode": ("project", "mode"),
    "student": ("some/body", "student.base_model"), "student_kind": ("static", "student.kind"),
    "teacher": ("some/teacher", "teacher_model"), "label_queries": (7, "student.label_queries"),
    "no_teacher_check": (True, "teacher_check", False), "embeddings_api_key": ("sk-e", "embeddings_api_key"),
    "sample_size": (300, "sample_size"), "epochs": (3, "student.epochs"), "max_steps": (9, "student.max_steps"),
    "keep_layers": (2, "student.keep_layers"), "export": ("onnx", "student.export"),
    "time_budget": (30.0, "student.time_budget_s"),
    "min_recall": (0.25, "gate.min_recall_at_10"), "min_spearman": (0.125, "gate.min_spearman"),
    "min_ndcg": (0.5, "gate.min_ndcg_at_10"), "queries": ("beir/x", "gate.queries"),
    "missing_text": ("skip", "missing_text"), "page_size": (77, "page_size"), "run_dir": ("runs/x", "run_dir"),
    "engine": ("ray", "engine"), "ray_address": ("auto", "ray.address"), "workers": (5, "ray.workers"),
    "gpus_per_worker": (0.5, "ray.gpus_per_worker"), "no_progress": (True, "progress", False),
    "url": ("http://localhost:6333", "qdrant.url"), "api_key": ("sk-q", "qdrant.api_key"),
    "path": ("/tmp/q", "qdrant.path"), "grpc": (True, "qdrant.prefer_grpc"),
}


def _field(config: object, dotted: str) -> object:
    for part in dotted.split("."):
        config = getattr(config, part)
    config = getattr(config, "value", config)  # an enum
    return config.get_secret_value() if hasattr(config, "get_secret_value") else config


def test_every_migration_option_sets_its_config_field() -> None:
    """plan and migrate share their options (declared once); each one given alone reaches its configuration field,
    and an option left unset is left out of the overrides (so a config file or the environment still decides)."""
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    plan_options = {p.name for p in commands["plan"].params} - {"config", "as_json", "debug", "dims", "dims_out"}
    assert plan_options == set(MIGRATION_OPTIONS)
    assert {p.name for p in commands["migrate"].params} == plan_options | {"config", "as_json", "debug", "yes",
                                                                           "dry_run", "restart"}
    unset = {name: (False if isinstance(spec[0], bool) else None) for name, spec in MIGRATION_OPTIONS.items()}
    assert set(SHARED) == set(MIGRATION_OPTIONS)
    assert _migration_overrides(unset) == {}
    for name, (value, field, *read_back) in MIGRATION_OPTIONS.items():
        source = {} if name in ("alias", "collection") else {"alias": "docs"}
        config = load_config(None, environ={}, **_migration_overrides(unset | source | {name: value}))
        assert _field(config, field) == (read_back[0] if read_back else value), name


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def common(store: Path, tiny_model_path: Path, run_dir: Path) -> list[str]:
    return ["--path", str(store), "--dim", str(DIM), "--student", str(tiny_model_path), "--sample-size", "100",
            "--max-steps", "2", "--min-recall", "0", "--min-spearman", "-1", "--run-dir", str(run_dir),
            "--no-progress"]


def test_plan_prints_and_writes_nothing(store: Path, tiny_model_path: Path, tmp_path: Path) -> None:
    result = run("plan", "--alias", "docs", *common(store, tiny_model_path, tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "docs_v1_distilled16" in result.stdout and "48 -> 16" in result.stdout
    assert not (tmp_path / "run").exists()
    as_json = run("plan", "--alias", "docs", "--json", *common(store, tiny_model_path, tmp_path / "run"))
    assert json.loads(as_json.stdout)["target"] == "docs_v1_distilled16"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alias", "ghost"], "CollectionNotFound: no collection or alias named 'ghost'"),
        (["--alias", "docs", "--vector-name", "nope"], "VectorNotFound"),
        (["--alias", "docs", "--text-template", "{nothing}"], "NoTextPayload"),
        (["--alias", "docs", "--config", "/no/such/file.toml"], "ConfigError: cannot read config file"),
        (["--alias", "docs", "--collection", "docs_v1"], "not both"),
        (["--alias", "docs", "--student-kind", "pruned", "--keep-layers", "0"], "keep_layers"),
    ],
)
def test_expected_failures_are_one_red_line(store, tiny_model_path, tmp_path, args, message) -> None:
    result = run("plan", *args, *common(store, tiny_model_path, tmp_path / "run"))
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and message in " ".join(lines[-3:])
    assert "Traceback" not in result.output


def test_migrate_status_rollback_swap_finalize(store: Path, tiny_model_path: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run("migrate", "--alias", "docs", "--yes", "--api-key", SECRET, *common(store, tiny_model_path, run_dir))
    assert result.exit_code == 0, result.output
    assert "swapped" in result.stdout
    # it ends on the report's summary lines: quality, bytes, speed, verdict, what to run next with this run folder
    tail = result.stdout.splitlines()[-8:]
    assert [line.split()[0] for line in tail if not line.startswith(" ")] == ["quality", "bytes", "speed", "verdict",
                                                                           "next", "report"]
    assert f"qdrant-distill rollback {run_dir} --path {store}   # point docs back at docs_v1" in result.stdout
    assert "verdict   kept the " in result.stdout
    assert "passed the gate; swapped: alias docs -> docs_v1_distilled16" in result.stdout
    assert "%|" not in result.output and "Loading weights" not in result.output  # --no-progress: no bar at all
    status = run("status", str(run_dir), "--json")
    assert json.loads(status.stdout)["stage"] == "swapped"
    # planning the alias again: it now points at the distilled collection, and the refusal says so
    again = run("plan", "--alias", "docs", *common(store, tiny_model_path, tmp_path / "again"))
    assert again.exit_code == 1 and ("DimensionError: target dimension 16 is not smaller than the teacher's 16; alias "
                                     "'docs' points at 'docs_v1_distilled16', a collection qdrant-distill made (48 -> "
                                     "16 dimensions, from 'docs_v1')") in " ".join(again.stderr.split())

    table = run("status", str(run_dir))  # in words: nothing unknown shown as None, what to run next
    assert table.exit_code == 0 and "None" not in table.stdout and "240" in table.stdout
    assert f"next      qdrant-distill rollback {run_dir} --path {store}   # point docs back at docs_v1" in table.stdout
    # routine steps are INFO, not warnings; verify is one sentence, not a dict
    assert "WARNING" not in result.stderr and "moving alias 'docs': docs_v1 -> docs_v1_distilled16" in result.stderr
    assert "verify: 240 of 240 points in both, none missing, extra or changed" in " ".join(result.stderr.split())
    at = ["--path", str(store)]
    back = run("rollback", str(run_dir), *at)
    assert back.exit_code == 0 and "WARNING" not in back.output
    asked = run("finalize", str(run_dir), *at, input="n\n")  # asks first, naming what it drops; "no" changes nothing
    assert asked.exit_code == 1 and "Drop the previous collection 'docs_v1' for good?" in asked.output
    assert run("swap", str(run_dir), *at).exit_code == 0
    done = run("finalize", str(run_dir), *at, "--yes")
    assert done.exit_code == 0 and "dropped docs_v1" in done.stdout
    again = run("finalize", str(run_dir), *at, "--yes")  # a second finalize says so, and drops nothing
    assert again.exit_code == 0 and "already finalized" in again.stdout and "; dropped" not in again.stdout
    with QdrantConnector.open(path=str(store)) as conn:
        assert conn.collections() == ["docs_v1_distilled16"] and conn.alias_target("docs") == "docs_v1_distilled16"
        metadata = json.dumps(conn.describe("docs").metadata)
    # the API key never appears in output, journal or metadata
    journal = (run_dir / "journal.json").read_text()
    page = run("status", str(run_dir), "--html")  # the report, refreshed by each alias move, written afresh
    report = Path(page.stdout.strip()).read_text() + (run_dir / "report.json").read_text()
    assert page.exit_code == 0 and ">rolled back<" in report and ">finalized<" in report
    for text in (result.output, status.output, journal, metadata, report):
        assert SECRET not in text


def test_abandon_and_restart(store: Path, tiny_model_path: Path, tmp_path: Path) -> None:
    """A live migration cannot be abandoned; rolled back it can, and `migrate --restart` does it first."""
    run_dir, at = tmp_path / "run", ["--path", str(store)]
    assert run("migrate", "--alias", "docs", "--yes", *common(store, tiny_model_path, run_dir)).exit_code == 0
    refused = run("abandon", str(run_dir), *at, "--yes")
    assert refused.exit_code == 1 and "live" in refused.stderr
    assert run("rollback", str(run_dir), *at).exit_code == 0
    again = run("migrate", "--alias", "docs", "--yes", "--restart", *common(store, tiny_model_path, run_dir))
    assert again.exit_code == 0 and "dropped docs_v1_distilled16" in again.stderr and "swapped" in again.stdout
    assert run("rollback", str(run_dir), *at).exit_code == 0
    done = run("abandon", str(run_dir), *at, "--yes")
    assert done.exit_code == 0 and "dropped docs_v1_distilled16" in done.stdout
    assert not (run_dir / "journal.json").exists() and not (run_dir / "report.html").exists()
    with QdrantConnector.open(path=str(store)) as conn:
        assert conn.collections() == ["docs_v1"] and conn.alias_target("docs") == "docs_v1"


def _help(*command: str) -> str:
    """A command's --help as a user sees it on a wide terminal (one option a line)."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_option_of_every_command_shows_its_default_in_help() -> None:
    """Rich markup would swallow a bare "[default: ...]": each option's line shows it (flags are off unless given;
    a required option has none), choices are listed, and plan/migrate group their options in panels."""
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        text = _help(name)
        for param in command.params:
            if param.param_type_name != "option" or param.is_flag or param.required:
                continue
            line = next(line for line in text.splitlines() if f" {param.opts[0]} " in line)
            assert "[default: " in line, (name, line)
    plan = _help("plan")
    assert "--dim  " in plan and "target dimension [default: 128]" in plan
    assert "[default: 5000, or the whole collection when smaller]" in plan and "[default: ./qdrant_data]" in plan
    assert "<reembed|project|projection-only>" in plan and "<transformer|pruned|static>" in plan
    assert "<local|ray>" in plan and "<fail|skip|project>" in plan and "<none|onnx|onnx-int8>" in plan
    for panel in ("Source and target", "Student and training", "Quality gate", "Re-embed", "Qdrant connection"):
        assert f"─ {panel} ─" in plan and f"─ {panel} ─" in _help("migrate")
    assert "[default: 2,048]" in _help("serve")


def test_a_wrong_choice_names_the_flag_and_the_choices_and_version_prints() -> None:
    said = run("plan", "--alias", "docs", "--mode", "bogus")
    assert said.exit_code == 2 and "'--mode'" in said.output
    assert "'reembed', 'project', 'projection-only'" in said.output
    from qdrant_distill._version import __version__

    version = run("--version")
    assert version.exit_code == 0 and version.stdout.strip() == f"qdrant-distill {__version__}"


def test_plan_of_a_plain_collection_hints_the_flag_that_works(store: Path, tiny_model_path: Path,
                                                               tmp_path: Path) -> None:
    args = common(store, tiny_model_path, tmp_path / "run")
    said = run("plan", "--collection", "docs_v1", *args)
    assert said.exit_code == 0 and "pass --new-alias NAME to create an alias for the target" in said.stdout
    followed = run("plan", "--collection", "docs_v1", "--new-alias", "docs_new", *args)  # the hint, followed
    assert followed.exit_code == 0 and "alias 'docs_new': (new) -> docs_v1_distilled16" in followed.stdout


def test_plan_reports_every_problem_in_one_pass(store: Path, tiny_model_path: Path, tmp_path: Path) -> None:
    with QdrantConnector.open(path=str(store)) as conn:  # the default target is taken
        build_source(conn, ["taken"] * 10, name="docs_v1_distilled16", alias=None, n=10)
    args = [*common(store, tiny_model_path, tmp_path / "run"), "--student", str(tmp_path / "no-such-model"),
            "--label-queries", "5"]
    said = run("plan", "--alias", "docs", *args)
    assert said.exit_code == 1
    line = " ".join(said.stderr.split())
    assert line.count("error:") == 1 and line.startswith("error: CollectionExists: target collection "
                                                          "'docs_v1_distilled16' already exists")
    assert "and 2 more problems: (2) ConfigError: student model path" in line
    assert "(3) ConfigError: teacher labels (--label-queries) need the teacher" in line


def test_a_sample_larger_than_the_collection_is_clamped_and_said(store: Path, tiny_model_path: Path,
                                                                 tmp_path: Path) -> None:
    args = [*common(store, tiny_model_path, tmp_path / "run"), "--sample-size", "100000"]  # the last one wins
    said = run("plan", "--alias", "docs", *args)
    assert said.exit_code == 0, said.output
    assert "sample      240 points" in said.stdout
    assert ("note        sample size 100,000 (--sample-size, sample_size) is more than the collection's 240 points: "
            "the whole collection is sampled") in said.stdout


def test_finalize_asks_nothing_when_nothing_will_be_dropped(store: Path, tiny_model_path: Path, tmp_path: Path) -> None:
    """A new alias (--new-alias) had no previous collection: finalize drops nothing, so it does not ask."""
    run_dir = tmp_path / "run"
    without = [a for a in common(store, tiny_model_path, run_dir) if a != "--no-progress"]
    done = run("migrate", "--collection", "docs_v1", "--new-alias", "docs_new", "--yes", *without)
    assert done.exit_code == 0, done.output
    assert "\r" not in done.output and "%|" not in done.output  # not a terminal: no progress bars, even unasked
    status = run("status", str(run_dir))
    assert "previous target" not in status.stdout and "None" not in status.stdout
    final = run("finalize", str(run_dir), "--path", str(store))  # no --yes, no answer given
    assert final.exit_code == 0 and "for good?" not in final.output and "finalized; nothing dropped" in final.stdout


def test_an_unreachable_server_is_one_retry_line_then_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.reliability.conftest import no_sleep_retries

    no_sleep_retries(monkeypatch)  # the retries still happen, without their waits
    said = run("plan", "--alias", "docs", "--url", "http://127.0.0.1:9")
    lines = [line for line in said.stderr.splitlines() if line.strip() and not line.startswith("         ")]
    assert said.exit_code == 1 and len(lines) == 2, said.stderr
    assert "Connection refused; retrying" in lines[0] and "Retrying" not in said.stderr
    assert lines[1].startswith("error: ConnectionFailed: get_aliases on http://127.0.0.1:9: cannot reach the server")
    assert "UserWarning" not in said.output


def test_two_plans_give_the_same_dimension_table(store: Path, tiny_model_path: Path, tmp_path: Path) -> None:
    args = ["plan", "--alias", "docs", "--dims", "4,8", *common(store, tiny_model_path, tmp_path / "run")]
    first, second = run(*args), run(*args)
    assert first.exit_code == second.exit_code == 0, first.output

    def table(said: str) -> list[str]:  # the rows of the table (its first line holds the timing)
        return [line for line in said.splitlines() if line[:9].strip().isdigit()]

    assert table(first.stdout) == table(second.stdout) and len(table(first.stdout)) == 3
    assert "fitted on 90 sampled points; every column measured on 10 held out" in " ".join(first.stdout.split())
    assert "the dimension table samples with seed 0 (the same table each time)" in first.stdout


def test_export_says_what_it_does_before_the_long_silent_part(tiny_model_path: Path, tmp_path: Path) -> None:
    refused = run("export", str(tiny_model_path))  # no --out for a plain model: one line, before anything is said
    assert refused.exit_code == 1 and refused.stderr.splitlines() == [
        f"error: ConfigError: {tiny_model_path} is not a run or distill output folder: say where to export it (add "
        "--out FOLDER)"]
    said = run("export", str(tiny_model_path), "--format", "onnx", "--out", str(tmp_path / "onnx"))
    assert said.stderr.splitlines()[0] == (
        f"exporting {tiny_model_path} as onnx: each graph is written, then checked against the torch model (about a "
        "minute for a MiniLM-sized student on a CPU)"), said.stderr
    assert said.exit_code == 0, said.stderr