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
which tests replace to watch which rows each phase sees. The methods and
recipes a run trains are listed in :mod:`keras_kare.reproduce.uci_recipes`,
the choices among their records are made in
:mod:`keras_kare.reproduce.uci_selection`, the run's costs and progress lines
come from :mod:`keras_kare.reproduce.uci_cost`.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Optional

import numpy as np

from keras_kare.reproduce.uci_cost import RunClock, fold_budget, training_cost
from keras_kare.reproduce.uci_recipes import (
    EARLY_STOPPED,
    ENSEMBLES,
    KERNEL_METHODS,
    MONITORED,
    STEP_SELECTED,
    TRIAL_METHODS,
    methods,
    monitored_kinds,
    uci_configs,
)
from keras_kare.reproduce.uci_selection import (
    best_index,
    config_of,
    ensemble_accuracy,
    fold_usable,
    kare_pick,
    kare_selected,
    paper_best,
    paper_best_record,
    ranked_choices,
    training_kind,
    validation_accuracy,
)
from keras_kare.trainer_pool import TrainerPool

logger = logging.getLogger("keras_kare.reproduce")

PROTOCOLS = ("paper", "validated")

ES_FRACTION = 0.2  # share of the training rows held out by the early-stopping recipes
ES_EVALUATIONS = 10  # held-out evaluations per training
ES_PATIENCE = 3  # evaluations without improvement before stopping
ES_MAX_KRR_ROWS = 2000  # the early-stopping evaluation's kernel regression uses at most this many (seeded) rows
LONG_TRAINING_SECONDS = 30.0  # trainings longer than this log their progress
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


def split(ds, fold: Optional[int]):
    """``(x_tr, y_tr, labels_tr, x_ev, y_ev, labels_ev)`` of the conxuntos split (``fold=None``) or a k-fold."""
    from keras_kare.datasets.uci import uci_split

    x_tr, y_tr, x_ev, y_ev, labels_ev = uci_split(ds, fold)
    labels_tr = ds.labels[ds.train_index if fold is None else ds.kfold[fold][0]]
    return x_tr, y_tr, labels_tr, x_ev, y_ev, labels_ev


def inner_split(n: int, seed: int, fraction: float = ES_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, held_out)`` row indices: a seeded random ``fraction`` of ``n`` rows held out (at least 1; 2 left).

    Example:
        >>> fit, held = inner_split(10, seed=0)
        >>> len(fit), len(held)
        (8, 2)
    """
    if n < 3:
        raise ValueError(f"early stopping needs at least 3 training rows to hold some out, received {n}.")
    held = min(max(1, int(round(fraction * n))), n - 2)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


def neural_trial(
    kind: str, depth: int, width: int, lr: float, x_tr, y_tr, x_ev, y_ev, s: dict, pool=None, log=None
) -> list[dict]:
    """Train one configuration; records with evaluation accuracy per ridge and training KARE per ridge.

    ``kind`` (:data:`~keras_kare.reproduce.uci_recipes.TRIAL_METHODS`): ``kare`` gives one ``kare`` record;
    ``dnn`` a ``dnn`` record (one accuracy) and an ``after_kernel`` record
    (KRR with the trained DNN's NTK); ``kare_es``/``dnn_es`` (and ``kare_es0``/``dnn_es0``, whose
    stopping rule also scores the initial weights) the same trained
    on 80% of the training rows with early stopping on the other 20%
    (:data:`~keras_kare.reproduce.uci_recipes.RECIPES`; the kernel regression then uses all training rows);
    ``kare_rel`` KARE with the relative ridge ``s["kare_relative_ridge"]``;
    ``ntk_init`` no training: the ``ntk_init`` record of the initial network's NTK.
    KARE trains on the NTK mode KRR uses (``s["kernel"]``), with the paper's
    batch rule on the data set's size ``s["n_examples"]``
    (:func:`~keras_kare.reproduce.runner.paper_batch`). A
    :class:`~keras_kare.trainer_pool.TrainerPool` reuses compiled steps
    across configurations of one architecture. ``log`` receives progress
    lines of trainings longer than :data:`LONG_TRAINING_SECONDS`.
    Kernel records carry ``_pred_pick``/``_pred_best`` (outputs on the
    evaluation rows at the KARE-picked / most accurate ridge) for the
    ensembles; keys starting with ``_`` are not saved.
    """
    import keras

    from keras_kare.initializers import build_mlp
    from keras_kare.reproduce.runner import paper_batch, train_kare

    if kind not in TRIAL_METHODS:
        raise ValueError(f"kind must be one of {', '.join(TRIAL_METHODS)}, received {kind!r}.")
    y_fit = y_tr if y_tr.ndim > 1 else y_tr[:, None]
    keras.utils.set_random_seed(s["seed"])
    net = build_mlp(x_tr.shape[1], depth, width, y_fit.shape[1], seed=s["seed"])
    base = {"depth": depth, "width": width, "lr": lr}
    what = f"{s.get('dataset', 'uci')}: {kind} depth {depth} width {width} lr {lr:g}"
    if kind == "ntk_init":
        return [_kernel_record(kind, net, base, x_tr, y_tr, x_ev, y_ev, s)]
    progress = LongTrainingLog(log or _quiet)
    if kind.startswith("dnn"):
        return _dnn_trial(kind, net, base, x_tr, y_tr, y_fit, x_ev, y_ev, s, pool, progress, what)
    steps = s["passes"] if kind in STEP_SELECTED else s["kare_steps"]
    if steps == 0:  # a step-selected fold whose chosen number of passes is none: the initial network's NTK
        return [_kernel_record(kind, net, base, x_tr, y_tr, x_ev, y_ev, s, passes=0)]
    rows, callbacks, extra = np.arange(len(x_tr)), [], {}
    monitored = kind in s.get("monitor", ())
    if kind in EARLY_STOPPED or monitored:
        from keras_kare.callbacks import KernelRidgeEarlyStopping

        every = max(1, steps // ES_EVALUATIONS)
        if monitored:  # scored on the evaluation rows (the validation half) on the way, never stopped
            kw = dict(patience=ES_EVALUATIONS + 1, include_initial=True)
            x_fit, y_kfit, held_out = x_tr, y_fit, (x_ev, y_ev if y_ev.ndim > 1 else y_ev[:, None])
        else:
            rows, held = inner_split(len(x_tr), s["seed"])
            kw = dict(patience=ES_PATIENCE, include_initial=EARLY_STOPPED[kind])
            x_fit, y_kfit, held_out = x_tr[rows], y_fit[rows], (x_tr[held], y_fit[held])
        stop = KernelRidgeEarlyStopping(
            x_fit, y_kfit, held_out, every_n_epochs=every, kernel=s["kernel"],
            n_train=min(len(x_fit), ES_MAX_KRR_ROWS), seed=s["seed"], **kw,
        )  # fmt: skip
        final = _final_weights()  # before the stopper, which restores the best weights when training ends
        callbacks = [final, stop]
    relative = kind == "kare_rel"
    model, info = train_kare(
        net,
        x_tr[rows],
        y_fit[rows],
        s.get("kare_relative_ridge", 1.0) if relative else s["kare_ridge"],
        lr,
        steps,
        paper_batch(s.get("n_examples", len(x_tr))),
        progress,
        what,
        kernel=s["kernel"],
        pool=pool,
        relative_ridge=relative,
        callbacks=callbacks,
        log_every=1,
    )
    if kind in STEP_SELECTED:
        extra["passes"] = steps
    if callbacks:
        best_pass = stop.best_epoch + 1 if stop.history else None
        if monitored:  # the record of the best weights (restored by the stopper), then the final weights'
            chosen = _kernel_record(MONITORED[kind], model, base, x_tr, y_tr, x_ev, y_ev, s, passes=best_pass)
            model.set_weights(final.weights)
        else:
            extra["best_step"] = best_pass
    record = _kernel_record(kind, model, base, x_tr, y_tr, x_ev, y_ev, s, stopped_at=info["stopped_at"], **extra)
    return [record, chosen] if monitored else [record]


def _final_weights():
    """A Keras callback keeping the weights training ends with (list it before a stopper that restores others)."""
    import keras

    class FinalWeights(keras.callbacks.Callback):
        weights = None

        def on_train_end(self, logs=None):
            self.weights = self.model.get_weights()

    return FinalWeights()


def _dnn_trial(kind, net, base, x_tr, y_tr, y_fit, x_ev, y_ev, s, pool, progress, what) -> list[dict]:
    """A DNN training (``dnn``, early-stopped ``dnn_es``/``dnn_es0``, or a ``dnn_vs`` fold): its record and its
    after-kernel's; a monitored ``dnn`` grid training (:func:`monitored_kinds`) also those of its best weights."""
    import tensorflow as tf

    from keras_kare.reproduce.runner import train_dnn

    steps = s["passes"] if kind in STEP_SELECTED else s["dnn_steps"]
    extra = {"passes": steps} if kind in STEP_SELECTED else {}
    if steps == 0:  # a step-selected fold whose chosen number of passes is none: the initial network
        return _dnn_records(kind, net, base, x_tr, y_tr, x_ev, y_ev, s, stopped_at=None, **extra)
    rows, kw = np.arange(len(x_tr)), {}
    monitored = kind in s.get("monitor", ())
    if kind in EARLY_STOPPED or monitored:
        if monitored:  # the network's MSE on the evaluation rows (the validation half) on the way, never stopped
            x_held, y_held = x_ev, y_ev if y_ev.ndim > 1 else y_ev[:, None]
            rule = dict(patience=math.inf, monitor_initial=True, restore_best=False)
        else:
            rows, held = inner_split(len(x_tr), s["seed"])
            x_held, y_held = x_tr[held], y_fit[held]
            rule = dict(patience=ES_PATIENCE, monitor_initial=EARLY_STOPPED[kind])
        x_held = tf.constant(x_held)

        def held_out_mse(model):
            return float(np.mean((np.asarray(model(x_held, training=False)) - y_held) ** 2))

        kw = dict(calls=ES_EVALUATIONS, monitor=held_out_mse, **rule)
    batch = min(len(rows), s["dnn_batch_size"])
    args = (net, x_tr[rows], y_fit[rows], base["lr"], steps, batch, progress, what)
    net, info = train_dnn(*args, pool=pool, **kw)
    if kind in EARLY_STOPPED:
        extra["best_step"] = info["best_step"]
    records = _dnn_records(kind, net, base, x_tr, y_tr, x_ev, y_ev, s, stopped_at=info["stopped_at"], **extra)
    if monitored:
        net.set_weights(info["best_weights"])
        records += _dnn_records(MONITORED[kind], net, base, x_tr, y_tr, x_ev, y_ev, s, passes=info["best_pass"])
    return records


def _dnn_records(kind, net, base, x_tr, y_tr, x_ev, y_ev, s, **extra) -> list[dict]:
    """The records of one trained network: its own evaluation accuracy, and its after-kernel's."""
    from keras_kare.reproduce.runner import score

    pred = net.predict(x_ev, batch_size=4096, verbose=0)
    _, acc = score(pred if y_ev.ndim > 1 else pred[:, 0], y_ev)
    kernel_extra = {k: v for k, v in extra.items() if k != "stopped_at"}
    return [
        {"method": kind, **base, "accuracy": acc, **extra},
        _kernel_record(TRIAL_METHODS[kind][1], net, base, x_tr, y_tr, x_ev, y_ev, s, **kernel_extra),
    ]


def _kernel_record(method, model, base, x_tr, y_tr, x_ev, y_ev, s, **extra) -> dict:
    """KRR with ``model``'s NTK on all training rows over the ridge grid: accuracies, KARE, kept outputs."""
    from keras_kare.reproduce.runner import krr_path
    from keras_kare.risk import NonFiniteKernelError

    try:
        res = krr_path(model, x_tr, y_tr, x_ev, y_ev, s["ridges"], s["kernel"])
    except NonFiniteKernelError:
        # training diverged into weights whose NTK overflows (KAREModel keeps the weights of its last applied
        # update, which can be the one that blew up): a configuration without an accuracy, never picked
        nan = [math.nan] * len(s["ridges"])
        return {"method": method, **base, "accuracy": nan, "kare": nan, "kernel_not_finite": True, **extra,
                "_pred_pick": None, "_pred_best": None}  # fmt: skip
    rec = {"method": method, **base, "accuracy": res["test_accuracy"].tolist(), "kare": res["kare"].tolist(), **extra}
    pick = kare_pick(rec)
    rec["_pred_pick"] = None if pick is None else res["test_pred"][pick]
    finite = np.isfinite(res["test_accuracy"]).any()
    rec["_pred_best"] = res["test_pred"][best_index(res["test_accuracy"])] if finite else None
    return rec


def _quiet(msg: str) -> None:
    """Per-step training logs would drown the per-data-set log."""


class LongTrainingLog:
    """Passes a training's progress lines on once it has run ``after`` seconds, then at most one per ``after``.

    Short trainings (most of a UCI grid) stay silent; a long one (mini-batch
    KARE on a large table) shows it is alive.

    Example:
        >>> lines = []
        >>> log = LongTrainingLog(lines.append, after=0.0)
        >>> log("step 10/300"); lines
        ['step 10/300']
    """

    def __init__(self, log: Callable[[str], None], after: float = LONG_TRAINING_SECONDS):
        self.log, self.after = log, float(after)
        self.last = time.monotonic()

    def __call__(self, msg: str) -> None:
        now = time.monotonic()
        if now - self.last >= self.after:
            self.last = now
            self.log(msg)


def _outcome(records: list[dict]) -> str:
    """``"kare 86.7%"``-style best evaluation accuracy (over the ridge grid) of each record of one training."""
    best = [(r["method"], paper_best([r], r["method"])) for r in records]
    text = "best accuracy " + ", ".join(f"{m} {a:.1%}" if math.isfinite(a) else f"{m} none" for m, a in best)
    return text + _diverged(records)


def _diverged(records: list[dict]) -> str:
    """``"; stopped at step 120 (not finite)"`` when the training diverged (its last finite weights were kept)."""
    steps = [r["stopped_at"] for r in records if r.get("stopped_at") is not None]
    text = f"; stopped at step {steps[0]} (not finite), the last finite weights kept" if steps else ""
    if any(r.get("kernel_not_finite") for r in records):
        text += "; the trained NTK is not finite: no accuracy, never chosen"
    return text


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
    s = {**s, "dataset": ds.name, "n_examples": len(ds.x)}
    if trial is None:
        pool = TrainerPool()  # every configuration of one architecture reuses its compiled steps
        trial = functools.partial(neural_trial, pool=pool, log=log)
    x_tr, y_tr, l_tr, x_ev, y_ev, l_ev = split(ds, None)
    records = []
    grid_s = {**s, "monitor": monitored_kinds(s)}  # only the grid's trainings are scored on the way
    for kind, depth, width, lr in uci_configs(s, kare_lrs_by_depth):
        t0 = time.time()
        new = trial(kind, depth, width, lr, x_tr, y_tr, x_ev, y_ev, grid_s)
        records += new
        if clock is not None:
            clock.trained(
                time.time() - t0,
                f"{ds.name}: {kind} depth {depth} width {width} lr {lr:g}",
                _outcome(new),
                training_cost(kind, depth, width, len(ds.x)),
            )
    names = methods(s)
    acc = {m: {"best": paper_best(records, m)} for m in names if m not in ENSEMBLES}
    for m in names:
        if m in ENSEMBLES:
            best = [paper_best_record(records, member) for member in ENSEMBLES[m]]
            acc[m] = {"best": ensemble_accuracy(best, y_ev, "_pred_best")}
        elif m in KERNEL_METHODS:
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
        budget = fold_budget(s, kare_lrs_by_depth, len(ds.x))
        out["fold_configs"] = _validated(ds, s, records, acc, trial, clock, log, y_ev, budget)
    for name in s.get("baselines") or []:
        acc[name] = _baseline(ds, name, s, protocol, x_tr, l_tr, x_ev, l_ev)
    for key in ("configs", "fold_configs"):  # model outputs were kept for the ensembles only
        out[key] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in out.get(key, [])]
    return out


FOLD_FALLBACKS = 2
"""Validated protocol: when the chosen configuration's training diverges on a fold (no finite training KARE at
any ridge, or outputs that are not finite; both known without the fold's test labels), that fold is retrained
with the next configuration by validation accuracy, at most this many times, as a user who saw the training
fail would; the fold has no number only when all of them fail."""


def _validated(ds, s, records, acc, trial, clock, log, y_val, budget) -> list[dict]:
    """Retrain each method's validation-chosen configuration on the four folds; fills acc[m]["validated"].

    A fold whose training diverges falls back to the runner-up configurations (:data:`FOLD_FALLBACKS`);
    ``acc[m]["fold_configs_used"]`` then lists the configuration each fold used. ``budget``: the fold
    trainings ``clock`` counted for this table (:func:`fold_budget`), replaced by those the choices need.
    """
    names = methods(s)
    ranked = {m: ranked_choices(records, m) for m in names if m not in ENSEMBLES}
    chosen = {m: r[0] if r else None for m, r in ranked.items()}
    planned = {(training_kind(m), r["depth"], r["width"], r["lr"]) for m, r in chosen.items() if r is not None}
    if clock is not None:
        cost = len(ds.kfold) * sum(training_cost(*key[:3], len(ds.x)) for key in planned)
        clock.replan(len(ds.kfold) * len(planned) - budget[0], cost - budget[1])
    cache, fold_records, fold_targets = {}, [], {}
    per_fold_records = {m: [] for m in chosen}
    for m, rec in chosen.items():
        if rec is None:
            log(f"{ds.name}: no {m} configuration has a finite training KARE at any ridge; no validated number")
            acc[m]["validated"] = None
            continue
        acc[m]["validated_config"] = config_of(rec)
        if training_kind(m) in STEP_SELECTED:
            acc[m]["validated_passes"] = rec["passes"]
        acc[m]["validation_accuracy"] = validation_accuracy(rec)
        candidates = ranked[m][: 1 + FOLD_FALLBACKS]
        per_fold, used = [], []
        for k in range(len(ds.kfold)):
            r, config = None, None
            for i, cand in enumerate(candidates):
                passes = cand["passes"] if training_kind(m) in STEP_SELECTED else None  # chosen with the configuration
                key = (training_kind(m), cand["depth"], cand["width"], cand["lr"], k, passes)
                if key not in cache:
                    fx_tr, fy_tr, _, fx_te, fy_te, _ = split(ds, k)
                    fold_targets[k] = fy_te
                    t0 = time.time()
                    fold_s = s if passes is None else {**s, "passes": passes}
                    cache[key] = trial(key[0], *key[1:4], fx_tr, fy_tr, fx_te, fy_te, fold_s)
                    if clock is not None:
                        what = f"{ds.name}: fold {k + 1}/{len(ds.kfold)} {key[0]} depth {key[1]} width {key[2]}"
                        # its accuracy is a fold's test number: not shown
                        outcome, cost = _diverged(cache[key]).lstrip("; "), training_cost(*key[:3], len(ds.x))
                        if key[:4] not in planned:  # a fallback: one training more than planned
                            clock.replan(1, cost)
                        clock.trained(time.time() - t0, f"{what} lr {key[3]:g}", outcome, cost)
                    fold_records += [{**r, "fold": k} for r in cache[key]]
                r = next(r for r in cache[key] if r["method"] == m)
                if fold_usable(r):
                    config = config_of(cand)
                    break
                then = "the next by validation accuracy is tried" if i + 1 < len(candidates) else "no fallback left"
                log(
                    f"{ds.name}: fold {k + 1}/{len(ds.kfold)} {m} depth {key[1]} width {key[2]} lr {key[3]:g} gives no "
                    f"number (its training diverged); {then}"
                )
            per_fold_records[m].append(r)
            per_fold.append(validation_accuracy(r) if config is not None else None)
            used.append(config)
        acc[m]["fold_accuracy"] = per_fold
        if any(u != acc[m]["validated_config"] for u in used):
            acc[m]["fold_configs_used"] = used
        acc[m]["validated"] = None if any(a is None for a in per_fold) else float(np.mean(per_fold))
    for m in names:
        if m not in ENSEMBLES:
            continue
        members = ENSEMBLES[m]
        acc[m]["validation_accuracy"] = ensemble_accuracy([chosen[a] for a in members], y_val)
        if any(chosen[a] is None for a in members):
            acc[m]["validated"] = None
            continue
        per_fold = [
            ensemble_accuracy([per_fold_records[a][k] for a in members], fold_targets[k]) for k in range(len(ds.kfold))
        ]
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
