"""How much of a UCI table's time is first-use cost (tracing, XLA compilation) rather than training?

``keras-kare reproduce uci`` trains every configuration of one architecture
through one compiled model (:class:`~keras_kare.TrainerPool`), so a table pays
tracing and compilation once per architecture and row count: for the paper's
recipe (KARE on the training rows, the DNN), for the early-stopping recipes
(their own row count: the training rows less the held-out fifth), for the
folds, and once per network for its compiled NTK Gram. This script measures
that cost in one single-threaded process (what a ``--jobs`` worker is), on a
table of ``--uci-dir``:

- ``phases``: for a few architectures, each step of a configuration's trial
  the first time and again with the same pool: a 300-step full-batch KARE
  training, the same early-stopped on a held-out fifth, a 400-pass DNN
  training (batch 32), and the kernel regression path of each trained
  network. The difference is that step's first-use cost.
- ``table``: the table's whole grid (validated protocol, ``--depths`` x the
  paper's widths and learning rates) through ``run_dataset`` twice with one
  shared pool, once per recipe set of ``--recipes``: the first pass pays every
  trace, the second none, so their difference is the table's first-use cost
  and the second pass what a run could cost at best if nothing were traced.

    python benchmarks/bench_first_use.py --uci-dir DATA/uci-dev --table haberman-survival \\
        --depths 1,3,5 --out benchmarks/results/first_use.json

Prints markdown tables and writes JSON. Never run alongside other jobs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
import warnings

for _var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # a --jobs worker's threading, before TensorFlow starts
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ARCHITECTURES = ((1, 32), (3, 128), (5, 512))
RIDGES = [10.0**k for k in range(-4, 5)]
ES_RECIPES = "kare_es0,dnn_es0,ensemble_es0"


def _quiet(msg: str) -> None:
    pass


def _one_thread():
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def phases(ds, log) -> list[dict]:
    """Seconds of each step of one configuration's trial, first use and again (same pool), per architecture."""
    from keras_kare.callbacks import KernelRidgeEarlyStopping
    from keras_kare.initializers import build_mlp
    from keras_kare.reproduce.runner import krr_path, train_dnn, train_kare
    from keras_kare.reproduce.uci_protocol import ES_EVALUATIONS, ES_PATIENCE, inner_split, split
    from keras_kare.trainer_pool import TrainerPool

    x, y, _, x_ev, y_ev, _ = split(ds, None)
    y_fit = y if y.ndim > 1 else y[:, None]
    fit, held = inner_split(len(x), seed=0)
    pool = TrainerPool()
    rows = []
    for depth, width in ARCHITECTURES:
        net = functools.partial(build_mlp, x.shape[1], depth, width, y_fit.shape[1], seed=0)
        for use in ("first", "again"):
            took = {}
            t = time.perf_counter()
            model, _ = train_kare(net(), x, y_fit, 0.1, 1.0, 300, None, _quiet, pool=pool)
            took["kare"] = time.perf_counter() - t
            t = time.perf_counter()
            krr_path(model, x, y, x_ev, y_ev, RIDGES)
            took["kare_krr"] = time.perf_counter() - t
            stop = KernelRidgeEarlyStopping(
                x[fit], y_fit[fit], (x[held], y_fit[held]), patience=ES_PATIENCE, every_n_epochs=300 // ES_EVALUATIONS,
                kernel="summed_output", include_initial=True,
            )  # fmt: skip
            t = time.perf_counter()
            train_kare(net(), x[fit], y_fit[fit], 0.1, 1.0, 300, None, _quiet, pool=pool, callbacks=[stop])
            took["kare_es"] = time.perf_counter() - t
            t = time.perf_counter()
            model, _ = train_dnn(net(), x, y_fit, 0.01, 400, min(32, len(x)), _quiet, pool=pool)
            took["dnn"] = time.perf_counter() - t
            t = time.perf_counter()
            krr_path(model, x, y, x_ev, y_ev, RIDGES)
            took["dnn_krr"] = time.perf_counter() - t
            rows.append({"depth": depth, "width": width, "n": len(x), "use": use, "seconds": took})
            log(f"{depth}x{width} {use}: " + ", ".join(f"{k} {v:.2f} s" for k, v in took.items()))
    return rows


def table(ds, data_dir: str, depths: list, recipes: list, log) -> list[dict]:
    """The table's grid twice with one pool, per recipe set: seconds of the first pass and of the second."""
    from keras_kare.reproduce.experiments import UCI_KARE_LRS, make_settings
    from keras_kare.reproduce.uci_protocol import neural_trial, run_dataset
    from keras_kare.reproduce.uci_recipes import resolve_recipes
    from keras_kare.trainer_pool import TrainerPool

    out = []
    for names in recipes:
        paper = names == "none"
        s = make_settings(
            "uci", data_dir=data_dir, protocol="validated", depths=depths,
            recipes=[] if paper else names.split(","), paper_methods=paper,
        )  # fmt: skip
        s["recipes"] = resolve_recipes(s)
        pool = TrainerPool()
        trial = functools.partial(neural_trial, pool=pool, log=_quiet)
        took = []
        for _ in range(2):
            t = time.perf_counter()
            res = run_dataset(ds, s, UCI_KARE_LRS, log=_quiet, trial=trial)
            took.append(time.perf_counter() - t)
        records = len(res["configs"]) + len(res.get("fold_configs", []))
        out.append(
            {"recipes": names, "first_s": took[0], "again_s": took[1], "records": records, "builds": pool.builds}
        )
        log(f"{names}: first pass {took[0]:.1f} s, again {took[1]:.1f} s ({pool.builds} compiled models)")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--uci-dir", required=True, help="the collection (Fernández-Delgado's layout)")
    p.add_argument("--table", default="haberman-survival", help="the table to measure (default: haberman-survival)")
    p.add_argument("--depths", default="1,2,3,4,5", help="depths of the grid the table part runs (default: 1-5)")
    p.add_argument(
        "--recipes", default=f"none;{ES_RECIPES}",
        help=f"recipe sets of the table part, ';'-separated; 'none': the paper's recipe (default: none;{ES_RECIPES})",
    )  # fmt: skip
    p.add_argument("--parts", default="phases,table", help="phases, table or both (default: both)")
    p.add_argument("--out", help="write JSON here")
    a = p.parse_args(argv)
    parts = a.parts.split(",")
    if not set(parts) <= {"phases", "table"}:
        raise SystemExit(f"--parts: received {a.parts!r}, expected phases, table or both.")
    warnings.filterwarnings("ignore")  # the jitter-ladder notes of diverging configurations
    _one_thread()
    from keras_kare.datasets.uci import load_uci

    ds = load_uci(a.uci_dir, a.table)
    log = lambda s: print(s, flush=True)  # noqa: E731
    result = {"table": a.table, "rows": len(ds.x)}
    if "phases" in parts:
        result["phases"] = phases(ds, log)
        print(f"\n{a.table}: one configuration's trial, seconds the first time / again (same pool)\n")
        keys = list(result["phases"][0]["seconds"])
        print("| architecture | n | " + " | ".join(keys) + " | first-use cost, s |")
        print("|---|---|" + "---|" * (len(keys) + 1))
        for first, again in zip(result["phases"][::2], result["phases"][1::2]):
            f, g = first["seconds"], again["seconds"]
            cells = " | ".join(f"{f[k]:.2f} / {g[k]:.2f}" for k in keys)
            extra = sum(f.values()) - sum(g.values())
            print(f"| {first['depth']}x{first['width']} | {first['n']} | {cells} | {extra:.1f} |")
    if "table" in parts:
        depths = [int(d) for d in a.depths.split(",")]
        result["depths"] = depths
        result["table_runs"] = table(ds, a.uci_dir, depths, a.recipes.split(";"), log)
        print(f"\n{a.table} ({len(ds.x)} rows), grid depths {a.depths} x 5 widths x 4 learning rates, validated\n")
        print("| recipes | first pass, s | again, s | first-use share |")
        print("|---|---|---|---|")
        for r in result["table_runs"]:
            share = 1 - r["again_s"] / r["first_s"]
            print(f"| {r['recipes']} | {r['first_s']:.0f} | {r['again_s']:.0f} | {100 * share:.0f} % |")
    if a.out:
        meta = dict(machine=platform.processor() or platform.machine(), python=platform.python_version())
        args = {k: v for k, v in vars(a).items() if k not in ("uci_dir", "out")}  # no machine paths
        with open(a.out, "w") as f:
            json.dump(dict(meta=meta, args=args, **result), f, indent=1)


if __name__ == "__main__":
    main()
