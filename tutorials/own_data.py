"""Your own data: a KARE-trained NTK on a table, with scikit-learn and with plain Keras.

Two bundled scikit-learn data sets stand in for your own tables:
breast_cancer (569 rows, 30 features, two classes) and diabetes (442 rows,
10 features, regression). Each is solved twice:

1. ``keras_kare.sklearn.KAREClassifier`` / ``KARERegressor`` in a
   ``Pipeline`` with ``StandardScaler``: fit, score, done. Needs
   ``pip install 'keras-kare[sklearn]'``.
2. The same by hand in a Keras workflow: a Keras MLP wrapped in
   ``keras_kare.KAREModel`` (its NTK trained to minimise KARE, Schwab et al.
   2025), early stopping on held-out kernel-ridge error
   (``keras_kare.callbacks.KernelRidgeEarlyStopping``), then
   ``keras_kare.KernelPredictor`` (kernel ridge regression on the learned NTK,
   ridge chosen on the training rows by KARE).

Classes are coded ±1 (two classes) for the kernel regression; the predicted
class is the sign of its score.

Run:  python tutorials/own_data.py            (about a minute on a laptop CPU)
      KERAS_KARE_FAST=1 python tutorials/own_data.py   (seconds: a smoke run)
"""

import os

import keras
import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import keras_kare
from keras_kare.callbacks import KernelRidgeEarlyStopping
from keras_kare.sklearn import KAREClassifier, KARERegressor

FAST = os.environ.get("KERAS_KARE_FAST", "") not in ("", "0")
STEPS = 5 if FAST else 100
WIDTH = 16 if FAST else 128


def with_sklearn(name, estimator, x_tr, y_tr, x_te, y_te):
    model = make_pipeline(StandardScaler(), estimator).fit(x_tr, y_tr)
    print(f"{name:14s} scikit-learn estimator : test score {model.score(x_te, y_te):.3f}")


def with_keras(name, x_tr, y_tr, x_te, y_te, classify):
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_te = scaler.transform(x_tr).astype("float32"), scaler.transform(x_te).astype("float32")
    if classify:
        t_tr = np.where(y_tr == 1, 1.0, -1.0).astype("float32")  # ±1 codes
    else:
        mean, std = y_tr.mean(), y_tr.std()
        t_tr = ((y_tr - mean) / std).astype("float32")  # KRR has no intercept: centre and scale the targets
    # hold out 10% of the training rows for early stopping
    x_fit, x_val, t_fit, t_val = train_test_split(x_tr, t_tr, test_size=0.1, random_state=0)

    net = keras.Sequential([keras.Input((x_tr.shape[1],)), keras.layers.Dense(WIDTH, "gelu"), keras.layers.Dense(1)])
    model = keras_kare.KAREModel(net, ridge=0.1, kernel="summed_output")
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    stop = KernelRidgeEarlyStopping(x_fit, t_fit, (x_val, t_val), patience=5, every_n_epochs=5)
    model.fit(x_fit, t_fit, batch_size=len(x_fit), epochs=STEPS, verbose=0, callbacks=[stop])
    print(f"{name:14s} Keras + KAREModel      : kept the weights of step {stop.best_epoch + 1}")

    predictor = keras_kare.KernelPredictor(model, ridge="auto", kernel="summed_output").fit(x_tr, t_tr)
    scores = predictor.predict(x_te)
    if classify:
        print(f"{name:14s} Keras + KernelPredictor: test accuracy {np.mean((scores > 0) == (y_te == 1)):.3f}")
    else:
        pred = scores * std + mean
        r2 = 1 - np.sum((y_te - pred) ** 2) / np.sum((y_te - y_te.mean()) ** 2)
        print(f"{name:14s} Keras + KernelPredictor: test R² {r2:.3f}")


def main():
    keras.utils.set_random_seed(0)
    params = dict(hidden_layer_sizes=(WIDTH,), max_steps=STEPS, random_state=0)

    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    split = (x_tr, y_tr, x_te, y_te)
    with_sklearn("breast_cancer", KAREClassifier(**params), *split)
    with_keras("breast_cancer", *split, classify=True)

    x, y = load_diabetes(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0)
    split = (x_tr, y_tr, x_te, y_te)
    with_sklearn("diabetes", KARERegressor(**params), *split)
    with_keras("diabetes", *split, classify=False)


if __name__ == "__main__":
    main()
