"""Activations with closed-form first and second derivatives (structured NTK).

The structured NTK needs Δ = ∂f/∂z, which contains σ'(z) for every
activation σ, and ``KAREModel`` then differentiates the Gram, which contains
σ'(z), once more: every step evaluates σ''(z). Left to TensorFlow, the second
derivative of a composite activation is the gradient of its gradient graph:
for GELU (``0.5·z·erfc(−z/√2)``) about thirty elementwise ops per layer, which
measured as a third of the Gram's forward-and-backward time for the benchmark
MLP (784-512-512-1 GELU, batch 256; ``benchmarks/bench_ntk.py``) on a 2-core CPU.

:func:`activate` applies ``activation(z)`` with the forward value of Keras'
own function, but with a gradient ``dy·σ'(z)`` whose own gradient is
``dy·σ''(z)``, both written out below. Activations not listed here (ReLU,
whose TensorFlow gradients are already single ops, user functions, ...) are
applied unchanged, so the result is always the same function; only the
derivative graphs get smaller. Third and higher derivatives fall back to
TensorFlow's autodiff of the closed forms.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import keras
import tensorflow as tf

_SQRT_HALF = math.sqrt(0.5)
_SQRT_PI = math.sqrt(math.pi)
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

Derivatives = tuple[Callable[[tf.Tensor], tf.Tensor], Callable[[tf.Tensor], tf.Tensor]]


def _gelu_exact() -> Derivatives:
    # σ = ½ z erfc(−c z) with c = 1/√2;  σ' = ½ erfc(−c z) + (c/√π) z e^(−c²z²);
    # σ'' = (2c/√π) e^(−c²z²) (1 − c²z²).  TensorFlow's gelu rounds c to float32
    # before casting it to the input dtype; the same c is used here, so these are
    # the derivatives of the function actually computed (in float64 the difference
    # to the exact 1/√2 is ~1e-8 relative, well above float64 resolution).
    def c_of(z):
        return tf.cast(tf.constant(_SQRT_HALF, tf.float32), z.dtype)

    def d1(z):
        c = c_of(z)
        return 0.5 * tf.math.erfc(-c * z) + (c / _SQRT_PI) * z * tf.exp(-tf.square(c * z))

    def d2(z):
        c = c_of(z)
        cz2 = tf.square(c * z)
        return (2.0 / _SQRT_PI) * c * tf.exp(-cz2) * (1.0 - cz2)

    return d1, d2


def _tanh() -> Derivatives:
    def d1(z):
        return 1.0 - tf.square(tf.tanh(z))

    def d2(z):
        t = tf.tanh(z)
        return -2.0 * t * (1.0 - tf.square(t))

    return d1, d2


def _sigmoid() -> Derivatives:
    def d1(z):
        s = tf.sigmoid(z)
        return s * (1.0 - s)

    def d2(z):
        s = tf.sigmoid(z)
        return s * (1.0 - s) * (1.0 - 2.0 * s)

    return d1, d2


def _silu() -> Derivatives:
    # σ = z s(z);  σ' = s (1 + z (1 − s));  σ'' = s (1 − s) (2 + z (1 − 2 s))
    def d1(z):
        s = tf.sigmoid(z)
        return s * (1.0 + z * (1.0 - s))

    def d2(z):
        s = tf.sigmoid(z)
        return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))

    return d1, d2


def _exponential_linear(scale: float, alpha: float) -> Derivatives:
    # z ≥ 0: scale·z;  else scale·alpha·(eᶻ − 1).  At z = 0 TensorFlow's gradients take
    # the linear branch (σ' = scale, σ'' = 0); so do these.
    def d1(z):
        return tf.where(z >= 0, tf.constant(scale, z.dtype), scale * alpha * tf.exp(tf.minimum(z, 0.0)))

    def d2(z):
        return tf.where(z >= 0, tf.zeros_like(z), scale * alpha * tf.exp(tf.minimum(z, 0.0)))

    return d1, d2


def _registry() -> dict:
    a = keras.activations
    return {
        a.gelu: _gelu_exact(),  # Keras' default: approximate=False
        a.tanh: _tanh(),
        a.sigmoid: _sigmoid(),
        a.silu: _silu(),
        a.softplus: (tf.sigmoid, _sigmoid()[0]),  # σ' = sigmoid, σ'' = sigmoid'
        a.elu: _exponential_linear(1.0, 1.0),  # Keras' default alpha=1
        a.selu: _exponential_linear(_SELU_SCALE, _SELU_ALPHA),
    }


_DERIVATIVES = _registry()


def derivatives(activation) -> Optional[Derivatives]:
    """(σ', σ'') of a Keras activation function in closed form, or None if not known.

    Only the exact functions Keras' string names resolve to (``"gelu"``,
    ``"tanh"``, ``"sigmoid"``, ``"silu"``/``"swish"``, ``"softplus"``,
    ``"elu"``, ``"selu"``) are recognised, with their default arguments; a
    ``functools.partial`` or lambda is not (it is then differentiated by TensorFlow).
    """
    try:
        return _DERIVATIVES.get(activation)
    except TypeError:  # unhashable callable
        return None


def activate(activation, z: tf.Tensor) -> tf.Tensor:
    """``activation(z)`` whose first two derivatives are closed forms where known.

    Args:
        activation: a Keras activation function (``layer.activation``) or None.
        z: the pre-activation tensor.

    Returns:
        The activation's output, equal to ``activation(z)``.

    Example:
        >>> z = tf.constant([-1.0, 0.5])
        >>> y = activate(keras.activations.gelu, z)  # same values as gelu(z)
    """
    if activation is None:
        return z
    known = derivatives(activation)
    if known is None or not z.dtype.is_floating:
        return activation(z)
    d1, d2 = known

    @tf.custom_gradient
    def slope_of(u):
        return d1(u), lambda dy: dy * d2(u)

    # σ'(z) is computed once, outside the activation's custom gradient, so that the
    # tapes record it: Δ = dy·σ'(z) is then differentiable through ``slope_of`` (σ''),
    # and the outer backward pass of σ itself reuses the same σ'(z).
    slope = slope_of(z)

    @tf.custom_gradient
    def forward(u, s):
        return activation(u), lambda dy: (dy * s, None)

    return forward(z, slope)
