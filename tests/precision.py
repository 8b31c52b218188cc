"""Unit roundoffs, from which the suite's floating-point tolerances are derived.

A p-bit significand (implicit bit included) rounds to nearest with relative
error at most ``u = 2**-p``: float64 53 bits, float32 24, float16 11,
bfloat16 8. Tolerances in the tests are written as ``c * unit_roundoff(dtype)``
with ``c`` the number of roundings (or the error growth) the compared
computation can accumulate; each test says where its ``c`` comes from.
"""

import numpy as np

SIGNIFICAND_BITS = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}


def unit_roundoff(dtype) -> float:
    """``2**-p`` for a dtype with a p-bit significand (``"float32"``, ``"mixed_bfloat16"``, ...)."""
    name = str(getattr(dtype, "name", dtype)).removeprefix("mixed_")
    return 2.0 ** -SIGNIFICAND_BITS[name]


U64, U32 = unit_roundoff("float64"), unit_roundoff("float32")


def gram_entry_rtol(n_params: int, dtype="float32", roundings: int = 4) -> float:
    """Bound γ on an NTK Gram's entry errors, ``|ΔK_ij| ≤ γ·√(K_ii K_jj)``, in ``dtype``.

    ``K_ij = Σ_p J_ip J_jp`` over ``n_params`` parameters: a sum of P products
    errs by at most ``P·u`` times ``Σ_p |J_ip||J_jp| ≤ ‖J_i‖‖J_j‖``
    (Cauchy–Schwarz), and each gradient entry carries ``roundings·u`` from the
    forward/backward pass, which enters twice. The structured form
    ``(A Aᵀ + 1) ⊙ (Δ Δᵀ)`` regroups the same products and obeys the same bound.
    """
    return (n_params + 2 * roundings) * unit_roundoff(dtype)


def float32_gram_entry_rtol(n_params: int, roundings: int = 4) -> float:
    """:func:`gram_entry_rtol` in float32."""
    return gram_entry_rtol(n_params, "float32", roundings)


def kare_rtol(k, y, ridge: float, entry_rtol: float) -> float:
    """First-order bound on KARE's relative error when ``|ΔK_ij| ≤ entry_rtol·√(K_ii K_jj)``.

    ``Σ_ij |∂KARE/∂K_ij|·entry_rtol·√(K_ii K_jj) / KARE`` with the gradient of
    ``KARE = N/D²``, ``N = tr(Yᵀ M⁻² Y)/(nC)``, ``D = tr(M⁻¹)/n``, ``M = K/n + zI``:
    ``∂N/∂K = -(M⁻²YYᵀM⁻¹ + M⁻¹YYᵀM⁻²)/(n²C)``, ``∂D/∂K = -M⁻²/n²``. Adds one
    float32 rounding of the logged value.
    """
    k = np.asarray(k, np.float64)
    n = len(k)
    y = np.asarray(y, np.float64).reshape(n, -1)
    m_inv = np.linalg.inv(k / n + ridge * np.eye(n))
    m_inv2 = m_inv @ m_inv
    yy = y @ y.T
    num = np.trace(y.T @ m_inv2 @ y) / n / y.shape[1]
    den = np.trace(m_inv) / n
    d_num = -(m_inv2 @ yy @ m_inv + m_inv @ yy @ m_inv2) / (n * n * y.shape[1])
    d_den = -m_inv2 / n**2
    grad = d_num / den**2 - 2 * num / den**3 * d_den
    scale = np.sqrt(np.outer(np.diag(k), np.diag(k)))
    return float(np.sum(np.abs(grad) * scale) * entry_rtol / (num / den**2)) + U32


def gram_atol(model, k) -> float:
    """Absolute tolerance for two float32 computations of the NTK Gram ``k`` of ``model``.

    ``|ΔK_ij| ≤ γ·√(K_ii K_jj) ≤ γ·max|K|`` with γ = :func:`float32_gram_entry_rtol`
    of the model's parameter count (for the ``"full"`` kernel the same holds for
    each (c, d) output pair).
    """
    return float32_gram_entry_rtol(model.count_params()) * float(np.abs(np.asarray(k)).max())
