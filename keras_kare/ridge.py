"""Kernel ridge regression in float64: dual solve, spectral ridge path, LOO.

Conventions (Schwab et al. 2025):

    f̂(x) = (1/n) K(x, X) α,   α = (K/n + λ I)⁻¹ Y

and the relative ridge ``λ = λ̃ · tr(K) / n²``. With ``H = (K/n)(K/n + λI)⁻¹``
the hat matrix, KARE(K, Y, λ) equals GCV: ``mean((I−H)Y)² / (tr(I−H)/n)²``;
the exact leave-one-out residual is ``((I−H)Y)_i / (1 − H_ii)``. One
eigendecomposition ``K = V diag(s) Vᵀ`` serves every ridge of a grid.

:class:`ExactSystem` holds an exact KRR problem behind the interface
:class:`keras_kare.nystrom.NystromSystem` also implements (``n_rows``,
``trace``, ``dual_coef``, ``path``, ``predict_path``, ``kernel_eigenvalues``,
``state``/``from_state``), so a predictor delegates to either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_kare.factor import failure_advice, min_eigenvalue, robust_cholesky_numpy, symmetric_eigh
from keras_kare.progress import Progress

logger = logging.getLogger("keras_kare")


def absolute_ridge(ridge, k_trace: float, n: int, relative: bool):
    """The absolute λ for a (possibly relative) ridge value or array."""
    return np.asarray(ridge, dtype=np.float64) * (k_trace / n**2 if relative else 1.0)


def solve_dual(k: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """α = (K/n + λI)⁻¹ Y by Cholesky in float64 (policy: :mod:`keras_kare.factor`).

    ``k`` must be symmetric (a Gram from ``keras_kare.ntk`` with ``x2=None`` is,
    exactly); only its lower triangle is read. The factorisation runs in
    LAPACK (``factor.robust_cholesky_numpy``). A factorisation that needed
    jitter is logged as a warning; one that failed on every rung raises
    ``FloatingPointError`` naming the smallest eigenvalue.
    """
    n = k.shape[0]
    m = np.asarray(k, dtype=np.float64) / n  # a new array: the caller's k is not modified
    m[np.diag_indices(n)] += ridge
    chol, retries = robust_cholesky_numpy(m)
    if chol is None:
        min_eig = float(min_eigenvalue(tf.constant(m)))
        raise FloatingPointError(failure_advice(min_eig, ridge, what="K/n + λI"))
    del m  # n² float64 bytes freed before the factor is copied into TensorFlow for the triangular solves
    if retries > 0:
        logger.warning(
            "keras_kare: Cholesky of K/n + λI (λ=%.3e) needed jitter rung %d (keras_kare.factor).", ridge, retries
        )
    return tf.linalg.cholesky_solve(tf.constant(chol), tf.constant(y, tf.float64)).numpy()


@dataclass(frozen=True)
class RidgePath:
    """Training-data-only risk estimates of KRR along a ridge grid.

    Attributes:
        ridges: the grid as given (relative or absolute, like the predictor).
        effective_ridges: the absolute λ for each grid point.
        kare: KARE (= GCV with ridge n·λ) per ridge.
        loo_mse: exact leave-one-out mean squared error per ridge.
        train_mse: in-sample mean squared error per ridge.
    """

    ridges: np.ndarray
    effective_ridges: np.ndarray
    kare: np.ndarray
    loo_mse: np.ndarray
    train_mse: np.ndarray

    @property
    def best_kare_ridge(self) -> float:
        """The grid ridge (in the grid's units) with the smallest KARE."""
        return float(self.ridges[int(np.nanargmin(self.kare))])


def _log_undefined(level: int, below, total: int, min_eig: float, consequence: str) -> None:
    """One line naming the ridges not above the most negative eigenvalue/n of a Gram (K/n + λI not PD there)."""
    logger.log(
        level,
        "keras_kare: %d of %d ridges (%.3e to %.3e) are not above the kernel's most negative "
        "eigenvalue/n (%.3e); K/n + λI is not positive definite there, %s.",
        len(below),
        total,
        float(np.min(below)),
        float(np.max(below)),
        min_eig,
        consequence,
    )


def spectral_path(
    eigenvalues: np.ndarray,
    eigenvectors: np.ndarray,
    y: np.ndarray,
    lambdas: np.ndarray,
    below_level: int = logging.WARNING,
):
    """KARE, LOO MSE and training MSE for each absolute λ, from K = V diag(s) Vᵀ.

    Args:
        eigenvalues: (n,) eigenvalues s of K (not K/n).
        eigenvectors: (n, n) orthonormal V.
        y: (n, C) targets.
        lambdas: (R,) absolute ridges.
        below_level: logging level of the one line saying which ridges are not
            above the most negative eigenvalue of K/n (NaN there); an automatic
            grid, which reaches the Gram's round-off by design, uses INFO.

    Returns:
        Three (R,) arrays: kare, loo_mse, train_mse.
    """
    n = eigenvalues.shape[0]
    d = eigenvalues / n  # eigenvalues of K/n
    proj = eigenvectors.T @ y  # (n, C)
    v2 = eigenvectors**2
    kare_vals, loo, train, below = [], [], [], []
    for lam in lambdas:
        if np.min(d + lam) <= 0:
            below.append(lam)
            kare_vals.append(np.nan), loo.append(np.nan), train.append(np.nan)
            continue
        shrink = lam / (d + lam)  # eigenvalues of I − H = λ M⁻¹
        resid = eigenvectors @ (shrink[:, None] * proj)  # (I − H) Y
        one_minus_h = v2 @ shrink  # diag(I − H)
        num = np.mean(resid**2)
        den = np.mean(shrink)
        kare_vals.append(num / den**2)
        loo.append(np.mean((resid / one_minus_h[:, None]) ** 2))
        train.append(num)
    if below:  # one line per path, not per ridge: small grid ridges meet the Gram's round-off often
        _log_undefined(below_level, below, len(lambdas), d.min(), "the path reports NaN")
    return np.array(kare_vals), np.array(loo), np.array(train)


class ExactSystem:
    """An exact KRR problem: the float64 training Gram K (q × q) and targets Y (q, C).

    q is the number of Gram rows (n, or n·C for ``kernel="full"``). The
    eigendecomposition ``K = V diag(s) Vᵀ`` is computed on first use and
    cached; it serves :meth:`path`, :meth:`predict_path` and
    :meth:`kernel_eigenvalues`. :meth:`dual_coef` solves by Cholesky.

    Args:
        kernel: (q, q) symmetric float64 Gram (kept, not copied).
        y: (q, C) float64 targets.

    Example:
        >>> system = ExactSystem(np.eye(2), np.ones((2, 1)))
        >>> system.dual_coef(0.5).ravel().tolist()  # (K/n + λI)⁻¹ Y = Y / (0.5 + 0.5)
        [1.0, 1.0]
    """

    def __init__(self, kernel: np.ndarray, y: np.ndarray):
        self.kernel = kernel
        self.y = y
        self._eig = None

    @property
    def n_rows(self) -> int:
        """q, the rows of the training Gram."""
        return self.kernel.shape[0]

    @property
    def trace(self) -> float:
        """tr K."""
        return float(np.trace(self.kernel))

    @property
    def decomposed(self) -> bool:
        """Whether the eigendecomposition is cached."""
        return self._eig is not None

    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """(ascending eigenvalues, eigenvectors) of K, computed once."""
        if self._eig is None:
            self._eig = symmetric_eigh(self.kernel)
        return self._eig

    def dual_coef(self, lam: float) -> np.ndarray:
        """α = (K/n + λI)⁻¹ Y, (q, C): predictions are ``K(x, X) α / n_rows`` (see :func:`solve_dual`)."""
        return solve_dual(self.kernel, self.y, lam)

    def kernel_eigenvalues(self) -> np.ndarray:
        """The q ascending eigenvalues of K."""
        return self.spectrum()[0]

    def path(self, lambdas: np.ndarray, verbose=0, below_level: int = logging.WARNING):
        """KARE, exact LOO MSE and training MSE for each absolute λ (:func:`spectral_path`).

        ``verbose``: a progress bar over the eigendecomposition (if not cached) and up to 8 chunks of the grid;
        ``below_level``: see :func:`spectral_path`.
        """
        n_chunks = min(len(lambdas), 8) if verbose else 1
        progress = Progress((not self.decomposed) + n_chunks, verbose)
        if not self.decomposed:
            self.spectrum()
            progress.advance()
        parts = []
        for idx in np.array_split(np.arange(len(lambdas)), n_chunks):
            parts.append(spectral_path(*self._eig, self.y, lambdas[idx], below_level))
            progress.advance()
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def predict_path(self, k_x: np.ndarray, lambdas: np.ndarray, below_level: int = logging.WARNING) -> np.ndarray:
        """``K(x, X) α(λ) / n`` for each λ, (R, rows of ``k_x``, C), from the cached eigendecomposition.

        A λ not above the most negative eigenvalue of K/n (``K/n + λI`` not
        positive definite: a float32 Gram's round-off meets the smallest
        ridges of a wide grid) gets NaN predictions, as :meth:`path` reports NaN
        for it, and one line at ``below_level`` names those ridges; the rest of
        the grid is unaffected.
        """
        s, vecs = self.spectrum()
        n = self.n_rows
        below = s.min() / n + np.asarray(lambdas, dtype=np.float64) <= 0
        kv = k_x @ vecs  # (rows, n)
        proj = vecs.T @ self.y  # (n, C)
        nan = np.full((k_x.shape[0], self.y.shape[1]), np.nan)
        preds = [nan if out else kv @ (proj / (s[:, None] / n + lam)) / n for lam, out in zip(lambdas, below)]
        if below.any():
            _log_undefined(below_level, np.asarray(lambdas)[below], len(below), s.min() / n, "the predictions are NaN")
        return np.stack(preds)

    def state(self, include_kernel: bool = True) -> tuple[dict, dict]:
        """(scalars, arrays) to save: the Gram as ``train_kernel`` unless ``include_kernel`` is False."""
        return {}, ({"train_kernel": self.kernel} if include_kernel else {})

    @classmethod
    def from_state(cls, scalars: dict, arrays: dict, y: np.ndarray, kernel=None) -> "ExactSystem":
        """Inverse of :meth:`state`; ``kernel`` is the recomputed Gram when ``train_kernel`` was not saved."""
        return cls(arrays["train_kernel"] if "train_kernel" in arrays else kernel, y)
