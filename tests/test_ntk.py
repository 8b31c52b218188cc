import keras
import numpy as np
import pytest
import tensorflow as tf
from oracles import ntk_oracle
from precision import gram_atol

import keras_kare

IMPL = "jacobian"  # the oracle comparison for the structured path lives in test_structured.py


def mlp(d=5, c=1, width=7, act="gelu"):
    return keras.Sequential(
        [keras.Input((d,)), keras.layers.Dense(width, act), keras.layers.Dense(width, "tanh"), keras.layers.Dense(c)]
    )


def small_cnn():
    return keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )


def embedding_model():
    return keras.Sequential(
        [keras.Input((4,), dtype="int32"), keras.layers.Embedding(11, 3), keras.layers.Flatten(), keras.layers.Dense(1)]
    )


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.a = keras.layers.Dense(6, activation="relu")
        self.b = keras.layers.Dense(2)

    def call(self, x, training=False):
        return self.b(self.a(x) * 2.0)


def functional_two_heads():
    inp = keras.Input((4,))
    h = keras.layers.Dense(5, activation="sigmoid")(inp)
    return keras.Model(inp, [keras.layers.Dense(1)(h), keras.layers.Dense(2)(h)])


def _inputs(model_name, n, rng):
    if model_name == "cnn":
        return rng.normal(size=(n, 6, 6, 1)).astype("float32")
    if model_name == "embedding":
        return rng.integers(0, 11, size=(n, 4)).astype("int32")
    if model_name == "two_heads":
        return rng.normal(size=(n, 4)).astype("float32")
    return rng.normal(size=(n, 5)).astype("float32")


MODELS = {
    "mlp": lambda: mlp(),
    "mlp3": lambda: mlp(c=3),
    "cnn": small_cnn,
    "embedding": embedding_model,
    "subclassed": Subclassed,
    "two_heads": functional_two_heads,
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("kernel", ["trace", "summed_output", "full"])
def test_ntk_matches_per_example_gradient_oracle(rng, name, kernel):
    model = MODELS[name]()
    x = _inputs(name, 5, rng)
    model(x[:1])
    got = keras_kare.ntk(model, x, kernel=kernel, implementation=IMPL).numpy()
    want = ntk_oracle(model, x, kernel=kernel)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=gram_atol(model, want))


@pytest.mark.parametrize("kernel", ["trace", "summed_output", "full"])
def test_cross_gram_shapes_and_values(rng, kernel):
    model = mlp(c=3)
    x1 = rng.normal(size=(4, 5)).astype("float32")
    x2 = rng.normal(size=(7, 5)).astype("float32")
    got = keras_kare.ntk(model, x1, x2, kernel=kernel, implementation=IMPL).numpy()
    want = ntk_oracle(model, x1, x2, kernel=kernel)
    assert got.shape == ((4, 7) if kernel != "full" else (4, 7, 3, 3))
    np.testing.assert_allclose(got, want, rtol=0, atol=gram_atol(model, want))
    # K(x1, x2) is the transpose of K(x2, x1)
    back = keras_kare.ntk(model, x2, x1, kernel=kernel, implementation=IMPL).numpy()
    swapped = back.T if kernel != "full" else back.transpose(1, 0, 3, 2)
    np.testing.assert_allclose(got, swapped, rtol=0, atol=gram_atol(model, want))


def test_scalar_output_modes_agree(rng):
    model = mlp(c=1)
    x = rng.normal(size=(6, 5)).astype("float32")
    t = keras_kare.ntk(model, x, kernel="trace", implementation=IMPL).numpy()
    s = keras_kare.ntk(model, x, kernel="summed_output", implementation=IMPL).numpy()
    f = keras_kare.ntk(model, x, kernel="full", implementation=IMPL).numpy()
    np.testing.assert_allclose(t, s, rtol=0, atol=gram_atol(model, t))
    np.testing.assert_allclose(t, f[:, :, 0, 0], rtol=0, atol=gram_atol(model, t))


def test_symmetric_and_psd(rng):
    model = mlp(c=2)
    x = rng.normal(size=(12, 5)).astype("float32")
    k = keras_kare.ntk(model, x, implementation=IMPL).numpy()
    np.testing.assert_array_equal(k, k.T)  # exactly symmetric for x2=None
    eig = np.linalg.eigvalsh(k.astype(np.float64))
    assert eig.min() > -1e-5 * eig.max()


@pytest.mark.parametrize("kernel", ["trace", "full"])
# each block shape is one more trace; 3 (ragged 3+3+1 blocks) stays in the default run
@pytest.mark.parametrize(
    "batch_size", [pytest.param(1, marks=pytest.mark.slow), 3, pytest.param(5, marks=pytest.mark.slow)]
)
def test_blocked_equals_unblocked(rng, kernel, batch_size):
    model = mlp(c=2)
    x1 = rng.normal(size=(7, 5)).astype("float32")
    x2 = rng.normal(size=(4, 5)).astype("float32")
    for a, b in [(x1, None), (x1, x2)]:
        whole = keras_kare.ntk(model, a, b, kernel=kernel, implementation=IMPL).numpy()
        blocked = keras_kare.ntk(model, a, b, kernel=kernel, implementation=IMPL, batch_size=batch_size).numpy()
        np.testing.assert_allclose(blocked, whole, rtol=0, atol=gram_atol(model, whole))
        if b is None and kernel == "trace":
            np.testing.assert_array_equal(blocked, blocked.T)


def test_inference_mode_dropout_and_batchnorm(rng):
    """The NTK is computed with dropout off and batch-norm on moving statistics."""
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(1),
        ]
    )
    x = rng.normal(size=(6, 5)).astype("float32")
    k1 = keras_kare.ntk(model, x, implementation=IMPL).numpy()
    k2 = keras_kare.ntk(model, x, implementation=IMPL).numpy()
    np.testing.assert_array_equal(k1, k2)  # no dropout randomness
    # examples do not interact: the Gram of a sub-batch is the sub-block of the Gram
    k_sub = keras_kare.ntk(model, x[:3], implementation=IMPL).numpy()
    np.testing.assert_allclose(k_sub, k1[:3, :3], rtol=0, atol=gram_atol(model, k1))
    np.testing.assert_allclose(k1, ntk_oracle(model, x), rtol=0, atol=gram_atol(model, k1))


def test_non_trainable_weights_do_not_count(rng):
    model = mlp()
    x = rng.normal(size=(4, 5)).astype("float32")
    full = keras_kare.ntk(model, x, implementation=IMPL).numpy()
    model.layers[0].trainable = False
    partial = keras_kare.ntk(model, x, implementation=IMPL).numpy()
    np.testing.assert_allclose(partial, ntk_oracle(model, x), rtol=0, atol=gram_atol(model, partial))
    assert np.all(np.diag(partial) < np.diag(full))


def test_unbuilt_model_is_built_and_input_not_mutated(rng):
    model = keras.Sequential([keras.layers.Dense(4, "relu"), keras.layers.Dense(1)])
    x = rng.normal(size=(3, 2))  # float64 input, cast to the model's float32
    x_copy = x.copy()
    k = keras_kare.ntk(model, x, implementation=IMPL)
    assert k.shape == (3, 3) and k.dtype == tf.float32
    np.testing.assert_array_equal(x, x_copy)


def test_ntk_is_differentiable(rng):
    model = mlp()
    x = tf.constant(rng.normal(size=(5, 5)).astype("float32"))
    with tf.GradientTape() as tape:
        k = keras_kare.ntk(model, x, implementation=IMPL)
        s = tf.reduce_sum(k)
    grads = tape.gradient(s, model.trainable_variables)
    # every weight except the output bias affects the NTK
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads[:-1])


def test_bad_inputs(rng):
    model = mlp()
    x = rng.normal(size=(4, 5)).astype("float32")
    with pytest.raises(ValueError, match="kernel must be one of"):
        keras_kare.ntk(model, x, kernel="diag")
    with pytest.raises(ValueError, match="implementation must be one of"):
        keras_kare.ntk(model, x, implementation="fast")
    with pytest.raises(ValueError, match="batch_size"):
        keras_kare.ntk(model, x, batch_size=0)
    with pytest.raises(TypeError, match="keras.Model"):
        keras_kare.ntk(lambda t: t, x)
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="x1 contains NaN"):
        keras_kare.ntk(model, bad)
    with pytest.raises(ValueError, match="x2 contains NaN"):
        keras_kare.ntk(model, x, bad)
    frozen = mlp()
    frozen(x)
    frozen.trainable = False
    with pytest.raises(ValueError, match="no trainable weights"):
        keras_kare.ntk(frozen, x)
