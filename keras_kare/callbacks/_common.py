"""Shared helpers of the keras_kare callbacks: probe-batch validation and summary writers."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from keras_kare import _validation as v
from keras_kare.backend import IMPLEMENTATIONS
from keras_kare.networks import is_kare_model, unwrap_network


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


def _expected_input_shapes(net):
    """Per-example input shapes the network declares, or None when it does not say."""
    try:
        inputs = net.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    return [tuple(t.shape[1:]) for t in inputs]


def check_probe_against_model(model, x, name: str) -> None:
    """Raise a clear ValueError if the probe inputs do not fit the model.

    Functional/Sequential networks declare their input shapes, which are
    compared directly; otherwise the network is run on the first two examples
    (inference mode) and any error is re-raised with the probe's shape.
    """
    net = unwrap_network(model)
    leaves = tf.nest.flatten(x)
    got = [tuple(np.shape(leaf)[1:]) for leaf in leaves]
    # declared shapes are compared only for single-input networks (the order of a
    # multi-input network's `inputs` need not match tf.nest's order of the probe)
    expected = _expected_input_shapes(net) if net.built and len(leaves) == 1 else None
    if expected is not None:
        ok = len(expected) == len(got) and all(
            len(e) == len(g) and all(a is None or a == b for a, b in zip(e, g)) for e, g in zip(expected, got)
        )
        if not ok:
            raise ValueError(
                f"{name}: the probe inputs have per-example shape {got if len(got) > 1 else got[0]} but the model "
                f"expects {expected if len(expected) > 1 else expected[0]}. Give a batch of the model's inputs."
            )
        return
    try:
        net(tf.nest.map_structure(lambda t: t[:2], x), training=False)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"{name}: the model cannot be applied to the probe inputs of per-example shape "
            f"{got if len(got) > 1 else got[0]}: {err}"
        ) from err


def check_targets_against_model(model, x, y: np.ndarray, kernel: str, name: str) -> None:
    """For ``kernel="full"`` the targets need one column per network output."""
    if kernel != "full":
        return
    out = unwrap_network(model)(tf.nest.map_structure(lambda t: t[:1], x), training=False)
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
