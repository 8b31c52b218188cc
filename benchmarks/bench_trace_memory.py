"""How much resident memory does one process keep per traced architecture, after its models are gone?

``keras-kare reproduce uci`` trains many architectures per data set; a
worker that trained one table after another grew by about 1 GB per
paper-grid table, which is why ``--jobs`` starts a fresh process per table.
This script measures where that memory goes: it plays ``--tables`` small
"tables" (a new input width each, so nothing is shared between them), each
training every architecture of ``--depths`` x ``--widths`` at two learning
rates through the runner's ``train_kare`` / ``train_dnn`` with a fresh
:class:`~keras_kare.TrainerPool`, then deletes the pool and the models,
runs ``gc.collect()`` (and ``keras.backend.clear_session()`` with
``--clear-session``) and reads the process's resident set size. The growth
per table divided by the architectures per table is the memory kept per
traced architecture.

    python benchmarks/bench_trace_memory.py --mode kare --out kare.json
    python benchmarks/bench_trace_memory.py --mode dnn-xla --clear-session --out dnn.json

One mode per process (the measurement is the process's own memory). Prints a
table and writes JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys

MODES = ("kare", "dnn-xla", "dnn-graph")


def resident_mb() -> float:
    """This process's resident set size in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def play_table(mode: str, input_dim: int, depths, widths, rows: int, steps: int, seed: int) -> int:
    """Train every architecture at two learning rates on random data; returns the architectures traced."""
    import numpy as np

    from keras_kare.initializers import build_mlp
    from keras_kare.reproduce.runner import krr_path, train_dnn, train_kare
    from keras_kare.trainer_pool import TrainerPool

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, input_dim)).astype("float32")
    y = np.sign(rng.normal(size=(rows, 1))).astype("float32")
    half = rows // 2
    pool = TrainerPool()
    quiet = lambda *args: None  # noqa: E731
    for depth in depths:
        for width in widths:
            for lr in (1.0, 0.1):
                net = build_mlp(input_dim, depth, width, seed=seed)
                if mode == "kare":
                    model, _ = train_kare(net, x, y, 0.1, lr, steps, log=quiet, pool=pool)
                    krr_path(model, x[:half], y[:half], x[half:], y[half:], [0.1, 1.0])
                else:
                    train_dnn(net, x, y, lr, steps, log=quiet, pool=pool, jit_compile=mode == "dnn-xla")
    return pool.builds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--tables", type=int, default=6)
    parser.add_argument("--depths", default="1,2,3")
    parser.add_argument("--widths", default="32,128")
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--clear-session", action="store_true", help="keras.backend.clear_session() after each table")
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    depths = [int(v) for v in args.depths.split(",")]
    widths = [int(v) for v in args.widths.split(",")]

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # what a --jobs worker runs with
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    rows = []
    for t in range(args.tables):
        builds = play_table(args.mode, 5 + t, depths, widths, args.rows, args.steps, seed=t)
        if args.clear_session:
            keras.backend.clear_session()
        gc.collect()
        rows.append({"table": t, "architectures": builds, "rss_mb": resident_mb()})
    # The first table also pays for TensorFlow's one-off start-up allocations: measure growth from its end.
    growth = (rows[-1]["rss_mb"] - rows[0]["rss_mb"]) / max(1, len(rows) - 1)
    per_arch = growth / max(1, rows[0]["architectures"])
    print(f"| table | traced architectures | resident MB after gc{' + clear_session' if args.clear_session else ''} |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['table']} | {r['architectures']} | {r['rss_mb']:.0f} |")
    print(f"\n{args.mode}: {growth:.1f} MB kept per table, {per_arch:.1f} MB per traced architecture")
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "tables": rows,
        "mb_per_table": growth,
        "mb_per_architecture": per_arch,
        "machine": {
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "processor": platform.processor() or platform.machine(),
        },
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
