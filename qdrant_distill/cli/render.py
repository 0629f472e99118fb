"""Human-readable renderings for the terminal (rich tables): a migration report, a journal, an export's checks."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from qdrant_distill.inference.formats import Backend
from qdrant_distill.migration.journal import Journal
from qdrant_distill.migration.pipeline import MigrationReport

__all__ = ["journal_table", "report_table"]


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def report_table(report: MigrationReport) -> Table:
    """The final report: where things stand, quality against the baseline, sizes, times."""
    table = Table(title=f"qdrant-distill: {report.source} -> {report.target}", show_header=True)
    table.add_column("item")
    table.add_column("value", overflow="fold")
    table.add_row("stage", report.stage.value)
    table.add_row("alias", f"{report.alias} -> {report.target if report.stage.value == 'swapped' else '(unchanged)'}"
                  if report.alias else "(none)")
    table.add_row("previous target", str(report.previous_target))
    table.add_row("mode / dim", f"{report.mode.value} / {report.teacher_dim} -> {report.dim}")
    table.add_row("points", f"{report.points_written:,} written of {report.points:,} ({report.skipped} skipped)")
    table.add_row("vector bytes", f"{_mb(report.vector_bytes_before)} -> {_mb(report.vector_bytes_after)}")
    table.add_row("sample", f"{report.sample_size:,} points")
    for key, value in sorted(report.metrics.items()):
        base = report.baseline_metrics.get(key)
        gate = report.gate.get(key)
        extra = (f"   (untrained {base:.4f})" if base is not None else "") + (f"   gate >= {gate}" if gate else "")
        table.add_row(key, f"{value:.4f}{extra}")
    if report.selection:
        table.add_row("kept", selection_line(report.selection))
    if report.verify:
        table.add_row("verify", ", ".join(f"{k} {v}" for k, v in report.verify.items()))
    if report.catch_up:
        table.add_row("catch-up", ", ".join(f"{k} {v}" for k, v in report.catch_up.items()))
    for stage, seconds in report.seconds.items():
        table.add_row(f"time: {stage}", f"{seconds:,.1f} s")
    table.add_row("student", f"{report.student_path} (runs on {report.backend})")
    table.add_row("journal", report.journal)
    for note in report.notes:
        table.add_row("note", note)
    return table


def selection_line(selection: dict[str, Any]) -> str:
    """Which state the holdout kept, by how much, against what."""
    key, chosen = selection["primary_metric"], selection["chosen"]
    others = ", ".join(f"{name} {m.get(key, float('nan')):.4f}" for name, m in selection["candidates"].items()
                       if name != chosen)
    return (f"{chosen}: {key} {selection['candidates'][chosen].get(key, float('nan')):.4f} "
            f"({selection['margin']:+.4f} over the next best; {others})")


def journal_table(journal: Journal) -> Table:
    """Where a run stands, in words: what is not known yet is left out, numbers have separators."""
    from qdrant_distill.migration.report import readable

    table = Table(title=f"migration {journal.run_id[:8]}", show_header=False)
    table.add_column("item")
    table.add_column("value", overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("stage", readable(journal.stage.value)), ("source", journal.source_collection), ("target", journal.target),
        ("alias", journal.alias or "(none: a plain collection)"),
        ("previous target", journal.previous_target if journal.alias else None),
        ("points written", f"{journal.points_written:,}"), ("skipped", f"{len(journal.skipped_ids):,}"),
        ("re-embed resumes after", journal.checkpoint if not journal.reembed_finished else None),
        ("student", journal.student_path),
    ]
    rows += [(readable(k), f"{v:.3f}") for k, v in sorted(journal.metrics.items())]
    for key, value in rows:
        if value is not None and value != "":
            table.add_row(key, str(value))
    return table


def export_table(manifest: Any) -> Table:
    """An export's formats: checked against the torch model, used or not, and why."""
    table = Table(title=f"export of {manifest.source} ({manifest.dim}-d)", show_lines=False)
    for column in ("format", "file", "cosine mean / min", "holdout", "used"):
        table.add_column(column)
    for backend, file in manifest.files.items():
        check = manifest.checks.get(backend)
        cos = f"{check.cosine_mean:.4f} / {check.cosine_min:.4f}" if check else "-"
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted((check.metrics if check else {}).items())
                            if k in ("fidelity/recall@10", "pseudo_query/self_mrr@10"))
        used = Backend.AUTO.value if backend == manifest.preferred else ("no: " + check.reason if check and check.reason else "")
        table.add_row(backend, file, cos, metrics or "-", used)
    return table
