"""Nyström kernel ridge regression in float64: centres, the m-dimensional system, its ridge path.

Conventions follow exact KRR (Schwab et al. 2025, :mod:`keras_kare.ridge`):
``f̂(x) = (1/n) K(x, X) α`` with ``α = (K/n + λI)⁻¹ Y``. Nyström KRR
(Williams & Seeger 2001; Rudi, Camoriano & Rosasco 2015) restricts the
estimator to the span of m centres C ⊂ X, ``f(x) = K(x, C) β``, and minimises
the same objective ``(1/n)‖Y − K_nC β‖² + λ βᵀ K_CC β``:

    β = (K_nCᵀ K_nC / n + λ K_CC)⁺ K_nCᵀ Y / n.

This equals exact KRR on the Nyström approximation ``K̃ = K_nC K_CC⁺ K_Cn``
and, with every training point a centre (m = n), exact KRR itself
(``n β = α``). Numerically: ``K_CC = U diag(s) Uᵀ``; directions with ``s``
below the Gram's own round-off (``eps · ‖K_CC‖_F``, eps of the dtype the
Gram was computed in) carry no information and are dropped; with
``T = U_r diag(s_r^{-1/2})`` the features ``Φ = K_nC T`` (never formed: only
``K_nCᵀ K_nC`` and ``K_nCᵀ Y`` are accumulated, block by block) turn the
problem into ridge regression in r ≤ m dimensions, and one eigendecomposition
``TᵀK_nCᵀK_nC T / n = V diag(d) Vᵀ`` serves every ridge:

- coefficients ``β(λ) = T V diag(1/(d + λ)) Vᵀ TᵀK_nCᵀY/n``;
- hat matrix ``H = Φ(ΦᵀΦ/n + λI)⁻¹Φᵀ/n`` with eigenvalues ``d/(d + λ)`` (and 0),
  so KARE (= GCV) ``mean((I−H)Y)² / (1 − tr H / n)²`` and the training MSE are
  exact for the Nyström estimator, from m-dimensional quantities.

The exact leave-one-out MSE needs ``diag H``, an n-row pass per ridge; it is
not computed (``loo_mse`` is NaN on a Nyström ridge path).
What is approximate: the estimator itself (K̃ for K). What is exact: its
predictions, KARE, training MSE and ``tr K`` (for the relative ridge) — the
trace is accumulated from the diagonal blocks of the true Gram.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger("keras_kare")

DEFAULT_N_CENTERS = 4096
"""Centres used when ``n_centers=None``: ``min(n, DEFAULT_N_CENTERS)``."""


def check_n_centers(n_centers) -> None:
    """None or an int ≥ 1 (a value above n is clamped to n at fit time)."""
    if n_centers is None:
        return
    if isinstance(n_centers, bool) or not isinstance(n_centers, numbers.Integral):
        raise TypeError(f"n_centers must be a positive int or None, received {n_centers!r}.")
    if n_centers < 1:
        raise ValueError(f"n_centers must be a positive int or None, received {n_centers!r}.")


def check_seed(seed) -> None:
    """None or an int (the seed of the uniform centre sample)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be an int or None, received {seed!r}.")


def resolve_n_centers(n_centers, n: int) -> int:
    """The number of centres for n training examples; more than n is clamped to n (logged)."""
    if n_centers is None:
        return min(n, DEFAULT_N_CENTERS)
    if n_centers > n:
        logger.warning("keras_kare: n_centers=%d exceeds the %d training examples; using all %d.", n_centers, n, n)
        return n
    return int(n_centers)


def sample_centers(n: int, m: int, seed) -> np.ndarray:
    """Sorted indices of m centres drawn uniformly without replacement (all of them, in order, if m = n)."""
    if m >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))


class Accumulator:
    """Streams row blocks of ``K_nC`` into ``K_nCᵀ K_nC``, ``K_nCᵀ Y``, ``‖Y‖²`` (float64, O(m²) memory)."""

    def __init__(self, n_cols: int, n_targets: int):
        self.ktk = np.zeros((n_cols, n_cols))
        self.kty = np.zeros((n_cols, n_targets))
        self.y_sq = 0.0
        self.n_rows = 0

    def add(self, k_block: np.ndarray, y_block: np.ndarray) -> None:
        """Add rows: ``k_block`` (b, q) of K_nC, ``y_block`` (b, C) of Y."""
        k_block = np.asarray(k_block, dtype=np.float64)
        self.ktk += k_block.T @ k_block  # NumPy uses syrk for Aᵀ A
        self.kty += k_block.T @ y_block
        self.y_sq += float(np.sum(np.square(y_block)))
        self.n_rows += k_block.shape[0]


@dataclass(frozen=True)
class NystromSystem:
    """The m-dimensional summary of a Nyström KRR problem (see the module docstring).

    Attributes:
        transform: T, (q, r) with q the number of centre rows (m, or m·C for ``kernel="full"``).
        eigenvalues: d, (r,) positive eigenvalues of ``TᵀK_nCᵀK_nC T / n``.
        eigenvectors: V, (r, r).
        proj: ``Vᵀ TᵀK_nCᵀ Y / n``, (r, C).
        y_sq: ``‖Y‖²_F``.
        n_rows: n (or n·C for ``kernel="full"``): the rows of the training Gram.
        trace: tr K of the full training Gram.
    """

    transform: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    proj: np.ndarray
    y_sq: float
    n_rows: int
    trace: float

    ARRAYS = ("transform", "eigenvalues", "eigenvectors", "proj")
    SCALARS = ("y_sq", "n_rows", "trace")

    decomposed = True  # the m-dimensional eigendecomposition is part of the system

    def coefficients(self, lam: float) -> np.ndarray:
        """β(λ), (q, C): predictions are ``K(x, C) β``."""
        if lam + self.eigenvalues.min(initial=np.inf) <= 0:
            raise ValueError(f"the ridge must be positive, received {lam!r}.")
        return self.transform @ (self.eigenvectors @ (self.proj / (self.eigenvalues[:, None] + lam)))

    def dual_coef(self, lam: float) -> np.ndarray:
        """``n β(λ)``, (q, C): predictions are ``K(x, C) α / n_rows`` as for the exact system."""
        return self.n_rows * self.coefficients(lam)

    def kernel_eigenvalues(self) -> np.ndarray:
        """The n ascending eigenvalues of K̃ = K_nC K_CC⁺ K_Cn (at most r non-zero; the rest are zeros)."""
        s = np.zeros(self.n_rows)
        s[self.n_rows - self.eigenvalues.size :] = np.sort(self.n_rows * self.eigenvalues)
        return s

    def path(self, lambdas: np.ndarray, verbose=0, below_level: int = logging.WARNING):
        """KARE, LOO MSE (NaN: not available for Nyström) and training MSE for each absolute λ.

        ``verbose`` and ``below_level`` are accepted for the common interface; the m-dimensional
        path needs no progress bar, and its eigenvalues are clipped positive.
        """
        d = self.eigenvalues[:, None]
        n, c = self.n_rows, self.proj.shape[1]
        energy = n * self.proj**2 / d  # |Qᵀ Y|² per direction, Φ/√n = Q diag(√d) Vᵀ
        kare_vals, train = [], []
        for lam in np.asarray(lambdas, dtype=np.float64):
            shrink = lam / (d + lam)
            # ‖(I−H)Y‖² = ‖Y‖² − Σ |QᵀY|² (1 − shrink²); round-off can push a near-zero value below 0
            resid = max(self.y_sq - float(np.sum(energy * (1.0 - shrink**2))), 0.0)
            num = resid / (n * c)
            den = 1.0 - float(np.sum(d / (d + lam))) / n
            kare_vals.append(num / den**2)
            train.append(num)
        r = len(kare_vals)
        return np.array(kare_vals), np.full(r, np.nan), np.array(train)

    def predict_path(self, k_x: np.ndarray, lambdas: np.ndarray, below_level: int = logging.WARNING) -> np.ndarray:
        """``K(x, C) β(λ)`` for each λ, (R, rows of ``k_x``, C).

        The reduced system keeps only directions of positive eigenvalue, so
        every λ > 0 is defined (``below_level``: the common interface's, unused).
        """
        return np.stack([k_x @ self.coefficients(lam) for lam in lambdas])

    def state(self, include_kernel: bool = True) -> tuple[dict, dict]:
        """(scalars, arrays) to save, named ``nystrom_<field>`` (``include_kernel``: no n × n Gram is held)."""
        return (
            {f"nystrom_{f}": getattr(self, f) for f in self.SCALARS},
            {f"nystrom_{f}": getattr(self, f) for f in self.ARRAYS},
        )

    @classmethod
    def from_state(cls, scalars: dict, arrays: dict, y=None, kernel=None) -> "NystromSystem":
        """Inverse of :meth:`state` (``y`` and ``kernel`` are accepted for the common interface)."""
        return cls(*(arrays[f"nystrom_{f}"] for f in cls.ARRAYS), *(scalars[f"nystrom_{f}"] for f in cls.SCALARS))


def solve_system(k_cc: np.ndarray, acc: Accumulator, trace: float, eps: float) -> NystromSystem:
    """Reduce the accumulated blocks to a :class:`NystromSystem`.

    Args:
        k_cc: (q, q) symmetric float64 Gram of the centres.
        acc: the accumulated ``K_nCᵀ K_nC``, ``K_nCᵀ Y`` over all n rows.
        trace: tr K of the full training Gram.
        eps: machine epsilon of the dtype the Gram was computed in: centre
            directions with eigenvalue below ``eps · ‖K_CC‖_F`` are dropped.

    Raises:
        FloatingPointError: the centre Gram has no direction above round-off
            (a zero kernel, or NaN).
    """
    k_cc = np.asarray(k_cc, dtype=np.float64)
    if not np.all(np.isfinite(k_cc)) or not np.all(np.isfinite(acc.ktk)):
        raise FloatingPointError("the Nyström Gram blocks contain NaN or inf; check the inputs and the weights.")
    s, u = np.linalg.eigh(0.5 * (k_cc + k_cc.T))
    keep = s > eps * np.sqrt(np.sum(s**2))
    if not np.any(keep):
        raise FloatingPointError(
            "the Gram of the Nyström centres is zero to working precision; the kernel carries no information."
        )
    t = u[:, keep] / np.sqrt(s[keep])
    a = t.T @ acc.ktk @ t / acc.n_rows
    d, vecs = np.linalg.eigh(0.5 * (a + a.T))
    keep_d = d > eps * np.sqrt(np.sum(d**2))
    d, vecs = d[keep_d], vecs[:, keep_d]
    proj = vecs.T @ (t.T @ acc.kty) / acc.n_rows
    return NystromSystem(t, d, vecs, proj, acc.y_sq, acc.n_rows, float(trace))
