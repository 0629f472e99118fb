"""The quality gate, in one home: what a student must reach before anything is written, measured on the backend it
will run on.

- thresholds come from :class:`~qdrant_distill.migration.config.GateConfig`;
- the metrics are the holdout's (label-free fidelity, :mod:`qdrant_distill.evaluation.metrics`) as the export measured them
  for that backend, plus labelled queries (a BEIR folder) answered through the run's encoder on that backend;
- an int8 graph that falls short where the fp32 graph passes is refused, and the student runs on fp32;
- verify's tolerance for re-encoded vectors depends on the same backend.

:func:`judge` takes the backend it judges as an argument and returns a :class:`GateReport`; recording the decision
(journal, export manifest) is the migration's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from qdrant_distill.evaluation.beir import load_beir
from qdrant_distill.evaluation.metrics import retrieval_metrics
from qdrant_distill.inference.encoders import as_encoder
from qdrant_distill.inference.formats import Backend, ExportManifest
from qdrant_distill.migration.config import GateConfig

__all__ = ["GateReport", "beir_metrics", "failure_text", "gate_failures", "judge", "labelled_metrics"]

logger = logging.getLogger(__name__)

Labelled = Callable[[Backend], dict[str, float]]  # backend -> labelled metrics of the run's encoder on it
DocVectors = Callable[[list[str]], np.ndarray]  # document ids -> their vectors in the new collection


class GateReport(BaseModel):
    """What the gate measured and decided: the backend judged (after any fallback), its metrics, what fell short,
    and a format it refused on the way (with why)."""

    backend: Backend
    metrics: dict[str, float] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    failures: list[dict[str, Any]] = Field(default_factory=list)
    refused: Backend | None = None
    refused_because: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def gate_failures(metrics: Mapping[str, float], thresholds: Mapping[str, float]) -> list[dict[str, Any]]:
    """The gate decision: every metric below its threshold, or missing, as ``{"metric", "value", "threshold",
    "short_by"}`` (``value`` and ``short_by`` None when missing). Empty when the gate passes; greater is better."""
    out: list[dict[str, Any]] = []
    for key, minimum in thresholds.items():
        value = metrics.get(key)
        if value is None or value < minimum:
            out.append({"metric": key, "value": value, "threshold": minimum,
                        "short_by": None if value is None else round(minimum - value, 4)})
    return out


def failure_text(failures: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{f['metric']} = {f['value']:.4f} < {f['threshold']} (short by {f['short_by']})" if f["value"] is not None
        else f"{f['metric']} missing" for f in failures
    )


def backend_metrics(manifest: ExportManifest | None, backend: Backend) -> dict[str, float]:
    """The holdout metrics the export measured for ``backend``: int8's own, else the torch model's (fp32 graphs
    reproduce it)."""
    if manifest is None:
        return {}
    check = manifest.checks.get(backend)
    return dict(check.metrics) if check and check.metrics else dict(manifest.reference_metrics)


def judge(gate: GateConfig, *, backend: Backend, distilled: Mapping[str, float], manifest: ExportManifest | None,
          labelled: Labelled | None = None) -> GateReport:
    """The gate on ``backend``; an int8 graph that falls short is judged again as the fp32 graph, which replaces it
    when that passes (the report names the refused format). When both fail, the report is int8's."""
    report = _on(gate, backend, distilled, manifest, labelled)
    if report.passed or backend is not Backend.ONNX_INT8 or manifest is None or not manifest.accepted(Backend.ONNX):
        return report
    fallback = _on(gate, Backend.ONNX, distilled, manifest, labelled)
    if not fallback.passed:
        return report
    reason = f"below the quality gate: {failure_text(report.failures)}"
    logger.warning("%s is not used: %s; the student runs on %s", backend, reason, fallback.backend)
    return fallback.model_copy(update={"refused": backend, "refused_because": reason})


def _on(gate: GateConfig, backend: Backend, distilled: Mapping[str, float], manifest: ExportManifest | None,
        labelled: Labelled | None) -> GateReport:
    metrics = {**distilled, **backend_metrics(manifest, backend)}
    if gate.queries and labelled is not None:
        metrics.update(labelled(backend))
    thresholds = gate.thresholds()
    return GateReport(backend=backend, metrics=metrics, thresholds=thresholds,
                      failures=gate_failures(metrics, thresholds))


# -- labelled queries -----------------------------------------------------------------------------------------------
def beir_metrics(encoder: Any, folder: str | Path, *, split: str = "test",
                 doc_vectors: DocVectors | None = None) -> dict[str, float]:
    """nDCG@10, recall@100 and MRR@10 of ``encoder`` (an :class:`~qdrant_distill.inference.encoders.Encoder`, or a model in
    memory) on a labelled
    BEIR folder (exact cosine search): queries encoded as queries, documents as documents, or given by
    ``doc_vectors`` (document ids -> vectors) when they do not come from the encoder (project modes: the projected
    stored vectors)."""
    encoder = as_encoder(encoder)
    data = load_beir(folder, split=split)
    docs = encoder.encode(data.doc_texts, kind="document") if doc_vectors is None else doc_vectors(data.doc_ids)
    queries = encoder.encode(data.queries, kind="query")
    return retrieval_metrics(queries, docs, data.qrels, data.query_ids, data.doc_ids)


def labelled_metrics(encoder: Any, folder: str | Path, *, split: str = "test",
                     doc_vectors: DocVectors | None = None) -> dict[str, float]:
    """:func:`beir_metrics` with the keys the gate checks (``labelled/ndcg@10``, ...)."""
    metrics = beir_metrics(encoder, folder, split=split, doc_vectors=doc_vectors)
    return {f"labelled/{k}": float(v) for k, v in metrics.items()}
