"""What the command line says when something is wrong (issue 20, section 5): a redirecting endpoint, a teacher that
cannot be loaded, a mistyped API prefix; and ``evaluate`` on a run folder, as its help promises."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qdrant_distill.cli.app import app
from qdrant_distill.migration.config import load_config
from qdrant_distill.migration.journal import Journal, Stage
from tests.conftest import MINILM
from tests.connectors.fake_embeddings import fake_endpoint
from tests.reliability.conftest import source_store
from tests.test_migration import write_beir

runner = CliRunner()


def cli(*args: str, code: int) -> str:
    """Run the CLI; the exit code must be ``code``; returns stdout and stderr together."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def beir(tmp_path: Path, demo_texts: list[str]) -> Path:
    write_beir(tmp_path / "beir", demo_texts, n=20)
    return tmp_path / "beir"


@pytest.fixture(scope="module")
def store(demo_texts: list[str]) -> Iterator[Path]:
    """One source collection for the module (plan writes nothing), on tmpfs when there is one: it is built faster."""
    with source_store("wording", demo_texts) as store:
        yield store


def test_a_redirect_is_reported_as_one_and_not_followed(beir: Path) -> None:
    with fake_endpoint() as endpoint:
        ref = f"openai+{endpoint.url}?model=m&attempts=1"
        endpoint.faults = [(301, "https://elsewhere.example:8443/v1/embeddings")]
        said = cli("evaluate", "--model", ref, "--beir", str(beir), code=1)
        assert (f"error: ServerError: openai+{endpoint.url} redirected (301) to https://elsewhere.example:8443; "
                "redirects are not followed") in said and "not JSON" not in said
        endpoint.faults = [(308, "/moved/v1/embeddings")]  # to the same server: following it would be seen here
        said = cli("evaluate", "--model", ref, "--beir", str(beir), code=1)
        assert "redirected (308) to another path on the same server" in said
        assert len(endpoint.requests) == 2  # one request each: neither redirect was followed


def test_a_teacher_that_cannot_be_loaded_is_a_config_error(store: Path, tmp_path: Path) -> None:
    (tmp_path / "not-a-model").mkdir()  # looks like a model to plan's check (a config.json), fails to load
    (tmp_path / "not-a-model" / "config.json").write_text("not json")
    said = cli("plan", "--collection", "docs_v1", "--dim", "8", "--sample-size", "100", "--path", str(store),
               "--run-dir", str(tmp_path / "run"), "--teacher", str(tmp_path / "not-a-model"),
               "--student", str(MINILM), code=1)
    assert "error: ConfigError: cannot load the teacher: cannot load the model" in said
    assert "StudentError" not in said and "--teacher takes" in said


@pytest.mark.parametrize("command", ["plan", "evaluate"])
def test_a_mistyped_api_prefix_names_the_valid_ones(command: str, store: Path, beir: Path, tmp_path: Path) -> None:
    ref = "openia+http://127.0.0.1:1/v1?model=m"
    args = (["plan", "--collection", "docs_v1", "--dim", "8", "--sample-size", "100", "--path", str(store),
             "--run-dir", str(tmp_path / "run"), "--teacher", ref] if command == "plan"
            else ["evaluate", "--model", ref, "--beir", str(beir)])
    said = cli(*args, code=1)
    assert "error: ConfigError: unknown embeddings API 'openia' in 'openia+http://127.0.0.1:1'" in said
    assert "openai+, tei+, ollama+" in said


def test_evaluate_takes_a_run_folder(tiny_model_path: Path, beir: Path, tmp_path: Path) -> None:
    """A run folder stands for its query encoder (here its student), as evaluate's help says."""
    run = tmp_path / "run"
    journal = Journal.open(run, load_config(environ={}, source="docs", dim=8).fingerprint())
    journal.student_path, journal.stage = str(tiny_model_path), Stage.DISTILLED
    journal.save()
    said = runner.invoke(app, ["evaluate", "--model", str(run), "--beir", str(beir), "--json"])
    assert said.exit_code == 0 and said.stderr.startswith(f"evaluating {run} on {beir} (test split): encoding")
    of_run = json.loads(said.stdout)
    of_student = json.loads(runner.invoke(app, ["evaluate", "--model", str(tiny_model_path), "--beir", str(beir),
                                                "--json"]).stdout)
    assert of_run == of_student and set(of_run) >= {"ndcg@10", "mrr@10"}
    journal.student_path, journal.stage = None, Stage.SAMPLED
    journal.save()
    said = cli("evaluate", "--model", str(run), "--beir", str(beir), code=1)
    assert "error: ConfigError: the run in" in said and "has no student yet (stage sampled)" in said
