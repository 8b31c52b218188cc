"""KernelPredictor: kernel ridge regression with a network's empirical NTK (exact or Nyström)."""

from __future__ import annotations

import inspect
import logging
from typing import Optional, Union

import numpy as np
import tensorflow as tf

from keras_kare import _validation as v
from keras_kare import nystrom
from keras_kare.fingerprint import CHANGE_MESSAGES, fingerprint_changes, network_fingerprint
from keras_kare.memory import (
    USABLE_FRACTION,
    available_bytes,
    check_gram_memory,
    estimate_exact_solve_bytes,
    estimate_nystrom_bytes,
)
from keras_kare.networks import unwrap_network
from keras_kare.ntk import GramEngine
from keras_kare.progress import Progress, check_verbose
from keras_kare.ridge import ExactSystem, RidgePath, absolute_ridge
from keras_kare.risk import check_kernel_not_degenerate, check_ridge

logger = logging.getLogger("keras_kare")

DEFAULT_RIDGE_GRID = np.logspace(-6, 3, 37)  # relative ridges λ̃, 4 per decade
RIDGE_PATH_PROGRESS_N = 4096  # verbose="auto" shows the ridge path's progress from this many examples on
SOLVERS = ("auto", "exact", "nystrom")
EXACT_MAX_N = 20_000
"""``solver="auto"`` solves exactly up to this many Gram rows (n, or n·C for ``kernel="full"``)."""
AUTO_MEMORY_MARGIN = 0.5
"""... and only while the exact fit's estimated peak memory is below this share of the usable memory."""
NYSTROM_ROWS_PER_BLOCK = 2048
"""Training rows per streamed block of the Nyström cross-Gram ``K(X, C)`` (at least ``batch_size``)."""
NYSTROM_DIAGONAL_BLOCK = 256
"""Size of the diagonal Gram blocks whose traces give the exact tr K for the relative ridge."""


class NotFittedError(ValueError, AttributeError):
    """Raised when a KernelPredictor is used before ``fit``."""


class KernelPredictor:
    """Kernel ridge regression on the empirical NTK of a Keras model.

    ``f̂(x) = (1/n) K(x, X) (K(X, X)/n + λI)⁻¹ Y`` (Schwab et al. 2025), with the
    Gram computed in blocks and the solve in float64. With a
    :class:`~keras_kare.KAREModel` this is the KARE-trained NTK predictor; with
    a network trained the usual way it is the paper's "after-kernel" baseline.

    Solvers:

    - ``"exact"``: the n × n training Gram, one Cholesky of ``K/n + λI``
      (single-threaded LAPACK, see :mod:`keras_kare.factor`); memory O(n²).
    - ``"nystrom"``: Nyström KRR with m centres drawn uniformly from the
      training inputs (:mod:`keras_kare.nystrom`): the estimator is restricted
      to ``span K(·, C)``; the cross-Gram ``K(X, C)`` is streamed in row blocks
      and never held, memory O(m² + block·m). Approximate (it is exact KRR
      on the Nyström kernel ``K_nC K_CC⁺ K_Cn``; with m = n it is the exact
      solve); its ridge path's KARE/GCV and training MSE are exact for that
      estimator, its LOO MSE is NaN (not computed).
    - ``"auto"`` (default): exact while the training Gram has at most
      :data:`EXACT_MAX_N` rows and the exact fit's estimated peak memory is
      below :data:`AUTO_MEMORY_MARGIN` of the usable memory, Nyström
      otherwise; the choice is logged (``logging`` INFO) and kept in ``solver_``.

    Follows scikit-learn's estimator contract (duck-typed: scikit-learn is
    not required): hyper-parameters are keyword arguments stored unchanged by
    ``__init__`` and validated by ``fit``; ``get_params``/``set_params``,
    ``score`` (R²), ``fit`` returns ``self``, learned state ends in ``_``.
    ``sklearn.base.clone`` shares the Keras model (the predictor never
    changes its weights) rather than copying it.

    The fitted predictor belongs to the network as it was at ``fit``: if its
    weights (trainable or not, e.g. BatchNorm moving statistics), which of
    them are trainable, or its layers change afterwards, ``predict``,
    ``predict_path`` and ``save`` raise ``ValueError`` (call ``fit`` again).

    Args:
        model: any Keras model (a ``KAREModel`` is unwrapped to its network).
        ridge: λ > 0, or ``"auto"`` to pick the grid ridge (relative grid
            1e-6…1e3, 4 per decade) with the smallest KARE on the training data.
        relative_ridge: λ means ``λ̃ · tr(K)/n²`` (paper default True).
        kernel: ``"trace"``, ``"summed_output"`` or ``"full"`` (see
            :func:`keras_kare.ntk`).
        batch_size: block size of the Gram computation.
        implementation: NTK implementation (see :func:`keras_kare.ntk`).
        solver: ``"auto"``, ``"exact"`` or ``"nystrom"`` (above).
        n_centers: Nyström centres m (int ≥ 1; default ``min(n, 4096)``; a
            value above n is clamped to n with a logged warning).
        seed: int seed of the uniform centre sample (None: fresh entropy).
        verbose: ``keras.utils.Progbar`` for the blocked Gram work of ``fit``,
            ``predict`` and ``predict_path`` and for ``ridge_path``:
            ``"auto"`` (default: shown for more than 8 Gram blocks, or a ridge
            path on n ≥ 4096 examples), ``0`` or ``1``.

    Attributes (after ``fit``):
        solver_: ``"exact"`` or ``"nystrom"``, the solver used.
        X_fit_: the training inputs (a copy).
        y_fit_: the training targets as a float64 matrix (n, C) (or (n·C, 1)
            for ``kernel="full"``).
        n_outputs_: C, the number of target columns.
        dual_coef_: α with ``f̂(x) = K(x, B) α / n_rows``, B the basis inputs
            (the training inputs for ``"exact"``, the centres for
            ``"nystrom"``); shape (n, C), (m, C), or (n·C, 1) / (m·C, 1) for
            ``kernel="full"``. With m = n the two coincide.
        ridge_: the ridge used, in the units of ``relative_ridge``.
        effective_ridge_: the absolute λ used.
        ridge_path_: the :class:`~keras_kare.ridge.RidgePath` (``ridge="auto"`` only).
        train_kernel_: the float64 training Gram (n, n) (``"exact"`` only).
        centers_idx_: indices of the centres in ``X_fit_`` (``"nystrom"`` only).

    Example:
        >>> kp = KernelPredictor(model, ridge="auto").fit(x_train, y_train)  # doctest: +SKIP
        >>> y_hat = kp.predict(x_test)  # doctest: +SKIP
        >>> path = kp.ridge_path(np.logspace(-5, 5, 11))  # doctest: +SKIP
        >>> big = KernelPredictor(model, solver="nystrom", n_centers=4096, seed=0).fit(x_big, y_big)  # doctest: +SKIP
    """

    def __init__(
        self,
        model,
        *,
        ridge: Union[float, str] = 1e-3,
        relative_ridge: bool = True,
        kernel: str = "trace",
        batch_size: Optional[int] = 512,
        implementation: str = "auto",
        solver: str = "auto",
        n_centers: Optional[int] = None,
        seed: Optional[int] = None,
        verbose="auto",
    ):
        self.model = model
        self.ridge = ridge
        self.relative_ridge = relative_ridge
        self.kernel = kernel
        self.batch_size = batch_size
        self.implementation = implementation
        self.solver = solver
        self.n_centers = n_centers
        self.seed = seed
        self.verbose = verbose

    # ---------------------------------------------------------------- estimator contract
    @classmethod
    def _param_names(cls) -> list:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments by name (scikit-learn contract; ``deep`` has no nested estimators)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "KernelPredictor":
        """Set constructor arguments by name (validated by the next ``fit``); returns self."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for KernelPredictor; valid parameters: {valid}.")
            setattr(self, name, value)
        return self

    def __sklearn_clone__(self) -> "KernelPredictor":
        """An unfitted predictor with the same parameters, sharing the (unchanged) Keras model."""
        return type(self)(**self.get_params(deep=False))

    _estimator_type = "regressor"  # scikit-learn < 1.6 reads this; later versions read __sklearn_tags__

    def __sklearn_tags__(self):
        """scikit-learn (≥ 1.6) estimator tags: a multi-output regressor (imports scikit-learn only when asked)."""
        from sklearn.utils import RegressorTags, Tags, TargetTags

        return Tags(
            estimator_type="regressor",
            target_tags=TargetTags(required=True, multi_output=True),
            regressor_tags=RegressorTags(),
        )

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        parts = [f"model=<{type(self.model).__name__} {getattr(self.model, 'name', '')!s}>".replace(" >", ">")]
        for name in self._param_names()[1:]:
            value = getattr(self, name)
            if not (type(value) is type(defaults[name]) and value == defaults[name]):
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def score(self, x, y, sample_weight=None) -> float:
        """R² of ``predict(x)`` against ``y``, averaged over target columns (as ``sklearn`` ``KernelRidge.score``).

        A constant target column scores 1.0 if predicted exactly, else 0.0.
        """
        pred = np.asarray(self.predict(x), dtype=np.float64)
        y_arr = v.as_targets(y, pred.shape[0], "y").reshape(pred.shape[0], -1)
        pred = pred.reshape(y_arr.shape)
        w = np.ones(y_arr.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (y_arr.shape[0],) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"sample_weight must be {y_arr.shape[0]} finite values >= 0, received shape {w.shape}.")
        w = w[:, None]
        ss_res = np.sum(w * (y_arr - pred) ** 2, axis=0)
        ss_tot = np.sum(w * (y_arr - np.sum(w * y_arr, axis=0) / np.sum(w)) ** 2, axis=0)
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.where(ss_res == 0, 1.0, 0.0))
        return float(np.mean(r2))

    @property
    def network(self):
        """The network whose NTK is used (a ``KAREModel``'s base network, else ``model``)."""
        return unwrap_network(self.model)

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
        if not isinstance(self.solver, str) or self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, received {self.solver!r}.")
        nystrom.check_n_centers(self.n_centers)
        nystrom.check_seed(self.seed)

    def _check_fitted(self, attribute: str = "dual_coef_"):
        if not hasattr(self, attribute):
            raise NotFittedError("This KernelPredictor is not fitted yet; call fit(x, y) first.")

    @property
    def train_kernel_(self) -> np.ndarray:
        """The float64 training Gram (n, n) (or (n·C, n·C)) of an ``"exact"`` predictor."""
        system = self.__dict__.get("_system")
        if not isinstance(system, ExactSystem):
            raise AttributeError("train_kernel_ exists only on a fitted predictor with solver_='exact'.")
        return system.kernel

    def _ridge_follows_trace(self) -> bool:
        """Whether fit's ridge scales with tr K (relative units, or the default grid of ``ridge="auto"``)."""
        return self.relative_ridge or self.ridge == "auto"

    def _ridge_grid(self, ridges, trace: float, n: int) -> np.ndarray:
        """A checked 1-D ridge grid in the predictor's units (default: the relative 1e-6…1e3 grid)."""
        if ridges is None:
            ridges = DEFAULT_RIDGE_GRID * (1.0 if self.relative_ridge else trace / n**2)
        ridges = np.asarray(ridges, dtype=np.float64).reshape(-1)
        if ridges.size == 0 or not np.all(np.isfinite(ridges)) or np.any(ridges <= 0):
            raise ValueError(f"ridges must be a non-empty 1-D grid of finite values > 0, received {ridges!r}.")
        return ridges

    def _check_network_unchanged(self, what: str):
        changed = fingerprint_changes(self._fit_fingerprint, network_fingerprint(self.network))
        if changed:
            reasons = "; ".join(CHANGE_MESSAGES[k] for k in changed)
            raise ValueError(f"{reasons}; {what} belong to the old NTK. Call fit again.")

    # ---------------------------------------------------------------- kernel
    def _engine(self) -> GramEngine:
        return GramEngine(self.model, self.kernel, self.implementation, self.batch_size)

    def _inputs(self, x, name: str = "x"):
        """``x`` checked against the network once (``GramEngine.inputs``); every Gram below takes it as is."""
        return self._engine().inputs(x, name)

    def _gram(self, x1, x2=None, verbose=None) -> np.ndarray:
        """The float64 Gram between checked inputs (``kernel="full"``: (n1·C, n2·C), rows example-major)."""
        engine = self._engine()
        x1, x2 = (None if x is None else tf.nest.map_structure(tf.convert_to_tensor, x) for x in (x1, x2))
        engine.check_memory(x1, x2, extra_copies=1)
        k = engine.gram(x1, x2, self.verbose if verbose is None else verbose)
        self._gram_eps = float(np.finfo(k.dtype.as_numpy_dtype).eps)
        k = k.numpy().astype(np.float64)
        if self.kernel == "full":  # (n1, n2, C, C) -> (n1 C, n2 C), rows example-major
            n1, n2, c, _ = k.shape
            k = k.transpose(0, 2, 1, 3).reshape(n1 * c, n2 * c)
        return k

    def _basis(self):
        """The inputs the dual coefficients pair with: the training inputs, or the Nyström centres."""
        if not hasattr(self, "centers_idx_"):
            return self.X_fit_
        return tf.nest.map_structure(lambda t: np.take(t, self.centers_idx_, axis=0), self.X_fit_)

    def _rows_per_example(self) -> int:
        return self.n_outputs_ if self.kernel == "full" else 1

    def _itemsize(self) -> int:
        return max((np.dtype(w.dtype).itemsize for w in self.network.trainable_variables), default=4)

    def _resolve_solver(self, n_rows: int) -> str:
        if self.solver != "auto":
            return self.solver
        usable = USABLE_FRACTION * available_bytes()
        needed = estimate_exact_solve_bytes(n_rows, self._itemsize())
        solver = "exact" if n_rows <= EXACT_MAX_N and needed <= AUTO_MEMORY_MARGIN * usable else "nystrom"
        logger.info(
            "keras_kare: KernelPredictor solver='auto' chose %r (%d Gram rows; exact up to %d rows and %.0f%% of "
            "the usable memory: the exact fit would need about %.1f GiB of %.1f GiB usable).",
            solver,
            n_rows,
            EXACT_MAX_N,
            100 * AUTO_MEMORY_MARGIN,
            needed / 2**30,
            usable / 2**30,
        )
        return solver

    # ---------------------------------------------------------------- API
    def fit(self, x, y) -> "KernelPredictor":
        """Validate the parameters, compute the kernel, choose the ridge if ``"auto"``, solve.

        Args:
            x: (n, ...) training inputs.
            y: (n,) or (n, C) targets; integer/bool labels are cast to float64.

        Returns:
            self.
        """
        self._check_params()
        x_t = self._inputs(x)
        n = v.num_rows(x_t, "x")
        y_arr = v.as_targets(y, n, "y")
        if n < 2:
            raise ValueError(f"fit needs at least 2 examples, received {n}.")
        y_mat = y_arr.reshape(n, -1)
        if self.kernel == "full":
            width = self._engine().output_width(x_t)
            if width != y_mat.shape[1]:
                raise ValueError(
                    f"kernel='full' needs one target column per network output: the network has "
                    f"{width} outputs, y has {y_mat.shape[1]} columns."
                )
        for name in ("centers_idx_", "ridge_path_", "dual_coef_", "_system", "_fit_fingerprint"):
            self.__dict__.pop(name, None)
        self.n_outputs_ = y_mat.shape[1]
        self._y_ndim = y_arr.ndim
        rows = self._rows_per_example()
        self.solver_ = self._resolve_solver(n * rows)
        self.X_fit_ = tf.nest.map_structure(lambda t: np.array(t), x_t)
        self.y_fit_ = y_mat.reshape(-1, 1) if self.kernel == "full" else y_mat
        if self.solver_ == "exact":
            check_gram_memory(
                estimate_exact_solve_bytes(n * rows, self._itemsize()),
                0,
                f"KernelPredictor(solver='exact'): the fit on {n * rows} Gram rows",
                self.batch_size,
                advice="Use solver='nystrom' (memory O(m² + block·m) for m centres, never n²).",
            )
            # exactly symmetric (GramEngine.gram mirrors blocks)
            self._system = ExactSystem(self._gram(x_t), self.y_fit_)
        else:
            self._system = self._fit_nystrom(x_t, n)
        if self._ridge_follows_trace():
            check_kernel_not_degenerate(self._system.trace, self._system.n_rows, name="the NTK on the training inputs")
        if self.ridge == "auto":
            path = self.ridge_path()  # the default grid
            self.ridge_ = path.best_kare_ridge
            self.ridge_path_ = path
        else:
            self.ridge_ = float(self.ridge)
        system = self._system
        self.effective_ridge_ = float(absolute_ridge(self.ridge_, system.trace, system.n_rows, self.relative_ridge))
        self.dual_coef_ = system.dual_coef(self.effective_ridge_)
        self._fit_fingerprint = network_fingerprint(self.network)
        return self

    def _fit_nystrom(self, x_t, n: int) -> nystrom.NystromSystem:
        """Sample the centres and reduce the streamed cross-Gram to the m-dimensional system."""
        m = nystrom.resolve_n_centers(self.n_centers, n)
        rows = self._rows_per_example()
        block = max(NYSTROM_ROWS_PER_BLOCK, self.batch_size or 0)
        needed = estimate_nystrom_bytes(m * rows, min(block, n) * rows, self._itemsize())
        check_gram_memory(
            needed,
            0,
            f"KernelPredictor(solver='nystrom'): the fit with {m} centres",
            self.batch_size,
            advice=f"Use a smaller n_centers than {m}.",
        )
        self.centers_idx_ = nystrom.sample_centers(n, m, self.seed)
        centers = self._basis()
        k_cc = self._gram(centers, verbose=0)
        eps = self._gram_eps
        acc = nystrom.Accumulator(k_cc.shape[0], self.y_fit_.shape[1])
        diag_block = min(self.batch_size or block, NYSTROM_DIAGONAL_BLOCK)
        trace = 0.0
        starts = range(0, n, block)
        progress = Progress(len(starts), self.verbose, unit_name="row block")
        for s in starts:
            e = min(s + block, n)
            acc.add(self._gram(v.take_rows(x_t, s, e), centers, verbose=0), self.y_fit_[s * rows : e * rows])
            for d in range(s, e, diag_block):  # tr K from the diagonal blocks of the true Gram
                trace += float(np.trace(self._gram(v.take_rows(x_t, d, min(d + diag_block, e)), verbose=0)))
            progress.advance()
        if self._ridge_follows_trace():
            check_kernel_not_degenerate(trace, acc.n_rows, name="the NTK on the training inputs")
        return nystrom.solve_system(k_cc, acc, trace, eps)

    def predict(self, x) -> np.ndarray:
        """``(1/n) K(x, B) α`` (B: training inputs or centres): (m,) for 1-D training targets, else (m, C)."""
        self._check_fitted()
        x_t = self._inputs(x)
        m = v.num_rows(x_t, "x")
        self._check_network_unchanged("the dual coefficients")
        k = self._gram(x_t, self._basis())
        pred = k @ self.dual_coef_ / self._system.n_rows
        pred = pred.reshape(m, self.n_outputs_)
        return pred[:, 0] if self._y_ndim == 1 else pred

    def kernel_eigenvalues(self) -> np.ndarray:
        """Ascending eigenvalues of the training Gram K (``"exact"``) or of its Nyström approximation K̃.

        For Nyström, K̃ = K_nC K_CC⁺ K_Cn has at most m non-zero eigenvalues;
        the rest are returned as zeros (n values in all). Cached with the
        eigendecomposition :meth:`ridge_path` uses.
        """
        self._check_fitted("_system")
        return self._system.kernel_eigenvalues()

    def ridge_path(self, ridges=None) -> RidgePath:
        """KARE (= GCV) and leave-one-out MSE for each ridge, training data only.

        ``"exact"``: one eigendecomposition of the training Gram (cached)
        serves the grid; the LOO MSE is exact. ``"nystrom"``: KARE and the
        training MSE of the Nyström estimator from its m-dimensional
        eigenbasis; ``loo_mse`` is NaN (see :mod:`keras_kare.nystrom`).

        Args:
            ridges: 1-D grid in the predictor's units (relative if
                ``relative_ridge``); default: 1e-6…1e3, 4 per decade (relative;
                converted to absolute if ``relative_ridge=False``). Ridges of
                a given grid that are not above the kernel's round-off are
                reported by a warning; the default grid reaches them by
                design, so it reports them at INFO level.

        Returns:
            A :class:`~keras_kare.ridge.RidgePath`.
        """
        self._check_fitted("_system")
        given = ridges
        lambdas, ridges = self._lambdas(ridges)
        n = self._system.n_rows
        verbose = (1 if n >= RIDGE_PATH_PROGRESS_N else 0) if self.verbose == "auto" else self.verbose
        level = logging.INFO if given is None else logging.WARNING
        return RidgePath(ridges, lambdas, *self._system.path(lambdas, verbose=verbose, below_level=level))

    def _lambdas(self, ridges) -> tuple[np.ndarray, np.ndarray]:
        """(absolute λ, the checked grid in the predictor's units) for a ridge grid (None: the default)."""
        trace, n = self._system.trace, self._system.n_rows
        ridges = self._ridge_grid(ridges, trace, n)
        return absolute_ridge(ridges, trace, n, self.relative_ridge), ridges

    def predict_path(self, x, ridges=None) -> np.ndarray:
        """Predictions on ``x`` for every ridge of a grid, from one eigendecomposition.

        Equivalent to ``fit`` + ``predict`` once per ridge (same units as the
        predictor: relative if ``relative_ridge``; same solver and centres), but
        the training system is decomposed once (cached, shared with
        :meth:`ridge_path`) and the cross-Gram ``K(x, B)`` is computed once.

        Args:
            x: (m, ...) inputs.
            ridges: 1-D grid; default as in :meth:`ridge_path`.

        Returns:
            (R, m) for 1-D training targets, else (R, m, C). A ridge not above
            the most negative eigenvalue of K/n (the round-off of a float32
            Gram meets the smallest ridges of a wide grid) has NaN predictions,
            as :meth:`ridge_path` has NaN there; one line says which (a warning
            for a given grid, INFO for the default one).
        """
        self._check_fitted()
        x_t = self._inputs(x)
        m = v.num_rows(x_t, "x")
        self._check_network_unchanged("the training Gram and dual coefficients")
        lambdas, _ = self._lambdas(ridges)
        level = logging.INFO if ridges is None else logging.WARNING
        preds = self._system.predict_path(self._gram(x_t, self._basis()), lambdas, below_level=level)
        preds = preds.reshape(len(lambdas), m, self.n_outputs_)
        return preds[..., 0] if self._y_ndim == 1 else preds

    # ---------------------------------------------------------------- persistence protocol
    def fitted_state(self, include_train_kernel: bool = True) -> tuple[dict, dict]:
        """The fitted state as (JSON-safe scalars, named float arrays), ``X_fit_`` excluded.

        The persistence protocol :mod:`keras_kare.predictor_io` writes;
        :meth:`restore_fitted_state` is its inverse.

        Raises:
            NotFittedError: not fitted.
            ValueError: the model's weights changed since ``fit``.
        """
        self._check_fitted()
        self._check_network_unchanged("the dual coefficients (saving would write an inconsistent predictor)")
        scalars = {
            "solver_": self.solver_,
            "n_outputs_": int(self.n_outputs_),
            "ridge_": float(self.ridge_),
            "effective_ridge_": float(self.effective_ridge_),
            "y_ndim": int(self._y_ndim),
        }
        arrays = {"y_fit": np.asarray(self.y_fit_), "dual_coef": np.asarray(self.dual_coef_)}
        if hasattr(self, "centers_idx_"):
            arrays["centers_idx"] = np.asarray(self.centers_idx_)
        system_scalars, system_arrays = self._system.state(include_kernel=include_train_kernel)
        scalars.update(system_scalars)
        arrays.update(system_arrays)
        path = getattr(self, "ridge_path_", None)
        if path is not None:
            for field in RidgePath.__dataclass_fields__:
                arrays[f"ridge_path_{field}"] = np.asarray(getattr(path, field))
        return scalars, arrays

    def restore_fitted_state(self, x_fit, scalars: dict, arrays: dict) -> "KernelPredictor":
        """Set the state :meth:`fitted_state` returned (with the training inputs ``x_fit``); returns self.

        The training Gram of an ``"exact"`` predictor saved without it is
        recomputed from the network.
        """
        self.solver_ = scalars.get("solver_", "exact")
        self.X_fit_ = x_fit
        self.y_fit_ = arrays["y_fit"]
        self.dual_coef_ = arrays["dual_coef"]
        self.n_outputs_ = int(scalars["n_outputs_"])
        self.ridge_ = float(scalars["ridge_"])
        self.effective_ridge_ = float(scalars["effective_ridge_"])
        self._y_ndim = int(scalars["y_ndim"])
        if "ridge_path_ridges" in arrays:
            self.ridge_path_ = RidgePath(*(arrays[f"ridge_path_{f}"] for f in RidgePath.__dataclass_fields__))
        v.ensure_built(self.network, v.take_rows(x_fit, 0, 1))
        if self.solver_ == "nystrom":
            self.centers_idx_ = arrays["centers_idx"]
            self._system = nystrom.NystromSystem.from_state(scalars, arrays)
        else:
            kernel = None if "train_kernel" in arrays else self._gram(x_fit)
            self._system = ExactSystem.from_state(scalars, arrays, self.y_fit_, kernel)
        self._fit_fingerprint = network_fingerprint(self.network)
        return self

    # ---------------------------------------------------------------- persistence
    def save(self, path, include_train_kernel: bool = True, overwrite: bool = True) -> None:
        """Save to one file: model (``.keras``), training inputs, α, ridge (see :mod:`keras_kare.predictor_io`).

        ``include_train_kernel=False`` omits the n×n training Gram of an exact
        predictor (it is then recomputed by ``load``). Raises if the model's
        weights changed since ``fit``.
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
