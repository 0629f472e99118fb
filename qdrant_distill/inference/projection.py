"""The teacher space: a PCA of the stored teacher vectors, to the target dimension.

The projection maps the teacher's vectors (e.g. 768-d) to the student's space (e.g. 128-d). It is fitted by a float64
SVD, centred or not (uncentred keeps cosine geometry better on normalised embeddings: the mean direction carries
similarity too), and exports as a sentence-transformers ``Dense`` layer (identity activation) optionally followed by
``Normalize``, so that "teacher + projection" is itself a model: the projection-only mode and the baseline every
student must beat.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qdrant_distill._compat import embedding_dimension, st_models
from qdrant_distill.errors import ConfigError, DimensionError, InvalidVectors
from qdrant_distill.vectors import unit_rows

__all__ = ["PCAProjection", "projection_model"]

logger = logging.getLogger(__name__)


def _check_vectors(vectors: Any, name: str = "vectors") -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise InvalidVectors(f"{name} must be a non-empty 2-d array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidVectors(f"{name} contain non-finite values (NaN or inf)", hint="drop or fix those points")
    return arr


@dataclass(frozen=True, eq=False)
class PCAProjection:
    """A linear map ``y = components @ (x - mean)`` from ``in_dim`` to ``dim``.

    ``components`` is ``(dim, in_dim)`` with orthonormal rows; ``mean`` is zeros when uncentred;
    ``explained_variance_ratio`` is the share of the (centred or uncentred) second moment kept, in total.
    """

    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: float
    center: bool = False

    @property
    def in_dim(self) -> int:
        return int(self.components.shape[1])

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, vectors: Any, dim: int, *, center: bool = False) -> PCAProjection:
        """Fit on ``(n, in_dim)`` vectors. ``dim`` must be in ``[1, in_dim)``; it is clamped to ``n`` with a warning."""
        return cls.fit_many(vectors, [dim], center=center)[dim]

    @classmethod
    def fit_many(cls, vectors: Any, dims: Sequence[int], *, center: bool = False) -> dict[int, PCAProjection]:
        """One projection per dimension in ``dims`` from a single SVD (the same as :meth:`fit` of each)."""
        x = _check_vectors(vectors).astype(np.float64)
        n, in_dim = x.shape
        for dim in dims:
            if dim < 1 or dim >= in_dim:
                raise DimensionError(
                    f"target dimension {dim} must be between 1 and {in_dim - 1} (the teacher's is {in_dim})",
                    dim=dim,
                    in_dim=in_dim,
                )
        mean = x.mean(axis=0) if center else np.zeros(in_dim)
        # rows of vt are the principal directions, s**2 their share of the second moment
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        total = float((s**2).sum())
        # a deterministic sign: the largest-magnitude coordinate of each component is positive
        signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
        vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
        fitted = {dim: cls._truncated(vt, s, total, mean, dim, n=n, center=center) for dim in dims}
        logger.info(
            "PCA %d -> %s (%s) fitted on %d vectors keeps %s of their variance (of the fitted vectors, not held out)",
            in_dim,
            ", ".join(str(p.dim) for p in fitted.values()),
            "centred" if center else "uncentred",
            n,
            ", ".join(f"{100 * p.explained_variance_ratio:.1f}%" for p in fitted.values()),
        )
        return fitted

    @classmethod
    def _truncated(cls, vt: np.ndarray, s: np.ndarray, total: float, mean: np.ndarray, dim: int, *, n: int,
                   center: bool) -> PCAProjection:
        """The first ``dim`` principal directions of ``n`` vectors (clamped to ``n``, with a warning)."""
        if dim > n:
            logger.warning("target dimension %d is larger than the %d samples: clamped to %d", dim, n, n)
            dim = n
        ratio = float((s[:dim] ** 2).sum() / total) if total > 0 else 0.0
        return cls(
            components=vt[:dim].astype(np.float32),
            mean=mean.astype(np.float32),
            explained_variance_ratio=ratio,
            center=center,
        )

    def transform(self, x: Any, normalize: bool = True) -> np.ndarray:
        """Project ``(n, in_dim)`` (or one ``(in_dim,)``) vectors; L2-normalised unless ``normalize=False``."""
        arr = np.asarray(x, dtype=np.float32)
        single = arr.ndim == 1
        arr = _check_vectors(arr[None, :] if single else arr)
        if arr.shape[1] != self.in_dim:
            raise InvalidVectors(f"vectors are {arr.shape[1]}-d, the projection expects {self.in_dim}-d")
        y = (arr - self.mean) @ self.components.T
        if normalize:
            y = unit_rows(y)
        y = y.astype(np.float32)
        return y[0] if single else y

    # ---------------------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (the suffix is added when missing) and return its path."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez(
                fh,
                components=self.components,
                mean=self.mean,
                explained_variance_ratio=np.float64(self.explained_variance_ratio),
                center=np.bool_(self.center),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> PCAProjection:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"no projection file {path}")
        with np.load(path) as data:
            return cls(
                components=np.asarray(data["components"], dtype=np.float32),
                mean=np.asarray(data["mean"], dtype=np.float32),
                explained_variance_ratio=float(data["explained_variance_ratio"]),
                center=bool(data["center"]),
            )

    # ---------------------------------------------------------------------------------------------- export
    def to_module(self, normalize: bool = True) -> list[Any]:
        """sentence-transformers modules computing :meth:`transform`: ``Dense`` (identity) [+ ``Normalize``]."""
        import torch

        models = st_models()
        weight = torch.from_numpy(self.components.astype(np.float32).copy())
        bias = torch.from_numpy((-(self.components @ self.mean)).astype(np.float32))
        dense = models.Dense(
            in_features=self.in_dim,
            out_features=self.dim,
            bias=True,
            activation_function=torch.nn.Identity(),
            init_weight=weight,
            init_bias=bias,
        )
        return [dense, models.Normalize()] if normalize else [dense]


def projection_model(teacher: Any, projection: PCAProjection, *, normalize: bool = True) -> Any:
    """The teacher followed by the projection: a ``SentenceTransformer`` encoding straight into the target space.

    The teacher's modules are reused (not copied); a trailing ``Normalize`` of the teacher is kept, since the stored
    vectors the projection was fitted on are the teacher's normalised outputs.
    """
    from sentence_transformers import SentenceTransformer

    out_dim = embedding_dimension(teacher)
    if out_dim != projection.in_dim:
        raise DimensionError(
            f"the teacher encodes {out_dim}-d vectors, the projection expects {projection.in_dim}-d",
            dim=projection.dim,
            in_dim=out_dim,
        )
    modules = [teacher[i] for i in range(len(teacher))]
    model = SentenceTransformer(modules=[*modules, *projection.to_module(normalize)], device=str(teacher.device))
    model.max_seq_length = teacher.max_seq_length
    return model
