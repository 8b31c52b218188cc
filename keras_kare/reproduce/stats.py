"""Paired statistics over seeds: is one method better than another on the same draws?

Every seed of a reproduction run gives each method the same data and initial
weights, so methods are compared *per seed* (paired), not by their means alone:

- mean ± standard error over seeds (``SE = s / √n``, ``s`` the sample standard
  deviation with ``n − 1``). For non-negative errors ``mean − SE ≥ 0`` always
  holds (``s² ≤ n · mean²``), so a mean ± SE band never dips below zero;
- win counts: on how many seeds a method has the (strictly) lowest error;
- for each pair of methods: paired differences ``d_s = a_s − b_s``, their mean
  with a percentile bootstrap confidence interval (seeded, so the same numbers
  give the same interval), and the exact two-sided sign test p-value
  (binomial with p = ½ on the non-zero differences; ties are dropped);
- across data sets: Spearman's rank correlation of a per-table quantity (e.g.
  one method's lead over another) with another (the table's size), with a
  permutation p-value (:func:`rank_correlation`).

Example:
    >>> d = paired_comparison([0.1, 0.2, 0.05], [0.3, 0.25, 0.1], "NTK-KARE", "DNN")
    >>> d["wins_a"], d["n"], round(d["sign_test_p"], 3)
    (3, 3, 0.25)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

from keras_kare.reproduce.scoring import average_ranks

N_BOOTSTRAP = 10_000
BOOTSTRAP_SEED = 0


def _values(values, name: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name}: received an empty sequence, expected at least one number.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name}: received non-finite entries {arr[~np.isfinite(arr)].tolist()}, expected finite numbers."
        )
    return arr


def standard_error(values) -> float:
    """``s / √n`` with ``s`` the sample standard deviation (ddof 1); NaN for a single value."""
    arr = _values(values)
    if arr.size < 2:
        return math.nan
    return float(np.std(arr, ddof=1) / math.sqrt(arr.size))


def sign_test_p(differences) -> float:
    """Exact two-sided sign test p-value of paired differences (zeros dropped).

    With ``n`` non-zero differences of which ``k`` are positive,
    ``p = min(1, 2 · Σ_{i ≤ min(k, n−k)} C(n, i) / 2ⁿ)``; 1.0 when every
    difference is zero.
    """
    d = _values(differences, "differences")
    pos, neg = int(np.sum(d > 0)), int(np.sum(d < 0))
    n = pos + neg
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(pos, neg) + 1))
    return min(1.0, 2.0 * tail / 2.0**n)


def bootstrap_ci(differences, level: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED):
    """Percentile bootstrap interval of the mean of ``differences``.

    Resamples the seeds with replacement ``n_boot`` times with
    ``numpy.random.default_rng(seed)``; returns ``(low, high)``, the
    ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the resampled means.
    A single difference gives the degenerate interval ``(d, d)``.
    """
    d = _values(differences, "differences")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), received {level!r}.")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be a positive integer, received {n_boot!r}.")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(int(n_boot), d.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def paired_comparison(
    a,
    b,
    name_a: str = "a",
    name_b: str = "b",
    higher_is_better: bool = False,
    level: float = 0.95,
    seed: int = BOOTSTRAP_SEED,
    unit: str = "seeds",
) -> dict:
    """Compare two methods seed by seed.

    Args:
        a, b: per-seed errors (or accuracies) of the two methods, same seed order.
        name_a, name_b: labels used in the statement.
        higher_is_better: True for accuracies (a "win" is the larger value).
        level: confidence level of the bootstrap interval.
        seed: bootstrap seed.
        unit: what is paired, for the statement ("seeds", "data sets").

    Returns:
        ``{"n", "wins_a", "wins_b", "ties", "mean_difference", "ci_low", "ci_high",
        "level", "sign_test_p", "statement"}`` with differences ``a − b``.
    """
    a, b = _values(a, name_a), _values(b, name_b)
    if a.shape != b.shape:
        raise ValueError(
            f"paired values need one entry per seed each; received {a.size} for {name_a} and {b.size} for {name_b}."
        )
    d = a - b
    better_a = d > 0 if higher_is_better else d < 0
    better_b = d < 0 if higher_is_better else d > 0
    low, high = bootstrap_ci(d, level, seed=seed)
    out = {
        "n": int(d.size),
        "wins_a": int(better_a.sum()),
        "wins_b": int(better_b.sum()),
        "ties": int(np.sum(d == 0)),
        "mean_difference": float(d.mean()),
        "ci_low": low,
        "ci_high": high,
        "level": level,
        "sign_test_p": sign_test_p(d),
    }
    out["statement"] = (
        f"{name_a} beats {name_b} on {out['wins_a']}/{out['n']} {unit}"
        + (f" ({out['ties']} tied)" if out["ties"] else "")
        + f"; mean paired difference {_num(out['mean_difference'])} "
        f"[{100 * level:g}% bootstrap CI {_num(low)}, {_num(high)}], sign test p = {out['sign_test_p']:.3g}"
    )
    return out


N_PERMUTATIONS = 100_000


def rank_correlation(x, y, n_permutations: int = N_PERMUTATIONS, seed: int = BOOTSTRAP_SEED) -> dict:
    """Spearman's rank correlation of ``x`` and ``y`` with a two-sided permutation p-value.

    ρ is Pearson's correlation of the average ranks (ties share their mean rank).
    The p-value is the share of pairings of ``y`` with ``x`` whose ``|ρ|`` is at
    least the observed one (within 1e-12): exact over all ``n!`` pairings when
    ``n! ≤ n_permutations``, else ``(1 + hits) / (1 + n_permutations)`` over
    random pairings from ``numpy.random.default_rng(seed)`` (never 0). It asks
    whether, e.g., a method's gain over another grows with the table's size,
    without choosing size bins.

    Returns:
        ``{"n", "rho", "p", "exact"}``; ``rho`` is NaN and ``p`` 1.0 when either
        variable is constant (no ordering to correlate).

    Raises:
        ValueError: fewer than three pairs, unequal lengths, or non-finite values.

    Example:
        >>> r = rank_correlation([1, 2, 3, 4, 5], [2, 4, 5, 9, 10])
        >>> r["rho"], round(r["p"], 4), r["exact"]
        (1.0, 0.0167, True)
    """
    x, y = _values(x, "x"), _values(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"rank_correlation needs paired values; received {x.size} x and {y.size} y values.")
    if x.size < 3:
        raise ValueError(f"rank_correlation needs at least 3 pairs, received {x.size}.")
    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations must be a positive integer, received {n_permutations!r}.")
    rx, ry = average_ranks(x), average_ranks(y)  # descending for both: the same correlation
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = math.sqrt(float(rx @ rx) * float(ry @ ry))
    if norm == 0.0:
        return {"n": int(x.size), "rho": math.nan, "p": 1.0, "exact": True}
    rho = float(rx @ ry) / norm

    def extreme(pairings: np.ndarray) -> int:  # pairings at least as correlated as observed, either sign
        return int(np.sum(np.abs(ry[pairings] @ rx) / norm >= abs(rho) - 1e-12))

    exact = math.factorial(x.size) <= int(n_permutations)
    if exact:
        p = extreme(np.array(list(itertools.permutations(range(x.size))))) / math.factorial(x.size)
    else:
        rng, hits, left = np.random.default_rng(seed), 0, int(n_permutations)
        block = max(1, min(left, 2**22 // x.size))  # at most ~32 MB of indices at a time
        while left:
            take = min(block, left)
            hits += extreme(rng.permuted(np.tile(np.arange(x.size), (take, 1)), axis=1))
            left -= take
        p = (1 + hits) / (1 + int(n_permutations))
    return {"n": int(x.size), "rho": rho, "p": float(min(1.0, p)), "exact": exact}


def _num(x: float) -> str:
    return f"{x:.3g}".replace("-", "−")


def win_counts(per_method: dict, higher_is_better: bool = False) -> dict:
    """Seeds on which each method is strictly best: ``{method: count, "tied": count}``.

    Args:
        per_method: ``{method: per-seed values}``, all in the same seed order.
    """
    names = list(per_method)
    table = np.array([_values(per_method[m], m) for m in names])
    best = table.max(axis=0) if higher_is_better else table.min(axis=0)
    is_best = table == best
    unique = is_best.sum(axis=0) == 1
    out = {m: int(np.sum(is_best[k] & unique)) for k, m in enumerate(names)}
    out["tied"] = int(np.sum(~unique))
    return out


def seed_statistics(
    per_method: dict,
    seeds: Sequence,
    higher_is_better: bool = False,
    per_seed_info: Optional[dict] = None,
    labels: Optional[dict] = None,
) -> dict:
    """Per-seed table, mean ± SE, win counts and every pairwise comparison.

    Args:
        per_method: ``{method: per-seed values}`` in the order of ``seeds``.
        seeds: the seed of each position.
        higher_is_better: True for accuracies.
        per_seed_info: optional ``{seed: {column: value}}`` shown beside the
            errors (e.g. a difficulty indicator such as ``{"‖w‖": 2.9}``).
        labels: display names of the methods (default: the keys).

    Returns:
        ``{"per_seed": [{"seed", <info columns>, <method>: value}], "mean": {m},
        "se": {m}, "wins": {...}, "pairs": [comparison dicts + "a", "b"]}``.
    """
    labels = labels or {}
    names = list(per_method)
    seeds = list(seeds)
    for m in names:
        if len(per_method[m]) != len(seeds):
            raise ValueError(f"{m}: {len(per_method[m])} values for {len(seeds)} seeds.")
    info = {} if per_seed_info is None else {_seed_key(k): v for k, v in per_seed_info.items()}
    rows = []
    for i, s in enumerate(seeds):
        row = {"seed": s, **info.get(_seed_key(s), {})}
        row.update({m: float(per_method[m][i]) for m in names})
        rows.append(row)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            c = paired_comparison(per_method[a], per_method[b], labels.get(a, a), labels.get(b, b), higher_is_better)
            pairs.append({"a": a, "b": b, **c})
    return {
        "per_seed": rows,
        "info_columns": sorted({k for r in info.values() for k in r}),
        "mean": {m: float(np.mean(per_method[m])) for m in names},
        "se": {m: standard_error(per_method[m]) for m in names},
        "wins": win_counts(per_method, higher_is_better),
        "pairs": pairs,
    }


def _seed_key(seed):
    """Seeds arrive as ints or (from JSON) as strings; compare them as ints when possible."""
    try:
        return int(seed)
    except (TypeError, ValueError):
        return seed
