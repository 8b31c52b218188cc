"""Functions for worker-process tests: importable by name in a spawned process, no heavy imports."""

import os
import time


def record_pid_and_sleep(path, log):
    """Write this process's pid to ``path``, then sleep (a worker that would outlive a killed parent)."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)


def fail_fast_or_sleep(item, log):
    """Item 0 raises at once; any other item sleeps (a long table that a failed run must not wait for)."""
    if item == 0:
        raise RuntimeError("table 0 failed")
    time.sleep(120)
    return item


def pid_and_blas_threads(item, log):
    """This worker's process id and the BLAS thread count it was started with (None: every core)."""
    return os.getpid(), os.environ.get("OPENBLAS_NUM_THREADS")
