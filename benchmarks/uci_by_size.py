"""Does a UCI comparison depend on the table's size? Per-table differences against rows, no size bins.

Reads a ``benchmarks/uci_stored_seeds.py --out`` JSON (per-seed validated
accuracies of several methods on the same tables) and the tables' row counts
from per-table summaries (``{"per_table": {table: {"n_examples": ...}}}``, e.g.
``benchmarks/results/uci_paper_grid_seed1.json``; or ``"rows"``). For the
headline method against each ``--against`` method: the per-table difference
of seed-averaged accuracies (points), its range over seeds, and Spearman's
rank correlation between the table's rows and that difference with a
permutation p-value (:func:`keras_kare.reproduce.stats.rank_correlation`). A
positive ρ means the headline's lead grows with the table's size. Prints a
table; writes JSON (``--out``) and, with matplotlib, one PNG panel per method compared (``--plot``).

    python benchmarks/uci_by_size.py \\
        --comparison benchmarks/results/uci_paper_grid_two_seeds_all.json \\
        --sizes benchmarks/results/uci_paper_grid_seed1.json \\
        --against after_kernel,dnn,krr-rbf,ntk_init \\
        --out benchmarks/results/uci_by_size.json --plot docs/uci_by_size.png

Reads stored numbers only: seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from keras_kare.reproduce.baselines import BASELINE_LABELS
from keras_kare.reproduce.results import METHOD_LABELS
from keras_kare.reproduce.stats import rank_correlation

LABELS = {**METHOD_LABELS, **BASELINE_LABELS}


def table_sizes(paths) -> dict:
    """``{table: rows}`` from per-table summaries; a table's first source wins."""
    sizes = {}
    for path in paths:
        per = json.loads(Path(path).read_text()).get("per_table")
        if not isinstance(per, dict):
            raise ValueError(f"{path}: expected a per-table summary with a 'per_table' mapping.")
        for name, entry in per.items():
            rows = entry.get("n_examples", entry.get("rows"))
            if rows is not None:
                sizes.setdefault(name, int(rows))
    return sizes


def differences(comparison: dict, headline: str, method: str, key: str = "validated") -> dict:
    """``{table: [headline − method per seed, in points]}`` from a ``uci_stored_seeds.py`` JSON."""
    out = {}
    for seed in sorted(comparison["results"], key=int):
        for row in comparison["results"][seed]:
            a, b = row.get(f"{headline}_{key}"), row.get(f"{method}_{key}")
            if a is None or b is None:
                raise ValueError(f"seed {seed}, table {row['dataset']}: no {key} accuracy of {headline} or {method}.")
            out.setdefault(row["dataset"], []).append(100.0 * (a - b))
    return out


def by_size(comparison: dict, sizes: dict, against, key: str = "validated") -> dict:
    """Per method compared: the tables by size, their seed-averaged differences and ranges, ρ and p."""
    headline = comparison["spread"]["headline"]
    result = {"headline": headline, "key": key, "methods": {}}
    for method in against:
        diff = differences(comparison, headline, method, key)
        missing = sorted(set(diff) - set(sizes))
        if missing:
            raise ValueError(f"no row count for {', '.join(missing)}: pass a --sizes summary that has them.")
        tables = sorted(diff, key=lambda t: (sizes[t], t))
        mean = [float(np.mean(diff[t])) for t in tables]
        corr = rank_correlation([sizes[t] for t in tables], mean)
        result["methods"][method] = {
            "tables": tables,
            "rows": [sizes[t] for t in tables],
            "difference": mean,
            "low": [float(min(diff[t])) for t in tables],
            "high": [float(max(diff[t])) for t in tables],
            **corr,
        }
    return result


def plot(result: dict, path: Path) -> bool:
    """One panel per method compared; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    methods = list(result["methods"])
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.4), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods):
        r = result["methods"][method]
        rows, d = np.array(r["rows"]), np.array(r["difference"])
        ax.vlines(rows, r["low"], r["high"], color="0.7", lw=1)
        ax.scatter(rows, d, s=14, color=np.where(d > -1e-9, "tab:blue", "tab:red"), zorder=3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("rows of the table")
        ax.set_title(f"minus {LABELS.get(method, method)}\nSpearman ρ = {r['rho']:+.2f}, p = {r['p']:.2g}", fontsize=9)
    axes[0][0].set_ylabel(f"{result['headline']} minus method (points)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comparison", required=True, help="a uci_stored_seeds.py --out JSON")
    parser.add_argument("--sizes", required=True, action="append", help="per-table summary JSON(s) with row counts")
    parser.add_argument("--against", default="after_kernel,dnn,krr-rbf,ntk_init", help="comma-separated methods")
    parser.add_argument("--key", choices=("validated", "paper"), default="validated")
    parser.add_argument("--out", help="JSON file to write")
    parser.add_argument("--plot", help="PNG file to write (needs matplotlib)")
    args = parser.parse_args(argv)
    against = [m.strip() for m in args.against.split(",") if m.strip()]
    if not against:
        parser.error(f"--against: expected comma-separated method names, received {args.against!r}.")
    comparison = json.loads(Path(args.comparison).read_text())
    try:
        result = by_size(comparison, table_sizes(args.sizes), against, args.key)
    except ValueError as err:
        parser.error(str(err))
    head = LABELS.get(result["headline"], result["headline"])
    print(f"| {head} minus | tables | Spearman ρ (rows, difference) | permutation p |")
    print("|---|---|---|---|")
    for method, r in result["methods"].items():
        rho = "undefined (a constant column)" if np.isnan(r["rho"]) else f"{r['rho']:+.3f}"
        print(f"| {LABELS.get(method, method)} | {r['n']} | {rho} | {r['p']:.3g} |")
    if args.out:
        result["command"] = "python benchmarks/uci_by_size.py " + " ".join(sys.argv[1:] if argv is None else argv)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
        print("wrote", args.out)
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        print("wrote" if plot(result, Path(args.plot)) else "no plot (matplotlib is not installed):", args.plot)


if __name__ == "__main__":
    main()
