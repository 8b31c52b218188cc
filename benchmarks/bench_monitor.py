"""Overhead of keras_kare.callbacks.KernelMonitor (and KernelRidgeEvaluation) as a % of epoch time.

Workload: KAREModel on an MLP 784-512-512-1 (GELU), batch 256, SGD,
MNIST 7-vs-9 from the IDX test set in ``$KERAS_KARE_DATA/mnist`` (random
data of the same shape if absent), ``steps`` steps per epoch (default 5: the offline set has
2037 7s and 9s). The monitor runs
at its default frequency (every epoch) on a probe batch of 256 examples.

Each configuration trains a fresh model for ``1 + epochs`` epochs; the first
(tracing/compilation) epoch is dropped; the reported epoch time is the median
of the rest, measured from ``on_epoch_begin`` to the end of ``on_epoch_end`` of
a timer callback placed *last*, so it includes the monitors' work.

Usage:
    PYTHONPATH=. python benchmarks/bench_monitor.py [--epochs 3] [--steps 7] [--implementation auto]

Prints a table and writes ``benchmarks/results/bench_monitor.json``.
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
from keras_kare import KAREModel  # noqa: E402
from keras_kare.callbacks import KernelMonitor, KernelRidgeEvaluation  # noqa: E402
from keras_kare.datasets import tfdata  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_DATA = os.environ.get("KERAS_KARE_DATA")  # offline data sets; DATA/mnist holds MNIST's IDX files
MNIST = Path(_DATA) / "mnist" if _DATA else None
BATCH = 256


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def data(n: int):
    if MNIST is not None and MNIST.is_dir():
        x, y = tfdata.prepare_arrays(
            *tfdata.load_idx_arrays(MNIST, "t10k"),
            classes=(7, 9),
            encoding="pm1",
            seed=0,
            normalize_method="scale",
            flatten=True,
        )
        return x, y, "MNIST 7 vs 9 (offline t10k IDX, 2037 examples)"
    r = np.random.default_rng(0)
    return r.random((n, 784), dtype=np.float32), np.sign(r.standard_normal(n)).astype("float32"), "random"


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((784,)), keras.layers.Dense(512, "gelu"), keras.layers.Dense(512, "gelu"), keras.layers.Dense(1)]
    )


def run(x, y, epochs, implementation, callbacks_factory):
    model = KAREModel(mlp(), ridge=0.1, implementation=implementation)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    ds = tfdata.make_dataset(x, y, BATCH)
    extra = callbacks_factory(model)
    timer = EpochTimer()
    model.fit(ds, epochs=1 + epochs, verbose=0, callbacks=extra + [timer])
    times = timer.times[1:]
    cb_seconds = {type(cb).__name__: float(np.median(cb.seconds[1:])) for cb in extra if hasattr(cb, "seconds")}
    return float(statistics.median(times)), times, cb_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    parser.add_argument("--steps", type=int, default=5, help="steps of batch 256 per epoch")
    parser.add_argument("--implementation", default="auto")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_monitor.json"))
    args = parser.parse_args()

    n = args.steps * BATCH
    x, y, source = data(n + 512 + 256)
    x_train, y_train = x[:n], y[:n]
    probe = (x_train[:BATCH], y_train[:BATCH])
    val = (x[n + 512 : n + 768], y[n + 512 : n + 768])
    configs = {
        "baseline (no monitor)": lambda m: [],
        "KernelMonitor (every epoch, probe 256)": lambda m: [KernelMonitor(*probe)],
        "KernelRidgeEvaluation (every epoch, 512 train / 256 val)": lambda m: [
            KernelRidgeEvaluation(x[n : n + 512], y[n : n + 512], validation_data=val)
        ],
    }
    rows = []
    for name, factory in configs.items():
        median, times, cb_seconds = run(x_train, y_train, args.epochs, args.implementation, factory)
        rows.append(
            {"config": name, "epoch_seconds_median": median, "epoch_seconds": times, "callback_seconds": cb_seconds}
        )
    base = rows[0]["epoch_seconds_median"]
    for row in rows:
        row["overhead_percent"] = 100.0 * (row["epoch_seconds_median"] - base) / base
        cb = sum(row["callback_seconds"].values())
        row["callback_percent_of_baseline_epoch"] = 100.0 * cb / base

    print(
        f"data: {source}; MLP 784-512-512-1, batch {BATCH}, {args.steps} steps/epoch, "
        f"implementation={args.implementation}"
    )
    step = base / args.steps
    for row in rows:
        row["callback_seconds_in_training_steps"] = sum(row["callback_seconds"].values()) / step
    print(
        f"{'configuration':58s} {'epoch s':>8s} {'epoch +%':>9s} {'callback s':>11s} "
        f"{'cb % of base epoch':>19s} {'cb in steps':>12s}"
    )
    for row in rows:
        cb = sum(row["callback_seconds"].values())
        print(
            f"{row['config']:58s} {row['epoch_seconds_median']:8.3f} {row['overhead_percent']:9.1f} {cb:11.3f} "
            f"{row['callback_percent_of_baseline_epoch']:19.1f} {row['callback_seconds_in_training_steps']:12.2f}"
        )
    print(
        "epoch +%: median epoch time vs baseline (noisy on a shared machine); cb % of base epoch: the callback's own\n"
        "median wall time / baseline epoch; cb in steps: the callback's time in training steps of batch 256 (the\n"
        "overhead for an epoch of S steps is about that number / S)."
    )
    out = {
        "workload": {
            "model": "MLP 784-512-512-1 gelu",
            "batch": BATCH,
            "steps_per_epoch": args.steps,
            "timed_epochs": args.epochs,
            "implementation": args.implementation,
            "data": source,
            "probe": BATCH,
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_kare": keras_kare.__version__,
        },
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
