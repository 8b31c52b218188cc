"""Shared helpers of the keras_kare callbacks: probe-batch validation and summary writers."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from keras_kare import _validation as v
from keras_kare.backend import IMPLEMENTATIONS
from keras_kare.networks import is_kare_model, unwrap_network
from keras_kare.ntk import GramEngine


def default_kernel(model, kernel: Optional[str]) -> str:
    if kernel is not None:
        return v.check_kernel_mode(kernel)
    return getattr(model, "kernel", "trace") if is_kare_model(model) else "trace"


def default_implementation(model, implementation: Optional[str]) -> str:
    if implementation is not None:
        return implementation
    return getattr(model, "implementation", "auto") if is_kare_model(model) else "auto"


def check_implementation(implementation: Optional[str], name: str = "implementation") -> Optional[str]:
    """None (the model's own) or one of ``backend.IMPLEMENTATIONS``."""
    if implementation is not None and implementation not in IMPLEMENTATIONS:
        raise ValueError(f"{name} must be None or one of {IMPLEMENTATIONS}, received {implementation!r}.")
    return implementation


def as_probe(x, y, name: str, min_rows: int = 2):
    """Validate a fixed (x, y) batch given to a callback; returns (x as numpy structure, y float64 2-D)."""
    if x is None or y is None:
        raise ValueError(f"{name}: x and y are required (a fixed batch of inputs and targets).")
    x_t = v.as_input(x, f"{name} x")
    n = v.num_rows(x_t, f"{name} x")
    if n < min_rows:
        raise ValueError(f"{name}: the batch needs at least {min_rows} examples, received {n}.")
    y_arr = v.as_targets(y, n, f"{name} y").reshape(n, -1)
    x_np = tf.nest.map_structure(lambda t: t.numpy(), x_t)
    return x_np, y_arr


def check_probe_against_model(model, x, name: str) -> None:
    """Raise a clear ValueError naming ``name`` if the probe inputs do not fit the model.

    The boundary check of :func:`keras_kare.ntk` (``GramEngine.inputs``):
    declared input shapes are compared, and any network is traced on one
    example, before the probe is ever used.
    """
    GramEngine(model).inputs(x, name)


def check_targets_against_model(model, x, y: np.ndarray, kernel: str, name: str) -> None:
    """For ``kernel="full"`` the targets need one column per network output."""
    if kernel != "full":
        return
    out = unwrap_network(model)(v.take_rows(x, 0, 1), training=False)
    c = sum(int(np.prod(o.shape[1:])) for o in tf.nest.flatten(out))
    if y.shape[1] != c:
        raise ValueError(
            f"{name}: kernel='full' needs one target column per output: the model has {c}, y has {y.shape[1]}."
        )


class SummaryWriter:
    """A lazily created ``tf.summary`` file writer under ``log_dir/subdir`` (None: no-op)."""

    def __init__(self, log_dir: Optional[str], subdir: str):
        self.path = None if log_dir is None else os.path.join(os.fspath(log_dir), subdir)
        self._writer = None

    @property
    def active(self) -> bool:
        return self.path is not None

    def writer(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.path)
        return self._writer

    def scalars(self, values: dict, step: int) -> None:
        if not self.active:
            return
        with self.writer().as_default(step=step):
            for tag, value in values.items():
                tf.summary.scalar(tag, value)

    def histogram(self, tag: str, values, step: int, buckets: Optional[int] = None) -> None:
        if not self.active:
            return
        with self.writer().as_default(step=step):
            tf.summary.histogram(tag, np.asarray(values, dtype=np.float64), buckets=buckets)

    def flush(self):
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def due(epoch: int, every_n_epochs: int) -> bool:
    """True on epochs (0-based) ``N-1, 2N-1, …`` (every N-th completed epoch)."""
    return (epoch + 1) % every_n_epochs == 0


def check_every(every_n_epochs) -> int:
    if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, (int, np.integer)) or every_n_epochs < 1:
        raise ValueError(f"every_n_epochs must be a positive int, received {every_n_epochs!r}.")
    return int(every_n_epochs)
