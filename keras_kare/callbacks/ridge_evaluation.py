"""KernelRidgeEvaluation: validation error of kernel ridge regression on the current NTK."""

from __future__ import annotations

import time
from typing import Optional, Union

import keras
import numpy as np

from keras_kare import _validation as v
from keras_kare.callbacks import _common as c
from keras_kare.decision import accuracy
from keras_kare.predictor import KernelPredictor
from keras_kare.risk import check_ridge_or_auto

TASKS = ("auto", "sign", "argmax", "regression")


def infer_task(y: np.ndarray) -> str:
    """``"sign"`` for ±1 targets in one column, ``"argmax"`` for one-hot rows, else ``"regression"``."""
    y = y.reshape(y.shape[0], -1)
    if y.shape[1] == 1 and np.all(np.abs(y) == 1):
        return "sign"
    if y.shape[1] > 1 and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
        return "argmax"
    if y.shape[1] > 1 and np.all(np.abs(y) == 1) and np.all((y == 1).sum(axis=1) == 1):
        return "argmax"  # ±1 one-vs-rest coding
    return "regression"


class KernelRidgeEvaluation(keras.callbacks.Callback):
    """Fit kernel ridge regression on the current NTK every N epochs and score it on validation data.

    At the end of every ``every_n_epochs``-th epoch (outside the compiled step)
    a :class:`~keras_kare.KernelPredictor` is fitted on ``(x, y)`` (or a seeded
    random subset of ``n_train`` rows of it, drawn once) and evaluated on
    ``validation_data``. It adds to the epoch's ``logs``:

    - ``<prefix>_mse`` (default ``val_krr_mse``): mean squared error over all
      validation targets;
    - ``<prefix>_accuracy`` (``val_krr_accuracy``): for classification tasks —
      ±1 targets are classified by sign, one-hot targets by argmax
      (:func:`keras_kare.decision.accuracy`);
    - ``<prefix>_ridge`` (``val_krr_ridge``): the ridge used (the KARE-chosen
      one for ``ridge="auto"``, in the predictor's units).

    Put this callback *before* ``EarlyStopping``/``ModelCheckpoint`` (Keras
    calls callbacks in list order and they share the logs dict), e.g.
    ``EarlyStopping(monitor="val_krr_mse", mode="min")``; with
    ``every_n_epochs > 1`` the keys exist only on evaluation epochs. A
    ``keras.callbacks.TensorBoard`` listed after it writes them to its
    ``validation`` run as ``epoch_krr_mse`` etc.; with ``log_dir`` this callback
    also writes its own run ``<log_dir>/krr`` with scalars tagged
    ``<prefix>/mse``, ``<prefix>/accuracy`` and ``<prefix>/ridge`` (step =
    0-based epoch).

    Args:
        x, y: training inputs and targets for the kernel regression.
        validation_data: ``(x_val, y_val)``.
        every_n_epochs: evaluate on epochs N, 2N, … (1-based).
        n_train: use a random subset of this many training rows (None: all).
        seed: seed of that subset.
        ridge, relative_ridge, kernel, batch_size, implementation: passed to
            :class:`~keras_kare.KernelPredictor` (kernel/implementation default
            to the KAREModel's).
        task: ``"auto"`` (from the validation targets), ``"sign"``,
            ``"argmax"`` or ``"regression"`` (no accuracy).
        log_dir: directory for the callback's own event files, or None.
        prefix: prefix of the log keys (``"val_krr"``).

    Attributes:
        history: list of ``(epoch, results dict)``; ``seconds``: time per evaluation.
    """

    def __init__(
        self,
        x,
        y,
        validation_data,
        every_n_epochs: int = 1,
        n_train: Optional[int] = None,
        seed: int = 0,
        ridge: Union[float, str] = "auto",
        relative_ridge: bool = True,
        kernel: Optional[str] = None,
        batch_size: Optional[int] = 512,
        implementation: Optional[str] = None,
        task: str = "auto",
        log_dir: Optional[str] = None,
        prefix: str = "val_krr",
    ):
        super().__init__()
        x, y = c.as_probe(x, y, "KernelRidgeEvaluation")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("KernelRidgeEvaluation: validation_data must be a pair (x_val, y_val).")
        self.x_val, self.y_val = c.as_probe(*validation_data, "KernelRidgeEvaluation validation_data", min_rows=1)
        n = y.shape[0]
        if n_train is not None:
            if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or not 2 <= n_train <= n:
                raise ValueError(f"KernelRidgeEvaluation: n_train must be an int in [2, {n}], received {n_train!r}.")
            idx = np.sort(np.random.default_rng(seed).choice(n, int(n_train), replace=False))
            import tensorflow as tf

            x = tf.nest.map_structure(lambda t: t[idx], x)
            y = y[idx]
        self.x, self.y = x, y
        if y.shape[1] != self.y_val.shape[1]:
            raise ValueError(
                f"KernelRidgeEvaluation: training targets have {y.shape[1]} columns, "
                f"validation targets {self.y_val.shape[1]}."
            )
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, received {task!r}.")
        self.task = infer_task(self.y_val) if task == "auto" else task
        columns = self.y_val.shape[1]
        if (self.task == "sign" and columns != 1) or (self.task == "argmax" and columns < 2):
            needed = "one target column" if self.task == "sign" else "two or more target columns"
            raise ValueError(
                f"KernelRidgeEvaluation: task={self.task!r} needs {needed}, the validation targets have {columns}."
            )
        self.every_n_epochs = c.check_every(every_n_epochs)
        # every setting is checked here, not after the first epoch's weight updates
        ridge = check_ridge_or_auto(ridge, "KernelRidgeEvaluation ridge")
        if not isinstance(relative_ridge, bool):
            raise TypeError(f"KernelRidgeEvaluation relative_ridge must be a bool, received {relative_ridge!r}.")
        batch_size = v.check_batch_size(batch_size, "KernelRidgeEvaluation batch_size")
        c.check_implementation(implementation, "KernelRidgeEvaluation implementation")
        self._predictor_kwargs = dict(ridge=ridge, relative_ridge=relative_ridge, batch_size=batch_size)
        self._kernel_arg, self._implementation_arg = kernel, implementation
        if kernel is not None:
            c.default_kernel(None, kernel)
        self.prefix = prefix
        self.log_dir = log_dir
        self._summary = c.SummaryWriter(log_dir, "krr")
        self._y_1d = np.asarray(validation_data[1]).ndim == 1
        self.history: list = []
        self.seconds: list = []

    def set_model(self, model):
        super().set_model(model)
        self.kernel = c.default_kernel(model, self._kernel_arg)
        self.implementation = c.default_implementation(model, self._implementation_arg)
        if c.unwrap_network(model).built:
            self._check_model()

    def _make_predictor(self) -> KernelPredictor:
        kwargs = dict(self._predictor_kwargs, kernel=self.kernel, implementation=self.implementation)
        return KernelPredictor(self.model, verbose=0, **kwargs)

    def _check_model(self):
        for x, name in ((self.x, "KernelRidgeEvaluation x"), (self.x_val, "KernelRidgeEvaluation validation x")):
            c.check_probe_against_model(self.model, x, name)
        c.check_targets_against_model(self.model, self.x, self.y, self.kernel, "KernelRidgeEvaluation")

    def on_train_begin(self, logs=None):
        self._check_model()

    def evaluate(self) -> dict:
        """Fit on the training rows and score on the validation data (no logging); keys without prefix."""
        kp = self._make_predictor().fit(self.x, self.y)
        pred = kp.predict(self.x_val).reshape(self.y_val.shape)
        out = {"mse": float(np.mean((pred - self.y_val) ** 2)), "ridge": float(kp.ridge_)}
        if self.task in ("sign", "argmax"):
            out["accuracy"] = accuracy(pred, self.y_val)
        return out

    def on_epoch_end(self, epoch, logs=None):
        if c.due(epoch, self.every_n_epochs):
            self._record(epoch, logs)

    def _record(self, epoch: int, logs: Optional[dict]) -> None:
        """Evaluate the current weights as epoch ``epoch``: history, log keys, summaries."""
        start = time.perf_counter()
        results = self.evaluate()
        self.seconds.append(time.perf_counter() - start)
        self.history.append((epoch, dict(results)))
        if logs is not None:
            logs.update({f"{self.prefix}_{k}": v for k, v in results.items()})
        self._summary.scalars({f"{self.prefix}/{k}": v for k, v in results.items()}, step=epoch)
        self._summary.flush()

    def on_train_end(self, logs=None):
        self._summary.close()
