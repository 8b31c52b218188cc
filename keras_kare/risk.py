"""The Kernel Alignment Risk Estimator (KARE), differentiable in TensorFlow.

For a kernel K (n×n), targets Y (n×C) and ridge z > 0 (Jacot et al. 2020;
Schwab et al. 2025, eq. for KARE):

    M = K/n + z I
    KARE(K, Y, z) = [ (1/n) tr(Yᵀ M⁻² Y) / C ] / [ (1/n) tr M⁻¹ ]²

Multi-output targets use the mean of the per-column numerators over a shared
denominator (the paper's convention). KARE equals generalised cross-validation
of kernel ridge regression with ridge ``n·z``.

Evaluation goes through a Cholesky factor M = L Lᵀ and its triangular inverse:
numerator ‖L⁻ᵀL⁻¹Y‖², tr M⁻¹ = ‖L⁻¹‖_F². M⁻¹ itself is formed (from L⁻¹) only
in the backward pass.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_kare.factor import (
    failure_advice,
    lower_triangular_inverse,
    min_eigenvalue,
    robust_cholesky,
    solve_dtype_for,
)

SOLVE_DTYPES = ("auto", "float64", "float32")


class KARETerms(NamedTuple):
    """KARE and its parts: ``value = numerator / denominator**2``."""

    value: tf.Tensor
    numerator: tf.Tensor
    denominator: tf.Tensor
    ridge: tf.Tensor  # the absolute ridge z actually used
    retries: tf.Tensor  # int32: jitter-ladder rungs needed by the Cholesky (0 = none)
    ok: tf.Tensor  # bool: the factorisation succeeded and the value is finite


def check_ridge(ridge, name: str = "ridge") -> float:
    """Return ``ridge`` as a float after checking it is a finite number > 0."""
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive float, received {ridge!r} of type {type(ridge).__name__}.")
    ridge = float(ridge)
    if not math.isfinite(ridge) or ridge <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, received {ridge!r}.")
    return ridge


def check_ridge_or_auto(ridge, name: str = "ridge"):
    """``"auto"``, or ``ridge`` as a float after :func:`check_ridge` (the ridge argument of the predictors)."""
    if isinstance(ridge, str):
        if ridge != "auto":
            raise ValueError(f"{name} must be a positive float or 'auto', received {ridge!r}.")
        return ridge
    return check_ridge(ridge, name)


def check_solve_dtype(solve_dtype: str) -> str:
    if solve_dtype not in SOLVE_DTYPES:
        raise ValueError(f"solve_dtype must be one of {SOLVE_DTYPES}, received {solve_dtype!r}.")
    return solve_dtype


#: A kernel whose mean diagonal tr K / n is at most this is "zero" (float64's smallest normal number).
DEGENERATE_MEAN_DIAGONAL = float(np.finfo(np.float64).tiny)


class DegenerateKernelError(ValueError):
    """The kernel is zero (an NTK that vanishes), so a ridge defined relative to its trace is zero too."""


class NonFiniteKernelError(ValueError):
    """The kernel's trace is infinite or NaN: e.g. the NTK of a network whose training diverged."""


def check_kernel_not_degenerate(trace: float, n: int, name: str = "kernel", ridge_units: str = "relative") -> None:
    """Raise before solving if a ridge derived from ``tr K`` would be meaningless.

    Definition: a PSD kernel is *degenerate* when its mean diagonal
    ``tr K / n`` is at most :data:`DEGENERATE_MEAN_DIAGONAL` — it is zero up to
    underflow, as the NTK of a network whose gradients all vanish (e.g. every
    weight zero and no bias, or dead units everywhere). A ridge relative to the
    trace (``relative_ridge=True``, or the default grid of ``ridge="auto"``,
    which is scaled by ``tr K / n²`` in either unit) is then zero, and
    ``K/n + zI`` is singular. A negative trace means the matrix is not positive
    semi-definite at all. Constant and rank-one kernels are *not* degenerate:
    ``K/n + zI`` is positive definite for any ``z > 0`` and KARE and kernel
    ridge regression are well defined (the predictor is a constant, or one
    direction, fitted with the ridge). An absolute ridge with a zero kernel is
    well defined too (``M = zI``: KARE is the mean of the squared targets and
    kernel ridge regression predicts 0), so callers with an absolute ridge do
    not call this.

    Args:
        trace: ``tr K`` (of the Gram actually solved, rows = ``n``).
        n: the number of rows of K.
        name: what the kernel is called in the message.
        ridge_units: the words for the ridge that depends on the trace.

    Raises:
        DegenerateKernelError (a ``ValueError``): zero kernel.
        NonFiniteKernelError (a ``ValueError``): infinite or NaN trace.
        ValueError: negative trace.

    Example:
        >>> check_kernel_not_degenerate(0.0, 6)
        Traceback (most recent call last):
        ...
        keras_kare.risk.DegenerateKernelError: kernel is zero: ...
    """
    trace = float(trace)
    if not math.isfinite(trace):
        raise NonFiniteKernelError(
            f"{name} has a non-finite trace ({trace}); expected a finite positive semi-definite kernel."
        )
    if trace < 0.0:
        raise ValueError(
            f"{name} has a negative trace ({trace:.3e}): it is not positive semi-definite, so it is not a kernel."
        )
    if trace <= n * DEGENERATE_MEAN_DIAGONAL:
        raise DegenerateKernelError(
            f"{name} is zero: its trace is {trace:.3e} over {n} rows (the network's NTK vanishes, e.g. all weights "
            f"zero without biases, or no unit active on these inputs), so the {ridge_units} ridge, proportional to "
            "tr K, is zero and K/n + zI is singular. Re-initialise the network, or use an absolute ridge "
            "(relative_ridge=False with a fixed ridge value)."
        )


def check_kernel_and_targets(kernel, targets) -> tuple[tf.Tensor, tf.Tensor]:
    """``(kernel, targets)`` as tensors after the checks :func:`kare` and ``layers.KARE`` share.

    Static checks (any mode): a real (n, n) kernel, (n,) or (n, C) numeric
    targets with one row per kernel row, n ≥ 2. Eagerly also: no NaN or inf.
    An integer kernel is cast to float32.
    """
    # Python lists as numpy reads them (float64), not as tf.convert_to_tensor would (float32)
    as_tensor = lambda a: tf.convert_to_tensor(np.asarray(a) if isinstance(a, (list, tuple)) else a)  # noqa: E731
    k = as_tensor(kernel)
    if not (k.dtype.is_floating or k.dtype.is_integer):
        raise TypeError(f"kernel must be a real matrix, received dtype {k.dtype.name}.")
    if k.shape.rank != 2 or (k.shape[0] is not None and k.shape[1] is not None and k.shape[0] != k.shape[1]):
        raise ValueError(f"kernel must be a square (n, n) matrix, received shape {tuple(k.shape)}.")
    y = as_tensor(targets)
    if not (y.dtype.is_floating or y.dtype.is_integer or y.dtype.is_bool):
        raise TypeError(f"targets must be numeric, received dtype {y.dtype.name}.")
    if y.shape.rank not in (1, 2):
        raise ValueError(f"targets must have shape (n,) or (n, C), received shape {tuple(y.shape)}.")
    n = k.shape[0] if k.shape[0] is not None else k.shape[1]
    if n is not None and y.shape[0] is not None and y.shape[0] != n:
        raise ValueError(
            f"targets have {y.shape[0]} rows but the kernel is {n}x{n}; expected one target row per kernel row."
        )
    if n is not None and n < 2:
        raise ValueError(f"KARE needs at least 2 examples, received a {n}x{n} kernel.")
    if _is_eager(k, y):
        if not bool(tf.reduce_all(tf.math.is_finite(tf.cast(k, tf.float64)))):
            raise ValueError("kernel contains NaN or inf.")
        if not bool(tf.reduce_all(tf.math.is_finite(tf.cast(y, tf.float64)))):
            raise ValueError("targets contain NaN or inf.")
    if not k.dtype.is_floating:
        k = tf.cast(k, tf.float32)
    return k, y


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


@tf.custom_gradient
def _scaled_symmetric_part(k, scale):
    """``scale·(K + Kᵀ)/2``, whose gradient is ``scale`` times the incoming one.

    The only consumer (:func:`_kare_of_factor` via ``M = K/n + zI``) returns a
    symmetric gradient G, and the exact gradient ``scale·(G + Gᵀ)/2`` of this
    map is then ``scale·G``: TensorFlow's generic gradient (a transpose, an add
    and two scalings of an n×n matrix) would be wasted work on every step.
    """
    return (k + tf.transpose(k)) * (0.5 * scale), lambda dm: (dm * scale, None)


PRODUCT_BLOCK = 200
"""The blocked n³ products of KARE's backward pass (:func:`lower_gram`,
:func:`symmetric_square`) use blocks of about this size (at most 4×4 of them);
below two blocks they are plain matrix products."""


def _blocks(n, block: int, most: int = 4):
    """Static ``[(start, stop), ...]`` splitting ``range(n)`` into about n/block pieces (1 if n is unknown)."""
    k = 1 if n is None else max(1, min(most, n // max(1, block)))
    edges = [n * i // k for i in range(k + 1)] if k > 1 else [0, n]
    return list(zip(edges[:-1], edges[1:]))


def _mirror(blocks: dict, k: int) -> tf.Tensor:
    """The symmetric matrix whose lower blocks ``(i, j)``, j ≤ i, are given."""
    rows = [tf.concat([blocks[i, j] if j <= i else tf.transpose(blocks[j, i]) for j in range(k)], 1) for i in range(k)]
    return tf.concat(rows, 0)


def lower_gram(w: tf.Tensor, block: int = PRODUCT_BLOCK) -> tf.Tensor:
    """``WᵀW`` of a lower-triangular ``W``, skipping the zero blocks and the upper half.

    Block (i, j), j ≤ i, of ``WᵀW`` is ``Σ_{l ≥ i} W_liᵀ W_lj`` (``W_li = 0``
    for l < i); the blocks above the diagonal are transposes. With k×k blocks
    this is (k+1)(k+2)/6k² of the plain product's multiply-adds (k = 4:
    0.31). The same sums as the plain product, grouped by blocks.

    Args:
        w: (n, n) lower-triangular matrix (n static for blocking).
        block: about the block size.

    Returns:
        The symmetric (n, n) ``WᵀW``.

    Example:
        >>> w = tf.constant(np.tril(np.ones((4, 4))))
        >>> np.allclose(lower_gram(w, block=2), w.numpy().T @ w.numpy())
        True
    """
    parts = _blocks(w.shape[0], block)
    if len(parts) == 1:
        return tf.matmul(w, w, transpose_a=True)
    out = {}
    for i, (i0, i1) in enumerate(parts):
        for j, (j0, j1) in enumerate(parts[: i + 1]):
            out[i, j] = tf.matmul(w[i0:, i0:i1], w[i0:, j0:j1], transpose_a=True)
    return _mirror(out, len(parts))


def symmetric_square(a: tf.Tensor, block: int = PRODUCT_BLOCK) -> tf.Tensor:
    """``A·A`` of a symmetric ``A``, computing the lower blocks only (``A²`` is symmetric).

    Args:
        a: (n, n) symmetric matrix (n static for blocking).
        block: about the block size.

    Returns:
        The symmetric (n, n) ``A²`` (its upper blocks mirrored from the lower ones).

    Example:
        >>> a = tf.constant([[2.0, 1.0, 0.0, 0.0], [1.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 1.0], [0.0, 0.0, 1.0, 2.0]])
        >>> np.allclose(symmetric_square(a, block=2), a.numpy() @ a.numpy())
        True
    """
    parts = _blocks(a.shape[0], block)
    if len(parts) == 1:
        return tf.matmul(a, a)
    out = {}
    for i, (i0, i1) in enumerate(parts):
        for j, (j0, j1) in enumerate(parts[: i + 1]):
            out[i, j] = tf.matmul(a[i0:i1], a[:, j0:j1])
    return _mirror(out, len(parts))


def _kare_of_factor(m, chol, y, product_dtype=None):
    """(KARE, numerator, denominator) of ``M = L Lᵀ`` with an analytic gradient w.r.t. M.

    ``product_dtype`` (default: M's dtype) is the precision of the backward
    pass's two n³ products (see :func:`_kare_of_factor_in`).
    """
    return _kare_of_factor_in(tf.as_dtype(product_dtype or m.dtype))(m, chol, y)


_KARE_OF_FACTOR = {}


def _kare_of_factor_in(product_dtype):
    """The custom-gradient KARE of a factor whose backward n³ products run in ``product_dtype``."""
    if product_dtype not in _KARE_OF_FACTOR:
        _KARE_OF_FACTOR[product_dtype] = tf.custom_gradient(
            lambda m, chol, y: _kare_of_factor_impl(m, chol, y, product_dtype)
        )
    return _KARE_OF_FACTOR[product_dtype]


def _kare_of_factor_impl(m, chol, y, product_dtype):
    """(KARE, numerator, denominator) of ``M = L Lᵀ`` and the gradient function w.r.t. M.

    Forward, from L⁻¹ (:func:`keras_kare.factor.lower_triangular_inverse`): ``M⁻¹Y = L⁻ᵀ(L⁻¹Y)``,
    numerator ``‖M⁻¹Y‖²/(nC)``, denominator ``‖L⁻¹‖²_F/n``.

    Backward, with A = M⁻¹ (symmetric) and dA = −A dM A:

        ∂num/∂M = −[(AY)(A²Y)ᵀ + (A²Y)(AY)ᵀ] / (nC),    ∂den/∂M = −A²/n,
        ∂KARE/∂M = ∂num/∂M / den² − 2 num/den³ · ∂den/∂M.

    This costs two n³ matrix products instead of TensorFlow's generic
    Cholesky/triangular-solve gradients (about 5× faster on a CPU for n = 800,
    and it avoids XLA's slow CPU triangular kernels in the backward pass).
    The forward pass (factor, solves, KARE) is in M's dtype; the two n³
    products A = L⁻ᵀL⁻¹ (:func:`lower_gram`: L⁻¹ is triangular) and A²
    (:func:`symmetric_square`) may run in a lower ``product_dtype``:
    :func:`kare_terms` uses the kernel's own dtype, because the gradient is
    cast to it on its way back to a float32 kernel anyway. The other terms of
    the gradient (rank 2C, O(n²C)) stay in M's dtype.
    ``chol`` and ``y`` receive no gradient (callers pass them through
    ``stop_gradient``; M carries all of the dependence on the kernel).
    """
    n = tf.shape(m)[0]
    nf = tf.cast(n, m.dtype)
    c = tf.cast(tf.shape(y)[1], m.dtype)
    l_inv = lower_triangular_inverse(chol)
    l_inv_y = tf.matmul(l_inv, y)
    a_y = tf.matmul(l_inv, l_inv_y, transpose_a=True)  # M⁻¹ Y
    numerator = tf.reduce_sum(tf.square(a_y)) / (nf * c)
    denominator = tf.reduce_sum(tf.square(l_inv)) / nf
    value = numerator / tf.square(denominator)

    def grad(d_value, d_numerator, d_denominator):
        l_inv_p = tf.cast(l_inv, product_dtype)
        a_p = lower_gram(l_inv_p)  # M⁻¹ = L⁻ᵀL⁻¹
        a2_p = tf.cast(symmetric_square(a_p), m.dtype)  # M⁻²
        a2_y = tf.matmul(l_inv, tf.matmul(l_inv, a_y), transpose_a=True)  # M⁻²Y in M's dtype (O(n²C))
        coef_num = (d_numerator + d_value / tf.square(denominator)) / (nf * c)
        coef_den = (d_denominator - 2.0 * d_value * numerator / denominator**3) / nf
        # coef_num·∂num + coef_den·∂den, the rank-2C part as one product (no n×n transpose):
        # (AY)(A²Y)ᵀ + (A²Y)(AY)ᵀ = [AY, A²Y] [A²Y, AY]ᵀ
        left = tf.concat([a_y, a2_y], axis=1) * -coef_num
        right = tf.concat([a2_y, a_y], axis=1)
        g = tf.matmul(left, right, transpose_b=True) - coef_den * a2_p
        return g, tf.zeros_like(chol), tf.zeros_like(y)

    return (value, numerator, denominator), grad


def kare_terms(
    kernel,
    targets,
    ridge: float = 0.1,
    relative_ridge: bool = False,
    solve_dtype: str = "auto",
) -> KARETerms:
    """KARE with its numerator, denominator and effective ridge.

    Shapes are assumed valid (see :func:`kare` for the checked public entry).
    The solve runs in ``solve_dtype`` (``"auto"``: float64 up to
    :data:`keras_kare.factor.FLOAT64_SOLVE_MAX_N` examples); results are cast
    back to the kernel's floating dtype. The factorisation follows
    :mod:`keras_kare.factor`; if it fails, ``ok`` is False and the values are
    non-finite, which the caller must surface (:func:`kare` raises;
    ``KAREModel`` skips the update and stops).
    """
    k_in = tf.convert_to_tensor(kernel)
    out_dtype = k_in.dtype if k_in.dtype.is_floating else tf.float32
    work = solve_dtype_for(k_in.shape[0], solve_dtype, out_dtype)
    k = tf.cast(k_in, work)
    y = as_target_matrix(targets, work)
    n_int = tf.shape(k)[0]
    if k.shape[0] is not None and y.shape[0] is not None:
        if k.shape[0] != y.shape[0]:
            raise ValueError(
                f"targets have {y.shape[0]} rows but the kernel has {k.shape[0]}: one target row per kernel row "
                "(for a dataset, the x and y batches must hold the same number of examples)."
            )
    else:  # batch sizes known only at run time (a tf.data pipeline's batches)
        with tf.control_dependencies(
            [
                tf.debugging.assert_equal(
                    tf.shape(y)[0],
                    n_int,
                    message="KARE: the targets have a different number of rows than the kernel (for a dataset: the "
                    "x and y batches must hold the same number of examples)",
                )
            ]
        ):
            y = tf.identity(y)
    n = tf.cast(n_int, work)
    z = tf.constant(ridge, work)
    if relative_ridge:
        z = z * tf.linalg.trace(k) / (n * n)
    m = _scaled_symmetric_part(k, 1.0 / n) + z * tf.eye(n_int, dtype=work)  # K symmetrised here
    chol, retries, factored = robust_cholesky(m)
    # the backward n³ products in the kernel's dtype (no coarser than float32); see _kare_of_factor
    product = work if out_dtype.size >= work.size else (out_dtype if out_dtype.size >= 4 else tf.float32)
    value, numerator, denominator = _kare_of_factor(m, tf.stop_gradient(chol), tf.stop_gradient(y), product)
    ok = tf.logical_and(factored, tf.math.is_finite(value))
    cast = lambda t: tf.cast(t, out_dtype)  # noqa: E731
    return KARETerms(cast(value), cast(numerator), cast(denominator), cast(z), retries, ok)


def _is_eager(*tensors) -> bool:
    return tf.executing_eagerly() and not any(isinstance(t, tf.Tensor) and not hasattr(t, "numpy") for t in tensors)


def kare(
    kernel,
    targets,
    ridge: float = 0.1,
    relative_ridge: bool = False,
    solve_dtype: str = "auto",
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
        solve_dtype: ``"auto"`` (float64 up to 4096 examples, see
            :mod:`keras_kare.factor`), ``"float64"`` or ``"float32"``.

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
    k, y = check_kernel_and_targets(kernel, targets)
    eager = _is_eager(k, y)
    if eager and relative_ridge:
        check_kernel_not_degenerate(float(tf.linalg.trace(tf.cast(k, tf.float64))), int(k.shape[0]))
    terms = kare_terms(k, y, ridge, relative_ridge, solve_dtype)
    if eager:
        if not bool(terms.ok):
            n = int(k.shape[0])
            m = tf.cast(k, tf.float64) / n + float(terms.ridge) * tf.eye(n, dtype=tf.float64)
            raise FloatingPointError(
                f"KARE could not be evaluated (value {float(terms.value)}). "
                + failure_advice(float(min_eigenvalue(m)), float(terms.ridge))
            )
        if int(terms.retries) > 0:
            warnings.warn(
                f"keras_kare: Cholesky of K/n + zI needed jitter rung {int(terms.retries)} of the ladder "
                "(see keras_kare.factor); KARE is biased by at most that jitter.",
                RuntimeWarning,
                stacklevel=2,
            )
    return terms.value
