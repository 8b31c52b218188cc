"""Classical UCI baselines: tuned on training rows only; KRR-RBF against direct solves."""

import sys

import numpy as np
import pytest

from keras_kare.datasets.uci import encode_targets
from keras_kare.reproduce import baselines as B


def _data(n_tr=30, n_ev=20, d=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(classes, d))
    lab = rng.integers(0, classes, size=n_tr + n_ev)
    lab[:classes] = np.arange(classes)
    x = centres[lab] + rng.normal(size=(len(lab), d))
    return x[:n_tr], lab[:n_tr], x[n_tr:], lab[n_tr:]


def test_krr_rbf_matches_direct_solve_and_brute_force_loo():
    x_tr, l_tr, x_ev, l_ev = _data(n_tr=12, n_ev=7)
    res = B.run_baseline("krr-rbf", x_tr, l_tr, x_ev, l_ev, n_classes=3)
    y = encode_targets(l_tr, 3)
    n = len(x_tr)
    loo_by_refit = []
    for k, p in enumerate(res["grid"]):
        kern = B.rbf_kernel(x_tr, x_tr, p["gamma"])
        lam = p["ridge"] * np.trace(kern) / n**2
        alpha = np.linalg.solve(kern / n + lam * np.eye(n), y)
        pred = B.rbf_kernel(x_ev, x_tr, p["gamma"]) @ alpha / n
        assert res["grid_accuracy"][k] == pytest.approx(np.mean(np.argmax(pred, 1) == l_ev))
        if k in (0, 9, len(res["grid"]) - 1):  # exact leave-one-out by n refits
            errs = []
            for i in range(n):
                keep = np.arange(n) != i
                kk = kern[np.ix_(keep, keep)]
                # refit without row i, same c = nλ in K(K + cI)⁻¹ (the smoother whose LOO identity is exact)
                h_row = kern[i, keep] @ np.linalg.solve(kk / n + lam * np.eye(n - 1), y[keep]) / n
                errs.append(np.mean((y[i] - h_row) ** 2))
            loo_by_refit.append((k, np.mean(errs)))
    for k, loo in loo_by_refit:
        assert -res["selection_score"][k] == pytest.approx(loo, rel=1e-8)
    best = int(np.argmax(res["selection_score"]))
    assert res["params"] == res["grid"][best] and res["accuracy"] == res["grid_accuracy"][best]


def test_krr_rbf_binary_uses_sign():
    x_tr, l_tr, x_ev, l_ev = _data(classes=2)
    res = B.run_baseline("krr-rbf", x_tr, l_tr, x_ev, l_ev)
    p = res["params"]
    kern = B.rbf_kernel(x_tr, x_tr, p["gamma"])
    n = len(x_tr)
    alpha = np.linalg.solve(kern / n + p["ridge"] * np.trace(kern) / n**2 * np.eye(n), np.where(l_tr == 1, 1.0, -1.0))
    pred = B.rbf_kernel(x_ev, x_tr, p["gamma"]) @ alpha / n
    assert res["accuracy"] == pytest.approx(np.mean((pred > 0).astype(int) == l_ev))


@pytest.mark.parametrize("name", ["svc", "rf", "krr-rbf"])
def test_tuning_never_sees_evaluation_rows(name, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.setattr(B, "RF_TREES", 10)
    x_tr, l_tr, x_ev, l_ev = _data()
    fitted = []
    make = B._estimator

    class Spy:
        def __init__(self, est):
            self.est = est

        def fit(self, x, y):
            fitted.append(np.array(x))
            self.est.fit(x, y)
            return self

        def predict(self, x):
            return self.est.predict(x)

    monkeypatch.setattr(B, "_estimator", lambda *a: Spy(make(*a)))
    clean = B.run_baseline(name, x_tr, l_tr, x_ev, l_ev, n_classes=3)
    train_rows = {tuple(r) for r in x_tr}
    assert all(tuple(r) in train_rows for x in fitted for r in x)
    # poisoned evaluation labels: those of another grid point j, so that picking on the evaluation rows
    # would choose j (accuracy 1) over the training-tuned point; the choice must not move
    chosen = clean["grid"].index(clean["params"])
    if name == "krr-rbf":
        preds = B._krr_rbf(x_tr, l_tr, x_ev, 3)[1]
    else:
        preds = [B._fit_predict(name, p, x_tr, l_tr, x_ev, 0) for p in clean["grid"]]
    j = next(j for j, p in enumerate(preds) if np.any(p != preds[chosen]))
    fitted.clear()
    poisoned = B.run_baseline(name, x_tr, l_tr, x_ev, preds[j], n_classes=3)
    assert poisoned["grid_accuracy"][j] == 1.0 > poisoned["grid_accuracy"][chosen]
    assert poisoned["params"] == clean["params"]
    assert poisoned["selection_score"] == clean["selection_score"]
    assert all(tuple(r) in train_rows for x in fitted for r in x)


def test_svc_choice_equals_manual_cross_validation():
    pytest.importorskip("sklearn")
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import SVC

    x_tr, l_tr, x_ev, l_ev = _data()
    res = B.run_baseline("svc", x_tr, l_tr, x_ev, l_ev)
    splits = list(StratifiedKFold(4, shuffle=True, random_state=0).split(x_tr, l_tr))
    manual = [
        np.mean(
            [
                np.mean(SVC(C=p["C"], gamma=p["gamma"]).fit(x_tr[a], l_tr[a]).predict(x_tr[b]) == l_tr[b])
                for a, b in splits
            ]
        )
        for p in res["grid"]
    ]
    assert res["selection_score"] == pytest.approx(manual)
    assert res["params"] == res["grid"][int(np.argmax(manual))]


def test_one_class_training_part_and_tiny_data():
    pytest.importorskip("sklearn")
    x = np.arange(10, dtype=float).reshape(5, 2)
    res = B.run_baseline("svc", x, np.array([0, 0, 0, 0, 1]), x[:2], np.array([0, 1]))
    assert 0 <= res["accuracy"] <= 1
    assert len(B.cv_folds(np.array([0, 0, 0, 1]))) == 4  # a class of one example: plain k-fold


def test_bad_names_and_missing_sklearn(monkeypatch):
    with pytest.raises(ValueError, match="unknown baseline.*'svm'.*svc, rf, krr-rbf"):
        B.check_baselines(["svc", "svm"])
    x_tr, l_tr, x_ev, l_ev = _data()
    with pytest.raises(ValueError, match="equal widths"):
        B.run_baseline("svc", x_tr, l_tr, x_ev[:, :2], l_ev)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"keras-kare\[reproduce\]"):
        B.run_baseline("svc", x_tr, l_tr, x_ev, l_ev)
    assert B.run_baseline("krr-rbf", x_tr, l_tr, x_ev, l_ev)["accuracy"] >= 0  # needs no scikit-learn
