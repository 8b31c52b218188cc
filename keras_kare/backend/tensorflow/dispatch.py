"""Choice between NTK implementations; the cost model is documented here.

``"jacobian"``: per-example Jacobians of all weights, ``O(n C P)`` memory. Exact
for every model, slow for wide layers (P large).

``"structured"``: per-layer Gram contributions from layer inputs A and output
cotangents Δ (``K_layer = (A Aᵀ + 1) ⊙ (Δ Δᵀ)`` for Dense), no n×P tensor;
``O(n² + n · Σ widths)`` memory. Needs a Sequential or Functional model.

``"auto"`` picks ``"structured"`` whenever it is available for the model and
falls back to ``"jacobian"`` otherwise.
"""

from __future__ import annotations

import functools
import logging

import tensorflow as tf

from keras_kare._keras_compat import nested_layers
from keras_kare.backend.tensorflow import structured
from keras_kare.backend.tensorflow.compiled import cached, weak
from keras_kare.backend.tensorflow.jacobian import jacobian_gram

logger = logging.getLogger("keras_kare")

IMPLEMENTATIONS = ("auto", "jacobian", "structured")


def resolve_implementation(model, implementation: str) -> str:
    """Map ``"auto"`` to a concrete implementation for ``model``."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, received {implementation!r}.")
    if implementation == "structured":
        structured.check_supported(model)
        if _low_precision(model):
            raise NotImplementedError(
                f"implementation='structured' does not support the {_compute_dtypes(model)} compute dtype of this "
                "model (a mixed_float16/mixed_bfloat16 policy) yet; use implementation='jacobian' or 'auto', whose "
                "per-example Jacobians are taken w.r.t. the float32 variables and contracted in float32."
            )
        return "structured"
    if implementation == "auto":
        return "structured" if structured.is_supported(model) and not _low_precision(model) else "jacobian"
    return implementation


def _compute_dtypes(model) -> list:
    layers = [model] + nested_layers(model)
    return sorted({str(getattr(layer, "compute_dtype", "float32")) for layer in layers})


def _low_precision(model) -> bool:
    """True if any layer computes in float16/bfloat16 (a mixed-precision policy).

    Under mixed precision the Gram is still accumulated in float32: the
    jacobian implementation differentiates w.r.t. the float32 variables, so
    per-example gradients arrive in float32 before they are contracted.
    """
    return any(d in ("float16", "bfloat16") for d in _compute_dtypes(model))


def gram(model, x1, x2=None, kernel: str = "trace", implementation: str = "jacobian"):
    """Empirical NTK Gram of ``model`` (already validated inputs).

    Args:
        model: a built Keras model.
        x1, x2: input batches; ``x2=None`` means ``x2 = x1``.
        kernel: ``"trace"``, ``"summed_output"`` or ``"full"``.
        implementation: a concrete implementation (see module docstring);
            ``"auto"`` is resolved here.

    Returns:
        A tensor of shape (n1, n2), or (n1, n2, C, C) for ``kernel="full"``,
        differentiable with respect to ``model.trainable_variables``; exactly
        symmetric when ``x2 is None``.
    """
    implementation = resolve_implementation(model, implementation)
    if implementation == "structured":
        k = structured.structured_gram(model, x1, x2, kernel=kernel)
    else:
        k = jacobian_gram(model, x1, x2, kernel=kernel)
    if x2 is None:  # exactly symmetric, whatever the implementation's round-off
        k = 0.5 * (k + swap_examples(k, kernel))
    return k


def swap_examples(k, kernel: str):
    """K(x2, x1) from K(x1, x2): transpose the example axes (and the output axes for "full")."""
    return tf.transpose(k, [1, 0, 3, 2]) if kernel == "full" else tf.transpose(k)


def _gram_of_weak(net, kernel: str, implementation: str, x1, x2):
    return gram(net(), x1, x2, kernel, implementation)


def compiled_gram(model, kernel: str, implementation: str, specs1, specs2=None):
    """A ``tf.function`` of :func:`~keras_kare.backend.tensorflow.dispatch.gram` for one input signature.

    ``specs1``/``specs2``: the ``tf.TensorSpec`` structures of ``x1``/``x2``,
    batch axis ``None`` and every other axis fixed (``specs2=None``: the
    symmetric Gram of ``x1``). The function's input signature fixes them, so
    no call relaxes it further (to an unknown rank, say) and no call changes
    what a later call computes.
    """

    net = weak(model)

    def build():
        # A partial, not a closure: TensorFlow counts traces per code object, so every model's
        # closure would share one count and fitting a few models in a row (cross-validation)
        # would log "triggered tf.function retracing" warnings for traces that are expected.
        call = functools.partial(_gram_of_weak, net, kernel, implementation)
        if specs2 is None:
            return tf.function(functools.partial(call, x2=None), input_signature=[specs1])
        return tf.function(call, input_signature=[specs1, specs2])

    key = ("gram", kernel, implementation, str(specs1), None if specs2 is None else str(specs2))
    return cached(model, key, build)
