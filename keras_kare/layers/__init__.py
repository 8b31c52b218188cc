"""Keras layers of keras_kare."""

from keras_kare.layers.kare_layer import KARE

__all__ = ["KARE"]
