"""The validated boundary of the public entry points: no call changes a later call, bad input fails first.

Regression tests for each way a call used to poison later calls, skip a
check, fail late or misname a degenerate kernel; then a property-based suite
(Hypothesis) over ``ntk``, ``kare``/``layers.KARE`` and ``KernelPredictor``:
every call either raises ``ValueError``/``TypeError`` naming the argument or
equals an independent oracle (a closed-form NTK of a one-hidden-layer MLP, KARE
by explicit inverses), and a fixed valid call returns the same value after
every one of them. The default run keeps the property suites short; the long
runs are marked slow.
"""

import importlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import kare_oracle

import keras_kare
from keras_kare.backend import cached_functions
from keras_kare.risk import DEGENERATE_MEAN_DIAGONAL, DegenerateKernelError, check_kernel_not_degenerate

ntk_module = importlib.import_module("keras_kare.ntk")  # the package exports the function ntk
D, H = 3, 5  # input width and hidden width of the oracle network


def mlp(seed=0, bias=True, zero=False):
    keras.utils.set_random_seed(seed)
    init = "zeros" if zero else "glorot_uniform"
    return keras.Sequential(
        [
            keras.Input((D,)),
            keras.layers.Dense(H, "tanh", kernel_initializer=init, use_bias=bias),
            keras.layers.Dense(1, kernel_initializer=init, use_bias=bias, bias_initializer="random_normal"),
        ]
    )


def mlp_ntk_oracle(net, x1, x2=None):
    """Closed-form NTK of Dense(H, tanh) -> Dense(1) in float64 (shares nothing with keras_kare).

    f(x) = w2·tanh(W1ᵀx + b1) + b2, so with h = tanh(·) and g = w2 ⊙ (1 - h²):
    K(x, x') = 1 + h·h' + (g·g')(1 + x·x') (the 1s are the biases' terms).
    """
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in net.get_weights())

    def parts(x):
        x = np.asarray(x, np.float64)
        h = np.tanh(x @ w1 + b1)
        return x, h, (1 - h**2) * w2[:, 0]

    xa, ha, ga = parts(x1)
    xb, hb, gb = parts(x1 if x2 is None else x2)
    return 1.0 + ha @ hb.T + (ga @ gb.T) * (1.0 + xa @ xb.T)


@pytest.fixture
def x(rng):
    return rng.normal(size=(10, D)).astype("float32")


def names_argument(err, *names) -> bool:
    return any(re.search(rf"\b{re.escape(n)}\b", str(err)) for n in names)


# ---------------------------------------------------------------- calls cannot change later calls
def test_predict_with_extra_axis_is_refused_and_leaves_predict_working(x):
    net = mlp()
    kp = keras_kare.KernelPredictor(net, ridge=1e-3).fit(x, x[:, 0])
    before = kp.predict(x)
    with pytest.raises(ValueError, match=r"per-example shape \(3, 1\).*expects \(3,\)"):
        kp.predict(x[:, :, None])
    np.testing.assert_array_equal(kp.predict(x), before)
    again = keras_kare.KernelPredictor(net, ridge=1e-3).fit(x, x[:, 0])
    np.testing.assert_array_equal(again.predict(x), before)


def test_ntk_with_wrong_width_is_the_same_clear_error_fresh_and_after_calls(x):
    net = mlp()
    wrong = np.ones((4, D + 2), "float32")
    with pytest.raises(ValueError, match=r"x2 has per-example shape \(5,\)") as fresh:
        keras_kare.ntk(net, x, wrong)
    for i in range(4):  # ordinary calls with varying batch sizes
        keras_kare.ntk(net, x[: i + 3], x[: i + 2])
    with pytest.raises(ValueError) as later:
        keras_kare.ntk(net, x, wrong)
    assert str(later.value) == str(fresh.value)
    np.testing.assert_allclose(keras_kare.ntk(net, x, x[:4]).numpy(), mlp_ntk_oracle(net, x, x[:4]), rtol=1e-5)


def test_compiled_grams_fix_every_axis_but_the_batch(x):
    net = mlp()
    for n in (2, 5, 10, 3):
        keras_kare.ntk(net, x[:n])
        keras_kare.ntk(net, x[:n], x[: n + 1 - (n > 5)])
        keras_kare.ntk(net, x[:n], batch_size=2)
    compiled = [fn for fn in cached_functions(net) if isinstance(fn, tf.types.experimental.PolymorphicFunction)]
    assert compiled
    for fn in compiled:
        for spec in tf.nest.flatten(fn.input_signature):
            assert spec.shape.rank == 2 and spec.shape[0] is None and spec.shape[1] == D
        assert fn.experimental_get_tracing_count() == 1  # one graph per signature, whatever the batch sizes


def test_fresh_networks_in_a_row_log_no_retracing_warning(x, caplog):
    # Cross-validation fits a new network per fold: each traces its own Gram once, which is
    # expected, so TensorFlow's "triggered tf.function retracing" warning must not fire.
    with caplog.at_level("WARNING", logger="tensorflow"):
        for seed in range(8):
            net = mlp(seed)
            np.testing.assert_allclose(keras_kare.ntk(net, x[:4]).numpy(), mlp_ntk_oracle(net, x[:4], x[:4]), rtol=1e-5)
            keras_kare.ntk(net, x[:4], x[:3])
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_unbuilt_subclassed_network_checks_later_widths_by_tracing(x):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = keras.layers.Dense(4, "tanh"), keras.layers.Dense(1)

        def call(self, inputs):
            return self.b(self.a(inputs))

    net = Net()
    k = keras_kare.ntk(net, x)
    with pytest.raises(ValueError, match="x2: the network cannot be applied to inputs of per-example shape"):
        keras_kare.ntk(net, x, np.ones((3, D + 1), "float32"))
    np.testing.assert_array_equal(keras_kare.ntk(net, x).numpy(), k.numpy())


# ---------------------------------------------------------------- one boundary validator
def test_python_lists_of_rows_are_array_likes_everywhere(x):
    net, y = mlp(), x[:, 0]
    np.testing.assert_allclose(keras_kare.ntk(net, x.tolist()).numpy(), keras_kare.ntk(net, x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        keras_kare.ntk(net, x, x[:3].tolist()).numpy(), keras_kare.ntk(net, x, x[:3]).numpy(), rtol=1e-6
    )
    k = mlp_ntk_oracle(net, x)
    assert float(keras_kare.kare(k.tolist(), y.tolist(), 0.1)) == pytest.approx(kare_oracle(k, y, 0.1), rel=1e-9)
    kp = keras_kare.KernelPredictor(net, ridge=1e-3).fit(x.tolist(), y.tolist())
    np.testing.assert_allclose(kp.predict(x[:4].tolist()), kp.predict(x[:4]), rtol=1e-6)
    keras_kare.callbacks.KernelMonitor(x.tolist(), y.tolist())
    model = keras_kare.KAREModel(mlp())
    model.compile(keras.optimizers.SGD(0.1))
    history = model.fit(x.tolist(), y.tolist(), batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["kare"][0])


def test_keras_single_input_list_convention_still_works(x):
    net = mlp()
    np.testing.assert_array_equal(keras_kare.ntk(net, [x]).numpy(), keras_kare.ntk(net, x).numpy())


@pytest.mark.parametrize(
    "inputs, message",
    [
        ((np.ones(4, "float32"), np.ones(4, "float32")), r"kernel must be a square \(n, n\) matrix.*\(4,\)"),
        ((np.ones((4, 3), "float32"), np.ones(4, "float32")), r"kernel must be a square.*\(4, 3\)"),
        ((np.eye(4, dtype="float32"), np.ones(3, "float32")), "targets have 3 rows but the kernel is 4x4"),
        ((np.eye(4, dtype="float32"), np.ones((4, 1, 1), "float32")), r"targets must have shape \(n,\) or \(n, C\)"),
    ],
)
def test_kare_layer_checks_like_kare(inputs, message):
    with pytest.raises(ValueError, match=message):
        keras_kare.kare(*inputs)
    with pytest.raises(ValueError, match=message):
        keras_kare.layers.KARE()(inputs)


def test_kare_layer_equals_kare_on_valid_input(rng):
    f = rng.normal(size=(6, 4))
    k, y = f @ f.T, rng.normal(size=(6, 2))
    # the layer computes in its float32 dtype (Keras casts its inputs): the oracle gets the rounded inputs
    k32, y32 = (a.astype(np.float32).astype(np.float64) for a in (k, y))
    assert float(keras_kare.layers.KARE(ridge=0.2)((k, y))) == pytest.approx(kare_oracle(k32, y32, 0.2), rel=1e-6)


# ---------------------------------------------------------------- ahead of time
def kare_model():
    model = keras_kare.KAREModel(mlp())
    model.compile(keras.optimizers.SGD(1.0))
    return model


def test_fit_with_scalar_targets_is_a_value_error_naming_y(x):
    with pytest.raises(ValueError, match=r"y must have shape \(10,\) or \(10, C\), received shape \(\)"):
        kare_model().fit(x, 1.0, epochs=1, verbose=0)


def test_fit_with_final_batch_of_one_fails_before_any_update(rng):
    x = rng.normal(size=(13, D)).astype("float32")
    model = kare_model()
    weights = [w.copy() for w in model.base_model.get_weights()]
    with pytest.raises(ValueError, match=r"final batch of 1 example.*batch_size=13.*drop_remainder=True"):
        model.fit(x, x[:, 0], batch_size=4, epochs=2, verbose=0)
    for a, b in zip(model.base_model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="validation"):
        model.fit(x[:8], x[:8, 0], validation_data=(x[:5], x[:5, 0]), batch_size=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"x has per-example shape \(4,\)"):
        model.fit(np.ones((8, D + 1), "float32"), np.ones(8), epochs=1, verbose=0)


def test_evaluate_checks_its_data_before_the_first_batch(rng):
    x = rng.normal(size=(13, D)).astype("float32")
    model = kare_model()
    with pytest.raises(ValueError, match=r"KAREModel.evaluate: 13 evaluation examples in batches of 4 leave a final"):
        model.evaluate(x, x[:, 0], batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=r"y must have shape \(13,\) or \(13, C\), received shape \(\)"):
        model.evaluate(x, 1.0, batch_size=13, verbose=0)
    with pytest.raises(ValueError, match="KAREModel.evaluate needs targets"):
        model.evaluate(x, batch_size=13, verbose=0)
    with pytest.raises(ValueError, match=r"KAREModel.evaluate: the dataset x yields"):
        model.evaluate(tf.data.Dataset.from_tensor_slices(x).batch(13), verbose=0)
    # valid input: the logged KARE is KARE of the one full batch's NTK (float64 oracle on the float32 Gram)
    logs = model.evaluate(x.tolist(), x[:, 0], batch_size=13, verbose=0, return_dict=True)
    k = keras_kare.ntk(model.base_model, x)
    assert logs["kare"] == pytest.approx(
        kare_oracle(np.asarray(k, np.float64), x[:, :1].astype(np.float64), 0.1), rel=1e-4
    )


def test_fit_on_dataset_whose_batches_disagree_mentions_the_targets(x):
    ys = tf.data.Dataset.from_tensor_slices(x[:9, 0])
    xs = tf.data.Dataset.from_tensor_slices(x)
    static = tf.data.Dataset.zip((xs.batch(4, drop_remainder=True), ys.batch(3, drop_remainder=True)))
    with pytest.raises(ValueError, match="targets y have"):
        kare_model().fit(static, epochs=1, verbose=0)
    dynamic = tf.data.Dataset.zip((xs.batch(4), ys.batch(3)))
    model = kare_model()
    weights = [w.copy() for w in model.base_model.get_weights()]
    with pytest.raises(tf.errors.InvalidArgumentError, match="targets have a different number of rows"):
        model.fit(dynamic, epochs=1, verbose=0)
    for a, b in zip(model.base_model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        kare_model().fit(xs.batch(4), epochs=1, verbose=0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda x: keras_kare.callbacks.KernelRidgeEvaluation(x, x[:, 0], (x, x[:, 0]), batch_size=0), "batch_size"),
        (lambda x: keras_kare.callbacks.KernelRidgeEvaluation(x, x[:, 0], (x, x[:, 0]), ridge=-1.0), "ridge"),
        (lambda x: keras_kare.callbacks.KernelRidgeEvaluation(x, x[:, 0], (x, x[:, 0]), ridge="best"), "ridge"),
        (lambda x: keras_kare.callbacks.KernelRidgeEvaluation(x, x[:, 0], (x, x[:, 0]), implementation="x"), "impl"),
        (lambda x: keras_kare.callbacks.KernelMonitor(x, x[:, 0], batch_size=0), "batch_size"),
        (lambda x: keras_kare.callbacks.KernelMonitor(x, x[:, 0], batch_size=2.5), "batch_size"),
    ],
)
def test_callback_settings_are_checked_at_construction(x, make, message):
    with pytest.raises(ValueError, match=message):
        make(x)


# ---------------------------------------------------------------- degenerate kernels
def test_zero_kernel_is_named_in_every_trace_relative_mode(x):
    net = mlp(bias=False, zero=True)
    k = keras_kare.ntk(net, x).numpy()
    np.testing.assert_array_equal(k, np.zeros((10, 10)))
    y = x[:, 0]
    with pytest.raises(DegenerateKernelError, match=r"kernel is zero: its trace is 0\.000e\+00 over 10 rows"):
        keras_kare.kare(k, y, 0.1, relative_ridge=True)
    # an absolute ridge with a zero kernel is well defined: M = zI, KARE = mean(y²)
    assert float(keras_kare.kare(k, y, 0.1)) == pytest.approx(np.mean(y.astype(np.float64) ** 2), rel=1e-6)


@pytest.mark.parametrize("kind", ["constant", "rank_one"])
@pytest.mark.parametrize("relative", [False, True])
def test_constant_and_rank_one_kernels_are_not_degenerate(rng, kind, relative):
    u = np.ones(6) if kind == "constant" else rng.normal(size=6)
    k, y = np.outer(u, u), rng.normal(size=6)
    assert float(keras_kare.kare(k, y, 0.1, relative_ridge=relative)) == pytest.approx(
        kare_oracle(k, y, 0.1, relative), rel=1e-8
    )


def test_degenerate_kernel_definition():
    check_kernel_not_degenerate(1e-300, 1)  # tiny but normal: a legitimate, rescalable kernel
    for trace in (0.0, 3 * DEGENERATE_MEAN_DIAGONAL):
        with pytest.raises(DegenerateKernelError, match="Gram is zero"):
            check_kernel_not_degenerate(trace, 3, name="Gram")
    with pytest.raises(ValueError, match="not positive semi-definite"):
        check_kernel_not_degenerate(-1.0, 3)
    with pytest.raises(ValueError, match="non-finite"):
        check_kernel_not_degenerate(float("nan"), 3)
    assert issubclass(DegenerateKernelError, ValueError)


# ---------------------------------------------------------------- property-based suite
_FORMS = ("ndarray", "tensor", "list", "tuple_rows")
_DTYPES = ("float32", "float64", "float16", "int32", "bool", "complex64", "str")


@st.composite
def inputs(draw, valid_only=False):
    """An input batch: (value, valid?) over ranks, widths, dtypes, array-like forms, NaN/inf, empty batches."""
    n = draw(st.integers(1 if valid_only else 0, 6))
    shape = (n, D)
    if not valid_only:
        shape = draw(st.sampled_from([(n, D), (n, D), (n, D + 1), (n, D, 1), (n,), (n, 1, D), ()]))
    dtype = "float32" if valid_only else draw(st.sampled_from(_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arr = rng.normal(size=shape)
    floating = dtype.startswith("float")
    bad_value = floating and not valid_only and n > 0 and draw(st.sampled_from([None, None, None, np.nan, np.inf]))
    if bad_value:
        arr.flat[draw(st.integers(0, arr.size - 1))] = bad_value
    if dtype == "bool":
        arr = arr > 0
    elif dtype == "str":
        arr = arr.astype(str)
    else:
        arr = arr.astype(dtype)
    form = draw(st.sampled_from(_FORMS))
    value = {
        "ndarray": lambda: arr,
        "tensor": lambda: tf.constant(arr) if dtype != "str" else arr,
        "list": arr.tolist,
        "tuple_rows": lambda: tuple(arr.tolist()) if arr.ndim else arr.tolist(),
    }[form]()
    valid = shape == (n, D) and n >= 1 and dtype not in ("complex64", "str") and not bad_value
    return value, valid, arr


def _reference_input(arr):
    return np.asarray(arr).astype(np.float16 if arr.dtype == np.float16 else np.float32).astype(np.float32)


_SHARED = {}


def shared_net():
    """One network shared by every example, so each example runs after the ones before it."""
    if "net" not in _SHARED:
        net = mlp(seed=3)
        probe = np.linspace(-1, 1, 4 * D, dtype="float32").reshape(4, D)
        _SHARED.update(net=net, probe=probe, probe_k=mlp_ntk_oracle(net, probe))
    return _SHARED["net"], _SHARED["probe"], _SHARED["probe_k"]


def check_ntk_call(a, b, batch_size):
    net, probe, probe_k = shared_net()
    (v1, ok1, a1), (v2, ok2, a2) = a, b if b is not None else (None, True, None)
    try:
        k = keras_kare.ntk(net, v1, v2, batch_size=batch_size).numpy()
    except (ValueError, TypeError) as err:
        assert not (ok1 and ok2), f"valid call refused: {err}"
        assert names_argument(err, *([] if ok1 else ["x1"]) + ([] if ok2 else ["x2"])), str(err)
    else:
        assert ok1 and ok2, "invalid input accepted"
        expected = mlp_ntk_oracle(net, _reference_input(a1), None if b is None else _reference_input(a2))
        np.testing.assert_allclose(k, expected, rtol=2e-5, atol=2e-5)
    # a fixed valid call is unaffected by whatever came before
    np.testing.assert_allclose(keras_kare.ntk(net, probe).numpy(), probe_k, rtol=2e-5, atol=2e-5)


_SHORT = settings(
    max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)
_LONG = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


@_SHORT
@given(a=inputs(), b=st.one_of(st.none(), inputs()), batch_size=st.sampled_from([None, 2, 5]))
def test_ntk_property(a, b, batch_size):
    check_ntk_call(a, b, batch_size)


@pytest.mark.slow
@_LONG
@given(a=inputs(), b=st.one_of(st.none(), inputs()), batch_size=st.sampled_from([None, 1, 2, 3, 5, 64]))
def test_ntk_property_long(a, b, batch_size):
    check_ntk_call(a, b, batch_size)


@st.composite
def kare_inputs(draw):
    """(kernel, targets, ridge, relative, expected error argument or None)."""
    n = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["psd", "psd", "zero", "constant", "rank_one", "vector", "rect", "nan"]))
    f = rng.normal(size=(n, 3))
    kernel = {
        "psd": f @ f.T + 1e-3 * np.eye(n),
        "zero": np.zeros((n, n)),
        "constant": np.full((n, n), 2.0),
        "rank_one": np.outer(f[:, 0], f[:, 0]),
        "vector": np.ones(n),
        "rect": np.ones((n, n + 1)),
        "nan": np.where(np.eye(n) > 0, np.nan, 1.0),
    }[kind]
    y_rows = draw(st.sampled_from([n, n, n, n + 1]))
    y_shape = draw(st.sampled_from([(y_rows,), (y_rows, 2), (y_rows, 1, 1)]))
    y = rng.normal(size=y_shape)
    relative = draw(st.booleans())
    ridge = draw(st.sampled_from([0.1, 1e-3, 0.0, -1.0]))
    form = draw(st.sampled_from(["ndarray", "list"]))
    if form == "list":
        kernel, y = kernel.tolist(), y.tolist()
    if ridge <= 0:
        bad = "ridge"
    elif kind in ("vector", "rect"):
        bad = "kernel"
    elif len(y_shape) == 3 or y_rows != n:
        bad = "targets"
    elif n < 2:
        bad = "KARE needs at least 2"
    elif kind == "nan":
        bad = "kernel contains NaN"
    elif kind == "zero" and relative:
        bad = "kernel is zero"
    else:
        bad = None
    return kernel, y, ridge, relative, bad


def check_kare_call(kernel, y, ridge, relative, bad):
    """``kare`` (float64 here) and ``layers.KARE`` (which computes in float32) against the float64 oracle."""
    k64, y64 = np.asarray(kernel, np.float64), np.asarray(y, np.float64)
    k32, y32 = k64.astype(np.float32).astype(np.float64), y64.astype(np.float32).astype(np.float64)
    for fn, k_ref, y_ref, rel in (
        (lambda: keras_kare.kare(kernel, y, ridge, relative_ridge=relative), k64, y64, 1e-7),
        (lambda: keras_kare.layers.KARE(ridge, relative_ridge=relative)((k64, y64)), k32, y32, 1e-5),
    ):
        try:
            value = float(fn())
        except (ValueError, TypeError) as err:
            assert bad is not None, f"valid call refused: {err}"
            assert bad in str(err), f"expected an error naming {bad!r}, got: {err}"
        else:
            assert bad is None, f"invalid input accepted (expected an error naming {bad!r})"
            assert value == pytest.approx(kare_oracle(k_ref, y_ref, ridge, relative), rel=rel)


@_SHORT
@given(case=kare_inputs())
def test_kare_property(case):
    check_kare_call(*case)


@pytest.mark.slow
@_LONG
@given(case=kare_inputs())
def test_kare_property_long(case):
    check_kare_call(*case)


def check_predictor_sequence(calls):
    """A fitted predictor queried with a sequence of odd and valid inputs: valid answers never change."""
    net, probe, _ = shared_net()
    if "kp" not in _SHARED:
        train = np.random.default_rng(7).normal(size=(8, D)).astype("float32")
        kp = keras_kare.KernelPredictor(net, ridge=1e-3, batch_size=3).fit(train, train[:, 0])
        _SHARED.update(kp=kp, kp_probe=kp.predict(probe))
    kp = _SHARED["kp"]
    for value, ok, arr in calls:
        try:
            pred = kp.predict(value)
        except (ValueError, TypeError) as err:
            assert not ok, f"valid call refused: {err}"
            assert names_argument(err, "x", "x1"), str(err)
        else:
            assert ok, "invalid input accepted"
            assert pred.shape == (len(arr),)
        np.testing.assert_array_equal(kp.predict(probe), _SHARED["kp_probe"])


@_SHORT
@given(calls=st.lists(inputs(), min_size=1, max_size=4))
def test_predictor_call_sequence_property(calls):
    check_predictor_sequence(calls)


@pytest.mark.slow
@_LONG
@given(calls=st.lists(inputs(), min_size=1, max_size=8))
def test_predictor_call_sequence_property_long(calls):
    check_predictor_sequence(calls)
