"""Per-layer rules of the structured NTK: forward pass with a watched pre-activation.

A rule replaces one call of a supported layer during the structured capture
(``structured_capture``). It recomputes the layer's output from its weights in
a way that exposes the *pre-activation* output ``z`` (``z = a W + b`` for Dense,
the convolution plus bias for Conv, the looked-up rows for Embedding,
``γ ⊙ x̂ + β`` for the normalisations), asks the recorder to watch ``z``, applies
the activation, and returns a *site*: the watched tensors plus a ``finish``
callback that, given the cotangents Δ = ∂f/∂z (one slice per output pass, shape
(C, *z.shape)), returns one factor per trainable variable
(``structured_factors``). No rule ever forms the (n × P) Jacobian.

Rules exist for ``Dense`` and ``EinsumDense`` (any input rank: extra axes are
weight sharing over positions), ``Conv1D``/``Conv2D`` (patches by strided
slicing, groups, dilation, "valid"/"same"/"causal" padding, both data
formats), ``Embedding`` (index comparison / segment sum, no one-hot matmul),
``LayerNormalization`` and ``BatchNormalization`` (inference mode; scale and
offset have explicit per-example gradients of size n × width). Any other layer
with trainable weights goes through :func:`fallback_site`: per-example
Jacobians of that layer's own weights only (cost ``O(n C p_layer)``). Each rule
is registered for its layer classes by :func:`register_rule` where it is defined.
"""

from __future__ import annotations

import itertools
import math
import string
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import keras
import tensorflow as tf
from keras import ops

from keras_kare._keras_compat import accepts_training, get_keras_mask, set_keras_mask
from keras_kare.backend.tensorflow.structured_activations import activate
from keras_kare.backend.tensorflow.structured_factors import (
    EmbeddingFactor,
    GradFactor,
    LinearFactor,
)

Key = tuple  # tuple of variable ids; one factor per key


@dataclass
class Site:
    """One call of a layer with trainable weights, waiting for its cotangents."""

    layer: keras.layers.Layer
    watched: list  # tensors whose cotangents Δ are needed
    finish: Callable[[Sequence[tf.Tensor]], list]  # Δs (C, *t.shape) -> [(key, LayerFactor)]


class Recorder:
    """State shared by the rules during one capture: the tape and the sites."""

    def __init__(self, tape: tf.GradientTape, trainable_ids: set):
        self.tape = tape
        self.trainable_ids = trainable_ids
        self.sites: list[Site] = []

    def trainable(self, var) -> bool:
        return var is not None and id(var) in self.trainable_ids

    def watch(self, t: tf.Tensor) -> None:
        self.tape.watch(t)


# ------------------------------------------------------------------ registry
_RULES: "dict[type, Callable]" = {}


def register_rule(*layer_classes: type):
    """Make the decorated function the structured rule for ``layer_classes``.

    A rule is ``rule(layer, x, rec) -> output``: it computes the layer's output
    exposing the pre-activation ``z``, watches ``z`` and appends a :class:`Site`
    to ``rec.sites``. It also serves subclasses that keep the forward pass
    (same ``call``/``convolution_op``, no LoRA, not quantised). A new layer type
    is one decorated function.
    """

    def decorate(rule: Callable) -> Callable:
        for cls in layer_classes:
            _RULES[cls] = rule
        return rule

    return decorate


def find_rule(layer) -> Optional[Callable]:
    """The structured rule for ``layer``, or None (the layer then uses the fallback)."""
    for base, rule in _RULES.items():
        if _plain(layer, base):
            return rule
    return None


# ------------------------------------------------------------------ helpers
def _as_compute(layer, x: tf.Tensor) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    dtype = tf.as_dtype(layer.compute_dtype)
    if x.dtype.is_floating and x.dtype != dtype:
        x = tf.cast(x, dtype)
    return x


def _finish_output(layer, x, out, mask_source=None):
    """Propagate the Keras mask the way ``Layer.__call__`` would."""
    prev = get_keras_mask(x)
    if layer.supports_masking or isinstance(layer, keras.layers.Embedding):
        try:
            mask = layer.compute_mask(x, prev)
        except Exception:  # noqa: BLE001 - masks are metadata; never fail the kernel on them
            mask = None
        if mask is not None:
            set_keras_mask(out, mask)
    return out


def _kernel_factors(rec: Recorder, kernel, bias, a: tf.Tensor, d: tf.Tensor) -> list:
    """Factors of a linear kernel (n,T,H,d_in)/(C,n,T,H,d_out) with an (H·d_out) bias.

    A trainable bias is folded into the kernel as the weight of a constant
    input (an implicit column of ones after ``a``, see ``LinearFactor.ones``),
    so ``K_W + K_b = Σ (A Aᵀ + 1) ⊙ (Δ Δᵀ)``.
    """
    k_on, b_on = rec.trainable(kernel), rec.trainable(bias)
    if k_on and b_on:
        return [((id(kernel), id(bias)), LinearFactor(a, d, ones=True))]
    if k_on:
        return [((id(kernel),), LinearFactor(a, d))]
    if b_on:
        g = tf.reduce_sum(d, axis=2)  # (C, n, H, d_out)
        return [((id(bias),), GradFactor(tf.reshape(g, [tf.shape(g)[0], tf.shape(g)[1], -1])))]
    return []


def _w(var, x: tf.Tensor) -> tf.Tensor:
    """A variable's value in the input's compute dtype (autocasting, as Layer.__call__ does)."""
    v = tf.convert_to_tensor(var)
    return v if v.dtype == x.dtype else tf.cast(v, x.dtype)


def _count(dims) -> int:
    """Static product of ``dims`` (positions T), or -1 if any is unknown."""
    dims = list(dims)
    return int(math.prod(dims)) if all(d is not None for d in dims) else -1


def _plain(layer, base) -> bool:
    """``layer`` is ``base`` or a subclass that does not change the forward pass."""
    if not isinstance(layer, base):
        return False
    for name in ("call", "convolution_op"):
        if getattr(type(layer), name, None) is not getattr(base, name, None):
            return False
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        return False
    return True


# ------------------------------------------------------------------ Dense
@register_rule(keras.layers.Dense)
def dense_site(layer, x, rec: Recorder):
    x = _as_compute(layer, x)
    kernel, bias = layer.kernel, layer.bias
    z = ops.matmul(x, _w(kernel, x))
    if bias is not None:
        z = ops.add(z, _w(bias, x))
    rec.watch(z)
    out = activate(layer.activation, z)
    d_in, d_out = int(kernel.shape[0]), int(kernel.shape[1])

    def finish(deltas):
        (d,) = deltas
        n, t = tf.shape(x)[0], _count(x.shape[1:-1])
        a = tf.reshape(x, [n, t, 1, d_in])
        return _kernel_factors(rec, kernel, bias, a, tf.reshape(d, [tf.shape(d)[0], n, t, 1, d_out]))

    rec.sites.append(Site(layer, [z], finish))
    return _finish_output(layer, x, out)


# ------------------------------------------------------------------ EinsumDense
@dataclass
class _EinsumPlan:
    batch: str
    shared: str  # positions T: input & output, not kernel
    blocks: str  # H: input & kernel & output
    contracted: str  # d_in: input & kernel only
    produced: str  # d_out: kernel & output only
    inp: str
    out: str
    cotangent: str  # an index letter unused by the equation


def _expand_ellipsis(spec: str, rank: int, fill: str) -> str:
    if "..." not in spec:
        return spec
    k = rank - (len(spec) - 3)
    return spec.replace("...", fill[:k])


def einsum_plan(layer, input_rank: int) -> Optional[_EinsumPlan]:
    """Classify the equation's indices, or None if the layer needs the fallback."""
    eq = layer.equation.replace(" ", "")
    try:
        lhs, out = eq.split("->")
        inp, ker = lhs.split(",")
    except ValueError:
        return None
    if "..." in ker:
        return None
    free = "".join(c for c in string.ascii_uppercase + string.ascii_lowercase if c not in eq)
    inp = _expand_ellipsis(inp, input_rank, free)
    out = _expand_ellipsis(out, input_rank, free)
    if len(inp) != input_rank or len(set(inp)) != len(inp) or len(set(ker)) != len(ker):
        return None
    b = inp[0]
    if b in ker or b not in out or out[0] != b:
        return None
    if any(c not in inp and c not in out for c in ker):  # kernel-only indices: summed weights
        return None
    return _EinsumPlan(
        batch=b,
        shared="".join(c for c in inp[1:] if c in out and c not in ker),
        blocks="".join(c for c in ker if c in inp and c in out),
        contracted="".join(c for c in ker if c in inp and c not in out),
        produced="".join(c for c in ker if c in out and c not in inp),
        inp=inp,
        out=out,
        cotangent=free[-1],
    )


@register_rule(keras.layers.EinsumDense)
def einsum_dense_site(layer, x, rec: Recorder):
    x = _as_compute(layer, x)
    plan = einsum_plan(layer, x.shape.rank)
    if plan is None:
        return fallback_site(layer, (x,), {}, rec)
    kernel, bias = layer.kernel, layer.bias
    z = ops.einsum(layer.equation, x, _w(kernel, x))
    if bias is not None:
        z = ops.add(z, _w(bias, x))
    rec.watch(z)
    out = activate(layer.activation, z)
    dims = dict(zip(plan.inp, x.shape.as_list()))
    dims.update(zip(layer.equation.split("->")[0].split(",")[1].strip(), kernel.shape))
    size = lambda letters: int(math.prod(int(dims[c]) for c in letters))  # noqa: E731
    h, d_in, d_out = size(plan.blocks), size(plan.contracted), size(plan.produced)
    t = _count(dims[c] for c in plan.shared)
    bias_letters = "".join(c for c in plan.out if c in (layer.bias_axes or ""))
    cx = plan.cotangent  # a letter of its own for the output-pass axis C

    def finish(deltas):
        (d,) = deltas
        n, c = tf.shape(x)[0], tf.shape(d)[0]
        factors = []
        if rec.trainable(kernel):
            a = tf.einsum(f"{plan.inp}->{plan.batch}{plan.shared}{plan.blocks}{plan.contracted}", x)
            a = tf.reshape(a, [n, t, h, d_in])
            dd = tf.einsum(f"{cx}{plan.out}->{cx}{plan.batch}{plan.shared}{plan.blocks}{plan.produced}", d)
            dd = tf.reshape(dd, [c, n, t, h, d_out])
            factors.append(((id(kernel),), LinearFactor(a, dd)))
        if rec.trainable(bias):
            # The bias broadcasts against the trailing output axes it spans; its
            # per-example gradient sums Δ over every other non-batch axis.
            g = tf.einsum(f"{cx}{plan.out}->{cx}{plan.batch}{bias_letters}", d)
            factors.append(((id(bias),), GradFactor(tf.reshape(g, [c, n, -1]))))
        return factors

    rec.sites.append(Site(layer, [z], finish))
    return _finish_output(layer, x, out)


# ------------------------------------------------------------------ Conv
def _same_padding(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding for one spatial axis."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def conv_patches(x: tf.Tensor, kernel_size, strides, dilation, padding: str) -> tf.Tensor:
    """Patches (n, *out_spatial, K, c_in) of a channels-last input by strided slicing.

    ``K = prod(kernel_size)``; pure slicing, so it is differentiable to any order
    and compiles under XLA. ``padding`` is "valid" or "same" (causal padding is
    applied by the caller).
    """
    spatial = x.shape.as_list()[1:-1]
    if any(s is None for s in spatial):
        raise NotImplementedError("structured Conv rule needs static spatial input dimensions.")
    pads = [(0, 0)] * len(spatial)
    if padding == "same":
        pads = [_same_padding(n, k, s, d) for n, k, s, d in zip(spatial, kernel_size, strides, dilation)]
        x = tf.pad(x, [[0, 0]] + [list(p) for p in pads] + [[0, 0]])
    padded = [n + p[0] + p[1] for n, p in zip(spatial, pads)]
    outs = [(n - (k - 1) * d - 1) // s + 1 for n, k, s, d in zip(padded, kernel_size, strides, dilation)]
    slices = []
    for offsets in itertools.product(*[range(k) for k in kernel_size]):
        idx = [slice(None)]
        for o, out, s, d in zip(offsets, outs, strides, dilation):
            start = o * d
            idx.append(slice(start, start + (out - 1) * s + 1, s))
        idx.append(slice(None))
        slices.append(x[tuple(idx)])
    return tf.stack(slices, axis=-2)


@register_rule(keras.layers.Conv1D, keras.layers.Conv2D)
def conv_site(layer, x, rec: Recorder):
    x = _as_compute(layer, x)
    rank = layer.rank
    channels_first = layer.data_format == "channels_first"
    padding = layer.padding
    x_in = x
    if padding == "causal":
        left = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
        pad = [[0, 0], [0, 0], [left, 0]] if channels_first else [[0, 0], [left, 0], [0, 0]]
        x_in = ops.pad(x, pad)
        padding = "valid"
    kernel, bias = layer.kernel, layer.bias if layer.use_bias else None
    z = ops.conv(
        x_in,
        _w(kernel, x),
        strides=list(layer.strides),
        padding=padding,
        dilation_rate=layer.dilation_rate,
        data_format=layer.data_format,
    )
    if bias is not None:
        shape = (1, layer.filters) + (1,) * rank if channels_first else (1,) * (rank + 1) + (layer.filters,)
        z = ops.add(z, ops.reshape(_w(bias, x), shape))
    rec.watch(z)
    out = activate(layer.activation, z)
    groups = int(getattr(layer, "groups", 1))
    c_in = int(kernel.shape[-2]) * groups
    c_out = int(layer.filters)

    def to_last(t, lead):
        if not channels_first:
            return t
        r = t.shape.rank
        return tf.transpose(t, list(range(lead)) + list(range(lead + 1, r)) + [lead])

    def finish(deltas):
        (d,) = deltas
        xl = to_last(x_in, 1)
        p = conv_patches(xl, layer.kernel_size, layer.strides, layer.dilation_rate, padding)
        n, k, t = tf.shape(p)[0], p.shape[-2], _count(p.shape[1:-2])
        # (n, T, K, G, c_in/G) -> (n, T, G, K·c_in/G): each group is a block H.
        p = tf.reshape(p, [n, t, k, groups, c_in // groups])
        a = tf.reshape(tf.transpose(p, [0, 1, 3, 2, 4]), [n, t, groups, k * (c_in // groups)])
        dl = to_last(d, 2)
        dl = tf.reshape(dl, [tf.shape(d)[0], n, t, groups, c_out // groups])
        return _kernel_factors(rec, kernel, bias, a, dl)

    rec.sites.append(Site(layer, [z], finish))
    return _finish_output(layer, x, out)


# ------------------------------------------------------------------ Embedding
@register_rule(keras.layers.Embedding)
def embedding_site(layer, x, rec: Recorder):
    ids = tf.convert_to_tensor(x)
    if ids.dtype not in (tf.int32, tf.int64):
        ids = tf.cast(ids, tf.int32)
    table = layer.embeddings
    z = tf.cast(tf.gather(table, ids), layer.compute_dtype)
    rec.watch(z)
    vocab, dim = int(table.shape[0]), int(table.shape[1])

    def finish(deltas):
        (d,) = deltas
        n, t = tf.shape(ids)[0], _count(ids.shape[1:])
        flat_ids = tf.reshape(ids, [n, t])
        return [((id(table),), EmbeddingFactor(flat_ids, tf.reshape(d, [tf.shape(d)[0], n, t, dim]), vocab))]

    rec.sites.append(Site(layer, [z], finish))
    return _finish_output(layer, ids, z)


# ------------------------------------------------------------------ normalisation
def _affine_site(layer, x, xhat, param_axes, gamma, beta, rec: Recorder):
    """z = γ ⊙ x̂ + β with γ, β broadcast along ``param_axes``; explicit per-example grads."""
    rank = xhat.shape.rank
    bshape = [1] * rank
    for ax in param_axes:
        bshape[ax] = xhat.shape[ax]
    z = xhat
    if gamma is not None:
        z = z * tf.reshape(tf.cast(gamma, xhat.dtype), bshape)
    if beta is not None:
        z = z + tf.reshape(tf.cast(beta, xhat.dtype), bshape)
    z = tf.cast(z, layer.compute_dtype)
    rec.watch(z)
    summed = [ax + 1 for ax in range(1, rank) if ax not in param_axes]  # axes of Δ (C, n, ...)

    def per_example(t):
        g = tf.reduce_sum(t, axis=summed) if summed else t
        return tf.reshape(g, [tf.shape(t)[0], tf.shape(t)[1], -1])

    def finish(deltas):
        (d,) = deltas
        d = tf.cast(d, xhat.dtype)
        factors = []
        if rec.trainable(gamma):
            factors.append(((id(gamma),), GradFactor(per_example(d * xhat[None]))))
        if rec.trainable(beta):
            factors.append(((id(beta),), GradFactor(per_example(d))))
        return factors

    rec.sites.append(Site(layer, [z], finish))
    return _finish_output(layer, x, z)


def _positive_axes(axis, rank: int) -> list[int]:
    axes = [axis] if isinstance(axis, int) else list(axis)
    return sorted(a % rank for a in axes)


@register_rule(keras.layers.LayerNormalization)
def layer_norm_site(layer, x, rec: Recorder):
    x = _as_compute(layer, x)
    rank = x.shape.rank
    axes = _positive_axes(layer.axis, rank)
    xhat = ops.layer_normalization(x, None, None, axis=axes, epsilon=layer.epsilon, rms_scaling=layer.rms_scaling)
    beta = None if layer.rms_scaling else layer.beta  # keras ignores beta under rms_scaling
    return _affine_site(layer, x, xhat, axes, layer.gamma, beta, rec)


@register_rule(keras.layers.BatchNormalization)
def batch_norm_site(layer, x, rec: Recorder):
    """Inference-mode batch normalisation (moving statistics): examples do not interact."""
    x = _as_compute(layer, x)
    rank = x.shape.rank
    axes = _positive_axes(layer.axis, rank)
    work = tf.float64 if x.dtype == tf.float64 else tf.float32
    xw = tf.cast(x, work)
    bshape = [1] * rank
    for ax in axes:
        bshape[ax] = x.shape[ax]
    mean = tf.reshape(tf.cast(layer.moving_mean, work), bshape)
    var = tf.reshape(tf.cast(layer.moving_variance, work), bshape)
    xhat = (xw - mean) * tf.math.rsqrt(var + layer.epsilon)
    gamma = layer.gamma if layer.scale else None
    beta = layer.beta if layer.center else None
    return _affine_site(layer, x, xhat, axes, gamma, beta, rec)


# ------------------------------------------------------------------ fallback
def call_layer(layer, args, kwargs):
    """Call a layer the way a Functional model does, in inference mode."""
    kwargs = dict(kwargs)
    if accepts_training(layer):
        kwargs["training"] = False
    return layer(*args, **kwargs)


def fallback_site(layer, args, kwargs, rec: Recorder):
    """Per-example Jacobians of this layer's own trainable weights only.

    Forward: the layer is called as is and its (float) outputs are watched.
    Finish: with Δ the cotangents of those outputs, ``s[c, i] = <Δ[c, i], y_i>``
    and the per-example gradients are ``∂s[c, i]/∂w`` (a ``pfor`` Jacobian over
    (C, n), memory ``C · n · p_layer``).
    """
    variables = [v for v in layer.trainable_variables if rec.trainable(v)]
    y = call_layer(layer, args, kwargs)
    flat = tf.nest.flatten(y)
    watched, positions = [], []
    new_flat = []
    for i, t in enumerate(flat):
        if isinstance(t, tf.Tensor) and t.dtype.is_floating:
            w = tf.identity(t)  # a fresh tensor: never alias another site's watched tensor
            mask = get_keras_mask(t)
            if mask is not None:
                set_keras_mask(w, mask)
            rec.watch(w)
            watched.append(w)
            positions.append(i)
            new_flat.append(w)
        else:
            new_flat.append(t)

    def finish(deltas):
        with tf.GradientTape() as tape:  # records only this layer's call
            y2 = tf.nest.flatten(call_layer(layer, args, kwargs))
            terms = []
            for pos, d in zip(positions, deltas):
                t = tf.cast(y2[pos], d.dtype)
                prod = d * t[None]
                terms.append(tf.reduce_sum(tf.reshape(prod, [tf.shape(d)[0], tf.shape(d)[1], -1]), axis=-1))
            s = tf.add_n(terms)  # (C, n)
        # UnconnectedGradients.ZERO trips over Keras variables (string dtype) in
        # pfor; unused weights get explicit zeros instead.
        jacs = tape.jacobian(s, variables, experimental_use_pfor=True)
        c, n = tf.shape(s)[0], tf.shape(s)[1]
        factors = []
        for v, j in zip(variables, jacs):
            if j is None:
                j = tf.zeros([c, n, int(math.prod(v.shape))], s.dtype)
            factors.append(((id(v),), GradFactor(tf.reshape(j, [c, n, -1]))))
        return factors

    if variables:
        rec.sites.append(Site(layer, watched, finish))
    return tf.nest.pack_sequence_as(y, new_flat)
