"""Slow, obviously-right reference implementations used as test oracles.

Nothing here shares code with keras_kare: the NTK is built from per-example
gradients with Python loops, KARE with explicit float64 inverses.
"""

import numpy as np
import tensorflow as tf


def per_example_gradients(model, x):
    """(n, C, P) float64 array of ∂f_c(x_i)/∂θ, one tape.gradient call per (i, c)."""
    variables = model.trainable_variables
    n = len(x) if not isinstance(x, dict) else len(next(iter(x.values())))
    rows = []
    for i in range(n):
        xi = tf.nest.map_structure(lambda t, i=i: tf.convert_to_tensor(np.asarray(t)[i : i + 1]), x)
        with tf.GradientTape(persistent=True) as tape:
            out = model(xi, training=False)
            out = tf.concat([tf.reshape(o, [-1]) for o in tf.nest.flatten(out)], axis=0)
            outs = [out[c] for c in range(out.shape[0])]
        per_c = []
        for oc in outs:
            grads = tape.gradient(oc, variables)
            flat = [
                np.zeros(int(np.prod(v.shape)))
                if g is None
                else np.asarray(tf.convert_to_tensor(g), np.float64).ravel()
                for g, v in zip(grads, variables)
            ]
            per_c.append(np.concatenate(flat))
        del tape
        rows.append(np.stack(per_c))
    return np.stack(rows)


def ntk_oracle(model, x1, x2=None, kernel="trace"):
    j1 = per_example_gradients(model, x1)
    j2 = j1 if x2 is None else per_example_gradients(model, x2)
    if kernel == "trace":
        return np.einsum("icp,jcp->ij", j1, j2)
    if kernel == "summed_output":
        return j1.sum(1) @ j2.sum(1).T
    return np.einsum("icp,jdp->ijcd", j1, j2)


def kare_oracle(k, y, z, relative=False):
    """KARE by its definition, with explicit inverses in float64."""
    k = np.asarray(k, np.float64)
    y = np.asarray(y, np.float64).reshape(len(k), -1)
    n, c = y.shape
    if relative:
        z = z * np.trace(k) / n**2
    m_inv = np.linalg.inv(k / n + z * np.eye(n))
    num = np.trace(y.T @ m_inv @ m_inv @ y) / n / c
    den = np.trace(m_inv) / n
    return num / den**2


def gcv_oracle(k, y, mu):
    """Generalised cross-validation of KRR with hat matrix H = K (K + mu I)^-1."""
    k = np.asarray(k, np.float64)
    y = np.asarray(y, np.float64).reshape(len(k), -1)
    n = len(k)
    h = k @ np.linalg.inv(k + mu * np.eye(n))
    r = (np.eye(n) - h) @ y
    return np.mean(r**2) / (np.trace(np.eye(n) - h) / n) ** 2


def krr_predict_oracle(k_train, k_test_train, y, lam):
    """f(x) = (1/n) K(x, X) (K/n + lam I)^-1 Y by a direct dense solve."""
    n = len(k_train)
    alpha = np.linalg.solve(k_train / n + lam * np.eye(n), np.asarray(y, np.float64))
    return k_test_train @ alpha / n


def loo_oracle(k, y, lam):
    """Brute-force leave-one-out MSE of f = K(., X)(K + n·lam I)^-1 y (penalty fixed at n·lam)."""
    k = np.asarray(k, np.float64)
    y = np.asarray(y, np.float64).reshape(len(k), -1)
    n = len(k)
    errs = []
    for i in range(n):
        keep = np.arange(n) != i
        a = np.linalg.solve(k[np.ix_(keep, keep)] + n * lam * np.eye(n - 1), y[keep])
        errs.append((k[i, keep] @ a - y[i]) ** 2)
    return float(np.mean(errs))
