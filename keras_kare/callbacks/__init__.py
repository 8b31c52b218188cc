"""Keras callbacks of keras_kare (computed outside the compiled train step).

- :class:`KernelMonitor`: NTK spectrum, effective rank/dimension, kernel-target
  alignment, trace and KARE over a ridge grid on a fixed probe batch.
- :class:`KernelRidgeEvaluation`: validation MSE/accuracy of kernel ridge
  regression on the current NTK (``val_krr_mse``, ``val_krr_accuracy``).
- :class:`KernelRidgeEarlyStopping`: early stopping on that held-out error,
  restoring the best weights.

Both add their values to the epoch's logs (progress bar, History,
EarlyStopping, ModelCheckpoint, and ``keras.callbacks.TensorBoard`` when it is
listed after them) and, with ``log_dir``, write their own TensorBoard runs.
"""

from keras_kare.callbacks.early_stopping import KernelRidgeEarlyStopping
from keras_kare.callbacks.kernel_monitor import KernelMonitor
from keras_kare.callbacks.ridge_evaluation import KernelRidgeEvaluation

__all__ = ["KernelMonitor", "KernelRidgeEarlyStopping", "KernelRidgeEvaluation"]
