"""Benchmark: structured vs jacobian NTK (workloads 1-5 below).

Every configuration runs in its own subprocess (fresh TensorFlow runtime, so
its peak resident memory is its own); within one invocation of this script all
configurations run back to back, so the structured/jacobian ratios come from one
run on the same machine state. Times are medians over ``--steps`` timed calls
after ``--warmup`` untimed ones (the first traces the ``tf.function``); the
jacobian implementation gets fewer steps where it is too slow or too large (the
table says so).

Workloads (float32, graph mode as in ``fit``, which disables XLA on CPU):
  1. MLP 784-512-512-1 GELU, batch 256 and 1024: ms per KAREModel train step
     and Gram-only time.
  2. CNN 28x28x1: Conv2D(32,3)-ReLU-Conv2D(64,3)-ReLU-GAP-Dense(1), batch 128.
  3. The MLP with 10 outputs, kernel="trace", batch 256.
  4. KernelPredictor.fit + predict, n = 10 000 train / 2 000 test, the MLP.
  5. Peak resident memory of workload 1 at batch 1024.

Usage:
  python benchmarks/bench_ntk.py            # full run (~15-25 min on 2 cores)
  python benchmarks/bench_ntk.py --quick    # smoke run (small sizes, ~2 min)
  python benchmarks/bench_ntk.py --nt benchmarks/results/neural_tangents.json --markdown benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# ---------------------------------------------------------------- child side
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _median_ms(fn, steps: int, warmup: int) -> tuple[float, list[float]]:
    import numpy as np
    import tensorflow as tf

    def sync(r):
        for t in tf.nest.flatten(r):
            if t is not None:
                np.asarray(t)

    for _ in range(warmup):
        sync(fn())
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        sync(fn())
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), times


def _mlp(width: int, outputs: int, d_in: int = 784):
    import keras

    return keras.Sequential(
        [
            keras.Input((d_in,)),
            keras.layers.Dense(width, "gelu"),
            keras.layers.Dense(width, "gelu"),
            keras.layers.Dense(outputs),
        ]
    )


def _cnn():
    import keras

    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(32, 3, activation="relu"),
            L.Conv2D(64, 3, activation="relu"),
            L.GlobalAveragePooling2D(),
            L.Dense(1),
        ]
    )


def _memory_guard(limit_mb: float, cfg: dict) -> None:
    """Abort this process (reporting a lower bound) once its resident memory exceeds ``limit_mb``.

    The machine is shared: the jacobian implementation at batch 1024 would grow
    to tens of GB and invite the OOM killer.
    """
    import threading

    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
    t0 = time.perf_counter()

    def watch():
        while True:
            with open("/proc/self/statm") as fh:
                rss = int(fh.read().split()[1]) * page_mb
            if rss > limit_mb:
                err = (
                    f"aborted: resident memory exceeded {limit_mb / 1024:.0f} GB after "
                    f"{time.perf_counter() - t0:.0f} s (peak > {rss / 1024:.1f} GB)"
                )
                print("RESULT " + json.dumps(dict(cfg, error=err, peak_rss_mb=rss)), flush=True)
                os._exit(3)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()


def run_one(cfg: dict) -> dict:
    """Run one configuration in this process and return its measurements."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if cfg.get("mem_limit_mb"):
        _memory_guard(cfg["mem_limit_mb"], cfg)
    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(ROOT))
    import keras_kare
    from keras_kare.backend import gram

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    impl, n, kind = cfg["impl"], cfg["batch"], cfg["model"]
    if kind == "cnn":
        net = _cnn()
        x = rng.normal(size=(n, 28, 28, 1)).astype("float32")
    else:
        net = _mlp(cfg.get("width", 512), cfg.get("outputs", 1))
        x = rng.normal(size=(n, 784)).astype("float32")
    c = net.output_shape[-1]
    y = rng.normal(size=(n, c)).astype("float32")
    kernel = cfg.get("kernel", "trace")
    if cfg.get("save_weights"):
        np.savez(cfg["save_weights"], *net.get_weights())
    out = dict(cfg)
    out["params"] = int(net.count_params())
    out["rss_before_mb"] = _peak_rss_mb()

    if cfg["what"] == "predictor":
        m = cfg["test"]
        x_test = rng.normal(size=(m, 784)).astype("float32")
        t0 = time.perf_counter()
        kp = keras_kare.KernelPredictor(net, ridge=1e-3, implementation=impl, batch_size=cfg.get("block", 512))
        kp.fit(x, y[:, 0])
        t1 = time.perf_counter()
        pred = kp.predict(x_test)
        t2 = time.perf_counter()
        assert np.all(np.isfinite(pred))
        out.update(fit_s=t1 - t0, predict_s=t2 - t1, total_s=t2 - t0)
    else:
        xt, yt = tf.constant(x), tf.constant(y)
        km = keras_kare.KAREModel(net, kernel=kernel, implementation=impl)
        km.compile(optimizer=keras.optimizers.SGD(1e-3))
        km.build(xt.shape)
        km.optimizer.build(net.trainable_variables)
        # Inputs are arguments, not captured constants: grappler would constant-fold
        # everything that depends only on x (e.g. the first layer's X Xᵀ).
        if cfg["what"] == "step":
            f = tf.function(lambda a, b: km.train_step((a, b)))
        else:
            f = tf.function(lambda a, b: gram(net, a, None, kernel=kernel, implementation=impl))
        t0 = time.perf_counter()
        med, times = _median_ms(lambda: f(xt, yt), cfg["steps"], cfg["warmup"])
        out.update(ms=med, times_ms=times, wall_s=time.perf_counter() - t0)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


# ---------------------------------------------------------------- parent side
def _spawn(cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-one", json.dumps(cfg)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return dict(cfg, error=f"timed out after {timeout:.0f} s")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or "").strip().splitlines()[-3:]
    return dict(cfg, error=f"exit {proc.returncode} after {time.perf_counter() - t0:.0f} s: {' | '.join(tail)}")


def plan(quick: bool, steps: int, warmup: int) -> list[dict]:
    """The configurations of workloads 1-5 (quick: small sizes, same structure)."""
    s = dict(steps=steps, warmup=warmup)
    few = dict(steps=2 if not quick else 1, warmup=1)  # jacobian where one call takes many seconds
    big = 256 if quick else 1024
    width = 128 if quick else 512
    cfgs = []
    for impl in ("structured", "jacobian"):
        slow = few if impl == "jacobian" else s
        for what in ("step", "gram"):
            cfgs.append(
                dict(
                    workload=1,
                    model="mlp",
                    width=width,
                    batch=64 if quick else 256,
                    impl=impl,
                    what=what,
                    **(
                        dict(steps=3, warmup=1)
                        if impl == "jacobian" and quick
                        else dict(steps=5, warmup=1)
                        if impl == "jacobian"
                        else s
                    ),
                )
            )
            cfgs.append(dict(workload=1, model="mlp", width=width, batch=big, impl=impl, what=what, **slow))
        cnn = few if impl == "jacobian" else s
        cfgs.append(dict(workload=2, model="cnn", batch=8 if quick else 128, impl=impl, what="step", **cnn))
        cfgs.append(dict(workload=2, model="cnn", batch=8 if quick else 128, impl=impl, what="gram", **cnn))
        for what in ("step", "gram"):
            cfgs.append(
                dict(
                    workload=3,
                    model="mlp",
                    width=width,
                    outputs=10,
                    kernel="trace",
                    batch=32 if quick else 256,
                    impl=impl,
                    what=what,
                    **slow,
                )
            )
    cfgs.append(
        dict(
            workload=4,
            model="mlp",
            width=width,
            batch=500 if quick else 10000,
            test=100 if quick else 2000,
            impl="structured",
            what="predictor",
        )
    )
    return cfgs


def _fmt_ms(r: dict) -> str:
    if "error" in r:
        return f"failed ({r['error'][:60]})"
    return f"{r['ms']:.1f}" if r["ms"] < 100 else f"{r['ms']:.0f}"


def _find(results, **kv):
    for r in results:
        if all(r.get(k) == v for k, v in kv.items()):
            return r
    return None


def table(results: list[dict], nt: dict | None) -> str:
    rows = [
        "| workload | measure | structured (ms) | jacobian (ms) | jacobian / structured | neural-tangents (ms) "
        "| nt / structured |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    keys = []
    for r in results:
        if r.get("what") in ("step", "gram"):
            k = (r["workload"], r["model"], r.get("outputs", 1), r["batch"], r["what"])
            if k not in keys:
                keys.append(k)
    for wl, model, _outputs, batch, what in keys:
        s = _find(results, workload=wl, batch=batch, what=what, impl="structured", model=model)
        j = _find(results, workload=wl, batch=batch, what=what, impl="jacobian", model=model)
        name = {1: "1 MLP 784-512-512-1", 2: "2 CNN 28x28", 3: "3 MLP 10 outputs (trace)"}[wl]
        measure = ("KAREModel train step" if what == "step" else "Gram only") + f", batch {batch}"
        ratio = f"{j['ms'] / s['ms']:.0f}x" if s and j and "error" not in s and "error" not in j else "n/a"
        note = ""
        if j and "error" not in j and j["steps"] < 5:
            note = f" (median of {j['steps']})"
        ntv = (nt or {}).get(f"{wl}:{batch}:{what}")
        nt_ms = f"{ntv:.1f}" if ntv else "—"
        nt_ratio = f"{ntv / s['ms']:.2f}" if ntv and s and "error" not in s else "—"
        rows.append(
            f"| {name} | {measure} | {_fmt_ms(s) if s else '—'} | "
            f"{(_fmt_ms(j) + note) if j else '—'} | {ratio} | {nt_ms} | {nt_ratio} |"
        )
    p = _find(results, workload=4)
    if p:
        if "error" in p:
            rows.append(f"| 4 KernelPredictor | fit + predict | failed: {p['error'][:80]} | not run | | | |")
        else:
            rows.append(
                f"| 4 KernelPredictor n={p['batch']}/{p['test']} | fit + predict (s) | {p['total_s']:.1f} s "
                f"(fit {p['fit_s']:.1f}, predict {p['predict_s']:.1f}) | not run (see note) | | — | |"
            )
    big = max((r["batch"] for r in results if r.get("workload") == 1), default=None)
    s = _find(results, workload=1, batch=big, what="step", impl="structured")
    j = _find(results, workload=1, batch=big, what="step", impl="jacobian")
    if s:

        def mem(r):
            if r is None or "error" in r:
                return "failed" if r else "—"
            return f"{r['peak_rss_mb']:.0f} MB (runtime + model before the step: {r['rss_before_mb']:.0f} MB)"

        rows.append(f"| 5 peak RSS, workload 1 batch {big} | train-step process | {mem(s)} | {mem(j)} | | | |")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run with small sizes")
    # many steps: the shared 2-core machine's step times scatter by ±20 % from call to call
    ap.add_argument("--steps", type=int, default=21, help="timed calls per structured configuration (default 21)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    ap.add_argument("--workloads", default="1,2,3,4", help="comma-separated subset of 1,2,3,4 (5 comes with 1)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    ap.add_argument("--out", default=str(HERE / "results"), help="directory for the JSON results")
    ap.add_argument("--nt", default=None, help="JSON written by bench_neural_tangents.py (peer column)")
    ap.add_argument("--markdown", default=None, help="also write the table to this markdown file")
    ap.add_argument(
        "--mem-limit-gb",
        type=float,
        default=8.0,
        help="abort a configuration whose resident memory exceeds this (reported as a lower bound)",
    )
    ap.add_argument(
        "--resume",
        default=None,
        help="a JSON log written by this script: configurations with a result there are not rerun",
    )
    ap.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_one:
        print("RESULT " + json.dumps(run_one(json.loads(args.run_one))), flush=True)
        return
    wanted = {int(w) for w in args.workloads.split(",")}
    cfgs = [c for c in plan(args.quick, args.steps, args.warmup) if c["workload"] in wanted]
    done = []
    if args.resume:
        for line in Path(args.resume).read_text().splitlines():
            if line.startswith("{"):
                done.append(json.loads(line))
    ident = ("workload", "model", "batch", "impl", "what", "outputs")
    results = []
    for cfg in cfgs:
        cfg["mem_limit_mb"] = args.mem_limit_gb * 1024
        prev = [d for d in done if all(d.get(k) == cfg.get(k) for k in ident)]
        if prev:
            results.append(prev[-1])
            continue
        r = _spawn(cfg, args.timeout)
        results.append(r)
        shown = {k: v for k, v in r.items() if k not in ("times_ms",)}
        print(json.dumps(shown), flush=True)
    nt = None
    if args.nt and Path(args.nt).exists():
        nt = json.loads(Path(args.nt).read_text()).get("results")
    md = table(results, nt)
    print()
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = dict(
        command=" ".join([Path(sys.executable).name, "benchmarks/bench_ntk.py"] + (argv or sys.argv[1:])),
        machine=platform.platform(),
        cpus=os.cpu_count(),
        load_average=os.getloadavg(),
        quick=args.quick,
    )
    path = out / f"bench_ntk-{'quick-' if args.quick else ''}{stamp}.json"
    path.write_text(json.dumps(dict(meta=meta, results=results, table=md), indent=1))
    print(f"\nwrote {path}")
    if args.markdown:
        Path(args.markdown).write_text(md + "\n")
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
