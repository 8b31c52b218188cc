"""KernelRidgeEarlyStopping: stop training when kernel ridge regression on the current NTK stops improving.

One mechanism for every model whose NTK is used for prediction: a
:class:`~keras_kare.KAREModel` trained on KARE, or an ordinary network trained
on its loss whose after-kernel is used. Every ``every_n_epochs`` epochs the
held-out error of kernel ridge regression on the current NTK is computed by
:class:`~keras_kare.callbacks.KernelRidgeEvaluation` (the same code, the same
log keys) and handed to ``keras.callbacks.EarlyStopping`` (the same patience,
``min_delta`` and ``restore_best_weights`` rules), so neither is re-implemented.

Why one callback rather than the two listed together: ``EarlyStopping`` would
warn on every epoch where the evaluation does not run (``every_n_epochs > 1``)
and depends on the list order; here patience counts *evaluations* and the
evaluation always precedes the decision. Choose ``epochs`` a multiple of
``every_n_epochs``: only evaluated epochs can be restored.

``EarlyStopping`` never considers the weights training starts from; with
``include_initial=True`` they are evaluated when training begins (as epoch
-1) and compete like any evaluated epoch, so a training that only makes the
held-out error worse ends with the initial weights restored.
"""

from __future__ import annotations

import warnings
from typing import Optional, Union

import keras

from keras_kare.callbacks import _common as c
from keras_kare.callbacks.ridge_evaluation import KernelRidgeEvaluation
from keras_kare.risk import NonFiniteKernelError

MONITORS = {"mse": "min", "accuracy": "max"}
INITIAL_EPOCH = -1  # the epoch number of the initial weights' evaluation (``include_initial``)


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, received {value!r}.")
    return int(value)


class KernelRidgeEarlyStopping(KernelRidgeEvaluation):
    """Early stopping on the held-out error of kernel ridge regression with the model's current NTK.

    Every ``every_n_epochs`` epochs it fits a
    :class:`~keras_kare.KernelPredictor` on ``(x, y)`` and scores it on
    ``validation_data`` exactly as :class:`KernelRidgeEvaluation` does (same
    log keys ``<prefix>_mse``/``_accuracy``/``_ridge``), then stops training
    once ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` evaluations, through ``keras.callbacks.EarlyStopping``. With
    ``restore_best_weights=True`` (default) the weights of the best evaluated
    epoch are restored at the end of training, whether it stopped early or ran
    all its epochs (the best of the *evaluated* epochs: make ``epochs`` a
    multiple of ``every_n_epochs`` so that the last one is among them).
    A training that diverges into weights whose NTK is not finite (an
    evaluation raises ``NonFiniteKernelError``) is stopped there with a
    ``RuntimeWarning``, keeping the best evaluated weights, instead of
    ending ``fit`` with the error.

    ``include_initial=True`` also evaluates the weights training starts
    from (in ``on_train_begin``, recorded as epoch -1) as a candidate: when
    no later evaluation beats them within ``patience`` evaluations, training
    stops and ends with them (``best_epoch == -1``). Use it when training
    may make the kernel worse than the one it starts from — an untrained
    network's NTK is often a good kernel on small tables.

    The validation rows must not be training rows of the network: hold out
    an inner split of the training data (``validation_fraction`` of
    :class:`keras_kare.sklearn.KARERegressor` does this) and train the network
    and the evaluation's kernel regression on the rest.

    Works with any Keras model: a ``KAREModel`` (its network's NTK, its
    ``kernel`` mode) or a network trained on its own loss (its after-kernel,
    ``kernel="trace"`` unless given). Outside ``fit`` (a custom training loop)
    call ``set_model(model)`` and ``on_train_begin()`` first, :meth:`update`
    after each epoch (it returns True when training should stop) and
    :meth:`finish` at the end.

    Args:
        x, y: training rows of the kernel regression (the network's training
            rows, or a subset with ``n_train``).
        validation_data: ``(x_val, y_val)``, held-out rows.
        monitor: ``"mse"`` (minimised) or ``"accuracy"`` (maximised; needs ±1
            or one-hot targets).
        patience: evaluations without improvement before stopping (≥ 0).
        min_delta: smallest change that counts as an improvement (≥ 0).
        every_n_epochs: evaluate on epochs N, 2N, … (1-based).
        start_from_epoch: epochs (0-based index) before which no evaluation
            counts for stopping (0 with ``include_initial``).
        include_initial: evaluate the initial weights too (epoch -1), as a
            candidate to stop at and restore.
        restore_best_weights: restore the best evaluated weights at the end.
        verbose: 1 prints Keras' early-stopping messages.
        n_train, seed, ridge, relative_ridge, kernel, batch_size,
        implementation, task, log_dir, prefix: as for
            :class:`KernelRidgeEvaluation`.

    Attributes:
        best: the best monitored value; ``best_epoch``: its 0-based epoch;
        stopped_epoch: the epoch training was stopped at (0: not stopped);
        history: ``(epoch, results)`` of every evaluation;
        diverged_epoch: the epoch whose NTK was not finite (None: none was).

    Example:
        >>> from keras_kare.callbacks import KernelRidgeEarlyStopping
        >>> model = keras_kare.KAREModel(net, ridge=0.1)  # doctest: +SKIP
        >>> model.compile(optimizer=keras.optimizers.SGD(10.0))  # doctest: +SKIP
        >>> stop = KernelRidgeEarlyStopping(  # doctest: +SKIP
        ...     x_fit, y_fit, (x_val, y_val), patience=5, every_n_epochs=10
        ... )
        >>> model.fit(x_fit, y_fit, batch_size=len(x_fit), epochs=500, callbacks=[stop])  # doctest: +SKIP
        >>> stop.best_epoch, stop.stopped_epoch  # doctest: +SKIP
    """

    def __init__(
        self,
        x,
        y,
        validation_data,
        monitor: str = "mse",
        patience: int = 5,
        min_delta: float = 0.0,
        every_n_epochs: int = 1,
        start_from_epoch: int = 0,
        restore_best_weights: bool = True,
        include_initial: bool = False,
        verbose: int = 0,
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
        if monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {tuple(MONITORS)}, received {monitor!r}.")
        patience = _check_int(patience, "patience", 0)
        start_from_epoch = _check_int(start_from_epoch, "start_from_epoch", 0)
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not 0 <= min_delta < float("inf"):
            raise ValueError(f"min_delta must be a finite float >= 0, received {min_delta!r}.")
        if not isinstance(restore_best_weights, bool):
            raise ValueError(f"restore_best_weights must be a bool, received {restore_best_weights!r}.")
        if not isinstance(include_initial, bool):
            raise ValueError(f"include_initial must be a bool, received {include_initial!r}.")
        if include_initial and start_from_epoch:
            raise ValueError(
                f"include_initial=True evaluates the weights before epoch 0, so start_from_epoch must be 0; "
                f"received {start_from_epoch}."
            )
        c.check_every(every_n_epochs)
        super().__init__(
            x,
            y,
            validation_data,
            every_n_epochs=every_n_epochs,
            n_train=n_train,
            seed=seed,
            ridge=ridge,
            relative_ridge=relative_ridge,
            kernel=kernel,
            batch_size=batch_size,
            implementation=implementation,
            task=task,
            log_dir=log_dir,
            prefix=prefix,
        )
        if monitor == "accuracy" and self.task not in ("sign", "argmax"):
            raise ValueError(
                f"monitor='accuracy' needs ±1 or one-hot targets (task 'sign' or 'argmax'); the task is {self.task!r}."
            )
        self.monitor = monitor
        self.include_initial = include_initial
        self.stopper = keras.callbacks.EarlyStopping(
            monitor=f"{prefix}_{monitor}",
            mode=MONITORS[monitor],
            patience=patience,
            min_delta=float(min_delta),
            # EarlyStopping counts an epoch from start_from_epoch on: -1 lets the initial weights count
            start_from_epoch=INITIAL_EPOCH if include_initial else start_from_epoch,
            restore_best_weights=restore_best_weights,
            verbose=verbose,
        )
        self.diverged_epoch: Optional[int] = None  # the epoch whose NTK was not finite (training stopped there)

    # ---------------------------------------------------------------- state of the stopper
    @property
    def best(self):
        return self.stopper.best

    @property
    def best_epoch(self) -> int:
        return self.stopper.best_epoch

    @property
    def stopped_epoch(self) -> int:
        return self.stopper.stopped_epoch

    # ---------------------------------------------------------------- Keras hooks
    def set_model(self, model):
        super().set_model(model)
        self.stopper.set_model(model)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.stopper.on_train_begin(logs)
        self.diverged_epoch = None
        if self.include_initial:  # a non-finite initial NTK raises: there is nothing to train from
            initial_logs: dict = {}
            self._record(INITIAL_EPOCH, initial_logs)
            self.stopper.on_epoch_end(INITIAL_EPOCH, initial_logs)

    def on_epoch_end(self, epoch, logs=None):
        self.update(epoch, logs)

    def on_train_end(self, logs=None):
        self.finish(logs)

    # ---------------------------------------------------------------- also for custom loops
    def update(self, epoch: int, logs: Optional[dict] = None) -> bool:
        """After epoch ``epoch`` (0-based): evaluate if due, apply the stopping rule; True when training should stop."""
        if c.due(epoch, self.every_n_epochs):
            logs = {} if logs is None else logs
            try:
                self._record(epoch, logs)  # the evaluation, its log keys and summaries
            except NonFiniteKernelError as error:
                # the weights have diverged into an NTK that overflows: no later epoch can be evaluated (or
                # kept), so training ends here with the best evaluated weights (restored by finish())
                self.model.stop_training = True
                self.diverged_epoch = epoch
                warnings.warn(
                    f"KernelRidgeEarlyStopping: epoch {epoch}: {error} Training stopped; "
                    + (
                        f"the weights of the best evaluated epoch ({self.stopper.best_epoch}) are restored."
                        if self.stopper.restore_best_weights and self.stopper.best_weights is not None
                        else "no earlier evaluated weights to restore."
                    ),
                    RuntimeWarning,
                    stacklevel=2,
                )
                return True
            self.stopper.on_epoch_end(epoch, logs)
        return bool(getattr(self.model, "stop_training", False))

    def finish(self, logs: Optional[dict] = None) -> None:
        """End of training: restore the best evaluated weights (``restore_best_weights``), close the summaries."""
        self.stopper.on_train_end(logs)
        super().on_train_end(logs)


__all__ = ["KernelRidgeEarlyStopping"]
