"""The dry run: what a migration would do, refused early on anything that would fail later. Writes nothing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from qdrant_distill.connectors.base import CollectionInfo, Connector, VectorSpec
from qdrant_distill.connectors.http_embeddings import shown_reference
from qdrant_distill.distillation.recipes import recipe_for, with_recipe
from qdrant_distill.distillation.teacher import TeacherCheck
from qdrant_distill.errors import (
    AliasConflict,
    CollectionExists,
    ConfigError,
    DimensionError,
    EmptyCollection,
)
from qdrant_distill.migration.checks import (
    Problems,
    check_collection_size,
    check_distance,
    check_inputs,
    check_labelled_points,
    check_run_dir,
    check_teacher_reproduces,
)
from qdrant_distill.migration.config import MigrationConfig, Mode
from qdrant_distill.migration.dims import DimsReport, plan_dims
from qdrant_distill.migration.journal import Journal, Stage

__all__ = ["MigrationPlan", "make_plan"]

logger = logging.getLogger(__name__)

TEXT_PROBE = 64  # points sampled to check that text exists before anything runs
PLAN_SEED = 0  # the dimension table's sample when the configuration sets no seed
SEEDED_UP_TO = 200_000  # points: up to this size a seeded sample (a pass over the collection) is cheap enough
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
    dims: DimsReport | None = None  # the dimension table, when asked for (plan --dims)
    recipe: dict[str, str] | None = None  # the measured recipe that will train the student: name, measured, cost

    def _recipe_lines(self) -> list[str]:
        if self.recipe is None:
            return []
        return [f"recipe      {self.recipe['name']} (fields you set are kept; time budget {self.recipe['budget']})",
                f"            measured: {self.recipe['measured']}",
                f"            cost: {self.recipe['cost']}"]

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
            *self._recipe_lines(),
            "gate        " + ", ".join(f"{k} >= {v}" for k, v in self.gate.items()),
            *self._teacher_lines(),
            f"swap        {self.swap}",
            f"run dir     {self.run_dir}" + (f"   (resuming after stage {self.resume_stage})" if self.resume_stage else ""),
        ]
        lines += [f"note        {n}" for n in self.notes]
        if self.dims is not None:
            lines.append(self.dims.render())
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


def _existing_journal(config: MigrationConfig) -> Journal | None:
    """The journal of an earlier attempt at this same migration (a mismatch raises)."""
    return Journal.earlier(config.resolved_run_dir(), config.fingerprint())


def make_plan(config: MigrationConfig, connector: Connector, *, dims: Sequence[int] | bool = False) -> MigrationPlan:
    """Describe the migration and check everything that can be checked without writing. Every problem found is
    reported at once (:class:`~qdrant_distill.errors.PlanRefused` when there are several); a check that needs what a
    failed one would have told is skipped. With ``dims`` (candidate sizes, or True for the default ones) the plan
    carries the dimension table (:func:`qdrant_distill.migration.dims.plan_dims`)."""
    problems, notes = Problems(), []
    with problems.check():
        check_run_dir(config.resolved_run_dir())
    journal = None
    with problems.check():
        journal = _existing_journal(config)
    resuming = journal is not None and bool(journal.source_collection)
    source = None
    with problems.check():
        source = _source(config, connector, journal if resuming else None)
    if source is None:  # nothing to look at in Qdrant: the configuration's own problems still count
        check_inputs(config, None, notes, problems)
        problems.raise_all()
    assert source is not None
    info, spec, source_alias = source
    with problems.check():
        _check_dimension(config, connector, spec, source_alias, info.name)
    before = len(problems.errors)
    with problems.check():
        _check_points(info)
    usable = len(problems.errors) == before  # enough points to sample, train and hold out
    config = _clamped(config, info.points_count, notes) if usable else config
    target, alias, swap = config.target_name(info.name), None, ""
    with problems.check():
        target, alias, swap = _target_and_alias(config, connector, info, source_alias, journal, notes)
    check_inputs(config, info.points_count if usable else None, notes, problems)
    with problems.check():
        check_labelled_points(config, connector, info.name, notes)
    teacher_check = None
    if not resuming and usable:
        with problems.check():
            # fail now, not after training, when the points carry no text or the teacher is not the collection's
            probe = connector.sample(info.name, min(TEXT_PROBE, info.points_count), text=config.text,
                                     vector_name=spec.name, seed=config.sample_seed)
            check_distance(spec.distance, probe.vectors, notes)
            teacher_check = check_teacher_reproduces(config, probe)
    problems.raise_all()
    if config.missing_text.value == "project" and config.mode is Mode.REEMBED:
        notes.append("points without text get the PCA projection of their teacher vector (close to, not in, the "
                     "student's space)")
    table = None
    if dims is not False:
        table = plan_dims(_reproducible(config, info.points_count, notes), connector, None if dims is True else dims,
                          collection=info.name)
    return _plan(config, info, spec, source_alias=source_alias, target=target, alias=alias, swap=swap,
                 teacher_check=teacher_check, resume_stage=journal.stage.value if resuming and journal else None,
                 notes=notes, dims=table)


def _source(config: MigrationConfig, connector: Connector,
            journal: Journal | None) -> tuple[CollectionInfo, VectorSpec, str | None]:
    """The source collection, its teacher vector and the alias it was named by. A resumed run's journal knows the
    real source (after a swap the alias points at the target)."""
    if journal is not None:
        source_collection, source_alias = journal.source_collection, journal.source_alias
    else:
        source_collection, source_alias = connector.resolve(config.source)
    info = connector.describe(source_collection)
    return info, info.vector(config.vector_name), source_alias


def _check_dimension(config: MigrationConfig, connector: Connector, spec: VectorSpec, source_alias: str | None,
                     collection: str) -> None:
    teacher_dim = int(spec.size or 0)
    if config.dim < teacher_dim:
        return
    hint = f"choose --dim below {teacher_dim} (e.g. {max(1, teacher_dim // 6)})"
    pointed = ""
    if source_alias:  # say what the alias points at: after a swap it is the distilled collection
        import qdrant_distill.migration.record as record

        made = record.read_from(connector, collection)
        pointed = f"; alias {source_alias!r} points at {collection!r}"
        if made:
            pointed += (f", a collection qdrant-distill made ({made.get('teacher_dim')} -> {made.get('dim')} "
                        f"dimensions, from {made.get('source')!r})")
            hint = (f"to distil it again, migrate {made.get('source')!r} itself (--collection); to go back, "
                    f"`qdrant-distill rollback` its run folder ({Path(str(made.get('journal', ''))).parent})")
    raise DimensionError(f"target dimension {config.dim} is not smaller than the teacher's {teacher_dim}{pointed}",
                         hint=hint)


def _check_points(info: CollectionInfo) -> None:
    if info.points_count == 0:
        raise EmptyCollection(f"collection {info.name!r} has no points", hint="nothing to migrate")
    check_collection_size(info.points_count)


def _reproducible(config: MigrationConfig, points: int, notes: list[str]) -> MigrationConfig:
    """The configuration the dimension table samples with: with no ``sample_seed``, a fixed one where a seeded
    sample (a pass over the collection) is cheap, so two plans give the same table."""
    if config.sample_seed is not None or points > SEEDED_UP_TO:
        return config
    notes.append(f"the dimension table samples with seed {PLAN_SEED} (the same table each time); the migration draws "
                 "its own random sample unless sample_seed is set")
    return config.model_copy(update={"sample_seed": PLAN_SEED})


def _clamped(config: MigrationConfig, points: int, notes: list[str]) -> MigrationConfig:
    """The configuration with its sample no larger than the collection (the sample is then the whole collection)."""
    if config.sample_size <= points:
        return config
    notes.append(f"sample size {config.sample_size:,} (--sample-size, sample_size) is more than the collection's "
                 f"{points:,} points: the whole collection is sampled")
    return config.model_copy(update={"sample_size": points})


def _target_and_alias(config: MigrationConfig, connector: Connector, info: CollectionInfo, source_alias: str | None,
                      journal: Journal | None, notes: list[str]) -> tuple[str, str | None, str]:
    """The target collection (free, or this run's), the alias to move, and how the swap will go."""
    target = config.target_name(info.name)
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
        raise ConfigError(f"the source is already the alias {source_alias!r}; --new-alias {config.alias!r} "
                          "contradicts it", hint="drop --new-alias: the source alias itself is swapped")
    if alias and connector.collection_exists(alias):
        raise AliasConflict(f"alias name {alias!r} is used by a collection", hint="choose another --new-alias")
    if source_alias:
        return target, alias, f"alias {source_alias!r}: {info.name} -> {target} in one request; rollback until finalize"
    if config.alias:
        current = connector.alias_target(config.alias)
        return target, alias, f"alias {config.alias!r}: {current or '(new)'} -> {target}"
    notes.append(f"{config.source!r} is a collection, not an alias: readers must be pointed at {target!r} by hand")
    return target, alias, ("none: the source is a plain collection; pass --new-alias NAME to create an alias for the "
                           "target")


def _plan(config: MigrationConfig, info: CollectionInfo, spec: VectorSpec, **fields: Any) -> MigrationPlan:
    teacher_dim = int(spec.size or 0)
    per_value = BYTES.get(spec.datatype or "float32", 4)
    projection_only = config.mode is Mode.PROJECTION_ONLY
    return MigrationPlan(
        source=config.source, source_collection=info.name, vector_name=spec.name, distance=spec.distance,
        teacher_dim=teacher_dim, dim=config.dim, mode=config.mode, student=_student_name(config),
        student_kind="teacher+projection" if projection_only else config.student.kind.value,
        points=info.points_count, sample_size=config.sample_size, gate=config.gate.thresholds(),
        vector_bytes_before=info.points_count * teacher_dim * per_value,
        vector_bytes_after=info.points_count * config.dim * per_value,
        other_vectors=[n for n in info.vectors if n != spec.name] + list(info.sparse_vectors),
        text=config.text.describe(), missing_text=config.missing_text.value, 
        teacher=shown_reference(config.teacher_model) if config.teacher_model else None,
        label_queries=0 if projection_only else config.student.label_queries,
        run_dir=str(config.resolved_run_dir()), recipe=None if projection_only else _recipe(config), **fields,
    )


def _recipe(config: MigrationConfig) -> dict[str, str]:
    """The measured recipe the student will train with (:mod:`qdrant_distill.distillation.recipes`)."""
    use = "queries" if config.mode is Mode.PROJECT else "symmetric"
    student = with_recipe(config.distill_config(), use)
    recipe = recipe_for(student.kind, use)
    budget = f"{student.time_budget_s:,.0f} s" if student.time_budget_s else "none"
    return {"name": recipe.name, "measured": recipe.measured, "cost": recipe.cost, "budget": budget}


def _created_by(connector: Connector, target: str, journal: Journal) -> bool:
    """Whether ``target`` is a collection that this journal's run created (its metadata holds the run id)."""
    import qdrant_distill.migration.record as record

    if not connector.collection_exists(target):
        return False
    return record.read_from(connector, target).get("run_id") == journal.run_id


def _student_name(config: MigrationConfig) -> str:
    if config.mode is Mode.PROJECTION_ONLY:
        return f"{shown_reference(str(config.teacher_model))} + PCA-{config.dim}"
    if config.student.kind.value == "pruned":
        return f"{shown_reference(str(config.teacher_model or config.student.teacher_model))} (layer-pruned)"
    return shown_reference(str(config.student.base_model))
