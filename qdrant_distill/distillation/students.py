"""Three kinds of student, each a plain ``SentenceTransformer`` that encodes into the target space.

- ``transformer``: any sentence-transformers model (the *body*) + a ``Dense`` head to the target dimension +
  ``Normalize``. The head starts from least squares onto the targets (``ridge``), or from the uncentred PCA of the
  body's own vectors rotated onto the targets (``own_pca``: keeps the body's geometry, so short queries stay where the
  body puts them), or at random.
- ``pruned``: the teacher itself with k of its n layers kept (evenly spaced, first and last kept) + the PCA
  projection as head: it starts in the teacher's own target space.
- ``static``: a bag of token embeddings (sentence-transformers' ``StaticEmbedding``: mean of per-token vectors) over
  a transformer's vocabulary, initialised by passing every token through that transformer, weighting tokens by
  rarity and mapping the result into the target space by least squares. Hundreds of times faster than a transformer.

Builders take objects (a loaded body, arrays of vectors); loading one is :func:`qdrant_distill.inference.encoders.load_body`.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch

from qdrant_distill._compat import embedding_dimension, st_models
from qdrant_distill.distillation.config import HeadInit
from qdrant_distill.errors import DimensionError, StudentError
from qdrant_distill.inference.encoders import load_body
from qdrant_distill.inference.projection import PCAProjection

__all__ = [
    "add_head",
    "body_and_head",
    "fit_head",
    "freeze_lower_layers",
    "head_start",
    "load_body",
    "prune_layers",
    "pruned_student",
    "static_student",
    "token_vectors",
    "transformer_student",
]

logger = logging.getLogger(__name__)

DEFAULT_RIDGE_ALPHA = 1e-2
SIF_A = 1e-3  # smooth inverse frequency constant for static token weights


def _modules(model: Any) -> list[Any]:
    return [model[i] for i in range(len(model))]


def add_head(body: Any, weight: np.ndarray | None, bias: np.ndarray | None = None, *, dim: int | None = None) -> Any:
    """``body`` + ``Dense`` (identity activation; ``weight`` is ``(dim, in_dim)``, random when None) + ``Normalize``."""
    from sentence_transformers import SentenceTransformer

    models = st_models()
    in_dim = embedding_dimension(body)
    out_dim = int(weight.shape[0]) if weight is not None else dim
    if out_dim is None:
        raise StudentError("add_head needs a weight or a dimension")
    dense = models.Dense(
        in_features=in_dim,
        out_features=out_dim,
        bias=True,
        activation_function=torch.nn.Identity(),
        # copies: the head trains in place and must not write into the caller's arrays
        init_weight=None if weight is None else torch.tensor(np.asarray(weight, dtype=np.float32)),
        init_bias=torch.zeros(out_dim) if bias is None else torch.tensor(np.asarray(bias, dtype=np.float32)),
    )
    model = SentenceTransformer(modules=[*_modules(body), dense, models.Normalize()], device=str(body.device))
    model.max_seq_length = body.max_seq_length
    return model


def head_start(model: Any) -> int:
    """Index of the first head module: the trailing run of ``Dense`` and ``Normalize`` modules is the head."""
    models = st_models()
    mods = _modules(model)
    first_head = len(mods)
    while first_head > 0 and isinstance(mods[first_head - 1], (models.Dense, models.Normalize)):
        first_head -= 1
    return first_head


def body_and_head(model: Any) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """Split a student's parameters: the trailing ``Dense`` layers are the head, everything before is the body."""
    mods = _modules(model)
    first_head = head_start(model)
    body = [p for m in mods[:first_head] for p in m.parameters()]
    head = [p for m in mods[first_head:] for p in m.parameters()]
    return body, head


def freeze_lower_layers(model: Any, trainable: int) -> list[torch.nn.Parameter]:
    """Freeze the embeddings and all but the top ``trainable`` encoder layers; the body parameters left to train.

    Backward passes then stop at the first trainable layer, which is most of the cost of training a body on a CPU.
    """
    auto, layers = _encoder_layers(model)
    keep = min(max(trainable, 0), len(layers))
    train_ids = {id(p) for layer in list(layers)[len(layers) - keep :] for p in layer.parameters()}
    for p in auto.parameters():
        p.requires_grad_(id(p) in train_ids)
    return [p for p in auto.parameters() if id(p) in train_ids]


# ------------------------------------------------------------------------------------------------------------ heads
def fit_head(
    body_vecs: np.ndarray,
    targets: np.ndarray,
    mode: HeadInit | str,
    *,
    alpha: float = DEFAULT_RIDGE_ALPHA,
) -> np.ndarray | None:
    """The head's initial ``(dim, in_dim)`` weight from the body's vectors of the training texts and their targets."""
    mode = HeadInit(mode)
    x = np.asarray(body_vecs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    dim = t.shape[1]
    if mode is HeadInit.RANDOM:
        return None
    if mode is HeadInit.RIDGE:
        # W^T = (X^T X + lambda I)^-1 X^T T, no bias (the targets are an uncentred projection); lambda is alpha
        # times the mean eigenvalue of X^T X, so alpha does not depend on the scale of the vectors
        gram = x.T @ x
        gram += alpha * max(np.trace(gram) / x.shape[1], 1e-12) * np.eye(x.shape[1])
        return np.linalg.solve(gram, x.T @ t).T.astype(np.float32)
    if dim >= x.shape[1]:
        raise DimensionError(f"the body is {x.shape[1]}-d: cannot take its PCA to {dim}", dim=dim, in_dim=x.shape[1])
    # own PCA, then the rotation R minimising ||X P^T R - T|| (orthogonal Procrustes): geometry kept, basis aligned
    pca = PCAProjection.fit(x, dim, center=False)
    p = pca.components.astype(np.float64)
    u, _, vt = np.linalg.svd((x @ p.T).T @ t)
    rotation = u @ vt
    return (rotation.T @ p).astype(np.float32)


def transformer_student(body: Any, head_weight: np.ndarray | None, *, dim: int | None = None) -> Any:
    """A transformer student: a copy of ``body`` with a head (``head_weight`` from :func:`fit_head`)."""
    return add_head(copy.deepcopy(body), head_weight, dim=dim)


# ------------------------------------------------------------------------------------------------------------ pruned
def _encoder_layers(model: Any) -> tuple[Any, torch.nn.ModuleList]:
    auto = getattr(model[0], "auto_model", None)
    layers = getattr(getattr(auto, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise StudentError(
            f"cannot prune {type(auto).__name__}: no encoder.layer list",
            hint="layer pruning supports BERT-like encoders (BERT, MiniLM, MPNet, RoBERTa); choose another kind",
        )
    return auto, layers


def prune_layers(model: Any, keep: int) -> list[int]:
    """Keep ``keep`` of the encoder's layers, evenly spaced with the first and last kept, in place; the kept indices."""
    auto, layers = _encoder_layers(model)
    n = len(layers)
    if not 1 <= keep <= n:
        raise StudentError(f"cannot keep {keep} of {n} layers", hint=f"choose 1..{n}")
    kept = sorted({int(i) for i in np.rint(np.linspace(0, n - 1, keep))}) if keep > 1 else [0]
    auto.encoder.layer = torch.nn.ModuleList([layers[i] for i in kept])
    auto.config.num_hidden_layers = len(kept)
    logger.info("pruned the encoder from %d to %d layers: kept %s", n, len(kept), kept)
    return kept


def pruned_student(teacher: Any, projection: PCAProjection, keep: int) -> Any:
    """A copy of the teacher with ``keep`` layers, followed by the projection (``Dense`` + ``Normalize``)."""
    from sentence_transformers import SentenceTransformer

    if embedding_dimension(teacher) != projection.in_dim:
        raise DimensionError(
            f"the teacher encodes {embedding_dimension(teacher)}-d vectors, the stored ones are {projection.in_dim}-d",
            dim=projection.dim,
            in_dim=projection.in_dim,
        )
    model = copy.deepcopy(teacher)
    prune_layers(model, keep)
    student = SentenceTransformer(modules=[*_modules(model), *projection.to_module()], device=str(teacher.device))
    student.max_seq_length = teacher.max_seq_length
    return student


# ------------------------------------------------------------------------------------------------------------ static
def _fast_tokenizer(body: Any) -> Any:
    from tokenizers import Tokenizer

    tok = getattr(body[0], "tokenizer", None)
    raw = getattr(tok, "_tokenizer", tok)
    if not isinstance(raw, Tokenizer):
        raise StudentError("a static student needs a body with a fast (Rust) tokenizer")
    copy_ = Tokenizer.from_str(raw.to_str())  # StaticEmbedding changes padding; leave the body's tokenizer alone
    copy_.no_truncation()
    copy_.no_padding()
    return copy_


@torch.no_grad()
def token_vectors(body: Any, *, batch_size: int = 1024, source: str = "body") -> np.ndarray:
    """One vector per vocabulary id: the body's output for ``[CLS] token [SEP]`` (``source="body"``, model2vec's
    recipe) or the input embedding matrix (``source="input"``, cheaper and weaker)."""
    auto = getattr(body[0], "auto_model", None)
    if auto is None:
        raise StudentError("a static student needs a transformer body")
    if source == "input":
        return auto.get_input_embeddings().weight.detach().cpu().numpy().astype(np.float32)
    tok = body[0].tokenizer
    vocab = auto.get_input_embeddings().weight.shape[0]
    cls_id, sep_id = tok.cls_token_id, tok.sep_token_id
    out = np.empty((vocab, embedding_dimension(body)), dtype=np.float32)
    was_training = body.training
    body.eval()
    for start in range(0, vocab, batch_size):
        ids = torch.arange(start, min(start + batch_size, vocab))
        cols = [ids[:, None]]
        if cls_id is not None:
            cols.insert(0, torch.full_like(ids[:, None], cls_id))
        if sep_id is not None:
            cols.append(torch.full_like(ids[:, None], sep_id))
        input_ids = torch.cat(cols, dim=1).to(body.device)
        features = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        if "token_type_ids" in getattr(tok, "model_input_names", []):
            features["token_type_ids"] = torch.zeros_like(input_ids)
        for module in _modules(body):
            features = module(features)
        out[start : start + len(ids)] = features["sentence_embedding"].float().cpu().numpy()
    body.train(was_training)
    return out


def static_student(
    body: Any,
    texts: list[str],
    targets: np.ndarray,
    *,
    token_source: str = "body",
    alpha: float = DEFAULT_RIDGE_ALPHA,
) -> Any:
    """A ``StaticEmbedding`` student in the target space, initialised from ``body`` and the (text, target) pairs.

    Token vectors from the body are weighted by smooth inverse frequency over ``texts`` (frequent tokens count less)
    and mapped to the target space by ridge regression from the texts' mean token vectors onto their targets (a
    linear map commutes with the mean, so mapping every token is exact).
    """
    from sentence_transformers import SentenceTransformer

    models = st_models()
    tokenizer = _fast_tokenizer(body)
    vecs = token_vectors(body, source=token_source).astype(np.float64)
    # rarity weights from token frequencies in the training texts
    ids = [enc.ids for enc in tokenizer.encode_batch(list(texts), add_special_tokens=False)]
    counts = np.bincount(np.concatenate([np.asarray(i, dtype=np.int64) for i in ids] or [np.zeros(0, np.int64)]),
                         minlength=len(vecs))[: len(vecs)]
    prob = counts / max(counts.sum(), 1)
    vecs *= (SIF_A / (SIF_A + prob))[:, None]
    # mean token vector of each text, then least squares onto the targets
    feats = np.stack([vecs[i].mean(axis=0) if len(i) else np.zeros(vecs.shape[1]) for i in ids])
    weight = fit_head(feats, targets, HeadInit.RIDGE, alpha=alpha).astype(np.float64)
    table = (vecs @ weight.T).astype(np.float32)
    static = models.StaticEmbedding(tokenizer, embedding_weights=table)
    return SentenceTransformer(modules=[static, models.Normalize()], device="cpu")
