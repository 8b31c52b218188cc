"""A learning-rate grid: trained one configuration after another (the drivers' TrainerPool) or together?

The UCI protocol trains every architecture at several learning rates (KARE:
4 by depth; the DNN: 4). Two ways to avoid paying Keras' and TensorFlow's
per-configuration costs:

* **reuse** (what ``keras_kare.reproduce`` does): one compiled model per
  architecture, re-initialised in place for each learning rate
  (``runner.TrainerPool``): one trace, then the configurations in turn;
* **joint**: one model per learning rate, all stepped by one compiled call per
  SGD step (KARE: one ``tf.function`` calling every model's ``train_step``;
  TensorFlow runs the independent steps concurrently; DNN: one XLA loop
  stepping every network on the same batch). One trace *per model*.

Measured for the UCI shapes (MLP 13-128-128-5 GELU, ``--lrs`` learning rates):

* per step, warm (both compiled): the grid's step (joint) against the sum of
  the configurations' steps (reuse);
* the whole grid cold, as the UCI driver runs it for one data set (a fresh
  pool per data set): ``--kare-steps`` full-batch KARE steps or
  ``--dnn-passes`` passes of batch 32, tracing included, after a warm-up of
  the process (TensorFlow's first trace in a process costs seconds more).

The joint prototypes here train each learning rate exactly as alone (same
``train_step``, same batches); they are not part of the library (see
benchmarks/RESULTS.md for the decision).

    python benchmarks/bench_lr_grid.py --sizes 152,600 --out benchmarks/results/lr_grid.json

Prints a markdown table and writes JSON. Never run alongside other jobs.
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
from keras_kare import in_memory  # noqa: E402
from keras_kare.reproduce import build_mlp, runner  # noqa: E402

D, DEPTH, WIDTH, OUTPUTS = 13, 2, 128, 5
quiet = lambda msg: None  # noqa: E731


def _data(n: int):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, D)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(D, OUTPUTS))).astype("float32")
    return x, y


def _net(seed: int = 0):
    return build_mlp(D, DEPTH, WIDTH, OUTPUTS, seed=seed)


class JointKARE:
    """One KAREModel per learning rate, stepped together: one graph call per full-batch SGD step."""

    def __init__(self, net, lrs, ridge: float = 0.1):
        self.models = []
        for lr in lrs:
            copy = keras.models.clone_model(net)
            copy.set_weights(net.get_weights())
            model = keras_kare.KAREModel(copy, ridge=ridge, kernel="summed_output")
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr))
            model.optimizer.build(model.base_model.trainable_variables)
            self.models.append(model)

        def step(x, y):
            values = []
            for model in self.models:
                model.reset_metrics()
                values.append(tf.cast(model.train_step((x, y))["kare"], tf.float32))
            return tf.stack(values)

        self.step = tf.function(step)

    def fit(self, x, y, steps: int) -> np.ndarray:
        for _ in range(steps):
            values = self.step(x, y).numpy()
        return values


class JointDNN:
    """One network per learning rate, all stepped on the same batches in one XLA loop per call."""

    def __init__(self, net, lrs, n: int, batch: int):
        self.nets = []
        for lr in lrs:
            copy = keras.models.clone_model(net)
            copy.set_weights(net.get_weights())
            copy.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
            self.nets.append(copy)
        full, last = divmod(n, batch)

        def steps(x, y, rows):
            xb, yb = tf.gather(x, rows), tf.gather(y, rows)
            return tf.stack([tf.cast(net.train_step((xb, yb))["loss"], tf.float32) for net in self.nets])

        def run(x, y, orders):
            def one_pass(p, loss):
                order = orders[p]
                _, loss = tf.while_loop(
                    lambda b, _: b < full,
                    lambda b, loss: (b + 1, steps(x, y, tf.gather(order, b * batch + tf.range(batch)))),
                    (tf.constant(0), loss),
                )
                return p + 1, steps(x, y, order[full * batch :]) if last else loss

            init = (tf.constant(0), tf.zeros([len(self.nets)]))
            return tf.while_loop(lambda p, _: p < tf.shape(orders)[0], one_pass, init)[1]

        self.run = tf.function(run, jit_compile=True)


def _median_ms(f, repeats: int = 5) -> float:
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _result(reuse_step_ms: float, joint_step_ms: float, reuse_grid_s: float, joint_grid_s: float) -> dict:
    return {
        "reuse_step_ms": reuse_step_ms,
        "joint_step_ms": joint_step_ms,
        "reuse_grid_s": reuse_grid_s,
        "joint_grid_s": joint_grid_s,
    }


def bench_kare(n: int, lrs, steps: int) -> dict:
    x, y = _data(n)
    xt, yt = tf.constant(x), tf.constant(y)
    # warm, per step: reuse = one pooled model stepped for each lr in turn; joint = the grid's step
    pool = runner.TrainerPool()
    model = runner.train_kare(_net(), x, y, 0.1, lrs[0], 1, None, quiet, pool=pool)[0]
    single = tf.function(lambda a, b: model.train_step((a, b))["kare"])
    joint = JointKARE(_net(), lrs)
    reuse_ms = len(lrs) * _median_ms(lambda: [float(single(xt, yt)) for _ in range(20)]) / 20
    joint_ms = _median_ms(lambda: joint.fit(xt, yt, 20)) / 20
    # cold, the whole grid as for one data set (fresh pool: one trace; joint: one trace per lr)
    t = time.perf_counter()
    pool = runner.TrainerPool()
    for lr in lrs:
        runner.train_kare(_net(), x, y, 0.1, lr, steps, None, quiet, pool=pool)
    reuse_cold = time.perf_counter() - t
    t = time.perf_counter()
    JointKARE(_net(), lrs).fit(xt, yt, steps)
    joint_cold = time.perf_counter() - t
    return _result(reuse_ms, joint_ms, reuse_cold, joint_cold)


def bench_dnn(n: int, lrs, passes: int, batch: int = 32) -> dict:
    x, y = _data(n)
    xt, yt = tf.constant(x), tf.constant(y)
    orders = np.stack([np.random.default_rng(i).permutation(n) for i in range(passes)]).astype(np.int32)
    per_pass = -(-n // batch)
    # warm: the pooled runner's compiled loop for each lr in turn against one joint loop
    pool = runner.TrainerPool()
    runner.train_dnn(_net(), x, y, lrs[0], passes, batch, quiet, pool=pool)
    (entry,) = pool._entries.values()
    loop = entry["loop"]
    ppc = loop.passes_per_call
    joint = JointDNN(_net(), lrs, n, batch)
    ot = tf.constant(orders[:ppc])
    reuse_ms = len(lrs) * _median_ms(lambda: loop(xt, yt, 0, 0, ppc)) / (ppc * per_pass)
    joint_ms = _median_ms(lambda: joint.run(xt, yt, ot).numpy()) / (ppc * per_pass)
    t = time.perf_counter()
    pool = runner.TrainerPool()
    for lr in lrs:
        runner.train_dnn(_net(), x, y, lr, passes, batch, quiet, pool=pool)
    reuse_cold = time.perf_counter() - t
    t = time.perf_counter()
    passes_orders = np.stack([in_memory.epoch_permutation(n, 0, p) for p in range(passes)])
    JointDNN(_net(), lrs, n, batch).run(xt, yt, tf.constant(passes_orders, tf.int32)).numpy()
    joint_cold = time.perf_counter() - t
    return _result(reuse_ms, joint_ms, reuse_cold, joint_cold)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="152,600", help="training examples (full-batch KARE; DNN batch 32)")
    p.add_argument("--lrs", default="100,10,1,0.1", help="KARE learning rates (the DNN uses them / 1000)")
    p.add_argument("--kare-steps", type=int, default=300)
    p.add_argument("--dnn-passes", type=int, default=400)
    p.add_argument("--out", default="benchmarks/results/lr_grid.json")
    a = p.parse_args(argv)
    lrs = [float(v) for v in a.lrs.split(",")]
    # the first trace in a process costs seconds more than later ones: pay it before measuring
    runner.train_kare(_net(), *_data(40), 0.1, 1.0, 1, None, quiet)
    runner.train_dnn(_net(), *_data(40), 0.01, 1, 32, quiet)
    results = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "lrs": lrs,
        "kare_steps": a.kare_steps,
        "dnn_passes": a.dnn_passes,
        "runs": [],
    }
    rows = [
        f"| method | n | step of the {len(lrs)}-lr grid, warm: reuse / joint (ms) | speed-up | "
        "whole grid cold: reuse / joint (s) | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for n in [int(v) for v in a.sizes.split(",")]:
        for method, r in (
            ("KARE", bench_kare(n, lrs, a.kare_steps)),
            ("DNN b32", bench_dnn(n, [lr / 1000 for lr in lrs], a.dnn_passes)),
        ):
            results["runs"].append({"method": method, "n": n, **r})
            rows.append(
                f"| {method} | {n} | {r['reuse_step_ms']:.2f} / {r['joint_step_ms']:.2f} | "
                f"{r['reuse_step_ms'] / r['joint_step_ms']:.2f}x | {r['reuse_grid_s']:.1f} / {r['joint_grid_s']:.1f} | "
                f"{r['reuse_grid_s'] / r['joint_grid_s']:.2f}x |"
            )
            print(rows[-1], flush=True)
    table = "\n".join(rows)
    print("\n" + table)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
