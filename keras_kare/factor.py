"""The one place that factors ``M = K/n + z I`` (KARE) and ``K/n + λ I`` (prediction).

Policy:

1. Callers pass a symmetric M (``kare_terms`` symmetrises K; the Grams the
   ridge code factors are exactly symmetric by construction). The Cholesky
   reads only the lower triangle.
2. Cholesky in the working precision (float64 by default, see
   :data:`FLOAT64_SOLVE_MAX_N`); TensorFlow's inside differentiable KARE steps,
   LAPACK's (:func:`robust_cholesky_numpy`) for the eager float64 solves of
   kernel ridge regression.
3. If the factor is not finite (TensorFlow returns NaN for a failed Cholesky,
   eagerly and under XLA), retry with the jitter ladder
   ``M + ε · s · I`` for ε in :data:`JITTER_LADDER`, where ``s = tr(M)/n`` is the
   mean eigenvalue of M. The number of retries is returned so callers can
   report it (``KAREModel`` logs ``factor_retries``; ``kare()`` and
   ``KernelPredictor`` warn once).
4. If every rung fails the factor stays non-finite. Nothing is replaced by an
   identity or zero: ``kare()`` raises, ``KAREModel`` skips the update and
   stops (or skips, if asked), ``KernelPredictor`` raises — each naming the
   smallest eigenvalue of M and what to change.

The jitter biases the result by at most ε·s in each eigenvalue; the first rung
(1e-10 relative) is far below float32 resolution of the Gram itself.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf

logger = logging.getLogger("keras_kare")

JITTER_LADDER = (1e-10, 1e-8, 1e-6, 1e-4)
"""Relative jitters tried, in order, after a failed Cholesky (times ``tr(M)/n``)."""

FLOAT64_SOLVE_MAX_N = 4096
"""With ``solve_dtype="auto"`` the solve runs in float64 up to this n (the cost
of a float64 Cholesky on a CPU is then a few ms to ~1 s), in the kernel's own
precision above it."""


class CholeskyFactor(NamedTuple):
    """The result of :func:`robust_cholesky`."""

    chol: tf.Tensor  # lower-triangular L with L Lᵀ = M (+ jitter); NaN if all rungs failed
    retries: tf.Tensor  # int32: 0 if the first attempt worked, k if rung k was needed
    ok: tf.Tensor  # bool: the factor is finite


def solve_dtype_for(n, solve_dtype: str, kernel_dtype: tf.DType) -> tf.DType:
    """Resolve ``"auto" | "float64" | "float32"`` to a dtype for an n×n solve."""
    if solve_dtype == "float64":
        return tf.float64
    if solve_dtype == "float32":
        return tf.float32
    if n is None or n <= FLOAT64_SOLVE_MAX_N:
        return tf.float64
    return kernel_dtype if kernel_dtype in (tf.float32, tf.float64) else tf.float32


def _finite(t: tf.Tensor) -> tf.Tensor:
    return tf.reduce_all(tf.math.is_finite(t))


def robust_cholesky(m: tf.Tensor) -> CholeskyFactor:
    """Cholesky of a symmetric matrix with the jitter ladder of this module.

    Works eagerly, in ``tf.function`` and under XLA (the ladder is a chain of
    ``tf.cond``s: only the rungs needed are evaluated), and is differentiable.

    Args:
        m: (n, n) symmetric float32/float64 matrix. Only its lower triangle is
            read (as by ``tf.linalg.cholesky``); symmetrising it here again would
            cost two n×n passes on the critical path of every KARE step.

    Returns:
        A :class:`CholeskyFactor`.
    """
    n = tf.shape(m)[0]
    scale = tf.linalg.trace(m) / tf.cast(n, m.dtype)
    eye = tf.eye(n, dtype=m.dtype)

    def attempt(level: int):
        if level == 0:
            chol = tf.linalg.cholesky(m)
        else:
            chol = tf.linalg.cholesky(m + JITTER_LADDER[level - 1] * scale * eye)
        if level == len(JITTER_LADDER):
            return chol, tf.constant(level, tf.int32)
        return tf.cond(_finite(chol), lambda: (chol, tf.constant(level, tf.int32)), lambda: attempt(level + 1))

    chol, retries = attempt(0)
    return CholeskyFactor(chol, retries, _finite(chol))


TRIANGULAR_INVERSE_LEAF = 128
""":func:`lower_triangular_inverse` inverts blocks up to this size by a
triangular solve against the identity and larger ones recursively."""


def lower_triangular_inverse(chol: tf.Tensor, leaf: int = TRIANGULAR_INVERSE_LEAF) -> tf.Tensor:
    """``L⁻¹`` of a lower-triangular ``L`` by recursive 2×2 blocking (as LAPACK's ``trtri``).

    ``[[L₁₁, 0], [L₂₁, L₂₂]]⁻¹ = [[L₁₁⁻¹, 0], [−L₂₂⁻¹ L₂₁ L₁₁⁻¹, L₂₂⁻¹]]``: the
    off-diagonal block costs two matrix products, the diagonal blocks recurse
    down to ``leaf``, where a triangular solve against the identity takes
    over. About n³/3 multiply-adds in matrix products instead of the n³/2 of
    one triangular solve against the n×n identity (which does not skip the
    identity's zeros), and matrix products run faster than TensorFlow's
    triangular solve on a CPU. The same backward error bound as the
    triangular solve holds (each block is a triangular solve or a product of
    such blocks). Only the lower triangle of ``chol`` is read; NaN in it
    (a failed factorisation) propagates.

    Args:
        chol: (n, n) lower-triangular float matrix. With an unknown static n
            the plain triangular solve is used.
        leaf: largest block inverted by a triangular solve.

    Returns:
        The (n, n) lower-triangular inverse, in ``chol``'s dtype.

    Example:
        >>> l = tf.linalg.cholesky(tf.constant([[4.0, 2.0], [2.0, 3.0]], tf.float64))
        >>> np.allclose(lower_triangular_inverse(l, leaf=1) @ l, np.eye(2))
        True
    """
    n = chol.shape[0]
    if n is None or n <= max(1, leaf):
        return tf.linalg.triangular_solve(chol, tf.eye(tf.shape(chol)[0], dtype=chol.dtype), lower=True)
    h = n // 2
    top = lower_triangular_inverse(chol[:h, :h], leaf)
    bottom = lower_triangular_inverse(chol[h:, h:], leaf)
    off = -tf.matmul(bottom, tf.matmul(chol[h:, :h], top))
    return tf.concat(
        [tf.concat([top, tf.zeros([h, n - h], chol.dtype)], axis=1), tf.concat([off, bottom], axis=1)], axis=0
    )


SINGLE_THREAD_EIGH_MAX_N = 2048
""":func:`symmetric_eigh` runs LAPACK on one thread up to this size."""


@contextlib.contextmanager
def single_threaded_blas():
    """NumPy's BLAS/LAPACK limited to one thread inside the block (unlimited without ``threadpoolctl``)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def symmetric_eigh(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh(m)``, on one BLAS thread up to :data:`SINGLE_THREAD_EIGH_MAX_N` rows.

    Right after TensorFlow work in the same process, the multi-threaded
    OpenBLAS solver of NumPy's wheels competes with TensorFlow's spinning
    worker threads for the cores: measured on a shared 2-core CPU at n = 800,
    3.1–7.0 s against 0.11–0.17 s on one thread (same LAPACK routine, so the
    same result up to round-off). Larger matrices keep the threads.

    Args:
        m: (n, n) symmetric float64 matrix (its lower triangle is read).

    Returns:
        ``(eigenvalues ascending, orthonormal eigenvectors)`` as NumPy's ``eigh``.

    Example:
        >>> s, v = symmetric_eigh(np.diag([2.0, 1.0]))
        >>> s.tolist()
        [1.0, 2.0]
    """
    if m.shape[0] > SINGLE_THREAD_EIGH_MAX_N:
        return np.linalg.eigh(m)
    with single_threaded_blas():
        return np.linalg.eigh(m)


def _lapack_cholesky(m: np.ndarray) -> np.ndarray:
    """``np.linalg.cholesky`` with the BLAS thread pool limited to one thread.

    Multi-threaded ``dpotrf`` of the OpenBLAS that NumPy wheels bundle can
    crash the process with a segmentation fault on large matrices on some CPUs
    (observed on AVX-512 Intel Xeons at n = 16 000 with OpenBLAS 0.3.31; a
    known class of OpenBLAS threading bugs). A crash cannot be caught, so the
    factorisation never takes that path: LAPACK runs single-threaded through
    ``threadpoolctl``. Measured cost on a shared 2-core CPU: 12.2 s against
    10.9 s at n = 8 000 (``benchmarks/RESULTS.md``). Without ``threadpoolctl``
    the factorisation runs in TensorFlow (Eigen's Cholesky, no OpenBLAS;
    about 3× slower), which raises ``InvalidArgumentError`` on failure.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        try:
            return tf.linalg.cholesky(tf.constant(m)).numpy()
        except tf.errors.InvalidArgumentError as err:
            raise np.linalg.LinAlgError(str(err)) from err
    with threadpool_limits(limits=1, user_api="blas"):
        return np.linalg.cholesky(m)


def robust_cholesky_numpy(m: np.ndarray) -> tuple[Optional[np.ndarray], int]:
    """Eager float64 twin of :func:`robust_cholesky` through LAPACK: (L or None, rungs).

    Same ladder and the same lower-triangle-only contract; used for the large
    one-off solves of ``KernelPredictor`` (not differentiable, not traced).
    LAPACK's blocked ``potrf`` runs single-threaded (:func:`_lapack_cholesky`:
    the multi-threaded OpenBLAS path can crash the process); it is still
    faster than TensorFlow's Cholesky (measured at n = 8 000 on a shared
    2-core CPU: 12.2 s against 38.3 s). Returns ``(None, len(JITTER_LADDER))``
    if every rung failed.
    """
    scale = float(np.trace(m)) / m.shape[0]
    for level in range(len(JITTER_LADDER) + 1):
        if level == 0:
            attempt = m
        else:
            attempt = m.copy()
            attempt[np.diag_indices_from(attempt)] += JITTER_LADDER[level - 1] * scale
        try:
            chol = _lapack_cholesky(attempt)
        except np.linalg.LinAlgError:
            continue
        if np.all(np.isfinite(np.diagonal(chol))):
            return chol, level
    return None, len(JITTER_LADDER)


def min_eigenvalue(m: tf.Tensor) -> tf.Tensor:
    """Smallest eigenvalue of the symmetrised m in float64; NaN if m is not finite."""
    m64 = tf.cast(m, tf.float64)
    m64 = 0.5 * (m64 + tf.linalg.matrix_transpose(m64))
    finite = tf.reduce_all(tf.math.is_finite(m64))
    clean = tf.where(finite, m64, tf.eye(tf.shape(m64)[0], dtype=tf.float64))
    smallest = tf.reduce_min(tf.linalg.eigvalsh(clean))
    return tf.where(finite, smallest, tf.constant(float("nan"), tf.float64))


def min_eigenvalue_estimate(m: tf.Tensor, iterations: int = 200) -> tf.Tensor:
    """Estimate of the smallest eigenvalue of symmetric m by power iteration (XLA-cheap).

    Power iteration on ``B = cI − M`` with ``c`` the Gershgorin bound on
    ``λmax(M)`` converges to ``c − λmin(M)``. ``O(iterations · n²)``; used
    inside XLA-compiled training steps, where an exact ``eigvalsh`` of an
    800×800 matrix takes over a minute on a CPU. NaN if m is not finite.
    """
    m64 = tf.cast(m, tf.float64)
    m64 = 0.5 * (m64 + tf.linalg.matrix_transpose(m64))
    finite = tf.reduce_all(tf.math.is_finite(m64))
    m64 = tf.where(finite, m64, tf.zeros_like(m64))
    n = tf.shape(m64)[0]
    c = tf.reduce_max(tf.reduce_sum(tf.abs(m64), axis=1))
    b = c * tf.eye(n, dtype=tf.float64) - m64
    v0 = (
        tf.ones([n, 1], tf.float64) / tf.sqrt(tf.cast(n, tf.float64))
        + tf.cast(tf.range(n)[:, None] % 7, tf.float64) * 1e-3
    )

    def body(i, v):
        w = tf.matmul(b, v)
        return i + 1, w / (tf.norm(w) + 1e-300)

    _, v = tf.while_loop(lambda i, v: i < iterations, body, (0, v0 / tf.norm(v0)))
    rayleigh = tf.reduce_sum(v * tf.matmul(m64, v))
    return tf.where(finite, rayleigh, tf.constant(float("nan"), tf.float64))


def failure_advice(min_eig: float, ridge: float, what: str = "K/n + zI") -> str:
    """The sentence every factorisation failure ends with."""
    if math.isnan(min_eig):
        return (
            f"{what} contains NaN or inf (from NaN/inf inputs, or weights that overflowed: an exploding "
            f"learning rate), so it cannot be factored (ridge {ridge:.3e}). Check the batch for NaN, lower "
            "the learning rate, or compute in float64."
        )
    return (
        f"Cholesky of {what} failed even with jitter up to {JITTER_LADDER[-1]:g}·tr/n "
        f"(smallest eigenvalue {min_eig:.3e}, ridge {ridge:.3e}): the kernel is not positive "
        "semi-definite to working precision. Increase the ridge, lower the learning rate, or "
        "compute in float64 (solve_dtype='float64', or a float64 model)."
    )
