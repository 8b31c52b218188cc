"""Classical baselines for the UCI comparison, tuned on training rows only.

- ``svc``: scikit-learn ``SVC`` with an RBF kernel; C and γ by stratified
  k-fold cross-validation (accuracy) on the training rows.
- ``rf``: scikit-learn ``RandomForestClassifier``; ``max_features`` and
  ``min_samples_leaf`` by the same cross-validation.
- ``krr-rbf``: kernel ridge regression with an RBF kernel, in this package's
  KRR convention (``f̂(x) = (1/n) K(x, X)(K/n + λI)⁻¹ Y``, relative ridge
  ``λ = λ̃ · tr(K)/n²``, ±1 / ±1-one-hot targets, sign / argmax), the natural
  "is the learned NTK better than a classical kernel" control; γ and λ̃ by the
  closed-form leave-one-out error on the training rows (one eigendecomposition
  per γ, :func:`keras_kare.ridge.spectral_path`).

γ grids are multiples of ``1/d`` (d features; the features are standardised).
scikit-learn is needed for ``svc`` and ``rf`` only: it is the optional extra
``keras-kare[reproduce]`` and is imported when a baseline runs.

Every baseline reports the accuracy of its training-rows-tuned model on the
evaluation rows, and (for the optimistic "paper" protocol) the accuracy of
every grid point on the evaluation rows.

Example:
    >>> res = run_baseline("krr-rbf", x_tr, labels_tr, x_te, labels_te, n_classes=3)  # doctest: +SKIP
    >>> res["accuracy"], res["params"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from keras_kare.datasets.uci import encode_targets
from keras_kare.decision import class_index
from keras_kare.factor import symmetric_eigh
from keras_kare.ridge import spectral_path

BASELINES = ("svc", "rf", "krr-rbf")
BASELINE_LABELS = {"svc": "SVC (RBF)", "rf": "random forest", "krr-rbf": "KRR (RBF)"}
CV_FOLDS = 4
SVC_C = (0.1, 1.0, 10.0, 100.0)
GAMMA_SCALES = (0.01, 0.1, 1.0, 10.0)  # γ = scale / d
RF_GRID = tuple({"max_features": mf, "min_samples_leaf": leaf} for mf in ("sqrt", 0.5) for leaf in (1, 5))
RF_TREES = 200
KRR_RIDGES = tuple(10.0**k for k in range(-4, 3))


def check_baselines(names) -> list[str]:
    """Validate a list of baseline names; returns it as a list.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    names = list(names or [])
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(
            f"unknown baseline(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(BASELINES)}."
        )
    return names


def _sklearn():
    try:
        import sklearn
    except ImportError as err:
        raise ImportError(
            "the svc and rf baselines need scikit-learn, the optional extra of the reproduction: "
            "pip install 'keras-kare[reproduce]' (or pip install scikit-learn)."
        ) from err
    import sklearn.ensemble
    import sklearn.model_selection
    import sklearn.svm

    return sklearn


def param_grid(name: str, n_features: int) -> list[dict]:
    """The hyper-parameter grid of a baseline (``krr-rbf``: γ × relative ridge λ̃)."""
    gammas = [g / n_features for g in GAMMA_SCALES]
    if name == "svc":
        return [{"C": c, "gamma": g} for c in SVC_C for g in gammas]
    if name == "rf":
        return [dict(p) for p in RF_GRID]
    if name == "krr-rbf":
        return [{"gamma": g, "ridge": r} for g in gammas for r in KRR_RIDGES]
    raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}.")


def _estimator(name: str, params: dict, seed: int):
    """A fresh scikit-learn estimator (tests replace this to watch which rows are fitted)."""
    sk = _sklearn()
    if name == "svc":
        return sk.svm.SVC(kernel="rbf", C=params["C"], gamma=params["gamma"])
    return sk.ensemble.RandomForestClassifier(n_estimators=RF_TREES, random_state=seed, n_jobs=1, **params)


def _fit_predict(name: str, params: dict, x_tr, labels_tr, x_eval, seed: int) -> np.ndarray:
    classes = np.unique(labels_tr)
    if len(classes) == 1:  # a one-class training part (tiny data sets): every prediction is that class
        return np.full(len(x_eval), classes[0])
    return _estimator(name, params, seed).fit(x_tr, labels_tr).predict(x_eval)


def cv_folds(labels: np.ndarray, folds: int = CV_FOLDS, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) row indices of a stratified k-fold split of the training rows.

    ``k = min(folds, smallest class count)``; with a class of one example
    stratification is impossible and a shuffled plain k-fold split
    (``k = min(folds, n)``) is used instead.
    """
    sk = _sklearn()
    labels = np.asarray(labels)
    smallest = np.unique(labels, return_counts=True)[1].min()
    if smallest >= 2:
        splitter = sk.model_selection.StratifiedKFold(
            n_splits=int(min(folds, smallest)), shuffle=True, random_state=seed
        )
    else:
        splitter = sk.model_selection.KFold(n_splits=int(min(folds, len(labels))), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(labels), 1)), labels))


def select_by_cv(name: str, x, labels, folds: int = CV_FOLDS, seed: int = 0) -> tuple[dict, list[float]]:
    """The grid point of ``svc``/``rf`` with the best mean CV accuracy on (x, labels); first on ties.

    Returns:
        ``(params, mean CV accuracy per grid point)``.
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    splits = cv_folds(labels, folds, seed)
    grid = param_grid(name, x.shape[1])
    scores = []
    for params in grid:
        accs = [np.mean(_fit_predict(name, params, x[tr], labels[tr], x[ho], seed) == labels[ho]) for tr, ho in splits]
        scores.append(float(np.mean(accs)))
    return grid[int(np.argmax(scores))], scores


def rbf_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """``exp(−γ ‖a_i − b_j‖²)`` in float64."""
    sq = np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2.0 * a @ b.T
    return np.exp(-gamma * np.clip(sq, 0.0, None))


def _krr_rbf(x_tr, labels_tr, x_eval, n_classes: int):
    """LOO MSE and evaluation predictions for every (γ, λ̃) of the grid, one eigendecomposition per γ."""
    y = encode_targets(labels_tr, n_classes).reshape(len(labels_tr), -1)
    n = len(x_tr)
    loo, labels_eval = [], []
    for g in sorted({p["gamma"] for p in param_grid("krr-rbf", x_tr.shape[1])}):
        k = rbf_kernel(x_tr, x_tr, g)
        k = (k + k.T) / 2
        s, v = symmetric_eigh(k)
        lambdas = np.asarray(KRR_RIDGES) * np.trace(k) / n**2
        loo.extend(spectral_path(s, v, y, lambdas)[1])
        cross = rbf_kernel(x_eval, x_tr, g) @ v / n  # (m, n) in the eigenbasis
        proj = v.T @ y
        for lam in lambdas:
            pred = cross @ (proj / (s / n + lam)[:, None])
            labels_eval.append(class_index(pred if n_classes > 2 else pred[:, 0]))
    return np.array(loo), labels_eval


def run_baseline(
    name: str,
    x_tr,
    labels_tr,
    x_eval,
    labels_eval,
    n_classes: Optional[int] = None,
    folds: int = CV_FOLDS,
    seed: int = 0,
) -> dict:
    """Tune ``name`` on the training rows, then score it on the evaluation rows.

    Args:
        name: one of :data:`BASELINES`.
        x_tr, labels_tr: training features (n, d) and integer classes 0..C−1.
        x_eval, labels_eval: evaluation rows; used only to score, never to tune.
        n_classes: number of classes (default: ``max label + 1`` over both parts).
        folds: CV folds for ``svc``/``rf``.
        seed: CV shuffling and forest seed.

    Returns:
        ``{"params", "accuracy", "grid", "grid_accuracy", "selection_score"}``:
        ``accuracy`` of the training-tuned model on the evaluation rows,
        ``grid_accuracy`` of every grid point there (for the optimistic paper
        protocol), ``selection_score`` the training-only criterion per grid
        point (mean CV accuracy, or minus the LOO MSE for ``krr-rbf``).
    """
    check_baselines([name])
    x_tr = np.asarray(x_tr, dtype=np.float64)
    x_eval = np.asarray(x_eval, dtype=np.float64)
    labels_tr, labels_eval = np.asarray(labels_tr), np.asarray(labels_eval)
    if x_tr.ndim != 2 or x_eval.ndim != 2 or x_tr.shape[1] != x_eval.shape[1]:
        raise ValueError(f"features must be 2-D with equal widths; received {x_tr.shape} and {x_eval.shape}.")
    if len(labels_tr) != len(x_tr) or len(labels_eval) != len(x_eval):
        raise ValueError(
            f"one label per row expected; received {len(labels_tr)} for {len(x_tr)} training rows and "
            f"{len(labels_eval)} for {len(x_eval)} evaluation rows."
        )
    if n_classes is None:
        n_classes = int(max(labels_tr.max(), labels_eval.max())) + 1
    n_classes = max(int(n_classes), 2)
    grid = param_grid(name, x_tr.shape[1])
    if name == "krr-rbf":
        loo, preds = _krr_rbf(x_tr, labels_tr, x_eval, n_classes)
        if not np.isfinite(loo).any():
            raise FloatingPointError("krr-rbf: the leave-one-out error is not finite for any (γ, λ̃) of the grid.")
        score = -np.where(np.isfinite(loo), loo, np.inf)
        best = int(np.argmax(score))
        grid_acc = [float(np.mean(p == labels_eval)) for p in preds]
        return {
            "params": grid[best],
            "accuracy": grid_acc[best],
            "grid": grid,
            "grid_accuracy": grid_acc,
            "selection_score": score.tolist(),
        }
    params, cv = select_by_cv(name, x_tr, labels_tr, folds, seed)
    grid_acc = [float(np.mean(_fit_predict(name, p, x_tr, labels_tr, x_eval, seed) == labels_eval)) for p in grid]
    return {
        "params": params,
        "accuracy": grid_acc[grid.index(params)],
        "grid": grid,
        "grid_accuracy": grid_acc,
        "selection_score": cv,
    }
