"""Keras-style progress bars (``keras.utils.Progbar``) for long kernel work.

``verbose`` everywhere in keras_kare takes ``"auto"`` (default), ``0``/``False``
or ``1``/``True``. ``"auto"`` shows a bar only when the work has more than
:data:`HANDFUL` units (Gram blocks, ridge-grid chunks), so small calls —
including every call made inside callbacks and tests — stay silent.
"""

from __future__ import annotations

from typing import Union

import keras

HANDFUL = 8

Verbose = Union[str, int, bool]


def check_verbose(verbose) -> Verbose:
    if verbose == "auto" or (isinstance(verbose, (bool, int)) and verbose in (0, 1)):
        return verbose
    raise ValueError(f"verbose must be 'auto', 0 or 1, received {verbose!r}.")


def shows(verbose: Verbose, units: int) -> bool:
    """Whether ``units`` units of work get a progress bar at this ``verbose`` level."""
    check_verbose(verbose)
    if verbose == "auto":
        return units > HANDFUL
    return bool(verbose)


class Progress:
    """A ``keras.utils.Progbar`` over ``units`` steps, or a no-op when not shown."""

    def __init__(self, units: int, verbose: Verbose, unit_name: str = "step"):
        self.bar = keras.utils.Progbar(units, unit_name=unit_name) if shows(verbose, units) else None
        self.done = 0

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.done += n
            self.bar.update(self.done)
