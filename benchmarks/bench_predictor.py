"""KernelPredictor at scale: exact vs Nyström vs scikit-learn's KernelRidge on the same NTK.

Workloads (each runs in a child process of its own, so its peak RSS is its own):

- ``exact``: n = 20 000 exact fit + predict on 2 000 test points;
- ``sklearn``: the peer column, ``sklearn.kernel_ridge.KernelRidge(kernel="precomputed")``
  on the same NTK Grams (computed by ``keras_kare.ntk``; Gram time reported apart)
  at n = 20 000 (``--sklearn-n`` to change);
- ``nystrom``: n = 100 000 Nyström fit (m = 4 096) + predict on 10 000 test points;
- ``mcurve``: n = 15 000, test MSE of Nyström for m ∈ {512, 1024, 2048, 4096} against
  the exact solve at the same ridge (and KernelRidge on the exact Gram).

Data: synthetic regression with 20 features; the network is Dense 64 GELU → Dense 64
GELU → Dense 1 at its (seeded) initialisation. Ridge: relative λ̃ = 0.1 for every solver.

Usage (from the repository root)::

    python benchmarks/bench_predictor.py --workloads exact sklearn mcurve nystrom --json bench_predictor.json

Prints a table and writes the JSON list of result rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

WORKLOADS = ("exact", "sklearn", "nystrom", "mcurve")
RIDGE = 0.1  # relative λ̃; KARE picks 0.018 on a 3 000-example subsample, test MSE is flat from 0.01 to 0.1
FEATURES = 20


def peak_rss_gib() -> float:
    """Peak resident set size of this process (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def make_data(n: int, n_test: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    w1, w2 = rng.standard_normal((2, FEATURES)) / np.sqrt(FEATURES)
    x = rng.standard_normal((n + n_test, FEATURES)).astype("float32")
    y = np.sin(2 * x @ w1) + 0.5 * np.tanh(x @ w2) + 0.1 * rng.standard_normal(n + n_test)
    return x[:n], y[:n], x[n:], y[n:]


def make_net():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(64, "gelu"),
            keras.layers.Dense(64, "gelu"),
            keras.layers.Dense(1),
        ]
    )


def run_predictor(n, n_test, solver, n_centers=None, batch_size=2048):
    import numpy as np

    from keras_kare import KernelPredictor

    x, y, xt, yt = make_data(n, n_test)
    start = time.perf_counter()
    kp = KernelPredictor(
        make_net(), ridge=RIDGE, solver=solver, n_centers=n_centers, seed=0, batch_size=batch_size, verbose=0
    ).fit(x, y)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = kp.predict(xt)
    predict_s = time.perf_counter() - start
    return {
        "n": n,
        "n_test": n_test,
        "solver": kp.solver_,
        "m": n_centers if solver == "nystrom" else None,
        "fit_s": fit_s,
        "predict_s": predict_s,
        "test_mse": float(np.mean((pred - yt) ** 2)),
        "peak_rss_gib": peak_rss_gib(),
    }


def run_sklearn(n, n_test, batch_size=2048):
    """KernelRidge on the precomputed NTK: alpha = n·λ maps (K + αI)⁻¹ onto (K/n + λI)⁻¹/n."""
    import numpy as np
    from sklearn.kernel_ridge import KernelRidge

    import keras_kare

    x, y, xt, yt = make_data(n, n_test)
    net = make_net()
    start = time.perf_counter()
    k = keras_kare.ntk(net, x, batch_size=batch_size, verbose=0).numpy().astype(np.float64)
    kx = keras_kare.ntk(net, xt, x, batch_size=batch_size, verbose=0).numpy().astype(np.float64)
    gram_s = time.perf_counter() - start
    lam = RIDGE * np.trace(k) / n**2
    start = time.perf_counter()
    model = KernelRidge(alpha=n * lam, kernel="precomputed").fit(k, y)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = model.predict(kx)
    predict_s = time.perf_counter() - start
    return {
        "n": n,
        "n_test": n_test,
        "solver": "sklearn KernelRidge (precomputed)",
        "m": None,
        "gram_s": gram_s,
        "fit_s": fit_s,
        "predict_s": predict_s,
        "test_mse": float(np.mean((pred - yt) ** 2)),
        "peak_rss_gib": peak_rss_gib(),
    }


def child(workload: str, args) -> list:
    if workload == "exact":
        return [run_predictor(args.exact_n, 2000, "exact")]
    if workload == "sklearn":
        return [run_sklearn(args.sklearn_n, 2000)]
    if workload == "nystrom":
        return [run_predictor(args.nystrom_n, 10_000, "nystrom", n_centers=4096)]
    rows = [run_predictor(args.mcurve_n, 2000, "exact")]
    for m in (512, 1024, 2048, 4096):
        rows.append(run_predictor(args.mcurve_n, 2000, "nystrom", n_centers=m))
    for row in rows[1:]:
        row["rel_mse_vs_exact"] = row["test_mse"] / rows[0]["test_mse"] - 1.0
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=["exact", "sklearn", "mcurve"])
    parser.add_argument("--exact-n", type=int, default=20_000)
    parser.add_argument("--sklearn-n", type=int, default=20_000)
    parser.add_argument("--nystrom-n", type=int, default=100_000)
    parser.add_argument("--mcurve-n", type=int, default=15_000)
    parser.add_argument("--json", default="bench_predictor.json", help="output file")
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)), flush=True)
        return
    rows = []
    for workload in args.workloads:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", workload]
        cmd += [
            f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("exact_n", "sklearn_n", "nystrom_n", "mcurve_n")
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            rows.append({"workload": workload, "error": f"exit code {proc.returncode}", "stderr": proc.stderr[-2000:]})
            print(f"{workload}: FAILED with exit code {proc.returncode}\n{proc.stderr[-2000:]}", flush=True)
            continue
        for row in json.loads(lines[-1][len("RESULT ") :]):
            row["workload"] = workload
            row["process_wall_s"] = time.perf_counter() - start
            rows.append(row)
            print(format_row(row), flush=True)
    with open(args.json, "w") as fh:
        json.dump(rows, fh, indent=2)
    print(
        f"\n{'workload':9} {'n':>7} {'solver':>10} {'m':>5} {'fit s':>8} {'pred s':>7} {'test MSE':>9} "
        f"{'vs exact':>9} {'peak RSS GiB':>12}"
    )
    for row in rows:
        if "error" not in row:
            print(format_row(row))
    print(f"wrote {args.json}")


def format_row(row: dict) -> str:
    rel = row.get("rel_mse_vs_exact")
    solver = "sklearn" if row["solver"].startswith("sklearn") else row["solver"]
    return (
        f"{row['workload']:9} {row['n']:>7} {solver:>10} {row['m'] or '-':>5} {row['fit_s']:>8.1f} "
        f"{row['predict_s']:>7.1f} {row['test_mse']:>9.4f} {'-' if rel is None else f'{100 * rel:+.2f}%':>9} "
        f"{row['peak_rss_gib']:>12.2f}"
    )


if __name__ == "__main__":
    main()
