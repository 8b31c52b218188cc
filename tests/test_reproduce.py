"""Reproduction pieces: initialiser, scoring (hand-computed), results/summary, one tiny seed, predict_path."""

import json

import keras
import numpy as np
import pytest

import keras_kare
from keras_kare.reproduce import FanInUniform, average_ranks, build_mlp, score_table
from keras_kare.reproduce import results as R
from keras_kare.reproduce.runner import run_seed, score


# ------------------------------------------------------------------ initialiser
def test_fan_in_uniform_bounds_and_seed():
    w = np.asarray(FanInUniform(seed=3)((400, 50)))
    assert np.abs(w).max() <= 1 / 20 and np.abs(w).max() > 0.9 / 20  # fan_in 400 -> bound 0.05
    np.testing.assert_array_equal(w, np.asarray(FanInUniform(seed=3)((400, 50))))
    b = np.asarray(FanInUniform(fan_in=4, seed=1)((1000,)))
    assert np.abs(b).max() <= 0.5 and np.abs(b).max() > 0.45
    with pytest.raises(ValueError, match="fan_in"):
        FanInUniform()((10,))
    clone = FanInUniform.from_config(FanInUniform(fan_in=7, scale=2.0, seed=5).get_config())
    assert (clone.fan_in, clone.scale, clone.seed) == (7, 2.0, 5)


def test_build_mlp_matches_torch_layout():
    net = build_mlp(10, depth=1, width=64, seed=0)
    assert net.count_params() == 769  # the paper's synthetic network
    k0, b0, k1, b1 = [np.asarray(v) for v in net.weights]
    assert np.abs(k0).max() <= 1 / np.sqrt(10) and np.abs(b0).max() <= 1 / np.sqrt(10)
    assert np.abs(k1).max() <= 1 / 8 and np.abs(b1).max() <= 1 / 8
    assert np.abs(b0).max() > 0.5 / np.sqrt(10)  # biases are not zero
    same = build_mlp(10, depth=1, width=64, seed=0)
    for a, b in zip(net.weights, same.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    deep = build_mlp(576, depth=4, width=128, seed=1)
    assert len(deep.layers) == 5


# ------------------------------------------------------------------ scoring
def test_average_ranks_ties():
    np.testing.assert_array_equal(average_ranks([0.9, 0.8, 0.9]), [1.5, 3, 1.5])
    np.testing.assert_array_equal(average_ranks([0.5, 0.5, 0.5]), [2, 2, 2])


def test_score_table_by_hand():
    acc = np.array([[0.9, 0.8, 0.9], [0.5, 0.6, 0.4], [1.0, 0.7, 0.93]])
    s = score_table(acc, ["a", "b", "c"])
    assert s["n_datasets"] == 3
    # ranks: row1 1.5/3/1.5, row2 2/1/3, row3 1/3/2
    assert s["a"]["friedman_rank"] == pytest.approx(1.5)
    assert s["b"]["friedman_rank"] == pytest.approx(7 / 3)
    assert s["c"]["friedman_rank"] == pytest.approx(6.5 / 3)
    assert s["a"]["mean_accuracy"] == pytest.approx(80.0)
    assert s["c"]["mean_accuracy"] == pytest.approx(100 * 2.23 / 3)
    # P90 thresholds .81/.54/.90; P95 thresholds .855/.57/.95
    assert (s["a"]["p90"], s["b"]["p90"], s["c"]["p90"]) == pytest.approx((200 / 3, 100 / 3, 200 / 3))
    assert (s["a"]["p95"], s["b"]["p95"], s["c"]["p95"]) == pytest.approx((200 / 3, 100 / 3, 100 / 3))
    assert s["a"]["pma"] == pytest.approx(100 * (1 + 0.5 / 0.6 + 1) / 3)
    assert s["b"]["pma"] == pytest.approx(100 * (0.8 / 0.9 + 1 + 0.7) / 3)
    assert s["c"]["pma"] == pytest.approx(100 * (1 + 0.4 / 0.6 + 0.93) / 3)
    with pytest.raises(ValueError, match="n_datasets"):
        score_table(acc, ["a", "b"])
    assert score_table(np.array([[0.5, np.nan]]), ["a", "b"])["n_datasets"] == 0


def test_score_mse_and_accuracy():
    mse, acc = score(np.array([0.5, -2.0, 1.0]), np.array([1.0, -1.0, -1.0]))
    assert mse == pytest.approx((0.25 + 1 + 4) / 3) and acc == pytest.approx(2 / 3)
    mse, acc = score(np.array([[1.0, 0.0], [0.2, 0.1]]), np.array([[1.0, -1.0], [-1.0, 1.0]]))
    assert acc == 0.5


# ------------------------------------------------------------------ summary
def _rows():
    rows = []
    for seed, (k_mse, k_kare) in enumerate([([0.3, 0.1, 0.2], [0.5, 0.2, 0.1]), ([0.4, 0.3, 0.1], [0.4, 0.1, 0.3])]):
        for ridge, m, k in zip([0.01, 1.0, 100.0], k_mse, k_kare):
            rows.append({"method": "kare", "seed": seed, "ridge": ridge, "test_mse": m, "kare": k})
            rows.append({"method": "after_kernel", "seed": seed, "ridge": ridge, "test_mse": m + 0.1, "kare": None})
        rows.append({"method": "dnn", "seed": seed, "ridge": None, "test_mse": 0.5 + seed * 0.1})
    return rows


def test_summarise_by_hand():
    s = R.summarise(_rows())
    # best per seed: 0.1 and 0.1; KARE picks ridge 100 (0.2) for seed 0 and ridge 1 (0.3) for seed 1
    assert s["kare"]["best_test_mse"] == pytest.approx(0.1)
    assert s["kare"]["selected_test_mse"] == pytest.approx(0.25)
    assert s["kare"]["selected_ridges"] == [100.0, 1.0]
    # the mean curve is (0.35, 0.2, 0.15): minimum 0.15 at ridge 100
    assert s["kare"]["mean_curve_min_test_mse"] == pytest.approx(0.15)
    assert s["kare"]["best_ridge_of_mean_curve"] == 100.0
    assert s["dnn"]["test_mse"] == pytest.approx(0.55)
    assert s["after_kernel"]["best_test_mse"] == pytest.approx(0.2)
    assert s["n_seeds"] == 2


def test_run_dir_never_overwritten(tmp_path):
    out = R.prepare_run_dir(tmp_path / "run", {"a": 1}, resume=False)
    R.save_unit(out, "seed_0", {"rows": []})
    with pytest.raises(R.RunDirError, match="--resume"):
        R.prepare_run_dir(out, {"a": 1}, resume=False)
    with pytest.raises(R.RunDirError, match="settings differ.*a"):
        R.prepare_run_dir(out, {"a": 2}, resume=True)
    assert R.prepare_run_dir(out, {"a": 1}, resume=True) == out
    assert R.load_unit(out, "seed_0") == {"rows": []}


def test_write_outputs(tmp_path):
    rows = _rows()
    R.write_rows(tmp_path, rows)
    summary = R.write_summary(tmp_path, rows, {"x": 1})
    assert json.loads((tmp_path / "summary.json").read_text())["settings"] == {"x": 1}
    assert (tmp_path / "results.csv").read_text().count("\n") == len(rows) + 1
    table = R.markdown_table(summary, {"kare": 0.1, "after_kernel": 0.2, "dnn": 0.3}, "t")
    assert "| NTK-KARE | 0.1000 ± 0.0000 | 100 | 0.2500 ± 0.0500" in table
    assert R.plot(tmp_path / "p.png", summary, "t").stat().st_size > 1000


# ------------------------------------------------------------------ one seed
def test_run_seed_tiny_regression():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3)).astype("float32")
    y = np.sin(x[:, 0]).astype("float32")
    cfg = dict(
        depth=1,
        width=8,
        kare_ridge=0.1,
        kare_lr=1.0,
        kare_steps=3,
        dnn_lr=0.1,
        dnn_steps=200,
        ridges=[1e-2, 1.0],
        batch_size=None,
        kernel="summed_output",
    )
    msgs = []
    rows = run_seed(x[:40], y[:40], x[40:], y[40:], 0, cfg, log=msgs.append)
    methods = [r["method"] for r in rows]
    assert methods == ["ntk_init", "ntk_init", "kare", "kare", "dnn", "after_kernel", "after_kernel"]
    assert all(np.isfinite(r["test_mse"]) for r in rows)
    assert rows[2]["kare"] is not None and rows[4]["ridge"] is None
    assert rows[0]["train_seconds"] is None  # the control trains nothing
    assert any("DNN: step 200/200" in m for m in msgs) and any("NTK-KARE: step 3/3" in m for m in msgs)


# ------------------------------------------------------------------ predict_path
@pytest.mark.parametrize("outputs, kernel", [(1, "trace"), (2, "summed_output"), (2, "full")])
def test_predict_path_matches_fit_predict(outputs, kernel):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 4)).astype("float32")
    xt = rng.standard_normal((6, 4)).astype("float32")
    y = rng.standard_normal((30,) if outputs == 1 else (30, outputs))
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "gelu"), keras.layers.Dense(outputs)])
    grid = [1e-4, 1e-2, 1.0, 100.0]
    kp = keras_kare.KernelPredictor(net, kernel=kernel).fit(x, y)
    path = kp.predict_path(xt, grid)
    assert path.shape == (4,) + ((6,) if outputs == 1 else (6, outputs))
    for i, ridge in enumerate(grid):
        ref = keras_kare.KernelPredictor(net, ridge=ridge, kernel=kernel).fit(x, y).predict(xt)
        np.testing.assert_allclose(path[i], ref, rtol=1e-6, atol=1e-8)
    absolute = keras_kare.KernelPredictor(net, relative_ridge=False, kernel=kernel).fit(x, y)
    ref = keras_kare.KernelPredictor(net, ridge=0.5, relative_ridge=False, kernel=kernel).fit(x, y).predict(xt)
    np.testing.assert_allclose(absolute.predict_path(xt, [0.5])[0], ref, rtol=1e-6, atol=1e-8)


def test_predict_path_errors():
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, "gelu"), keras.layers.Dense(1)])
    kp = keras_kare.KernelPredictor(net)
    with pytest.raises(keras_kare.NotFittedError):
        kp.predict_path(np.zeros((2, 2)), [1.0])
    kp.fit(np.random.rand(5, 2), np.random.rand(5))
    with pytest.raises(ValueError, match="ridges"):
        kp.predict_path(np.zeros((2, 2)), [0.0])
    net.layers[0].kernel.assign(net.layers[0].kernel + 1.0)
    with pytest.raises(ValueError, match="weights changed"):
        kp.predict_path(np.zeros((2, 2)), [1.0])


def test_run_seed_control_is_kernel_ridge_with_the_initial_networks_ntk():
    """The ``ntk_init`` rows of a seed: KRR with the NTK of the weights both trainings start from, against explicit
    per-example Jacobians, a float64 KARE by definition and a direct solve."""
    from oracles import kare_oracle, krr_predict_oracle, ntk_oracle

    from keras_kare.initializers import build_mlp

    rng = np.random.default_rng(4)
    x = rng.standard_normal((30, 3)).astype("float32")
    y = np.sin(x[:, 0]) + 0.1 * x[:, 1]
    ridges = [1e-2, 1e-1, 1.0]
    cfg = dict(depth=1, width=8, kare_ridge=0.1, kare_lr=1.0, kare_steps=2, dnn_lr=0.1, dnn_steps=5,
               ridges=ridges, batch_size=None, kernel="summed_output")  # fmt: skip
    rows = [
        r for r in run_seed(x[:20], y[:20], x[20:], y[20:], 7, cfg, log=lambda m: None) if r["method"] == "ntk_init"
    ]
    net = build_mlp(3, 1, 8, 1, seed=7)
    k = ntk_oracle(net, x[:20], kernel="summed_output")
    k = (k + k.T) / 2
    k_te = ntk_oracle(net, x[20:], x[:20], kernel="summed_output")
    for r, z in zip(rows, ridges):
        assert r["ridge"] == z
        assert r["kare"] == pytest.approx(kare_oracle(k, y[:20], z, relative=True), rel=1e-3)
        pred = krr_predict_oracle(k, k_te, y[:20], z * np.trace(k) / 20**2)
        assert r["test_mse"] == pytest.approx(np.mean((pred - y[20:]) ** 2), rel=1e-3)
