"""Why NTK-KARE wins or loses on a UCI table: training KARE and held-out accuracy over the training.

For each table, on the ``conxuntos.dat`` split the validated protocol selects on
(train half / validation half; the ``conxuntos_kfold.dat`` evaluation folds are
never read):

- NTK-KARE: the network's NTK trained on KARE (the paper's recipe: SGD, absolute
  ridge z = 0.1, full batch below 5 000 rows); every ``--every`` steps the
  training KARE and the validation accuracy of kernel ridge regression with the
  current NTK (ridge picked by KARE on the training rows, the protocol's rule),
  through :class:`keras_kare.callbacks.KernelRidgeEvaluation`;
- the DNN trained on the MSE (SGD, batch 32); at as many points its own validation
  accuracy and that of its after-kernel (KRR with the current NTK, same rule).

Prints a table per table and writes JSON and one PNG (``--out``). The question it
answers: does minimising KARE on a few hundred rows overfit KARE itself (training
KARE still falling while the held-out accuracy of its kernel falls)?

Run:  python benchmarks/uci_trajectories.py --data-dir DIR/uci-dev --datasets a,b,c [--out DIR]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def krr_accuracy(model, x_tr, y_tr, x_val, y_val, kernel="summed_output") -> float:
    from keras_kare import KernelPredictor
    from keras_kare.decision import accuracy

    kp = KernelPredictor(model, ridge="auto", kernel=kernel, batch_size=1000).fit(x_tr, y_tr)
    return float(accuracy(np.asarray(kp.predict(x_val), dtype=np.float64).reshape(y_val.shape), y_val))


def trajectories(ds, depth, width, kare_lr, dnn_lr, steps, dnn_steps, every, seed=0) -> dict:
    import keras

    from keras_kare.callbacks import KernelRidgeEvaluation
    from keras_kare.initializers import build_mlp
    from keras_kare.reproduce.runner import paper_batch, score, train_dnn, train_kare
    from keras_kare.reproduce.uci_protocol import split

    x_tr, y_tr, _, x_val, y_val, _ = split(ds, None)
    y_fit = y_tr if y_tr.ndim > 1 else y_tr[:, None]
    y_vfit = y_val if y_val.ndim > 1 else y_val[:, None]
    keras.utils.set_random_seed(seed)
    net = build_mlp(x_tr.shape[1], depth, width, y_fit.shape[1], seed=seed)
    kare_curve = {"step": [], "kare": [], "val_accuracy": []}
    last_kare = {}

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            last_kare["value"] = float(logs.get("kare", np.nan))
            if "val_krr_accuracy" in logs:
                kare_curve["step"].append(epoch + 1)
                kare_curve["kare"].append(last_kare["value"])
                kare_curve["val_accuracy"].append(float(logs["val_krr_accuracy"]))

    evaluation = KernelRidgeEvaluation(x_tr, y_fit, (x_val, y_vfit), every_n_epochs=every, kernel="summed_output")
    t0 = time.time()
    kare_net = build_mlp(x_tr.shape[1], depth, width, y_fit.shape[1], seed=seed)  # the DNN's initial weights
    train_kare(
        kare_net, x_tr, y_fit, 0.1, kare_lr, steps, paper_batch(len(ds.x)), lambda m: None,
        callbacks=[evaluation, Record()],
    )  # fmt: skip
    kare_seconds = time.time() - t0
    dnn_curve = {"step": [], "dnn_val_accuracy": [], "after_kernel_val_accuracy": []}

    calls = max(1, dnn_steps // every)
    per_pass = int(np.ceil(len(x_tr) / min(32, len(x_tr))))  # SGD steps per pass

    def monitor(model):
        """Records the curves; always "improves", so the training runs to its end."""
        pred = np.asarray(model(x_val, training=False))
        dnn_curve["step"].append(int(model.optimizer.iterations.numpy()) // per_pass)  # passes so far
        dnn_curve["dnn_val_accuracy"].append(score(pred if y_val.ndim > 1 else pred[:, 0], y_val)[1])
        dnn_curve["after_kernel_val_accuracy"].append(krr_accuracy(model, x_tr, y_tr, x_val, y_val))
        return -len(dnn_curve["step"])

    train_dnn(net, x_tr, y_fit, dnn_lr, dnn_steps, min(32, len(x_tr)), lambda m: None, calls=calls, monitor=monitor)
    return {
        "dataset": ds.name,
        "n_train": len(x_tr),
        "n_val": len(x_val),
        "n_classes": ds.n_classes,
        "settings": {"depth": depth, "width": width, "kare_lr": kare_lr, "dnn_lr": dnn_lr, "every": every},
        "kare": kare_curve,
        "dnn": dnn_curve,
        "dnn_sgd_steps_per_pass": per_pass,
        "kare_seconds": kare_seconds,
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(4.2 * len(results), 6.4), squeeze=False)
    for j, r in enumerate(results):
        ax = axes[0, j]
        k = r["kare"]
        ax.plot(k["step"], k["kare"], color="tab:red", label="training KARE")
        ax.set_yscale("log")
        ax.set_title(f"{r['dataset']} (n = {r['n_train']} + {r['n_val']})", fontsize=10)
        ax.set_xlabel("KARE step")
        ax.set_ylabel("training KARE", color="tab:red")
        ax2 = ax.twinx()
        ax2.plot(k["step"], k["val_accuracy"], color="tab:blue", marker="o", ms=3, label="KRR on NTK-KARE")
        ax2.set_ylabel("validation accuracy", color="tab:blue")
        ax = axes[1, j]
        d = r["dnn"]
        ax.plot(d["step"], d["after_kernel_val_accuracy"], marker="o", ms=3, label="after-kernel (KRR)")
        ax.plot(d["step"], d["dnn_val_accuracy"], marker="s", ms=3, label="DNN")
        best = max(k["val_accuracy"]) if k["val_accuracy"] else np.nan
        ax.axhline(best, color="tab:blue", ls="--", lw=1, label="NTK-KARE, best")
        ax.set_xlabel("DNN pass over the data")
        ax.set_ylabel("validation accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder of the UCI tables (Fernández-Delgado layout)")
    parser.add_argument("--datasets", required=True, help="comma-separated table names")
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--kare-lr", type=float, default=10.0)
    parser.add_argument("--dnn-lr", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=300, help="KARE steps")
    parser.add_argument("--dnn-steps", type=int, default=400, help="DNN passes")
    parser.add_argument("--every", type=int, default=10, help="evaluation period (KARE steps; DNN passes)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "uci_trajectories"))
    args = parser.parse_args(argv)

    from keras_kare.datasets.uci import load_uci

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.datasets.split(","):
        t0 = time.time()
        r = trajectories(
            load_uci(args.data_dir, name), args.depth, args.width, args.kare_lr, args.dnn_lr, args.steps,
            args.dnn_steps, args.every,
        )  # fmt: skip
        results.append(r)
        k, d = r["kare"], r["dnn"]
        print(f"\n{name}: n_train {r['n_train']}, n_val {r['n_val']} ({time.time() - t0:.0f}s)")
        print("| KARE step | training KARE | val. accuracy, KRR on NTK-KARE |")
        print("|---|---|---|")
        for s, kv, a in zip(k["step"], k["kare"], k["val_accuracy"]):
            print(f"| {s} | {kv:.4g} | {100 * a:.1f} |")
        print("| DNN pass | val. accuracy, DNN | val. accuracy, after-kernel |")
        print("|---|---|---|")
        for s, a, b in zip(d["step"], d["dnn_val_accuracy"], d["after_kernel_val_accuracy"]):
            print(f"| {s} | {100 * a:.1f} | {100 * b:.1f} |")
    (out / "trajectories.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "uci_trajectories.png")
    print(f"\nwrote {out / 'trajectories.json'} and {out / 'uci_trajectories.png'}")


if __name__ == "__main__":
    main()
