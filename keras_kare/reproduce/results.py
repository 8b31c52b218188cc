"""Results of a reproduction run: rows → CSV/JSON, summary.json, markdown table, plot.

Rows are dicts with keys ``method`` (``kare``, ``ntk_init``, ``after_kernel``, ``dnn``),
``seed``, ``ridge`` (relative λ̃; None for the DNN), ``effective_ridge``,
``test_mse``, ``test_accuracy``, ``kare`` (training-data KARE = GCV at that
ridge), ``loo_mse``, ``train_mse``, ``train_seconds``, ``stopped_at``.

Units of work (one seed, one data set) are written atomically to
``DIR/runs/<key>.json`` as they finish; a run directory is never overwritten,
only continued with ``--resume`` under identical settings.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Optional

import numpy as np

from keras_kare.datasets.errors import DatasetError
from keras_kare.reproduce import stats as S

ROW_FIELDS = (
    "method",
    "seed",
    "ridge",
    "effective_ridge",
    "test_mse",
    "test_accuracy",
    "kare",
    "loo_mse",
    "train_mse",
    "train_seconds",
    "stopped_at",
)
KERNEL_METHODS = ("kare", "ntk_init", "after_kernel")
"""The kernel methods of a synthetic/MNIST run, in table order (``ntk_init``: the untrained control)."""
METHOD_LABELS = {
    "kare": "NTK-KARE",
    "after_kernel": "after-kernel",
    "dnn": "DNN (MSE)",
    "kare_es": "NTK-KARE, early-stopped",
    "kare_rel": "NTK-KARE, relative z",
    "ensemble": "NTK-KARE + after-kernel",
    "ensemble_es": "NTK-KARE + after-kernel, early-stopped",
    "after_kernel_es": "after-kernel, early-stopped",
    "dnn_es": "DNN (MSE), early-stopped",
    "ntk_init": "NTK at initialisation (untrained)",
    "kare_es0": "NTK-KARE, early-stopped, initial weights a candidate",
    "ensemble_es0": "NTK-KARE + after-kernel, early-stopped, initial weights a candidate",
    "after_kernel_es0": "after-kernel, early-stopped, initial weights a candidate",
    "dnn_es0": "DNN (MSE), early-stopped, initial weights a candidate",
    "kare_vs": "NTK-KARE, passes chosen on the validation half",
    "ensemble_vs": "NTK-KARE + after-kernel, passes chosen on the validation half",
    "after_kernel_vs": "after-kernel, passes chosen on the validation half",
    "dnn_vs": "DNN (MSE), passes chosen on the validation half",
}


class RunDirError(DatasetError):
    """The output folder cannot be used (exists with other results, or settings differ)."""


# ----------------------------------------------------------------- run folder
def prepare_run_dir(out: Path, settings: dict, resume: bool) -> Path:
    """Create ``out`` (or check it for ``--resume``) and record the settings.

    Raises:
        RunDirError: ``out`` holds files and ``resume`` is False, or the stored
            settings differ from ``settings``.
    """
    out = Path(out)
    settings_file = out / "settings.json"
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a folder (expected a new or resumable results folder).")
    if out.is_dir() and any(out.iterdir()):
        if not resume:
            raise RunDirError(
                f"{out}: folder already holds results; pass --resume to continue that run, or choose a new --out."
            )
        check_resumable(out, settings)
        return out
    (out / "runs").mkdir(parents=True, exist_ok=True)
    write_json(settings_file, settings)
    return out


def check_resumable(out: Path, settings: dict) -> None:
    """Check that ``out`` is a run folder whose stored settings are ``settings`` (``data_dir`` compared as a path).

    Raises:
        RunDirError: no ``settings.json`` in ``out``, or stored settings that differ (the message lists the keys).
    """
    settings_file = Path(out) / "settings.json"
    if not settings_file.is_file():
        raise RunDirError(f"{settings_file}: missing, so {out} is not a keras-kare run folder that can be resumed.")
    stored = json.loads(settings_file.read_text())
    diff = sorted(k for k in set(stored) | set(settings) if not _same_setting(k, stored.get(k), settings.get(k)))
    if diff:
        raise RunDirError(f"{settings_file}: settings differ from this command's ({', '.join(diff)}); use a new --out.")


def _same_setting(key: str, a, b) -> bool:
    if key == "data_dir" and a is not None and b is not None:
        return Path(a).resolve() == Path(b).resolve()
    return _canonical(a) == _canonical(b)


def _canonical(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=_json_default))


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj):
    """NaN/inf → None so that the JSON is standard."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    return obj


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temporary file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def unit_path(out: Path, key: str) -> Path:
    return Path(out) / "runs" / f"{key}.json"


def load_unit(out: Path, key: str) -> Optional[dict]:
    path = unit_path(out, key)
    return json.loads(path.read_text()) if path.is_file() else None


def save_unit(out: Path, key: str, payload: dict) -> None:
    write_json(unit_path(out, key), payload)


# ----------------------------------------------------------------- aggregation
def write_rows(out: Path, rows: list[dict]) -> None:
    """``results.csv`` and ``results.json``: one row per method × ridge × seed."""
    out = Path(out)
    write_json(out / "results.json", rows)
    tmp = out / "results.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in ROW_FIELDS})
    os.replace(tmp, out / "results.csv")


def summarise(rows: list[dict], metric: str = "test_mse", per_seed_info: Optional[dict] = None) -> dict:
    """Per method: best-over-ridge and KARE-selected test errors, over seeds, with paired statistics.

    For the kernel methods (:data:`KERNEL_METHODS`: ``kare``, the untrained control ``ntk_init``, ``after_kernel``):
      ``best_test_mse``: mean over seeds of min over the ridge grid (picked on test data, as the paper);
      ``selected_test_mse``: mean over seeds of the test MSE at the ridge with the smallest training KARE;
      ``best_ridge_of_mean_curve`` / ``mean_curve_min_test_mse``: the minimum of the seed-averaged curve
      (how the paper's figures read).
    For ``dnn``: ``test_mse``. With ``metric="test_accuracy"`` the same for accuracies (max instead of min).
    Means come with their standard deviation (``_std``) and standard error (``_se``) over seeds.

    ``seed_stats`` (see :mod:`keras_kare.reproduce.stats`) holds, for the
    test-picked (``"best"``) and the KARE-picked (``"kare_selected"``) ridge,
    the per-seed table, win counts and paired comparisons of every pair of
    methods. ``per_seed_info`` (``{seed: {column: value}}``, e.g. a difficulty
    indicator ``{"‖w‖": 2.9}``) adds columns to the per-seed table.
    """
    out = {}
    per_seed = {}
    seeds = sorted({r["seed"] for r in rows})
    for method in KERNEL_METHODS:
        mr = [r for r in rows if r["method"] == method]
        if not mr:
            continue
        ridges = sorted({r["ridge"] for r in mr})
        table = np.full((len(seeds), len(ridges)), np.nan)
        kare = np.full_like(table, np.nan)
        acc = np.full_like(table, np.nan)
        val = np.full_like(table, np.nan)
        for r in mr:
            i, j = seeds.index(r["seed"]), ridges.index(r["ridge"])
            table[i, j] = r["test_mse"]
            kare[i, j] = np.inf if r["kare"] is None else r["kare"]
            acc[i, j] = np.nan if r.get("test_accuracy") is None else r["test_accuracy"]
            val[i, j] = np.nan if r.get("val_mse") is None else r["val_mse"]
        best = np.nanmin(table, axis=1)
        sel_idx = np.argmin(np.where(np.isfinite(kare), kare, np.inf), axis=1)
        selected = table[np.arange(len(seeds)), sel_idx]
        curve = np.nanmean(table, axis=0)
        per_seed[method] = {"best": best, "kare_selected": selected}
        validated = {}
        # --protocol validated: the ridge with the smallest held-out error (a ridge at which the kernel system is
        # not defined has NaN there and is never picked)
        if np.isfinite(val).any(axis=1).all():
            val_idx = np.argmin(np.where(np.isfinite(val), val, np.inf), axis=1)
            per_seed[method]["validated"] = table[np.arange(len(seeds)), val_idx]
            validated = {
                "validated_test_mse": float(np.mean(per_seed[method]["validated"])),
                "validated_test_mse_std": float(np.std(per_seed[method]["validated"])),
                "validated_test_mse_se": S.standard_error(per_seed[method]["validated"]),
                "validated_ridges": [ridges[j] for j in val_idx],
            }
        entry = {
            **validated,
            "best_test_mse": float(np.mean(best)),
            "best_test_mse_std": float(np.std(best)),
            "best_test_mse_se": S.standard_error(best),
            "selected_test_mse": float(np.mean(selected)),
            "selected_test_mse_std": float(np.std(selected)),
            "selected_test_mse_se": S.standard_error(selected),
            "selected_ridges": [ridges[j] for j in sel_idx],
            "mean_curve_min_test_mse": float(np.nanmin(curve)),
            "best_ridge_of_mean_curve": ridges[int(np.nanargmin(curve))],
            "ridges": ridges,
            "mean_test_mse_per_ridge": curve.tolist(),
            "std_test_mse_per_ridge": np.nanstd(table, axis=0).tolist(),
            "se_test_mse_per_ridge": [
                S.standard_error(col[np.isfinite(col)]) if np.isfinite(col).any() else None for col in table.T
            ],
        }
        if np.isfinite(acc).any():
            entry["best_test_accuracy"] = float(np.mean(np.nanmax(acc, axis=1)))
            entry["selected_test_accuracy"] = float(np.mean(acc[np.arange(len(seeds)), sel_idx]))
        out[method] = entry
    dr = sorted((r for r in rows if r["method"] == "dnn"), key=lambda r: r["seed"])
    if dr:
        vals = np.array([r["test_mse"] for r in dr])
        out["dnn"] = {
            "test_mse": float(vals.mean()),
            "test_mse_std": float(vals.std()),
            "test_mse_se": S.standard_error(vals),
        }
        if [r["seed"] for r in dr] == seeds:
            per_seed["dnn"] = {"best": vals, "kare_selected": vals, "validated": vals}  # no ridge to pick
        accs = [r["test_accuracy"] for r in dr if r.get("test_accuracy") is not None]
        if accs:
            out["dnn"]["test_accuracy"] = float(np.mean(accs))
    out["n_seeds"] = len(seeds)
    per_seed = {m: v for m, v in per_seed.items() if all(np.all(np.isfinite(x)) for x in v.values())}
    if per_seed:
        variants = ["best", "kare_selected"] + (
            ["validated"] if all("validated" in v for v in per_seed.values()) else []
        )
        out["seed_stats"] = {
            variant: S.seed_statistics(
                {m: v[variant] for m, v in per_seed.items()}, seeds, per_seed_info=per_seed_info, labels=METHOD_LABELS
            )
            for variant in variants
        }
    return out


def write_summary(
    out: Path, rows: list[dict], settings: dict, extra: Optional[dict] = None, per_seed_info: Optional[dict] = None
) -> dict:
    """``summary.json``: {"kare": {...}, "after_kernel": {...}, "dnn": {...}, "seed_stats": {...}, "settings": {...}}.

    ``per_seed_info``: optional ``{seed: {column: value}}`` (e.g. ``{0: {"‖w‖": 2.9}}``)
    shown beside each seed's errors in the per-seed table.
    """
    summary = summarise(rows, per_seed_info=per_seed_info)
    summary["settings"] = settings
    if extra:
        summary.update(extra)
    write_json(Path(out) / "summary.json", summary)
    return summary


def _pm(mean, spread) -> str:
    if spread is None or not math.isfinite(spread):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {spread:.4f}"


def _se(entry: dict, key: str):
    """The standard error stored next to ``key`` (older summaries only hold the std)."""
    return entry.get(f"{key}_se", entry.get(f"{key}_std"))


def markdown_table(summary: dict, paper: Optional[dict] = None, title: str = "") -> str:
    """Mean ± SE over seeds, best ridge per method, the ridge KARE/GCV picks, and paired per-seed statistics."""
    lines = []
    if title:
        lines += [f"### {title}", ""]
    n = summary.get("n_seeds", "?")
    has_paper = bool(paper)
    head = (
        "| method | best test MSE (mean over seeds of each seed's best λ̃, picked on test) "
        "| λ̃ minimising the mean curve "
        "| test MSE at KARE-picked λ̃ (train data only) |"
    )
    sep = "|---|---|---|---|"
    if has_paper:
        head += " paper (best) |"
        sep += "---|"
    validated = any("validated_test_mse" in summary.get(m, {}) for m in KERNEL_METHODS)
    if validated:
        head = head.replace(
            " (train data only) |", " (train data only) | test MSE at λ̃ picked on held-out training rows |"
        )
        sep += "---|"
    lines += [head, sep]
    for method in KERNEL_METHODS:
        s = summary.get(method)
        if not s:
            continue
        picked = sorted(set(s["selected_ridges"]))
        row = (
            f"| {METHOD_LABELS[method]} | {_pm(s['best_test_mse'], _se(s, 'best_test_mse'))} | "
            f"{s['best_ridge_of_mean_curve']:g} | {_pm(s['selected_test_mse'], _se(s, 'selected_test_mse'))} "
            f"(λ̃ ∈ {{{', '.join(f'{p:g}' for p in picked)}}}) |"
        )
        if validated:
            row += (
                f" {_pm(s['validated_test_mse'], _se(s, 'validated_test_mse'))} |"
                if "validated_test_mse" in s
                else " – |"
            )
        if has_paper:
            row += f" {paper.get(method, '–')} |"
        lines.append(row)
    if "dnn" in summary:
        s = summary["dnn"]
        row = f"| {METHOD_LABELS['dnn']} | {_pm(s['test_mse'], _se(s, 'test_mse'))} | – | – |" + (
            " – |" if validated else ""
        )
        if has_paper:
            row += f" {paper.get('dnn', '–')} |"
        lines.append(row)
    lines += [
        "",
        (
            f"Test MSE, mean ± standard error over {n} seeds. The paper reports the best ridge picked on test "
            "data (mean over 10 seeds); the KARE column picks λ̃ per seed from training data alone."
        ),
    ]
    if "best_test_accuracy" in summary.get("kare", {}):
        acc = ", ".join(
            f"{METHOD_LABELS[m]} {summary[m]['best_test_accuracy' if m != 'dnn' else 'test_accuracy']:.4f}"
            for m in (*KERNEL_METHODS, "dnn")
            if m in summary
        )
        lines.append(f"Test accuracy (best λ̃): {acc}.")
    if "seed_stats" in summary:
        lines += [""] + seed_stats_markdown(summary["seed_stats"])
    return "\n".join(lines) + "\n"


_VARIANT_TEXT = {
    "best": "λ̃ picked on test data per seed (the paper's protocol)",
    "kare_selected": "λ̃ picked by KARE on training data per seed",
    "validated": "λ̃ picked on held-out training rows per seed (validated protocol)",
}


def seed_stats_markdown(seed_stats: dict) -> list[str]:
    """Per-seed table (with any difficulty columns), win counts and paired statements, as markdown lines."""
    best, sel = seed_stats["best"], seed_stats["kare_selected"]
    methods = list(best["mean"])
    info = best.get("info_columns", [])
    cols = [f"{METHOD_LABELS.get(m, m)} best" for m in methods if m != "dnn"]
    cols += [f"{METHOD_LABELS.get(m, m)} KARE-picked" for m in methods if m != "dnn"]
    cols += [METHOD_LABELS.get(m, m) for m in methods if m == "dnn"]
    lines = [
        "#### Per seed (test MSE)",
        "",
        "| seed | " + " | ".join(info + cols + ["lowest (best λ̃)"]) + " |",
        "|" + "---|" * (2 + len(info) + len(cols)),
    ]
    for rb, rs in zip(best["per_seed"], sel["per_seed"]):
        vals = [rb[m] for m in methods if m != "dnn"] + [rs[m] for m in methods if m != "dnn"]
        vals += [rb[m] for m in methods if m == "dnn"]
        winner = min(methods, key=lambda m: rb[m])
        tied = sum(rb[m] == rb[winner] for m in methods) > 1
        cells = [_cell(rb.get(c)) for c in info] + [f"{v:.4f}" for v in vals]
        cells.append("tie" if tied else METHOD_LABELS.get(winner, winner))
        lines.append(f"| {rb['seed']} | " + " | ".join(cells) + " |")
    for variant, st in seed_stats.items():
        wins = st["wins"]
        n = len(st["per_seed"])
        lines += [
            "",
            f"**{_VARIANT_TEXT[variant]}** — seeds won: "
            + ", ".join(f"{METHOD_LABELS.get(m, m)} {wins[m]}/{n}" for m in methods)
            + (f", tied {wins['tied']}" if wins.get("tied") else "")
            + ".",
        ]
        lines += [f"- {p['statement']}." for p in st["pairs"]]
    lines += [
        "",
        (
            "Paired differences are per-seed test MSE (first − second; negative favours the first); the "
            "interval is a percentile bootstrap over seeds and the p-value an exact two-sided sign test."
        ),
    ]
    return lines


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if isinstance(value, (float, np.floating)) else str(value)


def draw_panel(ax, summary: dict, title: str = "", legend: bool = True) -> None:
    """Test MSE vs relative ridge on ``ax``: a line per kernel method and the DNN level, each ± one standard error.

    For non-negative errors mean − SE ≥ 0, so a band stays above zero (see :mod:`keras_kare.reproduce.stats`).
    """
    colours = {"kare": "tab:blue", "ntk_init": "tab:gray", "after_kernel": "tab:orange", "dnn": "tab:green"}
    for method in KERNEL_METHODS:
        s = summary.get(method)
        if not s:
            continue
        r, m = np.array(s["ridges"]), np.array(s["mean_test_mse_per_ridge"])
        se = np.array(
            [np.nan if v is None else v for v in s.get("se_test_mse_per_ridge", [None] * len(r))], dtype=float
        )
        style = ":" if method == "ntk_init" else "o-"
        ax.plot(r, m, style, color=colours[method], label=f"{METHOD_LABELS[method]} (± SE)", ms=4)
        if np.isfinite(se).any():
            ax.fill_between(r, m - se, m + se, color=colours[method], alpha=0.15)
    if "dnn" in summary:
        d = summary["dnn"]
        ax.axhline(d["test_mse"], color=colours["dnn"], ls="--", label=METHOD_LABELS["dnn"] + " (± SE)")
        se = _se(d, "test_mse")
        if se is not None and math.isfinite(se):
            ax.axhspan(d["test_mse"] - se, d["test_mse"] + se, color=colours["dnn"], alpha=0.1)
    ax.set_xscale("log")
    ax.set_xlabel("relative ridge λ̃")
    ax.set_ylabel("test MSE")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend()


def plot(out_png: Path, summary: dict, title: str = "") -> Optional[Path]:
    """One run's figure (:func:`draw_panel`) written to ``out_png``; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    draw_panel(ax, summary, title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)
