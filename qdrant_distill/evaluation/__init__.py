"""Measuring students: teacher-neighbour fidelity, pseudo-query MRR, labelled retrieval (BEIR), STS.
"""

from qdrant_distill._lazy import face

_NAMES = {
    "fidelity": ".metrics",
    "FidelityEvaluator": ".metrics",
    "retrieval_metrics": ".metrics",
    "ndcg_at_k": ".metrics",
    "load_beir": ".beir",
    "BeirDataset": ".beir",
    "load_stsb": ".metrics",
    "sts_spearman": ".metrics",
    "spearman": ".metrics",
    "pseudo_query_mrr": ".metrics",
    "PRIMARY_METRIC": ".metrics",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = face(__name__, _NAMES, globals())
