"""KAREModel.fit on a local 2-worker MultiWorkerMirroredStrategy cluster, and fit killed and resumed.

Every multi-process test starts its workers through :func:`multiworker.run_cluster`
(localhost ports, bounded in time, workers always killed in a ``finally``) and
compares what they report with a reference computed here, in one process:

- 2 workers equal one process that takes each global batch of 16, splits it
  into the two workers' shares (rows 0-7 and 8-15 of the batch: the in-memory
  pipeline is sharded by data) and minimises the mean of their KAREs
  (``kare_scope="replica"``) or one KARE of the whole batch (``"global"``);
- a fit killed with SIGKILL in the middle of an epoch and restarted with the
  same command (``keras.callbacks.BackupAndRestore``) ends with the weights of
  an uninterrupted fit, with every epoch run to its end exactly once;
- a batch that is not finite on one worker only is skipped on both.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from multiworker import ClusterError, data, network, run_cluster
from precision import float32_gram_entry_rtol

import keras_kare
from keras_kare.distribute import KARE_SCOPES

SCOPES = list(KARE_SCOPES)
N_PARAMS = 5 * 8 + 8 + 8 + 1  # the Dense(8) -> Dense(1) network on 5 features
BATCH, WORKERS = 16, 2


def _rtol(steps: int) -> float:
    """Per step the float32 Gram entry error bound (precision.float32_gram_entry_rtol; KARE with z = 0.1 on
    8-16 examples does not amplify it), accumulated over ``steps`` steps: the two sides run the same float32
    operations, summed in another order (all-reduce across workers vs one process)."""
    return steps * float32_gram_entry_rtol(N_PARAMS)


def _assert_weights_close(actual, expected, rtol):
    for a, b in zip(actual, expected):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def _max_diff(actual, expected) -> float:
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(actual, expected))


def reference_fit(w0, scope, epochs, skip_steps=()):
    """One process, no strategy: the steps the workers take, from the same initial weights ``w0``.

    Each global batch of ``BATCH`` rows (in order: no shuffle) is split into
    the workers' contiguous shares; ``scope="replica"``: the mean of their
    KAREs, ``"global"``: one KARE of the whole batch. SGD with momentum as in
    the workers. Steps in ``skip_steps`` are not applied (non-finite).
    """
    x, y = data()
    ref = network()
    for v, w in zip(ref.trainable_variables, w0):
        v.assign(np.asarray(w, "float32"))
    opt = keras.optimizers.SGD(0.05, momentum=0.5)
    share = BATCH // WORKERS
    step = 0
    for _ in range(epochs):
        for s in range(0, len(x), BATCH):
            if step not in skip_steps:
                with tf.GradientTape() as tape:
                    if scope == "replica":
                        parts = [
                            keras_kare.kare(keras_kare.ntk(ref, x[a : a + share]), y[a : a + share], ridge=0.1)
                            for a in range(s, s + BATCH, share)
                        ]
                        objective = tf.add_n(parts) / len(parts)
                    else:
                        objective = keras_kare.kare(keras_kare.ntk(ref, x[s : s + BATCH]), y[s : s + BATCH], ridge=0.1)
                grads = tape.gradient(objective, ref.trainable_variables)
                grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, ref.trainable_variables)]
                opt.apply(grads, ref.trainable_variables)
            step += 1
    return [v.numpy() for v in ref.trainable_variables]


def _train_args(tmp, name, *extra, epochs=2, distributed=True, scope="replica"):
    args = ["--epochs", str(epochs), "--scope", scope, "--backup-dir", str(tmp / f"{name}-backup")]
    args += ["--log", str(tmp / f"{name}.log")] + (["--distributed"] if distributed else [])
    return args + list(extra)


def _epoch_log(path):
    """Per process (in order of first appearance): the epochs it began and the epochs it ended."""
    runs = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        run = runs.setdefault((event["pid"], event["worker"]), {"begin": [], "end": []})
        run[event["event"]].append(event["epoch"])
    return list(runs.values())


def _killed(procs) -> bool:
    return any(p.returncode == -signal.SIGKILL for p in procs)


# ------------------------------------------------------------------ the cluster helper itself (fast: no TensorFlow)
def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_cluster_helper_kills_its_workers_on_timeout(tmp_path):
    with pytest.raises(ClusterError, match="did not finish in 3"):
        run_cluster("sleep", timeout=3, log_dir=tmp_path)
    pids = [int((tmp_path / f"pid-{i}").read_text()) for i in range(2)]
    assert all(_gone(pid) for pid in pids)


def test_cluster_helper_stops_the_others_when_one_is_killed(tmp_path):
    assert run_cluster("sleep", ["--die", "1"], timeout=60, stop_all_when=_killed, log_dir=tmp_path) == [None, None]
    pids = [int((tmp_path / f"pid-{i}").read_text()) for i in range(2)]
    assert all(_gone(pid) for pid in pids)


# ------------------------------------------------------------------ 2 workers vs one process
@pytest.mark.slow
@pytest.mark.parametrize("scope", SCOPES)
def test_two_workers_equal_the_single_process_reference(tmp_path, scope):
    results = run_cluster("train", _train_args(tmp_path, "fit", "--probe-ntk", scope=scope), log_dir=tmp_path)
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["local_devices"] for r in results] == [1, 1]
    assert results[0]["w0"] == results[1]["w0"]
    assert results[0]["weights"] == results[1]["weights"]  # mirrored variables: identical on both workers
    expected = reference_fit(results[0]["w0"], scope, epochs=2)
    print(f"max |w_2 workers - w_reference| = {_max_diff(results[0]['weights'], expected):.3g}")
    _assert_weights_close(results[0]["weights"], expected, _rtol(4))
    # the Gram outside training: an error inside the multi-worker scope, the same Gram on each worker outside
    for r in results:
        for error in (r["ntk_error"], r["predictor_error"]):
            assert error.startswith("NotImplementedError: keras_kare.ntk (also used by KernelPredictor)"), error
            assert "multi-worker strategy" in error and "outside strategy.scope()" in error
    np.testing.assert_array_equal(results[0]["ntk_outside"], results[1]["ntk_outside"])


@pytest.mark.slow
@pytest.mark.parametrize("scope", SCOPES)
def test_nonfinite_batch_on_one_worker_is_skipped_on_both(tmp_path, scope):
    # row 12 is in worker 1's share (rows 8-15) of the first global batch only
    args = _train_args(tmp_path, "nan", "--nan-row", "12", epochs=1, scope=scope)
    results = run_cluster("train", args, log_dir=tmp_path)
    assert results[0]["weights"] == results[1]["weights"]
    assert [r["history"]["nonfinite_steps"] for r in results] == [[1.0], [1.0]]
    assert [r["iterations"] for r in results] == [1, 1]  # the skipped step did not reach the optimizer
    expected = reference_fit(results[0]["w0"], scope, epochs=1, skip_steps={0})
    _assert_weights_close(results[0]["weights"], expected, _rtol(1))


# ------------------------------------------------------------------ killed and resumed
@pytest.mark.slow
@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_single_process_fit_killed_and_resumed_equals_uninterrupted(tmp_path, shuffle):
    epochs, kill_epoch = 6, 3
    extra = ["--shuffle"] if shuffle else []
    killed = _train_args(tmp_path, "killed", *extra, epochs=epochs, distributed=False)
    killed += ["--kill-worker", "0", "--kill-epoch", str(kill_epoch), "--marker", str(tmp_path / "marker")]
    first = run_cluster("train", killed, workers=1, stop_all_when=_killed, log_dir=tmp_path / "run1")
    assert first == [None]  # SIGKILLed after the first batch of epoch 3
    resumed = run_cluster("train", killed, workers=1, log_dir=tmp_path / "run2")[0]  # the same command
    straight_args = _train_args(tmp_path, "straight", *extra, epochs=epochs, distributed=False)
    straight = run_cluster("train", straight_args, workers=1, log_dir=tmp_path / "run3")[0]
    runs = _epoch_log(tmp_path / "killed.log")
    print("epochs begun/ended per run:", runs, "History of the resumed run:", resumed["epochs"])
    assert runs[0] == {"begin": [0, 1, 2, 3], "end": [0, 1, 2]}  # epoch 3 was cut short
    assert runs[1] == {"begin": [3, 4, 5], "end": [3, 4, 5]}  # ... and rerun from its start
    assert resumed["epochs"] == [3, 4, 5]  # History: no epoch lost, none twice
    assert resumed["iterations"] == straight["iterations"] == epochs * 2  # optimizer state restored
    np.testing.assert_allclose(resumed["history"]["kare"], straight["history"]["kare"][kill_epoch:], rtol=_rtol(1))
    print(f"max |w_resumed - w_uninterrupted| = {_max_diff(resumed['weights'], straight['weights']):.3g}")
    # the same operations on the same batches in the same order (op determinism): equal up to float32 round-off
    _assert_weights_close(resumed["weights"], straight["weights"], _rtol(1))


@pytest.mark.slow
@pytest.mark.parametrize("scope", SCOPES)
def test_two_workers_one_killed_and_both_restarted_equals_uninterrupted(tmp_path, scope):
    epochs, kill_epoch = 5, 2
    killed = _train_args(tmp_path, "killed", "--shuffle", epochs=epochs, scope=scope)
    killed += ["--kill-worker", "1", "--kill-epoch", str(kill_epoch), "--marker", str(tmp_path / "marker")]
    # worker 1 SIGKILLs itself after the first batch of epoch 2; worker 0 then waits for it in the next
    # all-reduce and is killed by run_cluster (stop_all_when)
    first = run_cluster("train", killed, stop_all_when=_killed, log_dir=tmp_path / "run1")
    assert first == [None, None]
    resumed = run_cluster("train", killed, log_dir=tmp_path / "run2")  # the same command on both workers
    straight_args = _train_args(tmp_path, "straight", "--shuffle", epochs=epochs, scope=scope)
    straight = run_cluster("train", straight_args, log_dir=tmp_path / "run3")
    runs = _epoch_log(tmp_path / "killed.log")
    print("epochs begun/ended per worker and run:", runs, "History:", [r["epochs"] for r in resumed])
    first_runs, second_runs = runs[:2], runs[2:]
    assert all(r["end"] == [0, 1] and r["begin"][:3] == [0, 1, 2] for r in first_runs)
    assert all(r == {"begin": [2, 3, 4], "end": [2, 3, 4]} for r in second_runs)
    assert [r["epochs"] for r in resumed] == [[2, 3, 4], [2, 3, 4]]
    assert resumed[0]["weights"] == resumed[1]["weights"]
    assert [r["iterations"] for r in resumed] == [r["iterations"] for r in straight] == [epochs * 2] * 2
    print(f"max |w_resumed - w_uninterrupted| = {_max_diff(resumed[0]['weights'], straight[0]['weights']):.3g}")
    _assert_weights_close(resumed[0]["weights"], straight[0]["weights"], _rtol(1))


@pytest.mark.slow
def test_tutorial_local_cluster_recovers_from_a_killed_worker(tmp_path):
    """tutorials/multi_worker.py --local-cluster --simulate-failure: worker 1 dies in epoch 3, the launcher
    restarts both workers, they resume at epoch 3 and finish; the chief saves the model."""
    script = Path(__file__).resolve().parents[1] / "tutorials" / "multi_worker.py"
    env = dict(os.environ, PYTHONPATH=str(script.parents[1]), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, str(script), "--local-cluster", "--simulate-failure", "--epochs", "4"]
    cmd += ["--out", str(tmp_path), "--timeout", "400"]  # the launcher stops its workers after 400 s
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "restarting every worker" in proc.stdout
    assert "worker 0: ran epochs 3..4 in this run" in proc.stdout
    assert "worker 1: ran epochs 3..4 in this run" in proc.stdout
    assert (tmp_path / "kare_model.keras").exists()
