"""Structured NTK (per-layer Gram, no n×P Jacobian) against the per-example Jacobian oracle.

Tolerances: relative error ``max|K_s - K_j| / max|K_j|`` at most 1e-5
in float32 and 1e-10 in float64, on every model family the structured rules
cover, every kernel mode, 1/3/10 outputs, and for KARE gradients through both.
"""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from precision import gram_entry_rtol

import keras_kare
from keras_kare.backend import gram
from keras_kare.backend.tensorflow import dispatch, structured
from keras_kare.backend.tensorflow import structured_factors as sf
from keras_kare.backend.tensorflow.jacobian import jacobian_gram
from keras_kare.backend.tensorflow.structured import structured_gram
from keras_kare.backend.tensorflow.structured_rules import find_rule
from keras_kare.risk import kare_terms

L = keras.layers
KERNELS = ("trace", "summed_output", "full")


# float64 checks every family to 1e-10 but costs about as much again: slow suite
@pytest.fixture(params=["float32", pytest.param("float64", marks=pytest.mark.slow)])
def floatx(request):
    # Keras caches the global dtype policy once a layer is built: reset both.
    old, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(request.param)
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_floatx(old)
    keras.config.set_dtype_policy(old_policy)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def assert_matches(model, x, x2=None, kernels=KERNELS, dtype="float32"):
    """Structured vs oracle for each kernel mode; returns the structured Grams.

    The oracle is evaluated once, in ``"full"`` mode; its trace and summed
    forms are exact sums of the (C, C) blocks (``Σ_c K[c, c]`` and ``Σ_{c,d} K[c, d]``).
    """
    kernels = (kernels,) if isinstance(kernels, str) else kernels
    full = np.asarray(jacobian_gram(model, x, x2, kernel="full"), np.float64)
    oracle = {"full": full, "trace": np.einsum("ijcc->ij", full), "summed_output": full.sum(axis=(2, 3))}
    out = {}
    for kernel in kernels:
        ks = structured_gram(model, x, x2, kernel=kernel)
        assert ks.dtype == tf.as_dtype(dtype)
        assert np.max(np.abs(oracle[kernel])) > 0
        err, tol = rel_err(ks, oracle[kernel]), gram_entry_rtol(model.count_params(), dtype)
        assert err <= tol, f"relative error {err:.3e} > {tol:.3e} = {err / tol:.2f}× ({kernel})"
        out[kernel] = ks
    return out[kernels[0]] if len(kernels) == 1 else out


def _x(rng, shape, dtype):
    return rng.normal(size=shape).astype(dtype)


# ---------------------------------------------------------------- model zoo
def mlp(act, c=1, d=5):
    return keras.Sequential([keras.Input((d,)), L.Dense(6, act), L.Dense(5, act), L.Dense(c)])


def cnn(c=2):
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(3, 3, activation="relu")(inp)
    h = L.Conv2D(4, 3, strides=2, padding="same", activation="gelu")(h)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(3, 2, dilation_rate=1, padding="same", use_bias=False)(h)
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(c)(h))


def conv1d(c=2):
    return keras.Sequential(
        [
            keras.Input((9, 3)),
            L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="tanh"),
            L.Conv1D(4, 2, strides=2, padding="same", activation="relu"),
            L.Conv1D(3, 3),
            L.Flatten(),
            L.Dense(c),
        ]
    )


def text_model(c=2, mask_zero=True):
    return keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            L.Embedding(12, 4, mask_zero=mask_zero),
            L.Dense(5, "gelu"),
            L.GlobalAveragePooling1D(),
            L.Dense(c),
        ]
    )


def layer_norm_model(c=2):
    inp = keras.Input((4, 5))
    h = L.Dense(6)(inp)
    h = L.LayerNormalization()(h)
    h = L.Activation("gelu")(h)
    h = L.LayerNormalization(axis=[1, 2])(h)
    h = L.Flatten()(h)
    return keras.Model(inp, L.Dense(c)(h))


def batch_norm_model(rng, c=2):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            L.Conv2D(3, 3),
            L.BatchNormalization(),
            L.Activation("relu"),
            L.Flatten(),
            L.Dense(4),
            L.BatchNormalization(center=False),
            L.Activation("tanh"),
            L.Dense(c),
        ]
    )
    for layer in model.layers:  # non-trivial inference statistics
        if isinstance(layer, L.BatchNormalization):
            k = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(size=k))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=k))
    return model


def einsum_model(c=2):
    inp = keras.Input((5, 3))
    h = L.EinsumDense("...c,cd->...d", output_shape=4, bias_axes="d", activation="relu")(inp)
    h = L.EinsumDense("abd,dhe->abhe", output_shape=(5, 2, 3), bias_axes="he", activation="tanh")(h)
    h = L.EinsumDense("abhe,he->abh", output_shape=(5, 2))(h)  # per-block weights (H axis)
    h = L.EinsumDense("abh,bhc->ac", output_shape=(c,), bias_axes="c")(h)
    return keras.Model(inp, h)


class Scale(L.Layer):
    """A custom layer (no rule) with one used and one unused weight."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="random_normal")
        self.unused = self.add_weight(shape=(3,), initializer="ones")

    def call(self, x):
        return x * self.w


def mixed_model(c=2, depthwise=True):
    inp = keras.Input((6, 6, 2))
    h = L.Conv2D(3, 3)(inp)
    h = L.PReLU(alpha_initializer=keras.initializers.Constant(0.2))(h)  # no rule: fallback
    if depthwise:  # no rule: fallback (its per-example gradients do not compile under XLA)
        h = L.DepthwiseConv2D(2, activation="relu")(h)
    h = L.Flatten()(h)
    h = L.Dense(4, "gelu")(h)
    h = Scale()(h)  # custom layer with an unused weight
    return keras.Model(inp, L.Dense(c)(h))


def graph_model(c=2):
    """Two inputs, a shared layer, a nested Sequential, a frozen layer, two outputs."""
    shared = L.Dense(4, activation="tanh")
    a, b = keras.Input((5,)), keras.Input((5,))
    h = L.Concatenate()([shared(a), shared(b)])
    sub = keras.Sequential([keras.Input((8,)), L.Dense(5, "relu"), L.Dense(c)])
    frozen = L.Dense(c)
    frozen.trainable = False
    out = L.Add()([sub(h), frozen(h)])
    return keras.Model([a, b], [out, L.Dense(1)(h)])


def _inputs(name, rng, n, dtype):
    if name in ("cnn", "batch_norm", "mixed"):
        return _x(rng, (n, 8, 8, 2) if name == "cnn" else (n, 6, 6, 2), dtype)
    if name == "conv1d":
        return _x(rng, (n, 9, 3), dtype)
    if name == "text":
        ids = rng.integers(0, 12, size=(n, 6)).astype("int32")
        ids[:, -2:] = 0  # padding exercises the mask
        return ids
    if name == "layer_norm":
        return _x(rng, (n, 4, 5), dtype)
    if name == "einsum":
        return _x(rng, (n, 5, 3), dtype)
    if name == "graph":
        return [_x(rng, (n, 5), dtype), _x(rng, (n, 5), dtype)]
    return _x(rng, (n, 5), dtype)


def build(name, rng, c=2):
    if name == "batch_norm":
        return batch_norm_model(rng, c)
    return {
        "cnn": cnn,
        "conv1d": conv1d,
        "text": text_model,
        "layer_norm": layer_norm_model,
        "einsum": einsum_model,
        "mixed": mixed_model,
        "graph": graph_model,
        "mlp": lambda c: mlp("gelu", c),
    }[name](c)


MODELS = ("cnn", "conv1d", "text", "layer_norm", "batch_norm", "einsum", "mixed", "graph")


# ---------------------------------------------------------------- Gram agreement
ACTIVATIONS = (
    "linear",
    "relu",
    "gelu",
    "tanh",
    "sigmoid",
    "softplus",
    "softsign",
    "silu",
    "elu",
    "selu",
    "leaky_relu",
    "relu6",
    "mish",
    "hard_sigmoid",
    "hard_silu",
    "exponential",
)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_mlp_every_activation(act, rng):
    model = mlp(act, c=3)
    x = _x(rng, (7, 5), "float32")
    assert_matches(model, x)


@pytest.mark.parametrize("name", MODELS)
def test_model_families_all_kernels(name, rng, floatx):
    model = build(name, rng, c=2)
    x = _inputs(name, rng, 6, floatx)
    assert_matches(model, x, dtype=floatx)


@pytest.mark.parametrize("c", [1, 3, 10])
@pytest.mark.parametrize("name", ["mlp", "cnn", "text"])
def test_output_counts_all_kernels(name, c, rng):
    model = build(name, rng, c=c)
    x = _inputs(name, rng, 6, "float32")
    grams = assert_matches(model, x)
    for kernel, k in grams.items():
        assert k.shape == ((6, 6, c, c) if kernel == "full" else (6, 6))


@pytest.mark.parametrize("name", ["mlp", "cnn", "graph"])
def test_cross_gram(name, rng, floatx):
    model = build(name, rng, c=3)
    x1, x2 = _inputs(name, rng, 5, floatx), _inputs(name, rng, 3, floatx)
    assert_matches(model, x1, x2, dtype=floatx)


def test_symmetric_result_is_exactly_symmetric(rng):
    model = build("cnn", rng, c=3)
    x = _inputs("cnn", rng, 7, "float32")
    k = gram(model, x, implementation="structured").numpy()
    np.testing.assert_array_equal(k, k.T)
    kf = gram(model, x, kernel="full", implementation="structured").numpy()
    np.testing.assert_array_equal(kf, kf.transpose(1, 0, 3, 2))


def test_lazily_built_sequential_without_input(rng):
    model = keras.Sequential([L.Dense(4, "relu"), L.Dense(2)])
    x = _x(rng, (5, 3), "float32")
    model(x[:1])
    assert_matches(model, x, kernels="full")


def test_non_trainable_weights_do_not_count(rng):
    model = mlp("tanh", c=2)
    x = _x(rng, (6, 5), "float32")
    model.layers[0].trainable = False
    ks = assert_matches(model, x, kernels="trace")
    model.layers[0].trainable = True
    assert rel_err(structured_gram(model, x), ks) > 1e-3  # the frozen layer really was excluded


# ---------------------------------------------------------------- cost model
def test_cost_model_choices():
    n = 16
    dense = sf.LinearFactor(tf.zeros([n, 1, 1, 512]), tf.zeros([1, n, 1, 1, 512]))
    assert dense.cost(dense, "trace")[0]  # T = 1: ghost
    conv = sf.LinearFactor(tf.zeros([n, 576, 1, 289]), tf.zeros([1, n, 576, 1, 64]))
    assert not conv.cost(conv, "trace")[0]  # many positions: materialise
    seq = sf.LinearFactor(tf.zeros([n, 4, 1, 64]), tf.zeros([1, n, 4, 1, 64]))
    assert seq.cost(seq, "trace")[0]  # T² = 16 < d_in d_out / (d_in + d_out)


@pytest.mark.parametrize("kernel", KERNELS)
def test_ghost_and_materialised_forms_agree(kernel, rng):
    c = 1 if kernel == "summed_output" else 3
    f1 = sf.LinearFactor(
        tf.constant(_x(rng, (4, 5, 2, 3), "float64")), tf.constant(_x(rng, (c, 4, 5, 2, 6), "float64"))
    )
    f2 = sf.LinearFactor(
        tf.constant(_x(rng, (3, 2, 2, 3), "float64")), tf.constant(_x(rng, (c, 3, 2, 2, 6), "float64"))
    )
    ghost = f1.ghost_gram(f2, kernel)
    mat = sf.per_example_gram(f1.to_grad(), f2.to_grad(), kernel)
    # sums of H·d_in·d_out = 36 products of per-example sums over T ≤ 5 positions
    tol = gram_entry_rtol(2 * 3 * 6, "float64", roundings=5)
    assert rel_err(ghost, mat) <= tol
    ids1 = tf.constant(rng.integers(0, 5, size=(4, 3)))
    ids2 = tf.constant(rng.integers(0, 5, size=(3, 2)))
    e1 = sf.EmbeddingFactor(ids1, tf.constant(_x(rng, (c, 4, 3, 2), "float64")), 5)
    e2 = sf.EmbeddingFactor(ids2, tf.constant(_x(rng, (c, 3, 2, 2), "float64")), 5)
    ghost_e = e1.ghost_gram(e2, kernel)
    mat_e = sf.per_example_gram(e1.to_grad(), e2.to_grad(), kernel)
    assert rel_err(ghost_e, mat_e) <= tol


def test_no_n_by_p_tensor_in_the_graph():
    """No intermediate of the traced Gram (and its KARE gradient) is as large as n × P."""
    n = 16
    model = keras.Sequential([keras.Input((32,)), L.Dense(128, "gelu"), L.Dense(128, "gelu"), L.Dense(1)])
    p = model.count_params()
    x = tf.zeros([n, 32])
    y = tf.ones([n, 1])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            v = kare_terms(structured_gram(model, x), y).value
        return tape.gradient(v, model.trainable_variables)

    graph = step.get_concrete_function().graph
    sizes = [
        t.shape.num_elements()
        for op in graph.get_operations()
        for t in op.outputs
        if t.shape.is_fully_defined() and t.dtype.is_floating
    ]
    assert max(sizes) <= max(v.shape.num_elements() for v in model.trainable_variables) < n * p / 8


# ---------------------------------------------------------------- KARE gradients
def _kare(gram_fn, model, x, y, kernel):
    k = gram_fn(model, x, None, kernel)
    if kernel == "full":
        n, _, c, _ = k.shape
        k = tf.reshape(tf.transpose(k, [0, 2, 1, 3]), [n * c, n * c])
        y = tf.reshape(y, [-1, 1])
    return kare_terms(k, y, ridge=0.1).value


@pytest.mark.parametrize("name", ["mlp", "cnn", "text", "mixed", "layer_norm", "einsum"])
def test_kare_gradients_agree(name, rng, floatx):
    model = build(name, rng, c=2)
    x = _inputs(name, rng, 6, floatx)
    y = tf.constant(_x(rng, (6, 2), floatx))
    for kernel in KERNELS if floatx == "float64" else ("trace",):
        grads = []
        for fn in (structured_gram, jacobian_gram):
            with tf.GradientTape() as tape:
                value = _kare(fn, model, x, y, kernel)
            grads.append(tape.gradient(value, model.trainable_variables))
        scale = max(float(np.max(np.abs(tf.convert_to_tensor(g)))) for g in grads[1] if g is not None)
        for v, gs, gj in zip(model.trainable_variables, *grads):
            gs = np.zeros(v.shape) if gs is None else np.asarray(tf.convert_to_tensor(gs))
            gj = np.zeros(v.shape) if gj is None else np.asarray(tf.convert_to_tensor(gj))
            err = np.max(np.abs(gs - gj)) / scale
            # KARE's gradient differentiates the Gram once more; its error is the Gram's, amplified by
            # KARE's sensitivity to the Gram (precision.kare_rtol) and the extra backward pass.
            tol = 16 * gram_entry_rtol(model.count_params(), floatx)
            assert err <= tol, f"{v.path} ({kernel}): {err:.2e} = {err / tol:.2f}× tolerance"


@pytest.mark.slow
def test_kare_model_jit_step_matches_jacobian(rng):
    x = _x(rng, (8, 5), "float32")
    y = _x(rng, (8, 2), "float32")
    weights = {}
    for impl in ("structured", "jacobian"):
        keras.utils.set_random_seed(7)
        inp = keras.Input((5,))
        h = L.PReLU(alpha_initializer="ones")(L.Dense(6)(inp))  # PReLU: per-layer Jacobian fallback
        h = L.LayerNormalization()(L.Dense(4, "gelu")(h))
        net = keras.Model(inp, L.Dense(2)(h))
        init = net.get_weights()
        model = keras_kare.KAREModel(net, kernel="summed_output", implementation=impl)
        model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=True)
        hist = model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # one full-batch step
        weights[impl] = ([w - w0 for w, w0 in zip(net.get_weights(), init)], hist.history["kare"])
    (ds, ks), (dj, kj) = weights["structured"], weights["jacobian"]
    np.testing.assert_allclose(ks, kj, rtol=1e-5)
    scale = max(np.max(np.abs(d)) for d in dj)
    assert scale > 1e-3  # the step moved the weights
    # The updates are differences of float32 weights (~1e-7 |w| rounding each), hence 1e-4.
    for a, b in zip(ds, dj):
        assert np.max(np.abs(a - b)) <= 1e-4 * scale


# ---------------------------------------------------------------- dispatch
class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.a = L.Dense(4, activation="relu")
        self.b = L.Dense(1)

    def call(self, x, training=False):
        return self.b(self.a(x))


def test_auto_picks_structured_for_graph_models(rng):
    assert dispatch.resolve_implementation(mlp("relu"), "auto") == "structured"
    assert dispatch.resolve_implementation(build("graph", rng), "auto") == "structured"
    assert dispatch.resolve_implementation(build("mixed", rng), "auto") == "structured"


def test_auto_falls_back_for_subclassed_models_and_logs_once(rng, caplog):
    model = Subclassed()
    x = _x(rng, (4, 3), "float32")
    model(x)
    structured._LOGGED.discard(type(model).__qualname__)
    with caplog.at_level(logging.INFO, logger="keras_kare"):
        assert dispatch.resolve_implementation(model, "auto") == "jacobian"
        assert dispatch.resolve_implementation(model, "auto") == "jacobian"
    lines = [r for r in caplog.records if "subclassed" in r.getMessage()]
    assert len(lines) == 1 and "Subclassed" in lines[0].getMessage()
    with pytest.raises(NotImplementedError, match="subclassed Keras model"):
        dispatch.resolve_implementation(model, "structured")
    k = keras_kare.ntk(model, x)  # auto -> jacobian, still a kernel
    assert k.shape == (4, 4)


def test_rules_cover_the_listed_layers():
    for layer in (
        L.Dense(2),
        L.EinsumDense("ab,bc->ac", 2),
        L.Conv1D(2, 2),
        L.Conv2D(2, 2),
        L.Embedding(3, 2),
        L.LayerNormalization(),
        L.BatchNormalization(),
    ):
        assert find_rule(layer) is not None, type(layer).__name__
    for layer in (L.PReLU(), L.DepthwiseConv2D(2), L.Conv2DTranspose(2, 2), L.LSTM(2)):
        assert find_rule(layer) is None, type(layer).__name__


def test_public_ntk_structured_blocked_matches_jacobian(rng):
    model = build("mlp", rng, c=3)
    x = _inputs("mlp", rng, 5, "float32")
    for kernel in KERNELS:
        ks = keras_kare.ntk(model, x, kernel=kernel, implementation="structured", batch_size=3)
        kj = keras_kare.ntk(model, x, kernel=kernel, implementation="jacobian")
        assert rel_err(ks, kj) <= gram_entry_rtol(model.count_params())
