"""The empirical NTK Gram: the public :func:`ntk` and the one engine behind it.

:class:`GramEngine` is the only path from a network to its Gram in the
package: the boundary check of inputs, the memory guard, the blocked and
compiled Gram of eager callers (:func:`ntk`, ``KernelPredictor``, the
callbacks), the differentiable Gram of a training batch and one replica's rows
of a distributed batch (``KAREModel.train_step``). The autodiff itself lives
in :mod:`keras_kare.backend`; this module checks, blocks and assembles.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from keras_kare import _validation as v
from keras_kare import distribute as _distribute
from keras_kare.backend import (
    IMPLEMENTATIONS,
    captured_blocks,
    compiled_gram,
    forward_profile,
    gram,
    resolve_implementation,
    row_block_gram,
    swap_examples,
)
from keras_kare.memory import GIB, available_bytes, check_gram_memory, estimate_gram_bytes
from keras_kare.networks import unwrap_network
from keras_kare.progress import Progress, check_verbose

logger = logging.getLogger("keras_kare")

CAPTURE_MEMORY_FRACTION = 0.25
"""Per-block factors are kept for reuse only if all of them fit in this fraction of available memory."""


def _rows(x) -> int:
    """The number of examples of checked inputs."""
    return int(tf.nest.flatten(x)[0].shape[0])


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


class GramEngine:
    """A network's empirical NTK Gram, in every form the package computes it.

    The settings are checked once, here; the inputs once, by :meth:`inputs`;
    the other methods take checked inputs and check nothing again.

    Args:
        model: a Keras model (a ``KAREModel`` is unwrapped to its base network).
        kernel: ``"trace"``, ``"summed_output"`` or ``"full"`` (see :func:`ntk`).
        implementation: ``"auto"``, ``"jacobian"`` or ``"structured"``;
            resolved for the network when a Gram is computed (the network may
            be built by the first :meth:`inputs`).
        batch_size: eager Grams are assembled from blocks of this many
            examples (``None``: one block).

    Example:
        >>> engine = GramEngine(net, kernel="trace", batch_size=256)   # doctest: +SKIP
        >>> x = engine.inputs(x_raw, "x")                             # doctest: +SKIP
        >>> engine.check_memory(x)                                    # doctest: +SKIP
        >>> k = engine.gram(x)                                        # doctest: +SKIP
    """

    def __init__(self, model, kernel: str = "trace", implementation: str = "auto", batch_size: Optional[int] = None):
        self.model = unwrap_network(v.check_model(model))
        self.kernel = v.check_kernel_mode(kernel)
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, received {implementation!r}.")
        self.requested_implementation = implementation
        self.batch_size = v.check_batch_size(batch_size)

    @property
    def implementation(self) -> str:
        """The concrete implementation for the (built) network."""
        return resolve_implementation(self.model, self.requested_implementation)

    # ------------------------------------------------------------ boundary
    def inputs(self, x, name: str, min_rows: int = 1):
        """``x`` checked against the network (``_validation.as_network_input``), and traceable through it.

        A network that declares its inputs (Sequential/Functional from
        ``keras.Input``) has them compared shape by shape; any network is then
        traced symbolically on one example (``backend.forward_profile``, cached
        per input signature, no computation), so an input the network cannot
        take is a ``ValueError`` naming ``name`` before any Gram is compiled or
        computed. The network is built on ``x`` if it is not yet.

        Returns:
            ``x`` as a structure of tensors in the network's input dtypes.
        """
        x = v.as_network_input(self.model, x, name, min_rows)
        try:
            forward_profile(self.model, v.take_rows(x, 0, 1))
        except Exception as err:  # noqa: BLE001 - re-raised with the argument's name
            shapes = [tuple(t.shape[1:]) for t in tf.nest.flatten(x)]
            raise ValueError(
                f"{name}: the network cannot be applied to inputs of per-example shape "
                f"{shapes[0] if len(shapes) == 1 else shapes}: {type(err).__name__}: {str(err).splitlines()[0]}"
            ) from err
        return x

    def output_width(self, x) -> int:
        """C, the network's flattened output width on checked inputs (traced, not run)."""
        return forward_profile(self.model, v.take_rows(x, 0, 1)).outputs

    # -------------------------------------------------------------- memory
    def _bytes(self, x_one, n1: int, n2: int, batch_size, extra_copies: int = 0, one_jacobian: bool = False):
        """(result bytes, work bytes, output width C) of an n1 × n2 Gram (``keras_kare.memory``).

        ``x_one`` is one example (a batch of one, possibly symbolic with a
        static shape); the forward pass is traced, not run.
        """
        implementation = self.implementation
        profile = forward_profile(self.model, x_one)
        variables = self.model.trainable_variables
        result, work = estimate_gram_bytes(
            n1,
            n2,
            profile.outputs,
            sum(int(np.prod(w.shape)) for w in variables),
            len(variables),
            self.kernel,
            implementation,
            batch_size,
            itemsize=v.float_dtype(self.model).size,
            extra_copies=extra_copies,
            one_jacobian=one_jacobian,
            activations=profile.activations if implementation == "jacobian" else 0,
        )
        return result, work, profile.outputs

    def check_memory(self, x1, x2=None, extra_copies: int = 0) -> None:
        """Raise :class:`~keras_kare.memory.GramMemoryError` before an oversized eager Gram is attempted.

        ``extra_copies``: float64 copies of the result the caller will make
        (``KernelPredictor`` keeps one).
        """
        n1 = _rows(x1)
        n2 = n1 if x2 is None else _rows(x2)
        one_block = x2 is None and (self.batch_size is None or self.batch_size >= n1)
        result, work, c = self._bytes(v.take_rows(x1, 0, 1), n1, n2, self.batch_size, extra_copies, one_block)
        shape = f"{n1}x{n2}" + (f"x{c}x{c}" if self.kernel == "full" else "")
        what = f"ntk: the {shape} Gram (implementation={self.implementation!r})"
        check_gram_memory(result, work, what, self.batch_size)

    def check_step_memory(self, x, n: int) -> None:
        """Raise ``GramMemoryError`` while a training step is traced if its per-example Jacobians would not fit.

        Only the jacobian implementation needs it: its memory grows like
        n² · (activations per example) (``keras_kare.memory``), and a step
        keeps the Jacobians for its backward pass, so twice the Gram's
        estimate is checked. Without this a subclassed CNN at batch 128 is
        killed by the OOM killer (measured: past 16 GB) instead of getting an
        error.
        """
        if self.implementation != "jacobian":
            return
        result, work, _ = self._bytes(v.take_rows(x, 0, 1), n, n, None, one_jacobian=True)
        check_gram_memory(
            result,
            2 * work,
            f"KAREModel: a training step on a batch of {n} with the jacobian NTK",
            n,
            advice="A Sequential or Functional network uses the structured NTK instead (implementation='auto'), "
            "whose memory grows like n² + n·(sum of layer widths).",
        )

    # --------------------------------------------------------------- Grams
    def step_gram(self, x) -> tf.Tensor:
        """The symmetric, differentiable Gram of one batch, in the caller's trace (a training step)."""
        return gram(self.model, x, None, kernel=self.kernel, implementation=self.implementation)

    def global_rows(self, x, gather: Callable[[tf.Tensor, int], tf.Tensor]) -> tf.Tensor:
        """This replica's rows ``K(x, X)`` of the Gram over the gathered batch X (``backend.row_block_gram``)."""
        return row_block_gram(self.model, x, gather, self.kernel, self.implementation)

    def gram(self, x1, x2=None, verbose=0) -> tf.Tensor:
        """The Gram between checked inputs (``x2=None``: of ``x1`` with itself, exactly symmetric).

        Eagerly each block is computed by a function compiled once per input
        signature (``backend.compiled_gram``); with ``batch_size`` smaller than
        the inputs the Gram is assembled from (batch_size × batch_size) blocks,
        only the upper-triangular ones computed when ``x2=None``. The
        structured implementation then captures each block's layer factors once
        and pairs them (``backend.captured_blocks``; about half the work of
        capturing both blocks of every pair). ``verbose``: a progress bar over
        the computed blocks (see :mod:`keras_kare.progress`).
        """
        _distribute.check_single_worker("keras_kare.ntk (also used by KernelPredictor)")
        implementation = self.implementation
        n1 = _rows(x1)
        n2 = n1 if x2 is None else _rows(x2)
        if self.batch_size is None or (self.batch_size >= n1 and self.batch_size >= n2):
            return self._one_block(x1, x2, implementation)  # symmetrised by backend.gram
        b1 = _blocks(n1, self.batch_size)
        b2 = b1 if x2 is None else _blocks(n2, self.batch_size)
        n_computed = len(b1) * (len(b1) + 1) // 2 if x2 is None else len(b1) * len(b2)
        progress = Progress(n_computed, verbose, unit_name="block")
        pair = self._captured_once(x1, x2, b1, b2, implementation)
        if pair is None:  # recapture both blocks for every pair

            def pair(i, j):
                xi = v.take_rows(x1, *b1[i])
                if x2 is None and i == j:
                    return self._one_block(xi, None, implementation)  # symmetric diagonal block
                return self._one_block(xi, v.take_rows(x1 if x2 is None else x2, *b2[j]), implementation)

        place = _distribute.block_placement()
        blocks: dict[tuple[int, int], tf.Tensor] = {}
        for i in range(len(b1)):
            for j in range(len(b2)):
                if x2 is None and j < i:
                    blocks[i, j] = swap_examples(blocks[j, i], self.kernel)
                    continue
                blocks[i, j] = place(pair, i, j)
                progress.advance()
        rows = [tf.concat([blocks[i, j] for j in range(len(b2))], axis=1) for i in range(len(b1))]
        return tf.concat(rows, axis=0)

    def _one_block(self, x1, x2, implementation: str) -> tf.Tensor:
        if not tf.executing_eagerly():
            return gram(self.model, x1, x2, kernel=self.kernel, implementation=implementation)
        specs2 = None if x2 is None else v.batch_specs(x2)
        fn = compiled_gram(self.model, self.kernel, implementation, v.batch_specs(x1), specs2)
        return fn(x1) if x2 is None else fn(x1, x2)

    def _captured_once(self, x1, x2, b1, b2, implementation: str):
        """``pair(i, j) -> Gram block`` from factors captured once per block, or None.

        None when the implementation keeps no factors (jacobian), when not
        eager (inside a ``tf.function`` the blocks are traced as one graph
        anyway), when no weight is used, or when keeping every block's factors
        would take more than :data:`CAPTURE_MEMORY_FRACTION` of the available
        memory (logged).
        """
        if not tf.executing_eagerly():
            return None
        if x2 is not None and v.signature(x2) != v.signature(x1):
            return None  # the captures are compiled for one input signature
        blocks = captured_blocks(self.model, self.kernel, implementation, self.batch_size, v.batch_specs(x1))
        if blocks is None:
            return None
        first = blocks.capture(v.take_rows(x1, *b1[0]))
        if not first:
            return None
        n_blocks = len(b1) + (0 if x2 is None else len(b2))
        needed, available = blocks.nbytes(first) * n_blocks, available_bytes()
        if needed > CAPTURE_MEMORY_FRACTION * available:
            logger.info(
                "keras_kare.ntk: keeping the layer factors of all %d blocks would take %.1f GiB of the %.1f GiB "
                "available; recomputing them for every block pair instead (about twice the work).",
                n_blocks,
                needed / GIB,
                available / GIB,
            )
            return None
        f1 = [first] + [blocks.capture(v.take_rows(x1, s, e)) for s, e in b1[1:]]
        f2 = f1 if x2 is None else [blocks.capture(v.take_rows(x2, s, e)) for s, e in b2]

        def pair(i, j):
            return blocks.pair(f1[i]) if x2 is None and i == j else blocks.pair(f1[i], f2[j])

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
    check_verbose(verbose)
    engine = GramEngine(model, kernel, implementation, batch_size)
    x1 = engine.inputs(x1, "x1")
    x2 = None if x2 is None else engine.inputs(x2, "x2")
    engine.check_memory(x1, x2)
    return engine.gram(x1, x2, verbose)
