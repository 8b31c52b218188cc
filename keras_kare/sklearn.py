"""scikit-learn estimators: an MLP whose NTK is trained on KARE, predicting by kernel ridge regression.

:class:`KARERegressor` and :class:`KAREClassifier` build a GELU MLP
(``hidden_layer_sizes``, ``activation``, as ``MLPRegressor``), train its
empirical NTK to minimise KARE with :class:`keras_kare.KAREModel` and plain SGD
(Schwab, Kelly, Malamud, Xu 2025), then fit a :class:`keras_kare.KernelPredictor`
on the learned NTK with the ridge chosen on the training data by KARE (= GCV)
or given. They follow scikit-learn's estimator contract (``BaseEstimator``
parameters, ``clone``, ``Pipeline``, ``GridSearchCV``)::

    pip install 'keras-kare[sklearn]'

Importing this module imports scikit-learn; ``import keras_kare`` does not.

Example:
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), KAREClassifier(random_state=0)).fit(X, y)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import threading
import warnings
from numbers import Integral, Real

from keras_kare._optional import MissingExtraError

try:
    import sklearn  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised by monkeypatching the import
    if err.name is not None and err.name.split(".")[0] != "sklearn":
        raise
    raise MissingExtraError(
        "keras_kare.sklearn needs scikit-learn, which is not installed: "
        "pip install 'keras-kare[sklearn]' (or pip install scikit-learn)."
    ) from err

import keras
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from keras_kare.callbacks.early_stopping import KernelRidgeEarlyStopping
from keras_kare.datasets.uci import encode_targets
from keras_kare.decision import class_index
from keras_kare.in_memory import epoch_dataset
from keras_kare.initializers import torch_dense
from keras_kare.model import KAREModel
from keras_kare.networks import unwrap_network
from keras_kare.predictor import KernelPredictor
from keras_kare.trainer_pool import TrainerPool

FULL_BATCH_MAX_N = 512
"""``batch_size=None``: full-batch KARE up to this many training rows, mini-batches of :data:`MINI_BATCH` above."""
MINI_BATCH = 256
EXACT_MAX_N = 1500
"""Above this many rows the final kernel regression is Nyström KRR on :data:`N_CENTERS` centres."""
N_CENTERS = 1000
EVAL_EVERY_STEPS = 10
"""``early_stopping``: the held-out kernel-ridge error is evaluated about every this many KARE steps."""
EVAL_MAX_ROWS = 500
"""``early_stopping``: the evaluation's kernel regression uses at most this many (seeded) training rows."""
KERNEL = "summed_output"  # the paper's NTK of multi-output networks (gradient of the summed outputs)

_TRAINERS = TrainerPool()  # compiled KAREModels, one per architecture/batch layout: fits reuse their traces
_TRAIN_LOCK = threading.Lock()  # a pooled trainer trains one estimator at a time


def _seeds(random_state, count: int) -> list:
    rng = check_random_state(random_state)
    return [int(s) for s in rng.randint(0, 2**31 - 1, size=count)]


def build_network(input_dim: int, hidden_layer_sizes, activation: str, outputs: int, seed: int) -> keras.Sequential:
    """The MLP: ``activation`` hidden layers of ``hidden_layer_sizes``, linear output; PyTorch-style init (seeded)."""
    layers = [keras.Input((input_dim,))]
    fan_in = input_dim
    for i, width in enumerate(hidden_layer_sizes):
        layers.append(torch_dense(int(width), fan_in, activation, 1000 * seed + i, name=f"hidden_{i}"))
        fan_in = int(width)
    layers.append(torch_dense(outputs, fan_in, None, 1000 * seed + len(hidden_layer_sizes), name="output"))
    return keras.Sequential(layers, name="kare_mlp")


def _compiled_trainer(network, kare_ridge: float, learning_rate: float):
    model = KAREModel(keras.models.clone_model(network), ridge=kare_ridge, kernel=KERNEL)
    model.base_model.set_weights(network.get_weights())
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate))
    return {"model": model}


class _BaseKARE(BaseEstimator):
    """Shared fit/predict of :class:`KARERegressor` and :class:`KAREClassifier` (targets coded by the subclass)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like"],
        "activation": [str],
        "kare_ridge": [Interval(Real, 0, None, closed="neither")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_steps": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left"), None],
        "ridge": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "early_stopping": ["boolean"],
        "include_initial": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(128,),
        activation="gelu",
        kare_ridge=0.1,
        learning_rate=1.0,
        max_steps=100,
        batch_size=None,
        ridge="auto",
        early_stopping=False,
        include_initial=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.kare_ridge = kare_ridge
        self.learning_rate = learning_rate
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.ridge = ridge
        self.early_stopping = early_stopping
        self.include_initial = include_initial
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check_hidden(self) -> tuple:
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, Integral) or s < 1 for s in sizes):
            raise ValueError(
                "hidden_layer_sizes must be a non-empty sequence of positive ints, "
                f"received {self.hidden_layer_sizes!r}."
            )
        try:
            keras.activations.get(self.activation)
        except (ValueError, TypeError) as err:
            raise ValueError(f"activation must name a Keras activation, received {self.activation!r}.") from err
        return sizes

    def _batch(self, n: int) -> int:
        """Examples per KARE step: the rule of ``batch_size`` (never leaving a last batch of one example)."""
        if self.batch_size is None:
            bs = n if n <= FULL_BATCH_MAX_N else MINI_BATCH
        else:
            bs = min(int(self.batch_size), n)
        return bs + 1 if n % bs == 1 else bs

    # ------------------------------------------------------------------ fit
    def _fit(self, X, Y, stratify=None):
        """Train the network's NTK on KARE (rows X, coded targets Y (n, C)), then fit the kernel predictor."""
        sizes = self._check_hidden()
        n, d = X.shape
        if n < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples, received n_samples={n}.")
        init_seed, shuffle_seed, split_seed, centre_seed = _seeds(self.random_state, 4)
        if self.early_stopping:
            n_val = max(1, int(round(self.validation_fraction * n)))
            if n - n_val < 2:
                raise ValueError(
                    f"early_stopping needs at least 2 training rows besides the validation_fraction="
                    f"{self.validation_fraction} held out; received {n} rows."
                )
            idx_fit, idx_val = _split(n, n_val, split_seed, stratify)
        else:
            idx_fit, idx_val = np.arange(n), None
        network = build_network(d, sizes, self.activation, Y.shape[1], init_seed)
        self.n_iter_, self.best_step_ = 0, None
        self.loss_curve_ = []
        if self.max_steps > 0:
            self._train(network, X, Y, idx_fit, idx_val, shuffle_seed)
        self.model_ = network
        solver = "exact" if n <= EXACT_MAX_N else "nystrom"
        self.predictor_ = KernelPredictor(
            network,
            ridge=self.ridge,
            relative_ridge=True,
            kernel=KERNEL,
            solver=solver,
            n_centers=None if solver == "exact" else N_CENTERS,
            seed=centre_seed,
            verbose=0,
        ).fit(X, Y)
        return self

    def _train(self, network, X, Y, idx_fit, idx_val, shuffle_seed):
        x_fit, y_fit = X[idx_fit], Y[idx_fit]
        n_fit = len(idx_fit)
        bs = self._batch(n_fit)
        per_pass = math.ceil(n_fit / bs)
        epochs = max(1, math.ceil(self.max_steps / per_pass))
        callbacks = []
        stop = None
        if idx_val is not None:
            every = max(1, round(EVAL_EVERY_STEPS / per_pass))
            epochs = every * math.ceil(epochs / every)  # the last epoch is evaluated too
            stop = KernelRidgeEarlyStopping(
                x_fit,
                y_fit,
                (X[idx_val], Y[idx_val]),
                patience=int(self.n_iter_no_change),
                every_n_epochs=every,
                n_train=min(n_fit, EVAL_MAX_ROWS) if n_fit > EVAL_MAX_ROWS else None,
                seed=shuffle_seed,
                ridge=self.ridge,
                kernel=KERNEL,
                include_initial=bool(self.include_initial),
                verbose=int(bool(self.verbose)),
            )
            callbacks.append(stop)
        dataset, steps = epoch_dataset(
            x_fit, y_fit, batch_size=bs, shuffle=bs < n_fit, seed=shuffle_seed, first_epoch=0
        )
        key = ("keras_kare.sklearn", _architecture(network), float(self.kare_ridge), bs)
        with _TRAIN_LOCK:
            model = _TRAINERS.get(
                key,
                network,
                lambda net: _compiled_trainer(net, self.kare_ridge, self.learning_rate),
                self.learning_rate,
            )["model"]
            history = model.fit(
                dataset,
                steps_per_epoch=steps,
                epochs=epochs,
                shuffle=False,
                verbose=int(bool(self.verbose)),
                callbacks=callbacks,
            )
            network.set_weights(unwrap_network(model).get_weights())
            reason = getattr(model, "stop_reason_", None)
        kare = history.history.get("kare", [])
        self.loss_curve_ = [float(v) for v in kare]
        self.n_iter_ = len(kare) * per_pass
        if stop is not None:
            self.best_step_ = (stop.best_epoch + 1) * per_pass
            self.validation_scores_ = [res["mse"] for _, res in stop.history]
        if reason:
            warnings.warn(
                f"KARE training stopped early: {reason} The weights of the last finite step are used; "
                "a smaller learning_rate avoids this.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _scores(self, X):
        check_is_fitted(self, "predictor_")
        X = validate_data(self, X, reset=False, dtype=np.float32)
        return np.asarray(self.predictor_.predict(X), dtype=np.float64).reshape(X.shape[0], -1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


def _architecture(network) -> tuple:
    return tuple(
        (type(layer).__name__, str(layer.get_config().get("units")), str(layer.get_config().get("activation")))
        for layer in network.layers
    ) + (tuple(network.input_shape),)


def _split(n: int, n_val: int, seed: int, stratify):
    """Indices (fit, validation) of a seeded hold-out split (stratified when every class has two rows)."""
    idx = np.arange(n)
    if stratify is not None:
        counts = np.bincount(stratify)
        if counts.min() < 2 or n_val < len(counts) or n - n_val < len(counts):
            stratify = None
    fit, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(fit), np.sort(val)


_DOC_PARAMS = """
    Args:
        hidden_layer_sizes: widths of the hidden layers (default one layer of
            128, the middle of the paper's UCI grid).
        activation: a Keras activation name for the hidden layers (``"gelu"``,
            the paper's).
        kare_ridge: KARE's ridge z > 0 during training (absolute, the paper's 0.1).
        learning_rate: SGD learning rate of KARE training (1.0, from the
            paper's depth-1 grid 100…0.1: the best of 1, 10, 100 on the
            bundled breast_cancer/iris/wine/diabetes sets with standardized
            features; 10 and 100 overfit diabetes).
        max_steps: KARE steps (SGD updates), rounded up to whole passes over
            the training rows; 0 keeps the initial network (its NTK at
            initialisation).
        batch_size: rows per KARE step. ``None``: full batch up to
            :data:`FULL_BATCH_MAX_N` (512) rows, mini-batches of
            :data:`MINI_BATCH` (256) above, which keeps a step's cost bounded
            in n (see Cost). A last batch of one row is avoided by adding it to
            the previous batch size.
        ridge: ridge of the final kernel ridge regression, relative to
            tr K/n (:class:`keras_kare.KernelPredictor` with
            ``relative_ridge=True``): ``"auto"`` picks the grid value with the
            smallest KARE (= GCV) on the training rows.
        early_stopping: hold out ``validation_fraction`` of the training rows
            (stratified for the classifier), train KARE on the rest and stop
            when the held-out mean squared error of kernel ridge regression on
            the current NTK (fitted on at most :data:`EVAL_MAX_ROWS` training
            rows, evaluated about every :data:`EVAL_EVERY_STEPS` steps) has not
            improved for ``n_iter_no_change`` evaluations; the weights of the
            best evaluation are restored
            (:class:`keras_kare.callbacks.KernelRidgeEarlyStopping`). The
            final kernel regression then uses all training rows.
        include_initial: with ``early_stopping``, the initial weights are a
            candidate too (evaluated before the first step; ``best_step_ == 0``
            when no step beats them): the untrained network's NTK is often the
            better kernel on small tables (docs/results.md).
        validation_fraction: the held-out fraction for ``early_stopping``.
        n_iter_no_change: evaluations without improvement before stopping.
        random_state: seeds the network's initialisation, the mini-batch
            order, the early-stopping split and the Nyström centres; an int
            makes fits reproducible.
        verbose: 0 silent, 1 Keras' progress bar during KARE training.

    Cost (2-core CPU; ``benchmarks/bench_sklearn.py``): a KARE step costs
    O(b²·p + b³) for b rows per step and p weights, the final fit O(n²·p + n³)
    with the exact solver. The defaults bound both: b ≤ 512 rows per step,
    100 steps, and above :data:`EXACT_MAX_N` (1500) rows Nyström kernel
    regression on :data:`N_CENTERS` (1000) centres (O(n·m·p + m³)). The
    compiled KARE step is cached per architecture and batch layout, so
    repeated fits (``clone``, ``GridSearchCV``, cross-validation) reuse it.

    Attributes (after ``fit``):
        n_features_in_, feature_names_in_: as in scikit-learn.
        model_: the trained Keras network (its NTK is the kernel).
        predictor_: the fitted :class:`keras_kare.KernelPredictor`.
        n_iter_: KARE steps run; loss_curve_: KARE per pass over the data.
        best_step_, validation_scores_: with ``early_stopping``, the step whose
            weights were kept and the held-out MSE of every evaluation.
"""


class KARERegressor(RegressorMixin, _BaseKARE):
    __doc__ = (
        """Kernel ridge regression on the NTK of an MLP trained on KARE (scikit-learn regressor).

    Targets are standardised (per column) for training and kernel regression
    and predictions mapped back; several target columns are supported.
    ``score`` is R² (``RegressorMixin``). Scale the features, e.g.
    ``make_pipeline(StandardScaler(), KARERegressor())``.
"""
        + _DOC_PARAMS
        + """
    Example:
        >>> from sklearn.datasets import load_diabetes
        >>> X, y = load_diabetes(return_X_y=True)
        >>> reg = make_pipeline(StandardScaler(), KARERegressor(random_state=0)).fit(X, y)  # doctest: +SKIP
        >>> reg.score(X, y)  # doctest: +SKIP
    """
    )

    def fit(self, X, y):
        """Train on rows ``X`` (n, d) and targets ``y`` (n,) or (n, k); returns self."""
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=np.float32, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        Y = y.reshape(len(y), -1)
        self._y_mean = Y.mean(axis=0)
        scale = Y.std(axis=0)
        self._y_scale = np.where(scale > 0, scale, 1.0)
        self._y_1d = y.ndim == 1
        return self._fit(X, ((Y - self._y_mean) / self._y_scale).astype(np.float32))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def predict(self, X):
        """Predicted targets: (m,) for 1-D training targets, else (m, k)."""
        pred = self._scores(X) * self._y_scale + self._y_mean
        return pred[:, 0] if self._y_1d else pred


class KAREClassifier(ClassifierMixin, _BaseKARE):
    __doc__ = (
        """Kernel ridge classification on the NTK of an MLP trained on KARE (scikit-learn classifier).

    Labels of any type (ints, strings, …) are coded as in the paper: ±1 for
    two classes (``classes_[1]`` is +1), ±1 one-vs-rest columns for more;
    kernel ridge regression fits the codes and the decision is the sign /
    arg-max (:mod:`keras_kare.decision`). ``score`` is accuracy.

    There is no ``predict_proba``: the regression scores are not
    probabilities and nothing in the fit calibrates them; calibrating them
    honestly needs rows the model was not fitted on. Use
    ``sklearn.calibration.CalibratedClassifierCV(KAREClassifier(...))``, which
    calibrates :meth:`decision_function` on held-out folds, when probabilities
    are needed.
"""
        + _DOC_PARAMS
        + """
    Example:
        >>> from sklearn.datasets import load_breast_cancer
        >>> X, y = load_breast_cancer(return_X_y=True)
        >>> clf = make_pipeline(StandardScaler(), KAREClassifier(random_state=0)).fit(X, y)  # doctest: +SKIP
        >>> clf.predict(X[:3])  # doctest: +SKIP
    """
    )

    def fit(self, X, y):
        """Train on rows ``X`` (n, d) and labels ``y`` (n,) of at least two classes; returns self."""
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"KAREClassifier needs at least 2 classes in y; received 1 class ({self.classes_[0]!r}).")
        codes = encoder.transform(y)
        Y = encode_targets(codes, len(self.classes_)).reshape(len(codes), -1).astype(np.float32)
        return self._fit(X, Y, stratify=codes)

    def decision_function(self, X):
        """Kernel-regression scores: (m,) of the positive class ``classes_[1]`` for two classes, else (m, C)."""
        scores = self._scores(X)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, X):
        """The decided class of each row (sign / arg-max of :meth:`decision_function`), as a label of ``classes_``."""
        scores = self.decision_function(X)
        return self.classes_[class_index(scores)]


__all__ = ["KAREClassifier", "KARERegressor", "build_network"]
