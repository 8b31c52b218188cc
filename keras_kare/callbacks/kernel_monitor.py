"""KernelMonitor: spectrum, alignment and KARE-vs-ridge of the NTK on a fixed probe batch."""

from __future__ import annotations

import math
import time
from typing import Optional, Sequence

import keras
import numpy as np

from keras_kare import _validation as v
from keras_kare.callbacks import _common as c
from keras_kare.predictor import KernelPredictor
from keras_kare.ridge import absolute_ridge
from keras_kare.risk import check_ridge
from keras_kare.spectrum import kernel_target_alignment, spectrum_summary

_RIDGE_FACTORS = (1e-2, 1e-1, 1.0, 1e1, 1e2)


def ridge_key(ridge: float) -> str:
    """The ridge's part of a log key / tag: ``0.1 -> "z1e-1"``, ``0.25 -> "z2.5e-1"``, ``10 -> "z1e1"``."""
    mantissa, exponent = f"{float(ridge):.1e}".split("e")
    if mantissa.endswith(".0"):
        mantissa = mantissa[:-2]
    return f"z{mantissa}e{int(exponent)}"


class KernelMonitor(keras.callbacks.Callback):
    """Watch the empirical NTK of the model on a fixed probe batch during training.

    Every ``every_n_epochs`` epochs, at the end of the epoch and outside the
    compiled train step (eager, so it cannot break ``jit_compile=True``), the
    callback computes the NTK Gram K of the probe inputs with
    :func:`keras_kare.ntk` (through :class:`~keras_kare.KernelPredictor`, which
    blocks it by ``batch_size``), its eigenvalues (one float64
    eigendecomposition), and:

    =========================  ==========================================================
    log key (``<prefix>_…``)   meaning (formulas in :mod:`keras_kare.spectrum`)
    =========================  ==========================================================
    ``trace``                  tr K
    ``eigenvalue_max/min``     largest / smallest eigenvalue of K
    ``effective_rank``         exp(entropy of the normalised spectrum)
    ``participation_ratio``    tr(K)² / ‖K‖_F²
    ``effective_dimension``    Σ d_i/(d_i+z), d_i eigenvalues of K/n, z the reference ridge
    ``negative_mass``          share of the spectrum below zero (round-off; 0 if PSD)
    ``alignment``              ⟨K, YYᵀ⟩_F / (‖K‖_F ‖YYᵀ‖_F)
    ``centered_alignment``     the same after centring K and Y
    ``kare``                   KARE at the reference ridge z
    ``kare_z<ridge>``          KARE at each ridge of the grid (e.g. ``ntk_kare_z1e-3``)
    ``kare_min``               smallest KARE over the grid
    ``kare_argmin_ridge``      the grid ridge attaining it
    =========================  ==========================================================

    KARE over the grid reuses :meth:`KernelPredictor.ridge_path` (the same
    ridge units: relative if ``relative_ridge``). The reference ridge z is the
    KAREModel's training ridge (and its ``relative_ridge``), or 0.1 absolute
    (paper default) for other models; the default grid is z × 10^{-2…2}.

    All values go into the epoch's ``logs`` dict (so the progress bar,
    ``History``, ``EarlyStopping``, ``ModelCheckpoint`` and a
    ``keras.callbacks.TensorBoard`` listed *after* this callback see them —
    TensorBoard writes them as ``epoch_<prefix>_…`` in its ``train`` run).
    With ``log_dir`` the callback also writes its own run ``<log_dir>/kernel``
    with scalars tagged ``<prefix>/<key>`` (e.g. ``ntk/effective_rank``,
    ``ntk/kare_z1e-1``) and histograms ``<prefix>/eigenvalues`` (eigenvalues of
    K) and ``<prefix>/log10_eigenvalues`` (of the positive ones), at step =
    epoch index (0-based, like TensorBoard's ``epoch_*`` series). Pass the same
    ``log_dir`` as TensorBoard's to see both in one place.

    Args:
        x: probe inputs (n ≥ 2 examples, fixed for the whole run).
        y: probe targets, (n,) or (n, C).
        log_dir: directory for the callback's own event files, or None.
        every_n_epochs: compute on epochs N, 2N, … (1-based).
        ridges: the KARE grid (in the units of ``relative_ridge``), default above.
        relative_ridge: grid ridges are relative (``λ̃ tr K / n²``); default: the
            KAREModel's setting, else False.
        kernel, implementation: NTK options; default: the KAREModel's, else
            ``"trace"``/``"auto"``.
        batch_size: block size of the Gram (None: one block).
        prefix: prefix of log keys and tags.
        histogram_buckets: number of histogram buckets (TensorBoard default if None).

    Raises:
        ValueError: at construction for malformed x/y, and at ``set_model`` /
            ``on_train_begin`` when the probe batch does not fit the model.

    Attributes:
        history: list of ``(epoch, stats dict)`` computed so far.
        seconds: wall-clock time of each computation.
    """

    def __init__(
        self,
        x,
        y,
        log_dir: Optional[str] = None,
        every_n_epochs: int = 1,
        ridges: Optional[Sequence[float]] = None,
        relative_ridge: Optional[bool] = None,
        kernel: Optional[str] = None,
        implementation: Optional[str] = None,
        batch_size: Optional[int] = None,
        prefix: str = "ntk",
        histogram_buckets: Optional[int] = None,
    ):
        super().__init__()
        self.x, self.y = c.as_probe(x, y, "KernelMonitor")
        self.every_n_epochs = c.check_every(every_n_epochs)
        if ridges is not None:
            ridges = np.asarray(ridges, dtype=np.float64).reshape(-1)
            if ridges.size == 0:
                raise ValueError("KernelMonitor: ridges must be a non-empty grid.")
            for r in ridges:
                check_ridge(float(r), "KernelMonitor ridges")
        self._ridges_arg = ridges
        if relative_ridge is not None and not isinstance(relative_ridge, bool):
            raise TypeError(f"relative_ridge must be a bool or None, received {relative_ridge!r}.")
        self._relative_arg = relative_ridge
        if kernel is not None:
            c.default_kernel(None, kernel)
        self._kernel_arg = kernel
        self._implementation_arg = c.check_implementation(implementation, "KernelMonitor implementation")
        self.batch_size = v.check_batch_size(batch_size, "KernelMonitor batch_size")
        self.prefix = prefix
        self.histogram_buckets = histogram_buckets
        self._summary = c.SummaryWriter(log_dir, "kernel")
        self.log_dir = log_dir
        self.history: list = []
        self.seconds: list = []

    # ------------------------------------------------------------------ setup
    def set_model(self, model):
        super().set_model(model)
        is_kare = getattr(model, "_is_kare_model", False)
        self.kernel = c.default_kernel(model, self._kernel_arg)
        self.implementation = c.default_implementation(model, self._implementation_arg)
        if is_kare:
            self.reference_ridge = float(model.kare_layer.ridge)
            default_relative = bool(model.kare_layer.relative_ridge)
        else:
            self.reference_ridge, default_relative = 0.1, False
        self.relative_ridge = default_relative if self._relative_arg is None else self._relative_arg
        grid = self._ridges_arg if self._ridges_arg is not None else self.reference_ridge * np.asarray(_RIDGE_FACTORS)
        self.ridges = np.unique(np.append(grid, self.reference_ridge))
        if c.unwrap_network(model).built:
            self._check_model()

    def _check_model(self):
        c.check_probe_against_model(self.model, self.x, "KernelMonitor x")
        c.check_targets_against_model(self.model, self.x, self.y, self.kernel, "KernelMonitor")

    def on_train_begin(self, logs=None):
        self._check_model()

    # ------------------------------------------------------------------ work
    def compute(self) -> dict:
        """The statistics for the model's current weights (no logging); keys without prefix."""
        kp = KernelPredictor(
            self.model,
            ridge=self.reference_ridge,
            relative_ridge=self.relative_ridge,
            kernel=self.kernel,
            batch_size=self.batch_size,
            implementation=self.implementation,
            solver="exact",
            verbose=0,
        )
        kp.fit(self.x, self.y)
        path = kp.ridge_path(self.ridges)
        eigenvalues = kp.kernel_eigenvalues()  # cached by ridge_path: one eigendecomposition serves all
        k, y = kp.train_kernel_, kp.y_fit_
        n = k.shape[0]
        z_abs = float(absolute_ridge(self.reference_ridge, float(np.trace(k)), n, self.relative_ridge))
        stats = spectrum_summary(eigenvalues, z_abs)
        stats["alignment"] = kernel_target_alignment(k, y)
        stats["centered_alignment"] = kernel_target_alignment(k, y, centered=True)
        ref = int(np.argmin(np.abs(self.ridges - self.reference_ridge)))
        stats["kare"] = float(path.kare[ref])
        for r, value in zip(self.ridges, path.kare):
            stats["kare_" + ridge_key(r)] = float(value)
        finite = np.isfinite(path.kare)
        stats["kare_min"] = float(np.min(path.kare[finite])) if finite.any() else math.nan
        stats["kare_argmin_ridge"] = (
            float(self.ridges[finite][np.argmin(path.kare[finite])]) if finite.any() else math.nan
        )
        stats["_eigenvalues"] = eigenvalues
        return stats

    def on_epoch_end(self, epoch, logs=None):
        if not c.due(epoch, self.every_n_epochs):
            return
        start = time.perf_counter()
        stats = self.compute()
        eigenvalues = stats.pop("_eigenvalues")
        self.seconds.append(time.perf_counter() - start)
        self.history.append((epoch, dict(stats)))
        if logs is not None:
            logs.update({f"{self.prefix}_{k}": v for k, v in stats.items()})
        self._summary.scalars({f"{self.prefix}/{k}": v for k, v in stats.items()}, step=epoch)
        self._summary.histogram(f"{self.prefix}/eigenvalues", eigenvalues, epoch, self.histogram_buckets)
        positive = eigenvalues[eigenvalues > 0]
        if positive.size:
            self._summary.histogram(
                f"{self.prefix}/log10_eigenvalues", np.log10(positive), epoch, self.histogram_buckets
            )
        self._summary.flush()

    def on_train_end(self, logs=None):
        self._summary.close()
