"""Model selection on the UCI collection: the paper's protocol and the validated one.

Each data set of the collection (Fernández-Delgado et al. 2014) ships two
splittings: ``conxuntos.dat`` (one train / validation split, 50/50) and
``conxuntos_kfold.dat`` (four train / test folds).

- ``paper`` (the KARE paper's Table 1, Schwab et al. 2025): train every
  configuration on the ``conxuntos.dat`` training half and report the best
  accuracy over configurations *and* ridges on its second half. The number is
  picked on the data it is reported on, so it is **optimistic**.
- ``validated`` (Fernández-Delgado et al. 2014, as used by Arora et al. 2020
  for NTKs on this collection): choose each method's configuration on the
  ``conxuntos.dat`` split only — train on its first half, compare
  configurations by accuracy on its second half; within one kernel the ridge
  is the one with the smallest KARE (= GCV) on the training rows, valid for a
  fixed kernel — then retrain the chosen configuration on each of the four
  ``conxuntos_kfold.dat`` training folds (ridge again by KARE on that fold's
  training rows) and report the mean accuracy on their test folds. The
  published train/validation split is used rather than an inner k-fold so
  that the numbers are comparable with those two studies, and because it costs
  one training per configuration instead of k. Selection never reads
  ``conxuntos_kfold.dat``. Caveat of the published splits: the validation
  half is part of the data set, so its rows also appear in test folds; the
  protocol keeps evaluation *folds* out of selection, not evaluation rows.
- Classical baselines (:mod:`keras_kare.reproduce.baselines`) tune their own
  hyper-parameters on training rows (CV or closed-form LOO): under
  ``validated`` they are tuned and scored on each k-fold split (nested);
  their ``paper`` number is the best grid point on the ``conxuntos.dat``
  second half, like the networks'.

Every training goes through a ``trial`` function (default :func:`neural_trial`),
which tests replace to watch which rows each phase sees.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Optional

import numpy as np

from keras_kare.reproduce.eta import format_seconds
from keras_kare.trainer_pool import TrainerPool

logger = logging.getLogger("keras_kare.reproduce")

PROTOCOLS = ("paper", "validated")
NEURAL = ("kare", "after_kernel", "dnn")
PROTOCOL_TEXT = {
    "paper": "paper protocol: best configuration and ridge picked on the evaluation split (optimistic)",
    "validated": (
        "validated protocol: configuration picked on the conxuntos.dat validation split, ridge by KARE on "
        "training rows; mean accuracy of the 4 conxuntos_kfold.dat test folds"
    ),
}


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, received {protocol!r}.")
    return protocol


def uci_configs(s: dict, kare_lrs_by_depth: dict):
    """The grid: (kind, depth, width, lr) with kind ``kare`` or ``dnn`` (a DNN also yields its after-kernel)."""
    for depth in s["depths"]:
        for width in s["widths"]:
            for lr in s["kare_lrs"] or kare_lrs_by_depth.get(depth, kare_lrs_by_depth[max(kare_lrs_by_depth)]):
                yield "kare", depth, width, lr
            for lr in s["dnn_lrs"]:
                yield "dnn", depth, width, lr


def split(ds, fold: Optional[int]):
    """``(x_tr, y_tr, labels_tr, x_ev, y_ev, labels_ev)`` of the conxuntos split (``fold=None``) or a k-fold."""
    from keras_kare.datasets.uci import uci_split

    x_tr, y_tr, x_ev, y_ev, labels_ev = uci_split(ds, fold)
    labels_tr = ds.labels[ds.train_index if fold is None else ds.kfold[fold][0]]
    return x_tr, y_tr, labels_tr, x_ev, y_ev, labels_ev


def neural_trial(
    kind: str, depth: int, width: int, lr: float, x_tr, y_tr, x_ev, y_ev, s: dict, pool=None
) -> list[dict]:
    """Train one configuration; records with evaluation accuracy per ridge and training KARE per ridge.

    ``kind="kare"`` gives one ``kare`` record; ``kind="dnn"`` a ``dnn`` record
    (one accuracy) and an ``after_kernel`` record (KRR with the trained DNN's NTK).
    KARE trains on the NTK mode KRR uses (``s["kernel"]``). A
    :class:`~keras_kare.trainer_pool.TrainerPool` reuses compiled steps
    across configurations of one architecture.
    """
    import keras

    from keras_kare.initializers import build_mlp
    from keras_kare.reproduce.runner import krr_path, score, train_dnn, train_kare

    y_fit = y_tr if y_tr.ndim > 1 else y_tr[:, None]
    keras.utils.set_random_seed(s["seed"])
    net = build_mlp(x_tr.shape[1], depth, width, y_fit.shape[1], seed=s["seed"])
    base = {"depth": depth, "width": width, "lr": lr}
    if kind == "kare":
        model, info = train_kare(
            net, x_tr, y_fit, s["kare_ridge"], lr, s["kare_steps"], None, _quiet, kernel=s["kernel"], pool=pool
        )
        res = krr_path(model, x_tr, y_tr, x_ev, y_ev, s["ridges"], s["kernel"])
        return [
            {
                "method": "kare",
                **base,
                "accuracy": res["test_accuracy"].tolist(),
                "kare": res["kare"].tolist(),
                "stopped_at": info["stopped_at"],
            }
        ]
    net, info = train_dnn(net, x_tr, y_fit, lr, s["dnn_steps"], min(len(x_tr), s["dnn_batch_size"]), _quiet, pool=pool)
    pred = net.predict(x_ev, batch_size=4096, verbose=0)
    _, acc = score(pred if y_ev.ndim > 1 else pred[:, 0], y_ev)
    res = krr_path(net, x_tr, y_tr, x_ev, y_ev, s["ridges"], s["kernel"])
    return [
        {"method": "dnn", **base, "accuracy": acc, "stopped_at": info["stopped_at"]},
        {"method": "after_kernel", **base, "accuracy": res["test_accuracy"].tolist(), "kare": res["kare"].tolist()},
    ]


def _quiet(msg: str) -> None:
    """Per-step training logs would drown the per-data-set log."""


def kare_pick(record: dict) -> Optional[int]:
    """Index of the ridge with the smallest finite training KARE (None if none is finite)."""
    k = np.array([np.inf if v is None or not math.isfinite(v) else v for v in record["kare"]])
    return int(np.argmin(k)) if np.isfinite(k).any() else None


def validation_accuracy(record: dict) -> Optional[float]:
    """Accuracy on the evaluation rows at the training-data ridge (kernel methods) or of the network (DNN)."""
    if record["method"] == "dnn":
        return record["accuracy"]
    j = kare_pick(record)
    return None if j is None else record["accuracy"][j]


def choose(records: list[dict], method: str) -> Optional[dict]:
    """The ``method`` record with the best validation accuracy (first in grid order on ties)."""
    best, best_acc = None, -math.inf
    for r in records:
        if r["method"] != method:
            continue
        acc = validation_accuracy(r)
        if acc is not None and acc > best_acc:
            best, best_acc = r, acc
    return best


def paper_best(records: list[dict], method: str) -> float:
    """Max over configurations and ridges of the evaluation accuracy (the paper's optimistic number)."""
    return float(max(np.max(r["accuracy"]) for r in records if r["method"] == method))


def kare_selected(records: list[dict], method: str) -> dict:
    """Configuration and ridge with the smallest training KARE over the whole grid (biased for NTK-KARE, whose
    kernel was trained to make exactly this small); kept for comparison. ``accuracy`` is None when no
    configuration has a finite KARE."""
    recs = [r for r in records if r["method"] == method]
    k = np.array([[np.inf if v is None or not math.isfinite(v) else v for v in r["kare"]] for r in recs])
    if not np.isfinite(k).any():
        return {"accuracy": None, "config": None, "ridge_index": None}
    i, j = np.unravel_index(np.argmin(k), k.shape)
    return {"accuracy": float(recs[i]["accuracy"][j]), "config": _config(recs[i]), "ridge_index": int(j)}


def _config(r: dict) -> dict:
    return {"depth": r["depth"], "width": r["width"], "lr": r["lr"]}


def _kind(method: str) -> str:
    return "kare" if method == "kare" else "dnn"


class RunClock:
    """Progress of a UCI run: a line per training with the time left, and a whole-run estimate after the first.

    Example:
        >>> clock = RunClock(2, print)
        >>> clock.trained(1.5, "iris: kare depth 1 width 128 lr 10", "best accuracy 96.0%")  # doctest: +ELLIPSIS
        first configuration (iris: kare depth 1 width 128 lr 10) took 1.5s; estimated total for 2 trainings: ...
        iris: kare depth 1 width 128 lr 10: best accuracy 96.0% in 1.5s (1/2 trainings, about ... left)
    """

    def __init__(self, total_trainings: int, log: Callable[[str], None]):
        self.total, self.log, self.done, self.t0, self.first = total_trainings, log, 0, time.time(), None

    def trained(self, seconds: float, what: str = "", result: str = ""):
        """Count one training of ``seconds`` and log it (``what``: the configuration; ``result``: its outcome)."""
        self.done += 1
        if self.first is None:
            self.first = seconds
            est = seconds * self.total
            self.log(
                f"first configuration{(' (' + what + ')') if what else ''} took {seconds:.1f}s; estimated total "
                f"for {self.total} trainings: {format_seconds(est)} (rough: assumes every training costs the same)"
            )
        self.log(
            f"{what or 'training'}: {(result + ' in ') if result else ''}{seconds:.1f}s "
            f"({self.done}/{self.total} trainings, about {self.eta()} left)"
        )

    def eta(self) -> str:
        """Remaining time at the mean training time so far (trainings only, not the baselines)."""
        if not self.done:
            return "unknown"
        return format_seconds(max(self.total - self.done, 0) * (time.time() - self.t0) / self.done)


def _outcome(records: list[dict]) -> str:
    """``"kare 86.7%"``-style best evaluation accuracy (over the ridge grid) of each record of one training."""
    return "best accuracy " + ", ".join(f"{r['method']} {paper_best([r], r['method']):.1%}" for r in records)


def trainings_per_dataset(s: dict, kare_lrs_by_depth: dict) -> int:
    """Grid trainings plus (validated) at most 4 folds × (KARE + DNN + after-kernel's DNN)."""
    n = len(list(uci_configs(s, kare_lrs_by_depth)))
    return n + (12 if s.get("protocol", "paper") == "validated" else 0)


def run_dataset(
    ds,
    s: dict,
    kare_lrs_by_depth: dict,
    log=logger.info,
    trial: Optional[Callable] = None,
    clock: Optional[RunClock] = None,
) -> dict:
    """One data set under ``s["protocol"]``, with the baselines of ``s["baselines"]``.

    Returns:
        ``{"dataset", "n_train", "n_test", "n_classes", "n_features", "protocol",
        "accuracy": {method: {"best", "validated"?, "selected"?, ...}}, "configs",
        "fold_configs"?}``: ``best`` is the paper protocol's number on the
        ``conxuntos.dat`` evaluation half; ``validated`` the mean over the four
        k-fold test folds of the configuration chosen on the validation half;
        ``selected`` (kernel methods) the smallest-training-KARE choice.
    """
    protocol = check_protocol(s.get("protocol", "paper"))
    if trial is None:
        pool = TrainerPool()  # every configuration of one architecture reuses its compiled steps
        trial = functools.partial(neural_trial, pool=pool)
    x_tr, y_tr, l_tr, x_ev, y_ev, l_ev = split(ds, None)
    records = []
    for kind, depth, width, lr in uci_configs(s, kare_lrs_by_depth):
        t0 = time.time()
        new = trial(kind, depth, width, lr, x_tr, y_tr, x_ev, y_ev, s)
        records += new
        if clock is not None:
            clock.trained(time.time() - t0, f"{ds.name}: {kind} depth {depth} width {width} lr {lr:g}", _outcome(new))
    acc = {m: {"best": paper_best(records, m)} for m in NEURAL}
    for m in ("kare", "after_kernel"):
        sel = kare_selected(records, m)
        acc[m]["selected"] = sel["accuracy"]
        acc[m]["selected_config"] = (
            None if sel["config"] is None else {**sel["config"], "ridge": s["ridges"][sel["ridge_index"]]}
        )
    out = {
        "dataset": ds.name,
        "n_train": len(x_tr),
        "n_test": len(x_ev),
        "n_classes": ds.n_classes,
        "n_examples": len(ds.x),
        "n_features": int(x_tr.shape[1]),
        "protocol": protocol,
        "accuracy": acc,
        "configs": records,
    }
    if protocol == "validated":
        out["fold_configs"] = _validated(ds, s, records, acc, trial, clock, log)
    for name in s.get("baselines") or []:
        acc[name] = _baseline(ds, name, s, protocol, x_tr, l_tr, x_ev, l_ev)
    return out


def _validated(ds, s, records, acc, trial, clock, log) -> list[dict]:
    """Retrain each method's validation-chosen configuration on the four folds; fills acc[m]["validated"]."""
    chosen = {m: choose(records, m) for m in NEURAL}
    cache, fold_records = {}, []
    for m, rec in chosen.items():
        if rec is None:
            log(f"{ds.name}: no {m} configuration has a finite training KARE at any ridge; no validated number")
            acc[m]["validated"] = None
            continue
        acc[m]["validated_config"] = _config(rec)
        acc[m]["validation_accuracy"] = validation_accuracy(rec)
        per_fold = []
        for k in range(len(ds.kfold)):
            key = (_kind(m), rec["depth"], rec["width"], rec["lr"], k)
            if key not in cache:
                fx_tr, fy_tr, _, fx_te, fy_te, _ = split(ds, k)
                t0 = time.time()
                cache[key] = trial(key[0], rec["depth"], rec["width"], rec["lr"], fx_tr, fy_tr, fx_te, fy_te, s)
                if clock is not None:
                    what = (
                        f"{ds.name}: fold {k + 1}/{len(ds.kfold)} {key[0]} depth {key[1]} width {key[2]} lr {key[3]:g}"
                    )
                    clock.trained(time.time() - t0, what)  # its accuracy is a fold's test number: not shown
                fold_records += [{**r, "fold": k} for r in cache[key]]
            r = next(r for r in cache[key] if r["method"] == m)
            per_fold.append(validation_accuracy(r))
        acc[m]["fold_accuracy"] = per_fold
        acc[m]["validated"] = None if any(a is None for a in per_fold) else float(np.mean(per_fold))
    return fold_records


def _baseline(ds, name, s, protocol, x_tr, l_tr, x_ev, l_ev) -> dict:
    from keras_kare.reproduce.baselines import run_baseline

    res = run_baseline(name, x_tr, l_tr, x_ev, l_ev, n_classes=ds.n_classes, seed=s["seed"])
    entry = {"best": float(max(res["grid_accuracy"])), "split_tuned": res["accuracy"], "params": res["params"]}
    if protocol == "validated":
        folds = []
        for k in range(len(ds.kfold)):
            fx_tr, _, fl_tr, fx_te, _, fl_te = split(ds, k)
            folds.append(run_baseline(name, fx_tr, fl_tr, fx_te, fl_te, n_classes=ds.n_classes, seed=s["seed"]))
        entry["fold_accuracy"] = [f["accuracy"] for f in folds]
        entry["fold_params"] = [f["params"] for f in folds]
        entry["validated"] = float(np.mean(entry["fold_accuracy"]))
    return entry
