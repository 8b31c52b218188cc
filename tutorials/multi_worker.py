"""Multi-worker KARE training with tf.distribute, and training that survives a killed worker.

What this shows: ``KAREModel.fit`` under ``tf.distribute.MultiWorkerMirroredStrategy``
with one process per worker, each on its own CPU (or GPU), with
``keras.callbacks.BackupAndRestore`` so that a worker that dies (preempted,
killed, out of memory) costs at most the epoch it was in: restart every worker
with the same command and training resumes from the last backed-up epoch,
ending with the weights an uninterrupted run would have. Afterwards one
worker (the chief, index 0) predicts with kernel ridge regression on the
learned NTK, outside the strategy's scope. See docs/scaling_out.md.

Data: the paper's single-index problem (800 training points, minibatches of
64, i.e. 32 per worker). Each worker builds the same arrays; ``fit`` shards
every global batch of 64 by data, so worker i computes the NTK of its 32 rows
of it. ``--kare-scope replica`` (default): KARE of each worker's share, the
step minimises their mean; ``--kare-scope global``: one KARE of the whole
global batch, exactly the single-process step on batches of 64.

Run it one of two ways:

1. A local cluster, started by this script (2 worker processes on this
   machine, localhost ports picked free):

       python tutorials/multi_worker.py --local-cluster [--workers 2] [--out DIR]

   ``--simulate-failure`` makes worker 1 kill itself (SIGKILL) in the middle
   of epoch 3, once; the launcher then stops the other workers and restarts
   all of them, and the run resumes from the backup of epoch 2.

2. One command per worker, on one or several machines (the usual way on a
   cluster; the job scheduler restarts failed workers). Every worker gets the
   same cluster and its own index in ``TF_CONFIG``, and the same ``--out``
   (a shared file system, or the same path on every machine):

       TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}' \\
           python tutorials/multi_worker.py --out DIR
       TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 1}}' \\
           python tutorials/multi_worker.py --out DIR

Takes a minute or two on a laptop CPU (--epochs 20).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--local-cluster", action="store_true", help="start the workers as local processes")
    p.add_argument("--workers", type=int, default=2, help="number of local workers (--local-cluster)")
    p.add_argument("--out", default=None, help="backups and the trained model (default: a temporary folder)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument(
        "--kare-scope",
        choices=("replica", "global"),
        default="replica",
        help="KARE of each worker's share (mean over workers) or one KARE of the whole global batch",
    )
    p.add_argument("--simulate-failure", action="store_true", help="worker 1 kills itself once, mid-epoch 3")
    p.add_argument("--max-restarts", type=int, default=3, help="restarts of a failed local cluster")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a local cluster run may take")
    return p.parse_args(argv)


# ---------------------------------------------------------------- one worker
def train_worker(args) -> None:
    """Run by every worker: train with BackupAndRestore; the chief then evaluates and saves."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_kare
    from keras_kare.datasets import make_single_index
    from keras_kare.reproduce import build_mlp

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
    index = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
    out = Path(args.out)

    # the same seed on every worker and in every restart: same data, same initial weights, same shuffles
    keras.utils.set_random_seed(0)
    x_train, y_train, x_test, y_test = make_single_index(gamma=1.0, sigma=0.0, seed=0)
    global_batch = 32 * strategy.num_replicas_in_sync  # 32 examples per worker and step
    with strategy.scope():
        model = keras_kare.KAREModel(build_mlp(10, depth=1, width=64, seed=0), ridge=0.1, kare_scope=args.kare_scope)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0, momentum=0.9))

    class FailOnce(keras.callbacks.Callback):
        """--simulate-failure: worker 1 SIGKILLs itself after the first batch of epoch 3, the first time only."""

        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            marker = out / "failed-once"
            if args.simulate_failure and index == 1 and self.epoch == 2 and batch == 0 and not marker.exists():
                marker.write_text("worker 1 was killed here once\n")
                print("worker 1: simulating a failure (SIGKILL)", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    # one backup folder per worker: Keras' BackupAndRestore writes from every worker
    callbacks = [keras.callbacks.BackupAndRestore(str(out / "backup" / f"worker-{index}")), FailOnce()]
    history = model.fit(
        x_train,
        y_train,
        batch_size=global_batch,
        epochs=args.epochs,
        callbacks=callbacks,
        verbose=2 if index == 0 else 0,
    )
    print(f"worker {index}: ran epochs {history.epoch[0] + 1}..{history.epoch[-1] + 1} in this run", flush=True)

    if index == 0:
        # Outside the strategy's scope: the chief holds the same trained weights as every worker.
        kp = keras_kare.KernelPredictor(model, ridge=1e-3).fit(x_train, y_train)  # relative ridge
        mse = float(np.mean((kp.predict(x_test) - y_test) ** 2))
        print(
            f"KARE {history.history['kare'][-1]:.4f}; KRR on the learned NTK: test MSE {mse:.4f} "
            f"(variance of the test targets {float(np.var(y_test)):.4f})",
            flush=True,
        )
        model.save(out / "kare_model.keras")
        print(f"saved {out / 'kare_model.keras'}", flush=True)
    # every worker waits here for the chief: a worker that exits early looks like a crash to the others
    strategy.reduce("SUM", strategy.run(lambda: tf.constant(1)), axis=None)


# ---------------------------------------------------------------- local cluster launcher
def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_local_cluster(args) -> int:
    """Start ``--workers`` copies of this script with their TF_CONFIG; restart them all if one fails."""
    for attempt in range(args.max_restarts + 1):
        ports = free_ports(args.workers)  # fresh ports: the old ones may still be in TIME_WAIT
        cluster = {"worker": [f"localhost:{p}" for p in ports]}
        procs = []
        try:
            for i in range(args.workers):
                env = dict(
                    os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
                )
                env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
                env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "")  # one CPU per worker here
                cmd = [sys.executable, os.path.abspath(__file__), "--out", args.out, "--epochs", str(args.epochs)]
                cmd += ["--kare-scope", args.kare_scope]
                cmd += ["--simulate-failure"] if args.simulate_failure else []
                procs.append(subprocess.Popen(cmd, env=env, start_new_session=True))
            deadline = time.monotonic() + args.timeout
            while all(p.poll() in (None, 0) for p in procs) and any(p.poll() is None for p in procs):
                if time.monotonic() > deadline:
                    print(f"launcher: no result after {args.timeout:.0f} s; stopping the workers", flush=True)
                    return 1
                time.sleep(0.5)
        finally:
            for p in procs:  # a failed worker's peers wait for it in a collective: stop them
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        codes = [p.returncode for p in procs]
        if all(c == 0 for c in codes):
            return 0
        print(f"launcher: run {attempt + 1} ended with exit codes {codes}; restarting every worker", flush=True)
    print("launcher: giving up after --max-restarts restarts", flush=True)
    return 1


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out = args.out or tempfile.mkdtemp(prefix="kare-multi-worker-")
    if args.local_cluster:
        print(f"launcher: {args.workers} local workers; backups and model in {args.out}", flush=True)
        return run_local_cluster(args)
    if "TF_CONFIG" not in os.environ:
        print("Set TF_CONFIG for this worker, or pass --local-cluster (see the docstring).", file=sys.stderr)
        return 2
    train_worker(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
