"""The dry run: what a migration would do, refused early on anything that would fail later. Writes nothing."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from connectors.base import Connector, Sample
from qdrant_distill.config import MIN_HOLDOUT, MIN_TRAIN_PAIRS, HeadInit, MigrationConfig, Mode, StudentKind
from qdrant_distill.errors import (
    AliasConflict,
    CollectionExists,
    ConfigError,
    DimensionError,
    DistillError,
    EmptyCollection,
    UnsupportedVectors,
)
from qdrant_distill.journal import JOURNAL_FILE, Journal, Stage
from qdrant_distill.teacher import TeacherCheck, check_teacher

__all__ = ["MigrationPlan", "make_plan"]

logger = logging.getLogger(__name__)

TEXT_PROBE = 64  # points sampled to check that text exists before anything runs
BYTES = {"float32": 4, "float16": 2, "uint8": 1}

LIVE_WRITES = (
    "Points inserted, deleted or with a changed payload in the source during the re-embed are reconciled by a catch-up "
    "pass before the swap. Not covered: writes after the catch-up and before the swap (a window of one request), and, "
    "in reembed mode, updates that change only a stored vector (the text decides the new vector)."
)


class MigrationPlan(BaseModel):
    """What :func:`qdrant_distill.migrate` will do."""

    source: str
    source_collection: str
    source_alias: str | None
    target: str
    alias: str | None
    swap: str
    vector_name: str
    distance: str | None
    teacher_dim: int
    dim: int
    mode: Mode
    student: str
    student_kind: str
    points: int
    sample_size: int
    gate: dict[str, float]
    vector_bytes_before: int
    vector_bytes_after: int
    other_vectors: list[str] = Field(default_factory=list)
    text: str
    missing_text: str
    teacher: str | None = None
    teacher_check: TeacherCheck | None = None
    label_queries: int = 0
    run_dir: str
    resume_stage: str | None = None
    live_writes: str = LIVE_WRITES
    notes: list[str] = Field(default_factory=list)

    def render(self) -> str:
        """A readable, multi-line description."""
        mb = lambda b: f"{b / 1e6:,.1f} MB"  # noqa: E731
        lines = [
            f"source      {self.source}" + (f" (alias -> {self.source_collection})" if self.source_alias else " (collection)"),
            f"target      {self.target}  [{self.vector_name or 'unnamed vector'}: {self.teacher_dim} -> {self.dim}, "
            f"{self.distance}]",
            f"points      {self.points:,}   vector bytes {mb(self.vector_bytes_before)} -> {mb(self.vector_bytes_after)}",
            f"mode        {self.mode.value}   student {self.student_kind}: {self.student}",
            f"sample      {self.sample_size:,} points   text: {self.text}   missing text: {self.missing_text}",
            "gate        " + ", ".join(f"{k} >= {v}" for k, v in self.gate.items()),
            *self._teacher_lines(),
            f"swap        {self.swap}",
            f"run dir     {self.run_dir}" + (f"   (resuming after stage {self.resume_stage})" if self.resume_stage else ""),
        ]
        lines += [f"note        {n}" for n in self.notes]
        return "\n".join(lines)


    def _teacher_lines(self) -> list[str]:
        if not self.teacher:
            return []
        check = self.teacher_check
        checked = (f"checked on {check.texts} points: mean cosine {check.mean_cosine:.4f} (>= {check.threshold})"
                   if check else "not checked")
        lines = [f"teacher     {self.teacher}   {checked}"]
        if self.label_queries:
            lines.append(f"labels      {self.label_queries:,} query-like texts cut from the sample go to the teacher "
                         "(cached in the run dir)")
        return lines


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def _check_model(name: str | None, what: str) -> None:
    if name and _looks_like_path(name) and not Path(name).expanduser().exists():
        raise ConfigError(f"{what} path {name!r} does not exist", hint="give a sentence-transformers model name or folder")


def _existing_journal(config: MigrationConfig) -> Journal | None:
    """The journal of an earlier attempt at this same migration (a mismatch raises)."""
    if not (config.resolved_run_dir() / JOURNAL_FILE).exists():
        return None
    return Journal.open(config.resolved_run_dir(), config.fingerprint())


def make_plan(config: MigrationConfig, connector: Connector) -> MigrationPlan:
    """Describe the migration and check everything that can be checked without writing."""
    if config.embeddings_api_key is not None:  # an HTTP teacher's key, for every stage that loads the teacher
        from connectors.http_embeddings import set_api_key

        set_api_key(config.embeddings_api_key)
    _check_run_dir(config.resolved_run_dir())
    journal = _existing_journal(config)
    resuming = journal is not None and bool(journal.source_collection)
    if resuming:  # after a swap the alias points at the target: the journal knows the real source
        source_collection, source_alias = journal.source_collection, journal.source_alias
    else:
        source_collection, source_alias = connector.resolve(config.source)
    info = connector.describe(source_collection)
    spec = info.vector(config.vector_name)
    teacher_dim = int(spec.size or 0)
    if config.dim >= teacher_dim:
        raise DimensionError(
            f"target dimension {config.dim} is not smaller than the teacher's {teacher_dim}",
            hint=f"choose --dim below {teacher_dim} (e.g. {max(1, teacher_dim // 6)})",
        )
    if info.points_count == 0:
        raise EmptyCollection(f"collection {info.name!r} has no points", hint="nothing to migrate")
    if config.sample_size > info.points_count:
        raise ConfigError(
            f"sample size {config.sample_size:,} is larger than the collection ({info.points_count:,} points)",
            hint=f"use --sample-size {info.points_count} or less",
        )
    target = config.target_name(info.name)
    notes: list[str] = []
    # ours when the journal says so, or when a run killed between creating it and journaling that left it, with
    # this run's id in its metadata
    target_ours = journal is not None and (journal.done(Stage.CREATED) or _created_by(connector, target, journal))
    if target == info.name:
        raise CollectionExists(f"the target {target!r} is the source collection", hint="choose another --target")
    if not target_ours and (connector.collection_exists(target) or connector.alias_target(target) is not None):
        raise CollectionExists(
            f"target collection {target!r} already exists",
            hint="choose another --target; if a failed run of this migration left it, `qdrant-distill abandon RUN_DIR` "
            "drops it"
        )
    alias = source_alias or config.alias
    if config.alias and source_alias and config.alias != source_alias:
        raise ConfigError(f"the source is already the alias {source_alias!r}; --alias {config.alias!r} contradicts it")
    if alias and connector.collection_exists(alias):
        raise AliasConflict(f"alias name {alias!r} is used by a collection", hint="choose another --alias")
    if source_alias:
        swap = f"alias {source_alias!r}: {info.name} -> {target} in one request; rollback until finalize"
    elif config.alias:
        current = connector.alias_target(config.alias)
        swap = f"alias {config.alias!r}: {current or '(new)'} -> {target}"
    else:
        swap = "none: the source is a plain collection; pass --alias NAME to create an alias for the target"
        notes.append(f"{config.source!r} is a collection, not an alias: readers must be pointed at {target!r} by hand")
    if config.mode is Mode.PROJECTION_ONLY and not config.teacher_model:
        raise ConfigError("projection-only mode needs the teacher model for queries", hint="pass --teacher MODEL")
    _check_model(config.student.base_model, "student model")
    _check_model(config.teacher_model, "teacher model")
    _check_sizes(config, info.points_count)
    _check_training(config)
    if config.mode is not Mode.PROJECTION_ONLY and config.student.epochs == 0 and config.student.max_steps is None:
        notes.append("--epochs 0: the student is not trained; the holdout picks between its untrained start and "
                     "the plain heads")
    if config.student.label_queries and not config.teacher_model and config.mode is not Mode.PROJECTION_ONLY:
        raise ConfigError("teacher labels (--label-queries) need the teacher", hint="pass --teacher MODEL")
    teacher_check = None
    if not resuming:
        # fail now, not after training, when the points carry no text or the teacher is not the collection's
        probe = connector.sample(info.name, min(TEXT_PROBE, info.points_count), text=config.text,
                                 vector_name=spec.name)
        _check_distance(spec.distance, probe.vectors, notes)
        teacher_check = _check_teacher(config, probe)
    if config.missing_text.value == "project" and config.mode is Mode.REEMBED:
        notes.append("points without text get the PCA projection of their teacher vector (close to, not in, the "
                     "student's space)")
    per_value = BYTES.get(spec.datatype or "float32", 4)
    others = [n for n in info.vectors if n != spec.name] + list(info.sparse_vectors)
    return MigrationPlan(
        source=config.source,
        source_collection=info.name,
        source_alias=source_alias,
        target=target,
        alias=alias,
        swap=swap,
        vector_name=spec.name,
        distance=spec.distance,
        teacher_dim=teacher_dim,
        dim=config.dim,
        mode=config.mode,
        student=_student_name(config),
        student_kind=config.student.kind.value if config.mode is not Mode.PROJECTION_ONLY else "teacher+projection",
        points=info.points_count,
        sample_size=config.sample_size,
        gate=config.gate.thresholds(),
        vector_bytes_before=info.points_count * teacher_dim * per_value,
        vector_bytes_after=info.points_count * config.dim * per_value,
        other_vectors=others,
        text=config.text.describe(),
        missing_text=config.missing_text.value,
        teacher=config.teacher_model,
        teacher_check=teacher_check,
        label_queries=config.student.label_queries if config.mode is not Mode.PROJECTION_ONLY else 0,
        run_dir=str(config.resolved_run_dir()),
        resume_stage=journal.stage.value if resuming else None,
        notes=notes,
    )


def _check_run_dir(path: Path) -> None:
    """The run folder must be a folder, or creatable: not a file, not under one, in a writable place."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run folder {str(path)!r} is a file", hint="choose a folder with --run-dir")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"run folder {str(path)!r} lies under the file {str(parent)!r}",
                          hint="choose a folder with --run-dir")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"run folder {str(path)!r}: {str(parent)!r} is not writable", hint="choose another --run-dir")


def _training_pairs(config: MigrationConfig, sample: int) -> int:
    """Pairs the projection (and the student) is fitted on, out of a sample of ``sample`` points."""
    return sample if config.mode is Mode.PROJECTION_ONLY else sample - config.student.holdout_size(sample)


def _check_sizes(config: MigrationConfig, points: int) -> None:
    """The collection and the sample must hold enough points to train, hold out, and span ``--dim`` dimensions."""
    need = MIN_TRAIN_PAIRS + MIN_HOLDOUT
    if points < need:
        raise EmptyCollection(f"collection has {points} point(s): at least {need} are needed to distil "
                              f"({MIN_TRAIN_PAIRS} to train, {MIN_HOLDOUT} held out)", hint="nothing to learn from")
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


def _check_training(config: MigrationConfig) -> None:
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
    from qdrant_distill.evaluate import load_beir

    if not Path(folder).is_dir():
        raise ConfigError(f"labelled queries folder {folder!r} does not exist", hint="a BEIR folder: corpus.jsonl, "
                          "queries.jsonl, qrels/<split>.tsv")
    try:
        data = load_beir(folder, split=split)
    except DistillError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken file is one line, not a traceback
        raise ConfigError(f"cannot read the labelled queries in {folder!r}: {type(exc).__name__}: {exc}") from exc
    if not data.queries or not data.doc_ids:
        raise ConfigError(f"labelled queries folder {folder!r} holds no {split} queries with qrels, or no corpus")


def _local_modules(ref: str | None) -> tuple[Path, list[dict[str, Any]]] | None:
    folder = Path(ref).expanduser() if ref else None
    if folder is None or not (folder / "modules.json").is_file():
        return None
    try:
        return folder, json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _module_config(ref: str | None, kind: str, name: str) -> Any:
    """A value from the config file of a local sentence-transformers folder's first module of type ``kind``."""
    found = _local_modules(ref)
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


UNIT_NORM_TOLERANCE = 0.01


def _check_distance(distance: str | None, vectors: np.ndarray, notes: list[str]) -> None:
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


def _check_teacher(config: MigrationConfig, probe: Sample) -> TeacherCheck | None:
    """The teacher re-encodes a few sampled texts: its vectors must match the stored ones (see :mod:`.teacher`)."""
    if not config.teacher_model or not config.teacher_check:
        return None
    from qdrant_distill.encoders import load_encoder

    return check_teacher(load_encoder(config.teacher_model), probe.texts, probe.vectors,
                         threshold=config.teacher_min_cosine)


def _created_by(connector: Connector, target: str, journal: Journal) -> bool:
    """Whether ``target`` is a collection that this journal's run created (its metadata holds the run id)."""
    from qdrant_distill import record

    if not connector.collection_exists(target):
        return False
    return record.read_from(connector, target).get("run_id") == journal.run_id


def _student_name(config: MigrationConfig) -> str:
    if config.mode is Mode.PROJECTION_ONLY:
        return f"{config.teacher_model} + PCA-{config.dim}"
    if config.student.kind.value == "pruned":
        return f"{config.teacher_model or config.student.teacher_model} (layer-pruned)"
    return str(config.student.base_model)
