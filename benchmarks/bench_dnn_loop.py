"""Does the reproduction's own compiled DNN loop earn its place? Whole runs with it and with Keras' ``fit``.

``keras_kare.reproduce.runner.train_dnn`` trains the MSE baseline through
``keras_kare.reproduce.compiled_passes.CompiledPasses`` (every pass of a training in a few XLA-compiled
calls of the network's own ``train_step``). The alternative is the public
path any Keras user has: ``keras_kare.fit_in_memory`` (one pipeline per fit)
on a model compiled with ``steps_per_execution`` = batches per pass and Keras'
default ``jit_compile``, the same batches (stateless per-pass shuffles) and the
same pooled, re-initialised model. A fast loop of its own is kept only if it
buys more than 10 % of a run's wall time.

Each measurement is a fresh process running a reproduction command in
process, ``--loop compiled`` (the shipped code) or ``--loop keras`` (the
runner's ``train_dnn`` replaced by the Keras path); the driver alternates the
two ``--rounds`` times (shared machines drift) and reports medians:

  uci        ``reproduce uci`` on ``--uci-datasets`` with the reduced grid
             (depth 1, width 128, KARE lr 10,1, DNN lr 0.1,0.01), validated
             protocol, ``--recipes none``, no baselines: DNN batch 32, 400 passes
  synthetic  ``reproduce synthetic`` (one Figure 1 panel) on ``--seeds``: the
             full-batch DNN trains in a second thread beside NTK-KARE

    python benchmarks/bench_dnn_loop.py --uci-dir DATA/uci-dev --out benchmarks/results/dnn_loop.json

Prints a markdown table and writes JSON. Never run alongside other jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UCI_DATASETS = "fertility,hepatitis,statlog-heart,ecoli,dermatology,breast-cancer-wisc-diag"


def _keras_train_dnn(runner):
    """``train_dnn`` on Keras' own ``fit`` (same batches, pooled model); early stopping is not needed here."""
    import math

    import keras

    from keras_kare import fit_in_memory

    def train_dnn(net, x, y, lr, steps, batch_size=None, log=None, label="dnn", pool=None, seed=None, **kw):
        if kw.get("monitor") is not None:
            raise NotImplementedError("the Keras-loop variant does not early-stop (run with --recipes none)")
        n = len(x)
        bs = runner._batch(n, batch_size)
        per_pass = math.ceil(n / bs)

        def build(network):
            network.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse", steps_per_execution=per_pass)
            return {"model": network}

        key = ("dnn-keras", runner._architecture(net), n, bs)
        model = (pool.get(key, net, build, lr) if pool is not None else build(net))["model"]
        t0 = time.time()
        history = fit_in_memory(
            model,
            x,
            y,
            batch_size=bs,
            epochs=steps,
            shuffle=bs < n,
            verbose=0,
            callbacks=[keras.callbacks.TerminateOnNaN()],
        )
        del seed  # fit_in_memory draws the per-pass orders itself
        losses = history.history.get("loss") or [float("nan")]
        finite = math.isfinite(losses[-1])
        return model, {
            "train_seconds": time.time() - t0,
            "final_loss": losses[-1],
            "stopped_at": None if finite else len(losses) * per_pass,
            "batch_size": bs,
            "best_step": None,
        }

    return train_dnn


def _measure(args) -> dict:
    """One fresh-process measurement: the command's wall time with the chosen loop."""
    from keras_kare import cli
    from keras_kare.reproduce import runner

    if args.loop == "keras":
        runner.train_dnn = _keras_train_dnn(runner)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.uci_dir:
            cmd = ["reproduce", "uci", "--data-dir", args.uci_dir, "--datasets", args.uci_datasets]
            cmd += ["--depths", "1", "--widths", "128", "--kare-lrs", "10,1", "--dnn-lrs", "0.1,0.01"]
            cmd += ["--protocol", "validated", "--recipes", "none", "--out", f"{tmp}/uci"]
            t = time.perf_counter()
            assert cli.main(cmd) == 0
            out["uci_s"] = time.perf_counter() - t
            summary = json.loads(Path(tmp, "uci", "summary.json").read_text())["validated"]
            out["uci_mean_accuracy"] = {m: summary[m]["mean_accuracy"] for m in ("dnn", "after_kernel", "kare")}
        t = time.perf_counter()
        assert cli.main(["reproduce", "synthetic", "--seeds", args.seeds, "--out", f"{tmp}/syn"]) == 0
        out["synthetic_s"] = time.perf_counter() - t
        runs = sorted(Path(tmp, "syn", "runs").glob("*.json"))
        out["synthetic_seed_seconds"] = [json.loads(p.read_text())["seconds"] for p in runs]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--uci-dir", default=None, help="uci-dev folder (omit: synthetic only)")
    p.add_argument("--uci-datasets", default=UCI_DATASETS)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rounds", type=int, default=2, help="alternating compiled/keras measurements")
    p.add_argument("--out", default="benchmarks/results/dnn_loop.json")
    p.add_argument("--loop", choices=("compiled", "keras"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.loop is not None:  # one measurement, in this fresh process
        Path(args.result).write_text(json.dumps(_measure(args)))
        return
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    results: dict = {"compiled": [], "keras": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for loop in ("compiled", "keras") if r % 2 == 0 else ("keras", "compiled"):
                result = Path(tmp, f"{loop}-{r}.json")
                cmd = [sys.executable, __file__, "--loop", loop, "--result", str(result), "--seeds", args.seeds]
                cmd += ["--uci-datasets", args.uci_datasets] + (["--uci-dir", args.uci_dir] if args.uci_dir else [])
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                results[loop].append(json.loads(result.read_text()))
                last = results[loop][-1]
                print(f"round {r} {loop}: " + ", ".join(f"{k}={v:.1f}" for k, v in last.items() if k.endswith("_s")))
                if "uci_mean_accuracy" in last:
                    print("  uci validated mean accuracy: " + str(last["uci_mean_accuracy"]))
    keys = [k for k in ("uci_s", "synthetic_s") if k in results["compiled"][0]]
    med = {loop: {k: statistics.median(m[k] for m in results[loop]) for k in keys} for loop in results}
    print("\n| command | compiled loop (s) | Keras fit (s) | Keras / compiled |")
    print("|---|---|---|---|")
    for k in keys:
        a, b = med["compiled"][k], med["keras"][k]
        print(f"| {k[:-2]} | {a:.1f} | {b:.1f} | {b / a:.2f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"machine": platform.processor() or platform.machine(), "medians": med, "runs": results}, indent=1)
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
