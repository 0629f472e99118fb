"""Every check a migration can make before its first expensive step, each a short function that raises one typed
error (or adds a note). :func:`qdrant_distill.make_plan` runs them all through :class:`Problems`, which keeps each
error and goes on, so one plan reports every problem; nothing here writes anything (a folder is probed with a
nameless temporary file, dropped at once)."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_distill.connectors.base import Connector, Sample
from qdrant_distill.distillation.config import (
    MIN_HOLDOUT,
    MIN_TRAIN_PAIRS,
    HeadInit,
    StudentKind,
)
from qdrant_distill.distillation.teacher import TeacherCheck, check_teacher
from qdrant_distill.errors import (
    ConfigError,
    DimensionError,
    DistillError,
    EmptyCollection,
    UnsupportedVectors,
)
from qdrant_distill.inference.encoders import local_modules, resolve_reference
from qdrant_distill.inference.formats import ExportChoice, export_folder
from qdrant_distill.migration.config import Engine, MigrationConfig, Mode

__all__ = [
    "Problems",
    "check_collection_size",
    "check_distance",
    "check_engine",
    "check_folder",
    "check_inputs",
    "check_labelled_points",
    "check_model",
    "check_output_file",
    "check_run_dir",
    "check_sizes",
    "check_teacher_reproduces",
    "check_training",
]

logger = logging.getLogger(__name__)

UNIT_NORM_TOLERANCE = 0.01


class Problems:
    """The problems one plan finds: each check runs inside :meth:`check`, which keeps its error and lets the next
    check run. :meth:`raise_all` raises the first error found, of its own type (what a caller catches does not
    change), its message followed by every other problem and all of them in its ``problems`` attribute."""

    def __init__(self) -> None:
        self.errors: list[DistillError] = []

    @contextmanager
    def check(self) -> Iterator[None]:
        try:
            yield
        except DistillError as exc:
            if str(exc) not in {str(e) for e in self.errors}:  # two checks may find the same thing
                self.errors.append(exc)

    def raise_all(self) -> None:
        if not self.errors:
            return
        first, others = self.errors[0], self.errors[1:]
        if not others:
            raise first
        more = "; ".join(f"({i}) {type(e).__name__}: {e}" for i, e in enumerate(others, 2))
        plural = "s" if len(others) > 1 else ""
        error = type(first)(f"{first}; and {len(others)} more problem{plural}: {more}",
                            **{**first.context, "problems": list(self.errors)})
        error.hint = first.hint
        raise error from first


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # a Hugging Face repo id: name or owner/name
HUB_TRUE = ("1", "ON", "YES", "TRUE")  # how huggingface_hub reads HF_HUB_OFFLINE
MODEL_FILES = ("modules.json", "config.json")  # a sentence-transformers folder, or a plain transformers one


def _looks_like_path(name: str) -> bool:
    """A reference meant as a folder: written as a path, existing, not shaped like a hub id, or under a folder
    that exists here (``models/x`` next to ``models/``)."""
    if name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists() or not HUB_ID.match(name):
        return True
    return "/" in name and Path(name.split("/", 1)[0]).is_dir()


def _holds_model(path: Path) -> bool:
    """A folder a model can be loaded from: sentence-transformers or transformers files, a distill output folder,
    an export folder."""
    folder = Path(resolve_reference(path)).expanduser()
    return any((folder / f).is_file() for f in MODEL_FILES) or export_folder(path) is not None


def _hub_offline() -> bool:
    return any(os.environ.get(v, "").upper() in HUB_TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _in_hub_cache(name: str) -> bool:
    """Whether the local Hugging Face cache holds the model ``name`` (as sentence-transformers resolves a bare
    name: itself, or under ``sentence-transformers/``); reads the cache only, loads nothing."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # no hub client: nothing can be loaded from the hub either, the load says so
        return True
    repos = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    return any(isinstance(try_to_load_from_cache(repo, file), str) for repo in repos for file in MODEL_FILES)


def check_model(name: str | None, what: str) -> None:
    """A model the run will load is there, without loading it: a local folder that holds a model, or a hub name
    (which must be in the local cache while the hub is offline). Embedding endpoints are checked by their
    encoder."""
    from qdrant_distill.connectors.http_embeddings import (
        check_reference_prefix,
        is_http_reference,
    )

    check_reference_prefix(name)
    if name and is_http_reference(name):  # parsed here, teacher check or not: credentials in it are refused
        from qdrant_distill.connectors.http_embeddings import EmbeddingsSettings

        EmbeddingsSettings.from_reference(name)
    if not name or is_http_reference(name):
        return
    path = Path(name).expanduser()
    if _looks_like_path(name):
        if not path.exists():
            raise ConfigError(f"{what} path {name!r} does not exist (from {os.getcwd()})",
                              hint="give a sentence-transformers model name or folder")
        if not _holds_model(path):
            raise ConfigError(f"{what} {name!r} holds no model (no {' or '.join(MODEL_FILES)})",
                              hint="give a sentence-transformers folder, a distill output or an export folder")
        return
    if _hub_offline() and not _in_hub_cache(name):
        raise ConfigError(f"{what} {name!r} is neither a folder here nor in the local Hugging Face cache, and the hub "
                          "is offline (HF_HUB_OFFLINE)", hint="download it once with the hub online, or give a "
                          "local folder")


def _models_loaded(config: MigrationConfig) -> list[tuple[str | None, str]]:
    """Every model reference the run will load, with what it is."""
    refs: list[tuple[str | None, str]] = [(config.teacher_model, "teacher model")]
    if config.mode is Mode.PROJECTION_ONLY:
        return refs
    if config.student.kind is StudentKind.PRUNED:
        return refs + [(config.student.teacher_model, "teacher model")]
    return refs + [(config.student.base_model, "student model")]


def check_folder(path: Path, what: str, option: str) -> None:
    """A folder to write into must be a folder, or creatable: not a file, not under one, in a writable place."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a file", hint=f"choose a folder with {option}")
    _check_writable_place(path, what, option, "folder")


def check_output_file(path: Path, what: str, option: str) -> None:
    """A file to write must be a file, or creatable: not a folder (``""`` reads as ``.``), not under a file, in a
    writable place (a probe, not a permission guess: ``/proc`` and ``/sys`` refuse even root)."""
    if path.is_dir():
        raise ConfigError(f"{option} {str(path)!r} is a folder: {what} is written to a file",
                          hint=f"give a file name with {option}, e.g. {option} dims.json")
    _check_writable_place(path, what, option, "file")


def _check_writable_place(path: Path, what: str, option: str, kind: str) -> None:
    """The nearest existing folder above ``path`` is a folder that takes new files."""
    parent = path if kind == "folder" else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{what} {str(path)!r} lies under the file {str(parent)!r}",
                          hint=f"choose a {kind} with {option}")
    why = _unwritable(parent)
    if why:
        raise ConfigError(f"{what} {str(path)!r}: nothing can be written in {str(parent)!r} ({why})",
                          hint=f"choose another {option}")


def _unwritable(folder: Path) -> str | None:
    """Why ``folder`` takes no new file (a nameless file is made and dropped at once), or None when it does."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def check_run_dir(path: Path) -> None:
    """The run folder must be a folder, or creatable: not a file, not under one, in a writable place."""
    check_folder(path, "run folder", "--run-dir")


def _training_pairs(config: MigrationConfig, sample: int) -> int:
    """Pairs the projection (and the student) is fitted on, out of a sample of ``sample`` points."""
    return sample if config.mode is Mode.PROJECTION_ONLY else sample - config.student.holdout_size(sample)


def check_collection_size(points: int) -> None:
    """A collection too small to train on and hold out from (checked before any hint names a sample size)."""
    need = MIN_TRAIN_PAIRS + MIN_HOLDOUT
    if points < need:
        raise EmptyCollection(f"collection has {points} point(s): at least {need} are needed to distil "
                              f"({MIN_TRAIN_PAIRS} to train, {MIN_HOLDOUT} held out)", hint="nothing to learn from")


def check_sizes(config: MigrationConfig, points: int) -> None:
    """The collection and the sample must hold enough points to train, hold out, and span ``--dim`` dimensions."""
    need = MIN_TRAIN_PAIRS + MIN_HOLDOUT
    check_collection_size(points)
    if config.sample_size < need:
        raise ConfigError(f"sample size {config.sample_size}: at least {need} points are needed "
                          f"({MIN_TRAIN_PAIRS} to train, {MIN_HOLDOUT} held out)",
                          hint=f"use --sample-size {min(points, 5000)}")
    train = _training_pairs(config, config.sample_size)
    if config.dim > train:
        # the projection cannot have more dimensions than the points it is fitted on
        enough = next((n for n in range(config.sample_size, points + 1) if _training_pairs(config, n) >= config.dim),
                      None)
        hint = (f"raise --sample-size to {enough} or more, or lower --dim to {train}" if enough
                else f"the whole collection gives {_training_pairs(config, points)} training points: lower --dim "
                     f"to at most that")
        raise DimensionError(f"--dim {config.dim} needs at least {config.dim} training points; a sample of "
                             f"{config.sample_size} gives {train}", hint=hint)


def check_training(config: MigrationConfig) -> None:
    """What distillation and the gate will need, checked before anything is sampled."""
    gate, student = config.gate, config.student
    if gate.min_ndcg_at_10 is not None and not gate.queries:
        raise ConfigError("--min-ndcg needs labelled queries", hint="pass --queries BEIR_FOLDER")
    if gate.queries:
        _check_queries(gate.queries, gate.split)
    if config.mode is Mode.PROJECTION_ONLY:
        return
    teacher = config.teacher_model or student.teacher_model
    if student.kind is StudentKind.PRUNED and not teacher:
        raise ConfigError("a pruned student is cut from the teacher", hint="pass --teacher MODEL")
    layers = _local_layers(teacher) if student.kind is StudentKind.PRUNED and teacher else None
    if layers is not None and student.keep_layers is not None and student.keep_layers > layers:
        raise ConfigError(f"--keep-layers {student.keep_layers}: the teacher has {layers} layers",
                          hint=f"choose 1..{layers}")
    body = _local_dim(student.base_model) if student.kind is StudentKind.TRANSFORMER else None
    if body is not None and student.head_init is HeadInit.OWN_PCA and config.dim >= body:
        raise DimensionError(f"--dim {config.dim}: the student body {student.base_model} is {body}-d, and its own "
                             f"PCA head needs fewer dimensions", hint=f"choose --dim below {body}, or a larger body")


def _check_queries(folder: str, split: str) -> None:
    from qdrant_distill.evaluation.beir import load_beir

    if not Path(folder).is_dir():
        raise ConfigError(f"labelled queries folder {folder!r} does not exist", hint="a BEIR folder: corpus.jsonl, "
                          "queries.jsonl, qrels/<split>.tsv")
    load_beir(folder, split=split)  # a malformed line, or judgements that cannot score, are one ConfigError


def check_labelled_points(config: MigrationConfig, connector: Connector, collection: str, notes: list[str]) -> None:
    """The labelled corpus's ids are point ids of the source (the README's contract): refused when no judged
    document is a point; in the project modes every corpus document must be one (the gate answers with its stored
    vector); a note when only some judged documents are points."""
    if not config.gate.queries:
        return
    from qdrant_distill.connectors.scroll import existing_ids
    from qdrant_distill.evaluation.beir import load_beir

    data = load_beir(config.gate.queries, split=config.gate.split)
    judged = data.judged_doc_ids
    points = existing_ids(connector, collection, judged)
    hint = f"the corpus ids of --queries {config.gate.queries} must be point ids of {collection}"
    if not points:
        raise ConfigError(f"none of the {len(judged)} documents judged in {config.gate.queries} is a point of "
                          f"{collection} (judged ids: {', '.join(judged[:3])})", hint=hint)
    if config.mode is not Mode.REEMBED:
        stored = existing_ids(connector, collection, data.doc_ids)
        missing = [d for d in data.doc_ids if d not in stored]
        if missing:
            raise ConfigError(f"{len(missing)} of {len(data.doc_ids)} labelled documents are not points of "
                              f"{collection} (first ids: {', '.join(missing[:3])}); in {config.mode.value} mode the "
                              "gate answers with their stored vectors", hint=hint)
    if len(points) < len(judged):
        message = (f"labelled queries: only {len(points)} of the {len(judged)} documents judged in "
                   f"{config.gate.queries} are points of {collection}")
        logger.warning("%s", message)
        notes.append(message)


def _module_config(ref: str | None, kind: str, name: str) -> Any:
    """A value from the config file of a local sentence-transformers folder's first module of type ``kind``."""
    found = local_modules(ref)
    if found is None:
        return None
    folder, mods = found
    for mod in mods:
        if str(mod.get("type", "")).endswith(kind):
            for file in ("config.json", "config_sentence_transformers.json"):
                path = folder / str(mod.get("path", "")) / file
                try:
                    value = json.loads(path.read_text(encoding="utf-8")).get(name)
                except (OSError, ValueError):
                    continue
                if value is not None:
                    return value
    return None


def _local_layers(ref: str | None) -> int | None:
    value = _module_config(ref, "Transformer", "num_hidden_layers")
    return int(value) if isinstance(value, int) else None


def _local_dim(ref: str | None) -> int | None:
    for key in ("word_embedding_dimension", "embedding_dimension"):  # sentence-transformers < 6, 6
        value = _module_config(ref, "Pooling", key)
        if isinstance(value, int):
            return value
    return None


def check_distance(distance: str | None, vectors: np.ndarray, notes: list[str]) -> None:
    """Students write unit vectors. Under Cosine that is what Qdrant stores anyway; under Dot, Euclid or Manhattan
    it is the same only when the stored vectors are unit length too: otherwise their norms (and the ranking the
    distance makes of them) would be lost without a word, so refuse."""
    if distance in (None, "Cosine"):
        return
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)
    if len(norms) and np.all(np.abs(norms - 1.0) <= UNIT_NORM_TOLERANCE):
        notes.append(f"{distance} distance over unit-length vectors (as sampled): the new unit vectors rank the same "
                     "way")
        return
    raise UnsupportedVectors(
        f"the collection uses {distance} distance and its stored vectors are not unit length (sampled norms "
        f"{norms.min():.3g} to {norms.max():.3g}); the new vectors would all be unit length, losing what the norms "
        "mean to this distance",
        hint="migrate a Cosine collection, or normalise the stored vectors first",
    )


def check_teacher_reproduces(config: MigrationConfig, probe: Sample) -> TeacherCheck | None:
    """The teacher re-encodes a few sampled texts: its vectors must match the stored ones (see :mod:`.teacher`)."""
    if not config.teacher_model or not config.teacher_check:
        return None
    from qdrant_distill.inference.encoders import load_teacher

    teacher = load_teacher(config.teacher_model, api_key=config.embeddings_api_key)
    return check_teacher(teacher, probe.texts, probe.vectors, threshold=config.teacher_min_cosine)




def _missing(*modules: str) -> list[str]:
    import importlib.util

    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):
            return True

    return [m for m in modules if absent(m)]


def check_packages(config: MigrationConfig) -> None:
    """What this run imports later is installed: torch to distil (or to run a local teacher), onnx and onnxruntime
    to export the student (``--export none`` goes without)."""
    from qdrant_distill.connectors.http_embeddings import is_http_reference

    local_teacher = bool(config.teacher_model) and not is_http_reference(config.teacher_model)
    if (config.mode is not Mode.PROJECTION_ONLY or local_teacher) and _missing("torch", "sentence_transformers"):
        raise ConfigError("distilling needs torch and sentence-transformers, which are not installed here",
                          hint="pip install 'qdrant-distill[train]'")
    missing = _missing("onnx", "onnxruntime") if config.mode is not Mode.PROJECTION_ONLY else []
    if ExportChoice(config.student.export) is not ExportChoice.NONE and missing:
        raise ConfigError(f"exporting the student needs {' and '.join(missing)}, not installed here",
                          hint="pip install 'qdrant-distill[train]', or pass --export none")


RAY_OPTIONS = {"address": "--ray-address", "workers": "--workers", "gpus_per_worker": "--gpus-per-worker",
               "cpus_per_worker": "ray.cpus_per_worker"}
LOCAL_WORKERS_PER_CORE = 4  # a local Ray instance oversubscribes its cores up to this many encoder actors a core


def check_engine(config: MigrationConfig, notes: list[str] | None = None) -> None:
    """The Ray engine needs Ray installed (checked without importing it), an address Ray can read, resources this
    machine has when Ray runs here (GPUs, a bounded number of actors), and a cluster address that answers (a bounded
    connect). Ray options given to the local engine are said to have no effect."""
    if config.engine is not Engine.RAY:
        given = [RAY_OPTIONS[name] for name in RAY_OPTIONS if name in config.ray.model_fields_set]
        if given and notes is not None:
            notes.append(f"{', '.join(given)} {'has' if len(given) == 1 else 'have'} no effect with the local "
                         "engine: pass --engine ray to run on Ray")
        return
    from qdrant_distill.migration.engines.ray import probe_address, require_ray

    require_ray()
    if config.ray.address is None:
        check_local_ray(config)
    probe_address(config.ray)


def check_local_ray(config: MigrationConfig) -> None:
    """A local Ray instance (no --ray-address) runs on this machine: its actors must fit it."""
    ray, cores = config.ray, os.cpu_count() or 1
    gpus = local_gpus()
    if ray.gpus_per_worker and ray.workers * ray.gpus_per_worker > gpus:
        raise ConfigError(f"{ray.workers} Ray workers with --gpus-per-worker {ray.gpus_per_worker:g} need "
                          f"{ray.workers * ray.gpus_per_worker:g} GPUs; this machine has {gpus}",
                          hint="lower --workers or --gpus-per-worker (0: CPU actors), or give --ray-address of a "
                          "cluster with GPUs")
    if ray.workers > LOCAL_WORKERS_PER_CORE * cores:
        raise ConfigError(f"{ray.workers} Ray workers on this machine's {cores} cores: each loads the student; at most "
                          f"{LOCAL_WORKERS_PER_CORE * cores} here", hint=f"lower --workers (about {cores} uses every "
                          "core), or give --ray-address of a cluster")


def local_gpus() -> int:
    """NVIDIA GPUs this process may use, read without importing a GPU library: the driver's list, narrowed by
    ``CUDA_VISIBLE_DEVICES`` when it is set."""
    listed = Path("/proc/driver/nvidia/gpus")
    count = len(list(listed.iterdir())) if listed.is_dir() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = min(count, len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"]))
    return count


def check_inputs(config: MigrationConfig, points: int | None, notes: list[str], problems: Problems) -> None:
    """Everything the configuration alone (and the collection's size, when known) tells: models, sizes, training,
    the gate; each problem kept in ``problems``."""
    with problems.check():
        if config.mode is Mode.PROJECTION_ONLY and not config.teacher_model:
            raise ConfigError("projection-only mode needs the teacher model for queries", hint="pass --teacher MODEL")
    with problems.check():
        if config.mode is Mode.PROJECTION_ONLY and config.student.label_queries:
            raise ConfigError(f"--label-queries {config.student.label_queries} has no effect in projection-only mode: "
                              "no student is trained (the teacher itself encodes the queries)",
                              hint="drop --label-queries, or use --mode project to train a query student on teacher "
                              "labels")
    with problems.check():
        check_engine(config, notes)
    if points is not None:
        with problems.check():
            check_sizes(config, points)
    with problems.check():
        check_training(config)
    before = len(problems.errors)
    with problems.check():
        check_packages(config)
    if len(problems.errors) == before:  # without torch no model loads anyway
        for ref, what in _models_loaded(config):
            with problems.check():
                check_model(ref, what)
    if config.mode is not Mode.PROJECTION_ONLY and config.student.epochs == 0 and config.student.max_steps is None:
        notes.append("--epochs 0: the student is not trained; the holdout picks between its untrained start and "
                     "the plain heads")
    with problems.check():
        if config.student.label_queries and not config.teacher_model and config.mode is not Mode.PROJECTION_ONLY:
            raise ConfigError("teacher labels (--label-queries) need the teacher", hint="pass --teacher MODEL")
