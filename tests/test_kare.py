import numpy as np
import pytest
import tensorflow as tf
from oracles import gcv_oracle, kare_oracle
from precision import U32, U64

import keras_kare
from keras_kare.layers import KARE


def _psd(rng, n, rank=None, scale=1.0):
    a = rng.normal(size=(n, rank or n))
    return scale * a @ a.T / a.shape[1]


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("c", [1, 3])
def test_kare_matches_float64_numpy(rng, relative, c):
    k = _psd(rng, 20)
    y = rng.normal(size=(20, c))
    got = float(keras_kare.kare(k, y, ridge=0.05, relative_ridge=relative))
    want = kare_oracle(k, y, 0.05, relative)
    # float64 solves with M = K/n + zI: KARE = N/D² errs by about 4·n·κ(M)·u64 (two solves in N, D squared,
    # n from Cholesky's backward error), the inverse-based oracle by as much again
    z = 0.05 * np.trace(k) / 400 if relative else 0.05
    m = k / 20 + z * np.eye(20)
    assert got == pytest.approx(want, rel=8 * 20 * np.linalg.cond(m) * U64)


def test_kare_float32_kernel_agrees_to_single_precision(rng):
    k = _psd(rng, 30).astype(np.float32)
    y = rng.normal(size=30).astype(np.float32)
    got = keras_kare.kare(k, y, ridge=0.1)
    assert got.dtype == tf.float32
    # float64 solve (error ≈ 4κ·u64, negligible), then one rounding to float32
    assert float(got) == pytest.approx(kare_oracle(k, y, 0.1), rel=2 * U32)
    # float32 Cholesky: two solves in the numerator, the denominator squared, each ≈ n·κ(M)·u32 relative
    # (n = 30 from the backward error of Cholesky), plus the final rounding
    m = k.astype(np.float64) / 30 + 0.1 * np.eye(30)
    got32 = float(keras_kare.kare(k, y, ridge=0.1, solve_dtype="float32"))
    assert got32 == pytest.approx(kare_oracle(k, y, 0.1), rel=4 * 30 * np.linalg.cond(m) * U32 + U32)


def test_kare_one_column_equals_vector_targets(rng):
    k = _psd(rng, 10)
    y = rng.normal(size=10)
    assert float(keras_kare.kare(k, y)) == pytest.approx(float(keras_kare.kare(k, y[:, None])), rel=1e-12)


def test_multi_output_is_mean_of_per_column_numerators(rng):
    k = _psd(rng, 12)
    y = rng.normal(size=(12, 3))
    per_col = [kare_oracle(k, y[:, j], 0.1) for j in range(3)]  # shared denominator
    assert float(keras_kare.kare(k, y, 0.1)) == pytest.approx(np.mean(per_col), rel=1e-10)


@pytest.mark.parametrize("z", [1e-3, 0.1, 10.0])
def test_kare_equals_gcv_with_ridge_n_z(rng, z):
    n = 25
    k = _psd(rng, n, rank=8)  # rank-deficient on purpose
    y = rng.normal(size=(n, 2))
    assert float(keras_kare.kare(k, y, ridge=z)) == pytest.approx(gcv_oracle(k, y, n * z), rel=1e-9)


@pytest.mark.parametrize("c_scale", [1e-3, 7.0, 1e4])
def test_scale_identity(rng, c_scale):
    k = _psd(rng, 15)
    y = rng.normal(size=15)
    base = float(keras_kare.kare(k, y, ridge=0.2))
    assert float(keras_kare.kare(c_scale * k, y, ridge=0.2 * c_scale)) == pytest.approx(base, rel=1e-9)
    # the relative ridge removes the scale direction altogether
    rel = float(keras_kare.kare(k, y, ridge=0.2, relative_ridge=True))
    assert float(keras_kare.kare(c_scale * k, y, ridge=0.2, relative_ridge=True)) == pytest.approx(rel, rel=1e-9)


@pytest.mark.parametrize("relative", [False, True])
def test_gradient_wrt_kernel_matches_finite_differences(rng, relative):
    n = 8
    k0 = _psd(rng, n)
    y = rng.normal(size=(n, 2))
    k = tf.Variable(k0)
    with tf.GradientTape() as tape:
        val = keras_kare.kare(k, y, ridge=0.3, relative_ridge=relative)
    grad = tape.gradient(val, k).numpy()
    eps = 1e-6
    fd = np.zeros_like(k0)
    for i in range(n):
        for j in range(n):
            e = np.zeros_like(k0)
            e[i, j] = eps
            fd[i, j] = (kare_oracle(k0 + e, y, 0.3, relative) - kare_oracle(k0 - e, y, 0.3, relative)) / (2 * eps)
    # kare() symmetrises K, so its gradient is the symmetric part of the
    # unsymmetrised derivative; the oracle does not symmetrise.
    fd_sym = 0.5 * (fd + fd.T)
    np.testing.assert_allclose(grad, fd_sym, rtol=1e-6, atol=1e-9)
    assert np.abs(grad).max() > 1e-4  # not trivially zero


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("n", [256, 600])
def test_gradient_wrt_float32_kernel_agrees_with_float64_to_single_precision(rng, relative, n):
    """A float32 kernel's KARE gradient takes its two n³ backward products in float32.

    Each entry of A = M⁻¹ and of A² is a sum of n products, so float32 rounding
    gives a normwise relative error of at most about n·ε₃₂ (n = 256:
    3e-5); the float64 gradient (checked against finite differences above) is
    the reference. n = 600 is above the size at which the products are blocked
    (``risk.PRODUCT_BLOCK``): the same sums, grouped by blocks.
    """
    k64 = _psd(rng, n, rank=40, scale=3.0)
    y = rng.normal(size=(n, 2))

    def grad(k0):
        k = tf.Variable(k0)
        with tf.GradientTape() as tape:
            val = keras_kare.kare(k, y.astype(k0.dtype), ridge=0.1, relative_ridge=relative)
        return tape.gradient(val, k).numpy().astype(np.float64)

    g64, g32 = grad(k64), grad(k64.astype(np.float32))
    err = np.linalg.norm(g32 - g64) / np.linalg.norm(g64)
    assert err < n * np.finfo(np.float32).eps
    assert np.linalg.norm(g64) > 0


def test_layer_matches_function_and_serialises(rng):
    k = _psd(rng, 10).astype(np.float32)
    y = rng.normal(size=10).astype(np.float32)
    layer = KARE(ridge=0.05, relative_ridge=True)
    restored = KARE.from_config(layer.get_config())
    want = float(keras_kare.kare(k, y, 0.05, relative_ridge=True))
    assert float(layer((k, y))) == pytest.approx(want, rel=2 * U32)  # same float64 solve, float32 output
    assert float(restored((k, y))) == pytest.approx(want, rel=2 * U32)
    assert restored.get_config()["ridge"] == 0.05 and restored.relative_ridge is True


def test_kare_does_not_mutate_inputs(rng):
    k = _psd(rng, 6)
    y = rng.normal(size=6)
    k_copy, y_copy = k.copy(), y.copy()
    keras_kare.kare(k, y)
    np.testing.assert_array_equal(k, k_copy)
    np.testing.assert_array_equal(y, y_copy)


def test_integer_targets_are_cast(rng):
    k = _psd(rng, 8)
    y = np.array([1, -1, 1, 1, -1, -1, 1, -1])
    assert float(keras_kare.kare(k, y)) == pytest.approx(kare_oracle(k, y.astype(float), 0.1), rel=1e-10)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(ridge=0.0), ValueError, "ridge must be a finite number > 0"),
        (dict(ridge=-1.0), ValueError, "received -1.0"),
        (dict(ridge=float("nan")), ValueError, "ridge"),
        (dict(ridge="big"), TypeError, "ridge must be a positive float"),
        (dict(solve_dtype="float16"), ValueError, "solve_dtype"),
        (dict(relative_ridge="yes"), TypeError, "relative_ridge"),
    ],
)
def test_bad_hyper_parameters(rng, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        keras_kare.kare(np.eye(4), np.ones(4), **kwargs)


def test_bad_shapes_and_values():
    with pytest.raises(ValueError, match="square"):
        keras_kare.kare(np.ones((3, 4)), np.ones(3))
    with pytest.raises(ValueError, match="3 rows but the kernel is 4x4"):
        keras_kare.kare(np.eye(4), np.ones(3))
    with pytest.raises(ValueError, match="shape \\(n,\\) or \\(n, C\\)"):
        keras_kare.kare(np.eye(4), np.ones((4, 1, 1)))
    k = np.eye(4)
    k[0, 1] = np.nan
    with pytest.raises(ValueError, match="kernel contains NaN"):
        keras_kare.kare(k, np.ones(4))
    with pytest.raises(ValueError, match="targets contain NaN"):
        keras_kare.kare(np.eye(4), np.array([1.0, np.inf, 0.0, 0.0]))
    with pytest.raises(ValueError, match="at least 2 examples"):
        keras_kare.kare(np.eye(1), np.ones(1))


def test_indefinite_kernel_fails_loudly():
    k = -10.0 * np.eye(5)  # K/n + zI = -2 + 0.1 < 0: cannot be factored
    with pytest.raises(FloatingPointError, match="Increase the ridge"):
        keras_kare.kare(k, np.ones(5), ridge=0.1)
