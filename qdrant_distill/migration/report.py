"""The run's report: one self-contained HTML page (``report.html`` in the run folder) that people look at.

It reads files only: the journal, ``distill.json``, the export's manifest, ``dims.json`` (when ``plan --dims`` wrote
one) and ``report.json`` (:class:`RunFacts`: what only the migration knows, the plan's figures and a few held-out
examples with their neighbours). It loads no model and never imports torch, so ``status``, ``swap``, ``rollback`` and
``finalize`` refresh it cheaply. Charts are SVG drawn by matplotlib (the ``report`` extra) and inlined; without it the
page shows the same figures as tables, with a note. Every string from a run is HTML-escaped.

The page opens on a summary card that answers "is it good?" (:class:`Summary`: quality kept, bytes before and after,
query speed of the student against the teacher's, the verdict, the next commands; ``migrate`` ends with the same
lines). It is readable on a phone: a viewport, tables that scroll sideways, chart text drawn large.

Sections: what was migrated, alias moves with times, the dimension chart (the chosen size and the student marked), the
training curve (holdout metrics at each evaluation, the kept state marked), the baselines the holdout compared and the
winner, quality and speed of the chosen backend, bytes before and after, verify and catch-up, held-out examples.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import logging
import math
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from qdrant_distill.connectors.base import PointId
from qdrant_distill.distillation.result import DistillResult
from qdrant_distill.errors import DistillError, RunFolderError
from qdrant_distill.folders import RunFolder
from qdrant_distill.inference.formats import ExportManifest, read_manifest
from qdrant_distill.migration.dims import DimsReport
from qdrant_distill.migration.journal import Journal, Stage
from qdrant_distill.redact import redact_url

__all__ = ["Example", "Neighbour", "RunFacts", "Summary", "qdrant_address", "readable", "refresh_report",
           "render_report", "summarize", "write_report"]

logger = logging.getLogger(__name__)

NO_CHARTS = "Charts need matplotlib: pip install 'qdrant-distill[report]'. The figures are shown as tables."
TEXT_CHARS = 240  # an example's text and its neighbours' texts are cut to this many characters


# -- what only the migration knows ----------------------------------------------------------------------------------
class Neighbour(BaseModel):
    """One nearest neighbour of an example: a point of the sample, with its cosine to the example."""

    id: PointId
    text: str
    score: float


class Example(BaseModel):
    """A held-out point with its nearest neighbours among the sample: by the stored teacher vectors, and as the new
    collection answers its text (the run's query encoder on the chosen backend)."""

    id: PointId
    text: str
    teacher: list[Neighbour]
    student: list[Neighbour]


class RunFacts(BaseModel):
    """``report.json``: the plan's figures (written when the migration starts) and the examples (written at the gate,
    where the student is loaded)."""

    qdrant: str = ""  # scheme://host:port of a server, or the embedded store (never credentials)
    source: str = ""
    mode: str = ""
    student: str = ""
    teacher_dim: int = 0
    dim: int = 0
    points: int = 0
    vector_bytes_before: int = 0
    vector_bytes_after: int = 0
    gate: dict[str, float] = Field(default_factory=dict)  # the gate's thresholds
    notes: list[str] = Field(default_factory=list)
    examples: list[Example] = Field(default_factory=list)
    encode_per_s: float | None = None  # queries a second the run's query encoder answered (the examples' texts)
    encode_texts: int = 0
    teacher_encode_per_s: float | None = None  # the same texts through the teacher, when the run names one

    @classmethod
    def load(cls, run_dir: str | Path) -> RunFacts:
        return _load(RunFolder(Path(run_dir)).report_data, cls, "the run's report figures") or cls()

    def save(self, run_dir: str | Path) -> Path:
        path = RunFolder(Path(run_dir)).report_data
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(path)
        return path


def qdrant_address(where: str) -> str:
    """Where Qdrant is, as the report shows it: a URL through :func:`qdrant_distill.redact.redact_url`
    (``scheme://host:port``); anything else (the embedded store, ``:memory:``) as it is."""
    return redact_url(where) if "://" in where else where


# -- the inputs, read from the run folder ---------------------------------------------------------------------------
@dataclass
class _Inputs:
    journal: Journal
    facts: RunFacts
    distill: DistillResult | None
    manifest: ExportManifest | None
    dims: DimsReport | None
    charts_missing: bool = False  # set when a chart could not be drawn (no matplotlib)


def _read(run_dir: Path) -> _Inputs:
    folder = RunFolder(run_dir)
    journal = Journal.load(folder.journal)
    distill = _load(folder.distill.result, DistillResult, "a distillation result")
    dims = _load(folder.dims, DimsReport, "a dimension table")
    manifest = read_manifest(journal.export_path) if journal.export_path else None
    return _Inputs(journal, RunFacts.load(run_dir), distill, manifest, dims)


def _load(path: Path, model: type[Any], what: str) -> Any:
    """``path`` read as ``model``; None when there is no such file; :class:`RunFolderError` naming the file and what
    is wrong with it when it is not one (a folder, unreadable, binary, not JSON, of the wrong shape or types)."""
    if not path.exists():
        return None
    try:
        return model.model_validate_json(path.read_bytes())
    except IsADirectoryError:
        why = "it is a folder"
    except OSError as exc:
        why = f"it cannot be read ({exc.strerror or type(exc).__name__})"
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        why = (f"{where}: " if where else "") + first["msg"].split("[")[0].strip()
    raise RunFolderError(f"{path} is not {what}: {why}",
                         hint="move it out of the run folder (the report is drawn without it), or restore it",
                         path=str(path))


def write_report(run_dir: str | Path) -> Path:
    """Render the run's ``report.html`` from its files; returns its path. :class:`RunFolderError` when a file it
    reads is damaged or the page cannot be written (nothing is left behind then)."""
    folder = RunFolder(Path(run_dir))
    if folder.report.exists() and not folder.report.is_file():
        raise RunFolderError(f"{folder.report} is not a file: the report cannot be written there",
                             hint="move it out of the run folder", path=str(folder.report))
    page = render_report(folder.root)
    tmp = folder.report.with_suffix(".tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(folder.report)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise RunFolderError(f"cannot write {folder.report}: {exc.strerror or type(exc).__name__}",
                             path=str(folder.report)) from None
    return folder.report


def refresh_report(run_dir: str | Path) -> Path | None:
    """:func:`write_report`, best effort: the journal is the record, the report a view of it. A failure is one
    warning line (the traceback at debug level): what the command did stands."""
    try:
        return write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - a view of the journal (a full disk, a file edited by hand): the run goes on
        shown = str(exc) if isinstance(exc, DistillError) else f"{type(exc).__name__}: {exc}"
        logger.warning("the report was not refreshed: %s", shown)
        logger.debug("the report of %s was not refreshed", run_dir, exc_info=True)
        return None


# -- HTML -----------------------------------------------------------------------------------------------------------
def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _number(value: object) -> float:
    """A metric read from JSON as a float (NaN is written as null)."""
    return float(value) if isinstance(value, (int, float)) else math.nan


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)) if at else "-"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def _seconds(s: float) -> str:
    """A duration rounded as people read one: 0.4 s, 12 s, 4 min 5 s."""
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    return f"{int(s // 60)} min {s % 60:.0f} s"


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, marked: Callable[[int], bool] | None = None,
           cls: str = "", cell_marked: Callable[[int, int], bool] | None = None) -> str:
    """A table; every cell formatted and escaped; rows where ``marked(row)`` is true get the ``mark`` class, cells
    where ``cell_marked(row, column)`` is."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        mark = ' class="mark"' if marked is not None and marked(i) else ""
        cells = "".join(("<td class=\"mark\">" if cell_marked is not None and cell_marked(i, c) else "<td>")
                        + f"{_e(_fmt(value))}</td>" for c, value in enumerate(row))
        body.append(f"<tr{mark}>{cells}</tr>")
    return (f'<div class="scroll"><table class="{_e(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
            "</tbody></table></div>")


def _pairs(rows: Iterable[tuple[str, object]]) -> str:
    return _table(("item", "value"), rows, cls="pairs")


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{_e(anchor)}"><h2>{_e(title)}</h2>{"".join(parts)}</section>'


def _p(text: str, cls: str = "") -> str:
    return f'<p class="{_e(cls)}">{_e(text)}</p>' if cls else f"<p>{_e(text)}</p>"


# -- charts (matplotlib, optional) ----------------------------------------------------------------------------------
Draw = Callable[[Any], None]
CHART_SIZE = (5.4, 3.0)  # inches: 518 px wide at 96 dpi, shrunk to the page's width (372 px on a phone)
CHART_FONT = 12  # points: about 8 px on a phone 390 px wide


def _chart(draw: Draw, *, size: tuple[float, float] = CHART_SIZE, columns: int = 2) -> str | None:
    """``draw(axes)`` as an inline ``<svg>`` element; None without matplotlib. The only place it is imported.
    Text is large enough to read on a phone; the legend sits below the axes, where it covers no data."""
    try:
        from matplotlib import rc_context
        from matplotlib.figure import Figure
    except ImportError:
        return None
    with rc_context({"font.size": CHART_FONT}):
        fig = Figure(figsize=size)
        axes = fig.subplots()
        draw(axes)
        axes.grid(alpha=0.3)
        handles, labels = axes.get_legend_handles_labels()
        if handles:
            axes.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=columns,
                        frameon=False, fontsize=CHART_FONT - 1)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


# -- the summary: "is it good?" ---------------------------------------------------------------------------------------
READABLE = {
    "fidelity/recall@10": "teacher-neighbour recall@10", "fidelity/spearman": "Spearman of similarities",
    "fidelity/cosine": "cosine to the teacher", "labelled/ndcg@10": "nDCG@10 (labelled queries)",
    "labelled/recall@100": "recall@100 (labelled queries)", "labelled/mrr@10": "MRR@10 (labelled queries)",
    "pseudo_query/mrr@10": "pseudo-query MRR@10", "pseudo_query/self_mrr@10": "pseudo-query MRR@10 (self)",
}
RECALL_MEANS = ("Of the 10 nearest neighbours the teacher finds for a held-out point, the student finds this share "
                "among its own 10 (1.0: the same neighbours).")


def readable(key: str) -> str:
    """A metric, stage or record key in words: ``fidelity/recall@10`` -> "teacher-neighbour recall@10",
    ``rolled_back`` -> "rolled back"."""
    return READABLE.get(key, key.replace("_", " ").replace("/", ": "))


@dataclass(frozen=True)
class Summary:
    """What a user wants first from a run: the quality kept (and what the figure means), bytes before and after,
    the query speed of the student against the teacher's, the verdict, and the next commands. The report's card and
    the end of ``migrate`` print the same :meth:`lines`."""

    quality: str
    meaning: str
    size: str
    speed: str
    verdict: str
    commands: tuple[tuple[str, str], ...]  # (command, what it does)

    def lines(self) -> list[str]:
        return [f"quality   {self.quality}", f"          {self.meaning}", f"bytes     {self.size}",
                f"speed     {self.speed}", f"verdict   {self.verdict}", *self.next_lines()]

    def next_lines(self) -> list[str]:
        """The next commands, one a line (``status`` ends with them too)."""
        return [f"{'next' if i == 0 else '':<10}{command}   # {what}" for i, (command, what) in
                enumerate(self.commands)]


def summarize(run_dir: str | Path) -> Summary:
    """The :class:`Summary` of a run folder (files only, as the page)."""
    return _summary(_read(Path(run_dir)))


def _summary(inp: _Inputs) -> Summary:
    quality, meaning = _quality(inp)
    return Summary(quality=quality, meaning=meaning, size=_size_line(inp.facts), speed=_speed_line(inp),
                   verdict=_verdict(inp), commands=tuple(_next_commands(inp)))


def _quality(inp: _Inputs) -> tuple[str, str]:
    metrics = inp.journal.metrics
    ndcg = metrics.get("labelled/ndcg@10")
    if ndcg is not None:
        teacher = inp.dims.teacher_ndcg_at_10 if inp.dims is not None else None
        if teacher:
            return (f"nDCG@10 {ndcg:.3f} on labelled queries: {ndcg / teacher:.0%} of the teacher's {teacher:.3f}",
                    "nDCG@10 scores the ranking of the judged documents for each labelled query (1.0: ideal).")
        return (f"nDCG@10 {ndcg:.3f} on labelled queries (the teacher's was not measured: give --teacher)",
                "nDCG@10 scores the ranking of the judged documents for each labelled query (1.0: ideal).")
    recall = metrics.get("fidelity/recall@10")
    if recall is None:
        return "not measured yet (the gate measures it)", RECALL_MEANS
    spearman = metrics.get("fidelity/spearman")
    extra = f", Spearman of similarities {spearman:.3f}" if spearman is not None else ""
    return f"teacher-neighbour recall@10 {recall:.3f} on held-out points{extra}", RECALL_MEANS


def _size_line(f: RunFacts) -> str:
    if not f.vector_bytes_before:
        return "not known"
    return (f"{_mb(f.vector_bytes_before)} -> {_mb(f.vector_bytes_after)} of vectors "
            f"({f.vector_bytes_after / f.vector_bytes_before:.0%}; {f.teacher_dim} -> {f.dim} dimensions)")


def _speed_line(inp: _Inputs) -> str:
    f, backend = inp.facts, inp.journal.backend.value
    if not f.encode_per_s:
        return "not measured (the gate measures it in reembed mode)"
    student = f"student {f.encode_per_s:,.0f} queries/s on {backend}"
    if not f.teacher_encode_per_s:
        return f"{student}; the teacher's was not measured (give --teacher)"
    return (f"{student}, teacher {f.teacher_encode_per_s:,.0f} queries/s: "
            f"{f.encode_per_s / f.teacher_encode_per_s:.1f}x the teacher's speed "
            f"({f.encode_texts:,} texts each, this machine)")


def _verdict(inp: _Inputs) -> str:
    j, f = inp.journal, inp.facts
    selection = (inp.distill.selection if inp.distill is not None else None) or j.selection
    kept = ""
    if selection:
        key, chosen, margin = selection["primary_metric"], selection["chosen"], selection.get("margin")
        by = (f", {margin:+.3f} {readable(key)} over the next best" if isinstance(margin, (int, float))
              and not math.isnan(margin) else "")
        kept = f"kept the {readable(chosen)} state{by}; "
    short = _gate_short(j.metrics, f.gate)
    moved = {Stage.SWAPPED: f"swapped: alias {j.alias} -> {j.target}",
             Stage.ROLLED_BACK: f"rolled back: alias {j.alias} -> {j.previous_target}" if j.previous_target
             else f"rolled back: the new alias {j.alias} removed",
             Stage.FINALIZED: f"finalized: {j.target} serves, {j.previous_target or 'nothing'} dropped",
             Stage.VERIFIED: f"verified: {j.target} written, no alias moved"}.get(j.stage)
    if short:
        return f"{kept}not good enough: {short}; nothing was swapped"
    passed = "passed the gate" if j.metrics else "not gated yet"
    return f"{kept}{passed}; {moved or f'stopped at stage {readable(j.stage.value)}'}"


def _gate_short(metrics: dict[str, float], gate: dict[str, float]) -> str:
    """The gate's thresholds a measured metric falls below, in words."""
    if not metrics:
        return ""
    return "; ".join(f"{readable(k)} {metrics[k]:.3f} < {v}" for k, v in gate.items()
                     if k in metrics and metrics[k] < v)


def _store_option(qdrant: str) -> str:
    if qdrant.startswith("embedded:"):
        return f" --path {shlex.quote(qdrant.removeprefix('embedded:'))}"
    if "://" in qdrant:
        return f" --url {shlex.quote(qdrant)}"
    return ""


def _next_commands(inp: _Inputs) -> list[tuple[str, str]]:
    j = inp.journal
    run, at = shlex.quote(str(j.run_dir)), _store_option(inp.facts.qdrant)
    cmd = lambda verb, more="": f"qdrant-distill {verb} {run}{more}"  # noqa: E731
    if j.stage is Stage.SWAPPED and j.previous_target is None:  # the alias was new: nothing to go back to or drop
        return [(cmd("rollback", at), f"remove the new alias {j.alias}"),
                (cmd("finalize", at), "mark the migration final (nothing to drop)")]
    if j.stage is Stage.SWAPPED:
        return [(cmd("rollback", at), f"point {j.alias} back at {j.previous_target}"),
                (cmd("finalize", at), f"drop {j.previous_target} for good")]
    if j.stage is Stage.ROLLED_BACK:
        return [(cmd("swap", at), f"point {j.alias} at {j.target} again"),
                (cmd("abandon", at), f"drop {j.target} and clear the run folder")]
    if j.stage is Stage.FINALIZED:
        return [(cmd("export-edge", f" --out edge{at}"), "write a Qdrant Edge folder of the new collection"),
                (cmd("status"), "the journal")]
    if j.stage is Stage.VERIFIED and not j.alias:
        return [(cmd("status"), f"point readers at {j.target}, or rerun migrate with --new-alias NAME")]
    if _gate_short(j.metrics, inp.facts.gate):
        return [(cmd("status"), "the journal; rerun migrate with more training (--time-budget, --max-steps), "
                 "another --dim or --student, or a lower gate"),
                (cmd("abandon", at), "give it up: clear the run folder")]
    return [(cmd("status"), "where the run stands; rerun the same migrate command to resume"),
            (cmd("abandon", at), "give it up: drop its target and clear the run folder")]


def _card(inp: _Inputs) -> str:
    s = _summary(inp)
    items = [("Quality kept", f"{_e(s.quality)}<br><span class=\"meta\">{_e(s.meaning)}</span>"),
             ("Verdict", _e(s.verdict)), ("Bytes", _e(s.size)), ("Query speed", _e(s.speed)),
             ("Next", "".join(f"<code>{_e(c)}</code><span class=\"meta\">{_e(w)}</span>" for c, w in s.commands))]
    body = "".join(f"<div><dt>{_e(k)}</dt><dd>{v}</dd></div>" for k, v in items)
    return f'<section id="summary" class="card"><h2>Is it good?</h2><dl>{body}</dl></section>'


# -- sections -------------------------------------------------------------------------------------------------------
def _what(inp: _Inputs) -> str:
    j, f = inp.journal, inp.facts
    source = f"{j.source_alias} -> {j.source_collection}" if j.source_alias else j.source_collection
    rows: list[tuple[str, object]] = [
        ("Qdrant", f.qdrant or "-"), ("source", source or f.source), ("target", j.target),
        ("alias", j.alias or "(none)"), ("stage", readable(j.stage.value)), ("mode", f.mode or "-"),
        ("dimension", f"{f.teacher_dim} -> {f.dim}" if f.dim else "-"), ("student", f.student or j.student_path),
        ("backend", j.backend.value), ("points", f"{j.points_written:,} written of {f.points:,}"),
        ("skipped", len(j.skipped_ids)), ("sample", f"{j.sample_size:,} points"), ("run id", j.run_id),
    ]
    rows += [("note", n) for n in f.notes]
    return _section("migrated", "What was migrated", _pairs(rows),
                    "<h3>Stages</h3>", _table(("stage", "done at", "took"), _stage_rows(j)))


def _stage_rows(j: Journal) -> list[tuple[str, str, str]]:
    """Every recorded step in order (a swap after a rollback too), with the time since the one before."""
    steps = [(Stage.PLANNED.value, j.stage_times.get(Stage.PLANNED.value))]
    steps += [(h["stage"], h.get("at")) for h in j.history if h.get("stage")]
    rows, before = [], None
    for stage, at in steps:
        rows.append((readable(stage), _when(at), _seconds(at - before) if at is not None and before is not None
                     else "-"))
        before = at if at is not None else before
    return rows


def _alias_moves(inp: _Inputs) -> str:
    j = inp.journal
    before = j.previous_target or "(no alias)"
    moves = {Stage.SWAPPED.value: f"alias {j.alias}: {before} -> {j.target}",
             Stage.ROLLED_BACK.value: f"alias {j.alias}: {j.target} -> {before}",
             Stage.FINALIZED.value: f"previous collection {j.previous_target or '(none)'} dropped"}
    rows = [(_when(h.get("at")), readable(h["stage"]), moves[h["stage"]]) for h in j.history
            if h.get("stage") in moves]
    if not rows:
        why = "no alias to move (the source is a plain collection)" if not j.alias else "the alias was not moved yet"
        return _section("alias", "Alias moves", _p(why))
    return _section("alias", "Alias moves", _table(("at", "step", "move"), rows))


def _dims(inp: _Inputs) -> str:
    d = inp.dims
    if d is None:
        return _section("dims", "Dimension", _p("No dimension table in this run (qdrant-distill plan --dims writes "
                                                 "one before sampling)."))
    chosen = d.chosen or inp.facts.dim or None

    student = inp.journal.metrics.get("fidelity/recall@10")

    def draw(ax: Any) -> None:
        xs = [r.dim for r in d.rows]
        ax.plot(xs, [r.variance_kept for r in d.rows], "o-", label="PCA variance kept")
        ax.plot(xs, [r.neighbour_recall_at_10 for r in d.rows], "s-", label="PCA recall@10")
        ax.plot(xs, [r.spearman for r in d.rows], "^-", label="PCA Spearman")
        if any(r.ndcg_at_10 is not None for r in d.rows):
            ax.plot(xs, [r.ndcg_at_10 for r in d.rows], "d-", label="PCA nDCG@10")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        if chosen:
            ax.axvline(chosen, color="crimson", lw=1, ls=":", label=f"chosen {chosen}")
        if student is not None and chosen:
            ax.plot([chosen], [student], "*", color="crimson", ms=16, label=f"student recall@10 {student:.3f}")
        if d.recommended != chosen:
            ax.axvline(d.recommended, color="grey", ls="--", label=f"recommended {d.recommended}")
        ax.set_xlabel("dimension")
        ax.set_ylabel("held-out score (0 to 1)")
        ax.set_ylim(min(0.0, *(r.spearman for r in d.rows)), 1.02)

    rows = [(r.dim, r.variance_kept, r.neighbour_recall_at_10, r.spearman, r.ndcg_at_10,
             _mb(r.bytes_collection.get("float32", 0)), "chosen" if r.dim == chosen else
             ("recommended" if r.dim == d.recommended else "")) for r in d.rows]
    table = _table(("dimension", "variance kept", "neighbour recall@10", "Spearman", "nDCG@10", "float32 vectors",
                    ""), rows,
                   marked=lambda i: d.rows[i].dim == chosen)
    note = _p(f"The curves are a PCA of the stored teacher vectors, fitted on {d.sample_size - d.holdout_size:,} "
              f"sampled points and measured on {d.holdout_size:,} held out (of {d.points:,} points, "
              f"{d.teacher_dim} dimensions). Recommended {d.recommended}: {d.reason}")
    if student is not None and chosen:
        pca = next((r.neighbour_recall_at_10 for r in d.rows if r.dim == chosen), None)
        note += _p(f"The star is the student at {chosen}: neighbour recall@10 {student:.3f} on its own holdout"
                   + (f", against {pca:.3f} for the PCA of the teacher at the same size" if pca is not None else "")
                   + ". The student re-encodes text, the PCA only projects the stored vectors.")
    return _section("dims", "Dimension", note, _figure(inp, draw), table)


def _training(inp: _Inputs) -> str:
    r = inp.distill
    if r is None or not r.evaluations:
        return _section("training", "Training", _p("No training in this run (projection-only mode, or not distilled "
                                                   "yet)."))
    evals = r.evaluations
    primary = r.primary_metric
    keys = sorted({k for e in evals for k in e if k != "step"}, key=lambda k: (k != primary, k))
    best = r.best_step
    selection = r.selection
    chosen, candidates = selection.get("chosen", "trained"), selection.get("candidates", {})

    def draw(ax: Any) -> None:
        steps = [e["step"] for e in evals]
        for name in keys:
            ax.plot(steps, [_number(e.get(name)) for e in evals], "o-", ms=3, label=readable(name),
                    lw=2.5 if name == primary else 1.2)
        ax.axvline(best, color="crimson", lw=1.5, ls=":", label=f"best evaluated: step {best}")
        kept = next((e for e in evals if e["step"] == best), None)
        if kept is not None and primary in kept:
            ax.plot([best], [_number(kept[primary])], "*", color="crimson", ms=14)
        if chosen not in ("trained", "untrained") and primary in candidates.get(chosen, {}):
            ax.axhline(_number(candidates[chosen][primary]), color="crimson", ls="--", lw=1, label=f"kept: {chosen}")
        ax.set_xlabel("training step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("held-out score")

    rows = [(int(e["step"]), *(e.get(k, math.nan) for k in keys)) for e in evals]
    stop = ", stopped by its time budget" if r.out_of_time else (", stopped early" if r.stopped_early else "")
    facts = _p(f"{r.kind.value} student from {r.base_model}, recipe {r.recipe or 'as configured'}: {r.steps} steps "
               f"({r.epochs_run:.2f} epochs{stop}, {_seconds(r.wall_time_s)}) on "
               f"{r.train_size:,} pairs, {r.holdout_size:,} held out; best evaluated state at step "
               f"{best}; the holdout kept the {chosen} state.")
    table = _table(("step", *map(readable, keys)), rows, marked=lambda i: evals[i]["step"] == best)
    return _section("training", "Training", facts, _figure(inp, draw, columns=1), table)


def _baselines(inp: _Inputs) -> str:
    r, j = inp.distill, inp.journal
    selection = (r.selection if r is not None else None) or j.selection
    if not selection:
        return _section("baselines", "Baselines", _p("No baselines were compared in this run."))
    key, chosen = selection["primary_metric"], selection["chosen"]
    candidates: dict[str, dict[str, float]] = dict(selection["candidates"])
    if r is not None and r.projection_metrics:
        candidates.setdefault("PCA of the teacher (the target)", r.projection_metrics)
    names = list(candidates)
    keys = sorted({k for c in candidates.values() for k in c}, key=lambda k: (k != key, k))
    rows = [(readable(n) + (" (kept)" if n == chosen else ""), *(candidates[n].get(k, math.nan) for k in keys))
            for n in names]
    margin = selection.get("margin")
    won = (f"won by {margin:+.3f}" if isinstance(margin, (int, float)) and not math.isnan(margin)
           else "was the only one measured")
    return _section("baselines", "Baselines",
                    _p(f"The holdout compared these states by {readable(key)}; the {readable(chosen)} state {won}."),
                    _table(("state", *map(readable, keys)), rows, marked=lambda i: names[i] == chosen))


def _backend(inp: _Inputs) -> str:
    j, m, f = inp.journal, inp.manifest, inp.facts
    thresholds = f.gate
    rows = [(readable(k), v, thresholds.get(k), ("pass" if v >= thresholds[k] else "below") if k in thresholds else "")
            for k, v in sorted(j.metrics.items())]
    parts = [_p(f"The student runs on {j.backend.value}. Holdout metrics on it, as the gate judged them:"),
             _table(("metric", "value", "gate", ""), rows)]
    speed: list[tuple[str, object]] = []
    if f.encode_per_s:
        speed.append((f"student on {j.backend.value}", f"{f.encode_per_s:,.0f} queries/s ({f.encode_texts:,} texts)"))
    if f.teacher_encode_per_s:
        speed.append(("teacher", f"{f.teacher_encode_per_s:,.0f} queries/s (the same texts)"))
    reembed = _seconds_between(j, Stage.CREATED, Stage.REEMBEDDED)
    if reembed and j.points_written:
        speed.append(("re-embed", f"{j.points_written / reembed:,.0f} points/s ({_seconds(reembed)})"))
    if speed:
        parts += ["<h3>Speed</h3>", _pairs(speed)]
    if m is not None and m.checks:
        checks = [(b.value, m.files.get(b, "-"), c.cosine_mean, c.cosine_min, c.metrics.get("fidelity/recall@10"),
                   "used" if b == j.backend else ("no: " + c.reason if c.reason else ""))
                  for b, c in m.checks.items()]
        parts += ["<h3>Exported formats</h3>",
                  _p("Each format against the torch model it came from (cosine of the same texts) and on the holdout."),
                  _table(("format", "file", "cosine mean", "cosine min", "recall@10", "used"), checks,
                         marked=lambda i: list(m.checks)[i] == j.backend)]
    return _section("backend", "Chosen backend", *parts)


def _seconds_between(j: Journal, start: Stage, end: Stage) -> float | None:
    a, b = j.stage_times.get(start.value), j.stage_times.get(end.value)
    return b - a if a is not None and b is not None else None


def _bytes(inp: _Inputs) -> str:
    f = inp.facts
    if not f.vector_bytes_before:
        return _section("bytes", "Bytes", _p("Not known (this run's report.json holds no plan figures)."))
    ratio = f.vector_bytes_after / f.vector_bytes_before

    def draw(ax: Any) -> None:
        ax.barh(["after", "before"], [f.vector_bytes_after / 1e6, f.vector_bytes_before / 1e6],
                color=["seagreen", "slategrey"])
        ax.set_xlabel("vector bytes (MB)")

    rows = [("before", f"{_mb(f.vector_bytes_before)} ({f.teacher_dim} dimensions)"),
            ("after", f"{_mb(f.vector_bytes_after)} ({f.dim} dimensions)"), ("after / before", f"{ratio:.0%}")]
    return _section("bytes", "Bytes", _figure(inp, draw, size=(6.4, 1.8)), _pairs(rows))


def _verify(inp: _Inputs) -> str:
    j = inp.journal
    parts = []
    if j.verify:
        parts += ["<h3>Verify</h3>", _pairs(sorted((readable(k), _plain(v)) for k, v in j.verify.items()))]
    if j.catch_up:
        parts += ["<h3>Catch-up</h3>", _p("Writes made to the source during the re-embed, reconciled before the swap."),
                  _pairs(sorted((readable(k), v) for k, v in j.catch_up.items()))]
    return _section("verify", "Verify and catch-up", *(parts or [_p("Not verified yet.")]))


def _plain(value: object) -> object:
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value, default=str)


def _examples(inp: _Inputs) -> str:
    examples = inp.facts.examples
    if not examples:
        return _section("examples", "Held-out examples", _p("No examples recorded (they are taken at the gate)."))
    parts = [_p("Points the student never trained on, with their nearest neighbours among the sample: by the stored "
                "teacher vectors, and as the new collection answers the text. Neighbours both found are marked.")]
    for ex in examples:
        shared = {n.id for n in ex.teacher} & {n.id for n in ex.student}
        rows = [(_neighbour(t), _neighbour(s)) for t, s in zip(ex.teacher, ex.student)]
        columns = list(zip(ex.teacher, ex.student))
        parts += [f'<div class="example"><p class="query">{_e(_cut(ex.text))} <span class="id">(id {_e(ex.id)})</span>'
                  "</p>", _table((f"teacher ({inp.facts.teacher_dim or '?'}-d)", f"student ({inp.facts.dim or '?'}-d)"),
                                 rows, cls="neighbours",
                                 cell_marked=lambda i, c: columns[i][c].id in shared), "</div>"]
    return _section("examples", "Held-out examples", *parts)


def _neighbour(n: Neighbour) -> str:
    return f"{n.score:.3f}  {_cut(n.text)}"


# -- the page -------------------------------------------------------------------------------------------------------
_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1d1d1f;
background:#fff;padding:0 1rem;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem;overflow-wrap:anywhere}h2{border-bottom:2px solid #dc244c;
padding-bottom:.2rem;margin-top:2.2rem}h3{margin-bottom:.3rem}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}th{background:#f3f3f5}
td{overflow-wrap:break-word}table.pairs td:first-child{white-space:nowrap}
tr.mark td,td.mark{background:#fdecef;font-weight:600}table.neighbours{width:100%}table.neighbours td{width:50%}
.note{background:#fff8e1;border-left:4px solid #f5b800;padding:.5rem .8rem}.query{font-weight:600;margin-bottom:0}
.id,.meta{color:#666;font-weight:400}.meta{overflow-wrap:anywhere}
figure.chart{margin:.6rem 0;overflow-x:auto}figure.chart svg{width:100%;max-width:680px;height:auto;
display:block}
nav{display:flex;flex-wrap:wrap;gap:.2rem .8rem}
.card{border:2px solid #dc244c;border-radius:10px;padding:.2rem 1.2rem 1rem;margin-top:1rem;background:#fffafb}
.card h2{border:0;margin-top:.6rem}
.card dl{margin:0;display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:.8rem 2rem}
.card dl>div{min-width:0}
.card dt{font-weight:700;color:#dc244c;text-transform:uppercase;font-size:.8rem;letter-spacing:.04em}
.card dd{margin:.2rem 0 0;font-size:1.05rem;overflow-wrap:anywhere}
.card dl>div:nth-child(5){grid-column:1/-1}
.card code{display:block;background:#f3f3f5;padding:.3rem .5rem;margin:.3rem 0 .1rem;font-size:.85rem;
white-space:pre-wrap;overflow-wrap:anywhere}
@media (max-width:640px){body{margin:1rem auto;padding:0 .6rem}h1{font-size:1.25rem}
.card{padding:.2rem .8rem .8rem}.card dl{grid-template-columns:minmax(0,1fr)}table{font-size:.8rem}
th,td{padding:.25rem .4rem}}
"""
_SECTIONS = (("summary", "summary"), ("migrated", "migrated"), ("alias", "alias moves"), ("dims", "dimension"),
             ("training", "training"), ("baselines", "baselines"), ("backend", "backend"), ("bytes", "bytes"),
             ("verify", "verify"), ("examples", "examples"))


def _figure(inp: _Inputs, draw: Draw, *, size: tuple[float, float] = CHART_SIZE, columns: int = 2) -> str:
    """A chart of the page, or nothing (the page then says once that matplotlib is missing)."""
    svg = _chart(draw, size=size, columns=columns)
    if svg is None:
        inp.charts_missing = True
        return ""
    return f'<figure class="chart">{svg}</figure>'


def render_report(run_dir: str | Path) -> str:
    """The page of a run folder: every section, charts inline (or a note that matplotlib is missing)."""
    inp = _read(Path(run_dir))
    body = "".join(section(inp) for section in (_card, _what, _alias_moves, _dims, _training, _baselines, _backend,
                                                 _bytes, _verify, _examples))
    j = inp.journal
    note = _p(NO_CHARTS, "note") if inp.charts_missing else ""
    nav = "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in _SECTIONS) + "</nav>"
    title = f"qdrant-distill: {j.source_collection} -> {j.target}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1><p class=\"meta\">stage {_e(readable(j.stage.value))} · run {_e(j.run_id)} · "
            "written "
            f"{_e(_when(time.time()))} · {_e(j.path)}</p>{nav}{note}{body}</body></html>\n")
