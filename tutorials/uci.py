"""Tutorial: Table 1 of the KARE paper, the UCI classification collection.

Fernández-Delgado et al. (2014) published 121 UCI data sets in one layout
(``<name>/<name>_R.dat`` with fixed train/test index files ``conxuntos.dat``
and ``conxuntos_kfold.dat``); Arora et al. (2020) scored kernels on them by
Friedman rank, mean accuracy, P90, P95 and PMA. The KARE paper trains GELU MLPs
(depth 1-5 × width 32-512 × 4 learning rates) with KARE and reports the
accuracy of KRR with the learned NTK (sign for two classes, argmax of ±1
one-hot targets for more), picking the configuration on the test split.

The data are not shipped and never downloaded: get the archive distributed
with Fernández-Delgado et al.'s paper (also used by Arora et al.) and pass its
folder as the first argument (e.g. ``$KERAS_KARE_DATA/uci``). Without it, this
script runs on the two tiny data sets of the test fixture, to show the
mechanics: per-data-set results in ``runs/<name>.json`` (an interrupted run
continues with ``resume=True`` / ``--resume``), then the scores across data sets.
It calls ``keras_kare.reproduce.uci``, the function behind ``keras-kare reproduce uci``,
on one small configuration instead of the paper's grid.

Run:  python tutorials/uci.py [DATA_DIR [OUT_DIR]]
      KERAS_KARE_FAST=1 python tutorials/uci.py   (a few steps: checks that it runs)
CLI:  keras-kare reproduce uci --data-dir DATA_DIR [--datasets a,b] [--quick]
"""

import os
import sys
import tempfile
from pathlib import Path

from keras_kare import reproduce

FAST = os.environ.get("KERAS_KARE_FAST", "") not in ("", "0")  # the test suite's smoke run
KARE_STEPS, DNN_STEPS = (3, 5) if FAST else (50, 100)

data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "tests" / "fixtures" / "uci"
out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="kare-uci-")) / "run"
summary = reproduce.uci(
    out,
    data_dir=data_dir,
    depths=[1],
    widths=[32],
    kare_lrs=[10.0],
    dnn_lrs=[0.1],
    kare_steps=KARE_STEPS,
    dnn_steps=DNN_STEPS,
    quick=True,
)
for method in ("kare", "after_kernel", "dnn"):
    s = summary[method]
    print(
        f"{method:>12}: Friedman rank {s['friedman_rank']:.2f}, mean accuracy {s['mean_accuracy']:.1f}%, "
        f"P90 {s['p90']:.0f}%, P95 {s['p95']:.0f}%, PMA {s['pma']:.1f}%"
    )
