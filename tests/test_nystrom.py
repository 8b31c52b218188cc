"""KernelPredictor(solver="nystrom"): against the exact solve, a direct numpy formula, brute-force GCV."""

import logging

import keras
import numpy as np
import pytest
from oracles import ntk_oracle

from keras_kare import KernelPredictor, memory
from keras_kare import predictor as predictor_module
from keras_kare.memory import GramMemoryError


def f64_net(c=1, d=3, width=10):
    """A float64 network: its Gram has float64 round-off, so the Nyström and exact paths can agree to ~1e-10."""
    return keras.Sequential(
        [
            keras.Input((d,), dtype="float64"),
            keras.layers.Dense(width, "tanh", dtype="float64"),
            keras.layers.Dense(c, dtype="float64"),
        ]
    )


def data(rng, n=24, c=1, d=3):
    x = rng.normal(size=(n, d))
    y = np.sin(2 * x[:, :1]) + 0.3 * x[:, 1:2] * np.arange(1, c + 1) + 0.05 * rng.normal(size=(n, c))
    return x, (y[:, 0] if c == 1 else y), rng.normal(size=(7, d))


def brute_force_nystrom(k_nc, k_cc, y, lam):
    """β = (K_nCᵀK_nC/n + λK_CC)⁺ K_nCᵀY/n and the hat matrix H = K_nC β-map, by explicit pseudo-inverses."""
    n = k_nc.shape[0]
    y = np.asarray(y, np.float64).reshape(n, -1)
    inner = np.linalg.pinv(k_nc.T @ k_nc / n + lam * k_cc, rcond=1e-13, hermitian=True)
    beta = inner @ k_nc.T @ y / n
    hat = k_nc @ inner @ k_nc.T / n
    return beta, hat


@pytest.mark.parametrize("kernel,c", [("trace", 1), ("trace", 3), ("summed_output", 3), ("full", 3)])
def test_all_centres_equal_the_exact_solve(rng, kernel, c):
    x, y, xt = data(rng, n=16, c=c)
    net = f64_net(c, width=48)  # 16·3 Gram rows against ~350 weights: a well-conditioned Gram
    exact = KernelPredictor(net, ridge=1e-2, kernel=kernel, solver="exact", batch_size=10).fit(x, y)
    nys = KernelPredictor(net, ridge=1e-2, kernel=kernel, solver="nystrom", n_centers=16, batch_size=10).fit(x, y)
    assert nys.solver_ == "nystrom" and np.array_equal(nys.centers_idx_, np.arange(16))
    assert nys.effective_ridge_ == pytest.approx(exact.effective_ridge_, rel=1e-12)  # same tr K
    # Nyström goes through K_CC^(-1/2) and K_nCᵀK_nC: float64 round-off amplified by κ(K), not by κ(K/n + λI)
    s = exact.kernel_eigenvalues()
    kappa = s[-1] / s[0]
    assert kappa < 1e7
    tol = 100 * np.finfo(np.float64).eps * kappa
    want = exact.predict(xt)
    np.testing.assert_allclose(nys.predict(xt), want, rtol=tol, atol=tol * np.abs(want).max())
    np.testing.assert_allclose(nys.dual_coef_, exact.dual_coef_, rtol=tol, atol=tol * np.abs(exact.dual_coef_).max())
    grid = [1e-4, 1e-2, 1.0]
    pe, pn = exact.ridge_path(grid), nys.ridge_path(grid)
    # the m-dimensional path gets ‖(I−H)Y‖² as ‖Y‖² minus the explained energy: relative to the residual,
    # the round-off grows by ‖Y‖²/‖(I−H)Y‖² (large near interpolation, at the smallest ridge)
    path_tol = tol * np.mean(exact.y_fit_**2) / pe.train_mse.min()
    np.testing.assert_allclose(pn.kare, pe.kare, rtol=path_tol)
    np.testing.assert_allclose(pn.train_mse, pe.train_mse, rtol=path_tol)
    assert np.all(np.isnan(pn.loo_mse))
    paths = exact.predict_path(xt, grid[1:])  # (at the 1e-4 ridge both solves lose another κ(K/n + λI))
    np.testing.assert_allclose(nys.predict_path(xt, grid[1:]), paths, rtol=tol, atol=tol * np.abs(paths).max())
    np.testing.assert_allclose(nys.kernel_eigenvalues(), s, rtol=tol, atol=tol * s[-1])


@pytest.mark.parametrize("relative", [True, False])
def test_subsampled_centres_match_direct_numpy_formula(rng, relative):
    x, y, xt = data(rng, n=30)
    net = f64_net()
    kp = KernelPredictor(net, ridge=0.05, relative_ridge=relative, solver="nystrom", n_centers=9, seed=3).fit(x, y)
    idx = kp.centers_idx_
    assert idx.shape == (9,) and np.all(np.diff(idx) > 0)
    k_nn = ntk_oracle(net, x)
    k_nc, k_cc = k_nn[:, idx], k_nn[np.ix_(idx, idx)]
    lam = 0.05 * (np.trace(k_nn) / 30**2 if relative else 1.0)
    assert kp.effective_ridge_ == pytest.approx(lam, rel=1e-10)
    beta, _ = brute_force_nystrom(k_nc, k_cc, y, lam)
    want = ntk_oracle(net, xt, x[idx]) @ beta
    np.testing.assert_allclose(kp.predict(xt), want[:, 0], rtol=1e-7, atol=1e-9 * np.abs(want).max())
    # not the exact solve: with 9 of 30 centres the predictions differ visibly
    exact = KernelPredictor(net, ridge=0.05, relative_ridge=relative, solver="exact").fit(x, y)
    assert np.max(np.abs(exact.predict(xt) - kp.predict(xt))) > 1e-6


def test_nystrom_gcv_and_train_mse_match_brute_force(rng):
    x, y, _ = data(rng, n=30, c=2)
    net = f64_net(2)
    kp = KernelPredictor(net, ridge=1.0, relative_ridge=False, solver="nystrom", n_centers=12, seed=0).fit(x, y)
    idx = kp.centers_idx_
    k_nn = ntk_oracle(net, x)
    grid = np.array([1e-3, 3e-2, 1.0])
    path = kp.ridge_path(grid)
    for lam, kare_value, train in zip(grid, path.kare, path.train_mse):
        _, hat = brute_force_nystrom(k_nn[:, idx], k_nn[np.ix_(idx, idx)], y, lam)
        resid = (np.eye(30) - hat) @ y
        gcv = np.mean(resid**2) / (np.trace(np.eye(30) - hat) / 30) ** 2
        assert kare_value == pytest.approx(gcv, rel=1e-7)
        assert train == pytest.approx(np.mean(resid**2), rel=1e-7)


def test_auto_ridge_picks_nystrom_kare_minimum_and_predict_path_matches_refits(rng):
    x, y, xt = data(rng, n=30)
    net = f64_net()
    auto = KernelPredictor(net, ridge="auto", solver="nystrom", n_centers=10, seed=1).fit(x, y)
    path = auto.ridge_path_
    assert auto.ridge_ == pytest.approx(path.ridges[np.nanargmin(path.kare)])
    grid = [1e-3, 1e-1]
    paths = auto.predict_path(xt, grid)
    for r, pred in zip(grid, paths):
        refit = KernelPredictor(net, ridge=r, solver="nystrom", n_centers=10, seed=1).fit(x, y)
        np.testing.assert_allclose(pred, refit.predict(xt), rtol=1e-9, atol=1e-12)


def test_seed_fixes_the_centres(rng):
    x, y, _ = data(rng, n=40)
    net = f64_net()
    a, b, c = (KernelPredictor(net, solver="nystrom", n_centers=8, seed=s).fit(x, y) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.centers_idx_, b.centers_idx_)
    assert not np.array_equal(a.centers_idx_, c.centers_idx_)


def test_solver_centres_and_seed_validation(rng, caplog):
    x, y, _ = data(rng)
    net = f64_net()
    for bad in ("lanczos", "Exact", None, 1):
        with pytest.raises(ValueError, match="solver must be one of"):
            KernelPredictor(net, solver=bad).fit(x, y)
    for bad in (0, -5):
        with pytest.raises(ValueError, match="n_centers must be a positive int"):
            KernelPredictor(net, solver="nystrom", n_centers=bad).fit(x, y)
    for bad in (2.5, "10", True):
        with pytest.raises(TypeError, match="n_centers must be a positive int"):
            KernelPredictor(net, solver="nystrom", n_centers=bad).fit(x, y)
    for bad in (1.5, "0", False):
        with pytest.raises(TypeError, match="seed must be an int"):
            KernelPredictor(net, solver="nystrom", seed=bad).fit(x, y)
    with caplog.at_level(logging.WARNING, logger="keras_kare"):
        kp = KernelPredictor(net, solver="nystrom", n_centers=100, seed=np.int64(2)).fit(x, y)
    assert kp.centers_idx_.shape == (24,)
    assert "n_centers=100 exceeds the 24 training examples" in caplog.text


def test_auto_solver_choice_is_logged(rng, caplog, monkeypatch):
    x, y, _ = data(rng)
    net = f64_net()
    with caplog.at_level(logging.INFO, logger="keras_kare"):
        assert KernelPredictor(net).fit(x, y).solver_ == "exact"
    assert caplog.text.count("chose 'exact'") == 1
    monkeypatch.setattr(predictor_module, "EXACT_MAX_N", 20)
    assert KernelPredictor(net).fit(x, y).solver_ == "nystrom"  # 24 rows > 20
    assert KernelPredictor(net, kernel="full").fit(x, y).solver_ == "nystrom"
    monkeypatch.setattr(predictor_module, "EXACT_MAX_N", 10_000)
    # 24² · 32 B = 18 KB for the exact fit: more than half of a 40 KB machine's usable memory (32 KB)
    monkeypatch.setattr(predictor_module, "available_bytes", lambda: 40_000)
    assert KernelPredictor(net).fit(x, y).solver_ == "nystrom"
    assert KernelPredictor(net, solver="exact").fit(x, y).solver_ == "exact"  # an explicit choice is kept


def test_nystrom_refuses_centres_that_do_not_fit(rng, monkeypatch):
    x, y, _ = data(rng)
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(GramMemoryError, match="Use solver='nystrom'"):
        KernelPredictor(f64_net(), solver="exact").fit(x, y)
    with pytest.raises(GramMemoryError, match="smaller n_centers than 24"):
        KernelPredictor(f64_net(), solver="nystrom").fit(x, y)


def test_nystrom_save_load_round_trip(tmp_path, rng):
    x, y, xt = data(rng, n=30, c=2)
    kp = KernelPredictor(f64_net(2), ridge="auto", solver="nystrom", n_centers=11, seed=4).fit(x, y)
    kp.save(tmp_path / "nys.kkp")
    kp2 = KernelPredictor.load(tmp_path / "nys.kkp")
    assert kp2.get_params(deep=False).keys() == kp.get_params(deep=False).keys()
    assert (kp2.solver, kp2.n_centers, kp2.seed, kp2.solver_) == ("nystrom", 11, 4, "nystrom")
    np.testing.assert_array_equal(kp2.centers_idx_, kp.centers_idx_)
    np.testing.assert_array_equal(kp2.predict(xt), kp.predict(xt))
    np.testing.assert_array_equal(kp2.ridge_path([1e-2, 1.0]).kare, kp.ridge_path([1e-2, 1.0]).kare)
    np.testing.assert_array_equal(kp2.ridge_path_.kare, kp.ridge_path_.kare)
    assert not hasattr(kp2, "train_kernel_")
