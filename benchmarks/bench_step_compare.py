"""Interleaved step-time comparison: this tree vs a git revision vs a minimal prototype.

The benchmark step (KAREModel.train_step, MLP 784-512-512-1 GELU, batch 256,
float32, graph mode; ``--net fig1``: the Figure 1 network 10-64-1 at ``--batch 800``)
is timed for several arms *in one process*, calling the arms in turn, so that the
shared machine's drift affects all of them alike:

* ``work``: the package in this working tree;
* ``rev``: the package at ``--rev`` (extracted with ``git archive`` into a
  temporary directory and imported under another name);
* ``prototype``: a minimal structured TensorFlow step (explicit Δ by a tape, K = Σ (AAᵀ+1)⊙(ΔΔᵀ),
  KARE by Cholesky in float64, plain SGD update).

All arms share one network and one batch (the learning rate is 1e-12, so the
weights barely move). Prints a table of medians and quartiles per repeat and
writes JSON.

Usage:
  python benchmarks/bench_step_compare.py --rev ddcdae2 --calls 100 --repeats 3
  python benchmarks/bench_step_compare.py --net fig1 --batch 800 --no-prototype --rev main --calls 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _import_revision(rev: str, tmp: str):
    """Import keras_kare as of ``rev`` under the name ``keras_kare_rev``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "keras_kare"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    src, dst = Path(tmp) / "keras_kare", Path(tmp) / "keras_kare_rev"
    src.rename(dst)
    for f in dst.rglob("*.py"):
        f.write_text(re.sub(r"\bkeras_kare\b", "keras_kare_rev", f.read_text()))
    sys.path.insert(0, tmp)
    import keras_kare_rev

    return keras_kare_rev


def _prototype_step(net, tf):
    """The issue's minimal structured prototype as a train step (float64 KARE, z = 0.1)."""
    variables = net.trainable_variables
    layers = [(layer.kernel, layer.bias, layer.activation) for layer in net.layers]

    def kare(k, y, z=0.1):
        k, y = tf.cast(k, tf.float64), tf.cast(y, tf.float64)
        n = tf.shape(k)[0]
        nf = tf.cast(n, tf.float64)
        chol = tf.linalg.cholesky(k / nf + z * tf.eye(n, dtype=tf.float64))
        a_y = tf.linalg.cholesky_solve(chol, y)
        l_inv = tf.linalg.triangular_solve(chol, tf.eye(n, dtype=tf.float64))
        return (tf.reduce_sum(a_y * a_y) / nf) / (tf.reduce_sum(l_inv * l_inv) / nf) ** 2

    def step(x, y):
        with tf.GradientTape() as outer:
            with tf.GradientTape(persistent=True) as inner:
                inputs, pre, h = [x], [], x
                for kernel, bias, act in layers:
                    z = h @ kernel + bias
                    inner.watch(z)
                    pre.append(z)
                    h = act(z)
                    inputs.append(h)
                out = tf.reduce_sum(h)
            deltas = inner.gradient(out, pre)
            k = tf.add_n(
                [
                    (tf.matmul(a, a, transpose_b=True) + 1.0) * tf.matmul(d, d, transpose_b=True)
                    for a, d in zip(inputs[:-1], deltas)
                ]
            )
            value = kare(k, y)
        grads = outer.gradient(value, variables)
        for v, g in zip(variables, grads):
            if g is not None:
                v.assign_sub(1e-12 * g)
        return value

    return tf.function(step)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default=None, help="git revision to compare with (omit: no 'rev' arm)")
    ap.add_argument(
        "--net",
        choices=("mlp784", "fig1"),
        default="mlp784",
        help="mlp784: 784-512-512-1 GELU, kernel 'trace'; fig1: the Figure 1 network 10-64-1 GELU "
        "(PyTorch init), kernel 'summed_output' (use --batch 800 --no-prototype)",
    )
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--calls", type=int, default=100, help="timed calls per arm and repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-prototype", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(ROOT))
    import keras_kare

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = args.batch
    if args.net == "fig1":
        from keras_kare.reproduce import build_mlp

        net, d, kernel = build_mlp(10, 1, 64, 1, seed=0), 10, "summed_output"
    else:
        net = keras.Sequential(
            [
                keras.Input((784,)),
                keras.layers.Dense(512, "gelu"),
                keras.layers.Dense(512, "gelu"),
                keras.layers.Dense(1),
            ]
        )
        d, kernel = 784, "trace"
    x = tf.constant(rng.normal(size=(n, d)).astype("float32"))
    y = tf.constant(np.tanh(rng.normal(size=(n, 1))).astype("float32"))

    def kare_step(module):
        km = module.KAREModel(net, kernel=kernel, implementation="structured")
        km.compile(optimizer=keras.optimizers.SGD(1e-12))
        km.build(x.shape)
        km.optimizer.build(net.trainable_variables)
        return tf.function(lambda a, b: km.train_step((a, b)))

    with tempfile.TemporaryDirectory() as tmp:
        arms = {"work": kare_step(keras_kare)}
        if args.rev:
            arms[f"rev {args.rev}"] = kare_step(_import_revision(args.rev, tmp))
        if not args.no_prototype:
            arms["prototype"] = _prototype_step(net, tf)
        for f in arms.values():  # trace and warm up
            for _ in range(3):
                tf.nest.map_structure(np.asarray, f(x, y))
        rows = []
        for rep in range(args.repeats):
            times = {name: [] for name in arms}
            for _ in range(args.calls):
                for name, f in arms.items():
                    t0 = time.perf_counter()
                    tf.nest.map_structure(np.asarray, f(x, y))
                    times[name].append((time.perf_counter() - t0) * 1e3)
            for name, t in times.items():
                rows.append(
                    dict(
                        repeat=rep,
                        arm=name,
                        median_ms=float(np.median(t)),
                        p25_ms=float(np.percentile(t, 25)),
                        p75_ms=float(np.percentile(t, 75)),
                    )
                )
    lines = ["| repeat | arm | median (ms) | p25 | p75 |", "|---|---|---:|---:|---:|"]
    lines += [
        f"| {r['repeat']} | {r['arm']} | {r['median_ms']:.1f} | {r['p25_ms']:.1f} | {r['p75_ms']:.1f} |" for r in rows
    ]
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_step_compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    meta = dict(
        command=" ".join(["python", "benchmarks/bench_step_compare.py"] + (argv or sys.argv[1:])),
        machine=platform.platform(),
        cpus=os.cpu_count(),
        load_average=os.getloadavg(),
        batch=n,
        calls=args.calls,
    )
    path.write_text(json.dumps(dict(meta=meta, rows=rows, table=table), indent=1))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
