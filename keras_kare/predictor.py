"""KernelPredictor: kernel ridge regression with a network's empirical NTK."""

from __future__ import annotations

import logging
from typing import Optional, Union

import numpy as np
import tensorflow as tf

from keras_kare import _validation as v
from keras_kare.ntk import compute_ntk
from keras_kare.progress import Progress, check_verbose
from keras_kare.ridge import RidgePath, absolute_ridge, solve_dual, spectral_path
from keras_kare.risk import check_ridge

logger = logging.getLogger("keras_kare")

DEFAULT_RIDGE_GRID = np.logspace(-6, 3, 37)  # relative ridges λ̃, 4 per decade
RIDGE_PATH_PROGRESS_N = 4096  # verbose="auto" shows the ridge path's progress from this many examples on


class NotFittedError(ValueError, AttributeError):
    """Raised when a KernelPredictor is used before ``fit``."""


class KernelPredictor:
    """Kernel ridge regression on the empirical NTK of a Keras model.

    ``f̂(x) = (1/n) K(x, X) (K(X, X)/n + λI)⁻¹ Y`` (Schwab et al. 2025), with the
    Gram computed in blocks and the solve in float64. With a
    :class:`~keras_kare.KAREModel` this is the KARE-trained NTK predictor; with
    a network trained the usual way it is the paper's "after-kernel" baseline.

    Follows scikit-learn's conventions: hyper-parameters in ``__init__``,
    ``fit`` returns ``self``, learned state ends in ``_``.

    Args:
        model: any Keras model (a ``KAREModel`` is unwrapped to its network).
        ridge: λ > 0, or ``"auto"`` to pick the grid ridge (relative grid
            1e-6…1e3, 4 per decade) with the smallest KARE on the training data.
        relative_ridge: λ means ``λ̃ · tr(K)/n²`` (paper default True).
        kernel: ``"trace"``, ``"summed_output"`` or ``"full"`` (see
            :func:`keras_kare.ntk`).
        batch_size: block size of the Gram computation.
        implementation: NTK implementation (see :func:`keras_kare.ntk`).
        verbose: ``keras.utils.Progbar`` for the blocked Gram work of ``fit``,
            ``predict`` and ``predict_path`` and for ``ridge_path``:
            ``"auto"`` (default: shown for more than 8 Gram blocks, or a ridge
            path on n ≥ 4096 examples), ``0`` or ``1``.

    Attributes (after ``fit``):
        X_fit_: the training inputs (a copy).
        dual_coef_: α, shape (n, C) (or (n·C, 1) for ``kernel="full"``).
        ridge_: the ridge used, in the units of ``relative_ridge``.
        effective_ridge_: the absolute λ used.
        train_kernel_: the float64 training Gram (n, n).

    Example:
        >>> kp = KernelPredictor(model, ridge="auto").fit(x_train, y_train)  # doctest: +SKIP
        >>> y_hat = kp.predict(x_test)  # doctest: +SKIP
        >>> path = kp.ridge_path(np.logspace(-5, 5, 11))  # doctest: +SKIP
    """

    def __init__(
        self,
        model,
        ridge: Union[float, str] = 1e-3,
        relative_ridge: bool = True,
        kernel: str = "trace",
        batch_size: Optional[int] = 512,
        implementation: str = "auto",
        verbose="auto",
    ):
        self.model = model
        self.verbose = verbose
        self.ridge = ridge
        self.relative_ridge = relative_ridge
        self.kernel = kernel
        self.batch_size = batch_size
        self.implementation = implementation
        self._check_params()

    # ---------------------------------------------------------------- checks
    def _check_params(self):
        v.check_model(self.model)
        check_verbose(self.verbose)
        if not (isinstance(self.ridge, str) and self.ridge == "auto"):
            if isinstance(self.ridge, str):
                raise ValueError(f"ridge must be a positive float or 'auto', received {self.ridge!r}.")
            check_ridge(self.ridge)
        if not isinstance(self.relative_ridge, bool):
            raise TypeError(f"relative_ridge must be a bool, received {self.relative_ridge!r}.")
        v.check_kernel_mode(self.kernel)
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive int or None, received {self.batch_size!r}.")

    def _check_fitted(self):
        if not hasattr(self, "dual_coef_"):
            raise NotFittedError("This KernelPredictor is not fitted yet; call fit(x, y) first.")

    def _network(self):
        base = getattr(self.model, "base_model", None)
        return base if getattr(self.model, "_is_kare_model", False) else self.model

    def _ridge_grid(self, ridges, trace: float, n: int) -> np.ndarray:
        """A checked 1-D ridge grid in the predictor's units (default: the relative 1e-6…1e3 grid)."""
        if ridges is None:
            ridges = DEFAULT_RIDGE_GRID * (1.0 if self.relative_ridge else trace / n**2)
        ridges = np.asarray(ridges, dtype=np.float64).reshape(-1)
        if ridges.size == 0 or not np.all(np.isfinite(ridges)) or np.any(ridges <= 0):
            raise ValueError(f"ridges must be a non-empty 1-D grid of finite values > 0, received {ridges!r}.")
        return ridges

    def _check_weights_unchanged(self, what: str):
        now = self._weights_snapshot()
        if any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(now, self._fit_weights)):
            raise ValueError(
                f"the model's weights changed since fit(); {what} belong to the old NTK. Call fit again."
            )

    def _weights_snapshot(self):
        return [np.array(w) for w in self._network().trainable_variables]

    # ---------------------------------------------------------------- kernel
    def _gram(self, x1, x2=None) -> np.ndarray:
        k = compute_ntk(
            self.model, x1, x2, self.kernel, self.implementation, self.batch_size, extra_copies=1,
            verbose=getattr(self, "verbose", "auto"),
        )
        k = k.numpy().astype(np.float64)
        if self.kernel == "full":  # (n1, n2, C, C) -> (n1 C, n2 C), rows example-major
            n1, n2, c, _ = k.shape
            k = k.transpose(0, 2, 1, 3).reshape(n1 * c, n2 * c)
        return k

    # ---------------------------------------------------------------- API
    def fit(self, x, y) -> "KernelPredictor":
        """Compute the training Gram, choose the ridge if ``"auto"``, solve for α.

        Args:
            x: (n, ...) training inputs.
            y: (n,) or (n, C) targets; integer/bool labels are cast to float64.

        Returns:
            self.
        """
        self._check_params()
        x_t = v.as_input(x, "x")
        n = v.num_rows(x_t, "x")
        y_arr = v.as_targets(y, n, "y")
        if n < 2:
            raise ValueError(f"fit needs at least 2 examples, received {n}.")
        v.ensure_built(self._network(), x_t)
        self._y_ndim = y_arr.ndim
        y_mat = y_arr.reshape(n, -1)
        self.n_outputs_ = y_mat.shape[1]
        k = self._gram(x_t)  # exactly symmetric (compute_ntk mirrors blocks and symmetrises the diagonal ones)
        if self.kernel == "full":
            if k.shape[0] != n * self.n_outputs_:
                raise ValueError(
                    f"kernel='full' needs one target column per network output: the network has "
                    f"{k.shape[0] // n} outputs, y has {self.n_outputs_} columns."
                )
            y_mat = y_mat.reshape(-1, 1)
        self.X_fit_ = tf.nest.map_structure(lambda t: np.array(t), x_t)
        self.y_fit_ = y_mat
        self.train_kernel_ = k
        self._eig = None
        trace = float(np.trace(k))
        if self.ridge == "auto":
            path = self.ridge_path(DEFAULT_RIDGE_GRID if self.relative_ridge else None)
            self.ridge_ = path.best_kare_ridge
            self.ridge_path_ = path
        else:
            self.ridge_ = float(self.ridge)
        self.effective_ridge_ = float(absolute_ridge(self.ridge_, trace, k.shape[0], self.relative_ridge))
        self.dual_coef_ = solve_dual(k, y_mat, self.effective_ridge_)
        self._fit_weights = self._weights_snapshot()
        return self

    def predict(self, x) -> np.ndarray:
        """``(1/n) K(x, X) α``: (m,) for 1-D training targets, else (m, C)."""
        self._check_fitted()
        x_t = v.as_input(x, "x")
        m = v.num_rows(x_t, "x")
        self._check_weights_unchanged("the dual coefficients")
        k = self._gram(x_t, self.X_fit_)
        pred = k @ self.dual_coef_ / self.train_kernel_.shape[0]
        pred = pred.reshape(m, self.n_outputs_)
        return pred[:, 0] if self._y_ndim == 1 else pred

    def ridge_path(self, ridges=None) -> RidgePath:
        """KARE (= GCV) and exact leave-one-out MSE for each ridge, training data only.

        One eigendecomposition of the training Gram (cached) serves the grid.

        Args:
            ridges: 1-D grid in the predictor's units (relative if
                ``relative_ridge``); default: 1e-6…1e3, 4 per decade (relative;
                converted to absolute if ``relative_ridge=False``).

        Returns:
            A :class:`~keras_kare.ridge.RidgePath`.
        """
        if not hasattr(self, "train_kernel_"):
            raise NotFittedError("This KernelPredictor is not fitted yet; call fit(x, y) first.")
        k = self.train_kernel_
        n = k.shape[0]
        trace = float(np.trace(k))
        ridges = self._ridge_grid(ridges, trace, n)
        lambdas = absolute_ridge(ridges, trace, n, self.relative_ridge)
        verbose = getattr(self, "verbose", "auto")
        verbose = (1 if n >= RIDGE_PATH_PROGRESS_N else 0) if verbose == "auto" else verbose
        n_chunks = min(len(lambdas), 8) if verbose else 1
        progress = Progress((self._eig is None) + n_chunks, verbose)
        if self._eig is None:
            self._eig = np.linalg.eigh(k)
            progress.advance()
        parts = []
        for idx in np.array_split(np.arange(len(lambdas)), n_chunks):
            parts.append(spectral_path(*self._eig, self.y_fit_, lambdas[idx]))
            progress.advance()
        kare_vals, loo, train = (np.concatenate([p[i] for p in parts]) for i in range(3))
        return RidgePath(ridges, lambdas, kare_vals, loo, train)

    def predict_path(self, x, ridges=None) -> np.ndarray:
        """Predictions on ``x`` for every ridge of a grid, from one eigendecomposition.

        Equivalent to ``fit`` + ``predict`` once per ridge (same units as the
        predictor: relative if ``relative_ridge``), but the training Gram is
        decomposed once (cached, shared with :meth:`ridge_path`) and the
        cross-Gram ``K(x, X)`` is computed once.

        Args:
            x: (m, ...) inputs.
            ridges: 1-D grid; default as in :meth:`ridge_path`.

        Returns:
            (R, m) for 1-D training targets, else (R, m, C).
        """
        self._check_fitted()
        x_t = v.as_input(x, "x")
        m = v.num_rows(x_t, "x")
        self._check_weights_unchanged("the training Gram and dual coefficients")
        k = self.train_kernel_
        n = k.shape[0]
        trace = float(np.trace(k))
        ridges = self._ridge_grid(ridges, trace, n)
        if self._eig is None:
            self._eig = np.linalg.eigh(k)
        s, vecs = self._eig
        lambdas = absolute_ridge(ridges, trace, n, self.relative_ridge)
        if np.any(s.min() / n + lambdas <= 0):
            raise np.linalg.LinAlgError(
                f"K/n + λI is not positive definite for some ridge of the grid (smallest eigenvalue of K/n "
                f"{s.min() / n:.3e}); use larger ridges."
            )
        kv = self._gram(x_t, self.X_fit_) @ vecs  # (m·C or m, n)
        proj = vecs.T @ self.y_fit_  # (n, C')
        preds = np.stack([kv @ (proj / (s[:, None] / n + lam)) / n for lam in lambdas])
        preds = preds.reshape(len(lambdas), m, self.n_outputs_)
        return preds[..., 0] if self._y_ndim == 1 else preds

    # ---------------------------------------------------------------- persistence
    def save(self, path, include_train_kernel: bool = True, overwrite: bool = True) -> None:
        """Save to one file: model (``.keras``), training inputs, α, ridge (see :mod:`keras_kare.predictor_io`).

        ``include_train_kernel=False`` omits the n×n training Gram (it is then
        recomputed by ``load``). Raises if the model's weights changed since ``fit``.
        """
        from keras_kare.predictor_io import save_predictor

        save_predictor(self, path, include_train_kernel=include_train_kernel, overwrite=overwrite)

    @classmethod
    def load(cls, path, custom_objects=None, compile: bool = True) -> "KernelPredictor":
        """Load a predictor written by :meth:`save`; it predicts identically.

        Raises:
            keras_kare.predictor_io.IncompatibleFormatError: the file is not a
                KernelPredictor archive or was written in another format version.
        """
        from keras_kare.predictor_io import load_predictor

        return load_predictor(cls, path, custom_objects=custom_objects, compile=compile)
