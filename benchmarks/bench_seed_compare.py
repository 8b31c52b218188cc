"""Interleaved per-seed comparison of the Figure 1 reproduction: this tree vs a git revision, in one process.

Both arms run ``reproduce.runner.run_seed`` with the paper's synthetic settings
(γ = 1, σ = 0, n = 800 + 200, 10-64-1 GELU, KARE 100 steps at lr 100, DNN
10 000 steps at lr 0.1, the 11-ridge grid), each with its own ``TrainerPool``
(compiled models reused across seeds, as ``keras-kare reproduce synthetic``
does). For every seed the arms run one after the other, alternating which goes
first, so the shared machine's drift affects both alike. Per seed and arm it
prints the wall time of the seed and of its phases (KARE training, the two
kernel ridge paths, DNN training) and the best test MSE per method; then the
medians and ranges over the seeds after the first (the first includes
tracing and compilation).

Usage:
  python benchmarks/bench_seed_compare.py --rev main --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import collections
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHASES = ("train_kare", "krr_path", "train_dnn")


def _timed(runner) -> dict:
    """Wrap the runner's phase functions to add their wall time to the returned dict (cleared per seed)."""
    times = collections.defaultdict(float)
    for name in PHASES:
        original = getattr(runner, name)

        def timed(*args, _original=original, _name=name, **kwargs):
            t0 = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                times[_name] += time.perf_counter() - t0

        setattr(runner, name, timed)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", required=True, help="git revision of the other arm")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    from bench_step_compare import _import_revision

    from keras_kare.datasets import make_single_index
    from keras_kare.reproduce import runner
    from keras_kare.reproduce.experiments import SYNTHETIC_DEFAULTS, _cfg

    cfg = _cfg(dict(SYNTHETIC_DEFAULTS))
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rev = _import_revision(args.rev, tmp)
        rev_runner = importlib.import_module(rev.__name__ + ".reproduce.runner")
        arms = {
            "work": (runner, _timed(runner), runner.TrainerPool()),
            f"rev {args.rev}": (rev_runner, _timed(rev_runner), rev_runner.TrainerPool()),
        }
        summary = collections.defaultdict(list)
        for i, seed in enumerate(seeds):
            x_tr, y_tr, x_te, y_te = make_single_index(1.0, 0.0, n=1000, d=10, n_train=800, seed=seed)
            names = list(arms) if i % 2 == 0 else list(arms)[::-1]
            for name in names:
                module, times, pool = arms[name]
                times.clear()
                t0 = time.perf_counter()
                rows = module.run_seed(x_tr, y_tr, x_te, y_te, seed, cfg, log=lambda msg: None, pool=pool)
                total = time.perf_counter() - t0
                best = {
                    m: min(r["test_mse"] for r in rows if r["method"] == m) for m in ("kare", "after_kernel", "dnn")
                }
                print(
                    f"seed {seed} {name}: {total:.2f} s (KARE {times['train_kare']:.2f}, kernel ridge "
                    f"{times['krr_path']:.2f}, DNN {times['train_dnn']:.2f}) | best test MSE KARE {best['kare']:.6g}, "
                    f"after-kernel {best['after_kernel']:.6g}, DNN {best['dnn']:.6g} | load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                if i > 0:
                    summary[name, "seed"].append(total)
                    for phase in PHASES:
                        summary[name, phase].append(times[phase])
    print("\nseeds after the first: median (min-max), s")
    for (name, what), values in summary.items():
        print(f"{name:>16} {what:>10}: {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
