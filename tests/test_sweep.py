"""Sweeps reuse compiled steps (TrainerPool) without changing what any configuration trains to."""

import keras
import numpy as np
import pytest

from keras_kare.reproduce import build_mlp, runner
from keras_kare.reproduce.eta import ETA, format_seconds
from keras_kare.reproduce.runner import TrainerPool, train_dnn, train_kare

quiet = lambda msg: None  # noqa: E731

# a run_seed configuration that trains for two steps (wiring tests, not accuracy)
TINY_CFG = dict(
    depth=1,
    width=8,
    kare_ridge=0.1,
    kare_lr=1.0,
    kare_steps=2,
    dnn_lr=0.1,
    dnn_steps=2,
    ridges=[1e-2, 1.0],
    batch_size=None,
    kernel="summed_output",
)


def _data(rng, n=20, d=3, outputs=1):
    x = rng.normal(size=(n, d)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(d, outputs))).astype("float32")
    return x, y


def _net(seed, d=3, outputs=1):
    return build_mlp(d, 1, 16, outputs, seed=seed)


def _count_traces(monkeypatch, cls) -> list:
    """``train_step`` runs in Python only while its tf.function is traced: count those runs."""
    calls = []
    original = cls.train_step

    def counted(self, data):
        calls.append(1)
        return original(self, data)

    monkeypatch.setattr(cls, "train_step", counted)
    return calls


def test_kare_sweep_traces_once_and_matches_fresh_models(rng, monkeypatch):
    traces = _count_traces(monkeypatch, runner.KAREModel)
    x, y = _data(rng)
    pool = TrainerPool()
    configs = [(0, 1.0), (1, 1.0), (0, 0.1), (2, 0.5)]
    pooled = []
    for seed, lr in configs:
        model, info = train_kare(_net(seed), x, y, 0.1, lr, 3, None, quiet, pool=pool)
        pooled.append((info["final_kare"], [w.copy() for w in model.base_model.get_weights()]))
    assert pool.builds == 1
    assert len(traces) == 1  # one trace for the whole sweep
    for (seed, lr), (kare, weights) in zip(configs, pooled):
        fresh, info = train_kare(_net(seed), x, y, 0.1, lr, 3, None, quiet)
        assert info["final_kare"] == pytest.approx(kare, rel=1e-6)
        for a, b in zip(weights, fresh.base_model.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # same ops, same inputs: float32 round-off at most


@pytest.mark.parametrize("batch_size", [None, 8])
def test_dnn_sweep_traces_once_and_matches_fresh_models(rng, monkeypatch, batch_size):
    traces = _count_traces(monkeypatch, keras.Sequential)
    x, y = _data(rng)
    pool = TrainerPool()
    configs = [(0, 0.1), (1, 0.05), (0, 0.01)]
    pooled = []
    for seed, lr in configs:
        keras.utils.set_random_seed(seed)  # the batch shuffle draws from the global seed
        net, info = train_dnn(_net(seed), x, y, lr, 7, batch_size, quiet, pool=pool)
        pooled.append([w.copy() for w in net.get_weights()])
    assert pool.builds == 1
    assert len(traces) == 1
    for (seed, lr), weights in zip(configs, pooled):
        keras.utils.set_random_seed(seed)
        fresh, _ = train_dnn(_net(seed), x, y, lr, 7, batch_size, quiet)
        for a, b in zip(weights, fresh.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_pool_keys_separate_architectures_and_objectives(rng):
    x, y = _data(rng)
    pool = TrainerPool()
    train_kare(_net(0), x, y, 0.1, 1.0, 1, None, quiet, pool=pool)
    train_kare(build_mlp(3, 2, 16, 1, seed=0), x, y, 0.1, 1.0, 1, None, quiet, pool=pool)  # deeper
    train_kare(_net(0), x, y, 0.2, 1.0, 1, None, quiet, pool=pool)  # another KARE ridge
    train_dnn(_net(0), x, y, 0.1, 2, None, quiet, pool=pool)
    assert pool.builds == 4


def test_dnn_divergence_restores_last_finite_weights(rng):
    x, y = _data(rng)
    msgs = []
    net, info = train_dnn(_net(0), x, y * 1e6, 1e3, 300, None, msgs.append)
    assert info["stopped_at"] is not None
    assert all(np.all(np.isfinite(w)) for w in net.get_weights())
    assert any("not finite" in m for m in msgs)


def test_run_seed_trains_and_predicts_with_the_same_kernel_mode(rng, monkeypatch):
    """KARE training must use cfg['kernel'], the mode kernel ridge regression uses afterwards."""
    seen = {"train": [], "krr": []}
    model_cls, predictor_cls = runner.KAREModel, runner.KernelPredictor

    def spy_model(*args, **kwargs):
        seen["train"].append(kwargs.get("kernel", "trace"))
        return model_cls(*args, **kwargs)

    def spy_predictor(*args, **kwargs):
        seen["krr"].append(kwargs.get("kernel"))
        return predictor_cls(*args, **kwargs)

    monkeypatch.setattr(runner, "KAREModel", spy_model)
    monkeypatch.setattr(runner, "KernelPredictor", spy_predictor)
    x, y = _data(rng, n=30, outputs=3)
    cfg = dict(TINY_CFG)
    runner.run_seed(x[:20], y[:20], x[20:], y[20:], 0, cfg, log=quiet)
    assert seen["train"] == ["summed_output"]
    assert seen["krr"] == ["summed_output", "summed_output"]


def test_eta_lines():
    eta = ETA(4)
    eta.skip()
    assert eta.remaining_seconds() is None
    line = eta.done(10.0)
    assert line == "2/4 done, 10s elapsed, ETA 20s"  # 2 timed units left at 10 s each
    assert eta.done(30.0).endswith("ETA 20s")  # mean 20 s, 1 left
    assert "ETA" not in eta.done(5.0)
    assert format_seconds(125) == "2m 05s" and format_seconds(7260) == "2h 01m"
    with pytest.raises(ValueError, match="total"):
        ETA(-1)


def test_index_direction_replays_the_generator():
    from keras_kare.datasets import index_direction, make_single_index

    x_tr, y_tr, x_te, _ = make_single_index(1.0, 0.0, n=50, d=4, n_train=40, seed=5)
    w = index_direction(5, n=50, d=4)
    x = np.concatenate([x_tr, x_te]).astype(np.float64)
    target = np.cos(x @ w) / (1.0 + np.exp(x @ w))
    np.testing.assert_allclose(y_tr, target[:40], rtol=1e-5, atol=1e-6)  # float32 data


def test_validated_run_seed_holds_out_training_rows(rng):
    x, y = _data(rng, n=40)
    cfg = dict(TINY_CFG, validation_fraction=0.25)
    poisoned = y[:32].copy()
    poisoned[24:] = 1e3  # held-out targets: would change every trained model if they reached training
    rows = runner.run_seed(x[:32], poisoned, x[32:], y[32:], 0, cfg, log=quiet)
    reference = runner.run_seed(x[:24], y[:24], x[32:], y[32:], 0, dict(cfg, validation_fraction=0.0), log=quiet)
    for r, ref in zip(rows, reference):
        assert (r["method"], r["ridge"]) == (ref["method"], ref["ridge"])
        assert r["test_mse"] == pytest.approx(ref["test_mse"], rel=1e-6)
    kernel_rows = [r for r in rows if r["method"] != "dnn"]
    assert kernel_rows and all(r["val_mse"] > 1e4 for r in kernel_rows)  # scored against the poisoned rows
    with pytest.raises(ValueError, match="validation_fraction"):
        runner.run_seed(x[:32], y[:32], x[32:], y[32:], 0, dict(cfg, validation_fraction=1.5), log=quiet)


def test_summary_of_the_validated_protocol_picks_the_ridge_on_held_out_rows():
    from keras_kare.reproduce import results as R

    rows = []
    for seed, (tests, vals, kares) in enumerate(
        [([0.3, 0.1], [0.5, 0.2], [0.1, 0.9]), ([0.4, 0.2], [0.1, 0.6], [0.2, 0.1])]
    ):
        for ridge, t, v, k in zip([0.01, 1.0], tests, vals, kares):
            rows.append({"method": "kare", "seed": seed, "ridge": ridge, "test_mse": t, "val_mse": v, "kare": k})
        rows.append({"method": "dnn", "seed": seed, "ridge": None, "test_mse": 0.5})
    s = R.summarise(rows)
    # seed 0: held-out picks ridge 1.0 (0.2 < 0.5) -> test 0.1; seed 1: ridge 0.01 (0.1 < 0.6) -> test 0.4
    assert s["kare"]["validated_ridges"] == [1.0, 0.01]
    assert s["kare"]["validated_test_mse"] == pytest.approx(0.25)
    assert s["kare"]["selected_test_mse"] == pytest.approx((0.3 + 0.2) / 2)  # KARE's picks differ
    assert "validated" in s["seed_stats"]
    assert "held-out training rows" in R.markdown_table(s)
