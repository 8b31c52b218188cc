"""Tutorial: Figure 1 of the KARE paper, synthetic single-index regression.

The paper compares, on y = cos(γxᵀw)/(1+exp(γxᵀw)) + σε (x, w ~ N(0, I_10),
800 train / 200 test), three predictors built from the same GELU network
(one hidden layer of 64 units): KRR with the NTK trained on KARE ("NTK-KARE"),
the network trained on the MSE ("DNN"), and KRR with the NTK of that trained
network ("after-kernel"). Test MSE is plotted against the relative ridge λ̃ of
KRR, the DNN as a horizontal line. This script runs the same driver as
``keras-kare reproduce synthetic`` with fewer seeds and steps (edit SETTINGS
to use the paper's: 10 seeds, 100 KARE steps, 10 000 DNN steps) and prints the
markdown table; the plot is written next to it.

Run:  python tutorials/synthetic.py [OUT_DIR]       (about 3-4 minutes)
"""

import sys
import tempfile
from pathlib import Path

from keras_kare.reproduce.experiments import SYNTHETIC_DEFAULTS, run_synthetic

SETTINGS = dict(SYNTHETIC_DEFAULTS, gamma=1.0, sigma=0.0, seeds=[0], kare_steps=50, dnn_steps=3000, quick=True)

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="kare-synthetic-")) / "run"
summary = run_synthetic(SETTINGS, out, log=print)
print(f"plot: {out / 'test_mse_vs_ridge.png'}")
print(
    f"best test MSE: NTK-KARE {summary['kare']['best_test_mse']:.4f}, after-kernel "
    f"{summary['after_kernel']['best_test_mse']:.4f}, DNN {summary['dnn']['test_mse']:.4f}"
)
print(
    "One seed is one draw of w and seeds differ a lot (seed 0 is an easy one, where the after-kernel can win);\n"
    "over 5 seeds NTK-KARE is best on average, see docs/results.md."
)
