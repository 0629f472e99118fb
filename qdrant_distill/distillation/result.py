"""What a distillation made and measured (:class:`DistillResult`, written as ``distill.json``): torch-free, so the report,
the journal and a query service read it without loading a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from qdrant_distill.distillation.config import StudentKind
from qdrant_distill.evaluation.metrics import PRIMARY_METRIC, QUERY_METRIC
from qdrant_distill.inference.formats import Backend, read_manifest

__all__ = ["DistillResult"]


class DistillResult(BaseModel):
    """What :func:`distill` made and measured; also written as ``distill.json``."""

    student_path: str
    projection_path: str
    kind: StudentKind
    base_model: str
    dim: int
    teacher_dim: int
    teacher_id: str
    center: bool
    explained_variance: float
    train_size: int
    label_pairs: int = 0
    holdout_size: int
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    projection_metrics: dict[str, float]
    selection: dict[str, Any] = Field(default_factory=dict)
    primary_metric: str = PRIMARY_METRIC
    query_metric: str = QUERY_METRIC
    wall_time_s: float
    steps: int
    best_step: int
    epochs_run: float
    stopped_early: bool
    out_of_time: bool = False  # the time budget ended training (the best state so far was kept)
    recipe: str | None = None  # the measured recipe that filled the config's unset fields
    losses: list[dict[str, float]]
    evaluations: list[dict[str, float]]
    config: dict[str, Any]
    export_path: str | None = None

    @property
    def backend(self) -> Backend:
        """What ``load_encoder``'s ``auto`` runs this student on: its export's choice, read from ``export.json`` (the
        one owner of that choice; the gate may refuse a format there later), torch when it has no export."""
        manifest = read_manifest(self.export_path) if self.export_path else None
        return manifest.runs_on() if manifest is not None else Backend.TORCH

    def for_journal(self) -> dict[str, Any]:
        """What a migration's journal keeps of this result: the student's, export's and projection's places (absolute),
        the backend, the holdout metrics and the holdout's choice of state."""
        kept = self.model_dump(include={"student_path", "export_path", "projection_path", "metrics",
                                        "baseline_metrics", "selection"})
        kept["backend"] = self.backend
        for key in ("student_path", "export_path", "projection_path"):
            if kept[key]:
                kept[key] = str(Path(kept[key]).resolve())
        return kept
