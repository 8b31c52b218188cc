"""Independent units of a reproduction (UCI data sets) in worker processes, each pinned to one thread.

The paper's networks are tiny: one process leaves most of a second core idle
(per-operation dispatch, the float64 factorisations between steps). Spawned
workers, each with one TensorFlow intra-op and inter-op thread and a
single-threaded BLAS, keep every core busy with whole data sets instead.
Every data set also gets a fresh process, so none inherits the memory
TensorFlow keeps for the networks traced before it (a lone worker with every
core does only that).
A worker's log lines travel to the parent through a queue, so they appear
while it runs.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

_ONE_THREAD = {
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
_log_queue = None  # set in each worker by _start


PARENT_POLL_SECONDS = 1.0

# A fresh worker process per item (Python 3.11+): a worker that trained one UCI table after another grew by
# about 1 GB of resident memory per paper-grid table (3.3 GB after two, 4.8 GB after three), enough for two
# workers to exhaust a 24 GB machine over the 30 smallest tables. Starting a worker costs seconds, a table minutes.
# The growth is TensorFlow's: each traced architecture keeps about 11 MB (a KARE step), 9 MB (an XLA-compiled
# DNN loop) or 3 MB (a graph-mode DNN loop) after its models are deleted, with or without gc.collect() and
# keras.backend.clear_session(); only the process's end returns it.
_FRESH_WORKER_PER_ITEM = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}

# What one traced network architecture leaves behind in a process over a UCI table (its folds' row counts, the KARE
# step and the DNN loop): about 1 GB per paper-grid table of 25 architectures, as measured above.
RETAINED_MB_PER_ARCHITECTURE = 40
# Above this estimate, ``jobs=1`` stops training tables one after another in its own process.
IN_PROCESS_LIMIT_MB = 2048


def fresh_process_per_item(items: int, architectures: int) -> bool:
    """Whether ``items`` tables of ``architectures`` networks each need a process apiece (one worker or several).

    In one process they would keep about ``items * architectures *``
    :data:`RETAINED_MB_PER_ARCHITECTURE` MB until it ends: the paper's grid (25
    architectures) on 30 tables, about 30 GB. Small runs stay in the calling
    process, where a debugger or a monkeypatch reaches them.

    Example:
        >>> fresh_process_per_item(30, 25), fresh_process_per_item(30, 1)
        (True, False)
    """
    return items > 1 and items * architectures * RETAINED_MB_PER_ARCHITECTURE > IN_PROCESS_LIMIT_MB


def _exit_with_parent(parent: int, poll: float = PARENT_POLL_SECONDS) -> None:
    """End this worker soon after its parent process is gone (killed, not interrupted: nothing else would)."""
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)  # an orphan: its results have nowhere to go

    threading.Thread(target=watch, name="keras_kare parent watch", daemon=True).start()


def _start(log_queue, parent: int, one_thread: bool) -> None:
    """Worker initialiser: log lines to the parent; one TensorFlow thread if asked (before any operation runs)."""
    global _log_queue
    _log_queue = log_queue
    _exit_with_parent(parent)
    if one_thread:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _call(fn: Callable, item):
    return fn(item, _log_queue.put)


def _stop_workers(before: set, timeout: float = 10.0) -> None:
    """Terminate this process's multiprocessing children started since ``before`` (a set of pids) was taken, and
    wait up to ``timeout`` seconds for each to end, so none is left running once the caller sees the error."""
    procs = [proc for proc in multiprocessing.active_children() if proc.pid not in before]
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout)


def _drain(log_queue, log: Callable[[str], None]) -> None:
    while True:
        try:
            log(log_queue.get_nowait())
        except queue.Empty:
            return


def run_in_workers(
    fn: Callable,
    items: Sequence,
    jobs: int,
    log: Callable[[str], None],
    on_result: Callable[[int, object], None],
    one_thread: bool = True,
) -> None:
    """Run ``fn(item, log)`` for every item in ``jobs`` spawned processes; ``on_result(index, value)`` as each ends.

    Every item gets a fresh process (Python 3.11+), so none inherits the memory
    another one's traced networks left behind. ``one_thread``: pin each
    worker's TensorFlow and BLAS to one thread (the right choice when
    ``jobs`` workers share the cores; ``False`` lets a lone worker use them all).
    ``fn`` must be a module-level function (it is pickled by name) and its
    items and results picklable. Items start in the given order; results
    arrive in completion order. A worker's exception is raised here at once:
    the items not yet started are cancelled and the other workers are stopped
    (their items' results would be discarded; those already passed to
    ``on_result`` stay). Workers end within about a second of this process if
    it is killed.

    Example:
        >>> run_in_workers(_uci_worker, [(s, "iris", 150), (s, "wine", 178)], 2, print, print)  # doctest: +SKIP
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, received {jobs!r}.")
    if not items:
        return
    context = multiprocessing.get_context("spawn")  # TensorFlow's runtime does not survive a fork
    log_queue = context.Queue()
    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    if one_thread:
        os.environ.update(_ONE_THREAD)  # inherited by the workers before they import numpy or TensorFlow
    before = {p.pid for p in multiprocessing.active_children()}
    try:
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(items)),
            mp_context=context,
            initializer=_start,
            initargs=(log_queue, os.getpid(), one_thread),
            **_FRESH_WORKER_PER_ITEM,
        ) as pool:
            futures = {pool.submit(_call, fn, item): i for i, item in enumerate(items)}
            pending = set(futures)
            try:
                while pending:
                    finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(log_queue, log)
                    for future in sorted(finished, key=futures.get):
                        on_result(futures[future], future.result())
            except BaseException:
                for future in pending:  # the items not started; running ones end with their workers
                    future.cancel()
                # Stopping the workers breaks the pool, which leaving it then joins at once (its items' results are
                # lost). Not pool.shutdown(wait=False): Python 3.11's pool thread would still replace exiting
                # workers and fail on the pool it had already dismantled, printing a thread traceback.
                _stop_workers(before)
                raise
        _drain(log_queue, log)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
