"""Structured empirical NTK: per-layer Gram contributions, no n×P Jacobian.

Entry points used by ``dispatch``: :func:`is_supported`, :func:`check_supported`
and :func:`structured_gram` (same signature as ``jacobian.jacobian_gram``).

How it works (Novak et al. 2022 "structured
derivatives"): one forward pass records, for every layer with trainable
weights, its input A and its pre-activation output z (``structured_capture``,
``structured_rules``); one backward pass per output cotangent gives Δ = ∂f/∂z;
each variable's Gram contribution is then computed from (A, Δ) alone — for a
Dense layer ``(A Aᵀ + 1) ⊙ (Δ Δᵀ)`` — choosing per layer between the "ghost"
form and materialised per-example gradients of that layer by a cost model
(``structured_factors``). Layers without a rule use per-example Jacobians of
their own weights only. Common activations carry closed-form first and second
derivatives (``structured_activations``), since differentiating KARE through
Δ evaluates σ'' on every step.

Cost (n examples, C cotangent passes, Dense widths d_l): time
``O(C · forward/backward + Σ_l n² (d_{l-1} + C d_l))``, memory
``O(n² + n C Σ_l d_l)``; weight-sharing layers add the terms documented in
``structured_factors``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Optional

import tensorflow as tf

from keras_kare.backend.tensorflow.structured_capture import capture, graph_kind
from keras_kare.backend.tensorflow.structured_factors import FULL, compact, factor_gram

logger = logging.getLogger("keras_kare")
_LOGGED: set = set()


def _why_unsupported(model) -> str:
    return (
        f"model {getattr(model, 'name', '?')!r} of class {type(model).__name__} is a subclassed "
        "Keras model (its call() is arbitrary Python); the structured NTK needs the layer graph "
        "of a keras.Sequential or Functional model (a subclass that does not override call() is fine)"
    )


def is_supported(model) -> bool:
    """Whether :func:`structured_gram` applies to ``model`` (Sequential / Functional graph).

    Any layer inside the graph is supported: layers without a structured rule
    fall back to per-example Jacobians of their own weights. For a subclassed
    model this logs one informative line (once per model class) and returns False.
    """
    if graph_kind(model) is not None:
        return True
    cls = type(model).__qualname__
    if cls not in _LOGGED:
        _LOGGED.add(cls)
        logger.info(
            "keras_kare: %s; implementation='auto' uses the per-example Jacobian implementation "
            "(exact, O(n·C·P) memory). Build the network as a Sequential or Functional model to "
            "get the structured one.",
            _why_unsupported(model),
        )
    return False


def check_supported(model) -> None:
    """Raise ``NotImplementedError`` naming why ``model`` has no structured NTK."""
    if graph_kind(model) is None:
        raise NotImplementedError(
            f"implementation='structured' is not available: {_why_unsupported(model)}. "
            "Use implementation='jacobian' (or 'auto', which picks it for such models)."
        )


def structured_gram(model, x1, x2=None, kernel: str = "trace") -> tf.Tensor:
    """NTK Gram of ``model`` between ``x1`` and ``x2`` from per-layer structure.

    Args:
        model: a built Sequential or Functional Keras model; outputs are
            flattened to (n, C) like ``outputs.flat_outputs``.
        x1: a batch of inputs (tensor or the nested structure the model takes).
        x2: a second batch, or ``None`` for ``x2 = x1`` (captured once;
            ``backend.gram`` makes the result exactly symmetric).
        kernel: ``"trace"``, ``"summed_output"`` or ``"full"``.

    Returns:
        ``(n1, n2)`` for ``"trace"``/``"summed_output"``; ``(n1, n2, C, C)``
        for ``"full"``. Differentiable with respect to the model's trainable
        variables; no tensor of size n × P is formed.
    """
    check_supported(model)
    f1 = capture(model, x1, kernel)
    f2 = None if x2 is None else capture(model, x2, kernel)
    k = features_gram(f1, f2, kernel)
    return _zeros(model, x1, x2, kernel) if k is None else k


def structured_features(model, x, kernel: str = "trace", block_size: Optional[int] = None) -> "dict":
    """The per-variable factors of ``model`` on ``x``, for pairing with other blocks.

    Args:
        model: a built Sequential or Functional Keras model.
        x: a batch of inputs.
        kernel: the kernel mode the factors will be paired in.
        block_size: if given, each factor is stored in the form the cost model
            picks for pairs of blocks of this size (``structured_factors.compact``).

    Returns:
        An ordered mapping from variable-id tuples to factors; pair two of them
        with :func:`features_gram`. Memory ``O(n · Σ widths)``.
    """
    check_supported(model)
    factors = capture(model, x, kernel)
    if block_size is not None:
        factors = OrderedDict((key, compact(f, kernel, block_size)) for key, f in factors.items())
    return factors


def features_gram(f1: "dict", f2: Optional["dict"], kernel: str) -> Optional[tf.Tensor]:
    """Gram between two captured batches (``f2=None``: the batch with itself), or None if no variable is used."""
    same = f2 is None
    terms = [factor_gram(f1[key], f1[key] if same else f2[key], kernel) for key in f1]
    return tf.add_n(terms) if terms else None


def _zeros(model, x1, x2, kernel):
    from keras_kare.backend.tensorflow.outputs import flat_outputs

    o1 = flat_outputs(model, x1)
    n1 = tf.shape(o1)[0]
    n2 = n1 if x2 is None else tf.shape(tf.nest.flatten(x2)[0])[0]
    c = o1.shape[1] if kernel != "summed_output" else 1
    shape = [n1, n2, c, c] if kernel == FULL else [n1, n2]
    return tf.zeros(shape, o1.dtype)
