"""The Keras internals keras_kare relies on are reached only through ``_keras_compat``, and still work."""

import re
from pathlib import Path

import keras
import numpy as np

from keras_kare import _keras_compat as compat

PACKAGE = Path(__file__).resolve().parents[1] / "keras_kare"
INTERNALS = re.compile(
    r"keras\.src|_run_through_graph|_standardize_inputs|_flatten_layers|_call_context_args|\._direction\b"
    r'|MetricsList|_build_shapes_dict|[."]_keras_mask\b|\._functional\b'
    r"|_maybe_symbolic_build|_make_function|_training_metadata_path|_get_metrics_result_or_logs"
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
    from keras_kare import KAREModel

    model = KAREModel(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]))
    model.compile(optimizer="sgd")
    stop = keras.callbacks.EarlyStopping(monitor="kare")
    stop.set_model(model)
    stop._set_monitor_op()
    assert stop.monitor_op is np.less or stop.monitor_op.__name__ == "less"
