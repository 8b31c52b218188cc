"""keras_kare: train a network's empirical NTK to minimise KARE, predict with KRR.

Schwab, Kelly, Malamud, Xu, "Training NTK to Generalize with KARE" (2025).

Public API:
    kare(kernel, targets, ridge=0.1, relative_ridge=False)
    ntk(model, x1, x2=None, kernel="trace", implementation="auto", batch_size=None)
    layers.KARE(ridge=0.1, relative_ridge=False)
    KAREModel(base_model, ridge=0.1, relative_ridge=False, kernel="trace", implementation="auto")
    KernelPredictor(model, ridge=1e-3, relative_ridge=True, kernel="trace", batch_size=512)
        .save(path) / KernelPredictor.load(path)
    callbacks.KernelMonitor(x, y, log_dir=None, every_n_epochs=1)
    callbacks.KernelRidgeEvaluation(x, y, validation_data, every_n_epochs=1)
    fit_in_memory(model, x, y, **fit_kwargs)   # any Keras model: one input pipeline per fit
    register_rule(*layer_classes)              # decorator: a structured-NTK rule for your own layer
"""

from keras_kare._startup import tensorflow_startup
from keras_kare.version import __version__

with tensorflow_startup():  # the keras-kare command loads TensorFlow quietly; a no-op for library use
    from keras_kare import backend  # noqa: F401, I001 - first: fails clearly unless Keras runs on TensorFlow
    from keras_kare.backend import register_rule
    from keras_kare import callbacks, layers
    from keras_kare.in_memory import fit_in_memory
    from keras_kare.model import KAREModel
    from keras_kare.ntk import ntk
    from keras_kare.predictor import KernelPredictor, NotFittedError
    from keras_kare.ridge import RidgePath
    from keras_kare.risk import kare

__all__ = [
    "callbacks",
    "KAREModel",
    "KernelPredictor",
    "NotFittedError",
    "RidgePath",
    "fit_in_memory",
    "kare",
    "layers",
    "ntk",
    "register_rule",
    "__version__",
]
