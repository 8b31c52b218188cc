"""Kernel ridge regression in float64: dual solve, spectral ridge path, LOO.

Conventions (Schwab et al. 2025):

    f̂(x) = (1/n) K(x, X) α,   α = (K/n + λ I)⁻¹ Y

and the relative ridge ``λ = λ̃ · tr(K) / n²``. With ``H = (K/n)(K/n + λI)⁻¹``
the hat matrix, KARE(K, Y, λ) equals GCV: ``mean((I−H)Y)² / (tr(I−H)/n)²``;
the exact leave-one-out residual is ``((I−H)Y)_i / (1 − H_ii)``. One
eigendecomposition ``K = V diag(s) Vᵀ`` serves every ridge of a grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_kare.factor import failure_advice, min_eigenvalue, robust_cholesky_numpy

logger = logging.getLogger("keras_kare")


def absolute_ridge(ridge, k_trace: float, n: int, relative: bool):
    """The absolute λ for a (possibly relative) ridge value or array."""
    return np.asarray(ridge, dtype=np.float64) * (k_trace / n**2 if relative else 1.0)


def solve_dual(k: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """α = (K/n + λI)⁻¹ Y by Cholesky in float64 (policy: :mod:`keras_kare.factor`).

    ``k`` must be symmetric (a Gram from ``compute_ntk`` with ``x2=None`` is,
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


def spectral_path(eigenvalues: np.ndarray, eigenvectors: np.ndarray, y: np.ndarray, lambdas: np.ndarray):
    """KARE, LOO MSE and training MSE for each absolute λ, from K = V diag(s) Vᵀ.

    Args:
        eigenvalues: (n,) eigenvalues s of K (not K/n).
        eigenvectors: (n, n) orthonormal V.
        y: (n, C) targets.
        lambdas: (R,) absolute ridges.

    Returns:
        Three (R,) arrays: kare, loo_mse, train_mse.
    """
    n = eigenvalues.shape[0]
    d = eigenvalues / n  # eigenvalues of K/n
    proj = eigenvectors.T @ y  # (n, C)
    v2 = eigenvectors**2
    kare_vals, loo, train = [], [], []
    for lam in lambdas:
        if np.min(d + lam) <= 0:
            logger.warning(
                "keras_kare: ridge %.3e is below the kernel's most negative eigenvalue/n (%.3e); "
                "K/n + λI is not positive definite, the path reports NaN there.",
                lam,
                d.min(),
            )
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
    return np.array(kare_vals), np.array(loo), np.array(train)
