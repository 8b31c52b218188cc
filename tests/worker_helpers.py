"""Functions for worker-process tests: importable by name in a spawned process, no heavy imports."""

import os
import time


def record_pid_and_sleep(path, log):
    """Write this process's pid to ``path``, then sleep (a worker that would outlive a killed parent)."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)


def fail_fast_or_sleep(item, log):
    """``item = (index, marker)``: index 0 raises at once; any other sleeps, then writes ``marker`` (a long table
    that a failed run must not wait for: the marker exists only if the worker was left to finish)."""
    index, marker = item
    if index == 0:
        raise RuntimeError("table 0 failed")
    time.sleep(120)
    with open(marker, "w") as f:
        f.write("finished")
    return index


def pid_and_blas_threads(item, log):
    """This worker's process id and the BLAS thread count it was started with (None: every core)."""
    return os.getpid(), os.environ.get("OPENBLAS_NUM_THREADS")
