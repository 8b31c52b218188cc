"""The callback ``KAREModel.fit`` adds to act on non-finite steps and jitter retries.

The compiled ``train_step`` cannot stop training or warn by itself; it counts
(``nonfinite_steps``, ``factor_retries``) and leaves the weights untouched on a
bad step. This callback reads those counters after every batch.
"""

from __future__ import annotations

import logging
import warnings

import keras

from keras_kare.factor import failure_advice

logger = logging.getLogger("keras_kare")


class NonFiniteGuard(keras.callbacks.Callback):
    """Stop (or warn once and continue) when a KARE step was not finite.

    Added automatically by :meth:`keras_kare.KAREModel.fit`; not meant to be
    passed by users. After a stop, the message is in ``model.stop_reason_``.
    """

    def __init__(self, policy: str):
        super().__init__()
        self.policy = policy
        self._epoch = 0
        self._seen_failures = 0.0
        self._warned_retry = False
        self._warned_skip = False

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._seen_failures = 0.0  # the counters are per-epoch sums

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        retries = float(logs.get("factor_retries", 0.0))
        if retries > 0 and not self._warned_retry:
            self._warned_retry = True
            msg = (
                f"keras_kare: epoch {self._epoch + 1}, batch {batch}: the Cholesky of K/n + zI needed the "
                "jitter ladder (keras_kare.factor); such steps are counted in the 'factor_retries' log. "
                "Warned once."
            )
            logger.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        failures = float(logs.get("nonfinite_steps", 0.0))
        if failures <= self._seen_failures:
            return
        self._seen_failures = failures
        min_eig = self.model.failure_min_eigenvalue()
        ridge = float(self.model.kare_layer.ridge)
        where = f"epoch {self._epoch + 1}, batch {batch}"
        if self.policy == "stop":
            msg = (
                f"KAREModel: the step at {where} produced a non-finite KARE or gradient; its update was not "
                f"applied and training stopped, so the weights are those of the last good step. "
                + failure_advice(min_eig, ridge)
                + " (Pass on_nonfinite='skip' to skip such batches instead.)"
            )
            self.model.stop_training = True
            self.model.stop_reason_ = msg
            logger.error(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        elif not self._warned_skip:
            self._warned_skip = True
            msg = (
                f"KAREModel: the step at {where} produced a non-finite KARE or gradient and was skipped "
                "(on_nonfinite='skip'); further skips are counted in 'nonfinite_steps'. "
                + failure_advice(min_eig, ridge)
            )
            logger.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
