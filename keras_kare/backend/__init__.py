"""Backend selection. Only TensorFlow exists today; see ``backend/tensorflow``."""

from keras_kare.backend.tensorflow import (
    IMPLEMENTATIONS,
    BlockGram,
    forward_profile,
    block_gram,
    gram,
    resolve_implementation,
    swap_examples,
)

__all__ = [
    "IMPLEMENTATIONS", "BlockGram", "forward_profile", "block_gram", "gram", "resolve_implementation",
    "swap_examples",
]
