"""Row-wise vector maths shared by every layer (numpy only): unit rows, and the cosine of matching rows."""

from __future__ import annotations

import numpy as np

__all__ = ["row_cosines", "unit_rows"]

EPS = 1e-12  # a zero row stays zero instead of dividing by zero


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row of ``x`` scaled to length 1 (a zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), EPS)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b``."""
    return np.sum(unit_rows(a) * unit_rows(b), axis=1)
