"""The one cache of compiled Gram functions, per model.

Eager calls of the autodiff (``tape.jacobian`` with ``pfor`` in particular)
rebuild their graph on every call; a ``tf.function`` compiled once per graph
makes a blocked Gram cost one trace per graph instead of one per block. Every
compiled Gram function of the package lives here, keyed per model (a weak
reference: a deleted model takes its functions with it) by what fixes the
graph: the caller's key (kernel mode, implementation, input signatures, block
size) and the variables that count (freezing a layer changes them).
"""

from __future__ import annotations

import weakref
from typing import Callable

import tensorflow as tf

from keras_kare.backend.tensorflow.dispatch import gram

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def cached(model, key: tuple, build: Callable[[], object]):
    """The object ``build()`` made for ``model`` and ``key``, built on first use.

    The model's trainable variables are part of every key, so a layer frozen
    or unfrozen since gets its own functions. What ``build`` makes must reach
    the model through a weak reference (:func:`weak`): a cached value holding
    its key strongly would keep the model, and everything compiled for it,
    alive for the life of the process.
    """
    per_model = _CACHE.setdefault(model, {})
    full_key = (key, tuple(id(w) for w in model.trainable_variables))
    if full_key not in per_model:
        per_model[full_key] = build()
    return per_model[full_key]


def weak(model) -> Callable[[], object]:
    """A weak reference to ``model`` for the functions :func:`cached` keeps (see there)."""
    return weakref.ref(model)


def cached_functions(model) -> list:
    """Everything cached for ``model`` (for tests and diagnostics)."""
    return list(_CACHE.get(model, {}).values())


def compiled_gram(model, kernel: str, implementation: str, specs1, specs2=None):
    """A ``tf.function`` of :func:`~keras_kare.backend.tensorflow.dispatch.gram` for one input signature.

    ``specs1``/``specs2``: the ``tf.TensorSpec`` structures of ``x1``/``x2``,
    batch axis ``None`` and every other axis fixed (``specs2=None``: the
    symmetric Gram of ``x1``). The function's input signature fixes them, so
    no call relaxes it further (to an unknown rank, say) and no call changes
    what a later call computes.
    """

    net = weak(model)

    def build():
        if specs2 is None:
            return tf.function(lambda a: gram(net(), a, None, kernel, implementation), input_signature=[specs1])
        return tf.function(lambda a, b: gram(net(), a, b, kernel, implementation), input_signature=[specs1, specs2])

    key = ("gram", kernel, implementation, str(specs1), None if specs2 is None else str(specs2))
    return cached(model, key, build)
