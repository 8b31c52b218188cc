"""Every use of Keras internals in keras_kare, in one place.

Keras 3 has no public API for the few things below; each is wrapped here so a
Keras upgrade that moves one breaks (or is fixed in) this module only.
Tested with Keras 3.15 and 3.14 on TensorFlow 2.21; each wrapper says what it falls
back to when the internal is missing (``pragma: no cover`` branches).

=============================  ==================================================
internal                       used for
=============================  ==================================================
``keras.src.backend``          ``get_keras_mask``/``set_keras_mask``: propagate
                               masks through the structured NTK's layer rules
``keras.src.models.functional`` ``Functional`` (no public alias) and
                               ``unpack_singleton``: recognise graph models
``Functional._standardize_inputs``, ``Functional._run_through_graph``
                               run a model's layer graph with a custom
                               per-operation function (structured capture)
``Sequential._functional``     the Functional graph a built Sequential keeps
``Layer._flatten_layers``      every nested layer (compute dtypes)
``Layer._call_context_args``   whether a layer's ``call`` takes ``training``
``Metric._direction``          "lower is better" for monitor callbacks
``keras.src.trainers.compile_utils.MetricsList``
                               group metrics so callbacks infer ``mode="min"``
``Model._build_shapes_dict``   whether a model recorded its build input shape
``BackupAndRestore._training_metadata_path``
                               the epoch a resumed ``fit`` starts at, known
                               before Keras restores it (in-memory pipelines
                               start their per-epoch shuffles there)
``Trainer._maybe_symbolic_build``, ``Trainer._make_function``
                               overridden by :class:`MultiWorkerFix`: two
                               cross-replica reductions of Keras' TensorFlow
                               trainer that fail across workers
                               (MultiWorkerMirroredStrategy)
``Trainer._get_metrics_result_or_logs``
                               overridden by :class:`EpochLogsFromLastStep`:
                               the epoch's logs without a second read-out of
                               every metric after the last step
``tf.__internal__.distribute.strategy_supports_no_merge_call``
                               (TensorFlow) whether a replica may call the
                               optimizer inside ``tf.cond`` without
                               ``merge_call`` (:func:`strategy_supports_no_merge_call`)
=============================  ==================================================

``tests/test_keras_compat.py`` checks what each of these does for keras_kare
(not only that the name exists), so an upgrade that changes a behaviour fails
a test instead of changing results silently.
"""

from __future__ import annotations

from typing import Callable, Optional

import keras

try:
    from keras.src.backend import get_keras_mask, set_keras_mask
except ImportError:  # pragma: no cover - older layout: the mask is a tensor attribute

    def get_keras_mask(t):
        return getattr(t, "_keras_mask", None)

    def set_keras_mask(t, mask):
        t._keras_mask = mask


try:  # the graph model class; keras.Model(inputs, outputs) returns one, but it has no public name
    from keras.src.models.functional import Functional
except ImportError:  # pragma: no cover
    Functional = None


def unpack_singleton(x):
    """``x[0]`` for a one-element list/tuple (how Functional returns a single output), else ``x``."""
    return x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x


def run_through_graph(model, inputs, operation_fn: Callable):
    """Outputs of a Functional ``model`` on ``inputs`` through Keras' private graph runner.

    Every operation ``op`` runs as ``operation_fn(op)(*args, **kwargs)``.
    """
    flat = model._standardize_inputs(inputs)
    return unpack_singleton(model._run_through_graph(flat, operation_fn=operation_fn))


def sequential_graph(model) -> Optional[keras.Model]:
    """The Functional graph a built ``keras.Sequential`` keeps, or None (not built with an Input)."""
    return getattr(model, "_functional", None)


def nested_layers(model) -> list:
    """Every layer inside ``model`` (recursively), without ``model`` itself."""
    flatten = getattr(model, "_flatten_layers", None)
    return list(flatten(include_self=False)) if flatten is not None else []


def accepts_training(layer) -> bool:
    """Whether ``layer.call`` takes a ``training`` argument (assumed yes if Keras does not say)."""
    return "training" in getattr(layer, "_call_context_args", {"training"})


def set_lower_is_better(metric) -> None:
    """Tell Keras' monitor callbacks (EarlyStopping, ModelCheckpoint, ...) that lower values are better."""
    metric._direction = "down"


def metrics_group(trackers: list, name: str):
    """Group ``trackers`` the way compiled metrics are grouped, or None if Keras lacks the class.

    Keras' monitor callbacks (ModelCheckpoint, EarlyStopping, ReduceLROnPlateau)
    infer ``mode="min"`` from a metric's direction only for metrics inside such
    a group. Without it users pass ``mode="min"``.
    """
    try:
        from keras.src.trainers.compile_utils import MetricsList
    except ImportError:  # pragma: no cover
        return None

    class _Group(MetricsList):
        def result(self):
            return self.get_result()

    return _Group(trackers, name=name)


def build_shapes(model) -> Optional[dict]:
    """The input shapes ``model`` was built with, as Keras records them (None if not recorded)."""
    return getattr(model, "_build_shapes_dict", None)


def record_build_shapes(model, input_shape) -> None:
    """Record ``input_shape`` where ``Model.get_build_config`` (saving) reads it."""
    model._build_shapes_dict = {"input_shape": input_shape}


def _spans_workers(strategy) -> bool:
    """Whether ``strategy`` has replicas on other workers (MultiWorkerMirroredStrategy with 2+ workers)."""
    from keras_kare.distribute import spans_workers

    return spans_workers(strategy)


class MultiWorkerFix:
    """Mixin for a ``keras.Model`` subclass: ``fit``/``evaluate`` under ``MultiWorkerMirroredStrategy``.

    Keras' TensorFlow trainer (3.15, with TensorFlow 2.21) cannot ``fit`` under
    a strategy whose replicas span several workers; two of its cross-replica
    reductions take a path that only multi-worker strategies take, and fail:

    - before training it builds the model symbolically from the first batch,
      reduced with ``strategy.reduce("MEAN", (x, y), axis=None)``; on a tuple of
      per-replica values that raises ``ValueError: Attempt to convert a value
      (PerReplica:{...}) ... to a Tensor``. Only the batch's shapes matter, so
      here it is this worker's own share (the same shapes as the mean).
    - every step's logs are reduced with ``strategy.reduce("MEAN", v, axis=0)``,
      which fails on the scalar logs every ``train_step`` returns ("Invalid
      reduction dimension 0 for input with 0 dimensions"). Here a step's
      scalar outputs get a leading axis of length 1 first, so that reduction
      is the mean over the replicas, as single-worker strategies report it.

    Strategies on one worker keep Keras' code paths unchanged.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is not None and data_batch is None and strategy is not None and _spans_workers(strategy):
            import tensorflow as tf

            for _, _, it in iterator:
                batch = next(it)
                data_batch = tf.nest.map_structure(
                    lambda v: (
                        strategy.experimental_local_results(v)[0]
                        if isinstance(v, tf.distribute.DistributedValues)
                        else v
                    ),
                    batch,
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _make_function(self, step_function):
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or not _spans_workers(strategy):
            return super()._make_function(step_function)
        import tensorflow as tf

        def with_replica_axis(t):
            return tf.reshape(t, [1]) if isinstance(t, tf.Tensor) and t.shape.rank == 0 else t

        def step(data):
            return tf.nest.map_structure(with_replica_axis, step_function(data))

        return super()._make_function(step)


def backup_resume_epoch(callback) -> Optional[int]:
    """The epoch ``keras.callbacks.BackupAndRestore`` ``callback`` will resume ``fit`` at, or None (no backup).

    Read from the training metadata Keras writes next to its backed-up
    weights (None if it is missing or unreadable; Keras then falls back to its
    own handling).
    """
    import json
    import os

    path = getattr(callback, "_training_metadata_path", None)
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def strategy_supports_no_merge_call() -> bool:
    """Whether the current distribution strategy lets a replica apply gradients without ``merge_call``.

    TensorFlow's own answer (an internal: ``tf.__internal__.distribute``).
    Falls back to False when it is missing: the ``merge_call`` path is valid
    under every strategy, only slower for those that did not need it.
    """
    import tensorflow as tf

    internal = getattr(getattr(tf, "__internal__", None), "distribute", None)
    fn = getattr(internal, "strategy_supports_no_merge_call", None)
    return bool(fn()) if fn is not None else False


class EpochLogsFromLastStep:
    """Mixin for a ``keras.Model`` whose steps return every metric's ``result()``: the epoch logs are the last step's.

    At the end of every epoch (and of ``evaluate``) Keras reads every metric
    again (``get_metrics_result``), one more call into the runtime whose
    values the last step just returned: measured on a 152-example full-batch
    KAREModel fit, 7.95 → 6.80 ms per epoch around a ~6 ms step (medians of 8
    interleaved 100-epoch fits). The subclass says which logs qualify through
    ``_logs_are_metric_results(logs)``; anything else (e.g. logs averaged over
    replicas, which Keras reads out differently) takes Keras' own path.
    """

    def _get_metrics_result_or_logs(self, logs):
        if self._logs_are_metric_results(logs):
            return logs
        return super()._get_metrics_result_or_logs(logs)

    def _logs_are_metric_results(self, logs) -> bool:  # pragma: no cover - overridden
        return False
