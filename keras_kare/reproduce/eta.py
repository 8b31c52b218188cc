"""Progress lines with an estimated time to completion for long sweeps."""

from __future__ import annotations

import time
from typing import Optional


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m 05s`` or ``2h 07m``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


class ETA:
    """Counts finished units of a sweep and estimates the time left from the mean time per unit so far.

    Units that were skipped (e.g. already done in a resumed run) are passed
    to :meth:`skip` and do not enter the mean.

    Args:
        total: number of units in the sweep.

    Example:
        >>> eta = ETA(10)
        >>> eta.done(7.5)                         # one unit took 7.5 s
        '1/10 done, 8s elapsed, ETA 1m 08s'
    """

    def __init__(self, total: int):
        if total < 0:
            raise ValueError(f"total must be >= 0, received {total}.")
        self.total = int(total)
        self.finished = 0
        self.skipped = 0
        self.seconds = 0.0
        self._t0 = time.time()

    def skip(self) -> None:
        """A unit that needed no work."""
        self.skipped += 1

    def remaining_seconds(self) -> Optional[float]:
        """Estimated seconds for the units not yet done (None before the first timed unit)."""
        if self.finished == 0:
            return None
        left = self.total - self.finished - self.skipped
        return left * self.seconds / self.finished

    def done(self, seconds: float) -> str:
        """Record a unit that took ``seconds``; returns a progress line."""
        self.finished += 1
        self.seconds += float(seconds)
        count = self.finished + self.skipped
        line = f"{count}/{self.total} done, {format_seconds(self.seconds)} elapsed"
        remaining = self.remaining_seconds()
        if remaining is not None and count < self.total:
            line += f", ETA {format_seconds(remaining)}"
        return line


class WorkETA:
    """Time left of a run whose units have known relative costs, run by ``jobs`` parallel workers.

    The finished units calibrate seconds per unit of cost (their summed
    seconds over their summed weights); the units not finished cost their
    weights at that rate, shared by the workers. A mean time per unit would
    be far off when units differ in size (a UCI run, largest table first:
    13 h predicted after the first table of a run that takes about 3).

    Args:
        weights: relative cost of every unit, by key (positive).
        jobs: workers sharing the units.

    Example:
        >>> eta = WorkETA({"big": 3.0, "small": 1.0, "tiny": 1.0}, jobs=2)
        >>> eta.done("big", 30.0)                 # 10 s per unit of cost; 2 units left, 2 workers
        10.0
    """

    def __init__(self, weights: dict, jobs: int = 1):
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, received {jobs}.")
        bad = {k: w for k, w in weights.items() if not float(w) > 0}
        if bad:
            raise ValueError(f"weights must be positive, received {bad}.")
        self.weights = {k: float(w) for k, w in weights.items()}
        self.jobs = int(jobs)
        self._seconds = 0.0
        self._done: set = set()

    def done(self, key, seconds: float) -> float:
        """Record unit ``key`` (its worker took ``seconds``); returns the estimated wall seconds left."""
        if key not in self.weights:
            raise KeyError(f"unknown unit {key!r}")
        self._done.add(key)
        self._seconds += float(seconds)
        rate = self._seconds / sum(self.weights[k] for k in self._done)
        left = sum(w for k, w in self.weights.items() if k not in self._done)
        return rate * left / self.jobs
