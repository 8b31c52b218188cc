"""TensorFlow autodiff for the empirical NTK (the only TF-specific module).

Everything that differentiates a network lives below this package; the rest of
keras_kare only calls :func:`gram`. A JAX backend would provide the same
function.
"""

from keras_kare.backend.tensorflow.dispatch import IMPLEMENTATIONS, gram, resolve_implementation, swap_examples

__all__ = ["IMPLEMENTATIONS", "gram", "resolve_implementation", "swap_examples"]
