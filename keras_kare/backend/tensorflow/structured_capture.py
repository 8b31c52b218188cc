"""Capture of layer inputs A and pre-activation cotangents Δ for the structured NTK.

The model's layer graph is executed by hand (Keras' own Functional graph
runner, ``_keras_compat.run_through_graph``, with a custom per-operation
function): weightless layers and raw ops run as usual, layers with trainable
weights go through their rule (``structured_rules``) which watches the
pre-activation output on a ``GradientTape``. Nested Sequential/Functional
models are walked recursively. Then one backward pass per output cotangent
(C passes for ``"trace"``/``"full"``, a single pass of ``Σ_c f_c`` for
``"summed_output"``) yields every Δ at once; since examples do not interact in
inference mode, row i of a batch cotangent is example i's cotangent.

Everything is plain differentiable TensorFlow: an enclosing tape (as in
``KAREModel.train_step``) differentiates through A, Δ and the rules, and the
whole thing traces under ``tf.function(jit_compile=True)``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import keras
import tensorflow as tf

from keras_kare._keras_compat import Functional, run_through_graph, sequential_graph
from keras_kare.backend.tensorflow.outputs import flatten_outputs
from keras_kare.backend.tensorflow.structured_factors import SUMMED, LayerFactor, merge
from keras_kare.backend.tensorflow.structured_rules import (
    Recorder,
    call_layer,
    fallback_site,
    find_rule,
)

Sequential = keras.Sequential


def graph_kind(model) -> Optional[str]:
    """``"sequential"``/``"functional"`` for models whose forward pass is their layer graph.

    Subclasses that override ``call`` are opaque (None): their forward pass is
    arbitrary Python.
    """
    if isinstance(model, Sequential):
        return "sequential" if type(model).call is Sequential.call else None
    if Functional is not None and isinstance(model, Functional):
        return "functional" if type(model).call is Functional.call else None
    return None


def _run_model(model, inputs, rec: Recorder):
    """Forward pass of a graph model with every weighted layer replaced by its site."""
    kind = graph_kind(model)
    if kind == "sequential":
        functional = sequential_graph(model)
        if functional is not None:
            return _run_model(functional, inputs, rec)
        x = tf.nest.map_structure(tf.convert_to_tensor, inputs)
        for layer in model.layers:
            x = _apply(layer, (x,), {}, rec)
        return x
    return run_through_graph(model, inputs, lambda op: lambda *args, **kwargs: _apply(op, args, kwargs, rec))


def _apply(op, args, kwargs, rec: Recorder):
    if not isinstance(op, keras.layers.Layer):
        return op(*args, **kwargs)  # a raw Keras operation in a Functional graph
    if graph_kind(op) is not None:
        return _run_model(op, args[0], rec)
    if not any(rec.trainable(v) for v in op.trainable_variables):
        return call_layer(op, args, kwargs)
    rule = find_rule(op)
    extra = {k: v for k, v in kwargs.items() if k not in ("training", "mask") and v is not None}
    if rule is not None and len(args) == 1 and not extra:
        return rule(op, args[0], rec)
    return fallback_site(op, args, kwargs, rec)


def capture(model, x, kernel: str) -> "OrderedDict[tuple, LayerFactor]":
    """Factors (one per trainable variable group) of ``model`` on batch ``x``.

    Args:
        model: a built Sequential or Functional model.
        x: a batch of inputs.
        kernel: ``"trace"``, ``"full"`` (one cotangent pass per output) or
            ``"summed_output"`` (one pass of the summed output).

    Returns:
        An ordered mapping from variable-id tuples to merged factors.
    """
    rec = Recorder(None, {id(v) for v in model.trainable_variables})
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        rec.tape = tape
        out = flatten_outputs(_run_model(model, x, rec))
        if kernel == SUMMED:
            out = tf.reduce_sum(out, axis=1, keepdims=True)
    c = out.shape[1]
    if c is None:
        raise ValueError("structured NTK needs a statically known number of outputs.")
    watched = [t for site in rec.sites for t in site.watched]
    zero = tf.UnconnectedGradients.ZERO
    if c == 1:
        deltas = [tf.expand_dims(g, 0) for g in tape.gradient(out, watched, unconnected_gradients=zero)]
    else:
        passes = []
        for k in range(c):
            seed = tf.ones_like(out) * tf.one_hot(k, c, dtype=out.dtype)
            passes.append(tape.gradient(out, watched, output_gradients=seed, unconnected_gradients=zero))
        deltas = [tf.stack(per_tensor, axis=0) for per_tensor in zip(*passes)]
    del tape
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    start = 0
    for site in rec.sites:
        k = len(site.watched)
        for key, factor in site.finish(deltas[start : start + k]):
            groups.setdefault(key, []).append(factor)
        start += k
    return OrderedDict((key, merge(fs)) for key, fs in groups.items())
