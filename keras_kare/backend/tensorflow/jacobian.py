"""Empirical NTK Gram from explicit per-example Jacobians (TensorFlow).

This is the slow, obviously-right implementation: it materialises, for every
trainable variable, the per-example Jacobian of the network outputs with
``tf.GradientTape.jacobian`` (vectorised with ``pfor``) and contracts the two
Jacobians over the parameter axis.

Cost model (n examples, C outputs, P parameters, A activations per example):
time ``O(n C P)`` for the Jacobians plus ``O(n1 n2 C P)`` for the contraction
(``C**2`` times that for ``kernel="full"``); memory ``O(n C (P + n A))``:
each of the n·C vectorised backward passes holds activation cotangents for the
whole batch (see ``keras_kare.memory``). It is exact for any Keras model and is
the oracle the structured implementation is tested against.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from keras_kare.backend.tensorflow.compiled import cached
from keras_kare.backend.tensorflow.outputs import flat_outputs


def _per_example_jacobians(model, x, variables: Sequence[tf.Variable], summed: bool) -> list[tf.Tensor]:
    """Per-variable Jacobians, each of shape (n, C, p) (C = 1 when summed)."""
    with tf.GradientTape(persistent=False) as tape:
        out = flat_outputs(model, x)  # (n, C)
        if summed:
            out = tf.reduce_sum(out, axis=1, keepdims=True)
    # UnconnectedGradients.ZERO fails inside pfor for Keras variables (their
    # dtype is a string); weights the forward pass never reads get zeros here.
    jacs = tape.jacobian(out, list(variables), experimental_use_pfor=True)
    n = tf.shape(out)[0]
    c = out.shape[1]
    return [
        tf.zeros([n, c, int(np.prod(v.shape))], out.dtype) if j is None else tf.reshape(j, [n, c, -1])
        for j, v in zip(jacs, variables)
    ]


_NOT_ACTIVATIONS = {"Const", "Placeholder", "ReadVariableOp", "Identity", "IdentityN", "NoOp", "Shape"}


class ForwardProfile(NamedTuple):
    activations: int  # float elements produced by one example's forward pass
    outputs: int  # flattened output width C


def forward_profile(model, x_one) -> ForwardProfile:
    """Sizes of one example's forward pass (for the memory estimate); no computation runs.

    Traces ``model(x_one, training=False)`` into a graph of its own for a
    batch of one example and sums the sizes of every floating op output,
    variable reads excluded (ops inside loops count once). Cached per model and
    input signature; usable while another function is being traced.

    Args:
        model: a built Keras model.
        x_one: a batch of one example (the nested structure the model takes;
            symbolic tensors with static shapes work).
    """
    specs = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), x_one)
    return cached(model, ("forward_profile", str(specs)), lambda: _profile(model, specs))


def _profile(model, specs) -> ForwardProfile:
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(specs)
    total = 0
    for op in concrete.graph.get_operations():
        if op.type in _NOT_ACTIVATIONS:
            continue
        for t in op.outputs:
            if t.dtype.is_floating and t.shape.is_fully_defined():
                total += t.shape.num_elements()
    outputs = sum(int(o.shape[1:].num_elements() or 1) for o in tf.nest.flatten(concrete.structured_outputs))
    return ForwardProfile(total, outputs)


def jacobian_gram(model, x1, x2=None, kernel: str = "trace") -> tf.Tensor:
    """NTK Gram of ``model`` between ``x1`` and ``x2`` via per-example Jacobians.

    Args:
        model: a built Keras model; its outputs are flattened to (n, C).
        x1: a batch of inputs (tensor or nested structure of tensors).
        x2: a second batch, or ``None`` for ``x2 = x1`` (the Jacobian of
            ``x1`` is then computed once and reused).
        kernel: ``"trace"``, ``"summed_output"`` or ``"full"``.

    Returns:
        ``(n1, n2)`` for ``"trace"``/``"summed_output"``; ``(n1, n2, C, C)``
        for ``"full"``.
    """
    variables = model.trainable_variables
    summed = kernel == "summed_output"
    j1 = _per_example_jacobians(model, x1, variables, summed)
    j2 = j1 if x2 is None else _per_example_jacobians(model, x2, variables, summed)
    if kernel == "full":
        terms = [tf.einsum("icp,jdp->ijcd", a, b) for a, b in zip(j1, j2)]
    else:
        terms = [tf.einsum("icp,jcp->ij", a, b) for a, b in zip(j1, j2)]
    return tf.add_n(terms)
