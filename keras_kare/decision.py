"""Class decisions from real-valued predictions, and the accuracy they give.

Kernel ridge regression and KARE-trained networks regress on coded targets
(Schwab et al. 2025): ±1 for two classes, one-hot (0/1 or ±1) for more. The
decision is the sign for one column and the arg-max for several. A score of
exactly 0 goes to the negative class, as in scikit-learn's linear classifiers.
"""

from __future__ import annotations

import numpy as np


def _as_columns(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 0 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty (n,) or (n, C) array, received shape {a.shape}.")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"{name} must be numeric, received dtype {a.dtype}.")
    return a.reshape(a.shape[0], -1)


def class_index(scores) -> np.ndarray:
    """The decided class of each row of ``scores``.

    Args:
        scores: (n,) or (n, 1) scores of the positive class, or (n, C) scores
            of C classes.

    Returns:
        int64 (n,): for one column 1 where the score is > 0 and 0 otherwise
        (class 1 is the +1-coded one); for several columns the arg-max.

    Example:
        >>> class_index(np.array([0.3, -0.1, 0.0])).tolist()
        [1, 0, 0]
        >>> class_index(np.array([[0.1, 0.5, -1.0], [2.0, 0.0, 0.0]])).tolist()
        [1, 0]
    """
    s = _as_columns(scores, "scores")
    if s.shape[1] == 1:
        return (s[:, 0] > 0).astype(np.int64)
    return np.argmax(s, axis=1).astype(np.int64)


def accuracy(pred, targets) -> float:
    """Fraction of rows whose decided class (:func:`class_index`) matches that of the coded targets.

    Args:
        pred: (n,) / (n, 1) predictions of ±1 targets, or (n, C) predictions
            of one-hot targets.
        targets: the coded targets, same shape as ``pred`` (1-D and one column
            are interchangeable).

    Returns:
        The accuracy in [0, 1].

    Raises:
        ValueError: the row or column counts of ``pred`` and ``targets`` differ.

    Example:
        >>> accuracy(np.array([0.5, -2.0, 1.0]), np.array([1.0, -1.0, -1.0]))
        0.6666666666666666
    """
    p, y = _as_columns(pred, "pred"), _as_columns(targets, "targets")
    if p.shape != y.shape:
        raise ValueError(
            f"pred and targets need the same rows and columns, received shapes {np.shape(pred)} "
            f"and {np.shape(targets)}."
        )
    return float(np.mean(class_index(p) == class_index(y)))


__all__ = ["accuracy", "class_index"]
