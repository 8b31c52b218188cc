"""Input checks shared by the public entry points (run before any heavy work)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

KERNELS = ("trace", "summed_output", "full")


def check_kernel_mode(kernel) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, received {kernel!r}.")
    return kernel


def check_model(model, name: str = "model"):
    """Check ``model`` is a Keras model/layer with trainable weights (once built)."""
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"{name} must be a keras.Model (or keras.layers.Layer), received {type(model).__name__}.")
    return model


def ensure_built(model, x, name: str = "model"):
    """Build ``model`` on one example of ``x`` if needed, then require trainable weights."""
    if not model.built or not model.trainable_variables:
        if not model.built:
            model(tf.nest.map_structure(lambda t: t[:1], x), training=False)
    if not model.trainable_variables:
        raise ValueError(
            f"{name} has no trainable weights; the NTK is the Gram of gradients with respect to "
            "trainable weights, so it would be identically zero."
        )
    return model


def num_rows(x, name: str) -> int:
    leaves = tf.nest.flatten(x)
    if not leaves:
        raise ValueError(f"{name} is empty; expected an array or tensor with a leading batch axis.")
    rows = set()
    for leaf in leaves:
        shape = np.shape(leaf) if not isinstance(leaf, tf.Tensor) else tuple(leaf.shape)
        if len(shape) == 0:
            raise ValueError(f"{name} must have a leading batch axis, received a scalar.")
        rows.add(shape[0])
    if len(rows) != 1:
        raise ValueError(f"all inputs in {name} must have the same number of rows, received {sorted(rows)}.")
    return rows.pop()


def as_input(x, name: str, dtype=None):
    """Convert array-likes to tensors (copying nothing the user owns) and check finiteness."""

    def convert(leaf):
        if isinstance(leaf, tf.Tensor):
            t = leaf
        else:
            arr = np.asarray(leaf)
            if arr.dtype == object:
                raise TypeError(f"{name} must be numeric, received an object array.")
            t = tf.convert_to_tensor(arr)
        if t.dtype.is_floating:
            if dtype is not None and t.dtype != dtype:
                t = tf.cast(t, dtype)
            if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(t))):
                raise ValueError(f"{name} contains NaN or inf.")
        elif not (t.dtype.is_integer or t.dtype.is_bool):
            raise TypeError(f"{name} must be numeric, received dtype {t.dtype.name}.")
        return t

    if isinstance(x, (list, tuple)) and x and not isinstance(x[0], (list, tuple, np.ndarray, tf.Tensor)):
        x = np.asarray(x)
    return tf.nest.map_structure(convert, x)


def as_targets(y, n: int, name: str = "targets") -> np.ndarray:
    """Targets as a float64 array of shape (n,) or (n, C); integer/bool labels are cast."""
    arr = np.asarray(y)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric, received dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, received complex dtype {arr.dtype}.")
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (n,) or (n, C), received shape {arr.shape}.")
    if arr.shape[0] != n:
        raise ValueError(f"{name} have {arr.shape[0]} rows but the inputs have {n}; expected one target row per input.")
    arr = arr.astype(np.float64)  # a copy: the caller's array is never touched
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or inf.")
    return arr
