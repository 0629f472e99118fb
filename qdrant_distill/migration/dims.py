"""Which dimension? The per-size table that the stored vectors alone can give (``plan --dims``), before training.

For each candidate dimension, on a sample of the collection's stored teacher vectors, with the PCA projection only
(no student, no re-embedding: numpy, seconds):

- the PCA is fitted on the sample's training part and measured on its held-out part (the points distillation holds
  out, :meth:`~qdrant_distill.migration.config.DistillConfig.holdout_split`): the share of their second moment it keeps, and
  projection-only fidelity: teacher-neighbour recall@10 and the Spearman of pairwise similarities against the
  full-size teacher (:func:`qdrant_distill.evaluation.metrics.fidelity`);
- with labelled queries (a BEIR folder whose corpus ids are point ids) and the teacher to encode them, projection-only
  nDCG@10: the teacher's query vectors and the stored document vectors, both projected;
- vector bytes per point and for the collection: float32, Qdrant's scalar (int8) and binary quantization;
- a recommendation with its reason: the smallest candidate within ``tolerance`` (1%) of the largest candidate on the
  table's metric (nDCG@10 when measured, else recall@10). The migration's ``--dim`` decides; the table only advises.

:func:`dims_report` works on vectors in memory; :func:`plan_dims` samples a collection as a migration does (the
Python form of ``plan --dims``). The run folder keeps the report as ``dims.json``
(:attr:`qdrant_distill.folders.RunFolder.dims`) and the run's ``report.html`` draws it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from qdrant_distill.connectors.base import Connector, Sample
from qdrant_distill.connectors.scroll import stored_vectors
from qdrant_distill.distillation.config import DistillConfig
from qdrant_distill.errors import ConfigError, DimensionError
from qdrant_distill.evaluation.beir import load_beir
from qdrant_distill.evaluation.metrics import fidelity, retrieval_metrics
from qdrant_distill.inference.projection import PCAProjection
from qdrant_distill.migration.config import MigrationConfig

__all__ = ["DEFAULT_CANDIDATES", "DEFAULT_TOLERANCE", "DimsReport", "DimsRow", "LabelledVectors", "default_dims",
           "dims_report", "kept_share", "labelled_vectors", "parse_dims", "plan_dims", "recommend", "vector_bytes"]

logger = logging.getLogger(__name__)

DEFAULT_CANDIDATES = (64, 128, 256, 384)  # those below the teacher's dimension, plus the migration's --dim
DEFAULT_TOLERANCE = 0.01  # the recommendation: the smallest size within 1% (relative) of the largest candidate
RECALL = "recall@10"
NDCG = "ndcg@10"


class DimsRow(BaseModel):
    """One candidate dimension, measured on the plan's sample with the PCA projection only (no training)."""

    dim: int
    variance_kept: float = Field(description="share of the teacher space's variance the PCA keeps (0..1), held out")
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
    seconds: float = Field(default=0.0, description="wall time of the table once the sample is drawn (the teacher "
                           "encoding labelled queries included)")
    sample_seconds: float = Field(default=0.0, description="wall time of drawing the sample (0: it was given)")
    metric: str = Field(default=RECALL, description="what the recommendation compares: recall@10 or ndcg@10")
    tolerance: float = Field(default=DEFAULT_TOLERANCE, description="relative shortfall the recommendation allows")
    teacher_ndcg_at_10: float | None = Field(default=None, description="the full-size teacher's nDCG@10, when measured")
    queries: int = Field(default=0, description="labelled queries behind ndcg_at_10 (0: label-free figures only)")
    notes: list[str] = Field(default_factory=list)

    def row(self, dim: int) -> DimsRow:
        return next(r for r in self.rows if r.dim == dim)

    @classmethod
    def read(cls, path: str | Path) -> DimsReport:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path

    def render(self) -> str:
        """The table as plain text (the terminal's, and the demo's)."""
        ndcg = self.queries > 0
        head = (f"{'dim':>5} {'variance':>9} {'recall@10':>10} {'spearman':>9}" + (f" {'nDCG@10':>8}" if ndcg else "")
                + f" {'B/pt f32':>9} {'int8':>6} {'binary':>7} {'all f32':>10} {'all int8':>10} {'all binary':>11}")
        lines = [f"dims        PCA only, fitted on {self.sample_size - self.holdout_size:,} sampled points; every "
                 f"column measured on {self.holdout_size:,} held out, of {self.points:,}; {self.seconds:.1f} s"
                 + (f" (+ {self.sample_seconds:.1f} s to sample)" if self.sample_seconds else ""), "  " + head]
        for r in self.rows:
            b, c = r.bytes_per_point, r.bytes_collection
            mark = " <- recommended" if r.dim == self.recommended else ""
            mark += " <- --dim" if r.dim == self.chosen else ""
            lines.append("  " + f"{r.dim:>5} {r.variance_kept:>9.3f} {r.neighbour_recall_at_10:>10.4f} "
                         f"{r.spearman:>9.4f}" + (f" {_opt(r.ndcg_at_10):>8}" if ndcg else "")
                         + f" {b['float32']:>9,} {b['int8']:>6,} {b['binary']:>7,} {_size(c['float32']):>10} "
                         f"{_size(c['int8']):>10} {_size(c['binary']):>11}{mark}")
        if self.teacher_ndcg_at_10 is not None:
            lines.append(f"  teacher {self.teacher_dim}-d: nDCG@10 {self.teacher_ndcg_at_10:.4f} on {self.queries:,} "
                         "queries")
        lines.append(f"recommended {self.recommended}: {self.reason}")
        if self.chosen is not None and self.chosen != self.recommended:
            lines.append(f"chosen      {self.chosen} (--dim decides; pass --dim {self.recommended} to follow the table)")
        lines += [f"note        {n}" for n in self.notes]
        return "\n".join(lines)


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _size(n: int) -> str:
    """Bytes as B, KB, MB, GB or TB (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n:,.1f} TB"


@dataclass(frozen=True)
class LabelledVectors:
    """Labelled queries in the teacher's space: the teacher's query vectors and the stored document vectors."""

    query_vecs: np.ndarray
    doc_vecs: np.ndarray
    qrels: Mapping[str, Mapping[str, float]]
    query_ids: Sequence[str]
    doc_ids: Sequence[str]

    def ndcg(self, projection: PCAProjection | None = None) -> float:
        """nDCG@10 by exact cosine, full size or both sides projected."""
        q, d = self.query_vecs, self.doc_vecs
        if projection is not None:
            q, d = projection.transform(q), projection.transform(d)
        return retrieval_metrics(q, d, self.qrels, self.query_ids, self.doc_ids)[NDCG]


# -- candidates and bytes -------------------------------------------------------------------------------------------
def parse_dims(text: str) -> list[int]:
    """``"64,128,256"`` -> ``[64, 128, 256]`` (sorted, duplicates dropped); anything else is one ConfigError."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError("--dims is empty", hint="give candidate sizes, e.g. --dims 64,128,256,384")
    try:
        dims = sorted({int(p) for p in parts})
    except ValueError:
        raise ConfigError(f"--dims takes whole numbers separated by commas, got {text!r}",
                          hint="e.g. --dims 64,128,256,384") from None
    if dims[0] < 1:
        raise DimensionError(f"candidate dimension {dims[0]} is not positive", hint="e.g. --dims 64,128,256,384")
    return dims


def default_dims(teacher_dim: int, chosen: int | None = None) -> list[int]:
    """The default candidates below ``teacher_dim``, plus ``chosen`` (the migration's ``--dim``)."""
    dims = {d for d in DEFAULT_CANDIDATES if d < teacher_dim}
    if chosen is not None and chosen < teacher_dim:
        dims.add(chosen)
    return sorted(dims)


def vector_bytes(dim: int) -> dict[str, int]:
    """Bytes of one ``dim``-d vector: ``float32`` (the original), ``int8`` (scalar quantization: one byte a
    coordinate) and ``binary`` (binary quantization: one bit a coordinate). A quantized copy comes in addition to the
    float32 original, which Qdrant keeps (on disk with ``on_disk``) to rescore; Qdrant's small per-vector overhead
    and the HNSW graph are not counted."""
    return {"float32": 4 * dim, "int8": dim, "binary": math.ceil(dim / 8)}


def _check_candidates(dims: Sequence[int], teacher_dim: int, fit_points: int) -> list[int]:
    if not dims:
        raise ConfigError("no candidate dimensions", hint="give candidate sizes, e.g. --dims 64,128,256,384")
    dims = sorted(set(dims))
    if dims[0] < 1 or dims[-1] >= teacher_dim:
        bad = dims[0] if dims[0] < 1 else dims[-1]
        raise DimensionError(f"candidate dimension {bad} is not between 1 and {teacher_dim - 1} (the teacher's is "
                             f"{teacher_dim})", hint=f"choose sizes below {teacher_dim}")
    if dims[-1] > fit_points:
        raise ConfigError(f"candidate dimension {dims[-1]} needs at least {dims[-1]} sampled points to fit its PCA "
                          f"on; the sample leaves {fit_points} after the holdout",
                          hint="raise --sample-size or drop that candidate")
    return dims


# -- the table ------------------------------------------------------------------------------------------------------
def dims_report(
    vectors: Any,
    dims: Sequence[int],
    *,
    points: int | None = None,
    holdout: DistillConfig | None = None,
    labelled: LabelledVectors | None = None,
    chosen: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> DimsReport:
    """The dimension table of sampled teacher vectors ``(n, teacher_dim)``.

    ``points`` is the collection's size (bytes for the whole collection; default ``n``). ``holdout`` says which points
    are held out, as distillation holds them out (default: ``DistillConfig()``'s 10%, seed 0), and whether the PCA is
    centred. ``labelled`` adds nDCG@10; ``chosen`` marks the size a migration uses. ``tolerance`` is the relative
    shortfall from the largest candidate that the recommendation accepts.
    """
    start = time.perf_counter()
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ConfigError(f"the dimension table needs a 2-d array of vectors, got shape {x.shape}")
    holdout = holdout or DistillConfig()
    fit_idx, hold_idx = holdout.holdout_split(len(x))
    if len(hold_idx) < 2:
        raise ConfigError(f"a sample of {len(x)} points leaves none to hold out for the dimension table",
                          hint="raise --sample-size")
    teacher_dim = int(x.shape[1])
    dims = _check_candidates(dims, teacher_dim, len(fit_idx))
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance must be in [0, 1), got {tolerance}")
    points = len(x) if points is None else points
    projections = PCAProjection.fit_many(x[fit_idx], dims, center=holdout.center)
    held = x[hold_idx]
    rows = [_row(dim, projections[dim], held, points, labelled) for dim in dims]
    metric = NDCG if labelled is not None else RECALL
    recommended, reason = recommend(rows, metric=metric, tolerance=tolerance)
    return DimsReport(
        teacher_dim=teacher_dim, points=points, sample_size=len(x), holdout_size=len(hold_idx), rows=rows,
        recommended=recommended, reason=reason, chosen=chosen, metric=metric, tolerance=tolerance,
        teacher_ndcg_at_10=labelled.ndcg() if labelled is not None else None,
        queries=len(labelled.query_ids) if labelled is not None else 0,
        seconds=round(time.perf_counter() - start, 3),
    )


def _row(dim: int, projection: PCAProjection, held: np.ndarray, points: int,
         labelled: LabelledVectors | None) -> DimsRow:
    scores = fidelity(projection.transform(held), held)
    per_point = vector_bytes(dim)
    return DimsRow(
        dim=dim, variance_kept=kept_share(projection, held),
        neighbour_recall_at_10=scores["fidelity/recall@10"], spearman=scores["fidelity/spearman"],
        ndcg_at_10=labelled.ndcg(projection) if labelled is not None else None,
        bytes_per_point=per_point, bytes_collection={k: v * points for k, v in per_point.items()},
    )


def kept_share(projection: PCAProjection, vectors: np.ndarray) -> float:
    """The share of ``vectors``' second moment (about the projection's mean) that the projection keeps. On held-out
    points: on the points it was fitted on, a sample not much larger than the dimension would keep nearly all."""
    x = np.asarray(vectors, dtype=np.float64) - projection.mean
    total = float((x**2).sum())
    return float(((x @ projection.components.T.astype(np.float64)) ** 2).sum() / total) if total > 0 else 0.0


def recommend(rows: Sequence[DimsRow], *, metric: str = RECALL,
              tolerance: float = DEFAULT_TOLERANCE) -> tuple[int, str]:
    """The smallest candidate whose ``metric`` is within ``tolerance`` (relative) of the largest candidate's, and
    why."""
    def value(row: DimsRow) -> float:
        v = row.ndcg_at_10 if metric == NDCG else row.neighbour_recall_at_10
        if v is None:
            raise ConfigError(f"the row of {row.dim} has no {metric}")
        return v

    rows = sorted(rows, key=lambda r: r.dim)
    largest = rows[-1]
    bar = (1 - tolerance) * value(largest)
    best = next(r for r in rows if value(r) >= bar)
    if best is largest:
        smaller = f"; {rows[-2].dim} keeps {value(rows[-2]):.4f}" if len(rows) > 1 else ""
        return largest.dim, (f"no smaller candidate is within {tolerance:.0%} of the largest's {metric} "
                             f"({largest.dim}: {value(largest):.4f}{smaller}); a larger size may keep more")
    return best.dim, (f"the smallest candidate within {tolerance:.0%} of the largest's {metric}: {value(best):.4f} "
                      f"against {value(largest):.4f} at {largest.dim}, {largest.dim / best.dim:.3g}x fewer bytes")


# -- from a collection ----------------------------------------------------------------------------------------------
def labelled_vectors(connector: Connector, collection: str, vector_name: str, folder: str | Path, *,
                     teacher: str, split: str = "test", api_key: Any = None) -> LabelledVectors:
    """A BEIR folder's queries encoded by the teacher, and the stored vectors of its documents (point ids)."""
    from qdrant_distill.inference.encoders import load_encoder

    data = load_beir(folder, split=split)
    docs = stored_vectors(connector, collection, vector_name, data.doc_ids)
    encoder = load_encoder(teacher, api_key=api_key)
    queries = encoder.encode(data.queries, kind="query")
    if queries.shape[1] != docs.shape[1]:
        raise DimensionError(f"the teacher encodes {queries.shape[1]}-d queries, the stored vectors are "
                             f"{docs.shape[1]}-d", hint="--teacher must be the model the collection was indexed with")
    return LabelledVectors(queries, docs, data.qrels, data.query_ids, data.doc_ids)


def plan_dims(
    config: MigrationConfig,
    connector: Connector,
    dims: Sequence[int] | None = None,
    *,
    collection: str | None = None,
    sample: Sample | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> DimsReport:
    """The dimension table of the migration ``config`` describes (``plan --dims``): candidates ``dims`` (default
    :func:`default_dims`) plus ``config.dim``, on a sample drawn as the migration draws it (or ``sample``), with
    nDCG@10 when ``config.gate.queries`` and ``config.teacher_model`` are both given."""
    name = collection or connector.resolve(config.source)[0]
    info = connector.describe(name)
    spec = info.vector(config.vector_name)
    teacher_dim = int(spec.size or 0)
    candidates = default_dims(teacher_dim) if dims is None else list(dims)
    candidates = sorted({*candidates, config.dim})
    sampled = time.perf_counter()
    if sample is None:
        sample = connector.sample(name, config.sample_size, text=config.text, vector_name=spec.name,
                                  seed=config.sample_seed)
    start = time.perf_counter()
    notes: list[str] = []
    labelled = None
    if config.gate.queries and config.teacher_model:
        key = config.embeddings_api_key.get_secret_value() if config.embeddings_api_key else None
        labelled = labelled_vectors(connector, name, spec.name, config.gate.queries, teacher=config.teacher_model,
                                    split=config.gate.split, api_key=key)
    elif config.gate.queries:
        notes.append("nDCG@10 needs the teacher to encode the queries (--teacher): label-free figures only")
    report = dims_report(sample.vectors, candidates, points=info.points_count, holdout=config.student,
                         labelled=labelled, chosen=config.dim, tolerance=tolerance)
    if config.sample_seed is None:
        notes.append("on a random sample like the migration's, not the same one (a sample_seed in the config makes "
                     "them the same)")
    return report.model_copy(update={"notes": notes, "seconds": round(time.perf_counter() - start, 3),
                                      "sample_seconds": round(start - sampled, 3)})
