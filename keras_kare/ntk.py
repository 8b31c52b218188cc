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


def _compiled_gram(model, x1, x2, kernel: str, implementation: str):
    """A ``tf.function`` of the Gram for ``model`` and the inputs' signature, cached per model.

    Eager calls of the autodiff (``tape.jacobian`` with ``pfor`` in
    particular) rebuild their graph on every call; compiling once makes
    blocked computation cost one trace per graph instead of one per block.
    The cache key is everything that determines the graph: kernel mode,
    implementation, the variables that count (freezing a layer changes them)
    and each input's per-example shape and dtype (``_validation.signature``).
    The function's input signature fixes those and leaves only the batch axis
    free, so no call relaxes it further (to an unknown rank, say) and no call
    changes what a later call computes.
    """
    per_model = _COMPILED.setdefault(model, {})
    key = (
        kernel,
        implementation,
        tuple(id(w) for w in model.trainable_variables),
        v.signature(x1),
        None if x2 is None else v.signature(x2),
    )
    if key not in per_model:
        if x2 is None:

            def fn(a):
                return gram(model, a, None, kernel=kernel, implementation=implementation)

            specs = [v.batch_specs(x1)]
        else:

            def fn(a, b):
                return gram(model, a, b, kernel=kernel, implementation=implementation)

            specs = [v.batch_specs(x1), v.batch_specs(x2)]
        per_model[key] = tf.function(fn, input_signature=specs)
    return per_model[key]


def _gram(model, x1, x2, kernel: str, implementation: str):
    if tf.executing_eagerly():
        fn = _compiled_gram(model, x1, x2, kernel, implementation)
        return fn(x1) if x2 is None else fn(x1, x2)
    return gram(model, x1, x2, kernel=kernel, implementation=implementation)


def _rows(x) -> int:
    """The number of examples of validated inputs."""
    return int(tf.nest.flatten(x)[0].shape[0])


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
    n1 = _rows(x1)
    n2 = n1 if x2 is None else _rows(x2)
    if batch_size is None or (batch_size >= n1 and batch_size >= n2):
        return _gram(model, x1, x2, kernel, implementation)  # symmetrised by backend.gram
    b1 = _blocks(n1, batch_size)
    b2 = b1 if x2 is None else _blocks(n2, batch_size)
    n_computed = len(b1) * (len(b1) + 1) // 2 if x2 is None else len(b1) * len(b2)
    progress = Progress(n_computed, verbose, unit_name="block")
    pair = _captured_once(model, x1, x2, b1, b2, kernel, implementation, batch_size)
    if pair is None:  # recapture both blocks for every pair

        def pair(i, j):
            xi = v.take_rows(x1, *b1[i])
            if x2 is None and i == j:
                return _gram(model, xi, None, kernel, implementation)  # symmetric diagonal block
            return _gram(model, xi, v.take_rows(x1 if x2 is None else x2, *b2[j]), kernel, implementation)

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
    engine = block_gram(model, kernel, implementation, batch_size, v.batch_specs(x1))
    if engine is not None and x2 is not None and v.signature(x2) != v.signature(x1):
        return None  # the engine is compiled for one input signature
    if engine is None:
        return None
    first = engine.features(v.take_rows(x1, *b1[0]))
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
    f1 = [first] + [engine.features(v.take_rows(x1, s, e)) for s, e in b1[1:]]
    f2 = f1 if x2 is None else [engine.features(v.take_rows(x2, s, e)) for s, e in b2]

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
        x1: (n1, ...) inputs: an array-like (array, tensor, nested Python
            lists of rows) or the nested structure the model takes. Checked
            against the network before anything is traced: a per-example shape
            other than the declared one (no unit axis added or dropped), a
            non-numeric or complex dtype, NaN/inf or an empty batch raise
            ``ValueError``/``TypeError`` naming the argument.
        x2: (n2, ...) inputs, checked the same way, or ``None`` for
            ``x2 = x1`` (symmetry is exploited and the result is exactly
            symmetric).
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
        differentiable w.r.t. ``model.trainable_variables``. A call never
        changes what a later call returns: the compiled Gram functions are
        keyed by the inputs' per-example shapes and dtypes, with only the
        batch axis left free.

    Example:
        >>> import keras, numpy as np, keras_kare
        >>> net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, "gelu"), keras.layers.Dense(1)])
        >>> keras_kare.ntk(net, np.ones((5, 3), "float32")).shape
        TensorShape([5, 5])
    """
    return compute_ntk(model, x1, x2, kernel, implementation, batch_size, verbose=verbose)


def compute_ntk(
    model,
    x1,
    x2=None,
    kernel="trace",
    implementation="auto",
    batch_size=None,
    extra_copies: int = 0,
    verbose="auto",
    names: tuple = ("x1", "x2"),
):
    """:func:`ntk` with two more knobs for callers inside the package.

    ``extra_copies`` is the number of float64 copies of the result the caller
    will make (``KernelPredictor`` keeps one), for the memory guard; ``names``
    are the names of ``x1`` and ``x2`` in error messages (the caller's own
    argument names).
    """
    _distribute.check_single_worker("keras_kare.ntk (also used by KernelPredictor)")
    model = unwrap_network(v.check_model(model))
    v.check_kernel_mode(kernel)
    check_verbose(verbose)
    batch_size = v.check_batch_size(batch_size)
    x1 = network_input(model, x1, names[0])
    x2 = None if x2 is None else network_input(model, x2, names[1])
    implementation = resolve_implementation(model, implementation)
    _check_memory(model, x1, x2, kernel, implementation, batch_size, extra_copies)
    return blocked_gram(model, x1, x2, kernel, implementation, batch_size, verbose)


def network_input(model, x, name: str, min_rows: int = 1):
    """``x`` checked against ``model`` (``_validation.as_network_input``), and traceable through it.

    A network that declares its inputs (Sequential/Functional from
    ``keras.Input``) has them compared shape by shape; any network is then
    traced symbolically on one example (``backend.forward_profile``, cached per
    input signature, no computation), so an input the network cannot take is
    a ``ValueError`` naming ``name`` before any Gram is compiled or computed.

    Args:
        model: the (unwrapped) network; built on ``x`` if it is not yet.
        x: an array-like or the nested structure the network takes.
        name: the argument's name in error messages.
        min_rows: the fewest examples accepted.

    Returns:
        ``x`` as a structure of tensors in the network's input dtypes.
    """
    x = v.as_network_input(model, x, name, min_rows)
    try:
        forward_profile(model, v.take_rows(x, 0, 1))
    except Exception as err:  # noqa: BLE001 - re-raised with the argument's name
        shapes = [tuple(t.shape[1:]) for t in tf.nest.flatten(x)]
        raise ValueError(
            f"{name}: the network cannot be applied to inputs of per-example shape "
            f"{shapes[0] if len(shapes) == 1 else shapes}: {type(err).__name__}: {str(err).splitlines()[0]}"
        ) from err
    return x


def _check_memory(model, x1, x2, kernel, implementation, batch_size, extra_copies):
    """Raise :class:`~keras_kare.memory.GramMemoryError` before an oversized Gram is attempted."""
    n1 = _rows(x1)
    n2 = n1 if x2 is None else _rows(x2)
    one_block = x2 is None and (batch_size is None or batch_size >= n1)
    result, work, n_outputs = gram_bytes(
        model, v.take_rows(x1, 0, 1), n1, n2, kernel, implementation, batch_size, extra_copies, one_jacobian=one_block
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
        itemsize=v.float_dtype(model).size,
        extra_copies=extra_copies,
        one_jacobian=one_jacobian,
        activations=profile.activations if implementation == "jacobian" else 0,
    )
    return result, work, profile.outputs
