"""How a Keras model's outputs are presented to the NTK: a (n, C) matrix."""

from __future__ import annotations

import tensorflow as tf


def flatten_outputs(out) -> tf.Tensor:
    """A model's outputs (a tensor, list or dict) as one (n, C) matrix.

    Each output is flattened per example and the pieces are concatenated in
    ``tf.nest`` order. The static width C stays a Python int when the batch
    size is unknown (a retraced ``tf.function``), so callers can size buffers.

    Example:
        >>> flatten_outputs([tf.zeros((4, 2)), tf.zeros((4, 3, 2))]).shape
        TensorShape([4, 8])
    """
    parts = tf.nest.flatten(out)
    n = tf.shape(parts[0])[0]
    flat = []
    for p in parts:
        known = p.shape.rank is not None and p.shape[1:].is_fully_defined()
        f = tf.reshape(p, [n, p.shape[1:].num_elements() if known else -1])
        if known:
            f.set_shape([p.shape[0], p.shape[1:].num_elements()])
        flat.append(f)
    return flat[0] if len(flat) == 1 else tf.concat(flat, axis=1)


def flat_outputs(model, x) -> tf.Tensor:
    """Run ``model`` in inference mode and flatten its outputs to (n, C) with :func:`flatten_outputs`.

    Inference mode (``training=False``) is part of the NTK's definition here:
    dropout is off and batch normalisation uses its moving statistics, so
    examples do not interact and the Gram is a kernel. Multi-output models
    (list/dict outputs) have their flattened outputs concatenated in
    ``tf.nest`` order.
    """
    return flatten_outputs(model(x, training=False))
