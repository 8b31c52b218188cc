"""Public empirical NTK: validation, blocking and kernel modes.

The autodiff itself lives in :mod:`keras_kare.backend`; this module only checks
inputs, splits the work into blocks and assembles the Gram.
"""

from __future__ import annotations

import logging
import weakref
from typing import Optional

import numpy as np
import tensorflow as tf

from keras_kare import _validation as v
from keras_kare import distribute as _distribute
from keras_kare.backend import block_gram, forward_profile, gram, resolve_implementation, swap_examples
from keras_kare.memory import GIB, available_bytes, check_gram_memory, estimate_gram_bytes
from keras_kare.networks import unwrap_network
from keras_kare.progress import Progress, check_verbose

logger = logging.getLogger("keras_kare")
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled_gram(model, kernel: str, implementation: str):
    """A ``tf.function`` of the Gram for ``model``, cached per model.

    Eager calls of the autodiff (``tape.jacobian`` with ``pfor`` in
    particular) rebuild their graph on every call; compiling once per model,
    kernel mode and implementation makes blocked computation cost one trace
    per distinct block shape instead of one per block.
    """
    per_model = _COMPILED.setdefault(model, {})
    # freezing/unfreezing layers changes which variables count: part of the key
    key = (kernel, implementation, tuple(id(v) for v in model.trainable_variables))
    if key not in per_model:

        def fn(x1, x2=None):
            return gram(model, x1, x2, kernel=kernel, implementation=implementation)

        per_model[key] = tf.function(fn, reduce_retracing=True)
    return per_model[key]


def _gram(model, x1, x2, kernel: str, implementation: str):
    if tf.executing_eagerly():
        return _compiled_gram(model, kernel, implementation)(x1, x2)
    return gram(model, x1, x2, kernel=kernel, implementation=implementation)


def _slice(x, start: int, stop: int):
    return tf.nest.map_structure(lambda t: t[start:stop], x)


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def blocked_gram(model, x1, x2, kernel: str, implementation: str, batch_size: Optional[int], verbose="auto"):
    """Gram assembled from (batch_size × batch_size) blocks; inputs already validated.

    With ``x2=None`` only the upper-triangular blocks are computed and the rest
    are mirrored, and the result is exactly symmetric. Eagerly, the structured
    implementation captures each block's layer factors once and pairs them
    (``backend.block_gram``; about half the work of capturing both blocks of
    every pair); otherwise each pair is computed from its two input blocks.
    ``verbose``: progress bar over the computed blocks (see :mod:`keras_kare.progress`).
    """
    n1 = v.num_rows(x1, "x1")
    n2 = n1 if x2 is None else v.num_rows(x2, "x2")
    if batch_size is None or (batch_size >= n1 and batch_size >= n2):
        return _gram(model, x1, x2, kernel, implementation)  # symmetrised by backend.gram
    b1 = _blocks(n1, batch_size)
    b2 = b1 if x2 is None else _blocks(n2, batch_size)
    n_computed = len(b1) * (len(b1) + 1) // 2 if x2 is None else len(b1) * len(b2)
    progress = Progress(n_computed, verbose, unit_name="block")
    pair = _captured_once(model, x1, x2, b1, b2, kernel, implementation, batch_size)
    if pair is None:  # recapture both blocks for every pair

        def pair(i, j):
            xi = _slice(x1, *b1[i])
            if x2 is None and i == j:
                return _gram(model, xi, None, kernel, implementation)  # symmetric diagonal block
            return _gram(model, xi, _slice(x1 if x2 is None else x2, *b2[j]), kernel, implementation)

    place = _distribute.block_placement()
    blocks: dict[tuple[int, int], tf.Tensor] = {}
    for i in range(len(b1)):
        for j in range(len(b2)):
            if x2 is None and j < i:
                blocks[i, j] = swap_examples(blocks[j, i], kernel)
                continue
            blocks[i, j] = place(pair, i, j)
            progress.advance()
    rows = [tf.concat([blocks[i, j] for j in range(len(b2))], axis=1) for i in range(len(b1))]
    return tf.concat(rows, axis=0)


CAPTURE_MEMORY_FRACTION = 0.25
"""Per-block factors are kept for reuse only if all of them fit in this fraction of available memory."""


def _captured_once(model, x1, x2, b1, b2, kernel, implementation, batch_size):
    """``pair(i, j) -> Gram block`` from factors captured once per block, or None.

    None when the implementation keeps no factors (jacobian), when not eager
    (inside a ``tf.function`` the blocks are traced as one graph anyway), when
    no weight is used, or when keeping every block's factors would take more
    than :data:`CAPTURE_MEMORY_FRACTION` of the available memory (logged).
    """
    if not tf.executing_eagerly():
        return None
    engine = block_gram(model, kernel, implementation, batch_size)
    if engine is None:
        return None
    first = engine.features(_slice(x1, *b1[0]))
    if not first:
        return None
    n_blocks = len(b1) + (0 if x2 is None else len(b2))
    needed, available = engine.nbytes(first) * n_blocks, available_bytes()
    if needed > CAPTURE_MEMORY_FRACTION * available:
        logger.info(
            "keras_kare.ntk: keeping the layer factors of all %d blocks would take %.1f GiB of the %.1f GiB "
            "available; recomputing them for every block pair instead (about twice the work).",
            n_blocks,
            needed / GIB,
            available / GIB,
        )
        return None
    f1 = [first] + [engine.features(_slice(x1, s, e)) for s, e in b1[1:]]
    f2 = f1 if x2 is None else [engine.features(_slice(x2, s, e)) for s, e in b2]

    def pair(i, j):
        return engine.gram(f1[i]) if x2 is None and i == j else engine.gram(f1[i], f2[j])

    return pair


def ntk(
    model,
    x1,
    x2=None,
    kernel: str = "trace",
    implementation: str = "auto",
    batch_size: Optional[int] = None,
    verbose="auto",
) -> tf.Tensor:
    """Empirical neural tangent kernel Gram of a Keras model.

    ``K(x, x') = Σ_θ ∂f(x)/∂θ · ∂f(x')/∂θ`` over all trainable weights (biases
    included), computed in inference mode (dropout off, batch-norm on moving
    statistics) so examples do not interact.

    Args:
        model: any Keras model (Sequential, Functional or subclassed); built on
            the first example of ``x1`` if it is not built yet. A ``KAREModel``
            is unwrapped to its base network.
        x1: (n1, ...) inputs (array, tensor, or the nested structure the
            model takes).
        x2: (n2, ...) inputs, or ``None`` for ``x2 = x1`` (symmetry is
            exploited and the result is exactly symmetric).
        kernel: for C outputs, ``"trace"`` = Σ_c ∇f_c·∇f_c (no division by C,
            unlike neural-tangents), ``"summed_output"`` = NTK of Σ_c f_c (the
            paper's convention, includes cross-output terms) or ``"full"``, the
            (n1, n2, C, C) block kernel. All three agree for scalar outputs.
        implementation: ``"auto"`` (structured when the model supports it),
            ``"jacobian"`` (per-example Jacobians; exact for any model) or
            ``"structured"``. See :mod:`keras_kare.backend.tensorflow.dispatch`
            for the cost model.
        batch_size: compute the Gram in blocks of this many examples so that
            the per-example work never exceeds one block pair. ``None`` means
            one block.
        verbose: ``keras.utils.Progbar`` over the blocks: ``"auto"`` (shown
            for more than 8 blocks), ``0`` or ``1``.

    Returns:
        A float tensor of shape (n1, n2), or (n1, n2, C, C) for ``"full"``;
        differentiable w.r.t. ``model.trainable_variables``.

    Example:
        >>> import keras, numpy as np, keras_kare
        >>> net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, "gelu"), keras.layers.Dense(1)])
        >>> keras_kare.ntk(net, np.ones((5, 3), "float32")).shape
        TensorShape([5, 5])
    """
    return compute_ntk(model, x1, x2, kernel, implementation, batch_size, verbose=verbose)


def compute_ntk(
    model, x1, x2=None, kernel="trace", implementation="auto", batch_size=None, extra_copies: int = 0, verbose="auto"
):
    """:func:`ntk` with one more knob for callers inside the package.

    ``extra_copies`` is the number of float64 copies of the result the caller
    will make (``KernelPredictor`` keeps one), for the memory guard.
    """
    _distribute.check_single_worker("keras_kare.ntk (also used by KernelPredictor)")
    model = unwrap_network(v.check_model(model))
    v.check_kernel_mode(kernel)
    check_verbose(verbose)
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int or None, received {batch_size!r}.")
    dtype = _model_dtype(model)
    x1 = v.as_input(x1, "x1", dtype)
    v.num_rows(x1, "x1")
    if x2 is not None:
        x2 = v.as_input(x2, "x2", dtype)
        v.num_rows(x2, "x2")
    v.ensure_built(model, x1)
    implementation = resolve_implementation(model, implementation)
    _check_memory(model, x1, x2, kernel, implementation, batch_size, extra_copies)
    return blocked_gram(model, x1, x2, kernel, implementation, batch_size, verbose)


def _check_memory(model, x1, x2, kernel, implementation, batch_size, extra_copies):
    """Raise :class:`~keras_kare.memory.GramMemoryError` before an oversized Gram is attempted."""
    n1 = v.num_rows(x1, "x1")
    n2 = n1 if x2 is None else v.num_rows(x2, "x2")
    one_block = x2 is None and (batch_size is None or batch_size >= n1)
    result, work, n_outputs = gram_bytes(
        model, _slice(x1, 0, 1), n1, n2, kernel, implementation, batch_size, extra_copies, one_jacobian=one_block
    )
    shape = f"{n1}x{n2}" + (f"x{n_outputs}x{n_outputs}" if kernel == "full" else "")
    check_gram_memory(result, work, f"ntk: the {shape} Gram (implementation={implementation!r})", batch_size)


def gram_bytes(
    model,
    x_one,
    n1: int,
    n2: int,
    kernel: str,
    implementation: str,
    batch_size: Optional[int],
    extra_copies: int = 0,
    one_jacobian: bool = False,
) -> tuple[int, int, int]:
    """(result bytes, work bytes, output width C) of an n1 × n2 Gram of ``model`` (``keras_kare.memory``).

    ``x_one`` is one example (a batch of one, possibly symbolic with a static
    shape); the forward pass is traced, not run (``backend.forward_profile``).
    """
    profile = forward_profile(model, x_one)
    variables = model.trainable_variables
    n_params = sum(int(np.prod(w.shape)) for w in variables)
    result, work = estimate_gram_bytes(
        n1,
        n2,
        profile.outputs,
        n_params,
        len(variables),
        kernel,
        implementation,
        batch_size,
        itemsize=_model_dtype(model).size,
        extra_copies=extra_copies,
        one_jacobian=one_jacobian,
        activations=profile.activations if implementation == "jacobian" else 0,
    )
    return result, work, profile.outputs


def _model_dtype(model):
    """The float dtype inputs are cast to: the model's first floating ``keras.Input``, else its compute dtype.

    A model whose layers are float64 under the default float32 policy declares
    ``keras.Input(..., dtype="float64")``; casting its inputs to the model
    object's own (policy) dtype would silently round them to float32.
    """
    try:
        declared = [tf.as_dtype(t.dtype) for t in tf.nest.flatten(getattr(model, "inputs", None) or [])]
    except (AttributeError, TypeError, ValueError):  # not built from keras.Input
        declared = []
    for dtype in declared:
        if dtype.is_floating:
            return dtype
    dtype = tf.as_dtype(getattr(model, "compute_dtype", None) or "float32")
    return dtype if dtype.is_floating else tf.float32
