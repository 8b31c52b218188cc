"""Time the float64 Cholesky candidates for KernelPredictor's exact solve at one n.

Usage: ``python benchmarks/bench_cholesky.py N CANDIDATE`` with CANDIDATE one of
``numpy`` (threaded OpenBLAS potrf: crashes at n = 16 000 on AVX-512 Xeons), ``threadpool1``
(the same under ``threadpoolctl.threadpool_limits(1)``: what ``keras_kare.factor`` does),
``blocked`` (right-looking blocked Cholesky from NumPy BLAS-3 calls) or ``tf``
(``tf.linalg.cholesky``). One candidate per process, so a crash only ends that run.
Prints the time and ``max |L Lᵀ − A|`` over 200 random rows.
"""

import sys
import time

import numpy as np


def blocked_cholesky(a: np.ndarray, nb: int = 2048) -> np.ndarray:
    """Right-looking blocked Cholesky; panels through the inverse of the diagonal factor (NumPy has no trsm)."""
    a = a.copy()
    n = a.shape[0]
    for k in range(0, n, nb):
        e = min(k + nb, n)
        l11 = np.linalg.cholesky(a[k:e, k:e])
        a[k:e, k:e] = l11
        if e < n:
            l21 = a[e:, k:e] @ np.linalg.inv(l11).T
            a[e:, k:e] = l21
            a[e:, e:] -= l21 @ l21.T
    return np.tril(a)


def main() -> None:
    n, which = int(sys.argv[1]), sys.argv[2]
    rng = np.random.default_rng(0)
    g = rng.standard_normal((n, 64))
    a = g @ g.T / 64 + 1e-3 * np.eye(n)  # a cheap SPD matrix
    start = time.perf_counter()
    if which == "numpy":
        chol = np.linalg.cholesky(a)
    elif which == "threadpool1":
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            chol = np.linalg.cholesky(a)
    elif which == "blocked":
        chol = blocked_cholesky(a)
    elif which == "tf":
        import tensorflow as tf

        start = time.perf_counter()
        chol = tf.linalg.cholesky(tf.constant(a)).numpy()
    else:
        raise SystemExit(f"unknown candidate {which!r}")
    seconds = time.perf_counter() - start
    rows = rng.integers(0, n, 200)
    err = np.abs(chol[rows] @ chol.T - a[rows]).max()
    print(f"{which} n={n} {seconds:.2f}s err={err:.1e}")


if __name__ == "__main__":
    main()
