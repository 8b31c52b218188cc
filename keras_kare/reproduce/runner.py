"""One seed of the paper's comparison: NTK-KARE, DNN (MSE) and after-kernel.

For identical data and initial weights:

1. NTK-KARE: :class:`keras_kare.KAREModel` trained with plain SGD on KARE
   (ridge z), then kernel ridge regression with the learned NTK over a relative
   ridge grid.
2. DNN: the same network trained on the mean squared error with plain SGD;
   its test error.
3. After-kernel: kernel ridge regression with the NTK of the trained DNN over
   the same grid.

For every grid ridge the test error, KARE (= GCV) and the exact leave-one-out
error on the training data are recorded, so the ridge can be picked on the
test set (as the paper does) or from training data alone.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from keras_kare import in_memory
from keras_kare.decision import accuracy
from keras_kare.initializers import build_mlp
from keras_kare.model import KAREModel
from keras_kare.predictor import KernelPredictor
from keras_kare.reproduce.compiled_passes import CompiledPasses
from keras_kare.trainer_pool import TrainerPool

logger = logging.getLogger("keras_kare.reproduce")

METHODS = ("kare", "after_kernel", "dnn")
CONTROL = "ntk_init"
"""The untrained network's NTK: every seed also scores the kernel NTK-KARE training starts from."""


class _Progress(keras.callbacks.Callback):
    """Logs every ``every`` epochs of a KAREModel fit and stops on a non-finite KARE.

    The paper stops KARE training on a failed factorisation / NaN. A
    :class:`~keras_kare.KAREModel` never applies a non-finite step, so its
    weights are already those of the last good step when training stops.
    """

    def __init__(self, label: str, total: int, every: int, key: str, log: Callable[[str], None]):
        super().__init__()
        self.label, self.total, self.every, self.key, self.log = label, total, max(1, every), key, log
        self.stopped_at: Optional[int] = None
        self.last: Optional[float] = None

    def on_train_begin(self, logs=None):
        self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {}).get(self.key, np.nan))
        if not math.isfinite(value):
            self.stopped_at = epoch + 1
            self.model.stop_training = True
            self.log(
                f"{self.label}: {self.key} not finite by step {self.stopped_at}; stopped at the weights of step {epoch}"
            )
            return
        self.last = value
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.total:
            self.log(
                f"{self.label}: step {epoch + 1}/{self.total} {self.key}={value:.5g} ({time.time() - self.t0:.1f}s)"
            )


def _architecture(net) -> tuple:
    """What makes two networks interchangeable for a compiled step: layer types, weight shapes, activations."""
    key = []
    for layer in net.layers:
        act = getattr(layer, "activation", None)
        key.append(
            (
                type(layer).__name__,
                getattr(act, "__name__", str(act)),
                tuple((tuple(w.shape), w.dtype) for w in layer.weights),
            )
        )
    inputs = tuple(tuple(t.shape) for t in net.inputs) if getattr(net, "inputs", None) else None
    return inputs, tuple(key)


FULL_BATCH_ROWS = 5000
"""The paper's rule: KARE trains full batch on data sets below this many rows, else with batches of 32."""


def _batch(n: int, batch_size: Optional[int]) -> int:
    """Full batch up to 5000 examples, else 32 (paper), unless given."""
    if batch_size is not None:
        return min(int(batch_size), n)
    return n if n <= FULL_BATCH_ROWS else 32


def paper_batch(n_dataset: int) -> Optional[int]:
    """The KARE batch size of the paper's UCI code: 32 when the whole *data set* has >= 5000 rows, else full batch.

    The authors switch on the data set's size (``n_tot``), not on the
    training split's, so a 6000-row table trains with batches of 32 although
    each split holds about 3000 rows. ``None`` means full batch.
    """
    return 32 if n_dataset >= FULL_BATCH_ROWS else None


def train_kare(
    net,
    x,
    y,
    ridge: float,
    lr: float,
    steps: int,
    batch_size=None,
    log=logger.info,
    label="kare",
    kernel: str = "summed_output",
    pool: Optional[TrainerPool] = None,
    relative_ridge: bool = False,
    callbacks=(),
    log_every: Optional[int] = None,
):
    """Train ``net``'s NTK on KARE with SGD; returns (KAREModel, info dict).

    ``steps`` counts passes over the data (= SGD steps for full batch).
    ``kernel`` is the NTK mode KARE is computed with; use the same mode for
    kernel ridge regression afterwards (the paper differentiates the sum of
    the outputs: ``"summed_output"``). ``relative_ridge``: KARE's ridge is
    ``ridge · tr(K)/n²`` (see :class:`~keras_kare.KAREModel`). ``callbacks``
    are passed to ``fit`` after the progress logger (e.g.
    :class:`~keras_kare.callbacks.KernelRidgeEarlyStopping`); ``log_every``:
    a progress line every this many passes (default: 5 lines per training).
    With a ``pool`` the compiled model is reused across calls (see
    :class:`TrainerPool`).
    """
    n = len(x)
    bs = _batch(n, batch_size)
    if n % bs == 1:  # a last batch of one example has constant KARE
        bs += 1

    def build(network):
        model = KAREModel(network, ridge=ridge, relative_ridge=relative_ridge, kernel=kernel)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr))
        return {"model": model}

    key = ("kare", _architecture(net), float(ridge), bool(relative_ridge), kernel, bs)
    entry = pool.get(key, net, build, lr) if pool is not None else build(net)
    model = entry["model"]
    cb = _Progress(label, steps, log_every or max(1, steps // 5), "kare", log)
    t0 = time.time()
    model.fit(x, y, batch_size=bs, epochs=steps, shuffle=bs < n, verbose=0, callbacks=[cb, *callbacks])
    return model, {
        "train_seconds": time.time() - t0,
        "final_kare": cb.last,
        "stopped_at": cb.stopped_at,
        "batch_size": bs,
    }


CHECK_STEPS = 100
"""train_dnn checks for divergence about every this many SGD steps (whole passes)."""

PROGRESS_LINES = 5
"""train_dnn reports its progress about this many times per training (one compiled call each)."""


def train_dnn(
    net,
    x,
    y,
    lr: float,
    steps: int,
    batch_size=None,
    log=logger.info,
    label="dnn",
    pool: Optional[TrainerPool] = None,
    jit_compile: bool = True,
    seed: Optional[int] = None,
    calls: int = PROGRESS_LINES,
    monitor: Optional[Callable] = None,
    patience: float = 3,
    monitor_initial: bool = False,
    restore_best: bool = True,
):
    """Train ``net`` on the MSE with plain SGD for ``steps`` passes; returns (net, info).

    The training is Keras' ``fit`` for ``steps`` epochs on in-memory data
    (:func:`keras_kare.in_memory.epoch_dataset` ``(x, y, shuffle=True,
    seed=seed, first_epoch=0)``: full batch as given, mini-batches in a new
    order every pass, a function of ``(seed, pass)``; ``seed=None`` draws one
    from Python's ``random``, which ``keras.utils.set_random_seed`` seeds). Its
    steps run in XLA-compiled loops over the network's own ``train_step``,
    the pass orders drawn inside them (:class:`CompiledPasses`;
    ``jit_compile=False``: a graph-mode loop), with the same batches in the
    same order as Keras' ``fit`` (results equal up to float32 round-off); a
    whole UCI run is 1.7x and a Figure 1 run 4.2x as long through Keras' fit
    (``benchmarks/bench_dnn_loop.py``). The
    loss is checked about every :data:`CHECK_STEPS` SGD steps on-device;
    on a non-finite loss or weight training stops with the weights of the
    last finite check (``info["stopped_at"]``: the SGD step of the failed
    check). Progress is logged ``calls`` times (default
    :data:`PROGRESS_LINES`), one compiled call each. With a ``pool`` the
    compiled network is reused across calls (see :class:`TrainerPool`).

    Early stopping: with ``monitor`` (a function of the model returning a
    score to minimise, e.g. the MSE on held-out rows) the score is computed
    after every call; training stops once it has not improved for
    ``patience`` calls, and the weights of the best call are restored
    (``info["best_step"]``: its SGD step), as ``keras.callbacks.EarlyStopping``
    with ``restore_best_weights=True`` does. ``monitor_initial=True`` scores
    the initial weights too (step 0), as a candidate to stop at and restore.
    ``patience=math.inf`` never stops; ``restore_best=False`` keeps the last
    weights and returns the best ones as ``info["best_weights"]``
    (``info["best_pass"]``: the passes they were trained for).
    """
    n = len(x)
    bs = _batch(n, batch_size)
    per_pass = math.ceil(n / bs)  # SGD steps per pass over the data
    per_check = max(1, min(steps, CHECK_STEPS // per_pass))  # passes per divergence check
    if monitor is not None:  # every call ends on an evaluation: chunks no longer than a call
        per_check = min(per_check, max(1, steps // max(1, calls)))
    checks = math.ceil(steps / per_check)
    checks_per_call = math.ceil(checks / min(checks, max(1, calls)))
    per_call = per_check * checks_per_call

    def build(network):
        network.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
        return {"model": network, "loop": CompiledPasses(network, n, bs, per_check, checks_per_call, jit_compile)}

    seed = in_memory.permutation_seed(seed)
    key = ("dnn", _architecture(net), n, bs, per_check, checks_per_call, bool(jit_compile))
    entry = pool.get(key, net, build, lr) if pool is not None else build(net)
    model, loop = entry["model"], entry["loop"]
    x_t, y_t = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    t0 = time.time()
    last, stopped_at, done = None, None, 0  # done: passes trained and kept
    best = {"score": math.inf, "step": None, "weights": None, "wait": 0}
    if monitor is not None and monitor_initial:
        _keep_best(model, monitor, best, 0)
    while done < steps and stopped_at is None:
        passes = min(per_call, steps - done)
        losses, stopped = loop(x_t, y_t, seed, done, passes)
        good = losses[:-1] if stopped else losses
        if len(good):
            last = float(good[-1])
        if stopped:
            kept = done + len(good) * per_check
            stopped_at = min(kept + per_check, steps) * per_pass
            log(
                f"{label}: loss not finite by step {stopped_at}; stopped and restored the weights of step "
                f"{kept * per_pass}"
            )
        else:
            done += passes
            log(f"{label}: step {done * per_pass}/{steps * per_pass} loss={last:.5g} ({time.time() - t0:.1f}s)")
            if monitor is not None and _keep_best(model, monitor, best, done * per_pass) >= patience:
                break
    if best["weights"] is not None and restore_best:
        model.set_weights(best["weights"])
    return model, {
        "train_seconds": time.time() - t0,
        "final_loss": last,
        "stopped_at": stopped_at,
        "batch_size": bs,
        "best_step": best["step"],
        "best_pass": None if best["step"] is None else best["step"] // per_pass,
        **({} if restore_best else {"best_weights": best["weights"]}),
    }


def _keep_best(model, monitor: Callable, best: dict, step: int) -> int:
    """Score the model; keep a copy of its weights when the score improves. Returns the evaluations without one."""
    score = float(monitor(model))
    if math.isfinite(score) and score < best["score"]:
        best.update(score=score, step=step, weights=model.get_weights(), wait=0)
    else:
        best["wait"] += 1
    return best["wait"]


def score(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(MSE, accuracy) of predictions against ±1 / ±1-one-hot targets (accuracy by sign / argmax).

    Both are NaN when a prediction is not finite (a ridge at which the kernel
    system is not defined, see ``KernelPredictor.predict_path``): no class is
    decided from NaN.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(y.shape)
    if not np.all(np.isfinite(pred)):
        return float("nan"), float("nan")
    return float(np.mean((pred - y) ** 2)), accuracy(pred, y)


def krr_path(model, x_tr, y_tr, x_te, y_te, ridges, kernel="summed_output", validation=None) -> dict:
    """KRR with ``model``'s NTK for every relative ridge: test outputs, MSE/accuracy, KARE, LOO, train MSE.

    With ``validation=(x_val, y_val)`` (held out from the training rows) also
    ``val_mse``/``val_accuracy`` per ridge, for choosing the ridge on held-out data.
    """
    t0 = time.time()
    kp = KernelPredictor(model, ridge=1.0, relative_ridge=True, kernel=kernel, batch_size=1000, verbose=0)
    kp = kp.fit(x_tr, y_tr)
    path = kp.ridge_path(ridges)
    preds = kp.predict_path(x_te, ridges)
    mse, acc = zip(*(score(p, y_te) for p in preds))
    extra = {}
    if validation is not None:
        val = [score(p, validation[1]) for p in kp.predict_path(validation[0], ridges)]
        extra = {"val_mse": np.array([v[0] for v in val]), "val_accuracy": np.array([v[1] for v in val])}
    return {
        **extra,
        "ridge": np.asarray(ridges, dtype=np.float64),
        "effective_ridge": path.effective_ridges,
        "test_mse": np.array(mse),
        "test_accuracy": np.array(acc),
        "test_pred": np.stack([np.asarray(p, dtype=np.float64).reshape(np.shape(y_te)) for p in preds]),
        "kare": path.kare,
        "loo_mse": path.loo_mse,
        "train_mse": path.train_mse,
        "kernel_seconds": time.time() - t0,
    }


class _InBackground:
    """``fn()`` in a daemon thread; :meth:`result` waits for it and returns its value or raises its exception."""

    def __init__(self, fn: Callable, name: str):
        self._out: dict = {}

        def target():
            try:
                self._out["value"] = fn()
            except BaseException as error:  # re-raised in the caller's thread by result()
                self._out["error"] = error

        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def result(self):
        self._thread.join()
        if "error" in self._out:
            raise self._out["error"]
        return self._out["value"]


def run_seed(
    x_tr,
    y_tr,
    x_te,
    y_te,
    seed: int,
    cfg: dict,
    log=logger.info,
    classification: bool = False,
    pool: Optional[TrainerPool] = None,
    concurrent: Optional[bool] = None,
) -> list[dict]:
    """The paper's three methods and the untrained control on one data draw; result rows (one per method × ridge;
    one for the DNN).

    The control, ``ntk_init``, is kernel ridge regression with the NTK of the
    initial network (the weights both trainings start from): what KARE
    training adds is NTK-KARE's difference from it.

    ``cfg`` keys: depth, width, kare_ridge, kare_lr, kare_steps, dnn_lr,
    dnn_steps, ridges, batch_size (None: paper rule), kernel (the NTK mode of
    both KARE training and kernel ridge regression). A ``pool`` reuses compiled
    models across seeds (:class:`TrainerPool`).

    ``concurrent`` (default: on a CPU with more than one core) trains the DNN
    in a second thread while NTK-KARE trains: the two trainings are
    independent, and part of a KARE step (the float64 Cholesky, small
    operations) leaves cores idle. Results are the same either way (no random
    draw happens during training); only full-batch DNN training runs
    concurrently (a mini-batch shuffle would draw its seed while the other
    thread creates operations).

    With ``cfg["validation_fraction"] = f > 0`` (the *validated* protocol) the
    last fraction f of the training rows is held out: every method trains on
    the rest, and each kernel row also records the error on the held-out rows
    (``val_mse``, ``val_accuracy``) so the ridge can be chosen without the
    test set (the DNN, which has no ridge, is trained on the same rows).
    """
    kernel = cfg.get("kernel", "summed_output")
    validation = None
    fraction = float(cfg.get("validation_fraction") or 0.0)
    if fraction:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), received {fraction}.")
        cut = int(round(len(x_tr) * (1.0 - fraction)))
        if not 2 <= cut < len(x_tr):
            raise ValueError(f"validation_fraction={fraction} leaves {cut} of {len(x_tr)} training rows to train on.")
        validation = (x_tr[cut:], y_tr[cut:])
        x_tr, y_tr = x_tr[:cut], y_tr[:cut]
    outputs = 1 if y_tr.ndim == 1 else y_tr.shape[1]
    y_fit = y_tr if y_tr.ndim > 1 else y_tr.reshape(-1, 1)
    keras.utils.set_random_seed(seed)

    def net():
        return build_mlp(x_tr.shape[1], cfg["depth"], cfg["width"], outputs, seed=seed)

    rows = []
    tag = f"seed {seed}"
    dnn_net = net()  # built here: both networks start from the same weights, drawn in this thread
    res = krr_path(net(), x_tr, y_tr, x_te, y_te, cfg["ridges"], kernel, validation)  # before any thread starts
    log(f"[{tag}] untrained NTK: best test MSE {np.nanmin(res['test_mse']):.4f} (kernels {res['kernel_seconds']:.0f}s)")
    rows += _rows(CONTROL, seed, res, {"train_seconds": None, "stopped_at": None})
    full_batch = _batch(len(x_tr), cfg.get("batch_size")) >= len(x_tr)
    if concurrent is None:
        concurrent = (os.cpu_count() or 1) > 1

    def dnn_training():
        dnn_args = (dnn_net, x_tr, y_fit, cfg["dnn_lr"], cfg["dnn_steps"], cfg.get("batch_size"), log)
        return train_dnn(*dnn_args, f"[{tag}] DNN", pool=pool)

    dnn_job = _InBackground(dnn_training, f"keras_kare {tag} DNN") if concurrent and full_batch else None
    kare_model, info = train_kare(
        net(),
        x_tr,
        y_fit,
        cfg["kare_ridge"],
        cfg["kare_lr"],
        cfg["kare_steps"],
        cfg.get("batch_size"),
        log,
        f"[{tag}] NTK-KARE",
        kernel=kernel,
        pool=pool,
    )
    res = krr_path(kare_model, x_tr, y_tr, x_te, y_te, cfg["ridges"], kernel, validation)
    log(
        f"[{tag}] NTK-KARE: best test MSE {np.nanmin(res['test_mse']):.4f} over the ridge grid "
        f"(train {info['train_seconds']:.0f}s, kernels {res['kernel_seconds']:.0f}s)"
    )
    rows += _rows("kare", seed, res, info)

    dnn, info = dnn_job.result() if dnn_job is not None else dnn_training()
    pred = dnn.predict(x_te, batch_size=4096, verbose=0)
    mse, acc = score(pred if y_te.ndim > 1 else pred[:, 0], y_te)
    log(f"[{tag}] DNN: test MSE {mse:.4f} (train {info['train_seconds']:.0f}s)")
    rows.append(
        {
            "method": "dnn",
            "seed": seed,
            "ridge": None,
            "effective_ridge": None,
            "test_mse": mse,
            "test_accuracy": acc if classification else None,
            "kare": None,
            "loo_mse": None,
            "train_mse": None,
            "train_seconds": info["train_seconds"],
            "stopped_at": info["stopped_at"],
        }
    )
    res = krr_path(dnn, x_tr, y_tr, x_te, y_te, cfg["ridges"], kernel, validation)
    log(f"[{tag}] after-kernel: best test MSE {np.nanmin(res['test_mse']):.4f} (kernels {res['kernel_seconds']:.0f}s)")
    rows += _rows("after_kernel", seed, res, {"train_seconds": None, "stopped_at": None})
    if not classification:
        for r in rows:
            r["test_accuracy"] = None
    return rows


def _rows(method: str, seed: int, res: dict, info: dict) -> list[dict]:
    out = []
    for i in range(len(res["ridge"])):
        out.append(
            {
                "method": method,
                "seed": seed,
                "ridge": float(res["ridge"][i]),
                "effective_ridge": float(res["effective_ridge"][i]),
                "test_mse": float(res["test_mse"][i]),
                "test_accuracy": float(res["test_accuracy"][i]),
                "kare": _f(res["kare"][i]),
                "loo_mse": _f(res["loo_mse"][i]),
                "train_mse": _f(res["train_mse"][i]),
                "train_seconds": info.get("train_seconds"),
                "stopped_at": info.get("stopped_at"),
            }
        )
        if "val_mse" in res:
            out[-1].update(val_mse=float(res["val_mse"][i]), val_accuracy=float(res["val_accuracy"][i]))
    return out


def _f(value) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None
