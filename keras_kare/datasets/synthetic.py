"""Figure 1's synthetic single-index regression (Schwab, Kelly, Malamud, Xu 2025).

x ~ N(0, I_d), w ~ N(0, I_d) redrawn per seed, u = γ xᵀw,
y = cos(u) / (1 + exp(u)) + σ ε with ε ~ N(0, 1); the n samples are split in
order into the first ``n_train`` for training and the rest for testing.

The draws follow the authors' generator exactly (legacy ``np.random`` stream
seeded with ``seed``: x, then w, then ε), so seed s reproduces their seed s.
"""

from __future__ import annotations

import numpy as np


def single_index_target(u: np.ndarray) -> np.ndarray:
    """The noise-free target cos(u) / (1 + exp(u)) of the linear index u = γ xᵀw."""
    return np.cos(u) / (1.0 + np.exp(u))


def make_single_index(
    gamma: float = 1.0,
    sigma: float = 0.0,
    n: int = 1000,
    d: int = 10,
    n_train: int = 800,
    seed: int = 0,
    dtype=np.float32,
):
    """Draw Figure 1's data set.

    Args:
        gamma: scale γ of the index (paper: 1, 1.25, 1.5).
        sigma: noise standard deviation σ (paper: 0, 0.1).
        n: total number of samples (paper 1000).
        d: input dimension (paper 10).
        n_train: the first ``n_train`` samples train, the rest test (paper 800).
        seed: random seed.
        dtype: dtype of the returned arrays.

    Returns:
        ``(x_train, y_train, x_test, y_test)`` with x of shape (·, d) and y of
        shape (·,).
    """
    if gamma <= 0 or not np.isfinite(gamma):
        raise ValueError(f"gamma must be a positive number, received {gamma!r}.")
    if sigma < 0 or not np.isfinite(sigma):
        raise ValueError(f"sigma must be >= 0, received {sigma!r}.")
    if not 2 <= n_train < n:
        raise ValueError(f"need 2 <= n_train < n, received n_train={n_train}, n={n}.")
    if d < 1:
        raise ValueError(f"d must be >= 1, received {d}.")
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d)
    w = rng.randn(d, 1)
    noise = rng.randn(n, 1) * sigma
    y = (single_index_target(gamma * x @ w) + noise)[:, 0]
    x, y = x.astype(dtype), y.astype(dtype)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def index_direction(seed: int = 0, n: int = 1000, d: int = 10) -> np.ndarray:
    """The direction w that :func:`make_single_index` draws for ``seed`` (same stream: x first, then w).

    ‖w‖ measures how hard a draw is: the larger γ‖w‖, the more oscillations
    the target has along the index (the draws on which the MSE-trained network
    fails in the paper's Figure 1 have large ‖w‖).

    Returns:
        float64 array of shape (d,).

    Example:
        >>> round(float(np.linalg.norm(index_direction(0))), 2)
        2.9
    """
    rng = np.random.RandomState(seed)
    rng.randn(n, d)
    return rng.randn(d, 1)[:, 0]
