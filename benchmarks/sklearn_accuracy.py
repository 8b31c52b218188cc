"""Cross-validated accuracy of KAREClassifier / KARERegressor against scikit-learn defaults.

Every estimator runs with its default hyper-parameters inside
``make_pipeline(StandardScaler(), ...)`` (nothing is tuned on any data set);
5-fold cross-validation with shuffled, seeded folds (stratified for the
classifiers). Data: scikit-learn's bundled sets (no download). Prints a table
(mean ± standard deviation over the folds) and writes JSON.

``--early-stopping`` adds the KARE estimator with ``early_stopping=True``, without and
with ``include_initial=True`` (the untrained network a candidate), everything else default.

Run:  python benchmarks/sklearn_accuracy.py [--folds 5] [--early-stopping]
          [--out benchmarks/results/sklearn_accuracy.json]
"""

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tasks():
    from sklearn import datasets

    return {
        "breast_cancer": ("classification", datasets.load_breast_cancer(return_X_y=True)),
        "wine": ("classification", datasets.load_wine(return_X_y=True)),
        "iris": ("classification", datasets.load_iris(return_X_y=True)),
        "diabetes": ("regression", datasets.load_diabetes(return_X_y=True)),
    }


def estimators(kind: str, early_stopping: bool = False) -> dict:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.svm import SVC, SVR

    from keras_kare.sklearn import KAREClassifier, KARERegressor

    kare = KAREClassifier if kind == "classification" else KARERegressor
    out = {kare.__name__: kare(random_state=0)}
    if early_stopping:
        out[f"{kare.__name__}, early-stopped"] = kare(early_stopping=True, random_state=0)
        out[f"{kare.__name__}, early-stopped, initial a candidate"] = kare(
            early_stopping=True, include_initial=True, random_state=0
        )
    if kind == "classification":
        out.update({"SVC (RBF)": SVC(), "random forest": RandomForestClassifier(random_state=0)})
    else:
        out.update(
            {
                "SVR (RBF)": SVR(),
                "kernel ridge (RBF)": KernelRidge(kernel="rbf"),
                "random forest": RandomForestRegressor(random_state=0),
            }
        )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument(
        "--early-stopping", action="store_true", help="add the KARE estimator with early_stopping (± include_initial)"
    )
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "sklearn_accuracy.json"), help="JSON output"
    )
    args = parser.parse_args(argv)

    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = []
    print(f"{'data set':14s} {'metric':9s} {'estimator':52s} {'mean ± sd over folds':>22s} {'time [s]':>9s}")
    for name, (kind, (x, y)) in tasks().items():
        if kind == "classification":
            cv, metric = StratifiedKFold(args.folds, shuffle=True, random_state=0), "accuracy"
        else:
            cv, metric = KFold(args.folds, shuffle=True, random_state=0), "r2"
        for label, est in estimators(kind, args.early_stopping).items():
            t = time.perf_counter()
            scores = cross_val_score(make_pipeline(StandardScaler(), est), x, y, cv=cv, scoring=metric)
            seconds = time.perf_counter() - t
            rows.append(
                {"data": name, "metric": metric, "estimator": label, "scores": scores.tolist(), "seconds": seconds}
            )
            print(f"{name:14s} {metric:9s} {label:52s} {np.mean(scores):13.3f} ± {np.std(scores):.3f} {seconds:9.1f}")
    print(f"load average (1 min) {os.getloadavg()[0]:.2f}; cpus {os.cpu_count()}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"folds": args.folds, "early_stopping": args.early_stopping, "rows": rows}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
