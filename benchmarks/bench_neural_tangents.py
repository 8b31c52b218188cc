"""neural-tangents (JAX) peer column for bench_ntk.py, workloads 1-3.

Runs in a separate environment (neural-tangents 0.6.5 needs an older JAX),
made by ``benchmarks/make_peer_env.sh``:

    benchmarks/make_peer_env.sh .venv-nt
    .venv-nt/bin/python benchmarks/bench_neural_tangents.py --out benchmarks/results/neural_tangents.json

Same architectures as bench_ntk.py, written as plain JAX functions with Keras'
default initialisation (Glorot-uniform kernels, zero biases) and Keras' exact
GELU; the NTK is ``nt.empirical_ntk_fn(..., implementation=STRUCTURED_DERIVATIVES)``.
A "step" is the jitted value-and-gradient of KARE (ridge 0.1, float64 Cholesky
solve, as KAREModel) through the NTK plus an SGD update; "gram" is the jitted
NTK alone. Median of ``--steps`` calls after ``--warmup`` (the first compiles).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)  # float64 only where asked (the KARE solve)

import neural_tangents as nt  # noqa: E402


def glorot(rng, fan_in, fan_out, shape):
    lim = np.sqrt(6.0 / (fan_in + fan_out))
    return jnp.asarray(rng.uniform(-lim, lim, size=shape).astype(np.float32))


def mlp_params(rng, widths):
    return [(glorot(rng, a, b, (a, b)), jnp.zeros((b,), jnp.float32)) for a, b in zip(widths[:-1], widths[1:])]


def mlp_apply(params, x):
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = jax.nn.gelu(x, approximate=False)
    return x


def cnn_params(rng):
    return [
        (glorot(rng, 9 * 1, 9 * 32, (3, 3, 1, 32)), jnp.zeros((32,), jnp.float32)),
        (glorot(rng, 9 * 32, 9 * 64, (3, 3, 32, 64)), jnp.zeros((64,), jnp.float32)),
        (glorot(rng, 64, 1, (64, 1)), jnp.zeros((1,), jnp.float32)),
    ]


def cnn_apply(params, x):
    dn = ("NHWC", "HWIO", "NHWC")
    for w, b in params[:2]:
        x = jax.nn.relu(jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=dn) + b)
    x = jnp.mean(x, axis=(1, 2))
    w, b = params[2]
    return x @ w + b


def kare(k, y, ridge=0.1):
    k = k.astype(jnp.float64)
    k = 0.5 * (k + k.T)
    n = k.shape[0]
    m = k / n + ridge * jnp.eye(n)
    chol = jnp.linalg.cholesky(m)
    tri = jax.lax.linalg.triangular_solve  # (a, b): solves a x = b with left_side=True
    z = tri(chol, y.astype(jnp.float64), left_side=True, lower=True)
    sol = tri(chol, z, left_side=True, lower=True, transpose_a=True)
    num = jnp.sum(sol**2) / (n * y.shape[1])
    l_inv = tri(chol, jnp.eye(n), left_side=True, lower=True)
    den = jnp.sum(l_inv**2) / n
    return (num / den**2).astype(jnp.float32)


def measure(fn, steps, warmup):
    for _ in range(warmup):
        jax.block_until_ready(fn())
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts)), ts


def run(workload, batch, what, steps, warmup, quick):
    rng = np.random.default_rng(0)
    width = 128 if quick else 512
    if workload == 2:
        params, apply = cnn_params(rng), cnn_apply
        x = jnp.asarray(rng.normal(size=(batch, 28, 28, 1)).astype(np.float32))
        c = 1
    else:
        c = 10 if workload == 3 else 1
        params, apply = mlp_params(rng, [784, width, width, c]), mlp_apply
        x = jnp.asarray(rng.normal(size=(batch, 784)).astype(np.float32))
    y = jnp.asarray(rng.normal(size=(batch, c)).astype(np.float32))
    ntk_fn = nt.empirical_ntk_fn(
        apply, trace_axes=(-1,), vmap_axes=0, implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES
    )
    # x and y are arguments, not closure constants: XLA would constant-fold them.
    if what == "gram":
        f = jax.jit(lambda p, xx: ntk_fn(xx, None, p))
        return measure(lambda: f(params, x), steps, warmup)

    @jax.jit
    def step(p, xx, yy):
        val, grads = jax.value_and_grad(lambda q: kare(ntk_fn(xx, None, q), yy))(p)
        return jax.tree_util.tree_map(lambda a, g: a - 1e-3 * g, p, grads), val

    state = {"p": params}

    def one():
        state["p"], v = step(state["p"], x, y)
        return v

    return measure(one, steps, warmup)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/neural_tangents.json")
    args = ap.parse_args()
    configs = [
        (1, 64 if args.quick else 256),
        (1, 256 if args.quick else 1024),
        (2, 32 if args.quick else 128),
        (3, 64 if args.quick else 256),
    ]
    results, raw = {}, {}
    for wl, batch in configs:
        for what in ("step", "gram"):
            key = f"{wl}:{batch}:{what}"
            try:
                med, ts = run(wl, batch, what, args.steps, args.warmup, args.quick)
                results[key], raw[key] = med, ts
                print(f"{key}: {med:.1f} ms", flush=True)
            except Exception as err:  # noqa: BLE001 - report and continue
                raw[key] = f"failed: {type(err).__name__}: {err}"
                print(f"{key}: failed: {err}", flush=True)
    meta = dict(
        jax=jax.__version__,
        neural_tangents=getattr(nt, "__version__", "?"),
        machine=platform.platform(),
        cpus=os.cpu_count(),
        load_average=os.getloadavg(),
        quick=args.quick,
    )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(dict(meta=meta, results=results, raw=raw), fh, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
