"""Compiled trainers reused across configurations of one architecture (:class:`TrainerPool`).

Sweeps over seeds, learning rates or folds (``keras-kare reproduce``, the
scikit-learn estimators' repeated fits) would otherwise build, compile and
trace a fresh model per configuration.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from keras_kare.networks import unwrap_network


def _optimizer_state(model) -> list:
    """A fresh optimizer's variables, built now on ``model``'s weights: what :func:`_reset_optimizer` restores."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return [np.array(var) for var in optimizer.variables]


def _reset_optimizer(optimizer, fresh: list, lr: float) -> None:
    """Back to a fresh optimizer: every variable to its value when built (``fresh``), learning rate ``lr``.

    Restoring the built values, not zeros, keeps the reset right for any optimizer (Adagrad's
    initial accumulator, a loss-scale factor); the learning rate is a variable, so nothing retraces.
    """
    for var, value in zip(optimizer.variables, fresh):
        var.assign(value)
    optimizer.learning_rate = lr


class TrainerPool:
    """Compiled trainers reused across configurations (seeds, learning rates) of one architecture.

    Building and compiling a fresh model per configuration retraces its
    ``tf.function`` steps (seconds each on a CPU, more than a whole small
    training). A pool keeps one compiled model per (architecture, objective,
    batch layout); a new configuration copies its freshly initialised weights
    into it, restores the optimizer's variables to their values when it was
    built (before any step) and sets the learning rate variable,
    so its training is that of a fresh model with the same initial weights.

    The model a ``train_*`` call returns is *reused* by the next call of the
    same architecture: use it (predict, kernel ridge regression) before
    training the next configuration. Without a pool every call builds its own.

    Attributes:
        builds: number of compiled models created (one per distinct key).

    Example:
        >>> pool = TrainerPool()
        >>> for lr in (100.0, 10.0):                                   # doctest: +SKIP
        ...     model, info = train_kare(build_mlp(10, 1, 64, 1, seed=0), x, y, 0.1, lr, 100, pool=pool)
    """

    def __init__(self):
        self._entries: dict = {}
        self._lock = threading.Lock()  # run_seed trains the DNN in a second thread
        self.builds = 0

    def get(self, key, net, build: Callable, lr: float):
        """The pooled model for ``key`` with ``net``'s weights and a fresh optimizer at ``lr`` (built on first use)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = build(net)
                entry["fresh_optimizer"] = _optimizer_state(entry["model"])
                self.builds += 1
                return entry
        model = entry["model"]
        target = unwrap_network(model)
        target.set_weights(net.get_weights())
        _reset_optimizer(model.optimizer, entry["fresh_optimizer"], lr)
        model.stop_training = False
        return entry
