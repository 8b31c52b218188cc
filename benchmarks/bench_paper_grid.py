"""What does the paper's UCI grid cost on this machine, and how close to the hardware does a KARE step run?

``keras-kare reproduce uci`` with its default (paper) grid trains, per data
set, 25 architectures (depth 1-5 x width 32-512) x 4 learning rates, each
once with KARE (300 full-batch steps on the ``conxuntos.dat`` training half)
and once as a DNN (400 passes, batch 32), before the folds, the kernel
regressions and the baselines. This script measures, in one single-threaded
process (what a ``--jobs`` worker is), through the runner's own
``train_kare`` / ``train_dnn`` with a :class:`~keras_kare.TrainerPool`:

- the seconds per KARE step of every architecture at a few training sizes
  (``--sizes``) and a training's fixed cost (two training lengths), after
  the first (tracing) training of each;
- the float32/float64 matrix-product FLOPs of that step, counted on its
  traced graph, so the table shows the step's achieved GFLOP/s beside the
  machine's own float32 matmul rate: how much a faster implementation of
  the same arithmetic could still buy;
- the seconds per DNN SGD step of every architecture (batch 32) and the
  first training's extra cost (XLA compilation).

From these it projects the grid's KARE and DNN training time for every
data set of ``--uci-dir`` (the ``--tables`` smallest), interpolating the step
time log-log in the training size, and the wall time of ``--jobs`` workers
(longest tables first). The projection leaves out the folds, kernel
regressions and baselines, so a real run takes longer: it is a lower bound
of the run's cost, and its per-table figures can be checked against a run's
log.

    python benchmarks/bench_paper_grid.py --uci-dir DATA/uci-dev --out benchmarks/results/paper_grid.json

Prints markdown tables and writes JSON. Never run alongside other jobs.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import time

for _var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # a --jobs worker's threading, before TensorFlow starts
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEPTHS = (1, 2, 3, 4, 5)
WIDTHS = (32, 64, 128, 256, 512)
LRS_PER_ARCH = 4
KARE_STEPS, DNN_PASSES, DNN_BATCH = 300, 400, 32
FEATURES, OUTPUTS = 16, 2  # the synthetic stand-in's shape (the tables' own d and C change the first/last layer only)


def _matmul_flops(graph, totals: dict) -> dict:
    """Multiply-add FLOPs (2 per multiply-add) of every MatMul in ``graph`` and its nested functions, by dtype."""
    for op in graph.get_operations():
        if op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            a, out = op.inputs[0], op.outputs[0]
            transposed = op.get_attr("transpose_a") if op.type == "MatMul" else op.get_attr("adj_x")
            inner = int(a.shape[-2] if transposed else a.shape[-1])
            totals[out.dtype.name] = totals.get(out.dtype.name, 0) + 2 * int(np.prod(out.shape)) * inner
    for fn in graph._functions.values():
        _matmul_flops(fn.graph, totals)
    return totals


def _peak_gflops(tf) -> float:
    a = tf.random.normal((1024, 1024))
    f = tf.function(lambda a: tf.matmul(a, a))
    f(a).numpy()
    t = time.perf_counter()
    for _ in range(10):
        f(a).numpy()
    return 2 * 1024**3 * 10 / (time.perf_counter() - t) / 1e9


def measure(sizes, steps: int, dnn_passes: int, log) -> dict:
    import keras
    import tensorflow as tf

    from keras_kare import KAREModel
    from keras_kare.initializers import build_mlp
    from keras_kare.reproduce.runner import train_dnn, train_kare
    from keras_kare.trainer_pool import TrainerPool

    quiet = lambda s: None  # noqa: E731
    rng = np.random.default_rng(0)
    out = {"peak_matmul_gflops": _peak_gflops(tf), "kare": [], "dnn": []}
    for depth in DEPTHS:
        for width in WIDTHS:
            for n in sizes:
                x = rng.normal(size=(n, FEATURES)).astype("float32")
                y = np.eye(OUTPUTS, dtype="float32")[np.arange(n) % OUTPUTS]
                pool = TrainerPool()
                net = functools.partial(build_mlp, FEATURES, depth, width, OUTPUTS)
                t = time.perf_counter()
                train_kare(net(seed=0), x, y, 0.1, 1e-3, 2, pool=pool, kernel="summed_output", log=quiet)
                first = time.perf_counter() - t
                took = []
                for i, k in enumerate((steps, 3 * steps)):  # two lengths: a training's fixed cost and its steps'
                    t = time.perf_counter()
                    train_kare(net(seed=1 + i), x, y, 0.1, 1e-3, k, pool=pool, kernel="summed_output", log=quiet)
                    took.append(time.perf_counter() - t)
                per_step = max((took[1] - took[0]) / (2 * steps), 1e-9)
                fixed = max(took[0] - steps * per_step, 0.0)
                model = KAREModel(net(seed=2), ridge=0.1, kernel="summed_output")
                model.compile(optimizer=keras.optimizers.SGD(1e-3), jit_compile=False)
                model.build((None, FEATURES))
                graph = (
                    tf.function(model.train_step)
                    .get_concrete_function((tf.TensorSpec((n, FEATURES)), tf.TensorSpec((n, OUTPUTS))))
                    .graph
                )
                flops = _matmul_flops(graph, {})
                row = dict(depth=depth, width=width, n=n, first_s=first, fixed_s=fixed, step_s=per_step, flops=flops)
                row["gflops"] = sum(flops.values()) / per_step / 1e9
                out["kare"].append(row)
                log(f"kare {depth}x{width} n={n}: {per_step * 1e3:.2f} ms/step, {row['gflops']:.1f} GFLOP/s")
            n = 8 * DNN_BATCH
            x = rng.normal(size=(n, FEATURES)).astype("float32")
            y = np.eye(OUTPUTS, dtype="float32")[np.arange(n) % OUTPUTS]
            pool = TrainerPool()
            t = time.perf_counter()
            train_dnn(
                build_mlp(FEATURES, depth, width, OUTPUTS, seed=0), x, y, 1e-3, dnn_passes, DNN_BATCH, quiet, pool=pool
            )
            first = time.perf_counter() - t
            t = time.perf_counter()
            train_dnn(
                build_mlp(FEATURES, depth, width, OUTPUTS, seed=1), x, y, 1e-3, dnn_passes, DNN_BATCH, quiet, pool=pool
            )
            per_step = (time.perf_counter() - t) / (dnn_passes * n // DNN_BATCH)
            out["dnn"].append(
                dict(depth=depth, width=width, first_extra_s=first - per_step * dnn_passes * 8, step_s=per_step)
            )
            log(
                f"dnn {depth}x{width}: {per_step * 1e3:.3f} ms/step, "
                f"first training +{out['dnn'][-1]['first_extra_s']:.1f}s"
            )
    return out


def _interp_log(n: float, ns, ts) -> float:
    """Step time at ``n`` rows, piecewise linear in log-log (the end segments extended)."""
    ln, lns, lts = math.log(max(n, 1)), np.log(ns), np.log(ts)
    i = int(np.clip(np.searchsorted(lns, ln) - 1, 0, len(ns) - 2))
    slope = (lts[i + 1] - lts[i]) / (lns[i + 1] - lns[i])
    return float(math.exp(lts[i] + slope * (ln - lns[i])))


def project(measured: dict, tables: list[dict], jobs: int) -> dict:
    rows = []
    for tab in tables:
        n = tab["grid_rows"]
        kare = dnn = 0.0
        for depth in DEPTHS:
            for width in WIDTHS:
                ks = [r for r in measured["kare"] if r["depth"] == depth and r["width"] == width]
                step = _interp_log(n, [r["n"] for r in ks], [r["step_s"] for r in ks])
                fixed = _interp_log(n, [r["n"] for r in ks], [max(r["fixed_s"], 1e-6) for r in ks])
                kare += LRS_PER_ARCH * (KARE_STEPS * step + fixed) + ks[0]["first_s"]
                d = next(r for r in measured["dnn"] if r["depth"] == depth and r["width"] == width)
                batches = math.ceil(n / min(DNN_BATCH, n))
                dnn += LRS_PER_ARCH * DNN_PASSES * batches * d["step_s"] + max(0.0, d["first_extra_s"])
        rows.append(dict(tab, kare_s=kare, dnn_s=dnn, total_s=kare + dnn))
    loads = [0.0] * jobs
    for r in sorted(rows, key=lambda r: -r["total_s"]):
        loads[int(np.argmin(loads))] += r["total_s"]
    return {"tables": rows, "one_core_s": sum(r["total_s"] for r in rows), "wall_s": max(loads), "jobs": jobs}


def _tables(uci_dir: str, count: int) -> list[dict]:
    from keras_kare.datasets.uci import list_uci_datasets, load_uci

    out = []
    for name in list_uci_datasets(uci_dir):
        ds = load_uci(uci_dir, name)
        out.append(
            dict(name=name, rows=len(ds.x), features=ds.x.shape[1], classes=ds.n_classes, grid_rows=len(ds.train_index))
        )
    return sorted(out, key=lambda t: t["rows"])[:count]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--uci-dir", required=True, help="the collection (Fernández-Delgado's layout)")
    p.add_argument("--tables", type=int, default=30, help="the this many smallest tables (default: 30)")
    p.add_argument("--sizes", default="16,64,256,512", help="training sizes the KARE step is measured at")
    p.add_argument("--steps", type=int, default=20, help="timed KARE steps per measurement (default: 20)")
    p.add_argument("--dnn-passes", type=int, default=10, help="timed DNN passes of 8 batches (default: 10)")
    p.add_argument("--jobs", type=int, default=2, help="workers of the projected run (default: 2)")
    p.add_argument("--measured", help="reuse this script's earlier JSON instead of measuring")
    p.add_argument("--out", help="write JSON here")
    a = p.parse_args(argv)
    tables = _tables(a.uci_dir, a.tables)
    if a.measured:
        measured = json.load(open(a.measured))["measured"]
    else:
        measured = measure([int(s) for s in a.sizes.split(",")], a.steps, a.dnn_passes, lambda s: print(s, flush=True))
    proj = project(measured, tables, a.jobs)

    print(f"\nmachine float32 matmul (1024², one thread): {measured['peak_matmul_gflops']:.0f} GFLOP/s")
    sizes = sorted({r["n"] for r in measured["kare"]})
    print("\nKARE step, ms (achieved GFLOP/s) by training size\n")
    print("| arch | " + " | ".join(f"n={n}" for n in sizes) + " | fixed per training, s | first training, s |")
    print("|---|" + "---|" * (len(sizes) + 2))
    for depth in DEPTHS:
        for width in WIDTHS:
            ks = {r["n"]: r for r in measured["kare"] if r["depth"] == depth and r["width"] == width}
            cells = " | ".join(f"{ks[n]['step_s'] * 1e3:.1f} ({ks[n]['gflops']:.0f})" for n in sizes)
            print(f"| {depth}x{width} | {cells} | {ks[sizes[-1]]['fixed_s']:.2f} | {ks[sizes[0]]['first_s']:.1f} |")
    print("\nprojected grid trainings per table (KARE + DNN, no folds/KRR/baselines)\n")
    print("| table | rows | grid rows | KARE, s | DNN, s | total, s |")
    print("|---|---|---|---|---|---|")
    for r in proj["tables"]:
        print(
            f"| {r['name']} | {r['rows']} | {r['grid_rows']} | {r['kare_s']:.0f} | {r['dnn_s']:.0f} "
            f"| {r['total_s']:.0f} |"
        )
    print(
        f"\n{len(tables)} tables: {proj['one_core_s'] / 3600:.2f} h on one core, "
        f"{proj['wall_s'] / 3600:.2f} h wall with {a.jobs} workers (lower bound: trainings of the grid only)"
    )
    if a.out:
        meta = dict(machine=platform.processor() or platform.machine(), python=platform.python_version())
        with open(a.out, "w") as f:
            args = {k: v for k, v in vars(a).items() if k not in ("uci_dir", "out", "measured")}  # no machine paths
            json.dump(dict(meta=meta, args=args, measured=measured, projection=proj), f, indent=1)


if __name__ == "__main__":
    main()
