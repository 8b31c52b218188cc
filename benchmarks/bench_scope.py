"""KAREModel under tf.distribute: time per step and bytes exchanged, kare_scope "replica" vs "global".

Workload 1 of ``bench_ntk.py`` (MLP 784-512-512-1 GELU, float32, structured
NTK), global batch 256 and 1024, SGD. Configurations, each in a fresh process:

* ``single``: one device, no strategy (the reference a global step equals);
* ``mirrored``: ``MirroredStrategy`` over 2 logical CPU devices of one process;
* ``workers``: ``MultiWorkerMirroredStrategy``, 2 worker processes on localhost
  (``TF_CONFIG``), one CPU device each.

Time per step: median over ``--steps`` timed steps after 2 untimed ones (the
callback waits for each step's KARE; with 2 workers, the slower worker's).
Bytes per replica and step: what it receives from the other replicas through
keras_kare's gathers (per-example NTK factors and targets; Gram row blocks),
counted from the gathered shapes while the step is traced; the size of the
all-reduce of the factors' cotangents in the backward pass (the whole
gathered factors); and the gradient all-reduce every Keras model pays
(P float32 values). Prints a markdown table, writes JSON.

    python benchmarks/bench_scope.py --batches 256,1024 --steps 10 --json benchmarks/results/scope.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import json, os, statistics, sys, time
mode, scope, batch, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import tensorflow as tf
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
import keras_kare
from keras_kare import distribute

received = {"factors": 0, "rows": 0}  # elements received from the other replicas, per replica and step
def counting(fn, key):
    def wrapped(value, *args, **kwargs):
        out = fn(value, *args, **kwargs)
        if out is not value:  # gathered across replicas (counted while tracing)
            local = batch // strategy.num_replicas_in_sync
            if key == "rows":  # (batch/R, batch) row blocks stacked into the (batch, batch) Gram
                elements = (batch - local) * batch
            else:  # an unknown example axis (a sharded dataset) holds batch/R examples here, batch gathered
                size = lambda shape, n: int(np.prod([n if d is None else d for d in shape]))  # noqa: E731
                elements = size(out.shape, batch) - size(value.shape, local)
            # MirroredStrategy traces the step once per local device
            received[key] += elements / len(strategy.extended.worker_devices)
        return out
    return wrapped
distribute.gather_examples = counting(distribute.gather_examples, "factors")
distribute.gather_replicated_rows = counting(distribute.gather_replicated_rows, "rows")

if mode == "mirrored":
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
elif mode == "workers":
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
else:
    strategy = tf.distribute.get_strategy()

class Timer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__(); self.times = []
    def on_train_batch_begin(self, b, logs=None):
        self.t = time.perf_counter()
    def on_train_batch_end(self, b, logs=None):
        float(logs["kare"]); self.times.append(time.perf_counter() - self.t)

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(2 * batch * (steps + 2), 784)).astype("float32")  # enough for a data-sharded worker
y = rng.normal(size=len(x)).astype("float32")
with strategy.scope():
    net = keras.Sequential([keras.Input((784,)), keras.layers.Dense(512, "gelu"),
                            keras.layers.Dense(512, "gelu"), keras.layers.Dense(1)])
    model = keras_kare.KAREModel(net, kare_scope=scope)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True)  # global batches
timer = Timer()
model.fit(ds, epochs=1, steps_per_epoch=steps + 2, verbose=0, callbacks=[timer])
params = sum(int(np.prod(w.shape)) for w in net.trainable_variables)
print("RESULT " + json.dumps({
    "ms": 1000 * statistics.median(timer.times[2:]), "replicas": strategy.num_replicas_in_sync,
    "factor_bytes": 4 * received["factors"], "row_bytes": 4 * received["rows"],
    "grad_allreduce_bytes": 4 * params if mode != "single" else 0,
}))
"""


def _free_ports(k: int) -> list:
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(extra=None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.update(extra or {})
    return env


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"no result:\n{stdout[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def run(mode: str, scope: str, batch: int, steps: int, timeout: float) -> dict:
    args = [sys.executable, "-c", CHILD, mode, scope, str(batch), str(steps)]
    if mode != "workers":
        proc = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=timeout)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-3000:])
        return _result(proc.stdout)
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = [
        subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}),
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(err[-3000:])
    results = [_result(out) for out, _ in outs]
    chief = dict(results[0])
    chief["ms"] = max(r["ms"] for r in results)  # a synchronous step ends when both workers end it
    return chief


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="256,1024")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--modes", default="single,mirrored,workers")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", default=str(HERE / "results" / "scope.json"))
    args = parser.parse_args()
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        for mode in args.modes.split(","):
            for scope in ["replica"] if mode == "single" else ["replica", "global"]:
                t0 = time.perf_counter()
                res = run(mode, scope, batch, args.steps, args.timeout)
                res.update(mode=mode, scope=scope if mode != "single" else "-", batch=batch)
                res["wall_s"] = time.perf_counter() - t0
                rows.append(res)
                print(f"  {mode:8s} {res['scope']:7s} batch {batch:5d}: {res['ms']:8.1f} ms/step", flush=True)
    print(
        "\n| global batch | configuration | kare_scope | ms / step | KARE batch | factors + targets gathered "
        "| Gram rows gathered | factor cotangents all-reduced | gradient all-reduced |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    mib = lambda b: f"{b / 2**20:.2f} MiB" if b else "–"  # noqa: E731
    for r in rows:
        kare_batch = r["batch"] // r["replicas"] if r["scope"] == "replica" else r["batch"]
        # the backward pass all-reduces the gathered factors' cotangents: the full gathered size
        cotangents = r["factor_bytes"] * r["replicas"] / (r["replicas"] - 1) if r["factor_bytes"] else 0
        print(
            f"| {r['batch']} | {r['mode']} | {r['scope']} | {r['ms']:.1f} | {kare_batch} | {mib(r['factor_bytes'])} "
            f"| {mib(r['row_bytes'])} | {mib(cotangents)} | {mib(r['grad_allreduce_bytes'])} |"
        )
    out = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
