"""The ``qdrant-distill`` command line: plan | migrate | status | swap | rollback | finalize | abandon | repoint |
serve | evaluate | export | export-edge | demo.

Each command loads its configuration, calls one library function and renders the result. Results go to stdout (a
table, or JSON with ``--json``); logs and progress bars go to stderr. Expected failures print one red line and exit 1;
``--debug`` shows the traceback.

Every option is a typer parameter of its command (shared ones are the ``Annotated`` aliases below; plan and migrate
share theirs through :func:`migration_options`, declared once), and plain code maps it to the configuration field it
sets: ``_migration_overrides`` and its group helpers for plan and migrate, ``_qdrant_overrides`` for the connection.
"""


import functools
import inspect
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from qdrant_distill.connectors.base import DEFAULT_TEXT_FIELD
from qdrant_distill.connectors.settings import DEFAULT_PATH
from qdrant_distill.distillation.config import DistillConfig, StudentKind
from qdrant_distill.errors import DistillError
from qdrant_distill.inference.formats import ExportChoice
from qdrant_distill.migration.config import (
    DEFAULT_RUNS_DIR,
    Engine,
    GateConfig,
    MigrationConfig,
    MissingTextPolicy,
    Mode,
    RayConfig,
)
from qdrant_distill.migration.config import given as _given
from qdrant_distill.query.serve import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_INPUT_BYTES,
    DEFAULT_MAX_INPUTS,
)
from qdrant_distill.redact import redact_logs, redact_text

app = typer.Typer(name="qdrant-distill", add_completion=False, no_args_is_help=True,
                  pretty_exceptions_show_locals=False,  # a crash's locals would show keys and URLs as given
                  help="Distil a smaller embedding model from a Qdrant collection's stored vectors, re-embed, swap.")
out = Console()
err = Console(stderr=True)

# -- shared options ---------------------------------------------------------------------------------------------------
# Every option's help ends with "[default: ...]": typer's show_default, the value read from the configuration models
# (their one home) or, where the default is worked out, in words. A flag is off unless given.
_MIGRATION, _STUDENT, _GATE, _RAY = (MigrationConfig.model_fields, DistillConfig.model_fields,
                                     GateConfig.model_fields, RayConfig.model_fields)


def _default(fields: dict[str, Any], name: str) -> str:
    value = fields[name].default
    return "none" if value is None else str(getattr(value, "value", value))


def _option(*names: str, shows: str, help: str, **more: Any) -> Any:
    """``typer.Option`` whose help ends with ``[default: shows]`` (escaped: rich markup would swallow the brackets);
    the option's own default stays None, so a config file or the environment still decides."""
    from rich.markup import escape

    return typer.Option(*names, help=f"{help} {escape(f'[default: {shows}]')}", **more)


CONNECTION, SOURCE, STUDENT, GATE, REEMBED = ("Qdrant connection", "Source and target", "Student and training",
                                              "Quality gate", "Re-embed")
Url = Annotated[Optional[str], _option("--url", envvar="QDRANT_URL", rich_help_panel=CONNECTION,
                                            shows="the embedded store at --path", help="Qdrant server URL")]
ApiKey = Annotated[Optional[str], _option("--api-key", envvar="QDRANT_API_KEY", shows="none",
                                               rich_help_panel=CONNECTION,
                                               help="API key (prefer the QDRANT_API_KEY variable)")]
DbPath = Annotated[Optional[str], _option("--path", shows=DEFAULT_PATH, rich_help_panel=CONNECTION,
                                               help="embedded Qdrant folder (when no --url)")]
Grpc = Annotated[bool, typer.Option("--grpc", rich_help_panel=CONNECTION, help="prefer gRPC")]
ConfigFile = Annotated[Optional[Path], _option("--config", shows="none",
                                                    help="TOML, YAML or JSON config file")]
Debug = Annotated[bool, typer.Option("--debug", help="show tracebacks and debug logs")]
AsJson = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
RunDir = Annotated[Path, typer.Argument(help="the migration's run folder (holds journal.json)")]
Confirm = Annotated[bool, typer.Option("--yes", "-y", help="confirm dropping")]

# -- migration options (plan and migrate) -----------------------------------------------------------------------------
SourceAlias = Annotated[Optional[str], _option(
    "--alias", rich_help_panel=SOURCE, shows="none: give --alias or --collection",
    help="source alias (swapped in place)")]
SourceCollection = Annotated[Optional[str], _option(
    "--collection", rich_help_panel=SOURCE, shows="none", help="source plain collection (no alias to swap)")]
NewAlias = Annotated[Optional[str], _option(
    "--new-alias", rich_help_panel=SOURCE, shows="none: readers are pointed at the target by hand",
    help="with --collection: alias to create or move to the new collection")]
Target = Annotated[Optional[str], _option("--target", rich_help_panel=SOURCE,
                                               shows="<source collection>_distilled<dim>",
                                               help="new collection name")]
TextField = Annotated[Optional[str], _option("--text-field", rich_help_panel=SOURCE,
                                                  shows=DEFAULT_TEXT_FIELD, help="payload key with the text")]
TextTemplate = Annotated[Optional[str], _option("--text-template", rich_help_panel=SOURCE, shows="none",
                                                     help='instead of --text-field, e.g. "{title} {text}"')]
VectorName = Annotated[Optional[str], _option("--vector-name", rich_help_panel=SOURCE,
                                                   shows="the collection's only vector",
                                                   help="the teacher vector, for named vectors")]
Dim = Annotated[Optional[int], _option("--dim", rich_help_panel=SOURCE, shows=_default(_MIGRATION, "dim"),
                                            help="target dimension")]
ModeChoice = Annotated[Optional[Mode], _option(
    "--mode", rich_help_panel=STUDENT, shows=_default(_MIGRATION, "mode"),
    help="reembed: the student encodes documents and queries; project: stored vectors projected, the student "
    "encodes queries; projection-only: the teacher + PCA encodes queries")]
Student = Annotated[Optional[str], _option("--student", rich_help_panel=STUDENT,
                                                shows=_default(_STUDENT, "base_model"),
                                                help="student body: model name or path")]
StudentKindChoice = Annotated[Optional[StudentKind], _option(
    "--student-kind", rich_help_panel=STUDENT, shows=_default(_STUDENT, "kind"), help="what the student is")]
Teacher = Annotated[Optional[str], _option(
    "--teacher", rich_help_panel=STUDENT, shows="none",
    help="the model the stored vectors came from (optional): checked against them in plan")]
LabelQueries = Annotated[Optional[int], _option(
    "--label-queries", rich_help_panel=STUDENT, shows="0",
    help="query-like texts cut from the sample for the teacher to label (needs --teacher)")]
NoTeacherCheck = Annotated[bool, typer.Option(
    "--no-teacher-check", rich_help_panel=STUDENT, help="do not compare the teacher's vectors with the stored ones")]
EmbeddingsApiKey = Annotated[Optional[str], _option(
    "--embeddings-api-key", envvar="QDRANT_DISTILL_EMBEDDINGS_API_KEY", shows="none",
    rich_help_panel=STUDENT,
    help="API key of an HTTP teacher (prefer the QDRANT_DISTILL_EMBEDDINGS_API_KEY variable)")]
SampleSize = Annotated[Optional[int], _option(
    "--sample-size", rich_help_panel=STUDENT,
    shows=f"{_default(_MIGRATION, 'sample_size')}, or the whole collection when smaller",
    help="points sampled for training")]
Epochs = Annotated[Optional[int], _option("--epochs", rich_help_panel=STUDENT, shows="the recipe's",
                                               help="training epochs")]
MaxSteps = Annotated[Optional[int], _option("--max-steps", rich_help_panel=STUDENT,
                                                 shows="the recipe's", help="training step budget")]
KeepLayers = Annotated[Optional[int], _option("--keep-layers", rich_help_panel=STUDENT,
                                                   shows="a third of the teacher's, at least 2",
                                                   help="pruned student: teacher layers kept")]
ExportFormat = Annotated[Optional[ExportChoice], _option(
    "--export", rich_help_panel=STUDENT, shows=_default(_STUDENT, "export"),
    help="export the student for onnxruntime (onnx-int8 keeps fp32 as the fallback)")]
TimeBudget = Annotated[Optional[float], _option(
    "--time-budget", rich_help_panel=STUDENT, shows="the recipe's",
    help="seconds of training at most; the best state so far is kept")]
MinRecall = Annotated[Optional[float], _option("--min-recall", rich_help_panel=GATE,
                                                    shows=_default(_GATE, "min_recall_at_10"),
                                                    help="teacher-neighbour recall@10 on held-out points")]
MinSpearman = Annotated[Optional[float], _option("--min-spearman", rich_help_panel=GATE,
                                                      shows=_default(_GATE, "min_spearman"),
                                                      help="Spearman of similarities, student against teacher")]
MinNdcg = Annotated[Optional[float], _option("--min-ndcg", rich_help_panel=GATE, shows="none",
                                                  help="nDCG@10 on --queries")]
Queries = Annotated[Optional[str], _option("--queries", rich_help_panel=GATE, shows="none",
                                                help="labelled BEIR folder for the gate")]
MissingText = Annotated[Optional[MissingTextPolicy], _option(
    "--missing-text", rich_help_panel=REEMBED, shows=_default(_MIGRATION, "missing_text"),
    help="a point without text: stop, skip it, or give it the projection of its stored vector")]
PageSize = Annotated[Optional[int], _option("--page-size", rich_help_panel=REEMBED,
                                                 shows=_default(_MIGRATION, "page_size"),
                                                 help="points per page")]
JournalDir = Annotated[Optional[str], _option(
    "--run-dir", rich_help_panel=REEMBED, shows=f"{DEFAULT_RUNS_DIR}/<source>-<dim>",
    help="the run folder: journal, sample, student, report")]
EngineChoice = Annotated[Optional[Engine], _option("--engine", rich_help_panel=REEMBED,
                                                        shows=_default(_MIGRATION, "engine"),
                                                        help="what runs the re-embed")]
RayAddress = Annotated[Optional[str], _option(
    "--ray-address", envvar="RAY_ADDRESS", rich_help_panel=REEMBED, shows="a local cluster",
    help="ray: an existing cluster")]
Workers = Annotated[Optional[int], _option("--workers", rich_help_panel=REEMBED,
                                                shows=_default(_RAY, "workers"), help="ray: encoder actors")]
GpusPerWorker = Annotated[Optional[float], _option("--gpus-per-worker", rich_help_panel=REEMBED,
                                                        shows=_default(_RAY, "gpus_per_worker"),
                                                        help="ray: GPUs per actor")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="no progress bars")]

# every option plan and migrate share, declared once: name -> (option, default)
MIGRATION_OPTIONS: dict[str, tuple[Any, Any]] = {
    "alias": (SourceAlias, None), "collection": (SourceCollection, None), "new_alias": (NewAlias, None),
    "target": (Target, None), "text_field": (TextField, None), "text_template": (TextTemplate, None),
    "vector_name": (VectorName, None), "dim": (Dim, None), "mode": (ModeChoice, None), "student": (Student, None),
    "student_kind": (StudentKindChoice, None), "teacher": (Teacher, None), "label_queries": (LabelQueries, None),
    "no_teacher_check": (NoTeacherCheck, False), "embeddings_api_key": (EmbeddingsApiKey, None),
    "sample_size": (SampleSize, None), "epochs": (Epochs, None), "max_steps": (MaxSteps, None),
    "time_budget": (TimeBudget, None), "keep_layers": (KeepLayers, None), "export": (ExportFormat, None),
    "min_recall": (MinRecall, None), "min_spearman": (MinSpearman, None), "min_ndcg": (MinNdcg, None),
    "queries": (Queries, None), "missing_text": (MissingText, None), "page_size": (PageSize, None),
    "run_dir": (JournalDir, None), "engine": (EngineChoice, None), "ray_address": (RayAddress, None),
    "workers": (Workers, None), "gpus_per_worker": (GpusPerWorker, None), "no_progress": (NoProgress, False),
    "url": (Url, None), "api_key": (ApiKey, None), "path": (DbPath, None), "grpc": (Grpc, False),
}


def migration_options(command: Any) -> Any:
    """Give ``command`` the options of :data:`MIGRATION_OPTIONS` before its own; it receives them as one mapping,
    its ``options`` parameter."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    own = [p.replace(kind=keyword) for p in inspect.signature(command).parameters.values() if p.name != "options"]
    shared = [inspect.Parameter(name, keyword, default=default, annotation=option)
              for name, (option, default) in MIGRATION_OPTIONS.items()]

    @functools.wraps(command)
    def with_options(**given: Any) -> Any:
        options = {name: given.pop(name) for name in MIGRATION_OPTIONS}
        return command(options=options, **given)

    with_options.__signature__ = inspect.Signature([*shared, *own])  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in [*shared, *own]}
    return with_options


def _show_version(value: bool) -> None:
    if value:
        from qdrant_distill._version import __version__

        out.print(f"qdrant-distill {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True, help="print the version and exit")] = False) -> None:
    """Distil a smaller embedding model from a Qdrant collection's stored vectors, re-embed, swap."""


class _OneRetryLine(logging.Filter):
    """The retries of a failing call as one line: the first says what failed and that it is retried (reworded on a
    copy of the record by :func:`_short_retry`; other handlers see the record as logged); the others are dropped
    (--debug keeps every one). A record that is not a retry starts the count again."""

    def __init__(self) -> None:
        super().__init__()
        self.retrying = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Retrying "):
            self.retrying = False
            return True
        if self.retrying:
            return False
        self.retrying = True
        return True


def _short_retry(record: logging.LogRecord) -> logging.LogRecord:
    message = record.getMessage()
    if not message.startswith("Retrying "):
        return record
    why = message.split(" raised ")[-1].rstrip(".")
    return logging.makeLogRecord({**record.__dict__, "msg": "%s; retrying (the error follows if it persists)",
                                  "args": (why,)})


def _logging(debug: bool) -> None:
    import warnings

    from rich.logging import RichHandler

    class Handler(RichHandler):
        def emit(self, record: logging.LogRecord) -> None:
            super().emit(record if debug else _short_retry(record))

    handler = Handler(console=err, show_path=False, show_time=False)
    if not debug:
        handler.addFilter(_OneRetryLine())
        # qdrant-client warns when its version check cannot reach the server: the connection's own error says so
        warnings.filterwarnings("ignore", message="Failed to obtain server version", category=UserWarning)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    redact_logs()  # httpx and qdrant-client log the URLs they call
    for name in ("qdrant_distill", "connectors"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.INFO)


@contextmanager
def _expected_failures(debug: bool) -> Iterator[None]:
    """Set up logging; turn expected failures into one red line and exit code 1 (traceback with --debug)."""
    _logging(debug)
    try:
        yield
    except DistillError as exc:
        if debug:
            _print_traceback(exc)
        from rich.markup import (
            escape,  # a message may hold brackets: pip install 'qdrant-distill[ray]'
        )

        err.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))}", markup=True, highlight=False,
                  soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]; rerun the same command to resume")
        raise typer.Exit(130) from None


def _print_traceback(exc: BaseException) -> None:
    """The traceback of ``exc`` and the exceptions it was raised from, any URL in their texts redacted (a foreign
    exception's text may hold the URL it called, credentials included)."""
    from rich.traceback import Traceback

    err.print(Traceback(_redacted(Traceback.extract(type(exc), exc, exc.__traceback__))))


def _redacted(trace: Any) -> Any:
    """A rich ``Trace`` with its exceptions' texts and notes redacted (groups included), in place."""
    for stack in trace.stacks:
        stack.exc_value = redact_text(stack.exc_value)
        stack.notes = [redact_text(note) for note in stack.notes]
        for inner in stack.exceptions:
            _redacted(inner)
    return trace


# -- options -> configuration fields ----------------------------------------------------------------------------------
def _qdrant_overrides(url: str | None, api_key: str | None, path: str | None, grpc: bool) -> dict[str, Any]:
    """``QdrantSettings`` fields given on the command line."""
    return _given({"url": url or None, "api_key": api_key or None, "path": path or None,
                   "prefer_grpc": True if grpc else None})


def _qdrant_settings(url: str | None, api_key: str | None, path: str | None, grpc: bool) -> Any:
    from qdrant_distill.connectors.settings import QdrantSettings

    return QdrantSettings(**_qdrant_overrides(url, api_key, path, grpc))


def _student_overrides(o: dict[str, Any]) -> dict[str, Any]:
    """``DistillConfig`` fields (``student.*``) given on the command line."""
    return _given({"base_model": o["student"], "kind": o["student_kind"], "epochs": o["epochs"],
                   "max_steps": o["max_steps"], "time_budget_s": o["time_budget"], "keep_layers": o["keep_layers"],
                   "label_queries": o["label_queries"], "export": o["export"]})


def _gate_overrides(min_recall: float | None, min_spearman: float | None, min_ndcg: float | None,
                    queries: str | None) -> dict[str, Any]:
    """``GateConfig`` fields (``gate.*``) given on the command line."""
    return _given({"min_recall_at_10": min_recall, "min_spearman": min_spearman, "min_ndcg_at_10": min_ndcg,
                   "queries": queries})


def _ray_overrides(ray_address: str | None, workers: int | None, gpus_per_worker: float | None) -> dict[str, Any]:
    """``RayConfig`` fields (``ray.*``) given on the command line."""
    return _given({"address": ray_address, "workers": workers, "gpus_per_worker": gpus_per_worker})


def _migration_overrides(o: dict[str, Any]) -> dict[str, Any]:
    """``MigrationConfig`` fields given on the command line (``o``: the options of :data:`MIGRATION_OPTIONS`);
    unset options are left out."""
    if o["alias"] and o["collection"]:
        from qdrant_distill.errors import ConfigError

        raise ConfigError("give --alias or --collection as the source, not both")
    return _given({
        "source": o["alias"] or o["collection"],
        "alias": o["new_alias"],
        "target": o["target"],
        "text_field": o["text_field"],
        "text_template": o["text_template"],
        "vector_name": o["vector_name"],
        "dim": o["dim"],
        "mode": o["mode"],
        "teacher_model": o["teacher"],
        "teacher_check": False if o["no_teacher_check"] else None,  # the flag only switches the check off
        "embeddings_api_key": o["embeddings_api_key"],
        "sample_size": o["sample_size"],
        "missing_text": o["missing_text"],
        "page_size": o["page_size"],
        "run_dir": o["run_dir"],
        "engine": o["engine"],
        "progress": False if o["no_progress"] else None,  # the flag only switches the bars off
        "qdrant": _qdrant_overrides(o["url"], o["api_key"], o["path"], o["grpc"]),
        "student": _student_overrides(o),
        "gate": _gate_overrides(o["min_recall"], o["min_spearman"], o["min_ndcg"], o["queries"]),
        "ray": _ray_overrides(o["ray_address"], o["workers"], o["gpus_per_worker"]),
    })


def _config(config_file: Path | None, overrides: dict[str, Any]) -> Any:
    from qdrant_distill.migration.config import load_config

    return load_config(config_file, **overrides)


def _connector(settings: Any) -> Any:
    from qdrant_distill.connectors.qdrant import QdrantConnector

    return QdrantConnector.open(settings)


def _print_json(model: Any) -> None:
    out.print_json(model.model_dump_json() if hasattr(model, "model_dump_json") else json.dumps(model, default=str))


# -- plan and migrate -------------------------------------------------------------------------------------------------
def _run_migration(config_file: Path | None, overrides: dict[str, Any], *, as_json: bool, yes: bool, dry_run: bool,
                   restart: bool, dims: list[int] | bool = False, dims_out: Path | None = None) -> None:
    """The body of plan and migrate: load the configuration, print the plan (with the dimension table when ``dims``
    asks for it, also written to ``dims_out``), then (unless a dry run) migrate."""
    from qdrant_distill.cli.render import report_table
    from qdrant_distill.folders import RunFolder
    from qdrant_distill.migration.pipeline import migrate as run
    from qdrant_distill.migration.plan import make_plan

    cfg = _config(config_file, overrides)
    if cfg.progress and not err.is_terminal:  # a log file or a pipe: no bars redrawn with \r, the INFO lines say it
        cfg = cfg.model_copy(update={"progress": False})
    with _connector(cfg.qdrant) as conn:
        if restart and not dry_run and RunFolder(cfg.resolved_run_dir()).is_run():
            from qdrant_distill.migration.operate import abandon_run

            dropped = abandon_run(cfg.resolved_run_dir(), conn)
            err.print(f"restart: earlier attempt abandoned{f' (dropped {dropped})' if dropped else ''}")
        the_plan = make_plan(cfg, conn, dims=dims)
        if the_plan.dims is not None and dims_out is not None:
            the_plan.dims.write(dims_out)
        if dry_run:
            if as_json:
                _print_json(the_plan)
            else:
                out.print(the_plan.render(), highlight=False, markup=False, soft_wrap=True)
            return
        err.print(the_plan.render(), highlight=False, markup=False, soft_wrap=True)
        if not yes and not typer.confirm("Proceed (the alias moves at the end)?", err=True):
            raise typer.Exit(1)
        report = run(cfg, connector=conn, plan=the_plan)
    if as_json:
        _print_json(report)
        return
    out.print(report_table(report))
    _print_summary(Path(the_plan.run_dir))


def _print_summary(run_dir: Path) -> None:
    """The lines of the report's summary card: is it good, what it saves, what to run next."""
    from qdrant_distill.folders import RunFolder
    from qdrant_distill.migration.report import summarize

    for line in summarize(run_dir).lines():
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    out.print(f"report    {RunFolder(run_dir).report}", highlight=False, markup=False, soft_wrap=True)


@app.command("plan")
@migration_options
def plan(
    options: dict[str, Any],
    config: ConfigFile = None, as_json: AsJson = False, debug: Debug = False,
    dims: Annotated[Optional[str], _option(
        "--dims", shows="no table", help="candidate sizes, e.g. 64,128,256,384: the table of what each keeps and "
        "costs (PCA only, on the sample; --dim is added)")] = None,
    dims_out: Annotated[Optional[Path], _option(
        "--dims-out", shows="not written", help="also write the dimension table as JSON to this file (the default "
        "candidates without --dims)")] = None,
) -> None:
    """Dry run: describe what a migration would do and refuse early on bad input. Writes nothing (but --dims-out)."""
    with _expected_failures(debug):
        overrides = _migration_overrides(options)
        from qdrant_distill.migration.dims import parse_dims

        candidates: list[int] | bool = parse_dims(dims) if dims is not None else dims_out is not None
        if dims_out is not None:  # before anything is read: a path it cannot write is one line, not a traceback
            from qdrant_distill.migration.checks import check_output_file

            check_output_file(dims_out.expanduser(), "the dimension table", "--dims-out")
        _run_migration(config, overrides, as_json=as_json, yes=True, dry_run=True, restart=False, dims=candidates,
                       dims_out=dims_out)


@app.command("migrate")
@migration_options
def migrate(
    options: dict[str, Any],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask before moving the alias")] = False,
    config: ConfigFile = None, as_json: AsJson = False, debug: Debug = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only print the plan (same as `plan`)")] = False,
    restart: Annotated[bool, typer.Option(
        "--restart", help="abandon an earlier attempt of this migration (its target and saved sample) first")] = False,
) -> None:
    """Run (or resume) a migration: sample, distil, gate, re-embed, verify, swap."""
    with _expected_failures(debug):
        _run_migration(config, _migration_overrides(options), as_json=as_json, yes=yes, dry_run=dry_run,
                       restart=restart)


# -- the journal and the alias ----------------------------------------------------------------------------------------
@app.command()
def status(
    run_dir: RunDir, as_json: AsJson = False, debug: Debug = False,
    html: Annotated[bool, typer.Option("--html", help="write the run's report.html afresh and print its path")] = False,
    open_report: Annotated[bool, typer.Option("--open", help="write report.html and open it in a browser")] = False,
) -> None:
    """Show a migration's journal: stage, checkpoint, metrics, alias (--html / --open: its report.html)."""
    with _expected_failures(debug):
        from qdrant_distill.cli.render import journal_table
        from qdrant_distill.migration.operate import open_journal as load

        if html or open_report:
            from qdrant_distill.migration.operate import report_path

            page = report_path(run_dir)
            out.print(str(page), highlight=False, soft_wrap=True)
            if open_report:
                import webbrowser

                webbrowser.open(page.resolve().as_uri())
            return
        journal = load(run_dir)
        if as_json:
            _print_json(journal)
            return
        out.print(journal_table(journal))
        _print_next(run_dir)


def _print_next(run_dir: Path) -> None:
    """What to run next with this run folder (the report's summary card says the same)."""
    from qdrant_distill.migration.report import summarize

    try:
        lines = summarize(run_dir).next_lines()
    except DistillError as exc:  # a damaged file beside the journal: the journal itself was read and shown
        err.print(f"warning: {redact_text(str(exc))}", style="yellow", highlight=False, markup=False, soft_wrap=True)
        return
    for line in lines:
        out.print(line, highlight=False, markup=False, soft_wrap=True)


def _move_alias(run_dir: Path, settings: Any, move_run: Any) -> None:
    """swap or rollback (``move_run``: ``operate.swap_run`` or ``operate.rollback_run``): the journal read first (a file
    that is not one is refused before connecting), then the move, said as the store shows it."""
    from qdrant_distill.migration.operate import open_journal

    open_journal(run_dir)
    with _connector(settings) as conn:
        move = move_run(run_dir, conn)
    out.print(move.describe(), highlight=False)


@app.command()
def swap(run_dir: RunDir, url: Url = None, api_key: ApiKey = None, path: DbPath = None, grpc: Grpc = False,
         debug: Debug = False) -> None:
    """Move the alias to the verified new collection (again, after a rollback)."""
    with _expected_failures(debug):
        from qdrant_distill.migration.operate import swap_run

        _move_alias(run_dir, _qdrant_settings(url, api_key, path, grpc), swap_run)


@app.command()
def rollback(run_dir: RunDir, url: Url = None, api_key: ApiKey = None, path: DbPath = None, grpc: Grpc = False,
             debug: Debug = False) -> None:
    """Move the alias back to the collection it pointed to before the swap (one request)."""
    with _expected_failures(debug):
        from qdrant_distill.migration.operate import rollback_run

        _move_alias(run_dir, _qdrant_settings(url, api_key, path, grpc), rollback_run)


@app.command()
def abandon(run_dir: RunDir, yes: Confirm = False, url: Url = None, api_key: ApiKey = None, path: DbPath = None,
            grpc: Grpc = False, debug: Debug = False) -> None:
    """Give up a migration never swapped in: drop its target collection and clear its run folder."""
    with _expected_failures(debug):
        from qdrant_distill.migration.operate import abandon_run, open_journal

        open_journal(run_dir)  # a file that is not a journal: refused before asking or connecting
        if not yes and not typer.confirm("Drop the new collection and clear the run folder?", err=True):
            raise typer.Exit(1)

        with _connector(_qdrant_settings(url, api_key, path, grpc)) as conn:
            dropped = abandon_run(run_dir, conn)
        out.print(f"abandoned; dropped {dropped}" if dropped else "abandoned; no target collection to drop")


@app.command()
def finalize(run_dir: RunDir, yes: Confirm = False, url: Url = None, api_key: ApiKey = None, path: DbPath = None,
             grpc: Grpc = False, debug: Debug = False) -> None:
    """Drop the previous collection after a swap. Not reversible: asks unless --yes."""
    with _expected_failures(debug):
        from qdrant_distill.migration.operate import finalize_run
        from qdrant_distill.migration.operate import open_journal as load

        journal = load(run_dir)
        if journal.stage.value == "finalized":
            out.print("already finalized; nothing to do")
            return
        previous = journal.previous_target  # None: the alias was new, nothing will be dropped, nothing to ask
        if previous and not yes and not typer.confirm(f"Drop the previous collection {previous!r} for good?",
                                                      err=True):
            raise typer.Exit(1)
        with _connector(_qdrant_settings(url, api_key, path, grpc)) as conn:
            dropped = finalize_run(run_dir, conn)
        out.print(f"finalized; dropped {dropped}" if dropped else "finalized; nothing dropped", highlight=False)


@app.command()
def repoint(
    alias: Annotated[str, typer.Argument(help="the alias (or collection) whose recorded query model moved")],
    model: Annotated[Path, typer.Option("--model", help="where it is now: the export folder (or its run folder)")],
    projection: Annotated[Optional[Path], _option(
        "--projection", shows="the one beside the export",
        help="projection-only collections: the projection.npz")] = None,
    url: Url = None, api_key: ApiKey = None, path: DbPath = None, grpc: Grpc = False, debug: Debug = False,
) -> None:
    """Record a moved query model in the collection's metadata (checked first; re-point back to undo)."""
    with _expected_failures(debug):
        from qdrant_distill.query.registry import repoint as run

        with _connector(_qdrant_settings(url, api_key, path, grpc)) as conn:
            done = run(conn, alias, model, projection=projection)
        for key, (old, new) in done.changes.items():
            out.print(f"{done.collection}: {key} {old} -> {new}", highlight=False, markup=False, soft_wrap=True)
        if not done.changes:
            out.print(f"{done.collection}: already points there; nothing changed", highlight=False, markup=False,
                      soft_wrap=True)


# -- serving, evaluation, export, demo --------------------------------------------------------------------------------
@app.command()
def serve(
    alias: Annotated[str, typer.Option("--alias", help="the alias (or collection) whose query encoder answers")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on (1-65535)")] = 8000,
    require_key: Annotated[Optional[str], _option(
        "--require-key", envvar="QDRANT_DISTILL_SERVE_API_KEY", shows="none: no key asked",
        help="clients must send this key as a bearer token (prefer the QDRANT_DISTILL_SERVE_API_KEY variable)")] = None,
    default_model: Annotated[Optional[str], _option(
        "--default-model", shows="none: such a collection answers 503",
        help="encoder of a collection without qdrant-distill metadata (the original one, after a rollback)")] = None,
    max_inputs: Annotated[Optional[int], _option("--max-inputs", shows=f"{DEFAULT_MAX_INPUTS:,}",
                                                 help="texts a request, 413 above")] = None,
    max_bytes: Annotated[Optional[int], _option("--max-bytes", shows=f"{DEFAULT_MAX_BYTES // 2**20} MiB",
                                                help="bytes a request body, 413 above")] = None,
    max_input_bytes: Annotated[Optional[int], _option(
        "--max-input-bytes", shows=f"{DEFAULT_MAX_INPUT_BYTES // 2**10} KiB",
        help="UTF-8 bytes one text, 413 above; texts are cut to what the model reads")] = None,
    url: Url = None, api_key: ApiKey = None, path: DbPath = None, grpc: Grpc = False, debug: Debug = False,
) -> None:
    """Serve the alias's query encoder over HTTP (OpenAI /v1/embeddings, TEI /embed); follows swap and rollback."""
    with _expected_failures(debug):
        from qdrant_distill.query.serve import ServeSettings, run

        limits = _given({"max_inputs": max_inputs, "max_bytes": max_bytes, "max_input_bytes": max_input_bytes})
        settings = ServeSettings.parse(alias=alias, host=host, port=port, api_key=require_key,
                                       default_model=default_model, **limits)
        with _connector(_qdrant_settings(url, api_key, path, grpc)) as conn:
            run(conn, settings, log_level="info" if debug else "warning")


@app.command()
def evaluate(
    model: Annotated[str, typer.Option(help="model to evaluate: a sentence-transformers name or folder, a distill "
                                            "or export folder, a run folder (its query encoder), or an embeddings "
                                            "endpoint (openai+URL?model=NAME, tei+URL, ollama+URL?model=NAME)")],
    beir: Annotated[Path, typer.Option(help="BEIR folder: corpus, queries, qrels/<split>.tsv")],
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    as_json: AsJson = False, debug: Debug = False,
) -> None:
    """nDCG@10, recall@100 and MRR@10 of a model on a labelled BEIR folder (exact cosine search)."""
    with _expected_failures(debug):
        from qdrant_distill.connectors.http_embeddings import shown_reference
        from qdrant_distill.migration.gate import beir_metrics
        from qdrant_distill.migration.run_models import encoder_of

        err.print(f"evaluating {shown_reference(model)} on {beir} ({split} split): encoding its corpus and queries "
                  "(minutes on a CPU for a large model)", highlight=False, markup=False, soft_wrap=True)
        metrics = beir_metrics(encoder_of(model), beir, split=split)
        _print_json(metrics) if as_json else out.print(
            "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()), highlight=False)


@app.command()
def export(
    target: Annotated[str, typer.Argument(help="a migration's run folder, a distill output folder, or any model")],
    format: Annotated[str, typer.Option("--format", help="onnx, or onnx-int8 (fp32 and int8)")] = "onnx-int8",
    out_dir: Annotated[Optional[Path], _option(
        "--out", shows="the run's student/onnx, or <model>/onnx", help="export folder")] = None,
    as_json: AsJson = False, debug: Debug = False,
) -> None:
    """Export a student (or any sentence-transformers model) for onnxruntime; checks each format against torch."""
    with _expected_failures(debug):
        from qdrant_distill.cli.render import export_table
        from qdrant_distill.inference.export import formats_for
        from qdrant_distill.inference.formats import GRAPHS
        from qdrant_distill.migration.run_models import (
            check_export_target,
            export_target,
        )

        if format not in GRAPHS:
            raise typer.BadParameter(f"unknown format {format!r}: use onnx or onnx-int8", param_hint="--format")
        check_export_target(target, out_dir)  # every refusal before the long part and its line
        err.print(f"exporting {redact_text(target)} as {format}: each graph is written, then checked against the torch model "
                  "(about a minute for a MiniLM-sized student on a CPU)", highlight=False, markup=False, soft_wrap=True)
        manifest = export_target(target, formats=formats_for(format), out_dir=out_dir)
        _print_json(manifest) if as_json else out.print(export_table(manifest))


@app.command("export-edge")
def export_edge(
    source: Annotated[str, typer.Argument(help="a finished migration's run folder, or the alias it swapped")],
    out_dir: Annotated[Path, typer.Option("--out", help="the Edge folder to write (new or empty)")],
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="replace an earlier export in --out (only its edge.json, shard/ and student/)")] = False,
    hnsw: Annotated[bool, typer.Option("--hnsw", help="build an HNSW index whatever the size")] = False,
    page_size: Annotated[int, typer.Option("--page-size", help="points per page")] = 256,
    no_progress: NoProgress = False, as_json: AsJson = False,
    url: Url = None, api_key: ApiKey = None, path: DbPath = None, grpc: Grpc = False, debug: Debug = False,
) -> None:
    """Write a Qdrant Edge folder: every point's student vector and payload, the exported student, a manifest."""
    with _expected_failures(debug):
        from qdrant_distill.edge.export import export_edge as write
        from qdrant_distill.edge.shard import folder_size

        with _connector(_qdrant_settings(url, api_key, path, grpc)) as conn:
            manifest = write(source, out_dir, connector=conn, overwrite=overwrite, page_size=page_size, hnsw=hnsw,
                             progress=not no_progress and err.is_terminal)
        if as_json:
            _print_json(manifest)
            return
        out.print(f"{manifest.points} points of {manifest.source_collection} ({manifest.dim}-d, {manifest.backend} "
                  f"student) in {out_dir} ({folder_size(out_dir) / 2**20:.1f} MiB on disk); query it with "
                  f"qdrant_distill.edge.shard.open({str(out_dir)!r})", highlight=False, markup=False)


@app.command()
def demo(
    path: Annotated[str, typer.Option(help="embedded Qdrant folder")] = "./qdrant_data",
    teacher: Annotated[str, typer.Option(help="teacher model path")] = "models/all-mpnet-base-v2",
    student: Annotated[str, typer.Option(help="student body path")] = "models/all-MiniLM-L6-v2",
    limit: Annotated[Optional[int], _option("--limit", shows="all 2,000", help="use only the first N demo texts")]
    = None,
    debug: Debug = False,
) -> None:
    """Build a demo collection (2,000 WordNet glosses, real teacher vectors) behind an alias and migrate it."""
    with _expected_failures(debug):
        from qdrant_distill.cli.demo import run_demo
        from qdrant_distill.cli.render import report_table

        report, answers = run_demo(path=path, teacher=teacher, student=student, limit=limit)
        out.print(report_table(report))
        for query, by_teacher, by_student in answers:
            out.print(f"[bold]{query}[/bold]", highlight=False)
            out.print("  teacher 768-d: " + " | ".join(by_teacher), highlight=False, markup=False)
            out.print(f"  student {report.dim}-d: " + " | ".join(by_student), highlight=False, markup=False)
        _print_summary(Path(report.journal).parent)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())


if __name__ == "__main__":  # python -m qdrant_distill.cli.app
    main()
