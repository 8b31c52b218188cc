"""Row blocks of a Gram whose batch is spread over several participants (replicas).

A global batch X of B examples split into R shares x_1 … x_R (one per replica)
has the Gram ``K(X, X)``; participant r computes its row block
``K(x_r, X)`` (B/R × B) and a collective stacks the blocks. The collective is
passed in as ``gather(tensor, axis)`` — concatenate every participant's tensor
along ``axis`` in participant order, differentiably (the cotangent of a
gathered tensor is summed over participants and each gets its own slice, as
``tf.distribute``'s ``ReplicaContext.all_gather`` does) — so this module knows
nothing of ``tf.distribute``.

How the columns X are obtained (cost per participant, n = B/R local examples):

* ``"structured"``: the per-variable factors of the local examples
  (``structured_features``: one forward/backward pass over n examples) are
  gathered, ``O(B · Σ widths)`` communicated, and paired with the local ones:
  ``O(n · B · Σ widths)``. Nothing is recomputed for other participants'
  examples; their factors' gradients travel back through ``gather``.
* ``"jacobian"``: the *inputs* are gathered (no gradient) and the per-example
  Jacobians of all B examples are computed locally: ``O(B C P)`` per
  participant, redundant but implementation-agnostic.

Either way the row block is differentiable with respect to the model's
trainable variables, and the sum over participants of each one's gradient
contribution (through its row block and the factors it contributed) is the
gradient of a function of the stacked Gram.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import tensorflow as tf

from keras_kare.backend.tensorflow import structured
from keras_kare.backend.tensorflow.dispatch import resolve_implementation
from keras_kare.backend.tensorflow.jacobian import jacobian_gram
from keras_kare.backend.tensorflow.structured_factors import map_examples


def row_block_gram(
    model, x, gather: Callable[[tf.Tensor, int], tf.Tensor], kernel: str = "trace", implementation: str = "auto"
) -> tf.Tensor:
    """This participant's rows ``K(x, X)`` of the Gram over the gathered batch X.

    Args:
        model: a built Keras model.
        x: this participant's examples (n of them).
        gather: ``gather(tensor, axis)``, the differentiable concatenation of
            every participant's ``tensor`` along ``axis`` (see module docstring).
        kernel: ``"trace"``, ``"summed_output"`` or ``"full"``.
        implementation: ``"auto"``, ``"structured"`` or ``"jacobian"``.

    Returns:
        (n, B), or (n, B, C, C) for ``kernel="full"``; B is the gathered batch.

    Example::

        rows = row_block_gram(net, x_local, lambda t, axis: ctx.all_gather(t, axis))
        k = ctx.all_gather(rows, 0)  # (B, B)
    """
    implementation = resolve_implementation(model, implementation)
    if implementation == "structured":
        local = structured.structured_features(model, x, kernel)
        everyone = OrderedDict((key, map_examples(f, gather)) for key, f in local.items())
        k = structured.features_gram(local, everyone, kernel)
        if k is not None:
            return k
    x_all = tf.nest.map_structure(lambda t: tf.stop_gradient(gather(t, 0)), x)
    if implementation == "structured":  # no variable reaches the outputs: an all-zero block
        return structured.structured_gram(model, x, x_all, kernel)
    return jacobian_gram(model, x, x_all, kernel=kernel)
