"""Mixed precision: the network computes in float16/bfloat16, the Gram and KARE do not."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from precision import unit_roundoff

import keras_kare
from keras_kare import KAREModel, KernelPredictor

POLICIES = ["mixed_float16", "mixed_bfloat16"]
# Per-example gradient entries of the test network pass through about four roundings to the
# compute dtype (input cast, pre-activation, GELU, GELU'), so each carries a relative error
# δ ≤ 4u to first order (u = unit roundoff: float16 2^-11, bfloat16 2^-8).
GRADIENT_ROUNDINGS = 4


@pytest.fixture
def policy(request):
    keras.config.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.config.set_dtype_policy("float32")


def _data(n=16, d=5):
    r = np.random.default_rng(0)
    x = r.standard_normal((n, d)).astype("float32")
    return x, np.sign(x[:, 0] + 0.1).astype("float32")


def _net(d=5):
    keras.utils.set_random_seed(3)
    # the usual mixed-precision recipe: a float32 output layer
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(16, "gelu"), keras.layers.Dense(1, dtype="float32")])


@pytest.mark.parametrize("policy", POLICIES, indirect=True)
def test_fit_step_finite_kare_float32_gram(policy):
    x, y = _data()
    net = _net()
    assert net.layers[0].compute_dtype == policy.split("_")[1]
    k = keras_kare.ntk(net, x)
    assert k.dtype == tf.float32  # accumulated in float32 although the layers compute in 16 bits
    model = KAREModel(net, ridge=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    w0 = [w.numpy() for w in net.trainable_variables]
    assert all(w.dtype == np.float32 for w in w0)  # variables stay float32
    hist = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    kares = hist.history["kare"]
    assert all(np.isfinite(kares))
    assert kares[-1] < kares[0]  # it trains (with float16 the loss scale is undone correctly)
    # The logged KARE of the first step is KARE at the initial weights, correct to the compute
    # dtype's unit roundoff u. Reference: the float64 KARE of the same weights' Gram under the
    # float32 policy (exact to ~1e-6). Why u: the Gram's entries carry relative errors of a few
    # u (test_low_precision_gram_close_to_float32); KARE = N/D² with N, D traces over all n
    # eigen-directions of K/n + zI, which average those errors rather than add them. Measured:
    # 0.3u (bfloat16) and 0.01u (float16) on AMD EPYC; an Intel Xeon, whose oneDNN/AMX kernels
    # round bfloat16 differently, logs 0.71433 here, 0.23u from the reference 0.71496. An eager
    # ntk() of the low-precision network (another rounding of the same computation) must be
    # within u as well, hence within 2u of the logged value: the logged number is the KARE of
    # the Gram the step built.
    u = unit_roundoff(policy)
    eager_low = _kare_at(w0, x, y, policy)
    exact = _kare_at(w0, x, y, "float32")
    assert kares[0] == pytest.approx(exact, rel=u)
    assert eager_low == pytest.approx(exact, rel=u)


def _kare_at(weights, x, y, policy):
    """float64 KARE (ridge 0.1) of the Gram of ``_net()`` with ``weights`` under ``policy``."""
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy)
    try:
        net = _net()
    finally:
        keras.config.set_dtype_policy(previous)
    for v, w in zip(net.trainable_variables, weights):
        v.assign(w)
    k = keras_kare.ntk(net, x).numpy().astype(np.float64)
    return float(keras_kare.kare(k, y, ridge=0.1, solve_dtype="float64"))


@pytest.mark.parametrize("policy", POLICIES, indirect=True)
def test_low_precision_gram_close_to_float32(policy):
    x, _ = _data()
    low = _net()
    k_low = keras_kare.ntk(low, x).numpy()
    weights = [w.numpy() for w in low.trainable_variables]
    keras.config.set_dtype_policy("float32")
    full = _net()
    for v, w in zip(full.trainable_variables, weights):
        v.assign(w)
    k32 = keras_kare.ntk(full, x).numpy().astype(np.float64)
    err = np.linalg.norm(k_low - k32) / np.linalg.norm(k32)
    # K = J Jᵀ: if every entry of J has relative error ≤ δ, then |ΔK_ij| ≤ (2δ + δ²)·‖J_i‖‖J_j‖
    # (Cauchy–Schwarz), and Σ_ij ‖J_i‖²‖J_j‖² = tr(K)², so ‖ΔK‖_F ≤ (2δ + δ²)·tr K.
    # Measured: 1.4u (bfloat16) and 0.6u (float16) against a bound of ≈ 16u here (tr K ≈ 2‖K‖_F).
    delta = GRADIENT_ROUNDINGS * unit_roundoff(policy)
    bound = (2 * delta + delta**2) * np.trace(k32) / np.linalg.norm(k32)
    assert 0 < err < bound  # > 0: the network did compute in 16 bits


@pytest.mark.parametrize("policy", POLICIES, indirect=True)
def test_kernel_predictor_under_mixed_precision(policy):
    x, y = _data(n=24)
    kp = KernelPredictor(_net(), ridge=1e-2).fit(x[:16], y[:16])
    assert kp.train_kernel_.dtype == np.float64 and kp.dual_coef_.dtype == np.float64
    pred = kp.predict(x[16:])
    assert pred.dtype == np.float64 and np.all(np.isfinite(pred))


@pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
def test_structured_rejects_low_precision_clearly(policy):
    from keras_kare.backend.tensorflow import dispatch

    x, _ = _data()
    with pytest.raises(NotImplementedError, match="does not support the .*float16.* compute dtype"):
        keras_kare.ntk(_net(), x, implementation="structured")
    assert dispatch.resolve_implementation(_net(), "auto") == "jacobian"
