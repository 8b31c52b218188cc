"""Capture-once blocked Grams (eager, structured implementation).

A Gram computed in blocks pairs every block of ``x1`` with every block of
``x2``. Recomputing the per-layer factors (layer inputs A and cotangents Δ, a
forward and a backward pass) for both blocks of every pair costs about as
much as the pair's Gram products for an MLP; :class:`CapturedBlocks` captures each
block once and pairs the stored factors instead.

Cost for b1 × b2 blocks (``b`` examples each): captures drop from
``2·b1·b2`` (``b1(b1+1)`` for a symmetric Gram) to ``b1 + b2`` (``b1``), and
the Gram products are unchanged. Memory: the factors of every block are kept
until the Gram is assembled, ``O(n · Σ_l (d_in,l + C·d_out,l))`` for Dense
layers, or the per-example gradients of a layer whose cost model picks the
materialised form (``structured_factors.compact``). ``keras_kare.ntk`` checks
that size against available memory after the first block and otherwise
recaptures per pair.

Only the structured implementation has factors; the per-example Jacobians of
the jacobian implementation (n × P per block) are too large to keep.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from keras_kare.backend.tensorflow.compiled import cached, weak
from keras_kare.backend.tensorflow.dispatch import swap_examples
from keras_kare.backend.tensorflow.structured import features_gram, structured_features
from keras_kare.backend.tensorflow.structured_factors import flatten_factors, unflatten_factors


class CapturedBlocks:
    """Compiled capture and pairing functions for one model, kernel mode, block size and input signature.

    Args:
        model: a built Sequential or Functional model.
        kernel: ``"trace"``, ``"summed_output"`` or ``"full"``.
        block_size: the block size the ghost-vs-materialise decisions are made for.
        input_spec: the ``tf.TensorSpec`` structure of one block of inputs,
            batch axis ``None`` and every other axis fixed. The capture is
            compiled for it, and the pairing functions for the factors it
            produces (batch axes free, nothing else), so no call relaxes a
            signature and every block is computed by the same graphs.

    Example:
        >>> blocks = CapturedBlocks(model, "trace", 512, tf.TensorSpec((None, 3), tf.float32))  # doctest: +SKIP
        >>> fa, fb = blocks.capture(xa), blocks.capture(xb)  # doctest: +SKIP
        >>> k_ab, k_aa = blocks.pair(fa, fb), blocks.pair(fa)  # k_aa exactly symmetric  # doctest: +SKIP
    """

    def __init__(self, model, kernel: str, block_size: int, input_spec):
        self.kernel = kernel
        net = weak(model)  # the cache holding this object must not keep the model alive

        def features(x):
            meta, tensors = flatten_factors(structured_features(net(), x, kernel, block_size))
            self._meta = meta  # static: one input signature, one trace
            return tensors

        self._features = tf.function(features, input_signature=[input_spec])
        factor_specs = [tf.TensorSpec(t.shape, t.dtype) for t in self._features.get_concrete_function().outputs]

        def pair(t1, t2):
            return features_gram(self._factors(t1), self._factors(t2), kernel)

        def self_pair(t1):
            k = features_gram(self._factors(t1), None, kernel)
            return 0.5 * (k + swap_examples(k, kernel))  # exactly symmetric diagonal block

        self._pair = tf.function(pair, input_signature=[factor_specs, factor_specs]) if factor_specs else None
        self._self_pair = tf.function(self_pair, input_signature=[factor_specs]) if factor_specs else None

    def _factors(self, tensors):
        return unflatten_factors(self._meta, tensors)

    def capture(self, x) -> list:
        """The stored factors of one block (a list of tensors; empty if no weight is used)."""
        return self._features(x)

    def pair(self, f1: list, f2: Optional[list] = None) -> tf.Tensor:
        """The Gram block between two captured blocks; ``f2=None`` pairs ``f1`` with itself."""
        return self._self_pair(f1) if f2 is None else self._pair(f1, f2)

    @staticmethod
    def nbytes(features: list) -> int:
        """Bytes held by one block's factors."""
        return int(sum(np.prod(t.shape) * t.dtype.size for t in features))


def captured_blocks(model, kernel: str, implementation: str, block_size: int, input_spec) -> Optional[CapturedBlocks]:
    """The cached :class:`CapturedBlocks` of ``model`` for ``input_spec``; None if ``implementation`` has no factors."""
    if implementation != "structured":
        return None
    key = ("captured_blocks", kernel, block_size, str(input_spec))
    return cached(model, key, lambda: CapturedBlocks(model, kernel, block_size, input_spec))
