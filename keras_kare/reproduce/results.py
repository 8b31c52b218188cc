"""Results of a reproduction run: rows → CSV/JSON, summary.json, markdown table, plot.

Rows are dicts with keys ``method`` (``kare``, ``after_kernel``, ``dnn``),
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

ROW_FIELDS = ("method", "seed", "ridge", "effective_ridge", "test_mse", "test_accuracy", "kare", "loo_mse",
              "train_mse", "train_seconds", "stopped_at")
METHOD_LABELS = {"kare": "NTK-KARE", "after_kernel": "after-kernel", "dnn": "DNN (MSE)"}


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
        if not settings_file.is_file():
            raise RunDirError(f"{settings_file}: missing, so {out} is not a keras-kare run folder that can be resumed.")
        stored = json.loads(settings_file.read_text())
        if _canonical(stored) != _canonical(settings):
            diff = sorted(k for k in set(stored) | set(settings) if _canonical(stored.get(k)) != _canonical(settings.get(k)))
            raise RunDirError(f"{settings_file}: settings differ from this command's ({', '.join(diff)}); use a new --out.")
        return out
    (out / "runs").mkdir(parents=True, exist_ok=True)
    write_json(settings_file, settings)
    return out


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


def summarise(rows: list[dict], metric: str = "test_mse") -> dict:
    """Per method: best-over-ridge and KARE-selected test errors (means and stds over seeds).

    For ``kare`` and ``after_kernel``:
      ``best_test_mse``: mean over seeds of min over the ridge grid (picked on test data, as the paper);
      ``selected_test_mse``: mean over seeds of the test MSE at the ridge with the smallest training KARE;
      ``best_ridge_of_mean_curve`` / ``mean_curve_min_test_mse``: the minimum of the seed-averaged curve
      (how the paper's figures read).
    For ``dnn``: ``test_mse``. With ``metric="test_accuracy"`` the same for accuracies (max instead of min).
    """
    out = {}
    seeds = sorted({r["seed"] for r in rows})
    for method in ("kare", "after_kernel"):
        mr = [r for r in rows if r["method"] == method]
        if not mr:
            continue
        ridges = sorted({r["ridge"] for r in mr})
        table = np.full((len(seeds), len(ridges)), np.nan)
        kare = np.full_like(table, np.nan)
        acc = np.full_like(table, np.nan)
        for r in mr:
            i, j = seeds.index(r["seed"]), ridges.index(r["ridge"])
            table[i, j] = r["test_mse"]
            kare[i, j] = np.inf if r["kare"] is None else r["kare"]
            acc[i, j] = np.nan if r.get("test_accuracy") is None else r["test_accuracy"]
        best = np.nanmin(table, axis=1)
        sel_idx = np.argmin(np.where(np.isfinite(kare), kare, np.inf), axis=1)
        selected = table[np.arange(len(seeds)), sel_idx]
        curve = np.nanmean(table, axis=0)
        entry = {
            "best_test_mse": float(np.mean(best)),
            "best_test_mse_std": float(np.std(best)),
            "selected_test_mse": float(np.mean(selected)),
            "selected_test_mse_std": float(np.std(selected)),
            "selected_ridges": [ridges[j] for j in sel_idx],
            "mean_curve_min_test_mse": float(np.nanmin(curve)),
            "best_ridge_of_mean_curve": ridges[int(np.nanargmin(curve))],
            "ridges": ridges,
            "mean_test_mse_per_ridge": curve.tolist(),
            "std_test_mse_per_ridge": np.nanstd(table, axis=0).tolist(),
        }
        if np.isfinite(acc).any():
            entry["best_test_accuracy"] = float(np.mean(np.nanmax(acc, axis=1)))
            entry["selected_test_accuracy"] = float(np.mean(acc[np.arange(len(seeds)), sel_idx]))
        out[method] = entry
    dr = [r for r in rows if r["method"] == "dnn"]
    if dr:
        vals = np.array([r["test_mse"] for r in dr])
        out["dnn"] = {"test_mse": float(vals.mean()), "test_mse_std": float(vals.std())}
        accs = [r["test_accuracy"] for r in dr if r.get("test_accuracy") is not None]
        if accs:
            out["dnn"]["test_accuracy"] = float(np.mean(accs))
    out["n_seeds"] = len(seeds)
    return out


def write_summary(out: Path, rows: list[dict], settings: dict, extra: Optional[dict] = None) -> dict:
    """``summary.json``: {"kare": {...}, "after_kernel": {...}, "dnn": {...}, "settings": {...}}."""
    summary = summarise(rows)
    summary["settings"] = settings
    if extra:
        summary.update(extra)
    write_json(Path(out) / "summary.json", summary)
    return summary


def _pm(mean, std) -> str:
    return f"{mean:.4f} ± {std:.4f}"


def markdown_table(summary: dict, paper: Optional[dict] = None, title: str = "") -> str:
    """Mean ± std over seeds, best ridge per method, and the ridge KARE/GCV picks on training data."""
    lines = []
    if title:
        lines += [f"### {title}", ""]
    n = summary.get("n_seeds", "?")
    has_paper = bool(paper)
    head = "| method | best test MSE (over λ̃, picked on test) | λ̃ of best mean | test MSE at KARE-picked λ̃ (train data only) |"
    sep = "|---|---|---|---|"
    if has_paper:
        head += " paper (best) |"
        sep += "---|"
    lines += [head, sep]
    for method in ("kare", "after_kernel"):
        s = summary.get(method)
        if not s:
            continue
        picked = sorted(set(s["selected_ridges"]))
        row = (f"| {METHOD_LABELS[method]} | {_pm(s['best_test_mse'], s['best_test_mse_std'])} | "
               f"{s['best_ridge_of_mean_curve']:g} | {_pm(s['selected_test_mse'], s['selected_test_mse_std'])} "
               f"(λ̃ ∈ {{{', '.join(f'{p:g}' for p in picked)}}}) |")
        if has_paper:
            row += f" {paper.get(method, '–')} |"
        lines.append(row)
    if "dnn" in summary:
        s = summary["dnn"]
        row = f"| {METHOD_LABELS['dnn']} | {_pm(s['test_mse'], s['test_mse_std'])} | – | – |"
        if has_paper:
            row += f" {paper.get('dnn', '–')} |"
        lines.append(row)
    lines += ["", f"Test MSE, mean ± std over {n} seeds. The paper reports the best ridge picked on test data "
              "(mean over 10 seeds); the KARE column picks λ̃ per seed from training data alone."]
    if "best_test_accuracy" in summary.get("kare", {}):
        acc = ", ".join(
            f"{METHOD_LABELS[m]} {summary[m]['best_test_accuracy' if m != 'dnn' else 'test_accuracy']:.4f}"
            for m in ("kare", "after_kernel", "dnn") if m in summary
        )
        lines.append(f"Test accuracy (best λ̃): {acc}.")
    return "\n".join(lines) + "\n"


def plot(out_png: Path, summary: dict, title: str = "") -> Optional[Path]:
    """Test MSE vs relative ridge, one line per kernel method (±1 std band), DNN horizontal."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    colours = {"kare": "tab:blue", "after_kernel": "tab:orange", "dnn": "tab:green"}
    for method in ("kare", "after_kernel"):
        s = summary.get(method)
        if not s:
            continue
        r, m, sd = np.array(s["ridges"]), np.array(s["mean_test_mse_per_ridge"]), np.array(s["std_test_mse_per_ridge"])
        ax.plot(r, m, "o-", color=colours[method], label=METHOD_LABELS[method], ms=4)
        ax.fill_between(r, m - sd, m + sd, color=colours[method], alpha=0.15)
    if "dnn" in summary:
        ax.axhline(summary["dnn"]["test_mse"], color=colours["dnn"], ls="--", label=METHOD_LABELS["dnn"])
    ax.set_xscale("log")
    ax.set_xlabel("relative ridge λ̃")
    ax.set_ylabel("test MSE")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)
