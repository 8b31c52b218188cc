"""Whole figures of the paper: every panel in its own run folder, then one figure, table and summary.

``keras-kare reproduce synthetic --panels all --out DIR`` runs Figure 1's six
(γ, σ) panels, ``keras-kare reproduce mnist --networks all --out DIR`` Figure
2's six (depth, width) networks (``higgs`` likewise). Each panel is written to
``DIR/<panel folder>`` (:func:`panel_folder`: ``gamma1.25_sigma0.1``,
``depth4_width128``), which is exactly the folder the single-panel command
(``--gamma 1.25 --sigma 0.1 --out DIR/gamma1.25_sigma0.1``) writes: same
``settings.json``, ``runs/seed_*.json``, ``summary.json``, ``table.md``. At
``DIR``'s top level:

- ``test_mse_vs_ridge.png``: the panels in the paper's layout (Figure 1: σ by
  row, γ by column; Figure 2: depth by row, width by column), test MSE against
  the relative ridge λ̃ for NTK-KARE and the after-kernel, the DNN as a
  horizontal line, all with ± one standard error over seeds;
- ``table.md``: per panel the minimum of the seed-averaged curve ± its standard
  error (how the paper's figures read) beside the paper's value, the paired
  wins of NTK-KARE over seeds with the exact sign test
  (:mod:`keras_kare.reproduce.stats`), and whether the paper's ordering holds;
- ``summary.json``: the same, machine-readable.

With ``resume=True`` a panel folder that is complete (settings, every seed and
its summary) is reused as it is, after checking that its settings are this
command's; an incomplete one is continued. So ``--resume`` on a folder of
finished single-panel runs only aggregates.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from keras_kare.reproduce import results as R

SYNTHETIC_GAMMAS = (1.0, 1.25, 1.5)
SYNTHETIC_SIGMAS = (0.0, 0.1)
NETWORK_DEPTHS = (2, 4)
NETWORK_WIDTHS = (32, 64, 128)

SYNTHETIC_PANELS = tuple((g, s) for s in SYNTHETIC_SIGMAS for g in SYNTHETIC_GAMMAS)
"""Figure 1's (γ, σ) panels in the paper's reading order (σ by row, γ by column)."""

NETWORK_PANELS = tuple((d, w) for d in NETWORK_DEPTHS for w in NETWORK_WIDTHS)
"""Figure 2's (depth, width) networks in the paper's reading order (depth by row, width by column)."""

METHODS = ("kare", "after_kernel", "dnn")


def panel_folder(experiment: str, panel: tuple) -> str:
    """The sub-folder name of one panel: ``gamma1.25_sigma0.1`` (synthetic), ``depth4_width128`` (networks).

    Example:
        >>> panel_folder("synthetic", (1.0, 0.1)), panel_folder("mnist", (4, 128))
        ('gamma1_sigma0.1', 'depth4_width128')
    """
    if experiment == "synthetic":
        gamma, sigma = panel
        return f"gamma{float(gamma):g}_sigma{float(sigma):g}"
    depth, width = panel
    return f"depth{int(depth)}_width{int(width)}"


def panel_settings(experiment: str, settings: dict, panel: tuple) -> dict:
    """``settings`` with the panel's two values set, as the single-panel command would store them."""
    if experiment == "synthetic":
        return dict(settings, gamma=float(panel[0]), sigma=float(panel[1]))
    return dict(settings, depth=int(panel[0]), width=int(panel[1]))


def panel_label(experiment: str, panel: tuple) -> str:
    if experiment == "synthetic":
        return f"γ={float(panel[0]):g}, σ={float(panel[1]):g}"
    return f"depth {int(panel[0])}, width {int(panel[1])}"


def is_complete(folder: Path, seeds) -> bool:
    """A finished run folder: settings, one ``runs/seed_<s>.json`` per seed and ``summary.json``."""
    folder = Path(folder)
    return (
        (folder / "settings.json").is_file()
        and (folder / "summary.json").is_file()
        and all(R.unit_path(folder, f"seed_{s}").is_file() for s in seeds)
    )


def run_figure(
    experiment: str,
    settings: dict,
    panels,
    out: Path,
    run: Callable[..., dict],
    resolve: Callable[[dict], dict] = lambda s: s,
    paper: Optional[dict] = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
    panel_log: Optional[Callable[[Path], Callable[[str], None]]] = None,
) -> dict:
    """Run (or reuse) every panel into ``out/<panel folder>``, then write the figure, table and summary.

    Args:
        experiment: ``"synthetic"``, ``"mnist"`` or ``"higgs"``.
        settings: the settings every panel shares (the panel's two values are set per panel).
        panels: (γ, σ) or (depth, width) pairs, e.g. :data:`SYNTHETIC_PANELS`.
        out: the figure's folder; must be new or empty unless ``resume``.
        run: the single-panel driver, ``run(settings, folder, resume=..., log=...) -> summary``.
        resolve: the settings a single-panel run stores (e.g. the MNIST learning rate filled in by depth).
        paper: the paper's values per panel, ``{panel: (kare, after_kernel, dnn)}``.
        resume: reuse complete panel folders, continue incomplete ones.
        log: progress lines of the whole figure.
        panel_log: ``folder -> log`` for each panel's own log (default: ``log``).

    Returns:
        The figure's summary (also written to ``out/summary.json``).

    Raises:
        keras_kare.reproduce.results.RunDirError: ``out`` holds files without
            ``resume``, or a panel folder's stored settings differ from this
            command's (checked for every panel before any training).

    Example:
        >>> run_figure("synthetic", settings, SYNTHETIC_PANELS, Path("fig1"), run_synthetic)  # doctest: +SKIP
    """
    out = Path(out)
    panels = [tuple(p) for p in panels]
    if out.exists() and not out.is_dir():
        raise R.RunDirError(f"{out}: exists and is not a folder (expected a new or resumable results folder).")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise R.RunDirError(
            f"{out}: folder already holds results; pass --resume to continue or aggregate that run, "
            "or choose a new --out."
        )
    jobs = []
    for panel in panels:  # every stored setting is checked before any training
        folder = out / panel_folder(experiment, panel)
        s = panel_settings(experiment, settings, panel)
        if folder.is_dir() and any(folder.iterdir()):
            R.check_resumable(folder, resolve(s))
        jobs.append((panel, folder, s))
    out.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for k, (panel, folder, s) in enumerate(jobs):
        name = folder.name
        if resume and is_complete(folder, s["seeds"]):
            log(f"[{k + 1}/{len(jobs)}] {name}: complete, reused as it is")
            summaries[panel] = json.loads((folder / "summary.json").read_text())
            continue
        log(f"[{k + 1}/{len(jobs)}] {name}: running into {folder}")
        plog = (panel_log or (lambda _: log))(folder)
        t0 = time.time()
        summaries[panel] = run(s, folder, resume=resume, log=plog)
        plog(f"done in {time.time() - t0:.0f}s; results in {folder}")
    return write_figure(experiment, summaries, out, paper or {}, log=log)


# ------------------------------------------------------------------ aggregation
def curve_minimum(entry: dict) -> tuple[float, Optional[float], float]:
    """(minimum of the seed-averaged test-MSE curve, its standard error, the λ̃ where it is)."""
    curve = np.array(entry["mean_test_mse_per_ridge"], dtype=np.float64)
    j = int(np.nanargmin(curve))
    se = (entry.get("se_test_mse_per_ridge") or [None] * len(curve))[j]
    return float(curve[j]), se, float(entry["ridges"][j])


def _curve_entry(entry: dict) -> dict:
    """A kernel method's number comparable to the paper's: its curve minimum, standard error and λ̃."""
    value, se, ridge = curve_minimum(entry)
    return {"value": value, "se": se, "ridge": ridge}


def _ours(summary: dict) -> dict:
    """Per method: the number comparable to the paper's and its standard error."""
    out = {m: _curve_entry(summary[m]) for m in ("kare", "after_kernel") if m in summary}
    if "dnn" in summary:
        out["dnn"] = {"value": summary["dnn"]["test_mse"], "se": summary["dnn"].get("test_mse_se")}
    return out


def _order(values: dict) -> list[str]:
    return sorted(values, key=lambda m: values[m])


def _pair(summary: dict, b: str) -> Optional[dict]:
    """NTK-KARE against ``b`` seed by seed, ridge picked on test data per seed (the paper's protocol)."""
    for p in summary.get("seed_stats", {}).get("best", {}).get("pairs", []):
        if p["a"] == "kare" and p["b"] == b:
            return p
    return None


def panel_record(experiment: str, panel: tuple, summary: dict, paper: Optional[tuple]) -> dict:
    """One row of the figure's table: our values, the paper's, the paired tests and the ordering verdict."""
    ours = _ours(summary)
    record = {
        "panel": list(panel),
        "folder": panel_folder(experiment, panel),
        "label": panel_label(experiment, panel),
        "n_seeds": summary.get("n_seeds"),
        "ours": ours,
        "pairs": {b: _pair(summary, b) for b in ("after_kernel", "dnn", "ntk_init")},
    }
    if "ntk_init" in summary:  # the untrained control: beside the paper's three, not in their ordering
        record["control"] = _curve_entry(summary["ntk_init"])
    if "best_test_accuracy" in summary.get("kare", {}):
        record["accuracy"] = {
            m: summary[m]["best_test_accuracy" if m != "dnn" else "test_accuracy"] for m in METHODS if m in summary
        }
    ordering = _order({m: v["value"] for m, v in ours.items()})
    record["ordering"] = ordering
    if paper is not None:
        record["paper"] = dict(zip(METHODS, paper))
        record["paper_ordering"] = _order(record["paper"])
        record["ordering_held"] = ordering == record["paper_ordering"]
    return record


def write_figure(experiment: str, summaries: dict, out: Path, paper: dict, log: Callable[[str], None] = print) -> dict:
    """``out/test_mse_vs_ridge.png``, ``out/table.md`` and ``out/summary.json`` from the panels' summaries."""
    out = Path(out)
    records = [panel_record(experiment, p, s, paper.get(p)) for p, s in summaries.items()]
    for r, s in zip(records, summaries.values()):
        r["seed_seconds"] = _seed_seconds(out / r["folder"], s)
    summary = {
        "experiment": experiment,
        "panels": records,
        "settings": {r["folder"]: s.get("settings") for r, s in zip(records, summaries.values())},
    }
    R.write_json(out / "summary.json", summary)
    table = figure_table(experiment, records, next(iter(summaries.values()), {}))
    (out / "table.md").write_text(table)
    png = plot_figure(out / "test_mse_vs_ridge.png", experiment, summaries, paper)
    log("figure table:\n" + table)
    log(f"wrote {out / 'summary.json'}, {out / 'table.md'}" + (f", {png}" if png else ""))
    return summary


def _seed_seconds(folder: Path, summary: dict) -> Optional[float]:
    """Sum of the per-seed wall times stored in ``runs/seed_*.json`` (None if any is missing)."""
    total = 0.0
    for seed in (summary.get("settings") or {}).get("seeds", []):
        unit = R.load_unit(folder, f"seed_{seed}")
        if unit is None or unit.get("seconds") is None:
            return None
        total += float(unit["seconds"])
    return total


def _fmt(entry: Optional[dict]) -> str:
    if not entry:
        return "–"
    se = entry.get("se")
    return f"{entry['value']:.3f}" + ("" if se is None or not math.isfinite(se) else f" ± {se:.3f}")


def _fmt_pair(p: Optional[dict]) -> str:
    if not p:
        return "–"
    return f"{p['wins_a']}/{p['n']}" + (f" ({p['ties']} tied)" if p["ties"] else "") + f", p = {p['sign_test_p']:.2g}"


_SHORT = {"kare": "KARE", "after_kernel": "after", "dnn": "DNN"}


def _verdict(r: dict) -> str:
    ours = " < ".join(_SHORT[m] for m in r["ordering"])
    if "paper" not in r:
        return ours
    if r["ordering_held"]:
        return f"held ({ours})"
    return f"not held: ours {ours}, paper " + " < ".join(_SHORT[m] for m in r["paper_ordering"])


def figure_table(experiment: str, records: list[dict], first_summary: dict) -> str:
    """Markdown: one row per panel, ours beside the paper's, paired wins and the ordering verdict."""
    head = {
        "synthetic": "Figure 1 — synthetic single-index regression",
        "mnist": "Figure 2 — MNIST 7 vs 9",
        "higgs": "Figure 2 — Higgs (signal vs background)",
    }[experiment]
    lines = [
        f"### {head}",
        "",
        "| panel | NTK-KARE | after-kernel | DNN (MSE) | paper (KARE / after / DNN) | KARE beats after-kernel "
        "| KARE beats DNN | paper's ordering | untrained NTK | KARE beats untrained NTK | seed time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        o = r["ours"]
        paper = " / ".join(f"{r['paper'][m]:.3f}" for m in METHODS) if "paper" in r else "–"
        secs = "–" if r.get("seed_seconds") is None else f"{r['seed_seconds']:.0f}"
        lines.append(
            f"| {r['label']} | {_fmt(o.get('kare'))} | {_fmt(o.get('after_kernel'))} | {_fmt(o.get('dnn'))} | "
            f"{paper} | {_fmt_pair(r['pairs']['after_kernel'])} | {_fmt_pair(r['pairs']['dnn'])} | "
            f"{_verdict(r)} | {_fmt(r.get('control'))} | {_fmt_pair(r['pairs'].get('ntk_init'))} | {secs} |"
        )
    n = sorted({r["n_seeds"] for r in records if r.get("n_seeds")})
    lines += [
        "",
        "Test MSE. Kernel methods: the minimum over λ̃ of the seed-averaged curve ± the standard error over "
        "seeds at that λ̃ (how the paper's figures read; λ̃ picked on test data, as in the paper); DNN: mean ± "
        f'standard error over seeds ({"/".join(map(str, n)) or "?"} seeds). "KARE beats …": seeds on which '
        "NTK-KARE's best-λ̃ test MSE is lower, with the exact two-sided sign test p-value. \"paper's ordering\": "
        'whether the three means rank as the paper\'s. "untrained NTK": kernel ridge regression with the NTK of '
        "the initial network, the kernel NTK-KARE training starts from (a control, not in the paper). Seed time: "
        "the sum of the per-seed wall times "
        "(runs/seed_*.json), start-up excluded.",
    ]
    data = first_summary.get("data")
    if experiment == "mnist":
        note = (data or {}).get("note", "")
        lines.append(
            "MNIST: digits 7 (+1) vs 9 (−1), 1000/1000 train/test per seed"
            + (f"; {note}." if note else ".")
            + " The paper draws train from MNIST's training set and test from its test set."
        )
    if experiment == "higgs":
        lines.append(
            "Higgs: "
            + ((data or {}).get("note") or "see keras_kare.datasets.higgs")
            + ". The `Weight` column the paper's loader keeps as a feature is dropped (it is class-dependent, "
            "so it leaks the label); the paper's Higgs numbers are therefore not comparable."
        )
    return "\n".join(lines) + "\n"


def plot_figure(path: Path, experiment: str, summaries: dict, paper: dict) -> Optional[Path]:
    """The panels on a grid in the paper's layout (see the module docstring); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = list(summaries)
    rows = sorted({p[1] if experiment == "synthetic" else p[0] for p in panels})
    cols = sorted({p[0] if experiment == "synthetic" else p[1] for p in panels})
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(4.2 * len(cols), 3.4 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for p in panels:
        r, c = (p[1], p[0]) if experiment == "synthetic" else (p[0], p[1])
        ax = axes[rows.index(r), cols.index(c)]
        ax.set_visible(True)
        title = panel_label(experiment, p)
        if p in paper:
            title += "\npaper " + " / ".join(f"{v:.3f}" for v in paper[p])
        R.draw_panel(ax, summaries[p], title, legend=False)
    handles, labels = next(ax for ax in axes.flat if ax.get_visible()).get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
