"""How far the UCI comparison moves with the seed: several ``keras-kare reproduce uci`` runs, one per ``--seed``.

Give it the folders of runs that differ only in ``--seed`` (the same tables,
grid, protocol, recipes and baselines). It prints, per method, the validated
mean accuracy and Friedman rank among the run's methods on every seed, their
spread over seeds and per table, and the headline recipe paired against every
other method, seed by seed and on the seed-averaged accuracies
(:func:`keras_kare.reproduce.seeds.seed_spread`); with ``--reference`` also the
seed-averaged accuracies in the paper's Table 1 form among Fernández-Delgado et
al.'s 179 classifiers. Writes JSON (with every run's per-table ``results.json`` rows, so the
comparison can be redone without the run folders).

    for s in 0 1 2; do keras-kare reproduce uci --data-dir DATA/uci-dev --datasets ... --seed $s --out runs/seed$s; done
    python benchmarks/uci_seeds.py runs/seed0 runs/seed1 runs/seed2 \
        --reference DATA/uci-reference/delgado_results.txt --out benchmarks/results/uci_seeds.json

With ``--combine`` the methods of an earlier comparison's JSON are put beside
the runs' (the same seeds, tables and settings but recipes and baselines), e.g. a
cheap control run later, ``--recipes ntk_init --no-paper-methods``, beside the
stored recipes:

    python benchmarks/uci_seeds.py runs/init0 runs/init1 runs/init2 \
        --combine benchmarks/results/uci_seeds.json --out combined.json

Reads the runs' outputs only: seconds, whatever the runs cost.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of keras-kare reproduce uci, one per seed")
    parser.add_argument(
        "--key", choices=("validated", "paper"), default="validated", help="protocol (default: validated)"
    )
    parser.add_argument("--reference", type=Path, help="delgado_results.txt: also rank the seed-averaged accuracies")
    parser.add_argument("--out", type=Path, help="JSON file to write")
    parser.add_argument(
        "--headline",
        help="the method paired against every other (default: the run's best honest recipe, ensemble_es0, else "
        "ensemble_vs, else ensemble_es, else NTK-KARE)",
    )
    parser.add_argument(
        "--combine", type=Path, help="an earlier --out JSON of this script: its methods beside the runs' (same seeds)"
    )
    parser.add_argument(
        "--keep-stored",
        action="store_true",
        help="with --combine: methods in both (e.g. the paper's, rerun by recipes that read its trainings) keep the "
        "stored numbers; how many of them the runs have otherwise is printed",
    )
    args = parser.parse_args(argv)

    from keras_kare.reproduce.seeds import (
        combine_runs,
        load_seed_comparison,
        load_uci_runs,
        seed_spread,
        seed_spread_markdown,
        uci_methods,
    )

    settings, per_seed = load_uci_runs(args.runs)
    if args.combine is not None:
        settings, per_seed = combine_runs(
            load_seed_comparison(args.combine), (settings, per_seed), keep_first=args.keep_stored
        )
        if args.keep_stored:
            o = settings["overlap"]
            print(
                f"methods in both: {o['entries']} numbers, the stored ones kept; the runs differ on {o['differ']} "
                f"(at most {o['max_abs_difference']:.4f})\n"
            )
    spread = seed_spread(per_seed, uci_methods(settings), key=args.key, headline=args.headline)
    print(seed_spread_markdown(spread))
    out = {"runs": [str(r) for r in args.runs], "settings": settings, "spread": spread, "results": per_seed}
    if args.combine is not None:
        out["combined_with"] = str(args.combine)
    return finish(out, spread, args.reference, args.out)


def finish(out: dict, spread: dict, reference=None, path=None) -> dict:
    """With ``reference`` also print and keep the seed-averaged Table 1 form; write ``out`` to ``path`` if given."""
    if reference is not None:
        from keras_kare.reproduce.reference import reference_table
        from keras_kare.reproduce.seeds import spread_against_reference

        scores = spread_against_reference(spread, reference)
        print("\nSeed-averaged accuracies in the paper's Table 1 form:\n")
        print(reference_table(scores))
        out["reference"] = scores
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1, default=float))
        print(f"\nwrote {path}")
    return out


if __name__ == "__main__":
    main()
