"""Input checks shared by the public entry points, run once at the boundary before any heavy work.

Every public entry point (``ntk``, ``kare``, ``layers.KARE``, ``KernelPredictor``,
``KAREModel.fit``, the callbacks) converts and checks its arguments here; the
code below it trusts them. Errors are ``ValueError``/``TypeError`` whose
message names the argument, what was received and what is expected.

Array-likes are accepted as scikit-learn's ``check_array`` accepts them:
arrays, tensors, and nested Python lists of rows (``[[0.1, 2.0], [0.3, 1.0]]``).
A list or tuple that holds arrays or tensors is a *structure* of several
inputs (Keras' multi-input convention) unless the network takes exactly one
input, in which case it is one array-like.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

KERNELS = ("trace", "summed_output", "full")


def check_kernel_mode(kernel) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, received {kernel!r}.")
    return kernel


def check_batch_size(batch_size, name: str = "batch_size"):
    """``batch_size`` as an int ≥ 1, or None; raises ValueError otherwise."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{name} must be a positive int or None, received {batch_size!r}.")
    return int(batch_size)


def check_model(model, name: str = "model"):
    """Check ``model`` is a Keras model/layer with trainable weights (once built)."""
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"{name} must be a keras.Model (or keras.layers.Layer), received {type(model).__name__}.")
    return model


def ensure_built(model, x, name: str = "model"):
    """Build ``model`` on one example of ``x`` if needed, then require trainable weights."""
    if not model.built:
        model(take_rows(x, 0, 1), training=False)
    if not model.trainable_variables:
        raise ValueError(
            f"{name} has no trainable weights; the NTK is the Gram of gradients with respect to "
            "trainable weights, so it would be identically zero."
        )
    return model


def take_rows(x, start: int, stop: int):
    """Rows ``start:stop`` of every leaf of a (possibly nested) input."""
    return tf.nest.map_structure(lambda t: t[start:stop], x)


def num_rows(x, name: str) -> int:
    """The common leading (batch) dimension of every array in ``x``."""
    leaves = tf.nest.flatten(x)
    if not leaves:
        raise ValueError(f"{name} is empty; expected an array or tensor with a leading batch axis.")
    rows = set()
    for leaf in leaves:
        shape = np.shape(leaf) if not isinstance(leaf, tf.Tensor) else tuple(leaf.shape)
        if len(shape) == 0:
            raise ValueError(f"{name} must have a leading batch axis (shape (n, ...)), received a scalar.")
        rows.add(shape[0])
    if len(rows) != 1:
        raise ValueError(f"all inputs in {name} must have the same number of rows, received {sorted(rows)}.")
    return rows.pop()


# ---------------------------------------------------------------- array-likes
def _is_tensorish(leaf) -> bool:
    return isinstance(leaf, (np.ndarray, tf.Tensor, tf.Variable)) or hasattr(leaf, "__array__")


def _holds_arrays(x) -> bool:
    """Whether a list/tuple holds arrays, tensors or dicts (a structure of inputs) rather than Python rows."""
    return any(_is_tensorish(e) or isinstance(e, dict) for e in x)


def _structure(x, single_input: bool, name: str):
    """``x`` with every array-like replaced by one leaf (nested Python lists of rows become one array)."""
    if isinstance(x, dict):
        return {k: _structure(val, False, name) for k, val in x.items()}
    if isinstance(x, (list, tuple)):
        if single_input and len(x) == 1 and _holds_arrays(x):
            return _structure(x[0], False, name)  # Keras' [x] for a one-input network
        if not single_input and _holds_arrays(x):
            return type(x)(_structure(e, False, name) for e in x)
        try:
            return np.asarray(x)
        except ValueError as err:  # ragged nested lists
            raise ValueError(f"{name} must be a rectangular array-like (n, ...), received ragged rows: {err}") from err
    return x


def _leaf_tensor(leaf, name: str, dtype, floats_only: bool = True) -> tf.Tensor:
    if isinstance(leaf, tf.Tensor):
        t = leaf
    else:
        try:
            arr = np.asarray(leaf)
        except ValueError as err:  # ragged nested lists
            raise ValueError(f"{name} must be a rectangular array-like (n, ...), received ragged rows: {err}") from err
        if arr.dtype == object:
            raise TypeError(f"{name} must be numeric, received an object array (ragged rows or mixed types?).")
        if arr.dtype.kind in "USV":
            raise TypeError(f"{name} must be numeric, received dtype {arr.dtype}.")
        t = tf.convert_to_tensor(arr)
    if t.dtype.is_complex:
        raise TypeError(f"{name} must be real, received dtype {t.dtype.name}.")
    if not (t.dtype.is_floating or t.dtype.is_integer or t.dtype.is_bool):
        raise TypeError(f"{name} must be numeric, received dtype {t.dtype.name}.")
    if dtype is not None and t.dtype != dtype:
        # floats go to the network's float dtype; numbers to a declared float input; integer ids to a declared
        # integer input (floats are never truncated to ids here: Keras decides what a float id means)
        if (t.dtype.is_floating and dtype.is_floating) or (
            not floats_only and (dtype.is_floating or t.dtype.is_integer)
        ):
            t = tf.cast(t, dtype)
    if t.dtype.is_floating and tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(t))):
        raise ValueError(f"{name} contains NaN or inf.")
    return t


def as_input(x, name: str, dtype=None):
    """Convert array-likes to tensors (copying nothing the user owns) and check finiteness.

    Without a network: a list/tuple of Python numbers or rows is one array, a
    list/tuple holding arrays is a structure of inputs. Floating leaves are
    cast to ``dtype`` if given. Use :func:`as_network_input` when the network
    is known.
    """
    if x is None:
        raise ValueError(f"{name} is None; expected an array-like of shape (n, ...).")
    dtype = None if dtype is None else tf.as_dtype(dtype)
    return tf.nest.map_structure(lambda leaf: _leaf_tensor(leaf, name, dtype), _structure(x, False, name))


# ---------------------------------------------------------------- against the network
def declared_inputs(model):
    """The network's declared inputs, a flat list of ``keras.KerasTensor`` (``model.inputs``), or None.

    Sequential and Functional networks built from ``keras.Input`` declare
    them; a subclassed network does not (its inputs are checked by tracing it).
    """
    try:
        declared = model.inputs
    except (AttributeError, ValueError):
        return None
    leaves = list(declared) if isinstance(declared, (list, tuple)) else []
    if not leaves or not all(hasattr(t, "shape") and hasattr(t, "dtype") for t in leaves):
        return None
    return leaves


def float_dtype(model):
    """The float dtype inputs are cast to: the model's first floating ``keras.Input``, else its compute dtype.

    A model whose layers are float64 under the default float32 policy declares
    ``keras.Input(..., dtype="float64")``; casting its inputs to the model
    object's own (policy) dtype would silently round them to float32.
    """
    for t in declared_inputs(model) or []:
        dtype = tf.as_dtype(t.dtype)
        if dtype.is_floating:
            return dtype
    dtype = tf.as_dtype(getattr(model, "compute_dtype", None) or "float32")
    return dtype if dtype.is_floating else tf.float32


def _describe(shapes) -> str:
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


def as_network_input(model, x, name: str, min_rows: int = 1, build: bool = True):
    """``x`` converted, cast and checked against ``model`` (built on it if needed); returns tensors.

    Checks, before any tracing or differentiation: numeric and finite, one
    leading batch axis of at least ``min_rows`` examples shared by every input,
    as many inputs as the network takes, and each input's per-example shape
    equal to the one the network declares (``None`` dimensions match anything;
    no rank is added or dropped, unlike Keras' own lenient call). Floating (and
    integer-to-float) inputs are cast to the declared dtype.

    Args:
        model: a Keras model (unwrapped network).
        x: an array-like or the nested structure the model takes.
        name: the argument's name for error messages (``"x1"``, ``"x"``…).
        min_rows: the smallest number of examples accepted.
        build: build an unbuilt network on ``x`` and require trainable weights
            (``KAREModel.fit`` leaves building to its first step).

    Returns:
        The structure of ``x`` with tensor leaves.

    Example:
        >>> as_network_input(net, [[0.0, 1.0, 2.0]], "x").shape  # doctest: +SKIP
        TensorShape([1, 3])
    """
    if x is None:
        raise ValueError(f"{name} is None; expected an array-like of shape (n, ...).")
    flat_declared = declared_inputs(model)
    single = flat_declared is not None and len(flat_declared) == 1
    structured = _structure(x, single, name)
    leaves = tf.nest.flatten(structured)
    if flat_declared is not None and len(leaves) != len(flat_declared):
        raise ValueError(
            f"{name} holds {len(leaves)} input arrays but the network takes {len(flat_declared)} "
            f"(per-example shapes {_describe([tuple(t.shape[1:]) for t in flat_declared])})."
        )
    if flat_declared is not None and not single and not isinstance(structured, (list, tuple)):
        flat_declared = None  # e.g. a dict: Keras matches its entries to inputs by name; checked by tracing
    fallback = float_dtype(model)
    if flat_declared is None:  # undeclared inputs: only floats are cast (integer ids stay ids)
        tensors = [_leaf_tensor(leaf, name, fallback) for leaf in leaves]
    else:
        tensors = [
            _leaf_tensor(leaf, name, tf.as_dtype(t.dtype), floats_only=False) for leaf, t in zip(leaves, flat_declared)
        ]
    x_t = tf.nest.pack_sequence_as(structured, tensors)
    n = num_rows(x_t, name)
    if n < min_rows:
        raise ValueError(f"{name} has {n} examples; expected at least {min_rows}.")
    if flat_declared is not None:
        got = [tuple(t.shape[1:]) for t in tensors]
        expected = [tuple(t.shape[1:]) for t in flat_declared]
        for g, e in zip(got, expected):
            if len(g) != len(e) or any(a is not None and a != b for a, b in zip(e, g)):
                raise ValueError(
                    f"{name} has per-example shape {_describe(got)} (shape "
                    f"{_describe([tuple(t.shape) for t in tensors])}) but the network expects {_describe(expected)}"
                    + (
                        f": give {name} with shape (n, {', '.join('?' if d is None else str(d) for d in e)})."
                        if single
                        else "."
                    )
                )
    if build:
        ensure_built(model, x_t)
    return x_t


def signature(x) -> tuple:
    """Hashable key of what determines a compiled function's graph: structure, per-example shapes, dtypes."""
    flat = tf.nest.flatten(x)
    leaves = tuple((tuple(t.shape[1:]), tf.as_dtype(t.dtype).name) for t in flat)
    return (str(tf.nest.map_structure(lambda _: 0, x)), leaves)


def batch_specs(x):
    """``tf.TensorSpec`` of ``x`` with the batch axis unknown and every other axis fixed (never unknown rank)."""
    return tf.nest.map_structure(lambda t: tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype), x)


def as_targets(y, n: int, name: str = "targets") -> np.ndarray:
    """Targets as a float64 array of shape (n,) or (n, C); integer/bool labels are cast."""
    if y is None:
        raise ValueError(f"{name} is None; expected targets of shape ({n},) or ({n}, C).")
    try:
        arr = np.asarray(y)
    except ValueError as err:
        raise ValueError(f"{name} must be a rectangular array-like, received ragged rows: {err}") from err
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric, received dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, received complex dtype {arr.dtype}.")
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape ({n},) or ({n}, C), received shape {arr.shape}.")
    if arr.shape[0] != n:
        raise ValueError(f"{name} have {arr.shape[0]} rows but the inputs have {n}; expected one target row per input.")
    arr = arr.astype(np.float64)  # a copy: the caller's array is never touched
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or inf.")
    return arr


# ---------------------------------------------------------------- KAREModel.fit, before the first step
DEFAULT_BATCH_SIZE = 32  # Keras' default for arrays


def _is_array_data(x) -> bool:
    """Arrays, tensors, Python lists of rows or nested lists/dicts of them (not a dataset or a generator)."""
    if isinstance(x, (dict, list, tuple)):
        return all(_is_array_data(e) for e in (x.values() if isinstance(x, dict) else x))
    return isinstance(x, (np.ndarray, tf.Tensor, int, float, np.number)) or hasattr(x, "__array__")


def _check_batches(n: int, batch_size, what: str, method: str = "KAREModel.fit") -> None:
    """Raise if batches of ``batch_size`` over ``n`` examples would leave a KARE batch of one example."""
    size = min(check_batch_size(batch_size) or DEFAULT_BATCH_SIZE, n)
    if n < 2:
        raise ValueError(f"{method}: {what} has {n} example; KARE needs at least 2 examples per batch.")
    if n % size == 1:
        raise ValueError(
            f"{method}: {n} {what} examples in batches of {size} leave a final batch of 1 example, on which "
            f"KARE is undefined; use a batch size that leaves no remainder of 1 (e.g. batch_size={n} or "
            f"{size + 1 if n % (size + 1) != 1 else size - 1}), or a tf.data pipeline with drop_remainder=True."
        )


def check_fit_arrays(
    model,
    x,
    y,
    batch_size=None,
    validation_split=0.0,
    validation_data=None,
    validation_batch_size=None,
    method: str = "KAREModel.fit",
):
    """Check in-memory ``fit`` data before the first step; returns ``(x, y)`` (Python rows as arrays).

    Everything ``KAREModel.fit`` can know before it updates a weight: x
    against the network's declared inputs (:func:`as_network_input`, without
    building the network), targets of shape (n,) or (n, C) with one row per
    example, and batch sizes that never leave a batch of one example (KARE of
    one example is undefined), for the training and the validation arrays.
    ``model`` is the base network. Data that are not arrays are returned as is
    (see :func:`check_fit_dataset`). ``method`` names the caller in messages
    (``KAREModel.evaluate`` runs the same checks on its data).
    """
    if not _is_array_data(x):
        return x, y
    x_t = as_network_input(model, x, "x", min_rows=1, build=False)
    n = num_rows(x_t, "x")
    if y is None:
        raise ValueError(f"{method} needs targets: call it with (x, y), y of shape (n,) or (n, C).")
    as_targets(y, n, "y")  # raises naming y
    if isinstance(x, (list, tuple)) and not _holds_arrays(x):
        x = x_t  # Python rows: one array from here on (Keras would read a list as several inputs)
    if not isinstance(y, (np.ndarray, tf.Tensor)):
        y = np.asarray(y)
    split = float(validation_split or 0.0)
    n_train = int(n * (1.0 - split)) if split and validation_data is None else n
    _check_batches(n_train, batch_size, "training" if method.endswith("fit") else "evaluation", method)
    if split and validation_data is None and n - n_train > 0:
        _check_batches(n - n_train, validation_batch_size or batch_size, "validation", method)
    if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2 and _is_array_data(validation_data[0]):
        vx = as_network_input(model, validation_data[0], "validation_data x", min_rows=1, build=False)
        nv = num_rows(vx, "validation_data x")
        as_targets(validation_data[1], nv, "validation_data y")
        _check_batches(nv, validation_batch_size or batch_size, "validation", method)
    return x, y


def check_fit_dataset(data, name: str = "x", method: str = "KAREModel.fit") -> None:
    """Check a ``tf.data.Dataset`` given to ``KAREModel.fit`` from its element spec (nothing is read).

    Its elements must be ``(x, y)`` pairs (KARE needs targets), y of rank 1
    or 2, and, where both batch sizes are static, the same number of rows
    in x and y. Unknown batch sizes are checked at run time by the KARE layer.
    """
    if not isinstance(data, tf.data.Dataset):
        return
    spec = data.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2 or spec[1] is None:
        raise ValueError(
            f"{method}: the dataset {name} yields {type(spec).__name__} elements; KARE needs (x, y) pairs "
            "of inputs and targets."
        )
    x_rows = {s.shape[0] for s in tf.nest.flatten(spec[0]) if s.shape.rank}
    y_specs = tf.nest.flatten(spec[1])
    for s in y_specs:
        if s.shape.rank is not None and s.shape.rank not in (1, 2):
            raise ValueError(
                f"{method}: the dataset's targets have batch shape {tuple(s.shape)}; expected (batch,) or "
                "(batch, C) targets."
            )
    y_rows = {s.shape[0] for s in y_specs if s.shape.rank}
    known = {r for r in x_rows | y_rows if r is not None}
    if len(known) > 1:
        raise ValueError(
            f"{method}: the dataset's x batches have {sorted(r for r in x_rows if r is not None)} rows but its "
            f"targets y have {sorted(r for r in y_rows if r is not None)}; x and y batches must hold the same "
            "examples."
        )
