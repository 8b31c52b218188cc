"""How often does KARE training need the jitter ladder? (issue: numerical robustness)

Runs the paper's synthetic setting (Figure 1: d=10, 800 training points, GELU
width 64, PyTorch initialisation, SGD lr 100, z = 0.1, full batch, float32
network) for ``--steps`` consecutive steps per seed, and counts the steps whose
Cholesky needed a retry (``factor_retries``) or failed (``nonfinite_steps``),
for each KARE solve precision. Prints a table and writes JSON.

    python benchmarks/bench_retries.py --steps 1000 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_kare  # noqa: E402
from keras_kare.datasets.synthetic import make_single_index  # noqa: E402
from keras_kare.initializers import build_mlp  # noqa: E402


def run(seed: int, steps: int, solve_dtype: str, gamma: float, sigma: float, lr: float) -> dict:
    x, y, _, _ = make_single_index(gamma=gamma, sigma=sigma, seed=seed)
    keras.utils.set_random_seed(seed)
    net = build_mlp(10, depth=1, width=64, seed=seed)
    model = keras_kare.KAREModel(net, ridge=0.1, solve_dtype=solve_dtype, on_nonfinite="skip")
    model.compile(optimizer=keras.optimizers.SGD(lr))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # one epoch = one full-batch step; per-epoch sums of the counters are per-step flags
        hist = model.fit(x, y, batch_size=len(x), epochs=steps, verbose=0)
    seconds = time.perf_counter() - start
    h = hist.history
    kare = np.asarray(h["kare"], float)
    return {
        "seed": seed,
        "solve_dtype": solve_dtype,
        "steps": steps,
        "retry_steps": int(np.sum(h["factor_retries"])),
        "failed_steps": int(np.sum(h["nonfinite_steps"])),
        "kare_first": float(kare[0]),
        "kare_last_finite": float(kare[np.isfinite(kare)][-1]) if np.any(np.isfinite(kare)) else None,
        "seconds": seconds,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--sigma", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=100.0)
    ap.add_argument("--solve-dtypes", default="auto,float32")
    ap.add_argument("--out", default="benchmarks/results/retries.json")
    args = ap.parse_args()
    rows = []
    for solve_dtype in args.solve_dtypes.split(","):
        for seed in range(args.seeds):
            row = run(seed, args.steps, solve_dtype, args.gamma, args.sigma, args.lr)
            rows.append(row)
            print(
                f"seed {seed} solve {solve_dtype}: {row['retry_steps']} retries, {row['failed_steps']} failures "
                f"in {args.steps} steps ({row['seconds']:.0f} s)",
                flush=True,
            )
    print("\n| solve dtype | seed | steps | steps needing a retry | failed steps | KARE first → last | time (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['solve_dtype']} | {r['seed']} | {r['steps']} | {r['retry_steps']} | {r['failed_steps']} | "
            f"{r['kare_first']:.4f} → {r['kare_last_finite']:.4f} | {r['seconds']:.0f} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"settings": vars(args), "machine": platform.platform(), "cpus": os.cpu_count(), "rows": rows}, indent=2
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
