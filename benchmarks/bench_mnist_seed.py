"""Where one seed of Figure 2 (MNIST 7 vs 9) spends its time, for each of the paper's six networks.

One seed of ``keras-kare reproduce mnist --depth D --width W`` per requested
network, with the paper's settings (1000/1000 examples, KARE z = 0.1, lr 10 at
depth 2 and 1 at depth 4, 300 full-batch steps; DNN lr 0.1, 10 000 full-batch
steps; λ̃ ∈ 1e-3 … 1e3), through the same code (``runner.run_seed`` with a
``TrainerPool``, the DNN trained in a second thread while KARE trains, as the
CLI does). Per network it reports the seed's wall time and its split:

- KARE steps: ``train_kare`` (the 300 SGD steps on KARE, each with its NTK Gram);
- DNN steps: ``train_dnn`` (the 10 000 SGD steps; overlaps the KARE steps in
  its own thread, so the phases add up to more than the wall time);
- Grams: the kernel ridge regressions' NTK Grams (train × train, test × train)
  of the learned and the after-kernel (``KernelPredictor._gram``);
- solves: the rest of the two ridge paths (eigendecomposition, per-ridge
  solves, KARE/LOO along the path).

Start-up (imports, TensorFlow's initialisation, the data) is measured from the
process start and reported once; the first network's seed also includes the
tracing and compilation of its models. The target "< 90 s per depth-4 × 128
seed, start-up included" reads: start-up + that network's seed, when it is the
only network asked for (``--networks 4x128``).

Usage (the offline MNIST test-set copy: ``--data-dir DIR`` or ``$KERAS_KARE_DATA/mnist``):
  python benchmarks/bench_mnist_seed.py --networks 4x128
  python benchmarks/bench_mnist_seed.py --networks all --seed 0
Writes a table to stdout and ``benchmarks/results/mnist_seed.json`` (``--json`` to change).
"""

from __future__ import annotations

import time

T_PROCESS = time.time()  # before the heavy imports: start-up is measured from here

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHASES = ("train_kare", "train_dnn", "krr_path")


def _networks(text: str):
    if text == "all":
        return [(d, w) for d in (2, 4) for w in (32, 64, 128)]
    return [tuple(int(v) for v in item.split("x")) for item in text.split(",")]


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", default="all", help="'all' or DEPTHxWIDTH list, e.g. 4x128 (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="the seed (default: 0)")
    ap.add_argument("--data-dir", default=None, help="MNIST IDX folder (default: $KERAS_KARE_DATA/mnist)")
    ap.add_argument("--json", default=str(HERE / "results" / "mnist_seed.json"), help="output JSON file")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))

    from keras_kare import predictor as P
    from keras_kare.datasets import load_mnist_7v9
    from keras_kare.reproduce import experiments as E
    from keras_kare.reproduce import runner

    times = collections.defaultdict(float)

    def timed(owner, name, key):
        original = getattr(owner, name)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                times[key] += time.perf_counter() - t0

        setattr(owner, name, wrapper)

    for name in PHASES:
        timed(runner, name, name)
    timed(P.KernelPredictor, "_gram", "grams")

    s = E.make_settings("mnist", data_dir=args.data_dir)
    x_tr, y_tr, x_te, y_te, info = load_mnist_7v9(s["n_train"], s["n_test"], args.seed, s["data_dir"])
    startup = time.time() - T_PROCESS
    load = f"{_uptime()}"
    print(f"start-up (imports, TensorFlow, data): {startup:.1f}s; {info['note']}", flush=True)
    print(f"load at start: {load}", flush=True)
    pool = runner.TrainerPool()
    records = []
    for depth, width in _networks(args.networks):
        cfg = E._cfg(E.resolve_network_settings(dict(s, depth=depth, width=width)))
        times.clear()
        t0 = time.perf_counter()
        rows = runner.run_seed(
            x_tr, y_tr, x_te, y_te, args.seed, cfg, log=lambda m: None, classification=True, pool=pool
        )
        wall = time.perf_counter() - t0
        best = {m: min(r["test_mse"] for r in rows if r["method"] == m) for m in ("kare", "after_kernel", "dnn")}
        rec = {
            "depth": depth,
            "width": width,
            "seed_wall_s": wall,
            "kare_steps_s": times["train_kare"],
            "dnn_steps_s": times["train_dnn"],
            "grams_s": times["grams"],
            "solves_s": times["krr_path"] - times["grams"],
            "best_test_mse": best,
        }
        records.append(rec)
        print(
            f"depth {depth} width {width}: seed {wall:.1f}s | KARE steps {rec['kare_steps_s']:.1f}s | DNN steps "
            f"{rec['dnn_steps_s']:.1f}s | Grams {rec['grams_s']:.1f}s | solves {rec['solves_s']:.1f}s | best test MSE "
            + " / ".join(f"{best[m]:.4f}" for m in best),
            flush=True,
        )
    total = time.time() - T_PROCESS
    lines = [
        "| network | seed wall (s) | KARE steps (s) | DNN steps (s, concurrent) | Grams (s) | solves (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['depth']}×{r['width']} | {r['seed_wall_s']:.1f} | {r['kare_steps_s']:.1f} | {r['dnn_steps_s']:.1f} "
            f"| {r['grams_s']:.1f} | {r['solves_s']:.1f} |"
        )
    print("\n".join(lines))
    print(f"start-up {startup:.1f}s; process total {total:.1f}s; load at end: {_uptime()}")
    result = {
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "uptime_start": load,
        "uptime_end": _uptime(),
        "seed": args.seed,
        "startup_s": startup,
        "process_total_s": total,
        "data": info["note"],
        "networks": records,
        "note": "the first network's seed includes tracing/compilation; DNN steps run in a second thread "
        "concurrently with the KARE steps",
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
