"""``tf.distribute`` support for :class:`~keras_kare.KAREModel` (replica semantics and helpers).

Under a strategy with R replicas (``MirroredStrategy``,
``MultiWorkerMirroredStrategy``, ``TPUStrategy``) Keras splits every *global*
batch of B examples into R shares of B/R examples. ``KAREModel(kare_scope=...)``
decides what KARE is computed on:

``kare_scope="replica"`` (default; cheapest)
    **Each replica computes the NTK Gram and KARE of its own share** (a
    (B/R)×(B/R) kernel: no cross-replica kernel entries), and the step
    minimises the *mean* of the R per-replica KAREs — the gradient of each
    replica's KARE is scaled by 1/R and Keras' optimizer sums them across
    replicas. The ``kare``/``loss`` logs are likewise the mean over replicas.
    A run with global batch B on R replicas equals, step for step, a
    single-device run that splits each batch of B into R pieces of B/R,
    averages their KAREs and differentiates that; it is *not* single-device
    KARE on batches of B — the effective KARE batch size is B/R, so the
    objective changes with R. To keep KARE's batch at b, use a global batch
    of b·R. Communication: one all-reduce of the gradients (as for any Keras
    model) and a few scalars. Right when B/R is already a good KARE batch
    (hundreds of examples) and devices are many.

``kare_scope="global"``
    **One KARE over the whole global batch**, exactly the single-device KARE of
    B examples, whatever R. Each replica computes the per-example NTK factors
    of its share, gathers everyone's factors (``all_gather``), builds its
    (B/R)×B row block of the Gram, the row blocks are gathered into the B×B
    Gram and every replica solves the same KARE (redundantly: B³/3 flops per
    replica, no further communication). Gradients flow back through the
    collectives (:func:`gather_examples`, :func:`gather_replicated_rows`):
    each replica's gradient is its share of the exact gradient and the
    optimizer's cross-replica sum is the single-device gradient. Per step each
    replica receives the other replicas' factors — (R−1)/R · B · Σ_l (d_in,l +
    C·d_out,l) numbers for a Dense network — and row blocks, (R−1)/R · B²
    numbers, and all-reduces the factors' cotangents in the backward pass
    (the network with the jacobian NTK gathers the inputs instead and
    recomputes all B examples' Jacobians on every replica). Right when the
    KARE batch must not depend on the device count (reproducing a
    single-device run, few devices, B up to a few thousand).

B must be divisible by R so that every replica sees the same number of examples:
:func:`check_global_batch` raises otherwise (for static batch sizes, before
training), and :func:`check_replica_batch` raises at run time when the shares
differ (e.g. a last partial batch; use ``drop_remainder=True``).
A step whose KARE or gradient is not finite on *any* replica is skipped on all
of them (:func:`all_replicas`, :func:`apply_or_else`), keeping the replicas'
weights identical.

Outside training, :func:`keras_kare.ntk` and :class:`~keras_kare.KernelPredictor`
called inside ``strategy.scope()`` place their Gram blocks (``batch_size``)
round-robin on the strategy's devices (:func:`block_placement`)
and concatenate them on the default device; the result is the same Gram. Only
blocked computations are spread: give a ``batch_size`` smaller than n.

Multi-worker (``MultiWorkerMirroredStrategy``, one process per worker): training
works as above, with the replicas spread over the workers (each worker's
in-memory pipeline keeps its share of every global batch, see
:mod:`keras_kare.in_memory`). Gram computations outside training inside such a
scope raise ``NotImplementedError`` (:func:`check_single_worker`): a Gram
assembled from blocks computed on several workers needs a cross-worker gather
of n×n floats that ``tf.distribute`` offers only inside ``strategy.run``, and it
buys little, since every worker holds the same trained weights and can compute
the Gram (or fit a ``KernelPredictor``) alone, outside the scope.
"""

from __future__ import annotations

import itertools
import random
from typing import Callable, Optional, Sequence

import tensorflow as tf

from keras_kare import _keras_compat as compat

KARE_SCOPES = ("replica", "global")


def check_kare_scope(kare_scope) -> str:
    """Return ``kare_scope`` after checking it is one of :data:`KARE_SCOPES`."""
    if kare_scope not in KARE_SCOPES:
        raise ValueError(f"kare_scope must be one of {KARE_SCOPES}, received {kare_scope!r}.")
    return kare_scope


def _replica_context():
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def spans_workers(strategy=None) -> bool:
    """Whether the strategy (default: the current one) has replicas in other processes (multi-worker)."""
    strategy = strategy or tf.distribute.get_strategy()
    try:
        local = len(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError):  # the default strategy has no device list
        return False
    return 0 < local < strategy.num_replicas_in_sync


def shared_seed(strategy=None) -> int:
    """A random seed (Python's ``random``) that every worker of a multi-worker strategy agrees on: worker 0's.

    The in-memory input pipeline of each worker must shuffle identically (each
    keeps its share of the same global batch); without a common
    ``keras.utils.set_random_seed`` the workers' own draws would differ. One
    all-reduce, run by every worker (inside ``fit``, which they all call).
    """
    strategy = strategy or tf.distribute.get_strategy()
    seed = random.getrandbits(31)
    if not spans_workers(strategy):
        return seed

    @tf.function
    def broadcast():
        def first_replicas():
            ctx = tf.distribute.get_replica_context()
            mine = tf.where(ctx.replica_id_in_sync_group == 0, tf.constant(seed, tf.int64), tf.constant(0, tf.int64))
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM, mine)

        return strategy.run(first_replicas)

    return int(strategy.experimental_local_results(broadcast())[0].numpy())


def num_replicas() -> int:
    """Replicas of the current strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_for_replicas(value):
    """``value / R`` inside a replica context with R > 1 replicas, else ``value`` (mean-of-replicas objective)."""
    ctx = _replica_context()
    if ctx is None:
        return value
    return value * tf.cast(1.0 / ctx.num_replicas_in_sync, value.dtype)


def in_replicas() -> bool:
    """True inside the replica context of a strategy with more than one replica (a distributed step)."""
    return _replica_context() is not None


def gather_examples(value, axis: int = 0):
    """Every replica's ``value`` concatenated along ``axis`` in replica order (``value`` itself without replicas).

    Differentiable with the collective's own gradient: the cotangents of the
    gathered tensor are summed over replicas and each replica gets its slice.
    Integer tensors (ids) are gathered too; they carry no gradient.
    """
    ctx = _replica_context()
    if ctx is None:
        return value
    return _with_static_shape(ctx.all_gather(value, axis=axis), value, axis, ctx.num_replicas_in_sync)


def _with_static_shape(gathered, value, axis: int, replicas: int):
    """The static shape ``all_gather`` loses: ``value``'s, with ``axis`` multiplied by the replica count."""
    shape = value.shape
    if shape.rank is None:
        return gathered
    dims = list(shape)
    dims[axis] = None if dims[axis] is None else dims[axis] * replicas
    gathered.set_shape(dims)
    return gathered


def gather_replicated_rows(rows):
    """Stack every replica's row block (equal shares, replica order) into the full matrix.

    For a stacked matrix whose *downstream computation is replicated*
    (every replica evaluates the same function of it, e.g. KARE of the global
    Gram): the backward pass hands each replica its own rows of the cotangent
    — which is identical on every replica — instead of all-reducing a B×B
    tensor and scaling by 1/R as the generic gather would. The objective of
    such a replicated computation is therefore *not* scaled by 1/R: the
    optimizer's cross-replica sum of the replicas' row-block gradients is the
    gradient of the one objective.
    """
    ctx = _replica_context()
    if ctx is None:
        return rows

    @tf.custom_gradient
    def gather(block):
        def grad(upstream):
            n = tf.shape(block)[0]
            start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * n
            return upstream[start : start + n]

        return _with_static_shape(ctx.all_gather(block, axis=0), block, 0, ctx.num_replicas_in_sync), grad

    return gather(rows)


def all_replicas(flag):
    """Elementwise logical AND of a boolean tensor over all replicas, in one all-reduce (the flag without replicas)."""
    ctx = _replica_context()
    if ctx is None:
        return flag
    ones = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(flag, tf.int32))
    return tf.equal(ones, ctx.num_replicas_in_sync)


def check_replica_batch(x) -> None:
    """Run-time check that every replica got the same number of examples (no-op without replicas)."""
    ctx = _replica_context()
    if ctx is None:
        return
    n = tf.shape(tf.nest.flatten(x)[0])[0]
    total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, n)
    r = ctx.num_replicas_in_sync
    tf.debugging.assert_equal(
        n * r,
        total,
        message=(
            f"KAREModel under a strategy with {r} replicas: the global batch is not divisible by the number of "
            "replicas, so replicas would compute KARE on different numbers of examples. Use a global batch "
            f"size divisible by {r} and drop_remainder=True (or a dataset size divisible by the batch size)."
        ),
    )


def check_global_batch(batch_size: Optional[int], strategy=None) -> None:
    """Raise ``ValueError`` if a known global batch size is not divisible by the replica count.

    Args:
        batch_size: the global batch size (None: unknown, nothing checked).
        strategy: default: the current strategy.
    """
    if batch_size is None:
        return
    replicas = (strategy or tf.distribute.get_strategy()).num_replicas_in_sync
    if replicas > 1 and int(batch_size) % replicas:
        raise ValueError(
            f"KAREModel: the global batch size {batch_size} is not divisible by the {replicas} replicas of the "
            f"distribution strategy; each replica computes KARE on its own share of the batch, so the shares must "
            f"be equal. Use a batch size that is a multiple of {replicas} "
            f"(e.g. {replicas * max(1, int(batch_size) // replicas)})."
        )


def check_fit_arguments(x=None, batch_size=None, strategy=None) -> None:
    """Before ``fit``: raise if a statically known global batch does not split evenly over the replicas.

    Checks a ``tf.data.Dataset`` with a static batch dimension
    (``drop_remainder=True``), or arrays with ``batch_size`` (Keras' default
    32) including their last partial batch. Unknown batch sizes are left to
    :func:`check_replica_batch` at run time.
    """
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if replicas <= 1 or x is None:
        return
    if isinstance(x, tf.data.Dataset):
        spec = tf.nest.flatten(x.element_spec)[0]
        dim = spec.shape[0] if spec.shape.rank else None
        check_global_batch(dim, strategy)
        return
    leaves = tf.nest.flatten(x)
    if not leaves or not hasattr(leaves[0], "shape") or not len(leaves[0].shape):
        return
    n = int(leaves[0].shape[0])
    size = int(batch_size) if batch_size is not None else 32
    check_global_batch(min(size, n), strategy)
    last = n % size if n > size else 0
    if last and last % replicas:
        raise ValueError(
            f"KAREModel: {n} examples in batches of {size} leave a last batch of {last}, which is not divisible by "
            f"the {replicas} replicas of the distribution strategy (each replica computes KARE on its own share). "
            "Use a dataset with drop_remainder=True or a number of examples that is a multiple of the batch size."
        )


def apply_or_else(optimizer, ok, grads: Sequence, variables: Sequence, on_fail: Callable, on_fail_args=()):
    """Apply ``grads`` with ``optimizer`` if ``ok``, else call ``on_fail(*on_fail_args)``; distribution-safe.

    Without replicas this is ``tf.cond(ok, apply, on_fail)``. Under a
    strategy that synchronises through ``merge_call`` (``MirroredStrategy``), a
    ``tf.cond`` whose branch calls the optimizer (a synchronisation point) is
    not allowed in a replica context, so — as Keras' ``LossScaleOptimizer``
    does — the condition is decided in the cross-replica context and each
    branch runs on every replica. ``ok`` must already agree across replicas
    (see :func:`all_replicas`).
    """

    def apply_local(g):
        optimizer.apply(g, variables)
        return tf.constant(True)

    ctx = _replica_context()
    if ctx is None or compat.strategy_supports_no_merge_call():
        return tf.cond(ok, lambda: apply_local(grads), lambda: on_fail(*on_fail_args))

    def cross_replica(distribution, ok, grads, on_fail_args):
        ok0 = distribution.experimental_local_results(ok)[0]

        def apply_all():
            distribution.extended.call_for_each_replica(apply_local, args=(grads,))
            return tf.constant(True)

        def fail_all():
            distribution.extended.call_for_each_replica(on_fail, args=tuple(on_fail_args))
            return tf.constant(False)

        return tf.cond(ok0, apply_all, fail_all)

    ctx.merge_call(cross_replica, args=(ok, list(grads), tuple(on_fail_args)))
    return ok


# ------------------------------------------------------------------ blocked Grams outside training
def check_single_worker(what: str) -> None:
    """Raise ``NotImplementedError`` inside the scope of a strategy whose replicas span several workers.

    Called by :func:`keras_kare.ntk` (and so :class:`~keras_kare.KernelPredictor`)
    in the cross-replica context; see the module docstring for why.
    """
    if not tf.distribute.has_strategy() or not tf.distribute.in_cross_replica_context():
        return
    strategy = tf.distribute.get_strategy()
    if spans_workers(strategy):
        raise NotImplementedError(
            f"{what} inside the scope of a multi-worker strategy ({type(strategy).__name__} with "
            f"{strategy.num_replicas_in_sync} replicas, {len(strategy.extended.worker_devices)} on this worker) "
            "is not supported: the Gram blocks would have to be gathered across workers. Every worker holds the "
            "same trained weights, so compute the Gram or fit the KernelPredictor outside strategy.scope() on any "
            "one worker (e.g. the chief, task index 0); to spread Gram blocks over one machine's devices, use "
            "MirroredStrategy."
        )


def strategy_devices() -> Optional[list]:
    """The devices of the active ``tf.distribute`` strategy (inside ``strategy.scope()``), if more than one.

    Inside a replica context (a train step) nothing is redistributed: None.
    """
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context() is False:
        return None
    devices = list(tf.distribute.get_strategy().extended.worker_devices)
    return devices if len(devices) > 1 else None


def compute_block(pair: Callable, i: int, j: int, device: Optional[str]) -> tf.Tensor:
    """Block ``pair(i, j)`` of a blocked Gram, computed on ``device`` (None: the default placement)."""
    with tf.device(device):
        return pair(i, j)


def block_placement() -> Callable:
    """A function ``place(pair, i, j)`` computing successive Gram blocks round-robin on the strategy's devices.

    Without a multi-device strategy every block gets the default placement.
    The caller concatenates the blocks (on the default device).

    Example::

        place = block_placement()
        blocks = [place(pair, i, j) for i, j in pairs]
    """
    devices = strategy_devices()
    counter = itertools.count()

    def place(pair: Callable, i: int, j: int) -> tf.Tensor:
        k = next(counter)
        return compute_block(pair, i, j, devices[k % len(devices)] if devices else None)

    return place
