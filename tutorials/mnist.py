"""Tutorial: Figure 2 of the KARE paper, MNIST 7 vs 9.

Digits 7 (+1) and 9 (−1), pixels in [0, 1], a 2-pixel border cropped (576
features), every image centred on its own mean; 1000 training and 1000 test
images per seed. The paper trains GELU MLPs of depth 2 or 4 and width 32-128
with KARE (z = 0.1, SGD lr 10 at depth 2 and 1 at depth 4, 300 steps) and
compares KRR with the learned NTK against the network trained on the MSE and
its after-kernel, over the relative ridges 1e-3 ... 1e3.

Data: MNIST's IDX files (``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``,
optionally the ``train-*`` pair, as published by LeCun et al.), in
``$KERAS_KARE_DATA/mnist`` (or pass ``data_dir=``; the CLI's ``--data-dir``); else a
tensorflow-datasets ``mnist`` already prepared on the machine. Nothing is downloaded.
If the folder holds only the *test set*, train and test are disjoint draws from
it; the output says which.

This script calls ``keras_kare.reproduce.mnist`` (the function behind
``keras-kare reproduce mnist``) on a small version: depth 2, width 64, 300
training images, one seed. The paper's settings are the defaults:
``keras-kare reproduce mnist --depth 4 --width 128`` (10 seeds), or
``keras-kare reproduce mnist --networks all --out DIR`` for the six networks.

Run:  KERAS_KARE_DATA=DIR python tutorials/mnist.py [OUT_DIR]
      KERAS_KARE_FAST=1 ...   (a few steps: checks that it runs)
"""

import os
import sys
import tempfile
from pathlib import Path

from keras_kare import reproduce

FAST = os.environ.get("KERAS_KARE_FAST", "") not in ("", "0")  # the test suite's smoke run
KARE_STEPS, DNN_STEPS = (3, 50) if FAST else (60, 2000)

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="kare-mnist-")) / "run"
summary = reproduce.mnist(
    out, depth=2, width=64, n_train=300, n_test=500, seeds=[0], kare_steps=KARE_STEPS, dnn_steps=DNN_STEPS, quick=True
)
for method in ("kare", "after_kernel"):
    print(f"{method}: test accuracy at the best ridge {summary[method]['best_test_accuracy']:.3f}")
print(f"dnn: test accuracy {summary['dnn']['test_accuracy']:.3f}")
