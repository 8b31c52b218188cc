"""Callbacks (KernelMonitor, KernelRidgeEvaluation) and the spectrum statistics behind them."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kare
from keras_kare import KAREModel, KernelPredictor
from keras_kare.callbacks import KernelMonitor, KernelRidgeEvaluation
from keras_kare.callbacks.kernel_monitor import ridge_key
from keras_kare.risk import kare_terms
from keras_kare.spectrum import (
    effective_dimension,
    effective_rank,
    kernel_target_alignment,
    participation_ratio,
    spectrum_summary,
)


def _data(n=48, d=4, seed=0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, d)).astype("float32")
    y = np.where(x[:, 0] + 0.3 * r.standard_normal(n) > 0, 1.0, -1.0).astype("float32")
    return x, y


def _net(d=4, width=12):
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(width, "gelu"), keras.layers.Dense(1)])


def _event_tags(run_dir):
    """{tag: {"kind": "scalar"|"histogram"|..., "steps": [..]}} from all event files of a run directory."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(run_dir, size_guidance={"tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        meta = acc.SummaryMetadata(tag).plugin_data.plugin_name
        out[tag] = {
            "kind": meta,
            "steps": [e.step for e in events],
            "values": [tf.make_ndarray(e.tensor_proto) for e in events],
        }
    return out


# ---------------------------------------------------------------- spectrum math
def test_spectrum_statistics_closed_forms():
    n = 6
    flat = np.full(n, 2.0)
    assert effective_rank(flat) == pytest.approx(n)
    assert participation_ratio(flat) == pytest.approx(n)
    one = np.array([5.0, 0, 0, 0])
    assert effective_rank(one) == pytest.approx(1.0) and participation_ratio(one) == pytest.approx(1.0)
    two = np.array([1.0, 1.0, 0.0])
    assert effective_rank(two) == pytest.approx(2.0)
    assert effective_rank(np.zeros(3)) == 0.0
    # d_eff = tr[(K/n)(K/n + λI)^-1] against an explicit matrix computation
    r = np.random.default_rng(0)
    a = r.standard_normal((8, 5))
    k = a @ a.T
    lam = 0.3
    h = (k / 8) @ np.linalg.inv(k / 8 + lam * np.eye(8))
    assert effective_dimension(np.linalg.eigvalsh(k), lam) == pytest.approx(np.trace(h), rel=1e-10)
    # ... and d_eff = n - n * (KARE denominator / λ⁻¹ scale): denominator = tr(M⁻¹)/n, n - λ tr M⁻¹ = tr H
    y = r.standard_normal(8)
    den = float(kare_terms(k, y, lam).denominator)
    assert effective_dimension(np.linalg.eigvalsh(k), lam) == pytest.approx(8 - 8 * lam * den, rel=1e-9)


def test_alignment():
    r = np.random.default_rng(1)
    y = r.standard_normal((7, 2))
    assert kernel_target_alignment(y @ y.T, y) == pytest.approx(1.0)
    k = np.eye(7)
    yv = np.ones(7)
    # <I, 11ᵀ> = 7, ‖I‖ = √7, ‖11ᵀ‖ = 7
    assert kernel_target_alignment(k, yv) == pytest.approx(7 / (np.sqrt(7) * 7))
    assert kernel_target_alignment(k, yv, centered=True) == 0.0  # centred constant targets vanish
    s = np.sign(r.standard_normal(7))
    kk = np.outer(s, s) + 5.0  # target kernel plus a constant offset
    assert kernel_target_alignment(kk, s, centered=True) == pytest.approx(1.0)
    assert kernel_target_alignment(kk, s) < 0.99
    with pytest.raises(ValueError, match="kernel must be"):
        kernel_target_alignment(np.eye(3), np.ones(4))
    summ = spectrum_summary(np.array([3.0, 1.0, -1e-9]), 0.1)
    assert summ["trace"] == pytest.approx(4.0) and summ["negative_mass"] > 0


def test_ridge_key():
    assert [ridge_key(r) for r in (0.1, 1e-3, 1.0, 10.0, 0.25)] == ["z1e-1", "z1e-3", "z1e0", "z1e1", "z2.5e-1"]


# ---------------------------------------------------------------- the run with TensorBoard
MONITOR_SCALARS = {
    "trace",
    "eigenvalue_max",
    "eigenvalue_min",
    "effective_rank",
    "participation_ratio",
    "effective_dimension",
    "negative_mass",
    "alignment",
    "centered_alignment",
    "kare",
    "kare_min",
    "kare_argmin_ridge",
    "kare_z1e-3",
    "kare_z1e-2",
    "kare_z1e-1",
    "kare_z1e0",
    "kare_z1e1",
}


def test_monitor_and_krr_with_tensorboard_jit_and_batch_scalars(tmp_path):
    x, y = _data()
    probe_x, probe_y = x[:24], y[:24]
    net = _net()
    model = KAREModel(net, ridge=0.1)  # "auto": the structured NTK when available
    model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=True)
    log_dir = str(tmp_path / "logs")
    monitor = KernelMonitor(probe_x, probe_y, log_dir=log_dir, implementation="jacobian")
    krr = KernelRidgeEvaluation(
        x[:32], y[:32], validation_data=(x[32:], y[32:]), implementation="jacobian", log_dir=log_dir
    )
    tb = keras.callbacks.TensorBoard(log_dir, update_freq="batch")
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor, krr, tb])
    assert model.jit_compile is True

    # logs dict -> History (and the progress bar), per epoch
    keys = set(history.history)
    assert {f"ntk_{k}" for k in MONITOR_SCALARS} <= keys
    assert {
        "val_krr_mse",
        "val_krr_accuracy",
        "val_krr_ridge",
        "kare",
        "kare_numerator",
        "kare_denominator",
        "effective_ridge",
    } <= keys
    assert len(history.history["ntk_trace"]) == 2

    # the numbers: recompute from the public API at the final weights (= those of the last epoch end)
    k = keras_kare.ntk(net, probe_x, implementation="jacobian").numpy().astype(np.float64)
    k = 0.5 * (k + k.T)
    stats = monitor.history[-1][1]
    assert stats["trace"] == pytest.approx(np.trace(k), rel=1e-6)
    assert stats["kare"] == pytest.approx(float(keras_kare.kare(k, probe_y, ridge=0.1)), rel=1e-6)
    assert stats["kare_z1e-2"] == pytest.approx(float(keras_kare.kare(k, probe_y, ridge=0.01)), rel=1e-6)
    assert stats["kare_min"] == pytest.approx(min(stats[f"kare_z1e{e}"] for e in (-3, -2, -1, 0, 1)))
    assert 1.0 <= stats["effective_rank"] <= 24 and 0 <= stats["alignment"] <= 1
    assert history.history["ntk_kare"][-1] == pytest.approx(stats["kare"])
    kp = KernelPredictor(model, ridge="auto", implementation="jacobian").fit(x[:32], y[:32])
    pred = kp.predict(x[32:])
    assert history.history["val_krr_mse"][-1] == pytest.approx(np.mean((pred - y[32:]) ** 2), rel=1e-6)
    assert history.history["val_krr_accuracy"][-1] == pytest.approx(np.mean(np.sign(pred) == y[32:]))

    # TensorBoard: own runs "kernel" and "krr", Keras' "train" (batch + epoch) and "validation"
    kernel_run = _event_tags(os.path.join(log_dir, "kernel"))
    assert {f"ntk/{k}" for k in MONITOR_SCALARS} <= set(kernel_run)
    for tag in ("ntk/eigenvalues", "ntk/log10_eigenvalues"):
        assert kernel_run[tag]["kind"] == "histograms" and kernel_run[tag]["steps"] == [0, 1]
    assert kernel_run["ntk/trace"]["kind"] == "scalars" and kernel_run["ntk/trace"]["steps"] == [0, 1]
    assert float(kernel_run["ntk/kare"]["values"][-1]) == pytest.approx(stats["kare"], rel=1e-6)
    hist = kernel_run["ntk/eigenvalues"]["values"][-1]  # (buckets, 3): left, right, count
    assert hist[:, 2].sum() == pytest.approx(24)
    krr_run = _event_tags(os.path.join(log_dir, "krr"))
    assert {"val_krr/mse", "val_krr/accuracy", "val_krr/ridge"} <= set(krr_run)
    train_run = _event_tags(os.path.join(log_dir, "train"))
    for name in ("kare", "kare_numerator", "kare_denominator", "effective_ridge"):
        assert len(train_run[f"batch_{name}"]["steps"]) == 6  # 3 steps × 2 epochs, update_freq="batch"
        assert f"epoch_{name}" in train_run
    assert "epoch_ntk_effective_rank" in train_run
    val_run = _event_tags(os.path.join(log_dir, "validation"))
    assert {"epoch_krr_mse", "epoch_krr_accuracy"} <= set(val_run)


def test_every_n_epochs_and_early_stopping_on_val_krr():
    x, y = _data(n=32)
    model = KAREModel(_net(), ridge=0.1, implementation="jacobian")
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    monitor = KernelMonitor(x[:8], y[:8], every_n_epochs=2)
    krr = KernelRidgeEvaluation(x[:24], y[:24], validation_data=(x[24:], y[24:]), n_train=12, seed=3, ridge=1e-2)
    stop = keras.callbacks.EarlyStopping(monitor="val_krr_mse", mode="min", patience=100)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[monitor, krr, stop])
    assert [e for e, _ in monitor.history] == [1]
    assert [e for e, _ in krr.history] == [0, 1, 2]
    assert krr.x.shape == (12, 4) and krr.history[0][1]["ridge"] == 1e-2
    assert stop.best == pytest.approx(min(r["mse"] for _, r in krr.history))


def test_one_hot_task_accuracy():
    r = np.random.default_rng(2)
    x = r.standard_normal((30, 4)).astype("float32")
    labels = r.integers(0, 3, 30)
    y = np.eye(3, dtype="float32")[labels]
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(3)])
    model = KAREModel(net, ridge=0.1, kernel="trace", implementation="jacobian")
    model.compile(optimizer="sgd")
    krr = KernelRidgeEvaluation(x[:20], y[:20], validation_data=(x[20:], y[20:]), ridge=0.1)
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[krr])
    assert krr.task == "argmax"
    kp = KernelPredictor(model, ridge=0.1, implementation="jacobian").fit(x[:20], y[:20])
    expected = np.mean(np.argmax(kp.predict(x[20:]), axis=1) == labels[20:])
    assert krr.history[0][1]["accuracy"] == pytest.approx(expected)


# ---------------------------------------------------------------- bad input
def test_probe_of_wrong_shape_fails_before_training():
    x, y = _data(n=16)
    model = KAREModel(_net(), ridge=0.1, implementation="jacobian")
    model.compile(optimizer="sgd")
    bad = KernelMonitor(np.zeros((8, 5), "float32"), np.ones(8))
    with pytest.raises(
        ValueError,
        match=r"KernelMonitor x has per-example shape \(5,\) \(shape \(8, 5\)\) but the network expects \(4,\)",
    ):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[bad])
    assert int(model.optimizer.iterations.numpy()) == 0
    bad_val = KernelRidgeEvaluation(x, y, validation_data=(np.zeros((4, 3), "float32"), np.ones(4)))
    with pytest.raises(ValueError, match="validation x has per-example shape"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[bad_val])


@keras.saving.register_keras_serializable(package="keras_kare_tests")
class _Sub(keras.Model):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.d = keras.layers.Dense(1)

    def call(self, x):
        return self.d(x)


def test_probe_wrong_shape_subclassed_model():
    x, y = _data(n=16)
    net = _Sub()
    net(x[:1])
    model = KAREModel(net, ridge=0.1, implementation="jacobian")
    model.compile(optimizer="sgd")
    with pytest.raises(
        ValueError, match=r"KernelMonitor x: the network cannot be applied to inputs of per-example shape \(7,\)"
    ):
        model.fit(
            x, y, batch_size=8, epochs=1, verbose=0, callbacks=[KernelMonitor(np.zeros((4, 7), "float32"), np.ones(4))]
        )


def test_bad_constructor_arguments():
    x, y = _data(n=8)
    with pytest.raises(ValueError, match="rows"):
        KernelMonitor(x, y[:5])
    with pytest.raises(ValueError, match="at least 2 examples"):
        KernelMonitor(x[:1], y[:1])
    with pytest.raises(ValueError, match="every_n_epochs"):
        KernelMonitor(x, y, every_n_epochs=0)
    with pytest.raises(ValueError, match="NaN"):
        KernelMonitor(np.full((4, 4), np.nan, "float32"), np.ones(4))
    with pytest.raises(ValueError, match="ridge"):
        KernelMonitor(x, y, ridges=[0.1, -1.0])
    with pytest.raises(ValueError, match="validation_data must be a pair"):
        KernelRidgeEvaluation(x, y, validation_data=x)
    with pytest.raises(ValueError, match="n_train"):
        KernelRidgeEvaluation(x, y, validation_data=(x, y), n_train=100)
    with pytest.raises(ValueError, match="columns"):
        KernelRidgeEvaluation(x, y, validation_data=(x, np.ones((8, 2))))
    with pytest.raises(ValueError, match="task"):
        KernelRidgeEvaluation(x, y, validation_data=(x, y), task="nope")


def test_full_kernel_target_columns_checked():
    x, _ = _data(n=8)
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model = KAREModel(net, kernel="full", implementation="jacobian")
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="one target column per output: the model has 2, y has 1"):
        model.fit(x, np.ones((8, 2)), batch_size=8, epochs=1, verbose=0, callbacks=[KernelMonitor(x, np.ones(8))])


def test_dict_input_probe():
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b")
    h = keras.layers.Dense(6, "tanh")(keras.layers.Concatenate()([a, b]))
    net = keras.Model({"a": a, "b": b}, keras.layers.Dense(1)(h))
    r = np.random.default_rng(0)
    x = {"a": r.standard_normal((16, 3)).astype("float32"), "b": r.standard_normal((16, 2)).astype("float32")}
    y = np.sign(r.standard_normal(16)).astype("float32")
    model = KAREModel(net, ridge=0.1, implementation="jacobian")
    model.compile(optimizer="sgd")
    monitor = KernelMonitor({"a": x["a"][:6], "b": x["b"][:6]}, y[:6])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    assert np.isfinite(monitor.history[0][1]["kare"])
    bad = KernelMonitor({"a": x["a"][:6], "b": np.zeros((6, 4), "float32")}, y[:6])
    with pytest.raises(ValueError, match="KernelMonitor x: the network cannot be applied to inputs"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[bad])
