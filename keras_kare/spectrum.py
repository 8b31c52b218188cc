"""Spectral statistics of a kernel Gram (float64 numpy), used by the monitoring callbacks.

Notation: K is the n×n Gram, ``s_1 ≥ … ≥ s_n`` its eigenvalues, ``d_i = s_i / n``
the eigenvalues of ``K/n`` (the operator whose ridge regularisation KARE and
:class:`~keras_kare.KernelPredictor` use), Y the n×C targets. Eigenvalues below
zero (round-off of a PSD kernel) are clipped to zero *for these statistics
only*; the clipped mass is reported by :func:`negative_mass`.
"""

from __future__ import annotations

import numpy as np


def _nonneg(eigenvalues) -> np.ndarray:
    return np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)


def negative_mass(eigenvalues) -> float:
    """``Σ_i max(−s_i, 0) / Σ_i |s_i|``: the share of the spectrum that is negative (0 for a PSD kernel)."""
    s = np.asarray(eigenvalues, dtype=np.float64)
    total = np.sum(np.abs(s))
    return float(np.sum(np.clip(-s, 0.0, None)) / total) if total > 0 else 0.0


def effective_rank(eigenvalues) -> float:
    """Entropy effective rank (Roy & Vetterli 2007).

    ``erank(K) = exp(−Σ_i p_i log p_i)`` with ``p_i = s_i / Σ_j s_j``; it lies in
    [1, n], equals the rank for a flat spectrum and 1 for a rank-one kernel.
    Returns 0 for the zero kernel.
    """
    s = _nonneg(eigenvalues)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def participation_ratio(eigenvalues) -> float:
    """``PR(K) = (Σ_i s_i)² / Σ_i s_i² = tr(K)² / ‖K‖_F²``, in [1, n] (0 for the zero kernel)."""
    s = _nonneg(eigenvalues)
    sq = np.sum(s**2)
    return float(s.sum() ** 2 / sq) if sq > 0 else 0.0


def effective_dimension(eigenvalues, ridge: float) -> float:
    """Degrees of freedom of kernel ridge regression with absolute ridge λ.

    ``d_eff(λ) = tr[(K/n)(K/n + λI)⁻¹] = Σ_i d_i / (d_i + λ)``, ``d_i = s_i/n``
    (``s_i`` eigenvalues of K, not K/n) — the trace of the hat matrix H, i.e.
    ``n − n · denominator`` of KARE at ridge λ. In [0, n].
    """
    s = _nonneg(eigenvalues)
    d = s / s.shape[0]
    return float(np.sum(d / (d + float(ridge))))


def kernel_target_alignment(kernel, targets, centered: bool = False) -> float:
    """Kernel-target alignment (Cristianini et al. 2002; centred: Cortes et al. 2012).

    ``A(K, Y) = ⟨K, YYᵀ⟩_F / (‖K‖_F ‖YYᵀ‖_F)`` in [−1, 1] (in [0, 1] for PSD
    K); with ``centered=True`` both matrices are first centred, ``K ← HKH``,
    ``YYᵀ ← HYYᵀH``, ``H = I − 11ᵀ/n``, which removes the constant direction
    (e.g. the output bias' contribution, or unbalanced ±1 classes).
    Returns 0 if either matrix is zero.
    """
    k = np.asarray(kernel, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    y = y.reshape(y.shape[0], -1)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] != y.shape[0]:
        raise ValueError(f"kernel must be (n, n) and targets (n, C); received {k.shape} and {y.shape}.")
    if centered:
        k = k - k.mean(axis=0, keepdims=True)
        k = k - k.mean(axis=1, keepdims=True)
        y = y - y.mean(axis=0, keepdims=True)
    # ⟨K, YYᵀ⟩ = tr(Yᵀ K Y), ‖YYᵀ‖_F = ‖YᵀY‖_F: no n×n target matrix is formed
    inner = float(np.sum(y * (k @ y)))
    norm = float(np.linalg.norm(k) * np.linalg.norm(y.T @ y))
    return inner / norm if norm > 0 else 0.0


def spectrum_summary(eigenvalues, ridge: float) -> dict:
    """All scalar statistics of a spectrum (see the functions above) in one dict.

    Keys: ``trace`` (Σ s_i = tr K), ``eigenvalue_max``, ``eigenvalue_min``,
    ``effective_rank``, ``participation_ratio``, ``effective_dimension`` (at
    absolute ridge λ = ``ridge``), ``negative_mass``.
    """
    s = np.asarray(eigenvalues, dtype=np.float64)
    return {
        "trace": float(s.sum()),
        "eigenvalue_max": float(s.max()),
        "eigenvalue_min": float(s.min()),
        "effective_rank": effective_rank(s),
        "participation_ratio": participation_ratio(s),
        "effective_dimension": effective_dimension(s, ridge),
        "negative_mass": negative_mass(s),
    }
