"""Memory guard: estimate a Gram's footprint before computing it.

The estimate is deliberately simple and errs high (a factor of ~2 for
temporaries). It exists so that asking for a 200 000 × 200 000 Gram raises a
clear error instead of being killed by the out-of-memory killer.

Cost model of a Gram (bytes, b = itemsize, block sizes s1, s2 = min(batch_size, n)):

- result: ``n1 · n2 · (C² if kernel == "full" else 1) · b``, twice while
  blocks are concatenated, plus ``extra_copies`` float64 copies requested by
  the caller (``KernelPredictor`` keeps one);
- ``"jacobian"`` work per block pair: ``b · C · Σ_i s_i · (P + s_i · A)``
  over the one or two blocks whose Jacobians are formed, with A the number of
  float activations of one example's forward pass. ``tape.jacobian`` runs one
  backward pass per output row (vectorised by ``pfor``), and each of them holds
  activation cotangents for the *whole* batch: memory grows like s² · A, which
  dominates for convolutions (measured peak resident memory, runtime included:
  2.0 GB for a 784-512-512-1 MLP at s = 256, 8.0 GB for a small CNN at s = 128; this
  formula gives 2.4 and 10.7 GiB). A ``KAREModel`` step keeps these Jacobians
  for its backward pass: twice that (measured: 3.5 GB for the MLP);
- ``"structured"`` work per block pair: ``4 · L · s1 · s2 · (C² | 1) · b`` for L
  weighted layers (one Gram term per layer alive at once, with temporaries).

``KernelPredictor`` checks its whole fit before starting it:
:func:`estimate_exact_solve_bytes` (O(n²)) for the exact solver and
:func:`estimate_nystrom_bytes` (O(m² + block·m), independent of n) for Nyström.
"""

from __future__ import annotations

import os

GIB = 1024**3
USABLE_FRACTION = 0.8


class GramMemoryError(MemoryError):
    """Raised before computing a Gram that would not fit in available memory."""


def available_bytes() -> int:
    """Available physical memory (``MemAvailable``; falls back to total pages)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 62


def estimate_gram_bytes(
    n1: int,
    n2: int,
    n_outputs: int,
    n_params: int,
    n_layers: int,
    kernel: str,
    implementation: str,
    batch_size,
    itemsize: int = 4,
    extra_copies: int = 0,
    activations: int = 0,
    one_jacobian: bool = False,
) -> tuple[int, int]:
    """(result bytes, per-block work bytes) of a Gram computation; see module docstring.

    ``activations``: float activations of one example's forward pass (A);
    ``one_jacobian``: only one block's Jacobian is formed (a symmetric Gram in one block).
    """
    cc = n_outputs**2 if kernel == "full" else 1
    result = n1 * n2 * cc * itemsize * 2 + extra_copies * n1 * n2 * cc * 8
    s1 = min(batch_size or n1, n1)
    s2 = min(batch_size or n2, n2)
    c = 1 if kernel == "summed_output" else n_outputs
    if implementation == "jacobian":
        blocks = (s1,) if one_jacobian else (s1, s2)
        work = itemsize * c * sum(s * (n_params + s * activations) for s in blocks)
    else:
        work = 4 * max(n_layers, 1) * s1 * s2 * cc * itemsize
    return result, work


def check_gram_memory(
    result: int, work: int, describe: str, batch_size, available: int | None = None, advice: str = ""
) -> None:
    """Raise :class:`GramMemoryError` if result + work exceed the usable memory (``advice`` ends the message)."""
    available = available_bytes() if available is None else available
    usable = USABLE_FRACTION * available
    if result + work <= usable:
        return
    if result > usable:
        hint = "the result alone does not fit: use fewer examples (or a machine with more memory)"
    elif batch_size is None:
        hint = "pass batch_size=... to compute the Gram in blocks (e.g. batch_size=256)"
    else:
        hint = f"use a smaller batch_size than {batch_size}"
    raise GramMemoryError(
        f"{describe} needs about {result / GIB:.1f} GiB for the result and {work / GIB:.1f} GiB of work "
        f"per block, but only {available / GIB:.1f} GiB are available; {hint}.{' ' + advice if advice else ''}"
    )


def estimate_exact_solve_bytes(n_rows: int, itemsize: int = 4) -> int:
    """Peak bytes of an exact kernel ridge fit on an ``n_rows × n_rows`` Gram.

    The larger of two phases: assembling the Gram (three copies in the
    model's dtype — blocks, rows, result — and its float64 copy) and solving
    (four float64 matrices: the kept training Gram, ``K/n + λI``, its Cholesky
    factor and LAPACK's working copy): 12.8 GB at n = 20 000. The runtime
    (TensorFlow, Python, the inputs) comes on top.
    """
    return n_rows * n_rows * max(3 * itemsize + 8, 4 * 8)


def estimate_nystrom_bytes(n_center_rows: int, rows_per_block: int, itemsize: int = 4) -> int:
    """Peak bytes of a Nyström fit, ``O(m² + block·m)``: the n × m cross-Gram is never held.

    Six float64 (q × q) matrices (q centre rows): the centre Gram, its
    eigenvectors, ``K_nCᵀK_nC``, the reduced system and its eigenvectors,
    with one temporary; plus one row block of ``K_nC`` in the model's dtype
    (twice) and in float64 (twice: the block and its product temporaries).
    """
    q = n_center_rows
    return 6 * q * q * 8 + rows_per_block * q * (2 * itemsize + 2 * 8)
