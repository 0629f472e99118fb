"""The ``qdrant-distill`` command line: plan | migrate | status | swap | rollback | finalize | abandon | serve |
evaluate | export | demo.

Each command loads its configuration, calls one library function and renders the result. Results go to stdout (a
table, or JSON with ``--json``); logs and progress bars go to stderr. Expected failures print one red line and exit 1;
``--debug`` shows the traceback.
"""


import functools
import inspect
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from qdrant_distill.errors import DistillError

app = typer.Typer(name="qdrant-distill", add_completion=False, no_args_is_help=True,
                  help="Distil a smaller embedding model from a Qdrant collection's stored vectors, re-embed, swap.")
out = Console()
err = Console(stderr=True)

# -- shared options ---------------------------------------------------------------------------------------------------
Url = Annotated[Optional[str], typer.Option("--url", envvar="QDRANT_URL", help="Qdrant server URL")]
ApiKey = Annotated[Optional[str], typer.Option("--api-key", envvar="QDRANT_API_KEY", show_default=False,
                                               help="API key (prefer the QDRANT_API_KEY variable)")]
DbPath = Annotated[Optional[str], typer.Option("--path", help="embedded Qdrant folder [default: ./qdrant_data]")]
Grpc = Annotated[bool, typer.Option("--grpc", help="prefer gRPC")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="TOML, YAML or JSON config file")]
Debug = Annotated[bool, typer.Option("--debug", help="show tracebacks and debug logs")]
AsJson = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
RunDir = Annotated[Path, typer.Argument(help="the migration's run folder (holds journal.json)")]


def _logging(debug: bool) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=err, show_path=False, show_time=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    for name in ("qdrant_distill", "connectors"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.INFO)


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one red line and exit code 1 (traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug"))
        _logging(debug)
        try:
            return fn(*args, **kwargs)
        except DistillError as exc:
            if debug:
                err.print_exception()
            from rich.markup import escape  # a message may hold brackets: pip install 'qdrant-distill[ray]'

            err.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))}", markup=True, highlight=False,
                      soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[red]interrupted[/red]; rerun the same command to resume")
            raise typer.Exit(130) from None

    return wrapper


def _qdrant(url: str | None, api_key: str | None, path: str | None, grpc: bool) -> dict[str, Any]:
    q: dict[str, Any] = {"prefer_grpc": grpc} if grpc else {}
    if url:
        q["url"] = url
    if api_key:
        q["api_key"] = api_key
    if path:
        q["path"] = path
    return q


def _config(config_file: Path | None, overrides: dict[str, Any]) -> Any:
    from qdrant_distill.config import load_config

    return load_config(config_file, **{k: v for k, v in overrides.items() if v is not None and v != {}})


def _connector(settings: Any) -> Any:
    from connectors.qdrant import QdrantConnector

    return QdrantConnector.open(settings)


def _print_json(model: Any) -> None:
    out.print_json(model.model_dump_json() if hasattr(model, "model_dump_json") else json.dumps(model, default=str))


# -- migration options ------------------------------------------------------------------------------------------------


# each migration option once: the CLI parameter -> where it goes in the configuration (dotted: nested)
OPTION_PATHS = {
    "new_alias": "alias", "target": "target", "text_field": "text_field", "text_template": "text_template",
    "vector_name": "vector_name", "dim": "dim", "mode": "mode", "teacher": "teacher_model",
    "sample_size": "sample_size", "missing_text": "missing_text", "page_size": "page_size", "run_dir": "run_dir",
    "embeddings_api_key": "embeddings_api_key", "student": "student.base_model", "student_kind": "student.kind",
    "epochs": "student.epochs", "max_steps": "student.max_steps", "keep_layers": "student.keep_layers",
    "label_queries": "student.label_queries", "export": "student.export", "min_recall": "gate.min_recall_at_10",
    "min_spearman": "gate.min_spearman", "min_ndcg": "gate.min_ndcg_at_10", "queries": "gate.queries",
    "engine": "engine", "ray_address": "ray.address", "workers": "ray.workers", "gpus_per_worker": "ray.gpus_per_worker",
}
# flags that only ever switch a default off
OFF_SWITCHES = {"no_progress": "progress", "no_teacher_check": "teacher_check"}


def _migration_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The configuration overrides given on the command line (unset options are left out)."""
    if options.get("alias") and options.get("collection"):
        from qdrant_distill.errors import ConfigError

        raise ConfigError("give --alias or --collection as the source, not both")
    out: dict[str, Any] = {"source": options.get("alias") or options.get("collection"),
                           "qdrant": _qdrant(options["url"], options["api_key"], options["path"], options["grpc"])}
    given = {path: options.get(name) for name, path in OPTION_PATHS.items()}
    given |= {path: False for name, path in OFF_SWITCHES.items() if options.get(name)}
    for path, value in given.items():
        if value is None:
            continue
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


MIGRATION_HELP = {
    "alias": "source alias (swapped in place)",
    "collection": "source plain collection (no alias to swap)",
    "new_alias": "with --collection: alias to create or move to the new collection",
}


@command
def migrate(
    alias: Annotated[Optional[str], typer.Option("--alias", help=MIGRATION_HELP["alias"])] = None,
    collection: Annotated[Optional[str], typer.Option("--collection", help=MIGRATION_HELP["collection"])] = None,
    new_alias: Annotated[Optional[str], typer.Option("--new-alias", help=MIGRATION_HELP["new_alias"])] = None,
    target: Annotated[Optional[str], typer.Option(help="new collection name")] = None,
    text_field: Annotated[Optional[str], typer.Option(help="payload key with the text [default: text]")] = None,
    text_template: Annotated[Optional[str], typer.Option(help='e.g. "{title} {text}"')] = None,
    vector_name: Annotated[Optional[str], typer.Option(help="the teacher vector, for named vectors")] = None,
    dim: Annotated[Optional[int], typer.Option(help="target dimension [default: 128]")] = None,
    mode: Annotated[Optional[str], typer.Option(help="reembed | project | projection-only")] = None,
    student: Annotated[Optional[str], typer.Option(help="student body: model name or path")] = None,
    student_kind: Annotated[Optional[str], typer.Option(help="transformer | pruned | static")] = None,
    teacher: Annotated[Optional[str], typer.Option(
        help="the model the stored vectors came from (optional): checked against them in plan")] = None,
    label_queries: Annotated[Optional[int], typer.Option(
        help="query-like texts cut from the sample for the teacher to label (needs --teacher)")] = None,
    no_teacher_check: Annotated[bool, typer.Option(
        "--no-teacher-check", help="do not compare the teacher's vectors with the stored ones")] = False,
    embeddings_api_key: Annotated[Optional[str], typer.Option(
        "--embeddings-api-key", envvar="QDRANT_DISTILL_EMBEDDINGS_API_KEY", show_default=False,
        help="API key of an HTTP teacher (prefer the QDRANT_DISTILL_EMBEDDINGS_API_KEY variable)")] = None,
    sample_size: Annotated[Optional[int], typer.Option(help="points sampled for training [default: 5000]")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="training epochs")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="training step budget")] = None,
    keep_layers: Annotated[Optional[int], typer.Option(help="pruned student: teacher layers kept")] = None,
    export: Annotated[Optional[str], typer.Option(
        "--export", help="onnx-int8 | onnx | none: export the student for onnxruntime [default: onnx-int8]")] = None,
    min_recall: Annotated[Optional[float], typer.Option(help="gate: teacher-neighbour recall@10")] = None,
    min_spearman: Annotated[Optional[float], typer.Option(help="gate: Spearman of similarities")] = None,
    min_ndcg: Annotated[Optional[float], typer.Option(help="gate: nDCG@10 on --queries")] = None,
    queries: Annotated[Optional[str], typer.Option(help="labelled BEIR folder for the gate")] = None,
    missing_text: Annotated[Optional[str], typer.Option(help="fail | skip | project")] = None,
    page_size: Annotated[Optional[int], typer.Option(help="points per page")] = None,
    run_dir: Annotated[Optional[str], typer.Option(help="journal folder [default: ./runs/<source>-<dim>]")] = None,
    engine: Annotated[Optional[str], typer.Option(help="re-embed engine: local | ray [default: local]")] = None,
    ray_address: Annotated[Optional[str], typer.Option(
        "--ray-address", envvar="RAY_ADDRESS", help="existing Ray cluster [default: a local one]")] = None,
    workers: Annotated[Optional[int], typer.Option(help="ray: encoder actors [default: 2]")] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option(help="ray: GPUs per actor [default: 0]")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bars")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask before moving the alias")] = False,
    url: Url = None, api_key: ApiKey = None, path: DbPath = None, grpc: Grpc = False,
    config: ConfigFile = None, as_json: AsJson = False, debug: Debug = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only print the plan (same as `plan`)")] = False,
    restart: Annotated[bool, typer.Option(
        "--restart", help="abandon an earlier attempt of this migration (its target and saved sample) first")] = False,
) -> None:
    """Run (or resume) a migration: sample, distil, gate, re-embed, verify, swap."""
    options = dict(locals())  # every option, by parameter name (OPTION_PATHS says where each goes)
    from qdrant_distill.migration import migrate as run
    from qdrant_distill.plan import make_plan
    from qdrant_distill.render import report_table

    cfg = _config(config, _migration_overrides(options))
    with _connector(cfg.qdrant) as conn:
        if restart and not dry_run and (cfg.resolved_run_dir() / "journal.json").exists():
            from qdrant_distill.migration import abandon_run

            dropped = abandon_run(cfg.resolved_run_dir(), conn)
            err.print(f"restart: earlier attempt abandoned{f' (dropped {dropped})' if dropped else ''}")
        the_plan = make_plan(cfg, conn)
        if dry_run:
            _print_json(the_plan) if as_json else out.print(the_plan.render(), highlight=False, markup=False)
            return
        err.print(the_plan.render(), highlight=False, markup=False)
        if not yes and not typer.confirm("Proceed (the alias moves at the end)?", err=True):
            raise typer.Exit(1)
        report = run(cfg, connector=conn, plan=the_plan)
    _print_json(report) if as_json else out.print(report_table(report))


def plan(**kwargs: Any) -> None:
    """Dry run: describe what a migration would do and refuse early on bad input. Writes nothing."""
    migrate(**kwargs, yes=True, dry_run=True)


_sig = inspect.signature(migrate)
_hide = {"yes", "dry_run", "restart"}
plan.__signature__ = _sig.replace(parameters=[p for n, p in _sig.parameters.items() if n not in _hide])  # type: ignore[attr-defined]
plan.__annotations__ = {n: a for n, a in migrate.__annotations__.items() if n not in _hide}
app.command("plan")(plan)
app.command("migrate")(migrate)


@app.command()
@command
def status(run_dir: RunDir, as_json: AsJson = False, debug: Debug = False) -> None:
    """Show a migration's journal: stage, checkpoint, metrics, alias."""
    from qdrant_distill.migration import status as load
    from qdrant_distill.render import journal_table

    journal = load(run_dir)
    _print_json(journal) if as_json else out.print(journal_table(journal))


def _alias_command(run_dir: Path, action: str, url: str | None, api_key: str | None, path: str | None,
                   grpc: bool) -> str | None:
    from connectors.settings import QdrantSettings
    from qdrant_distill import migration

    with _connector(QdrantSettings(**_qdrant(url, api_key, path, grpc))) as conn:
        return getattr(migration, f"{action}_run")(run_dir, conn)


@app.command()
@command
def swap(run_dir: RunDir, url: Url = None, api_key: ApiKey = None, path: DbPath = None, grpc: Grpc = False,
         debug: Debug = False) -> None:
    """Move the alias to the verified new collection (again, after a rollback)."""
    previous = _alias_command(run_dir, "swap", url, api_key, path, grpc)
    out.print(f"alias moved to the new collection (previous target: {previous})")


@app.command()
@command
def rollback(run_dir: RunDir, url: Url = None, api_key: ApiKey = None, path: DbPath = None, grpc: Grpc = False,
             debug: Debug = False) -> None:
    """Move the alias back to the collection it pointed to before the swap (one request)."""
    previous = _alias_command(run_dir, "rollback", url, api_key, path, grpc)
    out.print(f"alias moved back to {previous}" if previous else "alias removed (it did not exist before)")


@app.command()
@command
def abandon(run_dir: RunDir, yes: Annotated[bool, typer.Option("--yes", "-y", help="confirm dropping")] = False,
            url: Url = None, api_key: ApiKey = None, path: DbPath = None, grpc: Grpc = False,
            debug: Debug = False) -> None:
    """Give up a migration never swapped in: drop its target collection and clear its run folder."""
    if not yes and not typer.confirm("Drop the new collection and clear the run folder?", err=True):
        raise typer.Exit(1)
    dropped = _alias_command(run_dir, "abandon", url, api_key, path, grpc)
    out.print(f"abandoned; dropped {dropped}" if dropped else "abandoned; no target collection to drop")


@app.command()
@command
def finalize(run_dir: RunDir, yes: Annotated[bool, typer.Option("--yes", "-y", help="confirm dropping")] = False,
             url: Url = None, api_key: ApiKey = None, path: DbPath = None, grpc: Grpc = False,
             debug: Debug = False) -> None:
    """Drop the previous collection after a swap. Not reversible: asks unless --yes."""
    from qdrant_distill.migration import status as load

    journal = load(run_dir)
    if journal.stage.value == "finalized":
        out.print(f"already finalized ({journal.previous_target or 'nothing'} was dropped then); nothing to do")
        return
    if not yes and not typer.confirm("Drop the previous collection for good?", err=True):
        raise typer.Exit(1)
    dropped = _alias_command(run_dir, "finalize", url, api_key, path, grpc)
    out.print(f"finalized; dropped {dropped}" if dropped else "finalized; nothing to drop")


@app.command()
@command
def serve(
    alias: Annotated[str, typer.Option("--alias", help="the alias (or collection) whose query encoder answers")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    require_key: Annotated[Optional[str], typer.Option(
        "--require-key", envvar="QDRANT_DISTILL_SERVE_API_KEY", show_default=False,
        help="clients must send this key as a bearer token (prefer the QDRANT_DISTILL_SERVE_API_KEY variable)")] = None,
    default_model: Annotated[Optional[str], typer.Option(
        help="encoder of a collection without qdrant-distill metadata (the original one, after a rollback)")] = None,
    max_inputs: Annotated[Optional[int], typer.Option(help="texts a request [default: 2048]")] = None,
    max_bytes: Annotated[Optional[int], typer.Option(help="bytes a request [default: 8 MiB]")] = None,
    url: Url = None, api_key: ApiKey = None, path: DbPath = None, grpc: Grpc = False, debug: Debug = False,
) -> None:
    """Serve the alias's query encoder over HTTP (OpenAI /v1/embeddings, TEI /embed); follows swap and rollback."""
    from connectors.settings import QdrantSettings
    from qdrant_distill.serve import ServeSettings, run

    limits = {k: v for k, v in {"max_inputs": max_inputs, "max_bytes": max_bytes}.items() if v is not None}
    settings = ServeSettings(alias=alias, api_key=require_key, default_model=default_model, **limits)
    with _connector(QdrantSettings(**_qdrant(url, api_key, path, grpc))) as conn:
        run(conn, settings, host=host, port=port, log_level="info" if debug else "warning")


@app.command()
@command
def evaluate(
    model: Annotated[str, typer.Option(help="model to evaluate: a sentence-transformers name or folder, or a run's student")],
    beir: Annotated[Path, typer.Option(help="BEIR folder: corpus, queries, qrels/<split>.tsv")],
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    as_json: AsJson = False, debug: Debug = False,
) -> None:
    """nDCG@10, recall@100 and MRR@10 of a model on a labelled BEIR folder (exact cosine search)."""
    from qdrant_distill.encoders import load_encoder
    from qdrant_distill.evaluate import beir_metrics

    metrics = beir_metrics(load_encoder(model), beir, split=split)
    _print_json(metrics) if as_json else out.print(
        "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()), highlight=False)


@app.command()
@command
def export(
    target: Annotated[str, typer.Argument(help="a migration's run folder, a distill output folder, or any model")],
    format: Annotated[str, typer.Option("--format", help="onnx, or onnx-int8 (fp32 and int8)")] = "onnx-int8",
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="export folder [default: the run's student/onnx]")] = None,
    as_json: AsJson = False, debug: Debug = False,
) -> None:
    """Export a student (or any sentence-transformers model) for onnxruntime; checks each format against torch."""
    from qdrant_distill.render import export_table
    from qdrant_distill.export import export_target, formats_for

    if format not in ("onnx", "onnx-int8"):
        raise typer.BadParameter(f"unknown format {format!r}: use onnx or onnx-int8", param_hint="--format")
    manifest = export_target(target, formats=formats_for(format), out_dir=out_dir)
    _print_json(manifest) if as_json else out.print(export_table(manifest))


@app.command()
@command
def demo(
    path: Annotated[str, typer.Option(help="embedded Qdrant folder")] = "./qdrant_data",
    teacher: Annotated[str, typer.Option(help="teacher model path")] = "models/all-mpnet-base-v2",
    student: Annotated[str, typer.Option(help="student body path")] = "models/all-MiniLM-L6-v2",
    limit: Annotated[Optional[int], typer.Option(help="use only the first N demo texts")] = None,
    debug: Debug = False,
) -> None:
    """Build a demo collection (2,000 WordNet glosses, real teacher vectors) behind an alias and migrate it."""
    from qdrant_distill.demo import run_demo
    from qdrant_distill.render import report_table

    report, answers = run_demo(path=path, teacher=teacher, student=student, limit=limit)
    out.print(report_table(report))
    for query, by_teacher, by_student in answers:
        out.print(f"[bold]{query}[/bold]", highlight=False)
        out.print("  teacher 768-d: " + " | ".join(by_teacher), highlight=False, markup=False)
        out.print(f"  student {report.dim}-d: " + " | ".join(by_student), highlight=False, markup=False)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
