"""Core figures: KAREModel step time and KernelPredictor.fit time per NTK implementation.

MLP 784-512-512-1 (GELU, float32), random inputs:
  * ms per KAREModel training step at --batch (median of --steps after warm-up),
  * seconds for KernelPredictor.fit on --n-fit points (blocked Gram + float64 solve).
Prints a markdown table and writes JSON. Ratios are measured in the same run.

    python benchmarks/bench_core.py --batch 256 --n-fit 2000 --implementations jacobian,structured
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_kare  # noqa: E402


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((784,)), keras.layers.Dense(512, "gelu"), keras.layers.Dense(512, "gelu"), keras.layers.Dense(1)]
    )


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(logs["kare"])  # wait for the step
        self.times.append(time.perf_counter() - self._t)


def step_ms(impl: str, batch: int, steps: int, jit: bool) -> float:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * (steps + 2), 784)).astype("float32")
    y = rng.normal(size=len(x)).astype("float32")
    model = keras_kare.KAREModel(mlp(), implementation=impl)
    model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=jit)
    timer = StepTimer()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    return 1000 * statistics.median(timer.times[2:])


def fit_seconds(impl: str, n: int, block: int) -> float:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 784)).astype("float32")
    y = rng.normal(size=n)
    kp = keras_kare.KernelPredictor(mlp(), ridge=1e-3, batch_size=block, implementation=impl)
    kp.fit(x[:8], y[:8])  # warm-up: traces the Gram function
    start = time.perf_counter()
    kp.fit(x, y)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--n-fit", type=int, default=2000)
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--implementations", default="jacobian,structured")
    ap.add_argument("--jit", action="store_true", help="XLA-compile the training step")
    ap.add_argument("--out", default="benchmarks/results/core.json")
    args = ap.parse_args()
    rows = []
    for impl in args.implementations.split(","):
        ms = step_ms(impl, args.batch, args.steps, args.jit)
        print(f"{impl}: step {ms:.0f} ms", flush=True)
        sec = fit_seconds(impl, args.n_fit, args.block)
        print(f"{impl}: KernelPredictor.fit(n={args.n_fit}) {sec:.1f} s", flush=True)
        rows.append({"implementation": impl, "step_ms": ms, "fit_s": sec})
    base = rows[0]
    print(
        f"\nMLP 784-512-512-1 GELU float32, batch {args.batch}, jit={args.jit}; fit n={args.n_fit}, block {args.block}"
    )
    print(
        "| implementation | KAREModel step (ms, median) | KernelPredictor.fit (s) | step speed-up vs "
        + base["implementation"]
        + " |"
    )
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['implementation']} | {r['step_ms']:.0f} | {r['fit_s']:.1f} | {base['step_ms'] / r['step_ms']:.1f}x |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "settings": vars(args),
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "tensorflow": tf.__version__,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
