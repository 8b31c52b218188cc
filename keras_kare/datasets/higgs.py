"""Figure 2's Higgs task: signal (+1) vs background (−1) from a user-provided CSV file.

Two public layouts are recognised from the file's first line:

- **UCI HIGGS** (``HIGGS.csv`` or ``HIGGS.csv.gz``, Baldi, Sadowski, Whiteson
  2014, UCI Machine Learning Repository): no header; column 0 is the label (1
  signal, 0 background), then 28 features (21 low-level, 7 high-level).
- **Kaggle / ATLAS Higgs challenge** (``training.csv``, 2014; the ATLAS
  open-data release ``atlas-higgs-challenge-2014-v2.csv`` adds ``KaggleSet``
  and ``KaggleWeight``): a header with ``EventId``, 30 ``DER_*``/``PRI_*``
  features, ``Weight`` and ``Label`` (``s``/``b``). ``EventId`` and every weight
  or bookkeeping column (``Weight``, ``KaggleSet``, ``KaggleWeight``) are
  **dropped**: the weights are event weights for the challenge's score, and
  they differ by class, so keeping ``Weight`` as a feature (as the paper's
  loader does) leaks the label. Missing values are coded ``-999.0`` in this
  layout; each is replaced by the mean of the observed values of its column
  over the training draw (so it carries no label information from the test
  rows), and the features are then standardised with the training draw's
  mean and standard deviation.

Only the first ``max_rows`` data rows are read (the UCI file has 11 million);
``n_train`` and ``n_test`` rows are drawn from them, disjointly, per seed. The
data are never downloaded: put the file in ``data_dir`` (or
``$KERAS_KARE_DATA/higgs``).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from pathlib import Path

import numpy as np

from keras_kare.datasets.errors import DatasetError

DATA_ENV = "KERAS_KARE_DATA"
FILE_NAMES = (
    "HIGGS.csv",
    "HIGGS.csv.gz",
    "training.csv",
    "training.csv.gz",
    "atlas-higgs-challenge-2014-v2.csv",
    "atlas-higgs-challenge-2014-v2.csv.gz",
)
MISSING = -999.0
UCI_FEATURES = 28
DROPPED_COLUMNS = ("EventId", "Weight", "KaggleSet", "KaggleWeight")
"""Kaggle/ATLAS columns that are not features (identifier, class-dependent event weights, bookkeeping)."""


def higgs_file(data_dir=None) -> Path:
    """The Higgs CSV file in ``data_dir`` (else ``$KERAS_KARE_DATA/higgs``), the first of :data:`FILE_NAMES` there.

    ``data_dir`` may also be the file itself.

    Raises:
        DatasetError: no location given, or no known file there.
    """
    if data_dir is not None:
        directory = Path(data_dir)
        if directory.is_file():
            return directory
    elif os.environ.get(DATA_ENV):
        directory = Path(os.environ[DATA_ENV]) / "higgs"
    else:
        raise DatasetError(
            f"no Higgs location given: pass data_dir (CLI: --data-dir) or set ${DATA_ENV} to a folder whose higgs/ "
            f"sub-folder holds one of {', '.join(FILE_NAMES)}."
        )
    for name in FILE_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise DatasetError(f"{directory}: no Higgs file found (expected one of {', '.join(FILE_NAMES)}).")


def _open_text(path: Path):
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open("r", encoding="utf-8", newline="")


def read_higgs(path, max_rows: int = 100_000):
    """Features, ±1 labels and the layout of the first ``max_rows`` rows of a Higgs CSV file.

    Args:
        path: a file in one of the two layouts (see the module docstring), optionally gzip-compressed.
        max_rows: data rows read from the start of the file.

    Returns:
        ``(x, y, info)``: float64 features (``NaN`` where the Kaggle layout has
        ``-999.0``), float32 labels (+1 signal, −1 background) and ``info`` with
        ``layout`` (``"uci"`` or ``"kaggle"``), ``features`` (column names) and
        ``dropped`` (columns removed).

    Raises:
        DatasetError: unknown layout, a malformed row or label (the message names the file and row).

    Example:
        >>> x, y, info = read_higgs("data/higgs/HIGGS.csv.gz", max_rows=5000)  # doctest: +SKIP
    """
    path = Path(path)
    if int(max_rows) < 1:
        raise ValueError(f"max_rows must be a positive integer, received {max_rows!r}.")
    with _open_text(path) as f:
        reader = csv.reader(f)
        try:
            first = next(reader)
        except StopIteration:
            raise DatasetError(f"{path}: empty file.") from None
        if "Label" in first and "EventId" in first:
            return _read_kaggle(path, first, reader, int(max_rows))
        if len(first) == UCI_FEATURES + 1:
            return _read_uci(path, first, reader, int(max_rows))
    raise DatasetError(
        f"{path}: unknown layout: the first line has {len(first)} fields (expected the UCI HIGGS layout, no header "
        f"and {UCI_FEATURES + 1} numbers, or the Kaggle layout, a header with EventId … Weight, Label)."
    )


def _read_uci(path: Path, first: list, reader, max_rows: int):
    rows = [first]
    for row in reader:
        if len(rows) >= max_rows:
            break
        rows.append(row)
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError:
        bad = next(i for i, r in enumerate(rows) if len(r) != UCI_FEATURES + 1 or not _numbers(r))
        raise DatasetError(
            f"{path}: row {bad + 1} is not {UCI_FEATURES + 1} numbers (UCI HIGGS layout): {rows[bad][:4]}…"
        ) from None
    labels = data[:, 0]
    if not np.isin(labels, (0.0, 1.0)).all():
        bad = int(np.flatnonzero(~np.isin(labels, (0.0, 1.0)))[0])
        raise DatasetError(f"{path}: row {bad + 1} has label {labels[bad]!r} (expected 1 signal or 0 background).")
    info = {"layout": "uci", "features": [f"f{k}" for k in range(1, UCI_FEATURES + 1)], "dropped": []}
    return data[:, 1:], np.where(labels == 1.0, 1.0, -1.0).astype(np.float32), info


def _numbers(row) -> bool:
    try:
        [float(v) for v in row]
    except ValueError:
        return False
    return True


def _read_kaggle(path: Path, header: list, reader, max_rows: int):
    label = header.index("Label")
    dropped = [c for c in header if c in DROPPED_COLUMNS]
    keep = [k for k, c in enumerate(header) if c not in DROPPED_COLUMNS and k != label]
    x, y = [], []
    for i, row in enumerate(reader):
        if i >= max_rows:
            break
        if len(row) != len(header):
            raise DatasetError(f"{path}: row {i + 2} has {len(row)} fields, the header {len(header)}.")
        if row[label] not in ("s", "b"):
            raise DatasetError(f"{path}: row {i + 2} has Label {row[label]!r} (expected s or b).")
        try:
            x.append([float(row[k]) for k in keep])
        except ValueError:
            raise DatasetError(f"{path}: row {i + 2} has a non-numeric feature.") from None
        y.append(1.0 if row[label] == "s" else -1.0)
    if not x:
        raise DatasetError(f"{path}: no data rows after the header.")
    x = np.array(x, dtype=np.float64)
    x[x == MISSING] = np.nan
    info = {"layout": "kaggle", "features": [header[k] for k in keep], "dropped": dropped}
    return x, np.array(y, dtype=np.float32), info


def standardise(x_train: np.ndarray, x_test: np.ndarray):
    """Missing (NaN) entries → the training column mean, then both scaled by the training mean and std.

    A column with no observed training value becomes 0; a constant column is only centred.
    """
    observed = np.where(np.isnan(x_train), 0.0, x_train)
    counts = (~np.isnan(x_train)).sum(axis=0)
    mean = np.divide(observed.sum(axis=0), counts, out=np.zeros(x_train.shape[1]), where=counts > 0)
    x_train = np.where(np.isnan(x_train), mean, x_train)
    x_test = np.where(np.isnan(x_test), mean, x_test)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def load_higgs(n_train: int = 1000, n_test: int = 1000, seed: int = 0, data_dir=None, max_rows: int = 100_000):
    """Signal vs background as numpy arrays: disjoint random draws of ``n_train`` and ``n_test`` rows.

    Args:
        n_train, n_test: sizes of the draws (the paper's MNIST panel: 1000 / 1000).
        seed: seed of the draw (``numpy.random.RandomState``).
        data_dir: the folder holding the file (or the file); None: ``$KERAS_KARE_DATA/higgs``.
        max_rows: rows read from the start of the file, the pool the draws come from.

    Returns:
        ``(x_train, y_train, x_test, y_test, info)``: float32 standardised
        features (missing values imputed, see :func:`standardise`), y in {+1, −1},
        ``info`` with ``source``, ``layout``, ``dropped`` and ``note``.

    Raises:
        DatasetError: no file, malformed file, or fewer than ``n_train + n_test`` rows read.

    Example:
        >>> x_tr, y_tr, x_te, y_te, info = load_higgs(data_dir="data/higgs", seed=0)  # doctest: +SKIP
    """
    path = higgs_file(data_dir)
    x, y, meta = read_higgs(path, max_rows)
    if len(x) < n_train + n_test:
        raise DatasetError(f"{path}: {len(x)} rows read, fewer than n_train + n_test = {n_train + n_test}.")
    perm = np.random.RandomState(seed).permutation(len(x))
    i_tr, i_te = perm[:n_train], perm[n_train : n_train + n_test]
    x_tr, x_te = standardise(x[i_tr], x[i_te])
    missing = float(np.isnan(x).mean())
    note = (
        f"{meta['layout']} layout, {len(meta['features'])} features"
        + (f" ({', '.join(meta['dropped'])} dropped)" if meta["dropped"] else "")
        + f"; train and test are disjoint random draws from the first {len(x)} rows"
        + (f"; {100 * missing:.1f}% of entries missing (-999), imputed with training means" if missing else "")
    )
    info = {"source": str(path), "layout": meta["layout"], "dropped": meta["dropped"], "note": note}
    return x_tr, y[i_tr], x_te, y[i_te], info
