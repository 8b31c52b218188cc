"""End-to-end training speed: ``fit()`` wall time against its steps, and the reproduction commands.

Workloads (float32, random data of the stated shapes):

  kare-152   KAREModel, MLP 13-128-128-5 GELU, kernel="summed_output", n = 152, full batch
  kare-800   KAREModel, the Figure 1 network 10-64-1 GELU, n = 800, full batch
  dnn-full   the reproduction's DNN runner (runner.train_dnn), 10-64-1, MSE, n = 800, full batch,
             --dnn-full-passes SGD steps
  dnn-b32    the same runner, 13-128-128-5, n = 152, batch 32 (5 batches per pass), --dnn-b32-passes passes

For each, in one process: the steady-state step (``--calls`` back-to-back
direct calls of the compiled train function on a ready iterator, or
back-to-back calls of train_dnn's compiled loop of passes covering about
``--calls`` × 100 SGD steps, after warm-up; per SGD step) and the
wall time of the user's call (KAREModel.fit for ``--epochs`` epochs;
train_dnn for the passes given), excluding tracing (a warm-up call runs
first); the ratio is that wall time / (SGD steps × step). Step and fit are
measured alternately ``--repeats`` times (shared machines drift); the table
gives medians and the range of the ratio.
``kare-*`` also time Keras' own array path (``keras.Model.fit`` on the arrays,
bypassing keras_kare's pipeline) for comparison.

``--e2e`` also times whole commands in fresh processes (start-up included):
``keras-kare reproduce synthetic`` (paper settings) for ``--seeds`` and, with
``--uci-dir``, ``keras-kare reproduce uci --depths 1,2 --widths 128`` on
``--uci-dataset``.

    python benchmarks/bench_fit.py --out benchmarks/results/fit.json
    python benchmarks/bench_fit.py --e2e --seeds 0,1 --uci-dir DATA/uci-dev --uci-dataset statlog-heart

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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_kare  # noqa: E402
from keras_kare import in_memory  # noqa: E402
from keras_kare.reproduce import build_mlp, runner  # noqa: E402

WORKLOADS = {
    "kare-152": dict(kind="kare", n=152, d=13, depth=2, width=128, outputs=5, batch=None),
    "kare-800": dict(kind="kare", n=800, d=10, depth=1, width=64, outputs=1, batch=None),
    "dnn-full": dict(kind="dnn", n=800, d=10, depth=1, width=64, outputs=1, batch=None),
    "dnn-b32": dict(kind="dnn", n=152, d=13, depth=2, width=128, outputs=5, batch=32),
}


def _data(w):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(w["n"], w["d"])).astype("float32")
    y = np.tanh(x @ rng.normal(size=(w["d"], w["outputs"]))).astype("float32")
    return x, y


def _step_seconds(model, x, y, batch, calls: int, spe: int = 1) -> float:
    """Seconds per SGD step of ``calls`` back-to-back compiled train-function calls (``spe`` steps each).

    A block mean, like the fit it is compared with (a median of single calls
    would leave out the host's hiccups that a fit of the same length sees).
    """
    dataset, _ = in_memory.epoch_dataset(x, y, batch_size=batch, shuffle=False)
    iterator = iter(dataset)
    model.make_train_function()
    key = None
    for i in range(calls + 3):
        if i == 3:
            t = time.perf_counter()
        logs = model.train_function(iterator)
        key = key or next(iter(logs))
    float(keras.ops.convert_to_numpy(logs[key]))  # wait for the last step
    return (time.perf_counter() - t) / (calls * spe)


def _repeated(measure, repeats: int) -> dict:
    """``measure()`` -> dict of numbers, ``repeats`` times; medians, plus the spread of the ratios."""
    runs = [measure() for _ in range(repeats)]
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["ratio_min"], out["ratio_max"] = min(r["ratio"] for r in runs), max(r["ratio"] for r in runs)
    out["repeats"] = repeats
    return out


def bench_kare(w, epochs: int, calls: int, repeats: int) -> dict:
    x, y = _data(w)
    n = w["n"]
    model = keras_kare.KAREModel(
        build_mlp(w["d"], w["depth"], w["width"], w["outputs"], seed=0), ridge=0.1, kernel="summed_output"
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    model.fit(x, y, batch_size=n, epochs=1, verbose=0)  # traces the step
    keras.Model.fit(model, x, y, batch_size=n, epochs=1, verbose=0)  # warms Keras' own array path

    def measure():
        step = _step_seconds(model, x, y, n, calls)
        t = time.perf_counter()
        model.fit(x, y, batch_size=n, epochs=epochs, verbose=0)
        fit = time.perf_counter() - t
        t = time.perf_counter()
        keras.Model.fit(model, x, y, batch_size=n, epochs=epochs, verbose=0, shuffle=False)
        keras_fit = time.perf_counter() - t
        return {
            "step_ms": 1e3 * step,
            "fit_s": fit,
            "ratio": fit / (epochs * step),
            "keras_array_fit_s": keras_fit,
            "keras_array_ratio": keras_fit / (epochs * step),
        }

    return _repeated(measure, repeats)


def bench_dnn(w, passes: int, calls: int, repeats: int) -> dict:
    x, y = _data(w)
    n, batch = w["n"], w["batch"]
    pool = runner.TrainerPool()
    quiet = lambda msg: None  # noqa: E731

    def net():
        return build_mlp(w["d"], w["depth"], w["width"], w["outputs"], seed=0)

    runner.train_dnn(net(), x, y, 0.01, passes, batch, quiet, pool=pool)  # traces
    per_pass = -(-n // (batch or n))
    sgd_steps = passes * per_pass
    (entry,) = pool._entries.values()  # the compiled loop train_dnn runs (one pooled network)
    loop = entry["loop"]
    ppc = loop.passes_per_call
    spe = ppc * per_pass  # SGD steps per compiled call
    xt, yt = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)

    loop_calls = max(3, calls * 100 // spe)  # about calls × 100 SGD steps, as the KARE workloads' calls

    def loop_seconds():
        """Seconds per SGD step of back-to-back calls of the compiled loop (``spe`` steps each)."""
        loop(xt, yt, 0, 0, ppc)
        t = time.perf_counter()
        for _ in range(loop_calls):
            loop(xt, yt, 0, 0, ppc)
        return (time.perf_counter() - t) / (loop_calls * spe)

    def measure():
        step = loop_seconds()
        fresh = net()  # building the network is not training it
        t = time.perf_counter()
        runner.train_dnn(fresh, x, y, 0.01, passes, batch, quiet, pool=pool)
        fit = time.perf_counter() - t
        return {"step_ms": 1e3 * step, "fit_s": fit, "ratio": fit / (sgd_steps * step)}

    return {**_repeated(measure, repeats), "passes": passes, "sgd_steps": sgd_steps, "steps_per_call": spe}


def _run(cmd: list[str]) -> float:
    t = time.perf_counter()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def bench_e2e(seeds: str, uci_dir, uci_dataset: str) -> dict:
    out = {}
    cli = [sys.executable, "-m", "keras_kare", "reproduce"]
    with tempfile.TemporaryDirectory() as tmp:
        n_seeds = len(seeds.split(","))
        secs = _run(cli + ["synthetic", "--seeds", seeds, "--out", f"{tmp}/syn"])
        per_seed = [json.loads(p.read_text())["seconds"] for p in sorted(Path(tmp, "syn", "runs").glob("*.json"))]
        out["synthetic"] = {"seeds": seeds, "wall_s": secs, "per_seed_s": per_seed, "wall_per_seed_s": secs / n_seeds}
        if uci_dir:
            secs = _run(
                cli
                + [
                    "uci",
                    "--data-dir",
                    str(uci_dir),
                    "--datasets",
                    uci_dataset,
                    "--depths",
                    "1,2",
                    "--widths",
                    "128",
                    "--out",
                    f"{tmp}/uci",
                ]
            )
            acc = json.loads(Path(tmp, "uci", "runs", f"{uci_dataset}.json").read_text())["accuracy"]
            out["uci"] = {"dataset": uci_dataset, "wall_s": secs, "trainings": 16, "accuracy": acc}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5, help="alternating step/fit measurements; medians are reported")
    p.add_argument("--dnn-full-passes", type=int, default=2000, help="dnn-full: SGD steps (= passes)")
    p.add_argument("--dnn-b32-passes", type=int, default=400, help="dnn-b32: passes of 5 batches (UCI default)")
    p.add_argument("--e2e", action="store_true", help="also time the reproduction commands end to end")
    p.add_argument("--seeds", default="0")
    p.add_argument("--uci-dir", default=None)
    p.add_argument("--uci-dataset", default="statlog-heart")
    p.add_argument("--out", default="benchmarks/results/fit.json")
    a = p.parse_args(argv)
    a.dnn_passes = {"dnn-full": a.dnn_full_passes, "dnn-b32": a.dnn_b32_passes}
    results = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "keras": keras.__version__,
        },
        "workloads": {},
    }
    rows = [
        "| workload | step (ms) | fit (s): KARE {e} epochs, DNN as set | fit / steps (min–max) | "
        "Keras array fit / steps |".format(e=a.epochs),
        "|---|---|---|---|---|",
    ]
    for name in a.workloads.split(","):
        w = WORKLOADS[name]
        r = (
            bench_kare(w, a.epochs, a.calls, a.repeats)
            if w["kind"] == "kare"
            else bench_dnn(w, a.dnn_passes[name], a.calls, a.repeats)
        )
        results["workloads"][name] = r
        keras_col = f"{r['keras_array_ratio']:.2f}x" if "keras_array_ratio" in r else "–"
        rows.append(
            f"| {name} | {r['step_ms']:.2f} | {r['fit_s']:.2f} | {r['ratio']:.2f}x "
            f"({r['ratio_min']:.2f}–{r['ratio_max']:.2f}) | {keras_col} |"
        )
        print(rows[-1], flush=True)
    if a.e2e:
        results["e2e"] = bench_e2e(a.seeds, a.uci_dir, a.uci_dataset)
        e = results["e2e"]
        rows += [
            "",
            "| command | wall (s) | note |",
            "|---|---|---|",
            f"| reproduce synthetic --seeds {a.seeds} | {e['synthetic']['wall_s']:.1f} | "
            f"per seed (in-process): {', '.join(f'{s:.1f}' for s in e['synthetic']['per_seed_s'])} s |",
        ]
        if "uci" in e:
            rows.append(
                f"| reproduce uci --depths 1,2 --widths 128 ({a.uci_dataset}) | {e['uci']['wall_s']:.1f} | "
                "16 trainings |"
            )
    table = "\n".join(rows)
    print("\n" + table)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
