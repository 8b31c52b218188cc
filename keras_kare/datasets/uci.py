"""The 121 UCI classification data sets of Fernández-Delgado et al. (2014).

Published layout (one folder per data set, as distributed with Arora et al. 2020,
"Harnessing the Power of Infinitely Wide Deep Nets on Small-data Tasks")::

    DATA_DIR/<name>/<name>_R.dat         header line, then one row per example:
                                         "<row id> <feature 1> ... <feature d> <class>"
    DATA_DIR/<name>/conxuntos.dat        2 lines: train indices, test indices (0-based)
    DATA_DIR/<name>/conxuntos_kfold.dat  8 lines: train/test indices of 4 folds
    DATA_DIR/<name>/<name>.txt           optional metadata ("n_clases= 2", "n_entradas= 8", ...)

Classes are integers 0..C-1. Preprocessing follows the KARE paper's code
(Schwab et al. 2025): with at least 100 examples, clip every feature to the
5th-95th percentiles of the training rows and standardise with the training
mean and standard deviation (a zero std becomes 1e-8); with fewer, robust
scaling (training median and inter-quartile range; a zero range becomes 1).
Targets are ±1 for two classes and ±1 one-hot (−1 off the class) for more;
:func:`keras_kare.decision.class_index` turns predictions back into class labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from keras_kare.datasets.errors import DatasetError


@dataclass
class UCIDataset:
    """One data set of the collection (raw features, before preprocessing)."""

    name: str
    x: np.ndarray  # (n, d) float64
    labels: np.ndarray  # (n,) int, 0..C-1
    n_classes: int
    train_index: np.ndarray  # conxuntos.dat line 1
    test_index: np.ndarray  # conxuntos.dat line 2
    kfold: list = field(default_factory=list)  # [(train, test)] from conxuntos_kfold.dat


def list_uci_datasets(data_dir) -> list[str]:
    """Sorted names of the sub-folders of ``data_dir`` that hold ``<name>_R.dat``."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: UCI data folder does not exist.")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / f"{p.name}_R.dat").is_file())
    if not names:
        raise DatasetError(
            f"{root}: no UCI data sets found (expected sub-folders <name>/ holding <name>_R.dat, conxuntos.dat "
            "and conxuntos_kfold.dat, as published by Fernández-Delgado et al. 2014)."
        )
    return names


def _read_metadata(path: Path) -> dict:
    meta = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2:
                meta[parts[0]] = parts[1]
    return meta


def _read_index_lines(path: Path, n: int, expected_lines: int) -> list[np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (expected {expected_lines} lines of 0-based example indices).")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < expected_lines:
        raise DatasetError(f"{path}: {len(lines)} non-empty lines, expected {expected_lines} lines of example indices.")
    out = []
    for i, line in enumerate(lines[:expected_lines], start=1):
        try:
            idx = np.array([int(t) for t in line.split()], dtype=np.int64)
        except ValueError:
            raise DatasetError(
                f"{path}: line {i} holds a non-integer entry (expected 0-based example indices)."
            ) from None
        if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
            raise DatasetError(f"{path}: line {i} has indices outside 0..{n - 1} (the _R.dat table has {n} rows).")
        out.append(idx)
    return out


def _read_table(path: Path, n_features: Optional[int]):
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (expected the data table <name>_R.dat).")
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if len(lines) < 2:
        raise DatasetError(f"{path}: no data rows (expected a header line and one row per example).")
    header = lines[0].split()
    # header: feature names + class column (the row-id column has no name)
    expected = n_features + 2 if n_features is not None else len(header) + 1
    rows_x, labels = [], []
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if len(parts) != expected:
            raise DatasetError(
                f"{path}: line {lineno} has {len(parts)} columns, expected {expected} "
                f"(row id, {expected - 2} features, class)."
            )
        try:
            rows_x.append([float(t) for t in parts[1:-1]])
            label = float(parts[-1])
        except ValueError:
            raise DatasetError(f"{path}: line {lineno} holds a non-numeric value (expected numbers only).") from None
        if label != int(label) or label < 0:
            raise DatasetError(f"{path}: line {lineno} has class {parts[-1]!r}, expected an integer 0..C-1.")
        labels.append(int(label))
    return np.array(rows_x, dtype=np.float64), np.array(labels, dtype=np.int64)


def load_uci(data_dir, name: str) -> UCIDataset:
    """Read one data set in the published layout (no preprocessing).

    Raises:
        DatasetError: unknown name, missing file, wrong column count, bad indices.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: UCI data folder does not exist.")
    folder = root / name
    if not folder.is_dir():
        raise DatasetError(f"{folder}: unknown UCI data set {name!r} (no such folder in {root}).")
    meta = _read_metadata(folder / f"{name}.txt")
    n_features = int(meta["n_entradas="]) if "n_entradas=" in meta else None
    x, labels = _read_table(folder / f"{name}_R.dat", n_features)
    n_classes = int(meta["n_clases="]) if "n_clases=" in meta else int(labels.max()) + 1
    if labels.max() >= n_classes:
        raise DatasetError(
            f"{folder / (name + '_R.dat')}: class {labels.max()} found but the metadata says {n_classes} classes."
        )
    n_classes = max(n_classes, 2)
    train_index, test_index = _read_index_lines(folder / "conxuntos.dat", len(x), 2)
    folds_flat = _read_index_lines(folder / "conxuntos_kfold.dat", len(x), 8)
    kfold = [(folds_flat[2 * k], folds_flat[2 * k + 1]) for k in range(4)]
    return UCIDataset(name, x, labels, n_classes, train_index, test_index, kfold)


def preprocess_features(x_train: np.ndarray, x_test: np.ndarray, n_total: Optional[int] = None):
    """Scale features with training statistics only (see the module docstring).

    Args:
        x_train, x_test: raw (·, d) features.
        n_total: size of the whole data set, which picks the scheme (>= 100:
            clip + standardise, else robust scaling); default len(x_train) + len(x_test).

    Returns:
        ``(x_train, x_test)`` scaled, float64.
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    n_total = len(x_train) + len(x_test) if n_total is None else n_total
    if n_total >= 100:
        lower = np.percentile(x_train, 5, axis=0)
        upper = np.percentile(x_train, 95, axis=0)
        x_train, x_test = np.clip(x_train, lower, upper), np.clip(x_test, lower, upper)
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std[std == 0] = 1e-8
        return (x_train - mean) / std, (x_test - mean) / std
    median = np.median(x_train, axis=0)
    q25, q75 = np.percentile(x_train, [25, 75], axis=0)
    scale = q75 - q25
    scale[scale == 0] = 1.0
    return (x_train - median) / scale, (x_test - median) / scale


def encode_targets(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """±1 for 2 classes (class 1 → +1, class 0 → −1); ±1 one-hot (n, C) for more."""
    labels = np.asarray(labels, dtype=np.int64)
    if n_classes <= 2:
        return np.where(labels == 1, 1.0, -1.0)
    y = -np.ones((len(labels), n_classes))
    y[np.arange(len(labels)), labels] = 1.0
    return y


def uci_split(ds: UCIDataset, fold: Optional[int] = None, dtype=np.float32):
    """Preprocessed train/test arrays of one data set.

    Args:
        ds: a :class:`UCIDataset`.
        fold: ``None`` for the ``conxuntos.dat`` split (the paper's), else
            0..3 for a ``conxuntos_kfold.dat`` fold.

    Returns:
        ``(x_train, y_train, x_test, y_test, labels_test)``; y encoded by
        :func:`encode_targets`.
    """
    if fold is None:
        tr, te = ds.train_index, ds.test_index
    else:
        tr, te = ds.kfold[fold]
    x_tr, x_te = preprocess_features(ds.x[tr], ds.x[te], n_total=len(ds.x))
    y_tr = encode_targets(ds.labels[tr], ds.n_classes)
    y_te = encode_targets(ds.labels[te], ds.n_classes)
    return x_tr.astype(dtype), y_tr.astype(dtype), x_te.astype(dtype), y_te.astype(dtype), ds.labels[te]
