"""A local ``MultiWorkerMirroredStrategy`` cluster of worker processes, for tests.

:func:`run_cluster` starts one Python process per worker, each with its own
``TF_CONFIG`` (``localhost`` ports picked free) and one CPU device, runs a
scenario of this file in each (``python multiworker.py SCENARIO ARGS``),
and returns the JSON each worker prints on its last ``RESULT`` line. Every run
is bounded in time, and its workers are killed in a ``finally`` whatever
happens, so no process outlives the call.

The scenarios (``scenario_*`` below) train a small :class:`keras_kare.KAREModel`
on fixed data and report the initial and final weights, the History and the
batches each worker saw, so that the test module can compare them with a
single-process reference computed in the test process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
RESULT = "RESULT "


class ClusterError(RuntimeError):
    """A worker failed, or the cluster did not finish in time (the message holds the workers' output)."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on localhost that were free a moment ago (the OS picks them)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: Sequence[int], index: int) -> str:
    """``TF_CONFIG`` of worker ``index`` in a cluster of ``localhost`` workers on ``ports``."""
    return json.dumps(
        {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


def worker_env(ports: Sequence[int], index: int, extra: Optional[dict] = None) -> dict:
    """The environment of worker ``index``: its ``TF_CONFIG``, the repository on the path, CPU only."""
    env = dict(os.environ)
    env.update(
        TF_CONFIG=tf_config(ports, index),
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]),
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
        PYTHONHASHSEED="0",
    )
    env.update(extra or {})
    return env


def _stop(proc: subprocess.Popen) -> None:
    """Kill one worker we started (its whole process group: it may have started helpers) and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process in uninterruptible sleep
        pass


def run_cluster(
    scenario: str,
    args: Sequence[str] = (),
    workers: int = 2,
    timeout: float = 300.0,
    env: Optional[dict] = None,
    stop_all_when: Optional[Callable[[list], bool]] = None,
    log_dir: Optional[Path] = None,
) -> list[Optional[dict]]:
    """Run ``scenario`` on a local cluster of ``workers`` processes and return each worker's JSON result.

    Args:
        scenario: name of a ``scenario_*`` function of this module.
        args: extra command-line arguments, the same for every worker.
        workers: number of worker processes (one CPU device and one replica each).
        timeout: seconds until every worker still running is killed and
            :class:`ClusterError` raised.
        env: extra environment variables for every worker.
        stop_all_when: called with the list of ``Popen`` objects while they
            run; when it returns True, every worker still running is killed
            (e.g. once one of them was killed: the others would wait for it in
            a collective). Those workers then report None instead of raising.
        log_dir: the workers' working directory, where their stdout/stderr
            files go (default: a temporary folder, removed afterwards).

    Raises:
        ClusterError: a worker exited non-zero (unless stopped through
            ``stop_all_when``), printed no result, or the timeout passed.
    """
    if log_dir is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="kare-cluster-") as tmp:
            return run_cluster(scenario, args, workers, timeout, env, stop_all_when, Path(tmp))
    ports = free_ports(workers)
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    procs, logs = [], []
    stopped = False
    try:
        for i in range(workers):
            out = open(log_dir / f"{scenario}-{i}.out", "w")
            err = open(log_dir / f"{scenario}-{i}.err", "w")
            logs.append((out, err))
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), scenario, *args],
                    stdout=out,
                    stderr=err,
                    env=worker_env(ports, i, env),
                    cwd=str(log_dir),
                    start_new_session=True,  # its own process group: _stop kills what it started
                )
            )
        deadline = time.monotonic() + timeout
        while None in [p.poll() for p in procs]:  # poll every worker (sets returncode), not just up to a live one
            if stop_all_when is not None and not stopped and stop_all_when(procs):
                stopped = True
                for p in procs:
                    _stop(p)
                break
            if time.monotonic() > deadline:
                raise ClusterError(f"{scenario}: the cluster did not finish in {timeout} s" + _tails(log_dir, procs))
            time.sleep(0.2)
        if stop_all_when is not None and not stopped and stop_all_when(procs):
            stopped = True  # everything ended between two polls
    finally:
        for p in procs:
            _stop(p)
        for out, err in logs:
            out.close()
            err.close()
    results = []
    for i, p in enumerate(procs):
        text = (log_dir / f"{scenario}-{i}.out").read_text()
        lines = [line for line in text.splitlines() if line.startswith(RESULT)]
        if lines and p.returncode == 0:
            results.append(json.loads(lines[-1][len(RESULT) :]))
        elif stopped:
            results.append(None)
        else:
            raise ClusterError(f"{scenario}: worker {i} exited with {p.returncode}" + _tails(log_dir, procs))
    return results


def _tails(log_dir: Path, procs) -> str:
    parts = []
    for i, p in enumerate(procs):
        for stream in ("out", "err"):
            files = sorted(log_dir.glob(f"*-{i}.{stream}"))
            text = files[-1].read_text()[-3000:] if files else ""
            parts.append(f"\n--- worker {i} (rc={p.returncode}) std{stream}:\n{text}")
    return "".join(parts)


# ====================================================================== inside a worker
def _report(result: dict) -> None:
    print(RESULT + json.dumps(result), flush=True)


def _setup(distributed: bool = True):
    """(tf, strategy, task index): a MultiWorkerMirroredStrategy from ``TF_CONFIG``, or the default strategy."""
    import keras
    import tensorflow as tf

    keras.config.disable_traceback_filtering()
    tf.config.experimental.enable_op_determinism()
    if not distributed:
        return tf, tf.distribute.get_strategy(), 0
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    return tf, strategy, index


def data(n: int = 32, d: int = 5):
    """The fixed training data of every scenario (and of the test's reference)."""
    import numpy as np

    r = np.random.default_rng(0)
    x = r.standard_normal((n, d)).astype("float32")
    y = np.sign(x[:, 0] + 0.2).astype("float32")
    return x, y


def network(d: int = 5, seed: int = 7):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(8, "gelu"), keras.layers.Dense(1)])


def _weights(model) -> list:
    return [w.numpy().tolist() for w in model.base_model.trainable_variables]


def _callbacks(index: int, backup_dir: str, log: str, kill_worker: int, kill_epoch: int, marker: str) -> list:
    """BackupAndRestore (one folder per worker), a log of epochs begun/ended, and the kill switch.

    The kill switch SIGKILLs this process after the first batch of epoch
    ``kill_epoch`` (worker ``kill_worker`` only) unless ``marker`` exists, and
    creates ``marker`` first: the same command kills on the first run only.
    """
    import signal

    import keras

    class EpochLog(keras.callbacks.Callback):
        def _write(self, event, epoch):
            with open(log, "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "worker": index, "event": event, "epoch": epoch}) + "\n")

        def on_epoch_begin(self, epoch, logs=None):
            self._write("begin", epoch)

        def on_epoch_end(self, epoch, logs=None):
            self._write("end", epoch)

    class KillSwitch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if index == kill_worker and self.epoch == kill_epoch and batch == 0 and not os.path.exists(marker):
                Path(marker).write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)

    return [
        keras.callbacks.BackupAndRestore(os.path.join(backup_dir, f"worker-{index}")),
        EpochLog(),
        KillSwitch(),
    ]


def scenario_train(argv: Sequence[str]) -> None:
    """Fit the fixed problem with BackupAndRestore; report initial/final weights, History and probes.

    Options (see ``--help``): one process without a strategy or a worker of a
    MultiWorkerMirroredStrategy (``--distributed``, from ``TF_CONFIG``); the
    KARE scope; epochs; shuffle; where the backups and the epoch log go; the
    kill switch; a NaN target at one row with ``on_nonfinite="skip"``; and a
    probe of ``keras_kare.ntk`` inside the strategy's scope.
    """
    import argparse

    p = argparse.ArgumentParser(prog="multiworker.py train")
    p.add_argument("--distributed", action="store_true")
    p.add_argument("--scope", default="replica")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--shuffle", action="store_true")
    p.add_argument("--backup-dir", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--kill-worker", type=int, default=-1)
    p.add_argument("--kill-epoch", type=int, default=-1)
    p.add_argument("--marker", default="")
    p.add_argument("--nan-row", type=int, default=-1)
    p.add_argument("--probe-ntk", action="store_true")
    a = p.parse_args(argv)

    tf, strategy, index = _setup(a.distributed)
    import keras
    import numpy as np

    import keras_kare
    from keras_kare import KAREModel

    x, y = data()
    if a.nan_row >= 0:
        y = y.copy()
        y[a.nan_row] = np.nan
    with strategy.scope():
        model = KAREModel(network(), ridge=0.1, on_nonfinite="skip" if a.nan_row >= 0 else "stop", kare_scope=a.scope)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5))
    w0 = _weights(model)
    callbacks = _callbacks(index, a.backup_dir, a.log, a.kill_worker, a.kill_epoch, a.marker)
    if a.nan_row >= 0:  # fit refuses non-finite arrays up front; a pipeline's values reach the step
        from keras_kare import in_memory

        pipeline, steps = in_memory.epoch_dataset(x, y, batch_size=a.batch, shuffle=False)
        hist = model.fit(pipeline, steps_per_epoch=steps, epochs=a.epochs, callbacks=callbacks, verbose=0)
    else:
        hist = model.fit(x, y, batch_size=a.batch, epochs=a.epochs, shuffle=a.shuffle, callbacks=callbacks, verbose=0)
    out = {
        "index": index,
        "replicas": strategy.num_replicas_in_sync,
        "local_devices": len(strategy.extended.worker_devices) if a.distributed else 1,
        "w0": w0,
        "weights": _weights(model),
        "history": {k: [float(v) for v in vals] for k, vals in hist.history.items()},
        "epochs": list(hist.epoch),
        "iterations": int(model.optimizer.iterations.numpy()),
    }
    if a.probe_ntk:
        with strategy.scope():
            try:
                keras_kare.ntk(model.base_model, x[:8], batch_size=4)
                out["ntk_error"] = None
            except Exception as err:  # reported to the test
                out["ntk_error"] = f"{type(err).__name__}: {err}"
            try:
                keras_kare.KernelPredictor(model, batch_size=4).fit(x[:8], y[:8])
                out["predictor_error"] = None
            except Exception as err:
                out["predictor_error"] = f"{type(err).__name__}: {err}"
        # outside the scope every worker computes the same Gram alone
        out["ntk_outside"] = np.asarray(keras_kare.ntk(model.base_model, x[:8], batch_size=4)).tolist()
    _report(out)


def scenario_sleep(argv: Sequence[str]) -> None:
    """No TensorFlow: write the process id to ``pid-INDEX`` and sleep (``--die INDEX``: that worker kills itself)."""
    import signal

    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    Path(f"pid-{index}").write_text(str(os.getpid()))
    if len(argv) == 2 and argv[0] == "--die" and int(argv[1]) == index:
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(600)


def main(argv: Sequence[str]) -> None:
    scenario = globals().get(f"scenario_{argv[0]}")
    if scenario is None:
        raise SystemExit(f"unknown scenario {argv[0]!r}")
    scenario(list(argv[1:]))


if __name__ == "__main__":
    main(sys.argv[1:])
