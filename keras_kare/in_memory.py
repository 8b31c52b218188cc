"""In-memory arrays as a ``tf.data`` pipeline built once per ``fit``.

Keras' array adapter rebuilds its input pipeline at the start of every epoch
(a fresh iterator over a fresh permutation dataset). On the small, full-batch
problems KARE is trained on, that costs more than the step itself: measured on
a 2-core CPU, ``fit(x, y, batch_size=n, epochs=100)`` with n = 152 took about
9× the time of its 100 steps. The pipeline here is built once, repeats forever
and is read ``steps_per_epoch`` batches at a time, so Keras keeps one iterator
for the whole ``fit``; epochs, callbacks, History, ``initial_epoch`` and
validation keep their meaning.

Semantics (the same as Keras' array input unless stated):

- batches of ``batch_size`` (default 32) in order, the last one partial;
- ``shuffle=True`` draws a new permutation of the examples every epoch: epoch
  e's order is :func:`permutation` ``(n, seed, e)``, a function of e and a seed
  drawn once per ``fit`` from Python's ``random`` (which
  ``keras.utils.set_random_seed`` seeds) or shared by the workers of a
  multi-worker strategy. The pipeline starts at the epoch the ``fit`` starts or
  resumes at (``initial_epoch``, ``keras.callbacks.BackupAndRestore``), so a
  resumed ``fit`` sees the same batches as an uninterrupted one. A single
  full batch is *not* permuted: the KARE and MSE objectives do not depend on
  the order of the examples within a batch, so permuting would only add work
  and float rounding noise;
- ``validation_split`` holds out the *last* fraction of the arrays, before any
  shuffling, exactly as Keras does.

:func:`fit_in_memory` gives any Keras model (e.g. an MSE baseline) the same
pipeline; :class:`keras_kare.KAREModel` uses it automatically.

Example:
    >>> ds, steps = epoch_dataset(x, y, batch_size=len(x), shuffle=False)  # doctest: +SKIP
    >>> model.fit(ds, steps_per_epoch=steps, epochs=100)                   # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf

from keras_kare import _keras_compat as compat

_ARRAY_TYPES = (np.ndarray, tf.Tensor)


def is_in_memory(x: Any) -> bool:
    """Whether ``x`` is an array, a tensor or a (nested) list/tuple/dict of them (not a dataset or generator)."""
    if x is None or isinstance(x, tf.data.Dataset):
        return False
    leaves = tf.nest.flatten(x)
    return bool(leaves) and all(isinstance(leaf, _ARRAY_TYPES) and len(leaf.shape) > 0 for leaf in leaves)


def _lists_to_tuples(structure):
    """tf.data would stack a Python list of arrays into one tensor; a tuple keeps them separate inputs."""
    if isinstance(structure, dict):
        return {k: _lists_to_tuples(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return tuple(_lists_to_tuples(v) for v in structure)
    return structure


def num_examples(*structures) -> int:
    """The common first dimension of every array in ``structures``; ``ValueError`` if they disagree."""
    sizes = {int(leaf.shape[0]) for s in structures if s is not None for leaf in tf.nest.flatten(s)}
    if len(sizes) != 1:
        raise ValueError(
            f"All arrays passed to fit must have the same number of examples (first dimension); received sizes "
            f"{sorted(sizes)}."
        )
    return sizes.pop()


def epoch_dataset(
    x,
    y=None,
    *,
    batch_size: Optional[int] = None,
    shuffle: bool = True,
    seed: Optional[int] = None,
    first_epoch: int = 0,
):
    """An endless dataset of ``(x, y)`` batches and the number of batches that make one epoch.

    Args:
        x: inputs: an array/tensor or a nested list/tuple/dict of them.
        y: targets (or None), same number of examples.
        batch_size: examples per batch (Keras' default 32 when None); at most
            the number of examples.
        shuffle: a new permutation every epoch (see the module docstring; a
            single full batch is never permuted).
        seed: seed of the per-epoch permutations (default: drawn from
            Python's ``random``, which ``keras.utils.set_random_seed`` seeds).
        first_epoch: the epoch the dataset starts at. Epoch e's permutation
            is a function of ``(seed, e)`` only (:func:`permutation`), so a
            ``fit`` resumed at epoch e (``initial_epoch``, ``BackupAndRestore``)
            sees the batches an uninterrupted ``fit`` sees from epoch e on.

    Returns:
        ``(dataset, steps_per_epoch)``: pass both to ``fit``. Under a
        multi-worker ``tf.distribute`` strategy the dataset is sharded by
        data (``AutoShardPolicy.DATA``): every worker runs the same pipeline
        and keeps its share of each global batch.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, received {batch_size!r}.")
    if isinstance(first_epoch, bool) or int(first_epoch) != first_epoch or first_epoch < 0:
        raise ValueError(f"first_epoch must be a non-negative integer, received {first_epoch!r}.")
    n = num_examples(x, y)
    size = min(int(batch_size or 32), n)
    steps = math.ceil(n / size)
    data = _lists_to_tuples(x if y is None else (x, y))
    if steps == 1:
        # the whole data set is one batch: no slicing, no permutation
        return _in_memory_options(tf.data.Dataset.from_tensors(data).repeat()), steps
    tensors = tf.nest.map_structure(tf.convert_to_tensor, data)
    if shuffle:
        indices = _epoch_permutations(n, size, permutation_seed(seed), int(first_epoch))
    else:
        # batch before repeat: every epoch ends with its own (partial) last batch, as with Keras' arrays
        indices = tf.data.Dataset.range(n).batch(size).repeat()
    dataset = indices.map(lambda i: tf.nest.map_structure(lambda t: tf.gather(t, i), tensors))
    return _in_memory_options(dataset.prefetch(1)), steps


def permutation_seed(seed: Optional[int] = None) -> int:
    """``seed``, or one drawn from Python's ``random`` (which ``keras.utils.set_random_seed`` seeds)."""
    return int(seed) if seed is not None else random.getrandbits(31)


def permutation(n: int, seed, epoch) -> tf.Tensor:
    """Epoch ``epoch``'s order of ``n`` examples under ``seed``: a function of ``(seed, epoch)`` only.

    The argsort of ``n`` full-range stateless random int64 keys (a tie has
    probability about n²/2⁶⁵ and is broken by index). Works eagerly, in
    ``tf.data``, in ``tf.function`` and under XLA, so a compiled training loop
    can draw the same orders as :func:`epoch_dataset`.

    Args:
        n: number of examples (static).
        seed, epoch: integers or int scalar tensors.

    Returns:
        An int32 vector: a permutation of ``0..n-1``.

    Example:
        >>> sorted(permutation(4, seed=1, epoch=0).numpy().tolist())
        [0, 1, 2, 3]
    """
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    keys = tf.random.stateless_uniform([n], seed=key, minval=None, maxval=None, dtype=tf.int64)
    return tf.argsort(keys, stable=True)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the ``n`` examples in epoch ``epoch`` of a shuffled :func:`epoch_dataset` with ``seed``."""
    return permutation(n, seed, epoch).numpy()


def _epoch_permutations(n: int, size: int, seed: int, first_epoch: int):
    """Batches of example indices: epoch e is ``epoch_permutation(n, seed, e)`` cut into batches of ``size``."""

    def one_epoch(epoch):
        return tf.data.Dataset.from_tensor_slices(permutation(n, seed, epoch)).batch(size)

    return tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(one_epoch)


def _in_memory_options(dataset):
    """The options of every in-memory pipeline here: shard by data, no autotuning.

    Sharding: under a multi-worker strategy every worker keeps its share of
    each global batch. The examples are in memory, not in files, so the
    default policy (AUTO) would try file-based sharding, fail and fall back to
    DATA with a warning; DATA is set explicitly. Each worker computes the whole
    global batch and keeps its contiguous share (worker i: rows i·B/W …
    (i+1)·B/W of the batch).

    Autotuning off: an in-memory gather with an explicit ``prefetch(1)`` has
    nothing to tune, and the autotuning thread delays the destruction of the
    pipeline's iterator at the end of ``fit`` — measured: 3–5 s after the last
    epoch in about half of the 100-epoch fits at n = 800 (the Figure 1 KARE
    run), none with it off.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.autotune.enabled = False
    return dataset.with_options(options)


def _split_validation(x, y, fraction: float):
    """Keras' ``validation_split``: the last ``fraction`` of the examples, taken before shuffling."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_split must be in (0, 1), received {fraction!r}.")
    n = num_examples(x, y)
    cut = int(n * (1.0 - fraction))
    if cut == 0 or cut == n:
        raise ValueError(f"validation_split={fraction} leaves no training or no validation example out of {n}.")
    head = lambda s: tf.nest.map_structure(lambda a: a[:cut], s)  # noqa: E731
    tail = lambda s: tf.nest.map_structure(lambda a: a[cut:], s)  # noqa: E731
    return (head(x), None if y is None else head(y)), (tail(x), None if y is None else tail(y))


def fit_arguments(arguments: dict, seed: Optional[int] = None) -> dict:
    """Rewrite ``keras.Model.fit`` keyword arguments so in-memory data go through :func:`epoch_dataset`.

    Anything else (a dataset, a generator, ``sample_weight``/``class_weight``)
    is returned unchanged, as is a call that is not in-memory. The input dict
    is not modified. ``seed``: of the per-epoch shuffles (see :func:`epoch_dataset`).
    """
    args = dict(arguments)
    x, y = args.get("x"), args.get("y")
    if not is_in_memory(x) or (y is not None and not is_in_memory(y)):
        return args
    if args.get("sample_weight") is not None or args.get("class_weight") is not None:
        return args
    batch_size = args.pop("batch_size", None)
    split = args.pop("validation_split", 0.0) or 0.0
    if split and args.get("validation_data") is None:
        (x, y), validation = _split_validation(x, y, float(split))
        args["validation_data"] = validation
    shuffle = args.pop("shuffle", True)
    first_epoch = _first_epoch(args)
    dataset, steps = epoch_dataset(
        x, y, batch_size=batch_size, shuffle=bool(shuffle), seed=seed, first_epoch=first_epoch
    )
    args.update(x=dataset, y=None, shuffle=False)
    if args.get("steps_per_epoch") is None:
        args["steps_per_epoch"] = steps
    validation = args.get("validation_data")
    if validation is not None and not isinstance(validation, tf.data.Dataset):
        vx, vy = validation[0], (validation[1] if len(validation) > 1 else None)
        if len(validation) <= 2 and is_in_memory(vx) and (vy is None or is_in_memory(vy)):
            vsize = args.pop("validation_batch_size", None) or batch_size
            vdataset, vsteps = epoch_dataset(vx, vy, batch_size=vsize, shuffle=False)
            args["validation_data"] = vdataset
            if args.get("validation_steps") is None:
                args["validation_steps"] = vsteps
    return args


def _first_epoch(args: dict) -> int:
    """The epoch this ``fit`` starts at: ``initial_epoch``, or where a ``BackupAndRestore`` callback resumes it."""
    backups = [c for c in (args.get("callbacks") or []) if isinstance(c, keras.callbacks.BackupAndRestore)]
    resumed = [compat.backup_resume_epoch(c) for c in backups]
    return max([int(args.get("initial_epoch") or 0)] + [e for e in resumed if e is not None])


def fit_in_memory(model, x, y=None, **fit_kwargs):
    """``model.fit(x, y, **fit_kwargs)`` through a pipeline built once (see the module docstring).

    For any Keras model, e.g. the MSE-trained baseline of a KARE comparison;
    :class:`keras_kare.KAREModel` does this by itself. With many short epochs,
    also compile the model with ``steps_per_execution`` equal to the epoch's
    number of batches so that one call runs the whole epoch.

    Returns:
        The ``History`` of ``model.fit``.
    """
    return model.fit(**fit_arguments(dict(x=x, y=y, **fit_kwargs)))
