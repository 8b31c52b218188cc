"""PyTorch-style initialisation and the paper's GELU MLPs.

PyTorch's ``nn.Linear`` draws weights and biases from U(−1/√fan_in, 1/√fan_in)
(``kaiming_uniform_(a=√5)`` for the weights). The KARE paper's networks use this
default, and the effective NTK scale (hence the meaning of the absolute ridge
z = 0.1 and of the learning rates) depends on it, so the reproduction uses it
instead of Keras' Glorot-uniform/zeros.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="keras_kare")
class FanInUniform(keras.initializers.Initializer):
    """U(−scale/√fan_in, scale/√fan_in), PyTorch's default for ``nn.Linear``.

    Args:
        fan_in: number of inputs of the layer. ``None`` derives it from the
            shape (``prod(shape[:-1])``: right for Dense and Conv kernels); a
            bias has no fan-in in its shape, so pass the layer's input size.
        scale: multiplier of the bound (1 = PyTorch).
        seed: int seed for reproducible draws (``None``: Keras' global RNG).

    Example:
        >>> init = FanInUniform(seed=0)
        >>> w = init((64, 10))  # bound 1/8
    """

    def __init__(self, fan_in: Optional[int] = None, scale: float = 1.0, seed: Optional[int] = None):
        if fan_in is not None and (isinstance(fan_in, bool) or int(fan_in) < 1):
            raise ValueError(f"fan_in must be a positive int or None, received {fan_in!r}.")
        self.fan_in = None if fan_in is None else int(fan_in)
        self.scale = float(scale)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        fan_in = self.fan_in
        if fan_in is None:
            if len(shape) < 2:
                raise ValueError(
                    f"FanInUniform cannot infer fan_in from shape {tuple(shape)}; pass fan_in= (e.g. for a bias)."
                )
            fan_in = int(np.prod(shape[:-1]))
        bound = self.scale / math.sqrt(fan_in)
        return keras.random.uniform(shape, -bound, bound, dtype=dtype, seed=self.seed)

    def get_config(self):
        return {"fan_in": self.fan_in, "scale": self.scale, "seed": self.seed}


def torch_dense(units: int, fan_in: int, activation=None, seed: Optional[int] = None, name=None):
    """A ``keras.layers.Dense`` initialised like ``torch.nn.Linear(fan_in, units)``."""
    s_w = None if seed is None else 2 * seed
    s_b = None if seed is None else 2 * seed + 1
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer=FanInUniform(seed=s_w),
        bias_initializer=FanInUniform(fan_in=fan_in, seed=s_b),
        name=name,
    )


def build_mlp(
    input_dim: int,
    depth: int,
    width: int,
    outputs: int = 1,
    activation: str = "gelu",
    seed: Optional[int] = 0,
    name: str = "mlp",
) -> keras.Sequential:
    """The paper's network: ``depth`` hidden ``activation`` layers of ``width``, linear output.

    All layers PyTorch-initialised (:class:`FanInUniform`); GELU is exact (erf),
    like ``torch.nn.GELU()``. Same ``seed`` → same initial weights.
    """
    if depth < 1 or width < 1 or outputs < 1 or input_dim < 1:
        raise ValueError(
            f"depth, width, outputs and input_dim must be >= 1, received {depth}, {width}, {outputs}, {input_dim}."
        )
    base = None if seed is None else 1000 * int(seed)
    layers = [keras.Input((input_dim,))]
    fan_in = input_dim
    for i in range(depth):
        layers.append(torch_dense(width, fan_in, activation, None if base is None else base + i, name=f"hidden_{i}"))
        fan_in = width
    layers.append(torch_dense(outputs, fan_in, None, None if base is None else base + depth, name="output"))
    return keras.Sequential(layers, name=name)
