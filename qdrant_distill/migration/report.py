"""The run's report: one self-contained HTML page (``report.html`` in the run folder) that people look at.

It reads files only: the journal, ``distill.json``, the export's manifest, ``dims.json`` (when ``plan --dims`` wrote
one) and ``report.json`` (:class:`RunFacts`: what only the migration knows, the plan's figures and a few held-out
examples with their neighbours). It loads no model and never imports torch, so ``status``, ``swap``, ``rollback`` and
``finalize`` refresh it cheaply. Charts are SVG drawn by matplotlib (the ``report`` extra) and inlined; without it the
page shows the same figures as tables, with a note. Every string from a run is HTML-escaped.

Sections: what was migrated, alias moves with times, the dimension chart (the chosen size marked), the training
curve (holdout metrics at each evaluation, the kept state marked), the baselines the holdout compared and the
winner, quality and speed of the chosen backend, bytes before and after, verify and catch-up, held-out examples.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import logging
import math
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

__all__ = ["Example", "Neighbour", "RunFacts", "qdrant_address", "refresh_report", "render_report", "write_report"]

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
    encode_per_s: float | None = None  # texts a second the chosen backend encoded (the examples' documents)
    encode_texts: int = 0

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
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _number(value: object) -> float:
    """A metric read from JSON as a float (NaN is written as null)."""
    return float(value) if isinstance(value, (int, float)) else math.nan


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)) if at else "-"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


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
    return f'<table class="{_e(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _pairs(rows: Iterable[tuple[str, object]]) -> str:
    return _table(("item", "value"), rows, cls="pairs")


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{_e(anchor)}"><h2>{_e(title)}</h2>{"".join(parts)}</section>'


def _p(text: str, cls: str = "") -> str:
    return f'<p class="{_e(cls)}">{_e(text)}</p>' if cls else f"<p>{_e(text)}</p>"


# -- charts (matplotlib, optional) ----------------------------------------------------------------------------------
Draw = Callable[[Any], None]


def _chart(draw: Draw, *, size: tuple[float, float] = (7.5, 3.4)) -> str | None:
    """``draw(axes)`` as an inline ``<svg>`` element; None without matplotlib. The only place it is imported."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=size)
    axes = fig.subplots()
    draw(axes)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


# -- sections -------------------------------------------------------------------------------------------------------
def _what(inp: _Inputs) -> str:
    j, f = inp.journal, inp.facts
    source = f"{j.source_alias} -> {j.source_collection}" if j.source_alias else j.source_collection
    rows: list[tuple[str, object]] = [
        ("Qdrant", f.qdrant or "-"), ("source", source or f.source), ("target", j.target),
        ("alias", j.alias or "(none)"), ("stage", j.stage.value), ("mode", f.mode or "-"),
        ("dimension", f"{f.teacher_dim} -> {f.dim}" if f.dim else "-"), ("student", f.student or j.student_path),
        ("backend", j.backend.value), ("points", f"{j.points_written:,} written of {f.points:,}"),
        ("skipped", len(j.skipped_ids)), ("sample", f"{j.sample_size:,} points"), ("run id", j.run_id),
    ]
    rows += [("note", n) for n in f.notes]
    return _section("migrated", "What was migrated", _pairs(rows),
                    "<h3>Stages</h3>", _table(("stage", "done at", "seconds"), _stage_rows(j)))


def _stage_rows(j: Journal) -> list[tuple[str, str, float | None]]:
    """Every recorded step in order (a swap after a rollback too), with the seconds since the one before."""
    steps = [(Stage.PLANNED.value, j.stage_times.get(Stage.PLANNED.value))]
    steps += [(h["stage"], h.get("at")) for h in j.history if h.get("stage")]
    rows, before = [], None
    for stage, at in steps:
        rows.append((stage, _when(at), at - before if at is not None and before is not None else None))
        before = at if at is not None else before
    return rows


def _alias_moves(inp: _Inputs) -> str:
    j = inp.journal
    before = j.previous_target or "(no alias)"
    moves = {Stage.SWAPPED.value: f"alias {j.alias}: {before} -> {j.target}",
             Stage.ROLLED_BACK.value: f"alias {j.alias}: {j.target} -> {before}",
             Stage.FINALIZED.value: f"previous collection {j.previous_target or '(none)'} dropped"}
    rows = [(_when(h.get("at")), h["stage"], moves[h["stage"]]) for h in j.history if h.get("stage") in moves]
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

    def draw(ax: Any) -> None:
        xs = [r.dim for r in d.rows]
        ax.plot(xs, [r.variance_kept for r in d.rows], "o-", label="variance kept")
        ax.plot(xs, [r.neighbour_recall_at_10 for r in d.rows], "s-", label="neighbour recall@10")
        ax.plot(xs, [r.spearman for r in d.rows], "^-", label="Spearman")
        if any(r.ndcg_at_10 is not None for r in d.rows):
            ax.plot(xs, [r.ndcg_at_10 for r in d.rows], "d-", label="nDCG@10")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        if chosen:
            ax.axvline(chosen, color="crimson", lw=2, label=f"chosen {chosen}")
        if d.recommended != chosen:
            ax.axvline(d.recommended, color="grey", ls="--", label=f"recommended {d.recommended}")
        ax.set_xlabel("dimension")
        ax.set_ylim(min(0.0, *(r.spearman for r in d.rows)), 1.02)

    rows = [(r.dim, r.variance_kept, r.neighbour_recall_at_10, r.spearman, r.ndcg_at_10,
             _mb(r.bytes_collection.get("float32", 0)), "chosen" if r.dim == chosen else
             ("recommended" if r.dim == d.recommended else "")) for r in d.rows]
    table = _table(("dim", "variance kept", "recall@10", "Spearman", "nDCG@10", "float32 vectors", ""), rows,
                   marked=lambda i: d.rows[i].dim == chosen)
    note = _p(f"{d.points:,} points of {d.teacher_dim} dimensions; sample {d.sample_size:,}, holdout "
              f"{d.holdout_size:,}. Recommended {d.recommended}: {d.reason}")
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
            ax.plot(steps, [_number(e.get(name)) for e in evals], "o-", ms=3, label=name,
                    lw=2.5 if name == primary else 1.2)
        ax.axvline(best, color="crimson", lw=1.5, ls=":", label=f"best evaluated: step {best}")
        kept = next((e for e in evals if e["step"] == best), None)
        if kept is not None and primary in kept:
            ax.plot([best], [_number(kept[primary])], "*", color="crimson", ms=14)
        if chosen not in ("trained", "untrained") and primary in candidates.get(chosen, {}):
            ax.axhline(_number(candidates[chosen][primary]), color="crimson", ls="--", lw=1, label=f"kept: {chosen}")
        ax.set_xlabel("training step")
        ax.set_ylabel("holdout")

    rows = [(int(e["step"]), *(e.get(k, math.nan) for k in keys)) for e in evals]
    stop = ", stopped by its time budget" if r.out_of_time else (", stopped early" if r.stopped_early else "")
    facts = _p(f"{r.kind.value} student from {r.base_model}, recipe {r.recipe or 'as configured'}: {r.steps} steps "
               f"({r.epochs_run:.2f} epochs{stop}, {r.wall_time_s:,.0f} s) on "
               f"{r.train_size:,} pairs, {r.holdout_size:,} held out; best evaluated state at step "
               f"{best}; the holdout kept the {chosen} state.")
    table = _table(("step", *keys), rows, marked=lambda i: evals[i]["step"] == best)
    return _section("training", "Training", facts, _figure(inp, draw), table)


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
    rows = [(n + (" (kept)" if n == chosen else ""), *(candidates[n].get(k, math.nan) for k in keys)) for n in names]
    margin = selection.get("margin")
    won = (f"won by {margin:+.4f}" if isinstance(margin, (int, float)) and not math.isnan(margin)
           else "was the only one measured")
    return _section("baselines", "Baselines", _p(f"The holdout compared these states by {key}; the {chosen} state {won}."),
                    _table(("state", *keys), rows, marked=lambda i: names[i] == chosen))


def _backend(inp: _Inputs) -> str:
    j, m, f = inp.journal, inp.manifest, inp.facts
    thresholds = f.gate
    rows = [(k, v, thresholds.get(k), ("pass" if v >= thresholds[k] else "below") if k in thresholds else "")
            for k, v in sorted(j.metrics.items())]
    parts = [_p(f"The student runs on {j.backend.value}. Holdout metrics on it, as the gate judged them:"),
             _table(("metric", "value", "gate", ""), rows)]
    speed: list[tuple[str, object]] = []
    if f.encode_per_s:
        speed.append((f"encode on {j.backend.value}", f"{f.encode_per_s:,.1f} texts/s ({f.encode_texts:,} texts)"))
    reembed = _seconds_between(j, Stage.CREATED, Stage.REEMBEDDED)
    if reembed and j.points_written:
        speed.append(("re-embed", f"{j.points_written / reembed:,.1f} points/s ({reembed:,.1f} s)"))
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
            ("after", f"{_mb(f.vector_bytes_after)} ({f.dim} dimensions)"), ("after / before", f"{ratio:.3f}")]
    return _section("bytes", "Bytes", _figure(inp, draw, size=(7.5, 1.6)), _pairs(rows))


def _verify(inp: _Inputs) -> str:
    j = inp.journal
    parts = []
    if j.verify:
        parts += ["<h3>Verify</h3>", _pairs(sorted((k, _plain(v)) for k, v in j.verify.items()))]
    if j.catch_up:
        parts += ["<h3>Catch-up</h3>", _p("Writes made to the source during the re-embed, reconciled before the swap."),
                  _pairs(sorted(j.catch_up.items()))]
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
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1d1d1f;
background:#fff;padding:0 1rem}h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #dc244c;
padding-bottom:.2rem;margin-top:2.2rem}h3{margin-bottom:.3rem}table{border-collapse:collapse;margin:.6rem 0;
font-size:.9rem}th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}th{background:#f3f3f5}
tr.mark td,td.mark{background:#fdecef;font-weight:600}table.neighbours{width:100%}table.neighbours td{width:50%}
.note{background:#fff8e1;border-left:4px solid #f5b800;padding:.5rem .8rem}.query{font-weight:600;margin-bottom:0}
.id,.meta{color:#666;font-weight:400}svg{max-width:100%;height:auto;display:block}nav a{margin-right:.8rem}
"""
_SECTIONS = (("migrated", "migrated"), ("alias", "alias moves"), ("dims", "dimension"), ("training", "training"),
             ("baselines", "baselines"), ("backend", "backend"), ("bytes", "bytes"), ("verify", "verify"),
             ("examples", "examples"))


def _figure(inp: _Inputs, draw: Draw, *, size: tuple[float, float] = (7.5, 3.4)) -> str:
    """A chart of the page, or nothing (the page then says once that matplotlib is missing)."""
    svg = _chart(draw, size=size)
    if svg is None:
        inp.charts_missing = True
        return ""
    return f'<figure class="chart">{svg}</figure>'


def render_report(run_dir: str | Path) -> str:
    """The page of a run folder: every section, charts inline (or a note that matplotlib is missing)."""
    inp = _read(Path(run_dir))
    body = "".join(section(inp) for section in (_what, _alias_moves, _dims, _training, _baselines, _backend, _bytes,
                                                 _verify, _examples))
    j = inp.journal
    note = _p(NO_CHARTS, "note") if inp.charts_missing else ""
    nav = "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in _SECTIONS) + "</nav>"
    title = f"qdrant-distill: {j.source_collection} -> {j.target}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1><p class=\"meta\">stage {_e(j.stage.value)} · run {_e(j.run_id)} · written "
            f"{_e(_when(time.time()))} · {_e(j.path)}</p>{nav}{note}{body}</body></html>\n")
