"""Keras layer wrapping the KARE value of a (kernel, targets) pair."""

from __future__ import annotations

import keras

from keras_kare.risk import check_ridge, check_solve_dtype, kare, kare_terms


@keras.saving.register_keras_serializable(package="keras_kare")
class KARE(keras.layers.Layer):
    """Kernel Alignment Risk Estimator as a layer: ``(kernel, targets) -> KARE``.

    The layer has no weights; it is the loss head of :class:`keras_kare.KAREModel`
    and is serialisable through ``get_config``. Shapes: kernel (n, n), targets
    (n,) or (n, C). Calling the layer is :func:`keras_kare.kare`: the same checks
    (a 1-D or non-square kernel, or targets with another number of rows, raise
    ``ValueError``; eagerly also NaN/inf, a zero kernel with a relative ridge and
    a failed factorisation) and the same value. Returns a scalar. See :func:`keras_kare.kare` for the
    formula and conventions (Schwab et al. 2025, paper default ridge 0.1).

    Args:
        ridge: z > 0.
        relative_ridge: use ``ridge * trace(K) / n**2`` as the ridge.
        solve_dtype: precision of the Cholesky solve: ``"auto"`` (float64 up to
            4096 examples), ``"float64"`` or ``"float32"``.

    Example:
        >>> import numpy as np
        >>> layer = KARE(ridge=0.1)
        >>> float(layer((np.eye(4, dtype="float32"), np.ones(4, "float32"))))  # doctest: +ELLIPSIS
        1.0...
    """

    def __init__(self, ridge: float = 0.1, relative_ridge: bool = False, solve_dtype: str = "auto", **kwargs):
        super().__init__(**kwargs)
        self.ridge = check_ridge(ridge)
        if not isinstance(relative_ridge, bool):
            raise TypeError(f"relative_ridge must be a bool, received {relative_ridge!r}.")
        self.relative_ridge = relative_ridge
        self.solve_dtype = check_solve_dtype(solve_dtype)

    def terms(self, kernel, targets):
        """All of KARE's parts (value, numerator, denominator, effective ridge)."""
        return kare_terms(kernel, targets, self.ridge, self.relative_ridge, self.solve_dtype)

    def call(self, inputs):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise ValueError(
                f"KARE takes a pair (kernel, targets), received {type(inputs).__name__}"
                + (f" of length {len(inputs)}." if isinstance(inputs, (tuple, list)) else ".")
            )
        return kare(*inputs, self.ridge, self.relative_ridge, self.solve_dtype)  # the same checks, the same value

    def compute_output_shape(self, input_shape):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update(ridge=self.ridge, relative_ridge=self.relative_ridge, solve_dtype=self.solve_dtype)
        return config
