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
        '1/10 done, 7s elapsed, ETA 1m 08s'
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
