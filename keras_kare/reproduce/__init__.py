"""Reproduction of the KARE paper's experiments (``keras-kare reproduce``).

Public entry points (the command line's, as functions; each returns the run's summary dict):

- :func:`synthetic` (Figure 1; ``panels="all"`` for its six panels),
  :func:`mnist` and :func:`higgs` (Figure 2; ``networks="all"`` for its six networks),
  :func:`uci` (Table 1); :func:`make_settings` builds the settings they store.

Modules:

- :mod:`keras_kare.initializers` (re-exported here): PyTorch-style U(±1/√fan_in) init, the paper's MLPs.
- :mod:`~keras_kare.reproduce.runner`: one seed of NTK-KARE vs DNN vs after-kernel.
- :mod:`~keras_kare.reproduce.experiments`: synthetic / MNIST / Higgs / UCI drivers with the paper's defaults.
- :mod:`~keras_kare.reproduce.figure`: a whole figure (every panel in its own run folder), its grid plot and table.
- :mod:`~keras_kare.reproduce.results`: CSV/JSON, summary.json, markdown table, plots.
- :mod:`~keras_kare.reproduce.stats`: paired comparisons over seeds (sign test, bootstrap).
- :mod:`~keras_kare.reproduce.scoring`: Friedman rank, mean accuracy, P90, P95, PMA.

Example:
    >>> from keras_kare import reproduce
    >>> summary = reproduce.synthetic("runs/fig1", panels="all")  # doctest: +SKIP
"""

from keras_kare.initializers import FanInUniform, build_mlp, torch_dense
from keras_kare.reproduce.experiments import higgs, make_settings, mnist, synthetic, uci
from keras_kare.reproduce.scoring import average_ranks, score_table

__all__ = [
    "FanInUniform",
    "average_ranks",
    "build_mlp",
    "higgs",
    "make_settings",
    "mnist",
    "score_table",
    "synthetic",
    "torch_dense",
    "uci",
]
