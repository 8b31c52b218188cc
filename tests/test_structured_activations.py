"""Closed-form activation derivatives of the structured NTK against TensorFlow autodiff.

``structured_activations.activate`` must be the same function as Keras'
activation, with first and second derivatives equal to TensorFlow's
derivatives of that function (float64, to round-off), and the KARE gradient
through a structured Gram that uses them must match the jacobian oracle.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_kare.backend.tensorflow import structured_activations as sa
from keras_kare.backend.tensorflow.jacobian import jacobian_gram
from keras_kare.backend.tensorflow.structured import structured_gram
from keras_kare.risk import kare_terms

CLOSED_FORM = ("gelu", "tanh", "sigmoid", "silu", "softplus", "elu", "selu")
# a grid through both branches of the piecewise ones, zero itself, and the tails
Z = np.concatenate([np.linspace(-8.0, 8.0, 321), [0.0, -1e-4, 1e-4, -30.0, 30.0]])


def derivatives_of(fn, z):
    """(f, f', f'') of an elementwise fn by nested tapes."""
    v = tf.Variable(z)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            y = fn(v)
        d1 = inner.gradient(y, v)
    d2 = outer.gradient(d1, v)
    return y.numpy(), d1.numpy(), d2.numpy()


@pytest.mark.parametrize("name", CLOSED_FORM)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_closed_forms_match_tensorflow_autodiff(name, dtype):
    act = keras.activations.get(name)
    assert sa.derivatives(act) is not None
    z = Z.astype(dtype)
    ref = derivatives_of(act, z)
    got = derivatives_of(lambda u: sa.activate(act, u), z)
    np.testing.assert_array_equal(got[0], ref[0])  # the forward value is Keras' own
    tol = 1e-13 if dtype == "float64" else 2e-6
    for order, (g, r) in enumerate(zip(got[1:], ref[1:]), start=1):
        err = np.max(np.abs(g - r)) / max(1.0, np.max(np.abs(r)))
        assert err <= tol, f"{name} derivative {order}: {err:.2e}"


def test_third_derivative_is_still_available():
    z = tf.Variable(np.linspace(-3.0, 3.0, 13))
    with tf.GradientTape() as t3:
        with tf.GradientTape() as t2:
            with tf.GradientTape() as t1:
                y = sa.activate(keras.activations.tanh, z)
            d1 = t1.gradient(y, z)
        d2 = t2.gradient(d1, z)
    d3 = t3.gradient(d2, z).numpy()
    t = np.tanh(z.numpy())
    np.testing.assert_allclose(d3, -2.0 * (1 - t**2) * (1 - 3 * t**2), atol=1e-12)


def test_unknown_activations_are_applied_unchanged():
    z = tf.constant([-1.0, 0.5, 2.0])
    relu = keras.activations.relu
    assert sa.derivatives(relu) is None
    assert sa.derivatives(lambda u: u) is None
    np.testing.assert_array_equal(sa.activate(relu, z), relu(z))
    custom = lambda u: u * tf.sigmoid(2.0 * u)  # noqa: E731 - not Keras' silu: TensorFlow differentiates it
    np.testing.assert_array_equal(sa.activate(custom, z), custom(z))
    assert sa.activate(None, z) is z


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_kare_gradient_through_closed_forms_matches_jacobian(name):
    """Second derivatives enter the KARE gradient: structured vs jacobian, float64."""
    keras.utils.set_random_seed(3)
    dense = lambda w, **kw: keras.layers.Dense(w, name, dtype="float64", **kw)  # noqa: E731
    model = keras.Sequential(
        [keras.Input((4,), dtype="float64"), dense(6), dense(5), keras.layers.Dense(2, dtype="float64")]
    )
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(7, 4)))
    y = tf.constant(rng.normal(size=(7, 2)))
    grads = []
    for fn in (structured_gram, jacobian_gram):
        with tf.GradientTape() as tape:
            value = kare_terms(fn(model, x, None, kernel="trace"), y, ridge=0.1).value
        grads.append(
            [tf.convert_to_tensor(g).numpy() for g in tape.gradient(value, model.trainable_variables) if g is not None]
        )
    scale = max(np.max(np.abs(g)) for g in grads[1])
    assert scale > 0
    for gs, gj in zip(*grads):
        assert np.max(np.abs(gs - gj)) / scale <= 1e-10
