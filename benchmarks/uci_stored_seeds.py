"""How far the UCI comparison moves with the seed, from stored per-table results instead of run folders.

``benchmarks/uci_seeds.py`` compares the run folders of ``keras-kare
reproduce uci`` runs that differ only in ``--seed``. The paper's grid takes
hours per seed, so its runs were made piecewise (some methods in one run, the
others in another, a few tables at a time) and only their per-table summaries
are kept under ``benchmarks/results/``. This script puts those summaries
together per seed and prints the same comparison: mean accuracy and Friedman
rank of every method on every seed, their spread, and the headline recipe
paired against every other method (:func:`keras_kare.reproduce.seeds.seed_spread`).

Each ``--source SEED:PATH`` is a stored JSON (``SEED:PATH@METHOD,METHOD``: only
those methods of it), either a per-table summary
(``{"per_table": {table: {"accuracy": {method: {"validated": ...}}}}}``) or a
``uci_seeds.py --out`` JSON (``{"results": {seed: rows}}``, read at the same
seed). A method a table already has from an earlier source keeps that number;
the number of such overlaps, and how many of them differ, is printed.

    python benchmarks/uci_stored_seeds.py \\
        --source 0:benchmarks/results/uci_paper_grid_vs.json --source 0:benchmarks/results/uci_paper_grid_es0.json \\
        --source 0:benchmarks/results/uci_paper_grid_ntk_init.json \\
        --source 0:benchmarks/results/uci_seeds.json@svc,rf \\
        --source 1:benchmarks/results/uci_paper_grid_seed1.json \\
        --methods ensemble_es0,kare_es0,after_kernel_es0,dnn_es0,kare,after_kernel,dnn,ntk_init,svc,rf,krr-rbf \\
        --reference DATA/uci-reference/delgado_results.txt --out benchmarks/results/uci_paper_grid_two_seeds.json

Only tables with a number for every method on every seed are compared (the
others are listed as dropped); ``--datasets`` narrows the comparison to a
subset, e.g. the larger tables. Reads stored numbers only: seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional


def _source(text: str) -> tuple[int, Path, Optional[set]]:
    seed, sep, rest = text.partition(":")
    path, at, only = rest.partition("@")
    methods = {m.strip() for m in only.split(",") if m.strip()}
    if not sep or not seed.strip().lstrip("-").isdigit() or not path or (at and not methods):
        raise argparse.ArgumentTypeError(
            f"expected SEED:PATH or SEED:PATH@METHOD,METHOD (e.g. 0:results.json@svc,rf), received {text!r}."
        )
    return int(seed), Path(path), methods or None


def stored_rows(data: dict, seed: int, key: str) -> dict:
    """``{table: {"<method>_<key>": fraction}}`` of one stored JSON at ``seed`` (see the module docstring)."""
    if isinstance(data.get("per_table"), dict):
        return {
            name: {f"{m}_{key}": acc.get(key) for m, acc in entry.get("accuracy", {}).items() if isinstance(acc, dict)}
            for name, entry in data["per_table"].items()
        }
    results = data.get("results")
    if isinstance(results, dict):
        rows = results.get(str(seed), results.get(seed))
        if rows is None:
            raise ValueError(f"the uci_seeds.py JSON has no seed {seed}; it has {', '.join(map(str, results))}.")
        return {r["dataset"]: {k: v for k, v in r.items() if k.endswith(f"_{key}")} for r in rows}
    raise ValueError("expected a per-table summary ('per_table') or a uci_seeds.py JSON ('results').")


def merge_sources(sources, key: str = "validated") -> tuple[dict, dict]:
    """``({seed: results rows}, overlap counts)`` from ``(seed, parsed JSON, methods or None)``; earlier sources win.

    ``methods``: take only these methods from that source (None: all it has).
    """
    per_seed: dict = {}
    overlap = {"entries": 0, "differ": 0}
    for seed, data, methods in sources:
        tables = per_seed.setdefault(seed, {})
        wanted = None if methods is None else {f"{m}_{key}" for m in methods}
        for name, values in stored_rows(data, seed, key).items():
            row = tables.setdefault(name, {"dataset": name})
            for k, v in values.items():
                if wanted is not None and k not in wanted:
                    continue
                if k in row:
                    overlap["entries"] += 1
                    overlap["differ"] += row[k] != v
                else:
                    row[k] = v
    return {seed: list(tables.values()) for seed, tables in per_seed.items()}, overlap


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", action="append", type=_source, required=True, help="SEED:PATH or SEED:PATH@METHODS, repeatable"
    )
    parser.add_argument("--methods", required=True, help="comma-separated methods compared (ranks are among them)")
    parser.add_argument("--datasets", help="comma-separated tables compared (default: every table the sources share)")
    parser.add_argument("--headline", help="the method paired against every other (default: the best recipe named)")
    parser.add_argument("--key", choices=("validated", "paper"), default="validated")
    parser.add_argument("--reference", type=Path, help="delgado_results.txt: also rank the seed-averaged accuracies")
    parser.add_argument("--out", type=Path, help="JSON file to write")
    args = parser.parse_args(argv)

    from uci_seeds import finish  # the sibling script (this folder is on the path when run as a script)

    from keras_kare.reproduce.seeds import seed_spread, seed_spread_markdown

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    loaded = [(seed, json.loads(path.read_text()), only) for seed, path, only in args.source]
    per_seed, overlap = merge_sources(loaded, args.key)
    if args.datasets:
        wanted = [d.strip() for d in args.datasets.split(",") if d.strip()]
        missing = sorted(set(wanted) - {row["dataset"] for rows in per_seed.values() for row in rows})
        if missing:
            parser.error(f"--datasets names tables no source has: {', '.join(missing)}")
        per_seed = {seed: [row for row in rows if row["dataset"] in wanted] for seed, rows in per_seed.items()}
    print(f"numbers given by two sources: {overlap['entries']}, of which differ: {overlap['differ']} (first kept)\n")
    spread = seed_spread(per_seed, methods, key=args.key, headline=args.headline)
    print(seed_spread_markdown(spread))
    out = {
        "sources": [
            f"{seed}:{path.as_posix()}" + (f"@{','.join(sorted(only))}" if only else "")
            for seed, path, only in args.source
        ],
        "overlap": overlap,
        "spread": spread,
        "results": per_seed,
    }
    return finish(out, spread, args.reference, args.out)


if __name__ == "__main__":
    main()
