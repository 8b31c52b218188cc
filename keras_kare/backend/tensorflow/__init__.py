"""TensorFlow autodiff for the empirical NTK.

Everything that differentiates a network lives below this package; the rest of
keras_kare calls :func:`gram` (and :func:`block_gram`, which reuses per-block
factors across the blocks of a large Gram) through ``keras_kare.backend``.
Other modules use TensorFlow too (linear algebra, training step, distribution):
``keras_kare.backend``'s docstring lists them and what a JAX port would need.
"""

from keras_kare.backend.tensorflow.blocks import BlockGram, block_gram
from keras_kare.backend.tensorflow.dispatch import IMPLEMENTATIONS, gram, resolve_implementation, swap_examples
from keras_kare.backend.tensorflow.jacobian import forward_profile
from keras_kare.backend.tensorflow.row_blocks import row_block_gram
from keras_kare.backend.tensorflow.structured_rules import register_rule

__all__ = [
    "IMPLEMENTATIONS",
    "BlockGram",
    "forward_profile",
    "block_gram",
    "gram",
    "row_block_gram",
    "register_rule",
    "resolve_implementation",
    "swap_examples",
]
