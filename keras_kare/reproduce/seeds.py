"""How far a UCI comparison moves with the seed.

``keras-kare reproduce uci --seed S`` fixes the networks' initial weights, the
early-stopping recipes' inner split and the baselines' CV shuffles; the data
splits are the collection's own files and stay the same. Runs that differ only
in ``--seed`` therefore measure how much each method's validated accuracy on a
table, and the comparison between methods, depends on those draws: the noise
of picking one of many nearly tied configurations on a small validation half.

:func:`seed_spread` reads the per-table accuracies of such runs and reports,
per method, the mean accuracy and the Friedman rank among the run's methods on
every seed, their spread over seeds, the per-table spread, and the headline
method paired against every other both seed by seed and on the seed-averaged
accuracies (the expected accuracy of a recipe over its random draws, paired by
data set with :func:`~keras_kare.reproduce.stats.paired_comparison`).

Example:
    >>> settings, per_seed = load_uci_runs(["runs/s0", "runs/s1", "runs/s2"])  # doctest: +SKIP
    >>> spread = seed_spread(per_seed, uci_methods(settings))  # doctest: +SKIP
    >>> print(seed_spread_markdown(spread))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from keras_kare.reproduce.scoring import average_ranks
from keras_kare.reproduce.stats import paired_comparison

KEYS = ("validated", "paper")
"""The protocol columns of a run's ``results.json`` (``<method>_validated``, ``<method>_paper``)."""

SEED_SETTINGS = ("seed",)
"""Settings that may differ among the runs compared; every other setting must be equal."""


def uci_methods(settings: dict) -> list[str]:
    """The methods a ``reproduce uci`` run with ``settings`` reports, in its table order (baselines last)."""
    from keras_kare.reproduce.uci_recipes import methods

    return methods(settings) + list(settings.get("baselines") or [])


def load_uci_runs(run_dirs: Sequence) -> tuple[dict, dict]:
    """Read the ``settings.json`` and ``results.json`` of ``reproduce uci`` runs that differ only in their seed.

    Args:
        run_dirs: two or more run folders (``--out`` of ``keras-kare reproduce uci``).

    Returns:
        ``(settings, {seed: results rows})``: the first run's settings and each
        run's ``results.json`` rows (one dict per data set) keyed by its seed.

    Raises:
        ValueError: fewer than two folders, a folder without both files, two
            runs with the same seed, or runs whose settings differ in anything
            but :data:`SEED_SETTINGS` (the differing setting is named).
    """
    dirs = [Path(d) for d in run_dirs]
    if len(dirs) < 2:
        raise ValueError(f"need two or more run folders to compare seeds, received {len(dirs)}.")
    first, per_seed = None, {}
    for d in dirs:
        files = [d / "settings.json", d / "results.json"]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise ValueError(f"{d} is not a finished reproduce uci run: no {' or '.join(absent)}.")
        settings = json.loads(files[0].read_text())
        seed = settings.get("seed")
        if first is None:
            first = settings
        else:
            differ = sorted(
                k for k in set(first) | set(settings) if k not in SEED_SETTINGS and first.get(k) != settings.get(k)
            )
            if differ:
                raise ValueError(f"{d}: settings differ from {dirs[0]}'s in {', '.join(differ)}; only the seed may.")
        if seed in per_seed:
            raise ValueError(f"{d}: seed {seed!r} appears in two runs.")
        per_seed[seed] = json.loads(files[1].read_text())
    return first, per_seed


COMBINE_SETTINGS = ("recipes", "paper_methods", "baselines")
"""Settings in which two sets of seed runs put side by side (:func:`combine_runs`) may differ."""

_ROW_KEYS = ("dataset", "n_train", "n_test", "n_classes")
"""Entries of a ``results.json`` row that describe the data set rather than a method."""


def load_seed_comparison(path) -> tuple[dict, dict]:
    """The settings and per-seed rows kept by ``benchmarks/uci_seeds.py --out`` (a comparison without its run folders).

    Returns:
        ``(settings, {seed: results rows})`` as :func:`load_uci_runs` returns them.

    Raises:
        ValueError: the file is not such a JSON (no ``settings`` or ``results``).
    """
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict) or not data.get("results"):
        raise ValueError(f"{path} is not a JSON written by uci_seeds.py: expected 'settings' and 'results' entries.")
    return data["settings"], {_seed(k): rows for k, rows in data["results"].items()}


def _seed(key):
    """A seed read back from JSON, whose object keys are strings: ``"3"`` -> 3."""
    try:
        return int(key)
    except (TypeError, ValueError):
        return key


def combine_runs(first: tuple[dict, dict], second: tuple[dict, dict], keep_first: bool = False) -> tuple[dict, dict]:
    """Put the methods of two sets of seed runs side by side, e.g. a control run later beside stored recipes.

    Both sets must cover the same seeds and data sets with the same settings
    except :data:`COMBINE_SETTINGS` (the data folder is compared by name, so a
    stored comparison whose paths were shortened still matches), and no method
    may be in both (which of two numbers would count?) unless ``keep_first``:
    then a method in both keeps ``first``'s numbers (e.g. recipes that rerun
    the paper's trainings, beside the stored paper numbers) and
    ``settings["overlap"]`` says how many of them the second set has otherwise
    (another commit or CPU).

    Args:
        first, second: ``(settings, {seed: results rows})`` from
            :func:`load_uci_runs` or :func:`load_seed_comparison`.
        keep_first: allow methods in both, keeping ``first``'s numbers.

    Returns:
        ``(settings, {seed: rows})``: the settings with the union of recipes and
        baselines (``paper_methods`` if either ran them), and each row with both
        sets' method entries.

    Raises:
        ValueError: other seeds, data sets or settings, or a method in both.

    Example:
        >>> a = ({"seed": 0, "recipes": ["kare_es"]}, {0: [{"dataset": "x", "kare_es_validated": 0.8}]})
        >>> b = ({"seed": 0, "recipes": ["ntk_init"]}, {0: [{"dataset": "x", "ntk_init_validated": 0.7}]})
        >>> settings, rows = combine_runs(a, b)
        >>> settings["recipes"], rows[0][0]["ntk_init_validated"]
        (['kare_es', 'ntk_init'], 0.7)
    """
    from keras_kare.reproduce.baselines import BASELINES
    from keras_kare.reproduce.uci_recipes import RECIPES

    (s1, runs1), (s2, runs2) = first, second
    skip = set(COMBINE_SETTINGS) | set(SEED_SETTINGS) | {"data_dir", "overlap"}  # overlap: a --keep-stored note
    differ = sorted(k for k in set(s1) | set(s2) if k not in skip and s1.get(k) != s2.get(k))
    if s1.get("data_dir") is not None and s2.get("data_dir") is not None:
        if Path(str(s1["data_dir"])).name != Path(str(s2["data_dir"])).name:
            differ.append("data_dir")
    if differ:
        raise ValueError(f"the two sets of runs differ in {', '.join(differ)}; only {', '.join(COMBINE_SETTINGS)} may.")
    if set(runs1) != set(runs2):
        seeds = f"{sorted(runs1, key=str)} and {sorted(runs2, key=str)}"
        raise ValueError(f"the two sets of runs have other seeds: {seeds}.")
    combined, overlap = {}, {"entries": 0, "differ": 0, "max_abs_difference": 0.0}
    for seed, rows1 in runs1.items():
        by_name = {r["dataset"]: r for r in runs2[seed]}
        if [r["dataset"] for r in rows1] != list(by_name):
            raise ValueError(f"seed {seed}: the two sets of runs have other data sets (or another order).")
        merged = []
        for r1 in rows1:
            r2 = by_name[r1["dataset"]]
            both = sorted((set(r1) & set(r2)) - set(_ROW_KEYS))
            if both and not keep_first:
                raise ValueError(f"seed {seed}, {r1['dataset']}: {', '.join(both)} in both sets of runs.")
            for key in both:
                a, b = r1[key], r2[key]
                overlap["entries"] += 1
                if a != b:
                    overlap["differ"] += 1
                    if a is not None and b is not None:
                        overlap["max_abs_difference"] = max(overlap["max_abs_difference"], abs(float(a) - float(b)))
            meta = [k for k in _ROW_KEYS if k in r1 and k in r2 and r1[k] != r2[k]]
            if meta:
                raise ValueError(f"seed {seed}, {r1['dataset']}: the two runs disagree on {', '.join(meta)}.")
            merged.append({**r2, **r1})
        combined[seed] = merged
    recipes = set(s1.get("recipes") or []) | set(s2.get("recipes") or [])
    baselines = set(s1.get("baselines") or []) | set(s2.get("baselines") or [])
    settings = {
        **s1,
        "recipes": [r for r in RECIPES if r in recipes],
        "baselines": [b for b in BASELINES if b in baselines],
        "paper_methods": bool(s1.get("paper_methods", True) or s2.get("paper_methods", True)),
    }
    if keep_first:
        settings["overlap"] = overlap
    return settings, combined


def accuracy_cube(per_seed: dict, methods: Sequence[str], key: str = "validated") -> tuple[np.ndarray, list[str]]:
    """Accuracies as an array (seeds × data sets × methods), NaN where a run has no number.

    Args:
        per_seed: ``{seed: results rows}`` (:func:`load_uci_runs`); each row has
            ``"dataset"`` and ``"<method>_<key>"`` entries (fractions or None).
        methods: the columns, in order.
        key: ``"validated"`` or ``"paper"`` (:data:`KEYS`).

    Returns:
        ``(cube, datasets)``: the data sets of any run, in the order first seen;
        a data set a run lacks is NaN on that seed.

    Raises:
        ValueError: an unknown ``key`` or no method.
    """
    if key not in KEYS:
        raise ValueError(f"key must be one of {', '.join(KEYS)}, received {key!r}.")
    methods = list(methods)
    if not methods:
        raise ValueError("methods must name at least one method.")
    by_name = [{r["dataset"]: r for r in rows} for rows in per_seed.values()]
    datasets = list(dict.fromkeys(n for b in by_name for n in b))
    cube = np.full((len(by_name), len(datasets), len(methods)), np.nan)
    for s, rows in enumerate(by_name):
        for t, name in enumerate(datasets):
            for m, method in enumerate(methods):
                value = rows.get(name, {}).get(f"{method}_{key}")
                if value is not None:
                    cube[s, t, m] = float(value)
    return cube, datasets


def _ranks(acc: np.ndarray) -> np.ndarray:
    """Mean over data sets (rows) of each column's descending rank among the columns (ties averaged)."""
    return np.array([average_ranks(row) for row in acc]).mean(axis=0)


def seed_spread(per_seed: dict, methods: Sequence[str], key: str = "validated", headline: Optional[str] = None) -> dict:
    """Mean accuracy and rank of each method on every seed, their spread, and paired comparisons.

    Only data sets on which every method has a number on every seed are used
    (the others, including a table some run lacks, are listed as
    ``dropped``), so each seed's numbers cover the same tables.

    Args:
        per_seed: ``{seed: results rows}`` (:func:`load_uci_runs`).
        methods: the methods compared (:func:`uci_methods`); ranks are among these.
        key: ``"validated"`` (default) or ``"paper"``.
        headline: the method paired against every other (default: the run's
            headline recipe, :func:`~keras_kare.reproduce.uci_recipes.headline`).

    Returns:
        ``{"key", "seeds", "methods", "headline", "datasets", "dropped",
        "per_seed": {seed: {method: {"mean", "rank"}}},
        "over_seeds": {method: {"mean", "mean_sd", "rank", "rank_sd", "table_sd", "table_range"}},
        "averaged": {method: {"mean", "rank"}}, "per_table": {data set: {method: mean over seeds}},
        "pairs": [{"b", "per_seed_difference": [...], "seeds_ahead", "seeds_behind",
        **paired_comparison over data sets of the seed-averaged accuracies}]}``.
        Accuracies, their differences and spreads in percentage points.
        ``mean_sd``/``rank_sd``: standard deviation over seeds (``ddof=1``) of a
        seed's mean accuracy / mean rank; ``table_sd``: the per-table standard
        deviation over seeds, averaged over tables; ``table_range``: the
        largest max − min over seeds on any table. ``averaged``: scores of the
        per-table mean over seeds.

    Raises:
        ValueError: fewer than two seeds, ``headline`` not among ``methods``,
            or no data set with every number.
    """
    from keras_kare.reproduce.uci_recipes import headline as default_headline

    methods = list(methods)
    seeds = list(per_seed)
    if len(seeds) < 2:
        raise ValueError(f"need two or more seeds, received {len(seeds)}.")
    head = headline or default_headline(methods)
    if head not in methods:
        raise ValueError(f"headline {head!r} is not among the methods {methods}.")
    cube, datasets = accuracy_cube(per_seed, methods, key)
    complete = np.isfinite(cube).all(axis=(0, 2))
    if not complete.any():
        raise ValueError("no data set has a number for every method on every seed.")
    acc = 100.0 * cube[:, complete, :]
    per_seed_out = {}
    means, ranks = acc.mean(axis=1), np.array([_ranks(a) for a in acc])  # seeds × methods
    for s, seed in enumerate(seeds):
        per_seed_out[seed] = {
            m: {"mean": float(means[s, k]), "rank": float(ranks[s, k])} for k, m in enumerate(methods)
        }
    sd_over_seeds = acc.std(axis=0, ddof=1)  # data sets × methods
    span = acc.max(axis=0) - acc.min(axis=0)
    over = {
        m: {
            "mean": float(means[:, k].mean()),
            "mean_sd": float(means[:, k].std(ddof=1)),
            "rank": float(ranks[:, k].mean()),
            "rank_sd": float(ranks[:, k].std(ddof=1)),
            "table_sd": float(sd_over_seeds[:, k].mean()),
            "table_range": float(span[:, k].max()),
        }
        for k, m in enumerate(methods)
    }
    avg = acc.mean(axis=0)  # data sets × methods
    spread_names = [n for n, ok in zip(datasets, complete) if ok]
    avg_ranks = _ranks(avg)
    averaged = {m: {"mean": float(avg[:, k].mean()), "rank": float(avg_ranks[k])} for k, m in enumerate(methods)}
    a = methods.index(head)
    pairs = []
    for k, m in enumerate(methods):
        if k == a:
            continue
        diff = means[:, a] - means[:, k]
        c = paired_comparison(avg[:, a], avg[:, k], head, m, higher_is_better=True, unit="data sets")
        pairs.append(
            {
                "b": m,
                "per_seed_difference": [float(x) for x in diff],
                "seeds_ahead": int((diff > 0).sum()),
                "seeds_behind": int((diff < 0).sum()),
                **c,
            }
        )
    return {
        "key": key,
        "seeds": seeds,
        "methods": methods,
        "headline": head,
        "datasets": spread_names,
        "dropped": [n for n, ok in zip(datasets, complete) if not ok],
        "per_seed": per_seed_out,
        "over_seeds": over,
        "averaged": averaged,
        "per_table": {n: dict(zip(methods, map(float, row))) for n, row in zip(spread_names, avg)},
        "pairs": pairs,
    }


def seed_spread_markdown(spread: dict, labels: Optional[dict] = None) -> str:
    """Two markdown tables of :func:`seed_spread`'s result: scores per seed and over seeds, then the headline's pairs.

    Args:
        spread: the dict :func:`seed_spread` returns.
        labels: display names of the methods (default: the run's method labels).

    Returns:
        The tables and a one-line footnote (protocol, data sets used and dropped).
    """
    if labels is None:
        from keras_kare.reproduce.baselines import BASELINE_LABELS
        from keras_kare.reproduce.results import METHOD_LABELS

        labels = {**BASELINE_LABELS, **METHOD_LABELS}
    seeds, methods = spread["seeds"], spread["methods"]
    name = {m: labels.get(m, m) for m in methods}
    seed_cols = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        f"| method | mean accuracy (%): {seed_cols} | mean ± SD over seeds | mean rank: {seed_cols} | "
        "rank ± SD over seeds | seed-averaged accuracy: mean (rank) | per-table SD over seeds | "
        "largest per-table range |",
        "|---|" + "---|" * (2 * len(seeds) + 5),
    ]
    for m in methods:
        o, av = spread["over_seeds"][m], spread["averaged"][m]
        acc = " | ".join(f"{spread['per_seed'][s][m]['mean']:.2f}" for s in seeds)
        rk = " | ".join(f"{spread['per_seed'][s][m]['rank']:.2f}" for s in seeds)
        lines.append(
            f"| {name[m]} | {acc} | {o['mean']:.2f} ± {o['mean_sd']:.2f} | {rk} | "
            f"{o['rank']:.2f} ± {o['rank_sd']:.2f} | {av['mean']:.2f} ({av['rank']:.2f}) | "
            f"{o['table_sd']:.2f} | {o['table_range']:.1f} |"
        )
    head = name[spread["headline"]]
    lines += [
        "",
        f"| {head} against | mean difference per seed (points) | seeds ahead / behind | seed-averaged: data sets won / "
        "tied / lost | mean difference [95% CI] | sign test p |",
        "|---|---|---|---|---|---|",
    ]
    for p in spread["pairs"]:
        per = ", ".join(f"{d:+.2f}" for d in p["per_seed_difference"])
        lines.append(
            f"| {name[p['b']]} | {per} | {p['seeds_ahead']} / {p['seeds_behind']} | {p['wins_a']} / {p['ties']} / "
            f"{p['wins_b']} | {p['mean_difference']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}] | "
            f"{p['sign_test_p']:.3g} |"
        )
    dropped = f"; dropped (a number missing on some seed): {', '.join(spread['dropped'])}" if spread["dropped"] else ""
    lines += ["", f"{spread['key']} protocol, {len(spread['datasets'])} data sets, seeds {seeds}{dropped}."]
    return "\n".join(lines)


def spread_against_reference(spread: dict, reference) -> dict:
    """The seed-averaged accuracies of :func:`seed_spread` scored in the paper's Table 1 form.

    Args:
        spread: the dict :func:`seed_spread` returns.
        reference: ``delgado_results.txt`` (Fernández-Delgado et al.'s 179 classifiers).

    Returns:
        :func:`~keras_kare.reproduce.reference.score_against_reference`'s scores of
        the spread's methods among the reference classifiers, on the spread's data sets.
    """
    from keras_kare.reproduce.reference import load_reference, score_against_reference

    key = spread["key"]
    per = [
        {"dataset": name, "accuracy": {m: {key: value / 100.0} for m, value in accs.items()}}
        for name, accs in spread["per_table"].items()
    ]
    return score_against_reference(per, spread["methods"], load_reference(reference), key=key)
