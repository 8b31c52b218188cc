"""Backend selection. Only TensorFlow exists today; see ``backend/tensorflow``."""

from keras_kare.backend.tensorflow import IMPLEMENTATIONS, gram, resolve_implementation, swap_examples

__all__ = ["IMPLEMENTATIONS", "gram", "resolve_implementation", "swap_examples"]
