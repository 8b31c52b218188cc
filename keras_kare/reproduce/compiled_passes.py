"""The reproduction's DNN training loop: passes of SGD over in-memory data, compiled together.

The paper's baselines train tiny networks (one hidden layer of 128 on a few
hundred rows) for hundreds of passes of mini-batches of 32. Through Keras'
``fit`` (``keras_kare.fit_in_memory``, ``steps_per_execution`` = batches per
pass) a whole UCI run took 1.7x and a Figure 1 run 4.2x as long
(``benchmarks/bench_dnn_loop.py``, docs/decisions.md), the per-epoch work of
the trainer dominating steps of a fraction of a millisecond. This loop runs
the network's own ``train_step`` on the same batches, many passes per
compiled call.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_kare import in_memory


class CompiledPasses:
    """Passes of SGD over in-memory data through a compiled network's own ``train_step``, in one compiled call.

    The steps are those of Keras' ``fit`` on the same batches (the network's
    ``train_step``: forward pass, its compiled loss, gradient, its optimizer's
    update), but the loop over the steps is compiled together with them
    (``jit_compile=True``: one XLA program per call), so a tiny network pays
    for its arithmetic instead of TensorFlow's per-operation dispatch,
    ``tf.data`` per step and a host round trip per check. Results differ from
    ``fit`` by float round-off only (XLA fuses and orders reductions
    differently).

    Divergence is checked inside the call, every ``passes_per_check`` passes
    (a *chunk*): its loss is the mean over the chunk's steps (as Keras'
    epoch loss), and if it or any trainable weight is not finite the weights
    go back to the copy taken after the last good chunk (on-device, no host
    copy) and the call stops. A call runs up to ``checks_per_call`` chunks,
    the last one possibly partial.

    Batches: pass p visits the examples in the order
    :func:`keras_kare.in_memory.permutation` ``(n, seed, p)``, drawn inside the
    compiled loop, in consecutive batches of ``batch_size``, the last one
    partial: the batches of Keras' ``fit`` on
    :func:`keras_kare.in_memory.epoch_dataset` ``(x, y, shuffle=True, seed=seed,
    first_epoch=0)``, one pass an epoch. A single full batch is the data as given.

    Args:
        model: a compiled Keras model (single input and target array).
        n: examples; batch_size: examples per batch (``>= n``: full batch).
        passes_per_check: passes per chunk (the divergence check's period).
        checks_per_call: the largest number of chunks of one call.
        jit_compile: compile with XLA (False: a graph-mode loop, for tests).

    Example:
        >>> loop = CompiledPasses(net, len(x), 32, passes_per_check=20, checks_per_call=5)  # doctest: +SKIP
        >>> losses, stopped = loop(x, y, seed=7, first_pass=0, passes=100)                  # doctest: +SKIP
    """

    def __init__(
        self, model, n: int, batch_size: int, passes_per_check: int, checks_per_call: int, jit_compile: bool = True
    ):
        self.n, self.full = int(n), batch_size >= n
        self.passes_per_check, self.checks_per_call = int(passes_per_check), int(checks_per_call)
        self.passes_per_call = self.passes_per_check * self.checks_per_call
        bs = min(int(batch_size), self.n)
        full_batches, last = divmod(self.n, bs)
        weights = list(model.trainable_variables)
        self._copies = [tf.Variable(w, trainable=False) for w in weights]

        def step(x, y):
            return tf.cast(model.train_step((x, y))["loss"], tf.float32)

        def order(seed, p):
            return None if self.full else in_memory.permutation(self.n, seed, p)

        def one_pass(x, y, order, loss):
            if self.full:
                return step(x, y)

            def batch(b, loss):
                rows = tf.gather(order, b * bs + tf.range(bs))
                return b + 1, step(tf.gather(x, rows), tf.gather(y, rows))

            _, loss = tf.while_loop(lambda b, _: b < full_batches, batch, (tf.constant(0), loss))
            if last:
                rows = order[full_batches * bs :]
                loss = step(tf.gather(x, rows), tf.gather(y, rows))
            return loss

        def keep_or_restore(loss):
            """Copy the weights if the chunk ended finite, else restore the copy; returns whether it was finite."""
            finite = tf.reduce_all([tf.math.is_finite(loss)] + [tf.reduce_all(tf.math.is_finite(w)) for w in weights])
            for c, w in zip(self._copies, weights):
                kept = tf.where(finite, w, c)
                c.assign(kept)
                w.assign(kept)
            return finite

        def run(x, y, seed, first_pass, passes):
            for c, w in zip(self._copies, weights):  # the weights this call starts from are good
                c.assign(w)
            chunks = (passes + self.passes_per_check - 1) // self.passes_per_check

            def chunk(k, stopped, losses):
                model.reset_metrics()  # the chunk's loss is the mean over its steps, as in a Keras epoch
                first = k * self.passes_per_check
                stop = tf.minimum(first + self.passes_per_check, passes)
                _, loss = tf.while_loop(
                    lambda p, _: p < stop,
                    lambda p, loss: (p + 1, one_pass(x, y, order(seed, first_pass + p), loss)),
                    (first, tf.constant(np.nan, tf.float32)),
                )
                finite = keep_or_restore(loss)
                losses = tf.tensor_scatter_nd_update(losses, [[k]], [loss])
                return k + 1, tf.logical_not(finite), losses

            nan = tf.fill([self.checks_per_call], tf.constant(np.nan, tf.float32))
            done, stopped, losses = tf.while_loop(
                lambda k, stopped, _: tf.logical_and(k < chunks, tf.logical_not(stopped)),
                chunk,
                (tf.constant(0, tf.int64), tf.constant(False), nan),
            )
            return losses, done, stopped

        self._run = tf.function(run, jit_compile=jit_compile)

    def __call__(self, x, y, seed: int, first_pass: int, passes: int) -> tuple[np.ndarray, bool]:
        """Run passes ``first_pass … first_pass + passes − 1`` (at most ``passes_per_call``), shuffled by ``seed``.

        Returns the loss of every chunk run (the mean over its steps) and
        whether the call stopped on a non-finite chunk (the last one returned;
        the weights are then those after the chunk before it).
        """
        if not 0 < passes <= self.passes_per_call:
            raise ValueError(f"passes must be in [1, {self.passes_per_call}], received {passes}.")
        args = (tf.constant(seed, tf.int64), tf.constant(first_pass, tf.int64), tf.constant(passes, tf.int64))
        losses, done, stopped = self._run(x, y, *args)
        return losses.numpy()[: int(done)], bool(stopped)
