"""TensorFlow autodiff for the empirical NTK.

Everything that differentiates a network lives below this package; the rest of
keras_kare calls :func:`gram` (compiled once per input signature by
:func:`compiled_gram`; :func:`captured_blocks` reuses per-block factors across
the blocks of a large Gram; :func:`row_block_gram` is one participant's rows of
a distributed Gram) through ``keras_kare.backend``.
Other modules use TensorFlow too (linear algebra, training step, distribution):
``keras_kare.backend``'s docstring lists them and what a JAX port would need.
"""

from keras_kare.backend.tensorflow.blocks import CapturedBlocks, captured_blocks
from keras_kare.backend.tensorflow.compiled import cached_functions
from keras_kare.backend.tensorflow.dispatch import (
    IMPLEMENTATIONS,
    compiled_gram,
    gram,
    resolve_implementation,
    swap_examples,
)
from keras_kare.backend.tensorflow.jacobian import forward_profile
from keras_kare.backend.tensorflow.row_blocks import row_block_gram
from keras_kare.backend.tensorflow.structured_rules import register_rule

__all__ = [
    "IMPLEMENTATIONS",
    "CapturedBlocks",
    "cached_functions",
    "captured_blocks",
    "compiled_gram",
    "forward_profile",
    "gram",
    "row_block_gram",
    "register_rule",
    "resolve_implementation",
    "swap_examples",
]
