"""Tutorial: Figure 1 of the KARE paper, synthetic single-index regression.

The paper compares, on y = cos(γxᵀw)/(1+exp(γxᵀw)) + σε (x, w ~ N(0, I_10),
800 train / 200 test), three predictors built from the same GELU network
(one hidden layer of 64 units): KRR with the NTK trained on KARE ("NTK-KARE"),
the network trained on the MSE ("DNN"), and KRR with the NTK of that trained
network ("after-kernel"). Test MSE is plotted against the relative ridge λ̃ of
KRR, the DNN as a horizontal line.

This script calls ``keras_kare.reproduce.synthetic``, the function behind
``keras-kare reproduce synthetic``, with one seed and fewer steps than the
paper (a smoke run, not evidence either way: one draw of w can favour any
method). The paper's settings are the defaults: drop the overrides below, or
run ``keras-kare reproduce synthetic`` (one panel, 10 seeds) or
``keras-kare reproduce synthetic --panels all --out DIR`` (the six panels and the
2×3 figure). docs/results.md has those results.

Run:  python tutorials/synthetic.py [OUT_DIR]
      KERAS_KARE_FAST=1 python tutorials/synthetic.py   (a few steps: checks that it runs)
"""

import os
import sys
import tempfile
from pathlib import Path

from keras_kare import reproduce

FAST = os.environ.get("KERAS_KARE_FAST", "") not in ("", "0")  # the test suite's smoke run
KARE_STEPS, DNN_STEPS = (3, 50) if FAST else (50, 3000)

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="kare-synthetic-")) / "run"
summary = reproduce.synthetic(
    out, gamma=1.0, sigma=0.0, seeds=[0], kare_steps=KARE_STEPS, dnn_steps=DNN_STEPS, quick=True
)
print(f"plot: {out / 'test_mse_vs_ridge.png'}; table: {out / 'table.md'}")
print(
    f"best test MSE (seed 0): NTK-KARE {summary['kare']['best_test_mse']:.4f}, after-kernel "
    f"{summary['after_kernel']['best_test_mse']:.4f}, DNN {summary['dnn']['test_mse']:.4f}"
)
