"""Which dimension? The per-size table that the stored vectors alone can give (``plan --dims``), before training.

This module holds the report's schema (:class:`DimsRow`, :class:`DimsReport`); the run folder keeps it as
``dims.json`` (:attr:`qdrant_distill.folders.RunFolder.dims`) and the run's ``report.html`` draws it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["DimsReport", "DimsRow"]


class DimsRow(BaseModel):
    """One candidate dimension, measured on the plan's sample with the PCA projection only (no training)."""

    dim: int
    variance_kept: float = Field(description="share of the teacher space's variance the PCA keeps (0..1)")
    neighbour_recall_at_10: float = Field(description="held-out teacher-neighbour recall@10 against full size")
    spearman: float = Field(description="held-out Spearman of pairwise similarities against full size")
    ndcg_at_10: float | None = Field(default=None, description="projection-only nDCG@10 with --queries, else None")
    bytes_per_point: dict[str, int] = Field(description="vector bytes per point: float32, int8 (scalar), binary")
    bytes_collection: dict[str, int] = Field(description="the same for the whole collection")


class DimsReport(BaseModel):
    """The table for all candidates, with a recommendation and its reason (the user may override it)."""

    teacher_dim: int
    points: int
    sample_size: int
    holdout_size: int
    rows: list[DimsRow]
    recommended: int
    reason: str
    chosen: int | None = Field(default=None, description="the dimension the migration uses (--dim)")
    seconds: float = 0.0
