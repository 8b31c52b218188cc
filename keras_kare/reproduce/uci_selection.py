"""Choosing among a UCI grid's records: validation accuracy, the ridge by KARE, the paper's optimistic best.

A record is one trained configuration's result for one method (see
:func:`keras_kare.reproduce.uci_protocol.neural_trial`): its evaluation
accuracy per ridge (kernel methods) or the network's one (DNN), and the
training KARE per ridge.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from keras_kare.reproduce.uci_recipes import KERNEL_METHODS, TRIAL_METHODS


def _accuracies(record: dict) -> np.ndarray:
    """A record's evaluation accuracies as floats (one per ridge, or the network's one), NaN where undefined.

    A ridge at which the kernel system is not positive definite has no
    accuracy (NaN in memory, None once stored as JSON); it never counts as a
    best.
    """
    values = np.atleast_1d(np.asarray(record["accuracy"], dtype=object))
    return np.array([np.nan if a is None else float(a) for a in values], dtype=np.float64)


def best_index(accuracies) -> int:
    """Index of the highest finite accuracy (the first on ties); at least one must be finite."""
    return int(np.nanargmax(np.asarray(accuracies, dtype=np.float64)))


def _best_accuracy(record: dict) -> float:
    """The highest finite evaluation accuracy of a record (NaN if none is)."""
    acc = _accuracies(record)
    return float(np.nanmax(acc)) if np.isfinite(acc).any() else float("nan")


def kare_pick(record: dict) -> Optional[int]:
    """Index of the ridge with the smallest finite training KARE (None if none is finite)."""
    k = np.array([np.inf if v is None or not math.isfinite(v) else v for v in record["kare"]])
    return int(np.argmin(k)) if np.isfinite(k).any() else None


def validation_accuracy(record: dict) -> Optional[float]:
    """Accuracy on the evaluation rows at the training-data ridge (kernel methods) or of the network (DNN)."""
    if record["method"] not in KERNEL_METHODS:
        return record["accuracy"]
    j = kare_pick(record)
    return None if j is None else record["accuracy"][j]


def choose(records: list[dict], method: str) -> Optional[dict]:
    """The ``method`` record with the best validation accuracy (first in grid order on ties)."""
    ranked = ranked_choices(records, method)
    return ranked[0] if ranked else None


def ranked_choices(records: list[dict], method: str) -> list[dict]:
    """The ``method`` records with a finite validation accuracy, best first (grid order on ties)."""
    usable = [r for r in records if r["method"] == method and fold_usable(r)]
    return sorted(usable, key=lambda r: -validation_accuracy(r))


def paper_best(records: list[dict], method: str) -> float:
    """Max over configurations and ridges of the evaluation accuracy (the paper's optimistic number)."""
    return _best_accuracy(paper_best_record(records, method))


def kare_selected(records: list[dict], method: str) -> dict:
    """Configuration and ridge with the smallest training KARE over the whole grid (biased for NTK-KARE, whose
    kernel was trained to make exactly this small); kept for comparison. ``accuracy`` is None when no
    configuration has a finite KARE."""
    recs = [r for r in records if r["method"] == method]
    k = np.array([[np.inf if v is None or not math.isfinite(v) else v for v in r["kare"]] for r in recs])
    if not np.isfinite(k).any():
        return {"accuracy": None, "config": None, "ridge_index": None}
    i, j = np.unravel_index(np.argmin(k), k.shape)
    return {"accuracy": float(recs[i]["accuracy"][j]), "config": config_of(recs[i]), "ridge_index": int(j)}


def config_of(r: dict) -> dict:
    return {"depth": r["depth"], "width": r["width"], "lr": r["lr"]}


def training_kind(method: str) -> str:
    """The training kind that yields ``method``."""
    return next(k for k, ms in TRIAL_METHODS.items() if method in ms)


def ensemble_accuracy(members: list[Optional[dict]], y_ev, key: str = "_pred_pick") -> Optional[float]:
    """Accuracy of the mean of the members' outputs (``key``: at the KARE-picked or most accurate ridge).

    None when a member is missing or kept no outputs (no finite training KARE).

    Example:
        >>> a = {"_pred_pick": np.array([1.0, -0.2])}; b = {"_pred_pick": np.array([-0.5, -0.4])}
        >>> ensemble_accuracy([a, b], np.array([1.0, -1.0]))
        1.0
    """
    from keras_kare.reproduce.runner import score

    if any(m is None or m.get(key) is None for m in members):
        return None
    return score(np.mean([m[key] for m in members], axis=0), y_ev)[1]


def paper_best_record(records: list[dict], method: str) -> Optional[dict]:
    """The ``method`` record with the highest evaluation accuracy over its ridges (first on ties)."""
    recs = [r for r in records if r["method"] == method]
    return max(recs, key=lambda r: np.nan_to_num(_best_accuracy(r), nan=-np.inf)) if recs else None


def fold_usable(record: dict) -> bool:
    """Whether a training gave a number: a finite training KARE at some ridge and finite outputs (no label needed)."""
    if "passes" in record and record["passes"] is None:  # a step-selected record whose monitor found no score
        return False
    acc = validation_accuracy(record)
    return acc is not None and math.isfinite(acc)
