"""Sweeps reuse compiled steps (TrainerPool) without changing what any configuration trains to."""

import keras
import numpy as np
import pytest
from precision import U32

from keras_kare import in_memory
from keras_kare.reproduce import build_mlp, runner
from keras_kare.reproduce.eta import ETA, WorkETA, format_seconds
from keras_kare.reproduce.runner import train_dnn, train_kare
from keras_kare.trainer_pool import TrainerPool

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


def test_pool_restores_an_optimizer_whose_fresh_state_is_not_zero(rng):
    """A reused model trains as a fresh one for any optimizer: Adagrad's accumulators start at 0.1, not 0."""
    x, y = _data(rng)

    def build(net):
        net.compile(optimizer=keras.optimizers.Adagrad(0.5, initial_accumulator_value=0.1), loss="mse")
        return {"model": net}

    def train(model, lr):
        model.optimizer.learning_rate = lr
        model.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
        return [w.copy() for w in model.get_weights()]

    pool = TrainerPool()
    train(pool.get("mlp", _net(0), build, 0.5)["model"], 0.5)  # moves the pooled optimizer's accumulators
    reused = train(pool.get("mlp", _net(1), build, 0.2)["model"], 0.2)
    fresh = train(build(_net(1))["model"], 0.2)
    assert pool.builds == 1
    for a, b in zip(reused, fresh):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # same ops, same inputs: float32 round-off at most


@pytest.mark.parametrize("batch_size", [None, 8])
def test_dnn_sweep_traces_once_and_matches_fresh_models(rng, monkeypatch, batch_size):
    traces = _count_traces(monkeypatch, keras.Sequential)
    x, y = _data(rng)
    pool = TrainerPool()
    configs = [(0, 0.1), (1, 0.05), (0, 0.01)]
    pooled, traced = [], []
    for seed, lr in configs:
        keras.utils.set_random_seed(seed)  # the batch shuffle draws from the global seed
        net, info = train_dnn(_net(seed), x, y, lr, 7, batch_size, quiet, pool=pool)
        pooled.append([w.copy() for w in net.get_weights()])
        traced.append(len(traces))
    assert pool.builds == 1
    # one trace of the compiled loop: one train_step per batch shape (full batches, a partial last one)
    assert traced == [1 if batch_size is None else 2] * len(configs)
    for (seed, lr), weights in zip(configs, pooled):
        keras.utils.set_random_seed(seed)
        fresh, _ = train_dnn(_net(seed), x, y, lr, 7, batch_size, quiet)
        for a, b in zip(weights, fresh.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _keras_fit_dnn(net, x, y, lr, passes, batch_size, seed):
    """The reference DNN training: plain ``keras.Model.fit`` on ``in_memory.epoch_dataset``, one pass an epoch.

    Returns the network and the per-pass mean losses.
    """
    n = len(x)
    bs = min(batch_size or n, n)
    net.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    data, per_pass = in_memory.epoch_dataset(x, y, batch_size=bs, shuffle=True, seed=seed, first_epoch=0)
    history = net.fit(data, steps_per_epoch=per_pass, epochs=passes, shuffle=False, verbose=0)
    return net, history.history["loss"]


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize(
    "batch_size, passes",
    [(None, 7), (8, 7), (8, 40)],  # full batch; 3 batches a pass (last partial); 33 passes a call and 7 more
)
def test_dnn_compiled_loop_matches_keras_fit(rng, jit_compile, batch_size, passes):
    """train_dnn's compiled loop runs Keras' fit steps on the same batches in the same order.

    Oracle: ``keras.Model.fit`` on ``in_memory.epoch_dataset`` with the same
    shuffle seed (per-epoch orders from ``tf.data``, not the compiled loop's
    own draws), one pass per epoch (:func:`_keras_fit_dnn`).
    Tolerance: each of the ``s`` SGD steps changes a weight by lr·g, g a sum
    over at most n = 20 examples of products carrying a few roundings each;
    XLA may sum in another order, so a step's update may differ by (n + 8)·u
    relative to the largest update (bounded by the total movement: small lr,
    few steps), and the differences of s steps add up. A batch out of order
    would change the weights by a whole step's size, ~1/u times more.
    """
    x, y = _data(rng)
    ref, losses = _keras_fit_dnn(_net(0), x, y, 0.05, passes, batch_size, seed=3)
    net, info = train_dnn(_net(0), x, y, 0.05, passes, batch_size, quiet, jit_compile=jit_compile, seed=3)
    per_pass = 1 if batch_size is None else 3
    steps = passes * per_pass
    for a, b, w0 in zip(ref.get_weights(), net.get_weights(), _net(0).get_weights()):
        moved = float(np.abs(a - w0).max())
        np.testing.assert_allclose(b, a, rtol=0, atol=steps * (len(x) + 8) * U32 * moved + 4 * U32 * np.abs(a).max())
    # the logged loss: the mean over the last checked chunk of min(passes, 100 // per_pass) passes (here partial)
    per_check = min(passes, runner.CHECK_STEPS // per_pass)
    last_chunk = losses[(len(losses) - 1) // per_check * per_check :]
    assert info["final_loss"] == pytest.approx(np.mean(last_chunk), rel=steps * (len(x) + 8) * U32)


def test_dnn_passes_are_shuffled_by_the_seed(rng):
    """Mini-batch passes: a new order every pass, set by the seed (drawn from Python's random when not given)."""
    x, y = _data(rng)

    def weights(**kw):
        return train_dnn(_net(0), x, y, 0.05, 3, 8, quiet, **kw)[0].get_weights()[0]

    np.testing.assert_array_equal(weights(seed=1), weights(seed=1))
    assert np.abs(weights(seed=1) - weights(seed=2)).max() > 1e-4  # another batch order, another SGD path
    keras.utils.set_random_seed(4)
    drawn = weights()
    keras.utils.set_random_seed(4)
    np.testing.assert_array_equal(weights(), drawn)


def test_pool_keys_separate_architectures_and_objectives(rng):
    x, y = _data(rng)
    pool = TrainerPool()
    train_kare(_net(0), x, y, 0.1, 1.0, 1, None, quiet, pool=pool)
    train_kare(build_mlp(3, 2, 16, 1, seed=0), x, y, 0.1, 1.0, 1, None, quiet, pool=pool)  # deeper
    train_kare(_net(0), x, y, 0.2, 1.0, 1, None, quiet, pool=pool)  # another KARE ridge
    train_dnn(_net(0), x, y, 0.1, 2, None, quiet, pool=pool)
    assert pool.builds == 4


@pytest.mark.parametrize("batch_size, lr", [(None, 1.0), (8, 0.7)])  # blows up in the first check / after 4
def test_dnn_divergence_restores_last_finite_weights(rng, batch_size, lr):
    """Training that blows up stops at its first non-finite check with the weights of the check before.

    Oracle: the initial weights, or the same training run for exactly the
    passes kept (it stays finite there), which ends at the same weights bit
    for bit (the same steps on the same batches).
    """
    x, y = _data(rng)
    msgs = []
    keras.utils.set_random_seed(1)
    net, info = train_dnn(_net(0), x, y, lr, 1000, batch_size, msgs.append)
    per_pass = 1 if batch_size is None else 3
    assert info["stopped_at"] is not None and info["stopped_at"] % per_pass == 0
    (line,) = [m for m in msgs if "not finite" in m]
    kept = int(line.rsplit(" ", 1)[1])  # "... restored the weights of step K"
    assert info["stopped_at"] - kept == (runner.CHECK_STEPS // per_pass) * per_pass
    if kept == 0:
        reference = _net(0).get_weights()
        assert info["final_loss"] is None
    else:
        keras.utils.set_random_seed(1)
        ref, ref_info = train_dnn(_net(0), x, y, lr, kept // per_pass, batch_size, quiet)
        assert ref_info["stopped_at"] is None and ref_info["final_loss"] == info["final_loss"]
        reference = ref.get_weights()
    for a, b in zip(reference, net.get_weights()):
        np.testing.assert_array_equal(b, a)


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
    assert seen["krr"] == ["summed_output"] * 3  # the untrained control, NTK-KARE, the after-kernel


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


def test_work_eta_weighs_the_units_left_by_their_cost():
    eta = WorkETA({"big": 3.0, "mid": 2.0, "small": 1.0, "tiny": 1.0}, jobs=2)
    # 30 s for 3 units of cost: 10 s per unit; 4 units left on 2 workers
    assert eta.done("big", 30.0) == pytest.approx(20.0)
    # now 50 s for 5 units: still 10 s per unit; 2 units left
    assert eta.done("mid", 20.0) == pytest.approx(10.0)
    assert eta.done("tiny", 30.0) == pytest.approx(80.0 / 6.0 / 2)  # a slow unit raises the rate
    assert eta.done("small", 1.0) == 0.0
    # a mean time per unit would have said 30 s x 3 units / 2 workers = 45 s after the first
    with pytest.raises(ValueError, match="jobs"):
        WorkETA({"a": 1.0}, jobs=0)
    with pytest.raises(ValueError, match="positive"):
        WorkETA({"a": 0.0})
    with pytest.raises(KeyError, match="nope"):
        WorkETA({"a": 1.0}).done("nope", 1.0)


def test_table_cost_grows_with_rows_and_linearly_under_mini_batches():
    from keras_kare.reproduce.runner import FULL_BATCH_ROWS
    from keras_kare.reproduce.uci_cost import table_cost

    costs = [table_cost(n) for n in (10, 100, 366, 1000, 4000)]
    assert costs == sorted(costs) and costs[0] == pytest.approx(1.04, abs=1e-3)
    # the measured paper-grid tables it was read from: 357 s, 722 s, 1 630 s at 100, 366, 1 000 rows
    per_unit = [s / table_cost(n) for n, s in ((100, 357.0), (366, 722.0), (1000, 1630.0))]
    assert max(per_unit) / min(per_unit) < 1.3
    step = table_cost(FULL_BATCH_ROWS + 2000) - table_cost(FULL_BATCH_ROWS + 1000)
    assert step == pytest.approx(1000 / 250.0)  # mini-batch KARE: only the linear part grows


def test_run_clock_time_left_is_time_per_cost_times_cost_left(monkeypatch):
    from keras_kare.reproduce import uci_cost as Cost

    now = [100.0]
    monkeypatch.setattr(Cost.time, "time", lambda: now[0])
    logs = []
    clock = Cost.RunClock(3, logs.append, total_cost=10.0)
    assert clock.eta() == "unknown"
    now[0] = 104.0
    clock.trained(4.0, "a", cost=2.0)  # 2 s per unit of cost, 8 units left
    assert clock.remaining_seconds() == pytest.approx(16.0)
    assert "estimated total for 3 trainings: 20s" in logs[0] and logs[1].endswith("(1/3 trainings, about 16s left)")
    now[0] = 110.0
    clock.trained(6.0, "b", cost=6.0)  # 10 s for 8 units: 1.25 s each, 2 left
    assert clock.remaining_seconds() == pytest.approx(2.5)
    clock.trained(1.0, "c", cost=5.0)  # more cost than was counted: nothing left, not negative
    assert clock.remaining_seconds() == 0.0
    equal = Cost.RunClock(4, logs.append)  # no costs given: every training counts 1
    now[0] = 113.0
    equal.trained(3.0)
    assert equal.remaining_seconds() == pytest.approx(9.0)


def test_dataset_cost_sums_the_grid_and_counts_folds_at_their_kinds_mean():
    from keras_kare.reproduce import experiments as E
    from keras_kare.reproduce import uci_cost as Cost
    from keras_kare.reproduce import uci_recipes as Rc

    s = dict(E.UCI_DEFAULTS, depths=[1, 3], widths=[32, 256], kare_lrs=[10.0, 1.0], dnn_lrs=[0.1], recipes=[])
    grid = list(Rc.uci_configs({**s, "protocol": "paper"}, E.UCI_KARE_LRS))
    costs = {c: Cost.training_cost(c[0], c[1], c[2], 300) for c in grid}
    assert Cost.dataset_cost({**s, "protocol": "paper"}, E.UCI_KARE_LRS, 300) == pytest.approx(sum(costs.values()))
    kare = [v for c, v in costs.items() if c[0] == "kare"]
    dnn = [v for c, v in costs.items() if c[0] == "dnn"]
    folds = 4 * (np.mean(kare) + 2 * np.mean(dnn))  # a DNN's choice and its after-kernel's may differ
    validated = Cost.dataset_cost({**s, "protocol": "validated"}, E.UCI_KARE_LRS, 300)
    assert validated == pytest.approx(sum(costs.values()) + folds)
    # deeper and wider cost more, KARE more than a DNN of the same shape, larger tables more
    cost = Cost.training_cost
    assert cost("kare", 3, 256, 300) > cost("kare", 1, 256, 300) > cost("kare", 1, 32, 300) > cost("dnn", 1, 32, 300)
    assert cost("kare", 1, 32, 1000) > cost("kare", 1, 32, 300)


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


def test_run_seed_concurrent_dnn_gives_the_sequential_rows(rng):
    """The DNN trained in a second thread while NTK-KARE trains: the same numbers as one after the other."""
    x, y = _data(rng, n=40)
    cfg = dict(TINY_CFG, kare_steps=3, dnn_steps=150)  # two compiled DNN calls, with a divergence check each
    pool = TrainerPool()
    rows = {
        c: runner.run_seed(x[:30], y[:30], x[30:], y[30:], 0, cfg, quiet, pool=pool, concurrent=c)
        for c in (True, False)
    }
    assert len(rows[True]) == len(rows[False]) == 3 * len(cfg["ridges"]) + 1
    for a, b in zip(rows[True], rows[False]):
        assert (a["method"], a["ridge"]) == (b["method"], b["ridge"])
        assert a["test_mse"] == b["test_mse"]  # no random draw during training: bit for bit


def test_run_seed_reraises_the_dnn_threads_error(rng, monkeypatch):
    def broken(*args, **kwargs):
        raise FloatingPointError("from the DNN thread")

    monkeypatch.setattr(runner, "train_dnn", broken)
    x, y = _data(rng, n=30)
    with pytest.raises(FloatingPointError, match="from the DNN thread"):
        runner.run_seed(x[:20], y[:20], x[20:], y[20:], 0, TINY_CFG, quiet, concurrent=True)
