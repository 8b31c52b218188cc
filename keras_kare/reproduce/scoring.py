"""Scores across many data sets, as in Arora et al. (2020) and the KARE paper's Table 1.

Input: an accuracy table, data sets × methods (accuracies in [0, 1]).

- Friedman rank: per data set, rank the methods by accuracy (1 = best; ties get
  the average of the ranks they span), then average over data sets.
- Mean accuracy: mean over data sets (in %).
- P90 / P95: percentage of data sets on which the method reaches at least 90% /
  95% of the best accuracy among the compared methods on that data set.
- PMA: percentage of the maximum accuracy, mean over data sets of
  accuracy / best accuracy (in %), with its standard deviation.

Note that "best" is the best among the methods in the table; the paper's
Table 1 also includes Fernández-Delgado et al.'s 179 classifiers, which are not
part of this package.
"""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Descending ranks (1 = largest) of a 1-D array, ties sharing their average rank."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[order[j + 1]] == values[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def score_table(accuracy: np.ndarray, methods) -> dict:
    """Friedman rank, mean accuracy, P90, P95 and PMA per method.

    Args:
        accuracy: (n_datasets, n_methods) accuracies in [0, 1]; rows with a
            NaN (a method missing on that data set) are dropped.
        methods: the column names.

    Returns:
        ``{method: {"friedman_rank", "mean_accuracy", "std_accuracy", "p90", "p95",
        "pma", "pma_std"}, "n_datasets": int}``; percentages in %.
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    if acc.ndim != 2 or acc.shape[1] != len(methods):
        raise ValueError(f"accuracy must be (n_datasets, {len(methods)}), received shape {acc.shape}.")
    acc = acc[~np.isnan(acc).any(axis=1)]
    out = {"n_datasets": int(len(acc))}
    if len(acc) == 0:
        return out
    ranks = np.array([average_ranks(row) for row in acc])
    best = acc.max(axis=1, keepdims=True)
    ratio = np.divide(acc, best, out=np.ones_like(acc), where=best > 0)
    for k, m in enumerate(methods):
        out[m] = {
            "friedman_rank": float(ranks[:, k].mean()),
            "mean_accuracy": float(100 * acc[:, k].mean()),
            "std_accuracy": float(100 * acc[:, k].std(ddof=1)) if len(acc) > 1 else 0.0,
            "p90": float(100 * np.mean(acc[:, k] >= 0.90 * best[:, 0])),
            "p95": float(100 * np.mean(acc[:, k] >= 0.95 * best[:, 0])),
            "pma": float(100 * ratio[:, k].mean()),
            "pma_std": float(100 * ratio[:, k].std(ddof=1)) if len(acc) > 1 else 0.0,
        }
    return out
