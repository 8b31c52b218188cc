"""Unit roundoffs, from which the suite's floating-point tolerances are derived.

A p-bit significand (implicit bit included) rounds to nearest with relative
error at most ``u = 2**-p``: float64 53 bits, float32 24, float16 11,
bfloat16 8. Tolerances in the tests are written as ``c * unit_roundoff(dtype)``
with ``c`` the number of roundings (or the error growth) the compared
computation can accumulate; each test says where its ``c`` comes from.
"""

SIGNIFICAND_BITS = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}


def unit_roundoff(dtype) -> float:
    """``2**-p`` for a dtype with a p-bit significand (``"float32"``, ``"mixed_bfloat16"``, ...)."""
    name = str(getattr(dtype, "name", dtype)).removeprefix("mixed_")
    return 2.0 ** -SIGNIFICAND_BITS[name]


U64, U32 = unit_roundoff("float64"), unit_roundoff("float32")
