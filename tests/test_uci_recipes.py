"""The UCI recipes' machinery: early stopping restores the best weights, one trace per architecture,
the paper's batch rule, and worker processes that give the results of one process."""

import json
import os
import sys

import numpy as np
import pytest

from keras_kare.initializers import build_mlp
from keras_kare.model import KAREModel
from keras_kare.reproduce import experiments as E
from keras_kare.reproduce import uci_protocol as P
from keras_kare.reproduce.runner import paper_batch, train_dnn
from keras_kare.trainer_pool import TrainerPool
from tests.test_uci_protocol import UCI_DIR


def _data(n=24, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, np.sign(x[:, :1] + 0.3 * rng.normal(size=(n, 1))).astype(np.float32)


def test_paper_batch_rule_follows_the_data_set_size():
    assert paper_batch(4999) is None and paper_batch(5000) == 32 and paper_batch(12960) == 32
    # a 6 000-row table splits into ~3 000 training rows: still mini-batch, as in the authors' code
    assert paper_batch(6000) == 32


def test_dnn_early_stopping_restores_the_best_evaluation_and_stops_after_patience():
    x, y = _data()
    scores = iter([3.0, 1.0, 2.0, 2.5, 2.0, 0.5])  # best at the 2nd evaluation; 3 worse ones then stop
    seen = []

    def monitor(model):
        seen.append([w.copy() for w in model.get_weights()])
        return next(scores)

    net = build_mlp(3, 1, 8, 1, seed=0)
    net, info = train_dnn(net, x, y, 0.05, 60, None, lambda m: None, calls=6, monitor=monitor, jit_compile=False)
    assert len(seen) == 5  # the 6th evaluation never ran
    assert info["best_step"] == 20  # 10 full-batch steps per evaluation
    for w, best in zip(net.get_weights(), seen[1]):
        np.testing.assert_array_equal(w, best)
    assert any(not np.array_equal(b, last) for b, last in zip(seen[1], seen[-1]))  # training did move on


def test_dnn_early_stopping_can_keep_the_initial_weights():
    """``monitor_initial``: the initial weights are scored first (step 0) and restored when nothing beats them."""
    x, y = _data()
    scores = iter([1.0, 2.0, 1.5, 1.2, 0.1])  # the initial network best; three worse calls stop the training
    seen = []

    def monitor(model):
        seen.append([w.copy() for w in model.get_weights()])
        return next(scores)

    net = build_mlp(3, 1, 8, 1, seed=0)
    initial = [w.copy() for w in net.get_weights()]
    net, info = train_dnn(
        net, x, y, 0.05, 60, None, lambda m: None, calls=6, monitor=monitor, monitor_initial=True, jit_compile=False
    )
    assert len(seen) == 4 and info["best_step"] == 0
    for w, w0, first in zip(net.get_weights(), initial, seen[0]):
        np.testing.assert_array_equal(w, w0)
        np.testing.assert_array_equal(first, w0)  # the first score was of the untouched network
    assert any(not np.array_equal(a, b) for a, b in zip(initial, seen[-1]))  # training did move the weights


def _count_traces(monkeypatch):
    calls = {"n": 0}
    original = KAREModel.train_step

    def counted(self, data):
        calls["n"] += 1  # Python runs only while tracing
        return original(self, data)

    monkeypatch.setattr(KAREModel, "train_step", counted)
    return calls


def test_grid_reuses_one_trace_per_architecture_and_row_count(monkeypatch):
    calls = _count_traces(monkeypatch)
    x, y = _data()
    s = dict(E.UCI_DEFAULTS, kare_steps=4, ridges=[0.1, 1.0], dataset="t", n_examples=48)
    pool = TrainerPool()
    for lr in (1.0, 0.1, 0.01):
        P.neural_trial("kare", 1, 8, lr, x, y, x[:6], y[:6], s, pool=pool)
    assert pool.builds == 1 and calls["n"] == 1  # three learning rates, one compiled step
    for lr in (1.0, 0.1):
        P.neural_trial("kare_es", 1, 8, lr, x, y, x[:6], y[:6], s, pool=pool)
    assert pool.builds == 2 and calls["n"] == 2  # the early-stopped training sees 80% of the rows: one more


def _run(tmp_path, name, jobs, **kw):
    return E.uci(
        tmp_path / name,
        log=lambda m: None,
        jobs=jobs,
        **kw,
        data_dir=str(UCI_DIR),
        depths=[1],
        widths=[4],
        kare_lrs=[1.0],
        dnn_lrs=[0.1],
        kare_steps=3,
        dnn_steps=3,
        ridges=[0.1, 10.0],
        protocol="validated",
        recipes=["kare_es", "ensemble"],
    )


def test_bad_jobs_fail_before_any_training(tmp_path):
    for jobs in (0, True, 1.5):
        with pytest.raises(ValueError, match="jobs must be an int >= 1"):
            _run(tmp_path, "bad", jobs)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # two spawned TensorFlow processes and every fold's first trace: about a minute
def test_two_worker_processes_give_the_results_of_one(tmp_path):
    _run(tmp_path, "one", 1, in_process=True)
    _run(tmp_path, "two", 2)
    _run(tmp_path, "fresh", 1, in_process=False)  # one table after another, each in a new process with every core
    one, two, fresh = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two", "fresh"))
    assert [r["dataset"] for r in one] == [r["dataset"] for r in two] == ["tiny2", "tiny3"]
    assert one == two == fresh
    assert (tmp_path / "one" / "table.md").read_text() == (tmp_path / "two" / "table.md").read_text()


def test_the_paper_grid_on_several_tables_trains_each_in_a_fresh_process(tmp_path, monkeypatch):
    """TensorFlow keeps what each traced architecture holds until its process ends (about 1 GB per paper-grid
    table): a one-job run of a large grid on several tables leaves the calling process; small runs stay in it."""
    from keras_kare.reproduce.workers import fresh_process_per_item
    from tests.test_uci_protocol import FakeTrial, _poisoned_dataset

    root = _poisoned_dataset(tmp_path / "data")  # the fake trial's three-class table, twice
    (root / "copy").mkdir()
    for f in (root / "poison").iterdir():
        (root / "copy" / f.name.replace("poison", "copy")).write_bytes(f.read_bytes())

    assert fresh_process_per_item(30, 25) and fresh_process_per_item(3, 25)
    assert not fresh_process_per_item(2, 25) and not fresh_process_per_item(44, 1)
    assert not fresh_process_per_item(1, 10_000)  # one table: nothing to gain from a new process
    calls, logs = [], []

    def fake_workers(fn, items, jobs, log, on_result, one_thread=True):
        calls.append((jobs, one_thread, [item[1] for item in items]))  # (settings, table, rows)
        for i, item in enumerate(items):  # in this process, so the fake trial below reaches the tables
            on_result(i, fn(item, log))

    monkeypatch.setattr(E, "run_in_workers", fake_workers)
    monkeypatch.setattr(P, "neural_trial", FakeTrial())
    grid = dict(depths=[1, 2, 3], widths=[1, 2, 3, 4, 5, 6, 7, 8, 9], kare_lrs=[0.1], dnn_lrs=[0.1])  # 27 networks
    kw = dict(data_dir=str(root), ridges=[0.1, 10.0], protocol="validated", recipes=[], baselines=[], **grid)
    E.uci(tmp_path / "big", log=logs.append, **kw)
    assert calls == [(1, False, ["copy", "poison"])]  # one worker at a time, using every core
    assert "each data set in a fresh process" in logs[0]
    E.uci(tmp_path / "forced", log=lambda m: None, in_process=True, **kw)
    E.uci(tmp_path / "small", log=lambda m: None, **dict(kw, depths=[1], widths=[4]))
    assert len(calls) == 1  # both trained here
    for bad, error in (("yes", TypeError), (1, TypeError)):
        with pytest.raises(error, match="in_process must be True, False or None"):
            E.uci(tmp_path / "bad", in_process=bad, **kw)
    with pytest.raises(ValueError, match="in_process=True needs jobs=1, received jobs=2"):
        E.uci(tmp_path / "bad", in_process=True, jobs=2, **kw)
    assert not (tmp_path / "bad").exists()


def test_a_failed_worker_stops_the_run_at_once(tmp_path):
    """One table's error ends the run promptly: the other workers are stopped, not waited for."""
    import multiprocessing

    from keras_kare.reproduce.workers import run_in_workers
    from tests.worker_helpers import fail_fast_or_sleep

    marker = tmp_path / "sleeper-finished"
    with pytest.raises(RuntimeError, match="table 0 failed"):
        run_in_workers(fail_fast_or_sleep, [(1, str(marker)), (0, None)], 2, lambda m: None, lambda i, v: None)
    assert not marker.exists()  # the sleeping worker (120 s) did not run to its end: the run did not wait for it
    assert not multiprocessing.active_children()  # and it is gone, not left running


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ProcessPoolExecutor(max_tasks_per_child) is Python 3.11+")
def test_every_item_runs_in_a_fresh_worker_pinned_to_one_thread_when_workers_share_the_cores():
    """A worker's memory grows table after table (traced graphs, allocator); each table gets its own process.
    Workers that share the cores run one BLAS/TensorFlow thread each; a lone worker keeps every core."""
    from keras_kare.reproduce.workers import run_in_workers
    from tests.worker_helpers import pid_and_blas_threads

    seen = {}
    run_in_workers(pid_and_blas_threads, [0, 1, 2], 2, lambda m: None, lambda i, v: seen.setdefault(i, v))
    pids = {pid for pid, _ in seen.values()}
    assert len(seen) == 3 and len(pids) == 3 and os.getpid() not in pids
    assert {threads for _, threads in seen.values()} == {"1"}
    run_in_workers(pid_and_blas_threads, [0], 1, lambda m: None, lambda i, v: seen.setdefault("alone", v), False)
    assert seen["alone"][1] == os.environ.get("OPENBLAS_NUM_THREADS")  # inherited unchanged


def test_workers_end_when_their_parent_is_killed(tmp_path):
    """A killed run (SIGKILL/SIGTERM to the parent only) must not leave workers training for nobody."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    pid_file = tmp_path / "worker.pid"
    script = (
        "from keras_kare.reproduce.workers import run_in_workers\n"
        "from tests.worker_helpers import record_pid_and_sleep\n"
        f"run_in_workers(record_pid_and_sleep, [{str(pid_file)!r}], 1, print, lambda i, v: None)\n"
    )
    root = Path(__file__).resolve().parents[1]
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=root)
    try:
        deadline = time.time() + 600  # a guard against a hang, not a timing: a loaded machine starts workers slowly
        while not pid_file.exists() or not pid_file.read_text():
            assert parent.poll() is None and time.time() < deadline, "the worker never started"
            time.sleep(0.2)
        worker = int(pid_file.read_text())
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.time() + 120  # the worker polls its parent every second; the rest is the machine's load
    while alive(worker) and time.time() < deadline:
        time.sleep(0.2)
    if alive(worker):
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the worker outlived its killed parent by 120 s")
