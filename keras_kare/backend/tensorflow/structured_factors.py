"""Per-variable Gram contributions from captured layer quantities (structured NTK).

A layer rule (``structured_rules``) turns one call of a layer into *factors*,
one per trainable variable, from which that variable's contribution to the
Gram ``K[i, j] = <∂f(x_i)/∂w, ∂f(x'_j)/∂w>`` follows without ever forming the
(n × P) Jacobian:

``LinearFactor``
    The variable is the kernel of a linear map applied at ``T`` positions and in
    ``H`` independent blocks: per example, ``∂f/∂W[h] = Σ_t A[t, h]ᵀ Δ[t, h]``
    with ``A`` of shape (n, T, H, d_in) (layer inputs / conv patches, with a
    trailing column of ones when the bias is folded in as the weight of a
    constant input) and ``Δ`` of shape (C, n, T, H, d_out) (cotangents of the
    pre-activation output, one slice per output cotangent pass). Dense on 2-D
    input is ``T = H = 1``; Dense/EinsumDense on sequences and convolutions are
    weight sharing over ``T`` positions; grouped convolutions have ``H`` groups.
``EmbeddingFactor``
    The variable is an embedding table: ``∂f/∂E[v] = Σ_t [id_t = v] Δ[t]``.
``GradFactor``
    Explicit per-example gradients (C, n, p) of a small variable (biases of
    EinsumDense, LayerNorm / BatchNorm scale and offset) or of a layer with no
    rule (per-example Jacobian of *that layer's own* weights only).

Output-mode conventions: ``C`` is the number of cotangent passes (1 for
``kernel="summed_output"``). ``"trace"`` sums the per-pass Grams;
``"full"`` keeps the (C, C) output block, giving (n1, n2, C, C).

Every factor class provides the same small interface, so a new kind of
factor is one class here: ``to_grad()`` (explicit per-example gradients),
``gram(other, kernel)`` (its Gram contribution with a factor of the same class),
``compact(kernel, n)`` (the form to keep for blocked Grams), ``concat(factors)``
(one factor for a variable used at several call sites, or None),
``tensors()``/``static``/``from_tensors()`` (``tf.function`` I/O) and
``example_axes`` (the example axis of each of ``tensors()``, for gathering a
batch spread over replicas: :func:`map_examples`).

Cost model (the ghost-vs-materialise choice is made in ``LinearFactor.gram``
and ``EmbeddingFactor.gram``, counted in multiply-adds, ``Cg = C`` for
``"trace"``/``"summed_output"`` and ``C²`` for ``"full"``):

* ghost (never forms per-example gradients):
  ``n1 n2 T1 T2 H (d_in + Cg·d_out + Cg)``, memory ``n1 n2 T1 T2 H Cg``;
* materialise (per-example gradients, then their inner products):
  ``(n1 T1 + n2 T2) C H d_in d_out + n1 n2 Cg H d_in d_out``,
  memory ``(n1 + n2) C H d_in d_out`` (one layer's parameters per example,
  never the whole network's).

Ghost is chosen when it needs no more multiply-adds; for ``T = 1`` (Dense on
2-D input) that is always the case, for convolutions over hundreds of positions
materialising almost always wins (``T² ≫ d_in d_out / (d_in + d_out)``). If the
chosen form would need more than :data:`MEMORY_LIMIT_ELEMENTS` elements and the
other would not, the other is used. When the batch size is unknown at trace
time (``None`` in a ``tf.function``), :data:`ASSUMED_BATCH` is used. A blocked
Gram that keeps each block's factors (``blocks.CapturedBlocks``) makes the decision
once per variable for pairs of full blocks (``compact``) and stores the
chosen form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence

import tensorflow as tf

TRACE, SUMMED, FULL = "trace", "summed_output", "full"

#: Batch size assumed by the cost model when it is unknown while tracing.
ASSUMED_BATCH = 256
#: A form needing more elements than this is avoided if the other one fits (~1 GiB f32).
MEMORY_LIMIT_ELEMENTS = 2**28


# ---------------------------------------------------------------- helpers
def _static(dim: Optional[int], unknown: int = ASSUMED_BATCH) -> int:
    return unknown if dim is None else int(dim)


def _output_multiplicity(c: int, kernel: str) -> int:
    return c * c if kernel == FULL else c


def _prefer(ghost_flops: float, mat_flops: float, ghost_mem: float, mat_mem: float) -> bool:
    """True for the ghost form (see the module docstring for the rule)."""
    ghost = ghost_flops <= mat_flops
    if ghost and ghost_mem > MEMORY_LIMIT_ELEMENTS and mat_mem <= MEMORY_LIMIT_ELEMENTS:
        return False
    if not ghost and mat_mem > MEMORY_LIMIT_ELEMENTS and ghost_mem <= MEMORY_LIMIT_ELEMENTS:
        return True
    return ghost


@tf.custom_gradient
def _self_gram(a: tf.Tensor):
    """``a aᵀ`` whose gradient is one matmul, ``(dG + dGᵀ) a``, instead of two."""

    def grad(dg):
        return tf.matmul(dg + tf.transpose(dg), a)

    return tf.matmul(a, a, transpose_b=True), grad


def matmul_t(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``a bᵀ`` for (n1, d) and (n2, d); the symmetric case has a cheaper gradient."""
    if a is b:
        return _self_gram(a)
    return tf.matmul(a, b, transpose_b=True)


def per_example_gram(g1: tf.Tensor, g2: tf.Tensor, kernel: str) -> tf.Tensor:
    """Gram of explicit per-example gradients g1 (C, n1, p), g2 (C, n2, p)."""
    if kernel == FULL:
        return tf.einsum("cip,ejp->ijce", g1, g2)
    if g1.shape[0] == 1:
        return matmul_t(g1[0], g1[0]) if g1 is g2 else tf.matmul(g1[0], g2[0], transpose_b=True)
    return tf.einsum("cip,cjp->ij", g1, g2)


# ---------------------------------------------------------------- factor interface
class LayerFactor:
    """What every factor provides (see the module docstring)."""

    #: the name recorded by :func:`flatten_factors`; each subclass registers under it
    kind: ClassVar[str]
    #: the example (batch) axis of each tensor in :meth:`tensors`
    example_axes: ClassVar[tuple]
    _KINDS: ClassVar[dict] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        LayerFactor._KINDS[cls.kind] = cls

    def to_grad(self) -> tf.Tensor:
        """Explicit per-example gradients (C, n, p)."""
        raise NotImplementedError

    def gram(self, other: "LayerFactor", kernel: str) -> tf.Tensor:
        """Gram contribution of this variable between two batches (``other`` of the same class)."""
        raise NotImplementedError

    def compact(self, kernel: str, n: int) -> "LayerFactor":
        """The form to keep when paired with many blocks of ``n`` examples (default: as is)."""
        return self

    @classmethod
    def concat(cls, factors: Sequence["LayerFactor"]) -> Optional["LayerFactor"]:
        """One factor of this class for several uses of a variable, or None to sum gradients."""
        return None

    def tensors(self) -> list:
        raise NotImplementedError

    @property
    def static(self):
        """The non-tensor state :meth:`from_tensors` needs."""
        return None

    @classmethod
    def from_tensors(cls, tensors: Sequence[tf.Tensor], static) -> "LayerFactor":
        raise NotImplementedError


# ---------------------------------------------------------------- linear
@dataclass
class LinearFactor(LayerFactor):
    """Kernel of a (possibly weight-shared, possibly grouped) linear map.

    Attributes:
        a: (n, T, H, d_in) layer inputs (patches).
        delta: (C, n, T, H, d_out) cotangents of the pre-activation output.
        ones: the bias is folded in as the weight of a constant input, i.e. ``a``
            stands for ``[a, 1]`` (d_in + 1 columns). The column is kept implicit
            so the ghost form adds 1 to ``A Aᵀ`` instead of copying ``a``;
            :meth:`full_a` materialises it where a form needs it.
    """

    a: tf.Tensor
    delta: tf.Tensor
    ones: bool = False
    kind: ClassVar[str] = "linear"
    example_axes: ClassVar[tuple] = (0, 1)

    @property
    def d_in(self) -> int:
        return int(self.a.shape[-1]) + int(self.ones)

    def full_a(self) -> tf.Tensor:
        """``a`` with the implicit column of ones appended (if any)."""
        if not self.ones:
            return self.a
        return tf.concat([self.a, tf.ones_like(self.a[..., :1])], axis=-1)

    def cost(
        self, other: "LinearFactor", kernel: str, n1: Optional[int] = None, n2: Optional[int] = None
    ) -> tuple[bool, dict]:
        """Decide ghost vs materialise for pairing with ``other``; returns (ghost?, costs).

        ``n1``/``n2`` override the batch sizes read from the factors (used to make
        one decision for every block of a blocked Gram, see :meth:`compact`).
        """
        n1_, t1, h, _ = self.a.shape
        d_in = self.d_in
        c, n2_, t2, _, d_out = other.delta.shape
        n1, n2 = _static(n1 if n1 is not None else n1_), _static(n2 if n2 is not None else n2_)
        # Unknown position counts (dynamic sequence length) favour materialising.
        t1, t2 = _static(t1, 1024), _static(t2, 1024)
        cg = _output_multiplicity(int(c), kernel)
        positions = n1 * n2 * t1 * t2 * h
        ghost_flops = positions * (d_in + cg * d_out + cg)
        mat_flops = (n1 * t1 + n2 * t2) * c * h * d_in * d_out + n1 * n2 * cg * h * d_in * d_out
        ghost_mem = positions * cg
        mat_mem = (n1 + n2) * c * h * d_in * d_out
        ghost = _prefer(ghost_flops, mat_flops, ghost_mem, mat_mem)
        return ghost, dict(ghost_flops=ghost_flops, mat_flops=mat_flops, ghost_mem=ghost_mem, mat_mem=mat_mem)

    def to_grad(self) -> tf.Tensor:
        """Per-example kernel gradients (C, n, H·d_in·d_out)."""
        c, n = tf.shape(self.delta)[0], tf.shape(self.delta)[1]
        a = self.full_a()
        if a.shape[2] == 1 and self.delta.shape[0] == 1:  # one block, one pass: a batched matmul
            g = tf.matmul(tf.squeeze(a, 2), tf.squeeze(self.delta, [0, 3]), transpose_a=True)
        else:
            g = tf.einsum("nthk,cntho->cnhko", a, self.delta)
        return tf.reshape(g, [c, n, -1])

    def ghost_gram(self, other: "LinearFactor", kernel: str) -> tf.Tensor:
        """``Σ_{t,s,h} (A Aᵀ) ⊙ (Δ Δᵀ)`` without per-example gradients."""
        a1, a2, d1, d2 = self.a, other.a, self.delta, other.delta
        t1, h, t2 = a1.shape[1], a1.shape[2], a2.shape[1]
        # The implicit ones column contributes 1 to every (t, s, h) inner product of A.
        ones = 1.0 if self.ones else 0.0
        if t1 == 1 and t2 == 1 and h == 1:
            same = self is other
            # (squeeze, not [:, 0, 0]: its gradient is a reshape, not a scatter into zeros)
            a1 = tf.squeeze(a1, [1, 2])
            ga = matmul_t(a1, a1 if same else tf.squeeze(a2, [1, 2]))  # (n1, n2)
            if ones:
                ga = ga + ones
            e1 = tf.squeeze(d1, [2, 3])  # (C, n, d_out)
            e2 = e1 if same else tf.squeeze(d2, [2, 3])
            if kernel == FULL:
                return ga[:, :, None, None] * tf.einsum("cio,ejo->ijce", e1, e2)
            if e1.shape[0] == 1:
                e1 = tf.squeeze(e1, 0)
                return ga * matmul_t(e1, e1 if same else tf.squeeze(e2, 0))
            # Σ_c Δ_c Δ_cᵀ as one matmul over the (C·d_out) axis.
            f1_ = tf.reshape(tf.transpose(e1, [1, 0, 2]), [tf.shape(e1)[1], -1])
            f2_ = f1_ if same else tf.reshape(tf.transpose(e2, [1, 0, 2]), [tf.shape(e2)[1], -1])
            return ga * matmul_t(f1_, f2_)
        ga = tf.einsum("ithk,jshk->ijtsh", a1, a2)
        if ones:
            ga = ga + ones
        if kernel == FULL:
            gd = tf.einsum("citho,ejsho->ijcetsh", d1, d2)
            return tf.einsum("ijtsh,ijcetsh->ijce", ga, gd)
        gd = tf.einsum("citho,cjsho->ijtsh", d1, d2)
        return tf.reduce_sum(ga * gd, axis=[2, 3, 4])

    def gram(self, other: "LinearFactor", kernel: str) -> tf.Tensor:
        """Ghost or materialised per the cost model (:meth:`cost`)."""
        if self.cost(other, kernel)[0]:
            return self.ghost_gram(other, kernel)
        g1 = self.to_grad()
        g2 = g1 if other is self else other.to_grad()
        return per_example_gram(g1, g2, kernel)

    def compact(self, kernel: str, n: int) -> LayerFactor:
        return self if self.cost(self, kernel, n, n)[0] else GradFactor(self.to_grad())

    @classmethod
    def concat(cls, factors: Sequence["LinearFactor"]) -> "LinearFactor":
        ones = {f.ones for f in factors}
        a = [f.a for f in factors] if len(ones) == 1 else [f.full_a() for f in factors]
        return cls(tf.concat(a, axis=1), tf.concat([f.delta for f in factors], axis=2), ones == {True})

    def tensors(self) -> list:
        return [self.a, self.delta]

    @property
    def static(self):
        return self.ones

    @classmethod
    def from_tensors(cls, tensors, static) -> "LinearFactor":
        return cls(tensors[0], tensors[1], ones=static)


# ---------------------------------------------------------------- embedding
@dataclass
class EmbeddingFactor(LayerFactor):
    """Embedding table of ``vocab`` rows; ids (n, T) int, delta (C, n, T, dim)."""

    ids: tf.Tensor
    delta: tf.Tensor
    vocab: int
    kind: ClassVar[str] = "embedding"
    example_axes: ClassVar[tuple] = (0, 1)

    def to_grad(self) -> tf.Tensor:
        """Per-example table gradients (C, n, vocab·dim) by a segment sum (no one-hot)."""
        c, n, t, dim = tf.unstack(tf.shape(self.delta))
        ids = tf.cast(self.ids, tf.int32)
        rows = tf.range(n, dtype=tf.int32)[:, None] * self.vocab + ids  # (n, T)
        data = tf.reshape(tf.transpose(self.delta, [1, 2, 0, 3]), [n * t, c * dim])
        summed = tf.math.unsorted_segment_sum(data, tf.reshape(rows, [-1]), n * self.vocab)
        g = tf.reshape(summed, [n, self.vocab, c, dim])
        return tf.reshape(tf.transpose(g, [2, 0, 1, 3]), [c, n, -1])

    def ghost(self, other: "EmbeddingFactor", kernel: str, n1: Optional[int] = None, n2: Optional[int] = None) -> bool:
        """Ghost (index comparison) or materialised form (see :meth:`gram`)."""
        c, n1_, t1, dim = self.delta.shape
        n2_, t2 = other.delta.shape[1], other.delta.shape[2]
        n1s, n2s = _static(n1 if n1 is not None else n1_), _static(n2 if n2 is not None else n2_)
        t1, t2 = _static(t1, 1024), _static(t2, 1024)
        cg = _output_multiplicity(int(c), kernel)
        ghost_flops = n1s * n2s * t1 * t2 * (cg * dim + 1)
        mat_flops = (n1s * t1 + n2s * t2) * c * dim + n1s * n2s * cg * self.vocab * dim
        ghost_mem = n1s * n2s * t1 * t2 * cg
        mat_mem = (n1s + n2s) * c * self.vocab * dim
        return _prefer(ghost_flops, mat_flops, ghost_mem, mat_mem)

    def ghost_gram(self, other: "EmbeddingFactor", kernel: str) -> tf.Tensor:
        """``K[i, j] = Σ_{t, s} [id_it = id_js] <Δ_it, Δ_js>`` by index comparison."""
        same = tf.cast(tf.equal(self.ids[:, None, :, None], other.ids[None, :, None, :]), self.delta.dtype)
        if kernel == FULL:
            gd = tf.einsum("citk,ejsk->ijcets", self.delta, other.delta)
            return tf.einsum("ijts,ijcets->ijce", same, gd)
        gd = tf.einsum("citk,cjsk->ijts", self.delta, other.delta)
        return tf.reduce_sum(same * gd, axis=[2, 3])

    def gram(self, other: "EmbeddingFactor", kernel: str) -> tf.Tensor:
        """Ghost (cost ``n1 n2 T1 T2 (Cg·dim + 1)``) or materialised by a segment sum
        (cost ``n1 n2 Cg·vocab·dim``), whichever is cheaper."""
        if self.ghost(other, kernel):
            return self.ghost_gram(other, kernel)
        g1 = self.to_grad()
        g2 = g1 if other is self else other.to_grad()
        return per_example_gram(g1, g2, kernel)

    def compact(self, kernel: str, n: int) -> LayerFactor:
        return self if self.ghost(self, kernel, n, n) else GradFactor(self.to_grad())

    @classmethod
    def concat(cls, factors: Sequence["EmbeddingFactor"]) -> "EmbeddingFactor":
        return cls(
            tf.concat([tf.cast(f.ids, tf.int32) for f in factors], axis=1),
            tf.concat([f.delta for f in factors], axis=2),
            factors[0].vocab,
        )

    def tensors(self) -> list:
        return [self.ids, self.delta]

    @property
    def static(self):
        return self.vocab

    @classmethod
    def from_tensors(cls, tensors, static) -> "EmbeddingFactor":
        return cls(tensors[0], tensors[1], static)


# ---------------------------------------------------------------- explicit gradients
@dataclass
class GradFactor(LayerFactor):
    """Explicit per-example gradients (C, n, p) of one variable."""

    grad: tf.Tensor
    kind: ClassVar[str] = "grad"
    example_axes: ClassVar[tuple] = (1,)

    def to_grad(self) -> tf.Tensor:
        return self.grad

    def gram(self, other: "GradFactor", kernel: str) -> tf.Tensor:
        return per_example_gram(self.grad, other.grad, kernel)

    def tensors(self) -> list:
        return [self.grad]

    @classmethod
    def from_tensors(cls, tensors, static) -> "GradFactor":
        return cls(tensors[0])


# ---------------------------------------------------------------- generic operations
def merge(factors: Sequence[LayerFactor]) -> LayerFactor:
    """One factor for a variable used at several call sites (weight sharing).

    Factors of one class are joined by that class's ``concat`` (linear and
    embedding factors along the position axis T: the per-example gradient is
    a sum over all positions of all uses); anything else is materialised and summed.
    """
    if len(factors) == 1:
        return factors[0]
    kinds = {type(f) for f in factors}
    if len(kinds) == 1:
        joined = kinds.pop().concat(factors)
        if joined is not None:
            return joined
    return GradFactor(tf.add_n([f.to_grad() for f in factors]))


def factor_gram(f1: LayerFactor, f2: LayerFactor, kernel: str) -> tf.Tensor:
    """Gram contribution of one variable between two batches."""
    if type(f1) is not type(f2):  # cannot happen for one model, kept for safety
        return per_example_gram(f1.to_grad(), f2.to_grad(), kernel)
    return f1.gram(f2, kernel)


def compact(f: LayerFactor, kernel: str, n: int) -> LayerFactor:
    """The form of ``f`` to keep when it is paired with many blocks of ``n`` examples.

    A blocked Gram captures each block once and pairs it with every other
    block. The ghost-vs-materialise decision is made here once, for blocks of
    ``n`` examples on both sides: a factor whose cost model picks the
    materialised form is stored as its per-example gradients (for a
    convolution these are far smaller than its patches), otherwise as is.
    """
    return f.compact(kernel, n)


def map_examples(f: LayerFactor, fn) -> LayerFactor:
    """``f`` with every tensor replaced by ``fn(tensor, example_axis)`` (e.g. a gather over replicas)."""
    return type(f).from_tensors([fn(t, axis) for t, axis in zip(f.tensors(), f.example_axes)], f.static)


def flatten_factors(factors: "dict[tuple, LayerFactor]") -> tuple[list, list]:
    """(static description, tensors) of an ordered mapping of factors (for ``tf.function`` I/O)."""
    meta, tensors = [], []
    for key, f in factors.items():
        parts = f.tensors()
        meta.append((key, f.kind, f.static, len(parts)))
        tensors += parts
    return meta, tensors


def unflatten_factors(meta: list, tensors: Sequence[tf.Tensor]) -> "dict[tuple, LayerFactor]":
    """Inverse of :func:`flatten_factors`."""
    out, i = {}, 0
    for key, kind, static, count in meta:
        out[key] = LayerFactor._KINDS[kind].from_tensors(tensors[i : i + count], static)
        i += count
    return out
