import logging

import keras
import numpy as np
import pytest
from oracles import kare_oracle, krr_predict_oracle, loo_oracle, ntk_oracle

import keras_kare
from keras_kare import KernelPredictor, NotFittedError
from keras_kare.risk import DegenerateKernelError


def make_net(d=3, c=1):
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(12, "gelu"), keras.layers.Dense(c)])


@pytest.fixture
def problem(rng):
    x = rng.normal(size=(24, 3)).astype("float32")
    y = np.sin(2 * x[:, 0]) + 0.1 * rng.normal(size=24)
    xt = rng.normal(size=(9, 3)).astype("float32")
    return x, y, xt


@pytest.mark.parametrize("relative", [True, False])
def test_predict_matches_direct_solve(problem, relative):
    x, y, xt = problem
    net = make_net()
    kp = KernelPredictor(net, ridge=1e-2, relative_ridge=relative, batch_size=7).fit(x, y)
    k = ntk_oracle(net, x)
    kx = ntk_oracle(net, xt, x)
    lam = 1e-2 * (np.trace(k) / len(x) ** 2 if relative else 1.0)
    want = krr_predict_oracle(k, kx, y, lam)
    got = kp.predict(xt)
    assert got.shape == (9,)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
    assert kp.effective_ridge_ == pytest.approx(lam, rel=1e-5)
    assert kp.dual_coef_.shape == (24, 1)


def test_multi_output_targets_and_kare_model_unwrapped(rng):
    x = rng.normal(size=(15, 3)).astype("float32")
    y = rng.normal(size=(15, 2))
    net = make_net(c=2)
    model = keras_kare.KAREModel(net)
    kp = KernelPredictor(model, ridge=0.1).fit(x, y)
    k = ntk_oracle(net, x)
    want = krr_predict_oracle(k, ntk_oracle(net, x[:4], x), y, 0.1 * np.trace(k) / 15**2)
    np.testing.assert_allclose(kp.predict(x[:4]), want, rtol=1e-3, atol=1e-4)


def test_ridge_path_kare_and_loo_match_brute_force(problem):
    x, y, _ = problem
    net = make_net()
    kp = KernelPredictor(net, ridge=1.0, relative_ridge=False).fit(x, y)
    k = ntk_oracle(net, x)
    grid = np.array([1e-3, 1e-1, 10.0])
    path = kp.ridge_path(grid)
    np.testing.assert_array_equal(path.ridges, grid)
    for lam, kv, loo in zip(grid, path.kare, path.loo_mse):
        assert kv == pytest.approx(kare_oracle(k, y, lam), rel=1e-3)
        assert loo == pytest.approx(loo_oracle(k, y, lam), rel=1e-3)


def test_path_below_the_spectrum_is_nan_with_one_warning(rng, caplog):
    """Ridges at or below −(most negative eigenvalue)/n give NaN (K/n + λI is indefinite), reported in one line."""
    from keras_kare.ridge import spectral_path

    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    s = np.array([-6e-6, 1e-3, 0.1, 1.0, 2.0, 6.0])  # the Gram's eigenvalues; −1e-6 after dividing by n = 6
    y = rng.normal(size=(6, 1))
    lambdas = np.array([1e-8, 1e-7, 1e-6, 1e-2, 1.0])
    with caplog.at_level("WARNING", logger="keras_kare"):
        kare, loo, train = spectral_path(s, q, y, lambdas)
    assert np.isnan(kare[:3]).all() and np.isnan(loo[:3]).all() and np.isnan(train[:3]).all()
    k = (q * s) @ q.T
    for j in (3, 4):
        assert kare[j] == pytest.approx(kare_oracle(k, y, lambdas[j]), rel=1e-10)
        assert loo[j] == pytest.approx(loo_oracle(k, y, lambdas[j]), rel=1e-10)
    (record,) = [r for r in caplog.records if "not positive definite" in r.getMessage()]
    assert "3 of 5 ridges" in record.getMessage() and record.levelname == "WARNING"
    caplog.clear()
    with caplog.at_level("INFO", logger="keras_kare"):
        spectral_path(s, q, y, lambdas, below_level=logging.INFO)  # an automatic grid: expected, not a warning
    assert [r.levelname for r in caplog.records if "not positive definite" in r.getMessage()] == ["INFO"]


def test_auto_ridge_grid_reports_round_off_at_info(problem, monkeypatch):
    """The default grid reaches λ̃ = 1e-6, below a float32 Gram's round-off by design: the path's line about
    such ridges is INFO for it (fit with ridge="auto", ridge_path()), a WARNING for a grid the user gave."""
    x, y, _ = problem
    kp = KernelPredictor(make_net(), ridge="auto", kernel="trace").fit(x, y)
    levels, path = [], type(kp._system).path

    def spy(self, lambdas, verbose=0, below_level=logging.WARNING):
        levels.append(below_level)
        return path(self, lambdas, verbose, below_level)

    monkeypatch.setattr(type(kp._system), "path", spy)
    kp.fit(x, y)
    kp.ridge_path()
    kp.ridge_path([1e-3, 1.0])
    assert levels == [logging.INFO, logging.INFO, logging.WARNING]


def test_relative_path_and_auto_picks_grid_minimum(problem):
    x, y, xt = problem
    net = make_net()
    auto = KernelPredictor(net, ridge="auto").fit(x, y)
    path = auto.ridge_path()
    assert len(path.ridges) == 37 and path.ridges[0] == pytest.approx(1e-6) and path.ridges[-1] == pytest.approx(1e3)
    assert auto.ridge_ == pytest.approx(path.ridges[np.argmin(path.kare)])
    manual = KernelPredictor(net, ridge=auto.ridge_).fit(x, y)
    np.testing.assert_allclose(auto.predict(xt), manual.predict(xt), rtol=1e-6)
    # the relative grid is tied to the absolute one through tr(K)/n²
    k = ntk_oracle(net, x)
    np.testing.assert_allclose(path.effective_ridges, path.ridges * np.trace(k) / 24**2, rtol=1e-4)


def test_full_kernel_predictor(rng):
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.normal(size=(8, 2))
    net = make_net(c=2)
    kp = KernelPredictor(net, ridge=0.5, relative_ridge=False, kernel="full").fit(x, y)
    big = ntk_oracle(net, x, kernel="full").transpose(0, 2, 1, 3).reshape(16, 16)
    bigx = ntk_oracle(net, x[:3], x, kernel="full").transpose(0, 2, 1, 3).reshape(6, 16)
    want = krr_predict_oracle(big, bigx, y.reshape(-1), 0.5).reshape(3, 2)
    np.testing.assert_allclose(kp.predict(x[:3]), want, rtol=1e-3, atol=1e-4)


def test_fit_returns_self_inputs_untouched_and_sklearn_attrs(problem):
    x, y, _ = problem
    x0, y0 = x.copy(), y.copy()
    kp = KernelPredictor(make_net())
    assert not hasattr(kp, "dual_coef_")
    assert kp.fit(x, y) is kp
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    x[0, 0] = 100.0  # later changes to the caller's array do not leak into the fitted state
    assert kp.X_fit_[0, 0] == x0[0, 0]


def test_integer_labels_are_cast(problem):
    x, _, xt = problem
    y = np.where(x[:, 0] > 0, 1, -1)
    kp = KernelPredictor(make_net(), ridge=1e-3).fit(x, y)
    pred = kp.predict(x)
    assert pred.dtype == np.float64
    assert np.mean(np.sign(pred) == y) > 0.9  # tiny ridge: near-interpolation of the training labels


def test_weights_changed_since_fit_is_refused(problem):
    x, y, xt = problem
    net = make_net()
    kp = KernelPredictor(net).fit(x, y)
    net.layers[0].kernel.assign(net.layers[0].kernel * 2.0)
    with pytest.raises(ValueError, match="weights changed since fit"):
        kp.predict(xt)


def test_bad_inputs(problem):
    x, y, xt = problem
    net = make_net()
    with pytest.raises(NotFittedError, match="not fitted"):
        KernelPredictor(net).predict(xt)
    with pytest.raises(NotFittedError):
        KernelPredictor(net).ridge_path([1.0])
    with pytest.raises(ValueError, match="23 rows but the inputs have 24"):
        KernelPredictor(net).fit(x, y[:-1])
    # scikit-learn contract: __init__ stores, fit validates (before any Gram is computed)
    for bad in (0.0, -1.0, float("nan")):
        kp = KernelPredictor(net, ridge=bad)
        assert kp.ridge is bad or np.isnan(kp.ridge)
        with pytest.raises(ValueError, match="ridge"):
            kp.fit(x, y)
    with pytest.raises(ValueError, match="'auto'"):
        KernelPredictor(net, ridge="best").fit(x, y)
    with pytest.raises(ValueError, match="kernel must be one of"):
        KernelPredictor(net, kernel="diag").fit(x, y)
    with pytest.raises(ValueError, match="batch_size"):
        KernelPredictor(net, batch_size=-3).fit(x, y)
    with pytest.raises(TypeError, match="relative_ridge must be a bool"):
        KernelPredictor(net, relative_ridge=1).fit(x, y)
    with pytest.raises(TypeError):
        KernelPredictor(net, 1e-3)  # keyword-only after the model
    xn = x.copy()
    xn[3, 1] = np.inf
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        KernelPredictor(net).fit(xn, y)
    yn = y.copy()
    yn[2] = np.nan
    with pytest.raises(ValueError, match="y contain NaN"):
        KernelPredictor(net).fit(x, yn)
    kp = KernelPredictor(net).fit(x, y)
    with pytest.raises(ValueError, match="ridges must be"):
        kp.ridge_path([1.0, -2.0])
    frozen = make_net()
    frozen(x)
    frozen.trainable = False
    with pytest.raises(ValueError, match="no trainable weights"):
        KernelPredictor(frozen).fit(x, y)


# ---------------------------------------------------------------- the predictor knows its network
def bn_net():
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("gelu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1),
        ]
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ("trainable", "which of the model's weights are trainable changed"),
        ("moving_mean", "weights changed since fit"),
        ("weights", "weights changed since fit"),
        ("activation", "layers changed since fit"),
    ],
)
def test_any_change_of_the_ntk_is_refused(problem, tmp_path, change, message):
    x, y, xt = problem
    net = bn_net()
    kp = KernelPredictor(net, ridge=1e-2).fit(x, y)
    before = kp.predict(xt)
    net.layers[4](np.ones((4, 8), "float32"), training=True)  # dropout draws seeds: not a change of the NTK
    np.testing.assert_array_equal(kp.predict(xt), before)
    dense, bn = net.layers[0], net.layers[1]
    if change == "trainable":
        dense.trainable = False  # the same weights, but the NTK no longer sums over this layer's
    elif change == "moving_mean":
        bn.moving_mean.assign(bn.moving_mean + 0.5)  # non-trainable state: changes the features, not the weights
    elif change == "weights":
        net.layers[-1].bias.assign(net.layers[-1].bias + 1.0)
    else:
        net.layers[2].activation = keras.activations.tanh
    with pytest.raises(ValueError, match=message):
        kp.predict(xt)
    with pytest.raises(ValueError, match=message):
        kp.predict_path(xt, [1e-2])
    with pytest.raises(ValueError, match=message):
        kp.save(tmp_path / "p.kkp")
    assert not list(tmp_path.iterdir())
    refit = KernelPredictor(net, ridge=1e-2).fit(x, y)  # refitting is the documented way on
    np.testing.assert_array_equal(kp.fit(x, y).predict(xt), refit.predict(xt))


def test_fingerprint_sees_one_ulp_in_one_weight():
    from keras_kare.fingerprint import fingerprint_changes, network_fingerprint

    net = make_net()
    net.build((None, 3))
    before = network_fingerprint(net)
    assert fingerprint_changes(before, network_fingerprint(net)) == []
    kernel = net.layers[1].kernel.numpy()
    kernel[3, 0] = np.nextafter(kernel[3, 0], np.float32(np.inf))
    net.layers[1].kernel.assign(kernel)
    assert fingerprint_changes(before, network_fingerprint(net)) == ["weights"]
    kernel[3, 0] = np.nextafter(kernel[3, 0], np.float32(-np.inf))
    net.layers[1].kernel.assign(kernel)
    assert fingerprint_changes(before, network_fingerprint(net)) == []  # the snapshot is a copy, not a view


# ---------------------------------------------------------------- degenerate kernels
def zero_net(c=1):
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(6, "tanh", use_bias=False, kernel_initializer="zeros"),
            keras.layers.Dense(c, use_bias=False, kernel_initializer="zeros"),
        ]
    )


@pytest.mark.parametrize("ridge, solver", [(1e-3, "exact"), ("auto", "exact"), (1e-3, "nystrom"), ("auto", "nystrom")])
def test_zero_ntk_is_one_clear_error(problem, ridge, solver, recwarn):
    x, y, _ = problem
    kp = KernelPredictor(zero_net(), ridge=ridge, solver=solver)
    with pytest.raises(DegenerateKernelError, match=r"training inputs is zero: its trace is 0\.000e\+00 over 24 rows"):
        kp.fit(x, y)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]  # raised before any ridge is tried
    assert not hasattr(kp, "dual_coef_")


def test_zero_ntk_with_a_fixed_absolute_ridge_predicts_zero(problem):
    x, y, xt = problem
    kp = KernelPredictor(zero_net(), ridge=0.1, relative_ridge=False, solver="exact").fit(x, y)
    np.testing.assert_array_equal(kp.predict(xt), np.zeros(len(xt)))  # K = 0: α = Y/λ, K(x, X) α = 0


def test_predict_path_gives_nan_only_where_the_ridge_is_undefined(caplog):
    """A grid reaching below the Gram's most negative eigenvalue/n: NaN rows there, the exact solve elsewhere."""
    from keras_kare.ridge import ExactSystem

    rng = np.random.default_rng(3)
    vecs, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    k = vecs @ np.diag([-0.3, 1.0, 2.0, 3.0]) @ vecs.T  # a float32 Gram's round-off can make K slightly indefinite
    k = 0.5 * (k + k.T)
    y = rng.normal(size=(4, 2))
    k_x = rng.normal(size=(3, 4))
    lambdas = np.array([0.05, 0.5, 1.0])  # eigenvalues of K/n: -0.075, 0.25, 0.5, 0.75
    with caplog.at_level(logging.WARNING, logger="keras_kare"):
        preds = ExactSystem(k, y).predict_path(k_x, lambdas)
    assert preds.shape == (3, 3, 2)
    assert np.isnan(preds[0]).all()
    for p, lam in zip(preds[1:], lambdas[1:]):
        oracle = k_x @ np.linalg.solve(k / 4 + lam * np.eye(4), y) / 4
        np.testing.assert_allclose(p, oracle, rtol=1e-10)
    assert "1 of 3 ridges" in caplog.text and "predictions are NaN" in caplog.text
