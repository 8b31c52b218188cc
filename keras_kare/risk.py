"""The Kernel Alignment Risk Estimator (KARE), differentiable in TensorFlow.

For a kernel K (n×n), targets Y (n×C) and ridge z > 0 (Jacot et al. 2020;
Schwab et al. 2025, eq. for KARE):

    M = K/n + z I
    KARE(K, Y, z) = [ (1/n) tr(Yᵀ M⁻² Y) / C ] / [ (1/n) tr M⁻¹ ]²

Multi-output targets use the mean of the per-column numerators over a shared
denominator (the paper's convention). KARE equals generalised cross-validation
of kernel ridge regression with ridge ``n·z``.

Evaluation goes through a Cholesky factor M = L Lᵀ: numerator ‖L⁻ᵀL⁻¹Y‖²,
tr M⁻¹ = ‖L⁻¹‖_F². No explicit inverse is formed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

SOLVE_DTYPES = ("float64", "float32")


class KARETerms(NamedTuple):
    """KARE and its parts: ``value = numerator / denominator**2``."""

    value: tf.Tensor
    numerator: tf.Tensor
    denominator: tf.Tensor
    ridge: tf.Tensor  # the absolute ridge z actually used


def check_ridge(ridge, name: str = "ridge") -> float:
    """Return ``ridge`` as a float after checking it is a finite number > 0."""
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive float, received {ridge!r} of type {type(ridge).__name__}.")
    ridge = float(ridge)
    if not math.isfinite(ridge) or ridge <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, received {ridge!r}.")
    return ridge


def check_solve_dtype(solve_dtype: str) -> str:
    if solve_dtype not in SOLVE_DTYPES:
        raise ValueError(f"solve_dtype must be one of {SOLVE_DTYPES}, received {solve_dtype!r}.")
    return solve_dtype


def as_target_matrix(targets, dtype) -> tf.Tensor:
    """Targets as an (n, C) floating tensor; 1-D targets become one column."""
    y = tf.convert_to_tensor(targets)
    if not (y.dtype.is_floating or y.dtype.is_integer or y.dtype.is_bool):
        raise TypeError(f"targets must be numeric, received dtype {y.dtype.name}.")
    y = tf.cast(y, dtype)
    if y.shape.rank == 1:
        return y[:, None]
    if y.shape.rank is not None and y.shape.rank > 2:
        return tf.reshape(y, [tf.shape(y)[0], -1])
    return y


def kare_terms(
    kernel,
    targets,
    ridge: float = 0.1,
    relative_ridge: bool = False,
    solve_dtype: str = "float64",
) -> KARETerms:
    """KARE with its numerator, denominator and effective ridge.

    Shapes are assumed valid (see :func:`kare` for the checked public entry).
    The solve runs in ``solve_dtype``; results are cast back to the kernel's
    floating dtype. A failed factorisation yields non-finite values, which the
    caller must surface (:func:`kare` raises in eager mode; ``KAREModel``
    reports it in its logs).
    """
    k_in = tf.convert_to_tensor(kernel)
    out_dtype = k_in.dtype if k_in.dtype.is_floating else tf.float32
    work = tf.float64 if solve_dtype == "float64" else tf.float32
    k = tf.cast(k_in, work)
    k = 0.5 * (k + tf.transpose(k))
    y = as_target_matrix(targets, work)
    n_int = tf.shape(k)[0]
    n = tf.cast(n_int, work)
    z = tf.constant(ridge, work)
    if relative_ridge:
        z = z * tf.linalg.trace(k) / (n * n)
    m = k / n + z * tf.eye(n_int, dtype=work)
    chol = tf.linalg.cholesky(m)
    m_inv_y = tf.linalg.cholesky_solve(chol, y)
    c = tf.cast(tf.shape(y)[1], work)
    numerator = tf.reduce_sum(tf.square(m_inv_y)) / (n * c)
    l_inv = tf.linalg.triangular_solve(chol, tf.eye(n_int, dtype=work), lower=True)
    denominator = tf.reduce_sum(tf.square(l_inv)) / n
    value = numerator / tf.square(denominator)
    cast = lambda t: tf.cast(t, out_dtype)  # noqa: E731
    return KARETerms(cast(value), cast(numerator), cast(denominator), cast(z))


def _is_eager(*tensors) -> bool:
    return tf.executing_eagerly() and not any(
        isinstance(t, tf.Tensor) and not hasattr(t, "numpy") for t in tensors
    )


def kare(
    kernel,
    targets,
    ridge: float = 0.1,
    relative_ridge: bool = False,
    solve_dtype: str = "float64",
) -> tf.Tensor:
    """Kernel Alignment Risk Estimator of a kernel and targets.

    Args:
        kernel: (n, n) kernel matrix (tensor or array); symmetrised internally.
        targets: (n,) or (n, C) targets. Integer/bool targets are cast to the
            kernel's float dtype (e.g. ±1 labels); one-hot class targets should
            be passed as (n, C).
        ridge: z > 0. Absolute by default (paper default 0.1).
        relative_ridge: if True the ridge is ``ridge * trace(K) / n**2``,
            which makes KARE invariant to rescaling K.
        solve_dtype: ``"float64"`` (default) or ``"float32"`` for the
            Cholesky solve.

    Returns:
        A scalar tensor in the kernel's float dtype, differentiable w.r.t.
        ``kernel``.

    Raises:
        ValueError / TypeError: on malformed inputs (checked before any solve);
        FloatingPointError: in eager mode, if the factorisation failed or the
        result is not finite.

    Example:
        >>> import numpy as np, keras_kare
        >>> K = np.eye(4); y = np.array([1., -1., 1., -1.])
        >>> float(keras_kare.kare(K, y, ridge=0.1))  # doctest: +ELLIPSIS
        1.0...
    """
    ridge = check_ridge(ridge)
    check_solve_dtype(solve_dtype)
    if not isinstance(relative_ridge, bool):
        raise TypeError(f"relative_ridge must be a bool, received {relative_ridge!r}.")
    k = tf.convert_to_tensor(kernel)
    if not (k.dtype.is_floating or k.dtype.is_integer):
        raise TypeError(f"kernel must be a real matrix, received dtype {k.dtype.name}.")
    if k.shape.rank != 2 or (k.shape[0] is not None and k.shape[0] != k.shape[1]):
        raise ValueError(f"kernel must be a square (n, n) matrix, received shape {tuple(k.shape)}.")
    y = tf.convert_to_tensor(targets)
    if y.shape.rank not in (1, 2):
        raise ValueError(f"targets must have shape (n,) or (n, C), received shape {tuple(y.shape)}.")
    if k.shape[0] is not None and y.shape[0] is not None and y.shape[0] != k.shape[0]:
        raise ValueError(
            f"targets have {y.shape[0]} rows but the kernel is {k.shape[0]}x{k.shape[0]}; "
            "expected one target row per kernel row."
        )
    if k.shape[0] is not None and k.shape[0] < 2:
        raise ValueError(f"KARE needs at least 2 examples, received a {k.shape[0]}x{k.shape[0]} kernel.")
    eager = _is_eager(k, y)
    if eager:
        if not bool(tf.reduce_all(tf.math.is_finite(tf.cast(k, tf.float64)))):
            raise ValueError("kernel contains NaN or inf.")
        if not bool(tf.reduce_all(tf.math.is_finite(tf.cast(y, tf.float64)))):
            raise ValueError("targets contain NaN or inf.")
    if not k.dtype.is_floating:
        k = tf.cast(k, tf.float32)
    try:
        value = kare_terms(k, y, ridge, relative_ridge, solve_dtype).value
    except tf.errors.InvalidArgumentError as err:
        raise FloatingPointError(
            f"Cholesky factorisation of K/n + zI failed (ridge={ridge}, relative_ridge={relative_ridge}): "
            "the kernel is not positive semi-definite to working precision. Increase the ridge or "
            "use solve_dtype='float64'."
        ) from err
    if eager and not bool(tf.math.is_finite(value)):
        raise FloatingPointError(
            f"KARE is not finite ({float(value)}) for ridge={ridge}, relative_ridge={relative_ridge}: "
            "the factorisation of K/n + zI failed. Increase the ridge or check the kernel."
        )
    return value
