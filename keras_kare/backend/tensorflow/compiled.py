"""The one per-model cache of what is compiled or traced for a network.

Eager calls of the autodiff (``tape.jacobian`` with ``pfor`` in particular)
rebuild their graph on every call; a ``tf.function`` compiled once per graph
makes a blocked Gram cost one trace per graph instead of one per block.
Everything the package compiles or traces for a model lives here: the compiled
Grams (``dispatch.compiled_gram``), the captured blocks
(``blocks.captured_blocks``) and the forward profiles of the memory estimate
(``jacobian.forward_profile``). It is keyed per model (a weak reference: a
deleted model takes its entries with it) by what fixes the graph: the
caller's key (kernel mode, implementation, input signatures, block size) and
the variables that count (freezing a layer changes them).
"""

from __future__ import annotations

import weakref
from typing import Callable

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
