"""KernelPredictor's scikit-learn estimator contract (duck-typed; checked with scikit-learn when installed)."""

import keras
import numpy as np
import pytest

from keras_kare import KernelPredictor


def make_net(d=3):
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(12, "tanh"), keras.layers.Dense(1)])


@pytest.fixture
def problem(rng):
    x = rng.normal(size=(40, 3)).astype("float32")
    y = np.sin(2 * x[:, 0]) + 0.1 * rng.normal(size=40)
    return x, y


def test_get_set_params_follow_the_signature():
    net = make_net()
    kp = KernelPredictor(net, ridge=0.5, solver="nystrom", n_centers=8)
    params = kp.get_params()
    assert list(params) == [
        "model",
        "ridge",
        "relative_ridge",
        "kernel",
        "batch_size",
        "implementation",
        "solver",
        "n_centers",
        "seed",
        "verbose",
    ]
    assert params["model"] is net and params["ridge"] == 0.5 and params["n_centers"] == 8
    assert kp.set_params(ridge="auto", seed=3) is kp
    assert (kp.ridge, kp.seed) == ("auto", 3)
    with pytest.raises(ValueError, match="invalid parameter 'alpha'"):
        kp.set_params(alpha=1.0)


def test_repr_shows_non_default_parameters():
    net = make_net()
    net.name = "tiny"
    assert repr(KernelPredictor(net)) == "KernelPredictor(model=<Sequential tiny>)"
    assert repr(KernelPredictor(net, ridge="auto", solver="nystrom")) == (
        "KernelPredictor(model=<Sequential tiny>, ridge='auto', solver='nystrom')"
    )


def test_score_is_r2_like_kernel_ridge(problem):
    x, y = problem
    kp = KernelPredictor(make_net(), ridge=1e-2).fit(x, y)
    pred = kp.predict(x)
    want = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert kp.score(x, y) == pytest.approx(want, rel=1e-12)
    y2 = np.stack([y, 2 * y + 1], axis=1)
    kp2 = KernelPredictor(make_net_two(), ridge=1e-2).fit(x, y2)
    p2 = kp2.predict(x)
    per_column = [1 - np.sum((y2[:, j] - p2[:, j]) ** 2) / np.sum((y2[:, j] - y2[:, j].mean()) ** 2) for j in range(2)]
    assert kp2.score(x, y2) == pytest.approx(np.mean(per_column), rel=1e-12)
    with pytest.raises(ValueError, match="sample_weight"):
        kp.score(x, y, sample_weight=np.ones(3))


def make_net_two():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(12, "tanh"), keras.layers.Dense(2)])


def test_score_matches_sklearn_r2(problem):
    metrics = pytest.importorskip("sklearn.metrics")
    x, y = problem
    kp = KernelPredictor(make_net(), ridge=1e-1).fit(x, y)
    w = np.linspace(0.5, 2.0, len(y))
    assert kp.score(x, y) == pytest.approx(metrics.r2_score(y, kp.predict(x)), rel=1e-12)
    assert kp.score(x, y, sample_weight=w) == pytest.approx(
        metrics.r2_score(y, kp.predict(x), sample_weight=w), rel=1e-12
    )


def test_clone_shares_the_model_and_drops_fitted_state(problem):
    base = pytest.importorskip("sklearn.base")
    x, y = problem
    kp = KernelPredictor(make_net(), ridge=0.3, solver="exact").fit(x, y)
    twin = base.clone(kp)
    assert twin is not kp and twin.model is kp.model
    assert twin.get_params() == kp.get_params()
    assert not hasattr(twin, "dual_coef_")


def test_grid_search_over_ridge(problem):
    model_selection = pytest.importorskip("sklearn.model_selection")
    x, y = problem
    search = model_selection.GridSearchCV(
        KernelPredictor(make_net(), solver="exact", verbose=0), {"ridge": [1e-3, 1e-1, 10.0]}, cv=3
    )
    search.fit(x, y)
    assert search.best_params_["ridge"] in (1e-3, 1e-1, 10.0)
    assert search.best_estimator_.predict(x[:5]).shape == (5,)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
