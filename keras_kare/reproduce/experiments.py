"""Drivers of the paper's experiments (Schwab, Kelly, Malamud, Xu 2025).

Each driver takes a settings dict (defaults below = the paper's settings,
``QUICK_*`` = a few-minute version), writes into a run folder (see
:mod:`keras_kare.reproduce.results`) and returns the summary dict.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from keras_kare.reproduce import results as R
from keras_kare.reproduce.eta import ETA
from keras_kare.reproduce.runner import TrainerPool, run_seed
from keras_kare.reproduce.scoring import score_table

logger = logging.getLogger("keras_kare.reproduce")

SYNTHETIC_DEFAULTS = dict(
    gamma=1.0, sigma=0.0, n=1000, n_train=800, d=10, depth=1, width=64, kare_ridge=0.1, kare_lr=100.0,
    kare_steps=100, dnn_lr=0.1, dnn_steps=10000, ridges=[10.0**k for k in range(-5, 6)], seeds=list(range(10)),
    batch_size=None, kernel="summed_output", protocol="paper", validation_fraction=None,
)
SYNTHETIC_QUICK = dict(seeds=[0], kare_steps=30, dnn_steps=2000)

MNIST_DEFAULTS = dict(
    depth=4, width=128, n_train=1000, n_test=1000, kare_ridge=0.1, kare_lr=None, kare_steps=300, dnn_lr=0.1,
    dnn_steps=10000, ridges=[10.0**k for k in range(-3, 4)], seeds=list(range(10)), batch_size=None,
    kernel="summed_output", data_dir=None, protocol="paper", validation_fraction=None,
)
MNIST_QUICK = dict(seeds=[0], n_train=300, n_test=300, kare_steps=30, dnn_steps=1000)

UCI_DEFAULTS = dict(
    depths=[1, 2, 3, 4, 5], widths=[32, 64, 128, 256, 512], kare_lrs=None, dnn_lrs=[0.1, 0.01, 0.001, 0.0001],
    kare_ridge=0.1, kare_steps=300, dnn_steps=400, dnn_batch_size=32, ridges=[10.0**k for k in range(-4, 5)],
    datasets=None, data_dir=None, seed=0, kernel="summed_output",
)
UCI_QUICK = dict(depths=[1], widths=[32], kare_lrs=[10.0], dnn_lrs=[0.1], kare_steps=20, dnn_steps=20)

# the paper's lr grid for KARE on UCI (authors' code), by depth
UCI_KARE_LRS = {1: [100.0, 10.0, 1.0, 0.1], 2: [100.0, 10.0, 1.0, 0.1], 3: [10.0, 5.0, 1.0, 0.1],
                4: [10.0, 5.0, 1.0, 0.1], 5: [10.0, 5.0, 1.0, 0.1]}

# Best test MSE read from the paper's figures (mean over 10 seeds), shared/notes/paper-results.md
PAPER_SYNTHETIC = {
    (1.0, 0.0): (0.032, 0.109, 0.140), (1.25, 0.0): (0.127, 0.161, 0.217), (1.5, 0.0): (0.166, 0.194, 0.327),
    (1.0, 0.1): (0.062, 0.123, 0.156), (1.25, 0.1): (0.146, 0.168, 0.226), (1.5, 0.1): (0.177, 0.208, 0.409),
}
PAPER_MNIST = {
    (2, 32): (0.095, 0.102, 0.110), (2, 64): (0.101, 0.098, 0.102), (2, 128): (0.100, 0.106, 0.115),
    (4, 32): (0.113, 0.148, 0.157), (4, 64): (0.115, 0.147, 0.153), (4, 128): (0.109, 0.135, 0.139),
}


def mnist_kare_lr(depth: int) -> float:
    """Paper: SGD lr 10 for depth 2, 1 for depth 4 (10 up to depth 2, 1 beyond)."""
    return 10.0 if depth <= 2 else 1.0


def _paper_dict(values) -> Optional[dict]:
    if values is None:
        return None
    return dict(zip(("kare", "after_kernel", "dnn"), values))


def _run_seeds(out: Path, settings: dict, load: Callable[[int], tuple], cfg: dict, log, classification: bool):
    rows = []
    pool = TrainerPool()  # one compiled KARE and DNN model for all seeds (same architecture)
    eta = ETA(len(settings["seeds"]))
    for k, seed in enumerate(settings["seeds"]):
        key = f"seed_{seed}"
        done = R.load_unit(out, key)
        if done is not None:
            eta.skip()
            log(f"[seed {seed}] already done in {R.unit_path(out, key)}, skipped ({k + 1}/{len(settings['seeds'])})")
            rows += done["rows"]
            continue
        log(f"[seed {seed}] start ({k + 1}/{len(settings['seeds'])})")
        t0 = time.time()
        x_tr, y_tr, x_te, y_te = load(seed)
        seed_rows = run_seed(x_tr, y_tr, x_te, y_te, seed, cfg, log=log, classification=classification, pool=pool)
        seconds = time.time() - t0
        R.save_unit(out, key, {"seed": seed, "seconds": seconds, "rows": seed_rows})
        log(f"[seed {seed}] done in {seconds:.1f}s ({eta.done(seconds)})")
        rows += seed_rows
    return rows


def _quick_note(s: dict, log):
    if s.get("quick"):
        log("--quick: a smoke run with fewer seeds and steps than the paper. Its numbers are NOT evidence for or "
            "against the paper's claim (one easy seed can favour any method); run without --quick for that.")


def _finish(out: Path, rows, settings, paper, title, log, extra=None):
    R.write_rows(out, rows)
    summary = R.write_summary(out, rows, settings, extra)
    if paper:
        summary["paper"] = paper
        R.write_json(out / "summary.json", summary)
    table = R.markdown_table(summary, paper, title)
    (out / "table.md").write_text(table)
    png = R.plot(out / "test_mse_vs_ridge.png", summary, title)
    log("results:\n" + table)
    log(f"wrote {out / 'results.csv'}, {out / 'results.json'}, {out / 'summary.json'}, {out / 'table.md'}"
        + (f", {png}" if png else ""))
    return summary


def _cfg(s: dict) -> dict:
    cfg = {k: s[k] for k in ("depth", "width", "kare_ridge", "kare_lr", "kare_steps", "dnn_lr", "dnn_steps",
                             "ridges", "batch_size", "kernel")}
    validated = s.get("protocol", "paper") == "validated"
    cfg["validation_fraction"] = (s.get("validation_fraction") or 0.2) if validated else 0.0
    return cfg


def run_synthetic(settings: dict, out: Path, resume: bool = False, log=logger.info) -> dict:
    """Figure 1: single-index regression; three methods per seed."""
    from keras_kare.datasets import make_single_index

    out = R.prepare_run_dir(out, settings, resume)
    s = settings
    _quick_note(s, log)

    def load(seed):
        return make_single_index(s["gamma"], s["sigma"], n=s["n"], d=s["d"], n_train=s["n_train"], seed=seed)

    log(f"synthetic: gamma={s['gamma']} sigma={s['sigma']}, {s['n_train']}/{s['n'] - s['n_train']} train/test, "
        f"seeds {s['seeds']}, MLP depth {s['depth']} width {s['width']}, KARE z={s['kare_ridge']} lr={s['kare_lr']} "
        f"x{s['kare_steps']} steps, DNN lr={s['dnn_lr']} x{s['dnn_steps']} steps")
    rows = _run_seeds(out, s, load, _cfg(s), log, classification=False)
    paper = _paper_dict(PAPER_SYNTHETIC.get((float(s["gamma"]), float(s["sigma"]))))
    title = f"synthetic γ={s['gamma']:g}, σ={s['sigma']:g} ({len(s['seeds'])} seeds)"
    return _finish(out, rows, settings, paper, title, log)


def run_mnist(settings: dict, out: Path, resume: bool = False, log=logger.info) -> dict:
    """Figure 2: MNIST 7 vs 9; three methods per seed."""
    from keras_kare.datasets import load_mnist_7v9

    s = dict(settings)
    if s["kare_lr"] is None:
        s["kare_lr"] = mnist_kare_lr(s["depth"])
    # fail on bad data before creating the run folder
    probe = load_mnist_7v9(n_train=s["n_train"], n_test=s["n_test"], seed=s["seeds"][0], data_dir=s["data_dir"])
    info = probe[4]
    out = R.prepare_run_dir(out, s, resume)
    _quick_note(s, log)
    log(f"mnist 7 vs 9: data from {info['source']}; {info['note']}")
    log(f"mnist: {s['n_train']}/{s['n_test']} train/test, seeds {s['seeds']}, MLP depth {s['depth']} width "
        f"{s['width']}, KARE z={s['kare_ridge']} lr={s['kare_lr']} x{s['kare_steps']} steps, DNN lr={s['dnn_lr']} "
        f"x{s['dnn_steps']} steps")

    def load(seed):
        return load_mnist_7v9(n_train=s["n_train"], n_test=s["n_test"], seed=seed, data_dir=s["data_dir"])[:4]

    rows = _run_seeds(out, s, load, _cfg(s), log, classification=True)
    paper = _paper_dict(PAPER_MNIST.get((int(s["depth"]), int(s["width"]))))
    title = f"MNIST 7 vs 9, depth {s['depth']} width {s['width']} ({len(s['seeds'])} seeds)"
    return _finish(out, rows, s, paper, title, log, extra={"data": info})


# ----------------------------------------------------------------------- UCI
def _uci_configs(s: dict):
    for depth in s["depths"]:
        for width in s["widths"]:
            for lr in (s["kare_lrs"] or UCI_KARE_LRS.get(depth, UCI_KARE_LRS[5])):
                yield "kare", depth, width, lr
            for lr in s["dnn_lrs"]:
                yield "dnn", depth, width, lr


def run_uci_dataset(data_dir, name: str, s: dict, log=logger.info) -> dict:
    """All configurations on one data set (paper protocol: train on conxuntos.dat's first line, test on its second).

    Returns per-configuration records and per-method accuracies: ``best`` (max
    over configurations and ridges, i.e. picked on the test split as in the
    paper) and, for the kernel methods, ``selected`` (configuration and ridge
    with the smallest training KARE).
    """
    import keras

    from keras_kare.datasets.uci import load_uci, uci_split
    from keras_kare.reproduce.initializers import build_mlp
    from keras_kare.reproduce.runner import krr_path, score, train_dnn, train_kare

    ds = load_uci(data_dir, name)
    x_tr, y_tr, x_te, y_te, _ = uci_split(ds)
    y_fit = y_tr if y_tr.ndim > 1 else y_tr[:, None]
    outputs = y_fit.shape[1]
    records = []
    quiet = lambda msg: None  # noqa: E731  (per-config training logs would drown the per-data-set log)
    pool = TrainerPool()  # configurations of one architecture share their compiled steps
    for method, depth, width, lr in _uci_configs(s):
        keras.utils.set_random_seed(s["seed"])
        net = build_mlp(x_tr.shape[1], depth, width, outputs, seed=s["seed"])
        if method == "kare":
            model, info = train_kare(net, x_tr, y_fit, s["kare_ridge"], lr, s["kare_steps"], None, quiet,
                                     kernel=s["kernel"], pool=pool)
            res = krr_path(model, x_tr, y_tr, x_te, y_te, s["ridges"], s["kernel"])
            records.append({"method": "kare", "depth": depth, "width": width, "lr": lr,
                            "accuracy": res["test_accuracy"].tolist(), "kare": res["kare"].tolist(),
                            "stopped_at": info["stopped_at"]})
        else:
            bs = len(x_tr) if len(x_tr) <= s["dnn_batch_size"] else s["dnn_batch_size"]
            net, info = train_dnn(net, x_tr, y_fit, lr, s["dnn_steps"], bs, quiet, pool=pool)
            pred = net.predict(x_te, batch_size=4096, verbose=0)
            _, acc = score(pred if y_te.ndim > 1 else pred[:, 0], y_te)
            records.append({"method": "dnn", "depth": depth, "width": width, "lr": lr, "accuracy": acc,
                            "stopped_at": info["stopped_at"]})
            res = krr_path(net, x_tr, y_tr, x_te, y_te, s["ridges"], s["kernel"])
            records.append({"method": "after_kernel", "depth": depth, "width": width, "lr": lr,
                            "accuracy": res["test_accuracy"].tolist(), "kare": res["kare"].tolist()})
    acc = {}
    for method in ("kare", "after_kernel"):
        recs = [r for r in records if r["method"] == method]
        a = np.array([r["accuracy"] for r in recs], dtype=np.float64)
        k = np.array([[np.inf if v is None or not np.isfinite(v) else v for v in r["kare"]] for r in recs])
        i, j = np.unravel_index(np.argmin(k), k.shape)
        acc[method] = {"best": float(a.max()), "selected": float(a[i, j]),
                       "selected_config": {"depth": recs[i]["depth"], "width": recs[i]["width"], "lr": recs[i]["lr"],
                                           "ridge": s["ridges"][j]}}
    acc["dnn"] = {"best": float(max(r["accuracy"] for r in records if r["method"] == "dnn"))}
    return {"dataset": name, "n_train": int(len(x_tr)), "n_test": int(len(x_te)), "n_classes": ds.n_classes,
            "n_features": int(x_tr.shape[1]), "accuracy": acc, "configs": records}


def run_uci(settings: dict, out: Path, resume: bool = False, log=logger.info) -> dict:
    """Table 1: every requested data set, resumable (one ``runs/<name>.json`` per data set)."""
    from keras_kare.datasets.errors import DatasetError
    from keras_kare.datasets.uci import list_uci_datasets, load_uci

    s = settings
    available = list_uci_datasets(s["data_dir"])
    names = available if not s["datasets"] else list(s["datasets"])
    unknown = [n for n in names if n not in available]
    if unknown:
        raise DatasetError(
            f"{s['data_dir']}: unknown UCI data set(s) {', '.join(unknown)} (no <name>/<name>_R.dat there; "
            f"{len(available)} available, e.g. {', '.join(available[:5])})."
        )
    for name in names:  # validate every table before any training, so bad files fail fast
        load_uci(s["data_dir"], name)
    out = R.prepare_run_dir(out, s, resume)
    _quick_note(s, log)
    n_configs = len(list(_uci_configs(s)))
    log(f"uci: {len(names)} data sets from {s['data_dir']}, {n_configs} trainings each "
        f"(depths {s['depths']}, widths {s['widths']}), ridge grid {s['ridges']}")
    per = []
    for k, name in enumerate(names):
        done = R.load_unit(out, name)
        if done is None:
            t0 = time.time()
            done = run_uci_dataset(s["data_dir"], name, s, log)
            done["seconds"] = time.time() - t0
            R.save_unit(out, name, done)
            a = done["accuracy"]
            log(f"[{k + 1}/{len(names)}] {name}: accuracy NTK-KARE {a['kare']['best']:.3f} "
                f"(KARE-picked {a['kare']['selected']:.3f}), after-kernel {a['after_kernel']['best']:.3f}, "
                f"DNN {a['dnn']['best']:.3f} ({done['seconds']:.0f}s)")
        else:
            log(f"[{k + 1}/{len(names)}] {name}: already done, skipped")
        per.append(done)
    methods = ["kare", "after_kernel", "dnn"]
    best = np.array([[d["accuracy"][m]["best"] for m in methods] for d in per])
    scores = score_table(best, methods)
    sel_methods = ["kare", "after_kernel"]
    selected = score_table(np.array([[d["accuracy"][m]["selected"] for m in sel_methods] for d in per]), sel_methods)
    summary = {m: scores[m] for m in methods}
    summary["selected_by_kare"] = {m: selected[m] for m in sel_methods}
    summary["n_datasets"] = scores["n_datasets"]
    summary["settings"] = s
    R.write_json(out / "summary.json", summary)
    rows = [{"dataset": d["dataset"], **{f"{m}_best": d["accuracy"][m]["best"] for m in methods},
             "kare_selected": d["accuracy"]["kare"]["selected"],
             "after_kernel_selected": d["accuracy"]["after_kernel"]["selected"]} for d in per]
    R.write_json(out / "results.json", rows)
    import csv

    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| method | Friedman rank | mean accuracy (%) | P90 | P95 | PMA (%) |", "|---|---|---|---|---|---|"]
    for m in methods:
        v = scores[m]
        lines.append(f"| {R.METHOD_LABELS[m]} | {v['friedman_rank']:.2f} | {v['mean_accuracy']:.2f} ± "
                     f"{v['std_accuracy']:.2f} | {v['p90']:.1f} | {v['p95']:.1f} | {v['pma']:.2f} ± {v['pma_std']:.2f} |")
    lines += ["", f"{scores['n_datasets']} data sets; accuracy at the best configuration and ridge picked on the test "
              "split (paper protocol). Scores relative to the three methods above only."]
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    _plot_uci(out / "accuracy_kare_vs_after_kernel.png", best)
    log("results:\n" + table)
    return summary


def _plot_uci(path: Path, best: np.ndarray):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(best[:, 1], best[:, 0], s=12, label="per data set")
    lo = float(np.nanmin(best[:, :2])) if best.size else 0.0
    ax.plot([lo, 1], [lo, 1], "k--", lw=1)
    ax.set_xlabel("after-kernel accuracy")
    ax.set_ylabel("NTK-KARE accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
