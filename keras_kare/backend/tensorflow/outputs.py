"""How a Keras model's outputs are presented to the NTK: a (n, C) matrix."""

from __future__ import annotations

import tensorflow as tf


def flat_outputs(model, x) -> tf.Tensor:
    """Run ``model`` in inference mode and flatten its outputs to (n, C).

    Inference mode (``training=False``) is part of the NTK's definition here
    (see ``shared/notes/method.md``): dropout is off and batch normalisation
    uses its moving statistics, so examples do not interact and the Gram is a
    kernel. Multi-output models (list/dict outputs) have their flattened
    outputs concatenated in ``tf.nest`` order.
    """
    out = model(x, training=False)
    parts = tf.nest.flatten(out)
    n = tf.shape(parts[0])[0]
    flat = [tf.reshape(p, [n, -1]) for p in parts]
    # With an unknown batch size (a retraced tf.function) reshape to [n, -1]
    # loses the static output width; restore it so C stays a Python int.
    for p, f in zip(parts, flat):
        if p.shape.rank is not None and p.shape[1:].is_fully_defined():
            f.set_shape([p.shape[0], p.shape[1:].num_elements()])
    return flat[0] if len(flat) == 1 else tf.concat(flat, axis=1)
