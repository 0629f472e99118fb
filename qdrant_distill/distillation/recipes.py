"""The measured recipes: one home for how each student kind is trained, for each use.

A recipe is a set of :class:`~qdrant_distill.distillation.config.DistillConfig` values. :func:`with_recipe` puts them
in every field the user left unset, so ``DistillConfig(kind="static")`` trains the measured static recipe and a field
the user sets (``epochs=1``) stays theirs. ``distill``, ``migrate``, ``plan``, the demo and the benchmarks all take
their recipe from here; docs/benchmarks.md holds the measurements each recipe names.

Uses: ``symmetric`` (the student encodes documents and queries: ``reembed`` mode) and ``queries`` (documents keep the
projection of their stored vectors; the student encodes queries only: ``project`` mode).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from qdrant_distill.distillation.config import (
    DistillConfig,
    HeadInit,
    LossWeights,
    StudentKind,
)

__all__ = ["PRUNED_LR_BODY", "RECIPES", "Recipe", "Use", "recipe_for", "with_recipe"]

Use = Literal["symmetric", "queries"]
PRUNED_LR_BODY = 1e-4  # a pruned teacher's body must learn: its rate when none is given (docs/benchmarks.md)


class Recipe(BaseModel):
    """How a student kind is trained for a use, and what that reached where it was measured."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: StudentKind
    use: Use
    values: dict[str, Any]  # DistillConfig fields
    measured: str  # what it reached, and where (docs/benchmarks.md)
    cost: str  # what distilling costs on 2 CPU cores


_STATIC = Recipe(
    name="static-query-document",
    kind=StudentKind.STATIC,
    use="symmetric",
    # the token table starts as MiniLM's token vectors (SIF weights, ridge onto the targets), then trains mostly on the
    # search it will answer: each document's pseudo-query must find the student's own vector of that document among
    # the batch's (query_document) and the document's stored vector (pseudo_query), while documents stay on their
    # stored vectors (cosine + in-batch contrastive). Many short epochs: a fresh cut of every document each epoch.
    values={
        "epochs": 80,
        "batch_size": 256,
        "lr_static": 1e-2,
        "weight_decay": 0.0,
        "weights": LossWeights(mse=0.0, cosine=1.0, contrastive=1.0, kl=0.0, pseudo_query=1.0, query_document=1.0),
        "pseudo_query_negatives": "batch",
        "primary_metric": "pseudo_query/mrr@10",
        "eval_steps": 100,
        "early_stopping_patience": 100,
    },
    measured="SciFact, all-mpnet-base-v2 stored vectors, 128-d: nDCG@10 0.6157 (teacher 0.6557, its PCA-128 0.6178)",
    # no default time budget: a budget makes the result depend on how busy the machine is (--time-budget sets one)
    cost="1,440 steps of 256 documents for a 5,000-point sample, after MiniLM encodes its vocabulary once",
)

_TRANSFORMER = Recipe(
    name="transformer-frozen-body",
    kind=StudentKind.TRANSFORMER,
    use="symmetric",
    values={},  # DistillConfig's own defaults: the body frozen, the head from the body's PCA rotated onto the targets
    measured="SciFact 128-d: holdout fidelity at its untrained start (the head adds little over the body's own PCA)",
    cost="one encoding pass of the sample by the base model, then seconds per epoch",
)

_PRUNED = Recipe(
    name="pruned-teacher-body",
    kind=StudentKind.PRUNED,
    use="symmetric",
    # the removed layers are what the kept ones and the head were fitted after: the body must learn
    values={"lr_body": PRUNED_LR_BODY, "lr_head": 1e-4, "weights": LossWeights(mse=1.0, contrastive=0.0, kl=0.0,
                                                                      pseudo_query=0.2)},
    measured="SciFact 128-d, mpnet with 4 of 12 layers: see docs/benchmarks.md (pruned rows)",
    cost="a full fine-tuning step of the pruned teacher per batch (~5 s for 16 abstracts here)",
)

# query students (project mode): pseudo-queries contrasted against every training target, the kept state chosen by
# the holdout pseudo-query MRR
_QUERY_COMMON: dict[str, Any] = {
    "weights": LossWeights(mse=0.0, cosine=0.0, contrastive=0.0, kl=0.0, pseudo_query=1.0),
    "pseudo_query_negatives": "sample",
    "primary_metric": "pseudo_query/mrr@10",
    "batch_size": 64,
    "early_stopping_patience": 3,
}
_TRANSFORMER_QUERIES = Recipe(
    name="query-transformer-ridge",
    kind=StudentKind.TRANSFORMER,
    use="queries",
    values={**_QUERY_COMMON, "head_init": HeadInit.RIDGE, "lr_head": 1e-3, "epochs": 8},
    measured="SciFact, documents = PCA-128 of mpnet's stored vectors: nDCG@10 0.558 (teacher + PCA-128 0.6178)",
    cost="one encoding pass of the sample by the base model, then seconds per epoch",
)
_PRUNED_QUERIES = Recipe(
    name="query-pruned-teacher",
    kind=StudentKind.PRUNED,
    use="queries",
    values={**_QUERY_COMMON, "lr_body": 5e-5, "lr_head": 1e-4, "epochs": 3},
    measured="SciFact, documents = PCA-128 of mpnet's stored vectors: see docs/benchmarks.md (query student rows)",
    cost="the pruned teacher trained on short pseudo-queries, 3 epochs",
)
_STATIC_QUERIES = _STATIC.model_copy(update={"use": "queries", "name": "static-query-document"})

RECIPES: dict[tuple[StudentKind, str], Recipe] = {
    (r.kind, r.use): r for r in (_STATIC, _TRANSFORMER, _PRUNED, _TRANSFORMER_QUERIES, _PRUNED_QUERIES,
                                 _STATIC_QUERIES)
}


def recipe_for(kind: StudentKind | str, use: Use = "symmetric") -> Recipe:
    """The measured recipe of a student kind for a use."""
    return RECIPES[(StudentKind(kind), use)]


def with_recipe(config: DistillConfig, use: Use = "symmetric") -> DistillConfig:
    """``config`` with its recipe's values in every field the user left unset (a field set stays as set). A config
    that already names its recipe is returned as it is."""
    if config.recipe is not None:
        return config
    recipe = recipe_for(config.kind, use)
    if use == "queries" and not config.pseudo_queries and config.kind is not StudentKind.STATIC:
        return config  # the query recipes train on pseudo-queries: without them, the user's own recipe runs
    update = {k: v.model_copy() if isinstance(v, BaseModel) else v for k, v in recipe.values.items()
              if k not in config.model_fields_set}
    return config.model_copy(update={**update, "recipe": recipe.name})
