"""Reproduction of the KARE paper's experiments (``keras-kare reproduce``).

- :mod:`~keras_kare.reproduce.initializers`: PyTorch-style U(±1/√fan_in) init, the paper's MLPs.
- :mod:`~keras_kare.reproduce.runner`: one seed of NTK-KARE vs DNN vs after-kernel.
- :mod:`~keras_kare.reproduce.experiments`: synthetic / MNIST / UCI drivers with the paper's defaults.
- :mod:`~keras_kare.reproduce.results`: CSV/JSON, summary.json, markdown table, plots.
- :mod:`~keras_kare.reproduce.scoring`: Friedman rank, mean accuracy, P90, P95, PMA.
"""

from keras_kare.reproduce.initializers import FanInUniform, build_mlp, torch_dense
from keras_kare.reproduce.scoring import average_ranks, score_table

__all__ = ["FanInUniform", "average_ranks", "build_mlp", "score_table", "torch_dense"]
