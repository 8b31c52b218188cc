"""Functions for worker-process tests: importable by name in a spawned process, no heavy imports."""

import os
import time


def record_pid_and_sleep(path, log):
    """Write this process's pid to ``path``, then sleep (a worker that would outlive a killed parent)."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)
