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
from keras_kare.reproduce.eta import ETA, WorkETA, format_seconds
from keras_kare.reproduce.runner import run_seed
from keras_kare.reproduce.scoring import score_table
from keras_kare.reproduce.workers import fresh_process_per_item, run_in_workers
from keras_kare.trainer_pool import TrainerPool

logger = logging.getLogger("keras_kare.reproduce")

SYNTHETIC_DEFAULTS = dict(
    gamma=1.0,
    sigma=0.0,
    n=1000,
    n_train=800,
    d=10,
    depth=1,
    width=64,
    kare_ridge=0.1,
    kare_lr=100.0,
    kare_steps=100,
    dnn_lr=0.1,
    dnn_steps=10000,
    ridges=[10.0**k for k in range(-5, 6)],
    seeds=list(range(10)),
    batch_size=None,
    kernel="summed_output",
    protocol="paper",
    validation_fraction=None,
)
SYNTHETIC_QUICK = dict(seeds=[0], kare_steps=30, dnn_steps=2000)

MNIST_DEFAULTS = dict(
    depth=4,
    width=128,
    n_train=1000,
    n_test=1000,
    kare_ridge=0.1,
    kare_lr=None,
    kare_steps=300,
    dnn_lr=0.1,
    dnn_steps=10000,
    ridges=[10.0**k for k in range(-3, 4)],
    seeds=list(range(10)),
    batch_size=None,
    kernel="summed_output",
    data_dir=None,
    protocol="paper",
    validation_fraction=None,
)
MNIST_QUICK = dict(seeds=[0], n_train=300, n_test=300, kare_steps=30, dnn_steps=1000)

# Higgs: the MNIST panel's settings (the paper states no others), rows drawn from the first max_rows of the file
HIGGS_DEFAULTS = dict(MNIST_DEFAULTS, max_rows=100_000)
HIGGS_QUICK = MNIST_QUICK

UCI_DEFAULTS = dict(
    depths=[1, 2, 3, 4, 5],
    widths=[32, 64, 128, 256, 512],
    kare_lrs=None,
    dnn_lrs=[0.1, 0.01, 0.001, 0.0001],
    kare_ridge=0.1,
    kare_steps=300,
    dnn_steps=400,
    dnn_batch_size=32,
    ridges=[10.0**k for k in range(-4, 5)],
    datasets=None,
    data_dir=None,
    seed=0,
    kernel="summed_output",
    protocol="paper",
    baselines=[],
    recipes=None,
    paper_methods=True,
    kare_relative_ridge=1.0,
)
UCI_QUICK = dict(depths=[1], widths=[32], kare_lrs=[10.0], dnn_lrs=[0.1], kare_steps=20, dnn_steps=20)

# the paper's lr grid for KARE on UCI (authors' code), by depth
UCI_KARE_LRS = {
    1: [100.0, 10.0, 1.0, 0.1],
    2: [100.0, 10.0, 1.0, 0.1],
    3: [10.0, 5.0, 1.0, 0.1],
    4: [10.0, 5.0, 1.0, 0.1],
    5: [10.0, 5.0, 1.0, 0.1],
}

# Best test MSE read from the paper's figures (mean over 10 seeds), shared/notes/paper-results.md
PAPER_SYNTHETIC = {
    (1.0, 0.0): (0.032, 0.109, 0.140),
    (1.25, 0.0): (0.127, 0.161, 0.217),
    (1.5, 0.0): (0.166, 0.194, 0.327),
    (1.0, 0.1): (0.062, 0.123, 0.156),
    (1.25, 0.1): (0.146, 0.168, 0.226),
    (1.5, 0.1): (0.177, 0.208, 0.409),
}
PAPER_MNIST = {
    (2, 32): (0.095, 0.102, 0.110),
    (2, 64): (0.101, 0.098, 0.102),
    (2, 128): (0.100, 0.106, 0.115),
    (4, 32): (0.113, 0.148, 0.157),
    (4, 64): (0.115, 0.147, 0.153),
    (4, 128): (0.109, 0.135, 0.139),
}


def mnist_kare_lr(depth: int) -> float:
    """Paper: SGD lr 10 for depth 2, 1 for depth 4 (10 up to depth 2, 1 beyond)."""
    return 10.0 if depth <= 2 else 1.0


def resolve_network_settings(settings: dict) -> dict:
    """The settings a network run stores: ``kare_lr`` None becomes the paper's rate for the depth."""
    s = dict(settings)
    if s["kare_lr"] is None:
        s["kare_lr"] = mnist_kare_lr(s["depth"])
    return s


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
        log(
            "--quick: a smoke run with fewer seeds and steps than the paper. Its numbers are NOT evidence for or "
            "against the paper's claim (one easy seed can favour any method); run without --quick for that."
        )


def _finish(out: Path, rows, settings, paper, title, log, extra=None, per_seed_info=None):
    R.write_rows(out, rows)
    summary = R.write_summary(out, rows, settings, extra, per_seed_info=per_seed_info)
    if paper:
        summary["paper"] = paper
        R.write_json(out / "summary.json", summary)
    table = R.markdown_table(summary, paper, title)
    (out / "table.md").write_text(table)
    png = R.plot(out / "test_mse_vs_ridge.png", summary, title)
    log("results:\n" + table)
    log(
        f"wrote {out / 'results.csv'}, {out / 'results.json'}, {out / 'summary.json'}, {out / 'table.md'}"
        + (f", {png}" if png else "")
    )
    return summary


def _cfg(s: dict) -> dict:
    cfg = {
        k: s[k]
        for k in (
            "depth",
            "width",
            "kare_ridge",
            "kare_lr",
            "kare_steps",
            "dnn_lr",
            "dnn_steps",
            "ridges",
            "batch_size",
            "kernel",
        )
    }
    validated = s.get("protocol", "paper") == "validated"
    cfg["validation_fraction"] = (s.get("validation_fraction") or 0.2) if validated else 0.0
    return cfg


def run_synthetic(settings: dict, out: Path, resume: bool = False, log=logger.info) -> dict:
    """Figure 1: single-index regression; three methods per seed."""
    from keras_kare.datasets import index_direction, make_single_index

    out = R.prepare_run_dir(out, settings, resume)
    s = settings
    _quick_note(s, log)

    def load(seed):
        return make_single_index(s["gamma"], s["sigma"], n=s["n"], d=s["d"], n_train=s["n_train"], seed=seed)

    log(
        f"synthetic: gamma={s['gamma']} sigma={s['sigma']}, {s['n_train']}/{s['n'] - s['n_train']} train/test, "
        f"seeds {s['seeds']}, MLP depth {s['depth']} width {s['width']}, KARE z={s['kare_ridge']} lr={s['kare_lr']} "
        f"x{s['kare_steps']} steps, DNN lr={s['dnn_lr']} x{s['dnn_steps']} steps"
    )
    rows = _run_seeds(out, s, load, _cfg(s), log, classification=False)
    paper = _paper_dict(PAPER_SYNTHETIC.get((float(s["gamma"]), float(s["sigma"]))))
    title = f"synthetic γ={s['gamma']:g}, σ={s['sigma']:g} ({len(s['seeds'])} seeds)"
    if _cfg(s)["validation_fraction"]:
        title += f", validated (ridge picked on {_cfg(s)['validation_fraction']:g} of the training rows)"
    # ‖w‖: the difficulty of a draw (large ‖w‖ = many oscillations along the index)
    info = {seed: {"‖w‖": float(np.linalg.norm(index_direction(seed, n=s["n"], d=s["d"])))} for seed in s["seeds"]}
    return _finish(out, rows, settings, paper, title, log, per_seed_info=info)


def run_mnist(settings: dict, out: Path, resume: bool = False, log=logger.info) -> dict:
    """Figure 2: MNIST 7 vs 9; three methods per seed."""
    from keras_kare.datasets import load_mnist_7v9

    def load(s: dict, seed: int):
        return load_mnist_7v9(n_train=s["n_train"], n_test=s["n_test"], seed=seed, data_dir=s["data_dir"])

    return _run_network(settings, out, resume, log, "mnist", "MNIST 7 vs 9", load, PAPER_MNIST)


def run_higgs(settings: dict, out: Path, resume: bool = False, log=logger.info) -> dict:
    """Figure 2's Higgs panel: signal vs background from a user-provided CSV file; three methods per seed.

    The data come from :func:`keras_kare.datasets.load_higgs` (UCI HIGGS or
    Kaggle/ATLAS layout; ``EventId`` and the class-dependent ``Weight`` column,
    which the paper's loader keeps as a feature, are dropped; ``-999`` missing
    values are imputed with training means). The settings are those of the
    MNIST panel (:data:`HIGGS_DEFAULTS`): the paper does not state others.
    There is no paper value to compare with (its Higgs numbers use ``Weight``).
    """
    from keras_kare.datasets.higgs import load_higgs

    def load(s: dict, seed: int):
        return load_higgs(
            n_train=s["n_train"], n_test=s["n_test"], seed=seed, data_dir=s["data_dir"], max_rows=s["max_rows"]
        )

    return _run_network(settings, out, resume, log, "higgs", "Higgs signal vs background", load, {})


def _run_network(settings, out, resume, log, name: str, label: str, load_data: Callable, paper_table: dict) -> dict:
    """A binary classification task of Figure 2 with one MLP (``settings["depth"]`` × ``settings["width"]``)."""
    s = resolve_network_settings(settings)
    # fail on bad data before creating the run folder
    info = load_data(s, s["seeds"][0])[4]
    out = R.prepare_run_dir(out, s, resume)
    _quick_note(s, log)
    log(f"{label}: data from {info['source']}; {info['note']}")
    log(
        f"{name}: {s['n_train']}/{s['n_test']} train/test, seeds {s['seeds']}, MLP depth {s['depth']} width "
        f"{s['width']}, KARE z={s['kare_ridge']} lr={s['kare_lr']} x{s['kare_steps']} steps, DNN lr={s['dnn_lr']} "
        f"x{s['dnn_steps']} steps"
    )

    def load(seed):
        return load_data(s, seed)[:4]

    rows = _run_seeds(out, s, load, _cfg(s), log, classification=True)
    paper = _paper_dict(paper_table.get((int(s["depth"]), int(s["width"]))))
    title = f"{label}, depth {s['depth']} width {s['width']} ({len(s['seeds'])} seeds)"
    if _cfg(s)["validation_fraction"]:
        title += f", validated (ridge picked on {_cfg(s)['validation_fraction']:g} of the training rows)"
    return _finish(out, rows, s, paper, title, log, extra={"data": info})


# ----------------------------------------------------------------------- UCI
def run_uci_dataset(data_dir, name: str, s: dict, log=logger.info, clock=None) -> dict:
    """All configurations (and baselines) on one data set under ``s["protocol"]``.

    See :mod:`keras_kare.reproduce.uci_protocol` for the two protocols. Returns
    per-configuration records and per-method accuracies: ``best`` (max over
    configurations and ridges on the ``conxuntos.dat`` evaluation half, the
    paper's optimistic number), ``validated`` (with ``--protocol validated``)
    and, for the kernel methods, ``selected`` (smallest training KARE).
    """
    from keras_kare.datasets.uci import load_uci
    from keras_kare.reproduce.uci_protocol import run_dataset

    return run_dataset(load_uci(data_dir, name), s, UCI_KARE_LRS, log, clock=clock)


def _uci_methods(s: dict) -> list[str]:
    from keras_kare.reproduce.uci_recipes import methods

    return methods(s) + list(s.get("baselines") or [])


def _uci_label(m: str) -> str:
    from keras_kare.reproduce.baselines import BASELINE_LABELS

    return R.METHOD_LABELS.get(m, BASELINE_LABELS.get(m, m))


def run_uci(
    settings: dict,
    out: Path,
    resume: bool = False,
    log=logger.info,
    jobs: int = 1,
    reference=None,
    in_process: Optional[bool] = None,
) -> dict:
    """Table 1: every requested data set, resumable (one ``runs/<name>.json`` per data set).

    ``jobs > 1`` trains that many data sets at once in worker processes (spawned, each
    TensorFlow pinned to one thread; the largest tables start first); the results are
    those of ``jobs=1`` up to float round-off. With ``jobs=1`` the tables train in
    this process (``in_process=True``) or each in a fresh one using every core
    (``False``); the default (``None``) chooses a fresh process per table when
    TensorFlow's memory kept per traced network would pass about 2 GB in one
    process (:func:`~keras_kare.reproduce.workers.fresh_process_per_item`; the
    paper's grid on three tables or more). ``reference``: the file of Fernández-Delgado
    et al.'s 179 classifiers (``delgado_results.txt``); the methods are then also scored
    among them, as in the paper's Table 1 (:mod:`keras_kare.reproduce.reference`).
    """
    from keras_kare.datasets.errors import DatasetError
    from keras_kare.datasets.uci import list_uci_datasets, load_uci
    from keras_kare.reproduce import baselines as B
    from keras_kare.reproduce import uci_cost as C
    from keras_kare.reproduce import uci_protocol as P
    from keras_kare.reproduce.uci_recipes import check_methods, resolve_recipes

    s = settings
    protocol = P.check_protocol(s.get("protocol", "paper"))
    B.check_baselines(s.get("baselines"))
    s = {**s, "recipes": resolve_recipes(s)}  # stored as run, so a resumed run keeps its recipes
    check_methods(s)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, received {jobs!r}.")
    if in_process is not None and not isinstance(in_process, bool):
        raise TypeError(f"in_process must be True, False or None, received {in_process!r}.")
    if in_process and jobs > 1:
        raise ValueError(f"in_process=True needs jobs=1, received jobs={jobs}.")
    if set(s.get("baselines") or []) & {"svc", "rf"}:
        B._sklearn()  # a missing optional dependency fails before any training
    population = None
    if reference is not None:
        from keras_kare.reproduce.reference import load_reference

        population = load_reference(reference)  # a bad file fails before any training
    available = list_uci_datasets(s["data_dir"])
    names = available if not s["datasets"] else list(s["datasets"])
    unknown = [n for n in names if n not in available]
    if unknown:
        raise DatasetError(
            f"{s['data_dir']}: unknown UCI data set(s) {', '.join(unknown)} (no <name>/<name>_R.dat there; "
            f"{len(available)} available, e.g. {', '.join(available[:5])})."
        )
    sizes = {name: len(load_uci(s["data_dir"], name).x) for name in names}  # every table checked before training
    out = R.prepare_run_dir(out, s, resume)
    _quick_note(s, log)
    per_set = C.trainings_per_dataset(s, UCI_KARE_LRS)
    done = {name: R.load_unit(out, name) for name in names}
    todo = [n for n in names if done[n] is None]
    if in_process is None:
        in_process = jobs == 1 and not fresh_process_per_item(len(todo), len(s["depths"]) * len(s["widths"]))
    separate = jobs > 1 or not in_process
    log(
        f"uci: {len(names)} data sets from {s['data_dir']}, {per_set} trainings each "
        f"(depths {s['depths']}, widths {s['widths']}), ridge grid {s['ridges']}; {P.PROTOCOL_TEXT[protocol]}"
        + (f"; recipes {', '.join(s['recipes'])}" if s.get("recipes") else "")
        + (f"; baselines {', '.join(s['baselines'])}" if s.get("baselines") else "")
        + (f"; {jobs} worker processes" if jobs > 1 else "")
        + ("; each data set in a fresh process (TensorFlow keeps what a traced network holds until the process ends)"
           if jobs == 1 and separate else "")
    )  # fmt: skip
    methods = _uci_methods(s)
    for k, name in enumerate(names):
        if done[name] is not None:
            log(f"[{k + 1}/{len(names)}] {name}: already done, skipped")
    clock = C.RunClock(per_set * len(todo), log, sum(C.dataset_cost(s, UCI_KARE_LRS, sizes[n]) for n in todo))
    run_eta = WorkETA({name: C.table_cost(sizes[name]) for name in todo}, jobs)

    def report(name: str, unit: dict):
        R.save_unit(out, name, unit)
        done[name] = unit
        a = unit["accuracy"]
        parts = [f"{_uci_label(m)} {_fmt_acc(a[m])}" for m in methods]
        left = format_seconds(run_eta.done(name, unit["seconds"]))
        picked = f"; KARE-picked NTK-KARE {_fmt_acc({'best': a['kare']['selected']})}" if "kare" in a else ""
        log(
            f"[{names.index(name) + 1}/{len(names)}] {name}: accuracy (paper"
            + ("/validated" if protocol == "validated" else "")
            + f") {', '.join(parts)}{picked} "
            f"({unit['seconds']:.0f}s"
            + (f", peak memory {unit['peak_rss_mb']:.0f} MB" if unit.get("peak_rss_mb") else "")
            + f"; about {left} left)"
        )

    if not separate:
        for name in todo:
            t0 = time.time()
            unit = run_uci_dataset(s["data_dir"], name, s, log, clock)
            unit.update(seconds=time.time() - t0, peak_rss_mb=_peak_rss_mb())
            report(name, unit)
    else:
        order = sorted(todo, key=lambda n: -sizes[n]) if jobs > 1 else todo  # the largest first keeps workers busy
        args = [(s, name, sizes[name]) for name in order]
        run_in_workers(_uci_worker, args, jobs, log, lambda i, unit: report(order[i], unit), jobs > 1)
    per = [done[name] for name in names]
    summary = _uci_summary(per, methods, protocol, s)
    table = uci_table(summary, per, methods)
    if population is not None:
        summary["reference"], text = _reference_scores(per, methods, protocol, population, reference)
        table += text
    R.write_json(out / "summary.json", summary)
    _write_uci_rows(out, per, methods)
    (out / "table.md").write_text(table)
    if {"kare", "after_kernel"} <= set(methods):
        _plot_uci(
            out / "accuracy_kare_vs_after_kernel.png",
            np.array([[d["accuracy"][m]["best"] for m in ("kare", "after_kernel")] for d in per]),
        )
    log("results:\n" + table)
    return summary


def _reference_scores(per, methods, protocol, population, path) -> tuple[dict, str]:
    """Scores among Fernández-Delgado et al.'s 179 classifiers per protocol, and their markdown."""
    from keras_kare.reproduce.reference import reference_table, score_against_reference

    scores, text = {}, ""
    for key in ["best"] + (["validated"] if protocol == "validated" else []):
        scores[key] = score_against_reference(per, methods, population, key=key)
        text += f"\n#### Among the 179 classifiers of Fernández-Delgado et al. ({Path(path).name}), {key}\n\n"
        text += reference_table(scores[key]).rstrip("\n") + "\n"
    return scores, text


def _uci_worker(args, log) -> dict:
    """One data set in a worker process (see :func:`keras_kare.reproduce.workers.run_in_workers`)."""
    from keras_kare.reproduce import uci_cost as C

    s, name, rows = args
    t0 = time.time()
    clock = C.RunClock(C.trainings_per_dataset(s, UCI_KARE_LRS), log, C.dataset_cost(s, UCI_KARE_LRS, rows))
    unit = run_uci_dataset(s["data_dir"], name, s, log, clock)
    unit.update(seconds=time.time() - t0, peak_rss_mb=_peak_rss_mb())
    return unit


def _peak_rss_mb():
    """The process's peak resident memory so far in MB (an upper bound for the data set just run), or None."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import sys

    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _fmt_acc(entry: dict) -> str:
    text = "–" if entry["best"] is None else f"{entry['best']:.3f}"
    if "validated" in entry:
        text += "/" + ("–" if entry["validated"] is None else f"{entry['validated']:.3f}")
    return text


def _accuracy_matrix(per: list[dict], methods: list[str], key: str) -> np.ndarray:
    return np.array(
        [[np.nan if d["accuracy"][m].get(key) is None else d["accuracy"][m][key] for m in methods] for d in per],
        dtype=np.float64,
    )


def _uci_summary(per: list[dict], methods: list[str], protocol: str, s: dict) -> dict:
    """Scores per protocol; the top-level method entries hold the headline protocol's scores."""
    from keras_kare.reproduce.uci_protocol import PROTOCOL_TEXT

    protocols = ["paper"] + (["validated"] if protocol == "validated" else [])
    summary = {"protocol": protocol, "protocols": {p: PROTOCOL_TEXT[p] for p in protocols}, "methods": methods}
    for p in protocols:
        summary[p] = score_table(_accuracy_matrix(per, methods, "best" if p == "paper" else "validated"), methods)
    headline = summary[protocols[-1]]
    summary.update({m: headline[m] for m in methods if m in headline})
    summary["paired_vs_kare"] = _uci_pairs(per, methods, "best" if protocol == "paper" else "validated")
    sel_methods = [m for m in ("kare", "after_kernel") if m in methods]
    selected = score_table(_accuracy_matrix(per, sel_methods, "selected"), sel_methods) if sel_methods else {}
    summary["selected_by_kare"] = {m: selected[m] for m in sel_methods if m in selected}
    summary["n_datasets"] = len(per)
    summary["settings"] = s
    return summary


def _uci_pairs(per: list[dict], methods: list[str], key: str) -> list[dict]:
    """The headline method (:func:`~keras_kare.reproduce.uci_recipes.headline`) against every other, paired by
    data set (accuracy; data sets missing a number dropped)."""
    from keras_kare.reproduce.stats import paired_comparison
    from keras_kare.reproduce.uci_recipes import headline

    acc = _accuracy_matrix(per, methods, key)
    a = methods.index(headline(methods))
    pairs = []
    for k, m in enumerate(methods):
        ok = np.isfinite(acc[:, a]) & np.isfinite(acc[:, k])
        if k != a and ok.any():
            c = paired_comparison(
                acc[ok, a], acc[ok, k], _uci_label(methods[a]), _uci_label(m), higher_is_better=True, unit="data sets"
            )
            pairs.append({"a": methods[a], "b": m, "protocol": key if key == "validated" else "paper", **c})
    return pairs


def _write_uci_rows(out: Path, per: list[dict], methods: list[str]) -> None:
    import csv

    rows = []
    for d in per:
        row = {k: d[k] for k in ("dataset", "n_train", "n_test", "n_classes")}
        for m in methods:
            row[f"{m}_paper"] = d["accuracy"][m]["best"]
            row[f"{m}_validated"] = d["accuracy"][m].get("validated")
        for m in ("kare", "after_kernel"):
            if m in methods:
                row[f"{m}_selected"] = d["accuracy"][m]["selected"]
        rows.append(row)
    R.write_json(out / "results.json", rows)
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])


def uci_table(summary: dict, per: list[dict], methods: list[str]) -> str:
    """Markdown: scores per method and protocol, then accuracies per data set."""
    protocols = list(summary["protocols"])
    plabel = {"paper": "paper (optimistic)", "validated": "validated"}
    lines = [
        "| method | protocol | Friedman rank | mean accuracy (%) | P90 | P95 | PMA (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        for p in protocols:
            v = summary[p].get(m)
            if v is None:
                lines.append(f"| {_uci_label(m)} | {plabel[p]} | – | – | – | – | – |")
                continue
            lines.append(
                f"| {_uci_label(m)} | {plabel[p]} | {v['friedman_rank']:.2f} | {v['mean_accuracy']:.2f} ± "
                f"{v['std_accuracy']:.2f} | {v['p90']:.1f} | {v['p95']:.1f} | {v['pma']:.2f} ± "
                f"{v['pma_std']:.2f} |"
            )
    lines += [""] + [
        f"- {plabel[p]}: {summary['protocols'][p]}; {summary[p]['n_datasets']} data sets." for p in protocols
    ]
    lines.append(
        "- Ranks, P90/P95 and PMA are relative to the methods of this table within each protocol "
        "(the paper's Table 1 ranks among Fernández-Delgado et al.'s 179 classifiers: --reference)."
    )
    validated = "validated" in protocols
    if summary.get("paired_vs_kare"):
        lines += [
            "",
            (
                f"Paired by data set ({plabel[protocols[-1]]} accuracy; differences "
                f"{_uci_label(summary['paired_vs_kare'][0]['a'])} − other, "
                "percentile bootstrap over data sets, exact sign test):"
            ),
        ]
        lines += [f"- {p['statement']}." for p in summary["paired_vs_kare"]]
    if not validated:
        lines.append(
            "- The paper protocol picks on the data it reports on; run with --protocol validated for "
            "numbers chosen without the evaluation folds."
        )
    what = "paper / validated" if validated else "paper protocol, optimistic"
    lines += [
        "",
        f"#### Accuracy per data set (%, {what})",
        "",
        "| data set | n | C | " + " | ".join(_uci_label(m) for m in methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for d in per:
        lines.append(
            f"| {d['dataset']} | {d.get('n_examples', d['n_train'] + d['n_test'])} | {d['n_classes']} | "
            + " | ".join(_acc_cell(d["accuracy"][m], validated) for m in methods)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _acc_cell(entry: dict, validated: bool) -> str:
    text = f"{100 * entry['best']:.1f}"
    if validated:
        v = entry.get("validated")
        text += " / " + ("–" if v is None else f"{100 * v:.1f}")
    return text


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
    ax.set_xlabel("after-kernel accuracy (paper protocol)")
    ax.set_ylabel("NTK-KARE accuracy (paper protocol)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------- whole figures
def run_synthetic_figure(
    settings: dict, panels, out: Path, resume: bool = False, log=logger.info, panel_log=None
) -> dict:
    """Figure 1's panels (default all six) into ``out/gamma<γ>_sigma<σ>``, then the figure, table and summary.

    See :func:`keras_kare.reproduce.figure.run_figure`; each panel folder is the
    folder of ``run_synthetic`` with that panel's γ and σ.
    """
    from keras_kare.reproduce import figure as F

    return F.run_figure(
        "synthetic",
        settings,
        panels,
        out,
        run_synthetic,
        paper=PAPER_SYNTHETIC,
        resume=resume,
        log=log,
        panel_log=panel_log,
    )


def run_network_figure(
    experiment: str, settings: dict, panels, out: Path, resume: bool = False, log=logger.info, panel_log=None
) -> dict:
    """Figure 2's networks (``experiment`` ``"mnist"`` or ``"higgs"``) into ``out/depth<d>_width<w>``, then the figure.

    See :func:`keras_kare.reproduce.figure.run_figure`.
    """
    from keras_kare.reproduce import figure as F

    run = {"mnist": run_mnist, "higgs": run_higgs}[experiment]
    paper = PAPER_MNIST if experiment == "mnist" else {}
    return F.run_figure(
        experiment,
        settings,
        panels,
        out,
        run,
        resolve=resolve_network_settings,
        paper=paper,
        resume=resume,
        log=log,
        panel_log=panel_log,
    )


# ----------------------------------------------------------------------- public entry points
DEFAULTS = {
    "synthetic": (SYNTHETIC_DEFAULTS, SYNTHETIC_QUICK),
    "mnist": (MNIST_DEFAULTS, MNIST_QUICK),
    "higgs": (HIGGS_DEFAULTS, HIGGS_QUICK),
    "uci": (UCI_DEFAULTS, UCI_QUICK),
}


def make_settings(experiment: str, quick: bool = False, **overrides) -> dict:
    """The paper's settings of ``experiment``, then the ``--quick`` ones if ``quick``, then ``overrides``.

    This is how ``keras-kare reproduce`` builds the settings it stores in ``settings.json``.

    Raises:
        ValueError: unknown experiment. TypeError: an override that is not a setting of it.

    Example:
        >>> make_settings("synthetic", gamma=1.5)["gamma"]
        1.5
    """
    if experiment not in DEFAULTS:
        raise ValueError(f"experiment: received {experiment!r}, expected one of {', '.join(DEFAULTS)}.")
    defaults, quick_settings = DEFAULTS[experiment]
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise TypeError(
            f"{', '.join(unknown)}: not a setting of {experiment}; expected some of {', '.join(sorted(defaults))}."
        )
    settings = dict(defaults)
    if quick:
        settings.update(quick_settings)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if settings.get("data_dir") is not None:
        settings["data_dir"] = str(settings["data_dir"])
    settings["quick"] = bool(quick)
    return settings


def synthetic(out, panels=None, quick: bool = False, resume: bool = False, log=print, **settings) -> dict:
    """Figure 1 (``keras-kare reproduce synthetic``): one panel, or several with ``panels``; returns the summary.

    Args:
        out: the results folder (new, or an interrupted run's with ``resume``).
        panels: None for one panel (``gamma``, ``sigma`` settings); ``"all"`` or
            a list of (γ, σ) for a whole figure (see :mod:`keras_kare.reproduce.figure`).
        quick: fewer seeds and steps (not the paper's settings).
        resume: continue (or only aggregate) the run in ``out``.
        log: progress lines.
        **settings: overrides of :data:`SYNTHETIC_DEFAULTS` (e.g. ``seeds=[0, 1]``, ``dnn_steps=2000``).

    Example:
        >>> summary = synthetic("runs/fig1_g1_s0", seeds=[0], kare_steps=30, dnn_steps=2000)  # doctest: +SKIP
        >>> summary["kare"]["best_test_mse"]  # doctest: +SKIP
    """
    from keras_kare.reproduce import figure as F

    s = make_settings("synthetic", quick, **settings)
    if panels is None:
        return run_synthetic(s, Path(out), resume=resume, log=log)
    panels = F.SYNTHETIC_PANELS if panels == "all" else panels
    return run_synthetic_figure(s, panels, Path(out), resume=resume, log=log)


def mnist(out, networks=None, quick: bool = False, resume: bool = False, log=print, **settings) -> dict:
    """Figure 2, MNIST (``keras-kare reproduce mnist``): one network, or several with ``networks``.

    Args are those of :func:`synthetic`, with ``networks`` None (``depth`` and
    ``width`` settings), ``"all"`` or a list of (depth, width), and the
    overrides of :data:`MNIST_DEFAULTS` (``data_dir``: a folder with MNIST's IDX
    files, default ``$KERAS_KARE_DATA/mnist``).

    Example:
        >>> summary = mnist("runs/mnist", depth=2, width=64, n_train=300, n_test=300, seeds=[0])  # doctest: +SKIP
    """
    return _network_entry("mnist", out, networks, quick, resume, log, settings)


def higgs(out, networks=None, quick: bool = False, resume: bool = False, log=print, **settings) -> dict:
    """Figure 2, Higgs (``keras-kare reproduce higgs``) on a user-provided CSV file; args as :func:`mnist`.

    Example:
        >>> summary = higgs("runs/higgs", data_dir="data/higgs", seeds=[0])  # doctest: +SKIP
    """
    return _network_entry("higgs", out, networks, quick, resume, log, settings)


def _network_entry(experiment, out, networks, quick, resume, log, settings) -> dict:
    from keras_kare.reproduce import figure as F

    s = make_settings(experiment, quick, **settings)
    if networks is None:
        run = run_mnist if experiment == "mnist" else run_higgs
        return run(s, Path(out), resume=resume, log=log)
    networks = F.NETWORK_PANELS if networks == "all" else networks
    return run_network_figure(experiment, s, networks, Path(out), resume=resume, log=log)


def uci(
    out,
    quick: bool = False,
    resume: bool = False,
    log=print,
    jobs: int = 1,
    reference=None,
    in_process: Optional[bool] = None,
    **settings,
) -> dict:
    """Table 1 (``keras-kare reproduce uci``) on the UCI collection in ``data_dir``; returns the summary.

    Args are those of :func:`synthetic` with the overrides of :data:`UCI_DEFAULTS`
    (``data_dir`` is required: the folder of ``<name>/<name>_R.dat`` tables);
    ``jobs``: data sets trained at once in worker processes; ``reference``: the
    published accuracies of 179 classifiers to rank among; ``in_process``: with
    ``jobs=1``, train in this process or each table in a fresh one (default: by
    the grid's size; see :func:`run_uci`).

    Example:
        >>> summary = uci("runs/uci", data_dir="data/uci", datasets=["iris"], quick=True)  # doctest: +SKIP
    """
    s = make_settings("uci", quick, **settings)
    if s["data_dir"] is None:
        raise ValueError("data_dir: received None, expected the folder holding the UCI tables.")
    return run_uci(s, Path(out), resume=resume, log=log, jobs=jobs, reference=reference, in_process=in_process)
