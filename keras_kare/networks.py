"""Which network's NTK is meant when a model is passed to keras_kare.

A :class:`~keras_kare.KAREModel` wraps a network (its ``base_model``) to train
it with KARE; the NTK, the kernel predictor and the callbacks all mean the
wrapped network's NTK. Every such entry point goes through
:func:`unwrap_network`.
"""

from __future__ import annotations


def is_kare_model(model) -> bool:
    """True for a :class:`~keras_kare.KAREModel` (duck-typed: no import of ``keras_kare.model`` here)."""
    return bool(getattr(model, "_is_kare_model", False))


def unwrap_network(model):
    """The network whose NTK is meant: a KAREModel's ``base_model``, else ``model`` itself.

    Args:
        model: a Keras model, possibly a :class:`~keras_kare.KAREModel`.

    Returns:
        ``model.base_model`` for a KAREModel, otherwise ``model`` unchanged.

    Example:
        >>> net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])  # doctest: +SKIP
        >>> unwrap_network(KAREModel(net)) is net  # doctest: +SKIP
        True
    """
    base = getattr(model, "base_model", None)
    return base if base is not None and is_kare_model(model) else model


__all__ = ["is_kare_model", "unwrap_network"]
