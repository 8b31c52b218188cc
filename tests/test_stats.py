"""Paired statistics over seeds against hand-computed values and brute-force oracles."""

import itertools
import math

import numpy as np
import pytest

from keras_kare.reproduce import results as R
from keras_kare.reproduce import stats as S


def _sign_test_by_enumeration(diffs):
    """Two-sided p: share of all 2^n equally likely sign patterns at least as unbalanced as the observed one."""
    d = [x for x in diffs if x != 0]
    n = len(d)
    if n == 0:
        return 1.0
    observed = abs(sum(x > 0 for x in d) - n / 2)
    extreme = sum(abs(sum(p) - n / 2) >= observed for p in itertools.product((0, 1), repeat=n))
    return extreme / 2**n


@pytest.mark.parametrize(
    "diffs",
    [
        [1.0],
        [1, 2, 3],
        [1, -1],
        [-1, 2, 3, 4, 5],
        [1, 1, 1, 1, 1, 1, -1, -1],
        [0, 0, 1],
        [0.1, -0.2, 0, 0.3, 0.4, 0.5, -0.1],
        [-1] * 7 + [1],
    ],
)
def test_sign_test_matches_enumeration(diffs):
    assert S.sign_test_p(diffs) == pytest.approx(_sign_test_by_enumeration(diffs), rel=1e-12)


def test_sign_test_hand_values():
    assert S.sign_test_p([-1, -2, -3]) == pytest.approx(0.25)  # 2 · (1/8)
    assert S.sign_test_p([-1] * 8 + [1, 1]) == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 8 of 10: 0.109375
    assert S.sign_test_p([0, 0]) == 1.0
    assert S.sign_test_p([1, -1, 0]) == 1.0


def test_standard_error_formula():
    assert S.standard_error([1, 2, 3, 4]) == pytest.approx(math.sqrt(5 / 3) / 2)
    assert math.isnan(S.standard_error([3.0]))
    with pytest.raises(ValueError, match="empty"):
        S.standard_error([])
    with pytest.raises(ValueError, match="non-finite"):
        S.standard_error([1.0, float("nan")])


def test_mean_minus_se_never_below_zero_for_errors():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10):
        extreme = np.zeros(n)
        extreme[0] = 1.0  # the worst case: equality mean = SE
        assert np.mean(extreme) - S.standard_error(extreme) == pytest.approx(0.0, abs=1e-15)
        for _ in range(50):
            x = rng.exponential(size=n) ** 3
            assert np.mean(x) - S.standard_error(x) >= -1e-15


def test_bootstrap_ci_reproducible_and_exact_on_small_cases():
    d = np.array([-0.3, -0.1, 0.05, -0.2, -0.15])
    assert S.bootstrap_ci(d) == S.bootstrap_ci(d)
    assert S.bootstrap_ci(d, seed=1) != S.bootstrap_ci(d, seed=2)
    low, high = S.bootstrap_ci(d)
    assert low < d.mean() < high and low >= d.min() and high <= d.max()
    assert S.bootstrap_ci([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2))
    # two values 0 and 1: resampled means are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4
    assert S.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    assert S.bootstrap_ci([0.0, 1.0], level=0.4) == (0.5, 0.5)
    # the vectorised resampling equals a replicate-by-replicate loop with the same generator
    rng = np.random.default_rng(7)
    means = [d[rng.integers(0, len(d), size=len(d))].mean() for _ in range(500)]
    assert S.bootstrap_ci(d, n_boot=500, seed=7) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    with pytest.raises(ValueError, match="level"):
        S.bootstrap_ci(d, level=1.5)


def test_paired_comparison_statement_and_direction():
    a = [0.1, 0.2, 0.05, 0.3]
    b = [0.3, 0.25, 0.1, 0.3]
    c = S.paired_comparison(a, b, "NTK-KARE", "DNN")
    assert (c["n"], c["wins_a"], c["wins_b"], c["ties"]) == (4, 3, 0, 1)
    assert c["mean_difference"] == pytest.approx(-0.3 / 4)
    assert c["sign_test_p"] == pytest.approx(0.25)
    assert c["statement"].startswith(
        "NTK-KARE beats DNN on 3/4 seeds (1 tied); mean paired difference −0.075 [95% bootstrap CI"
    )
    assert "sign test p = 0.25" in c["statement"]
    acc = S.paired_comparison([0.9, 0.8], [0.7, 0.85], "x", "y", higher_is_better=True)
    assert (acc["wins_a"], acc["wins_b"]) == (1, 1)
    with pytest.raises(ValueError, match="one entry per seed"):
        S.paired_comparison([1, 2], [1, 2, 3])


def test_win_counts_and_seed_statistics():
    per = {"kare": [0.1, 0.5, 0.2], "dnn": [0.3, 0.4, 0.2]}
    assert S.win_counts(per) == {"kare": 1, "dnn": 1, "tied": 1}
    st = S.seed_statistics(per, [3, 4, 5], per_seed_info={"4": {"‖w‖": 2.5}})
    assert st["per_seed"][1] == {"seed": 4, "‖w‖": 2.5, "kare": 0.5, "dnn": 0.4}
    assert st["info_columns"] == ["‖w‖"]
    assert st["se"]["kare"] == pytest.approx(S.standard_error([0.1, 0.5, 0.2]))
    assert [(p["a"], p["b"]) for p in st["pairs"]] == [("kare", "dnn")]


def _rows():
    rows = []
    kare = [[0.3, 0.1], [0.2, 0.4], [0.5, 0.6]]  # per seed, per ridge; KARE column picks ridge 0 each time
    for seed in range(3):
        for j, ridge in enumerate([0.1, 10.0]):
            rows.append({"method": "kare", "seed": seed, "ridge": ridge, "test_mse": kare[seed][j], "kare": [1, 2][j]})
            rows.append(
                {
                    "method": "after_kernel",
                    "seed": seed,
                    "ridge": ridge,
                    "test_mse": kare[seed][j] + 0.05,
                    "kare": [2, 1][j],
                }
            )
        rows.append({"method": "dnn", "seed": seed, "ridge": None, "test_mse": [0.2, 0.15, 0.9][seed]})
    return rows


def test_summary_gains_per_seed_statistics(tmp_path):
    summary = R.write_summary(
        tmp_path, _rows(), {"x": 1}, per_seed_info={0: {"‖w‖": 1.0}, 1: {"‖w‖": 2.0}, 2: {"‖w‖": 3.0}}
    )
    best = summary["seed_stats"]["best"]
    assert [r["kare"] for r in best["per_seed"]] == pytest.approx([0.1, 0.2, 0.5])
    assert best["wins"] == {"kare": 2, "after_kernel": 0, "dnn": 1, "tied": 0}
    pair = next(p for p in best["pairs"] if (p["a"], p["b"]) == ("kare", "dnn"))
    assert pair["mean_difference"] == pytest.approx(((0.1 - 0.2) + (0.2 - 0.15) + (0.5 - 0.9)) / 3)
    sel = summary["seed_stats"]["kare_selected"]
    assert [r["kare"] for r in sel["per_seed"]] == pytest.approx([0.3, 0.2, 0.5])
    assert [r["after_kernel"] for r in sel["per_seed"]] == pytest.approx([0.15, 0.45, 0.65])
    assert summary["kare"]["best_test_mse_se"] == pytest.approx(S.standard_error([0.1, 0.2, 0.5]))
    table = R.markdown_table(summary)
    assert "| seed | ‖w‖ | NTK-KARE best |" in table
    assert "| 2 | 3 | 0.5000 |" in table
    assert "NTK-KARE beats DNN (MSE) on 2/3 seeds; mean paired difference −0.15 [95% bootstrap CI" in table
    assert "seeds won: NTK-KARE 2/3, after-kernel 0/3, DNN (MSE) 1/3" in table
    assert R.plot(tmp_path / "p.png", summary, "t").stat().st_size > 1000


def _pearson(a, b):
    a, b = np.asarray(a, float) - np.mean(a), np.asarray(b, float) - np.mean(b)
    return float(a @ b / math.sqrt((a @ a) * (b @ b)))


def test_rank_correlation_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, size=25).astype(float)  # many ties
    y = x + rng.normal(size=25)
    y[:5] = y[5]  # ties in y too
    got = S.rank_correlation(x, y, n_permutations=2000)
    assert got["rho"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert not got["exact"] and got["n"] == 25


def test_rank_correlation_exact_p_is_the_share_of_pairings_and_monte_carlo_agrees():
    x = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0]
    y = [2.0, 7.0, 1.0, 8.0, 2.5, 8.5, 0.5]
    got = S.rank_correlation(x, y)
    assert got["exact"]  # 7! = 5040 pairings enumerated
    rx, ry = np.argsort(np.argsort(x)) + 1.0, np.argsort(np.argsort(y)) + 1.0  # no ties here
    rho = _pearson(rx, ry)
    assert got["rho"] == pytest.approx(rho, abs=1e-12)
    # the slow oracle: every pairing of y's ranks with x's
    null = [_pearson(rx, ry[list(p)]) for p in itertools.permutations(range(7))]
    exact_p = np.mean([abs(r) >= abs(rho) - 1e-12 for r in null])
    assert got["p"] == pytest.approx(exact_p, abs=1e-12)
    # Monte Carlo: within 5 binomial standard errors of the exact value
    mc = S.rank_correlation(x, y, n_permutations=4000, seed=1)
    assert not mc["exact"]
    assert abs(mc["p"] - exact_p) < 5 * math.sqrt(exact_p * (1 - exact_p) / 4000) + 1 / 4001
    # a perfect ordering of five pairs: only the identity and its reverse reach |rho| = 1
    perfect = S.rank_correlation([1, 2, 3, 4, 5], [10, 20, 25, 90, 100])
    assert perfect["rho"] == pytest.approx(1.0) and perfect["p"] == pytest.approx(2 / 120)
    assert S.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1])["rho"] == pytest.approx(-1.0)


def test_rank_correlation_constant_and_bad_input():
    const = S.rank_correlation([1, 2, 3], [5.0, 5.0, 5.0])
    assert math.isnan(const["rho"]) and const["p"] == 1.0
    with pytest.raises(ValueError, match="at least 3 pairs"):
        S.rank_correlation([1, 2], [1, 2])
    with pytest.raises(ValueError, match="paired values"):
        S.rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="non-finite"):
        S.rank_correlation([1, 2, np.nan], [1, 2, 3])
    with pytest.raises(ValueError, match="n_permutations"):
        S.rank_correlation([1, 2, 3], [1, 2, 3], n_permutations=0)


def test_rank_correlation_monte_carlo_in_blocks_matches_the_t_approximation():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    x = rng.normal(size=60)
    y = 0.15 * x + rng.normal(size=60)
    got = S.rank_correlation(x, y)  # 100 000 pairings drawn in two blocks at n = 60
    expected = stats.spearmanr(x, y)
    assert got["rho"] == pytest.approx(expected.statistic, abs=1e-12)
    assert 0.01 < expected.pvalue < 0.5  # a p-value the t approximation gets to about 0.005 at n = 60
    assert got["p"] == pytest.approx(expected.pvalue, abs=0.01)
