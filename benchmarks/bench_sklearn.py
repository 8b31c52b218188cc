"""Fit time of KARERegressor / KAREClassifier with their default parameters.

Times ``fit`` on synthetic tables (``make_classification`` / ``make_regression``,
20 features) of n rows: the first fit of a fresh process (a subprocess: import,
tracing and compilation included, and the import alone) and warm fits (the
compiled KARE step reused), interleaved classifier/regressor. Prints a table
and writes JSON.

Run:  python benchmarks/bench_sklearn.py [--sizes 1000 5000] [--repeats 3] [--out benchmarks/results/sklearn.json]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from keras_kare.sklearn import KAREClassifier, KARERegressor
t_import = time.perf_counter() - t0
from sklearn.datasets import make_classification, make_regression
kind, n = sys.argv[1], int(sys.argv[2])
if kind == "classifier":
    x, y = make_classification(n, 20, n_informative=10, random_state=0)
    est = KAREClassifier(random_state=0)
else:
    x, y = make_regression(n, 20, n_informative=10, noise=10.0, random_state=0)
    est = KARERegressor(random_state=0)
t1 = time.perf_counter()
est.fit(x, y)
t_fit = time.perf_counter() - t1
print(json.dumps({"import_s": t_import, "first_fit_s": t_fit, "total_s": time.perf_counter() - t0}))
"""


def first_fit(kind: str, n: int) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(n)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm_fits(sizes, repeats: int) -> dict:
    from sklearn.datasets import make_classification, make_regression

    from keras_kare.sklearn import KAREClassifier, KARERegressor

    data = {}
    for n in sizes:
        data[("classifier", n)] = (KAREClassifier, make_classification(n, 20, n_informative=10, random_state=0))
        data[("regressor", n)] = (KARERegressor, make_regression(n, 20, n_informative=10, noise=10.0, random_state=0))
    times = {key: [] for key in data}
    for cls, (x, y) in data.values():  # compile once per configuration
        cls(random_state=0).fit(x, y)
    for r in range(repeats):  # interleaved: load changes hit every configuration alike
        for key, (cls, (x, y)) in data.items():
            t = time.perf_counter()
            cls(random_state=r).fit(x, y)
            times[key].append(time.perf_counter() - t)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000], help="table rows n")
    parser.add_argument("--first-fit-sizes", type=int, nargs="+", default=[1000], help="n of the fresh-process fits")
    parser.add_argument("--repeats", type=int, default=3, help="warm fits per configuration")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sklearn.json"), help="JSON output")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    first = {f"{kind}/{n}": first_fit(kind, n) for n in args.first_fit_sizes for kind in ("classifier", "regressor")}
    warm = warm_fits(args.sizes, args.repeats)
    load_after = os.getloadavg()

    print(f"{'estimator':12s} {'n':>6s} {'first fit [s]':>14s} {'import [s]':>11s} {'warm fit [s] (min/median)':>26s}")
    rows = []
    for (kind, n), ts in warm.items():
        ts = sorted(ts)
        f = first.get(f"{kind}/{n}")
        rows.append({"estimator": kind, "n": n, "warm_fit_s": ts, "first_process": f})
        first_s = f"{f['first_fit_s']:.1f}" if f else "-"
        imp = f"{f['import_s']:.1f}" if f else "-"
        print(f"{kind:12s} {n:6d} {first_s:>14s} {imp:>11s} {ts[0]:12.1f} / {ts[len(ts) // 2]:.1f}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; cpus {os.cpu_count()}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"rows": rows, "load_before": load_before, "load_after": load_after, "cpus": os.cpu_count()}, indent=1
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
