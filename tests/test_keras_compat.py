"""The Keras internals keras_kare relies on are reached only through ``_keras_compat``, and still work."""

import re
from pathlib import Path

import keras
import numpy as np

from keras_kare import KAREModel
from keras_kare import _keras_compat as compat

PACKAGE = Path(__file__).resolve().parents[1] / "keras_kare"
INTERNALS = re.compile(
    r"keras\.src|_run_through_graph|_standardize_inputs|_flatten_layers|_call_context_args|\._direction\b"
    r'|MetricsList|_build_shapes_dict|[."]_keras_mask\b|\._functional\b'
    r"|_maybe_symbolic_build|_make_function|_training_metadata_path|_get_metrics_result_or_logs"
    r"|__internal__"
)


def test_no_keras_internals_outside_the_compat_module():
    offenders = [
        f"{path.relative_to(PACKAGE)}:{i}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "_keras_compat.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if INTERNALS.search(line)
    ]
    assert not offenders, "Keras internals outside keras_kare/_keras_compat.py:\n" + "\n".join(offenders)


def test_internals_present_on_this_keras():
    """Every wrapper finds its internal (no silent fallback on the tested Keras versions)."""
    inp = keras.Input((3,))
    functional = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(4)(inp)))
    assert compat.Functional is not None and isinstance(functional, compat.Functional)
    seq = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert isinstance(compat.sequential_graph(seq), compat.Functional)
    assert len(compat.nested_layers(functional)) == 3  # Input, Dense, Dense
    assert compat.accepts_training(keras.layers.Dropout(0.1))
    x = np.ones((2, 3), "float32")
    seen = []
    out = compat.run_through_graph(functional, x, lambda op: lambda *a, **k: seen.append(op) or op(*a, **k))
    np.testing.assert_allclose(out, functional(x))
    assert len(seen) == 2
    # overridden by MultiWorkerFix and EpochLogsFromLastStep; if Keras renamed them,
    # the overrides would silently stop applying
    for name in ("_maybe_symbolic_build", "_make_function", "_get_metrics_result_or_logs"):
        assert callable(getattr(keras.Model, name, None)), name
    backup = keras.callbacks.BackupAndRestore("unused")
    assert isinstance(getattr(backup, "_training_metadata_path", None), str)
    assert compat.backup_resume_epoch(backup) is None  # no backup written
    metric = keras.metrics.Mean(name="m")
    compat.set_lower_is_better(metric)
    assert compat.metrics_group([metric], name="g") is not None


def test_early_stopping_infers_min_for_kare():
    """EarlyStopping(monitor="kare") without mode= picks "min" (metric direction inside a metrics group)."""
    model = KAREModel(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]))
    model.compile(optimizer="sgd")
    stop = keras.callbacks.EarlyStopping(monitor="kare")
    stop.set_model(model)
    stop._set_monitor_op()
    assert stop.monitor_op is np.less or stop.monitor_op.__name__ == "less"


def _kare_model(cls=KAREModel):
    keras.utils.set_random_seed(0)
    model = cls(keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)]))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def _data(n=12):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


class _Stop(keras.callbacks.Callback):
    """Interrupt ``fit`` at the start of epoch ``at`` (a crash, as BackupAndRestore's own docs simulate)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("interrupted")


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)


def test_backup_resume_epoch_is_where_keras_resumes(tmp_path):
    """The epoch read from BackupAndRestore's metadata is the one Keras' resumed fit starts at."""
    x, y = _data()
    backup_dir = str(tmp_path / "backup")
    model = _kare_model()
    try:
        model.fit(
            x, y, batch_size=6, epochs=5, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup_dir), _Stop(3)]
        )
    except RuntimeError:
        pass
    backup = keras.callbacks.BackupAndRestore(backup_dir)
    assert compat.backup_resume_epoch(backup) == 3
    epochs = _Epochs()
    _kare_model().fit(x, y, batch_size=6, epochs=5, verbose=0, callbacks=[backup, epochs])
    assert epochs.seen == [3, 4]
    assert compat.backup_resume_epoch(keras.callbacks.BackupAndRestore(backup_dir)) is None  # deleted after a full fit


def test_epoch_log_override_is_reached_and_equals_a_read_out():
    """Keras still asks the override for the epoch logs, and those logs equal a fresh read-out of the metrics."""

    class Spy(KAREModel):
        asked = 0

        def _logs_are_metric_results(self, logs):
            Spy.asked += 1
            return super()._logs_are_metric_results(logs)

    x, y = _data()
    model = _kare_model(Spy)
    history = model.fit(x, y, batch_size=12, epochs=3, verbose=0)
    assert Spy.asked >= 3  # once per epoch at least: the override is reached
    final = {k: float(v) for k, v in model.get_metrics_result().items()}
    assert set(final) == set(history.history)
    for name, value in final.items():
        assert history.history[name][-1] == value, name
    logs = model.evaluate(x, y, batch_size=12, verbose=0, return_dict=True)
    assert set(logs) == set(final)


def test_multiworker_fix_hooks_are_still_called_by_keras():
    """Keras' trainer still calls the two methods MultiWorkerFix overrides (single worker: its own code path)."""
    calls = []

    class Spy(KAREModel):
        def _maybe_symbolic_build(self, *args, **kwargs):
            calls.append("build")
            return super()._maybe_symbolic_build(*args, **kwargs)

        def _make_function(self, step_function):
            calls.append("function")
            return super()._make_function(step_function)

    x, y = _data()
    _kare_model(Spy).fit(x, y, batch_size=6, epochs=1, verbose=0)
    assert "build" in calls and "function" in calls


def test_strategy_supports_no_merge_call_answers_for_the_default_strategy():
    import tensorflow as tf

    assert isinstance(compat.strategy_supports_no_merge_call(), bool)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        assert compat.strategy_supports_no_merge_call() is False  # Mirrored synchronises through merge_call
