"""The blocked linear algebra of KARE's solve and gradient against plain float64 NumPy.

KARE's forward pass inverts the Cholesky factor by recursive blocking
(:func:`keras_kare.factor.lower_triangular_inverse`) and its backward pass forms
M⁻¹ = L⁻ᵀL⁻¹ and M⁻² from blocks (:func:`keras_kare.risk.lower_gram`,
:func:`keras_kare.risk.symmetric_square`). Each is checked on its own, at sizes
and block settings that exercise uneven splits and several recursion levels,
and KARE with its gradient is checked where the blocked paths are active
(n above the leaf and block sizes).
"""

import numpy as np
import pytest
import tensorflow as tf
from oracles import kare_oracle
from precision import U32, U64

import keras_kare
from keras_kare.factor import TRIANGULAR_INVERSE_LEAF, lower_triangular_inverse
from keras_kare.risk import PRODUCT_BLOCK, lower_gram, symmetric_square


def _psd(rng, n, rank=None, scale=1.0):
    a = rng.normal(size=(n, rank or n))
    return scale * a @ a.T / a.shape[1]


def _factor(rng, n, z=0.1):
    m = _psd(rng, n, rank=max(2, n // 3)) + z * np.eye(n)
    return m, np.linalg.cholesky(m)


@pytest.mark.parametrize("n, leaf", [(1, 1), (7, 2), (129, 16), (300, 64), (517, TRIANGULAR_INVERSE_LEAF)])
def test_lower_triangular_inverse_matches_the_triangular_solve(rng, n, leaf):
    """Both are backward stable: each inverse errs by at most about n·κ(L)·u normwise (Higham, ch. 8)."""
    _, chol = _factor(rng, n)
    got = lower_triangular_inverse(tf.constant(chol), leaf=leaf).numpy()
    want = np.linalg.solve(chol, np.eye(n))
    kappa = np.linalg.cond(chol)
    assert np.linalg.norm(got - want) <= 2 * n * kappa * U64 * np.linalg.norm(want)
    assert np.all(np.triu(got, 1) == 0.0)  # exactly lower-triangular


def test_lower_triangular_inverse_reads_only_the_lower_triangle_and_propagates_nan(rng):
    _, chol = _factor(rng, 40)
    garbage = chol + np.triu(rng.normal(size=(40, 40)), 1)
    np.testing.assert_array_equal(
        lower_triangular_inverse(tf.constant(garbage), leaf=8), lower_triangular_inverse(tf.constant(chol), leaf=8)
    )
    chol[20, 3] = np.nan
    assert np.isnan(lower_triangular_inverse(tf.constant(chol), leaf=8).numpy()).any()


def test_lower_triangular_inverse_with_unknown_size_falls_back_to_the_solve(rng):
    _, chol = _factor(rng, 30)
    f = tf.function(lambda c: lower_triangular_inverse(c, leaf=4), input_signature=[tf.TensorSpec([None, None])])
    got = f(tf.constant(chol, tf.float32)).numpy()
    np.testing.assert_allclose(got @ chol, np.eye(30), atol=30 * np.linalg.cond(chol) * 4 * U32)


@pytest.mark.parametrize("n, block", [(9, 2), (250, 100), (801, PRODUCT_BLOCK), (1000, 150)])
def test_blocked_products_match_float64_products(rng, n, block):
    """Same sums as the plain products, grouped by blocks: each entry errs by at most n·u·(|X|ᵀ|Y|)_ij.

    (Off-diagonal blocks are mirrored, so the results are symmetric to within that bound.)
    """
    _, chol = _factor(rng, n)
    w64 = np.linalg.inv(chol)
    w = tf.constant(w64, tf.float32)
    w_rounded = w.numpy().astype(np.float64)  # the input's own rounding is not the products' error
    gram = lower_gram(w, block=block).numpy()
    bound = n * U32 * (np.abs(w_rounded).T @ np.abs(w_rounded))
    assert np.all(np.abs(gram - w_rounded.T @ w_rounded) <= bound)

    a = tf.constant(gram)
    a64 = gram.astype(np.float64)
    square = symmetric_square(a, block=block).numpy()
    assert np.all(np.abs(square - a64 @ a64) <= n * U32 * (np.abs(a64) @ np.abs(a64)))


@pytest.mark.parametrize("relative", [False, True])
def test_kare_and_gradient_at_blocked_sizes_match_float64_numpy(rng, relative):
    """n = 600: three product blocks and a two-level triangular inverse.

    Value: float64 solves (error ≈ 4·n·κ(M)·u64, see test_kare), the
    inverse-based oracle as much again. Gradient: the analytic derivative
    by explicit float64 inverses (as in precision.kare_rtol); the float64
    kernel's products run in float64, with A = M⁻¹ and A² erring by about
    n·κ(M)·u64 each, normwise.
    """
    n, z = 600, 0.05
    k = _psd(rng, n, rank=60, scale=2.0)
    y = rng.normal(size=(n, 2))
    kv = tf.Variable(k)
    with tf.GradientTape() as tape:
        value = keras_kare.kare(kv, y, ridge=z, relative_ridge=relative)
    grad = tape.gradient(value, kv).numpy()
    zz = z * np.trace(k) / n**2 if relative else z
    m = k / n + zz * np.eye(n)
    kappa = np.linalg.cond(m)
    assert float(value) == pytest.approx(kare_oracle(k, y, z, relative), rel=8 * n * kappa * U64)

    a = np.linalg.inv(m)
    a2 = a @ a
    c = y.shape[1]
    num = np.trace(y.T @ a2 @ y) / (n * c)
    den = np.trace(a) / n
    yy = y @ y.T
    d_num = -(a2 @ yy @ a + a @ yy @ a2) / (n * n * c)
    d_den = -a2 / n**2
    want = d_num / den**2 - 2 * num / den**3 * d_den
    if relative:  # z = ridge·tr(K)/n² moves with K: ∂KARE/∂K_ii gains tr(∂KARE/∂M)·ridge/n², ∂/∂M = n·∂/∂K
        want = want + np.trace(want) * z / n * np.eye(n)
    assert np.linalg.norm(grad - want) <= 8 * n * kappa * U64 * np.linalg.norm(want)


def test_symmetric_eigh_matches_numpy_and_restores_the_thread_limit(rng):
    """One-thread LAPACK below the size limit: the same decomposition up to round-off (backward error ~ n·u·‖K‖)."""
    from threadpoolctl import threadpool_info

    from keras_kare.factor import symmetric_eigh

    before = [i["num_threads"] for i in threadpool_info()]
    k = _psd(rng, 120, rank=30)
    s, v = symmetric_eigh(k)
    np.testing.assert_allclose(s, np.linalg.eigvalsh(k), atol=4 * 120 * U64 * np.abs(s).max())
    np.testing.assert_allclose((v * s) @ v.T, k, atol=4 * 120 * U64 * np.abs(s).max())
    assert [i["num_threads"] for i in threadpool_info()] == before
