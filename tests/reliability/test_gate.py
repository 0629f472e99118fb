"""The gate: a randomly initialised student below the default gate never reaches the alias, and the error says which
metric failed by how much; a rerun does not slip past it."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from qdrant_distill.cli.app import app
from qdrant_distill.connectors import QdrantConnector
from qdrant_distill.migration.config import GateConfig
from tests.reliability.conftest import FIGURES, store_state
from tests.test_migration import build_source

GATE_LINE = re.compile(r"(fidelity/[\w@]+) = (-?[\d.]+) < (-?[\d.]+) \(short by (-?[\d.]+)\)")


def test_a_random_student_below_the_gate_never_reaches_the_alias(demo_texts, tiny_model_path, fast_tmp) -> None:
    store, run_dir = fast_tmp / "qdrant", fast_tmp / "run"
    with QdrantConnector.open(path=str(store)) as conn:
        build_source(conn, demo_texts)
    before = store_state(store)
    # the default gate (GateConfig: recall@10 >= 0.3, Spearman >= 0.5); the tiny student is randomly initialised, 1 step
    args = ["migrate", "--alias", "docs", "--yes", "--path", str(store), "--student", str(tiny_model_path),
            "--dim", "16", "--sample-size", "200", "--max-steps", "1", "--run-dir", str(run_dir), "--no-progress"]
    for attempt in range(2):  # the rerun measures again and refuses again: the gate is not skipped on resume
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        line = [x for x in result.stderr.splitlines() if "error:" in x]
        assert len(line) == 1 and line[0].startswith("error: GateFailed: the student is below the quality gate")
        assert "nothing was written to Qdrant" in line[0]
        assert store_state(store) == before  # no target collection, alias and source untouched

    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["stage"] == "distilled"
    failed = GATE_LINE.findall(line[0])
    assert failed, line[0]
    thresholds = GateConfig().thresholds()  # the defaults the CLI applied
    for metric, value, threshold, short_by in failed:
        measured = journal["metrics"][metric]
        assert float(value) == round(measured, 4) and float(threshold) == thresholds[metric]
        assert abs(float(short_by) - (thresholds[metric] - measured)) < 1e-4 and float(short_by) > 0
    assert {m for m, *_ in failed} == {m for m, t in thresholds.items() if journal["metrics"][m] < t}
    FIGURES["gate"] = "; ".join(f"{m} {v} < {t} (short by {s})" for m, v, t, s in failed)

    # the gate is the only thing in the way: relaxed, the same run resumes without training again and swaps
    relaxed = CliRunner().invoke(app, [*args, "--min-recall", "0", "--min-spearman", "-1"])
    assert relaxed.exit_code == 0, relaxed.output
    after = json.loads((run_dir / "journal.json").read_text())
    assert after["stage"] == "swapped" and after["stage_times"]["distilled"] == journal["stage_times"]["distilled"]
    with QdrantConnector.open(path=str(store)) as conn:
        assert conn.alias_target("docs") == "docs_v1_distilled16"
