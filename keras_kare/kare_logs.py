"""The logs a ``KAREModel`` step reports: KARE's terms over the finite steps, and step counters.

``kare`` (also ``loss``, so that Keras' callbacks' defaults work),
``kare_numerator``, ``kare_denominator`` and ``effective_ridge`` are means over
the steps whose KARE was finite (NaN, not Keras' 0, for an epoch with none);
``factor_retries`` counts steps whose factorisation needed jitter and
``nonfinite_steps`` steps that were skipped. Under a ``tf.distribute`` strategy
a step flagged on any replica counts once.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_kare import _keras_compat as compat
from keras_kare import distribute as _distribute

METRIC_NAMES = ("loss", "kare", "kare_numerator", "kare_denominator", "effective_ridge")
COUNTER_NAMES = ("factor_retries", "nonfinite_steps")


class GoodStepMean(keras.metrics.Mean):
    """Mean over the finite steps; NaN (not Keras' 0) when an epoch had none."""

    def result(self):
        value = super().result()
        return tf.where(self.count > 0, value, tf.constant(float("nan"), value.dtype))


def make_trackers() -> dict:
    """One Keras metric per log, by name (the means, then the counters)."""
    trackers = {name: GoodStepMean(name=name) for name in METRIC_NAMES}
    for name in COUNTER_NAMES:
        trackers[name] = keras.metrics.Sum(name=name)
    for name in ("loss", "kare", "kare_numerator"):
        compat.set_lower_is_better(trackers[name])
    return trackers


def update_trackers(trackers: dict, terms, ok) -> dict:
    """Add one step's KARE terms (``risk.KARETerms``; counted only if ``ok``); returns every log's value."""
    weight = tf.cast(ok, terms.value.dtype)
    values = {
        "loss": terms.value,
        "kare": terms.value,
        "kare_numerator": terms.numerator,
        "kare_denominator": terms.denominator,
        "effective_ridge": terms.ridge,
    }
    for name in METRIC_NAMES:
        safe = tf.where(ok, values[name], tf.zeros_like(values[name]))
        trackers[name].update_state(safe, sample_weight=weight)
    # counters count steps: a flag raised on any replica is counted on every replica
    # (per_replica_counts reports the per-replica count)
    rescued = tf.logical_and(terms.retries > 0, ok)  # a failed step is counted below, not here
    anywhere = tf.logical_not(_distribute.all_replicas(tf.logical_not(tf.stack([rescued, tf.logical_not(ok)]))))
    for name, flag in zip(COUNTER_NAMES, tf.unstack(anywhere)):
        trackers[name].update_state(tf.cast(flag, "float32"))
    return {name: tracker.result() for name, tracker in trackers.items()}


def per_replica_counts(result, replicas: int):
    """The epoch's logs with the counters per replica, as the per-batch logs report them.

    Read across replicas, a ``Sum`` tracker is the sum of every replica's
    count, and a skipped step is skipped (and counted) on all of them.
    """
    if replicas <= 1 or not isinstance(result, dict):
        return result
    return {name: value / replicas if name in COUNTER_NAMES else value for name, value in result.items()}
