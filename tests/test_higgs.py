"""Higgs loader (keras_kare.datasets.higgs) on small synthetic files in the two public layouts."""

import csv
import gzip

import numpy as np
import pytest

from keras_kare.datasets import DatasetError, load_higgs, read_higgs
from keras_kare.datasets.higgs import standardise


def _uci_file(path, n=40, seed=0):
    """UCI HIGGS layout: no header, label 1/0 in column 0, then 28 features; gzip-compressed."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(float)
    features = rng.normal(size=(n, 28))
    features[:, 0] = np.arange(n)  # a row identifier to check disjoint draws
    data = np.column_stack([labels, features])
    with gzip.open(path, "wt") as f:
        for row in data:
            f.write(",".join(f"{v:.18e}" for v in row) + "\n")
    return labels, features


def _kaggle_file(path, n=40, seed=0):
    """Kaggle layout: EventId, 3 features (-999 missing), a class-dependent Weight, Label s/b."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.5, "s", "b")
    weight = np.where(labels == "s", 0.002, 1.5)  # as in the challenge: weights differ by class
    mass = rng.normal(120, 20, n)
    mass[::4] = -999.0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["EventId", "DER_mass_MMC", "DER_row", "PRI_tau_pt", "Weight", "Label"])
        for i in range(n):
            w.writerow([100000 + i, f"{mass[i]:.3f}", i, f"{rng.normal(40, 5):.3f}", weight[i], labels[i]])
    return labels, mass


def test_uci_layout_labels_and_features(tmp_path):
    labels, features = _uci_file(tmp_path / "HIGGS.csv.gz")
    x, y, info = read_higgs(tmp_path / "HIGGS.csv.gz", max_rows=30)
    assert info["layout"] == "uci" and info["dropped"] == [] and x.shape == (30, 28)
    np.testing.assert_allclose(x, features[:30])
    np.testing.assert_array_equal(y, np.where(labels[:30] == 1, 1.0, -1.0))


def test_kaggle_layout_drops_id_and_weight_and_marks_missing(tmp_path):
    labels, mass = _kaggle_file(tmp_path / "training.csv")
    x, y, info = read_higgs(tmp_path / "training.csv")
    assert info["layout"] == "kaggle" and info["dropped"] == ["EventId", "Weight"]
    assert info["features"] == ["DER_mass_MMC", "DER_row", "PRI_tau_pt"]
    np.testing.assert_array_equal(y, np.where(labels == "s", 1.0, -1.0))
    assert np.isnan(x[::4, 0]).all() and not np.isnan(np.delete(x[:, 0], np.s_[::4])).any()


def test_load_higgs_draws_disjoint_standardised_rows_without_leaks(tmp_path):
    _kaggle_file(tmp_path / "training.csv", n=60)
    x_tr, y_tr, x_te, y_te, info = load_higgs(n_train=25, n_test=20, seed=3, data_dir=tmp_path)
    assert x_tr.shape == (25, 3) and x_te.shape == (20, 3) and x_tr.dtype == np.float32
    assert np.isfinite(x_tr).all() and np.isfinite(x_te).all()
    np.testing.assert_allclose(x_tr.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(x_tr.std(axis=0), 1.0, atol=1e-5)
    raw, _, _ = read_higgs(tmp_path / "training.csv")
    perm = np.random.RandomState(3).permutation(60)
    rows_tr, rows_te = set(raw[perm[:25], 1]), set(raw[perm[25:45], 1])  # DER_row identifies the row
    assert not rows_tr & rows_te and len(rows_tr) == 25
    assert info["dropped"] == ["EventId", "Weight"] and "EventId, Weight dropped" in info["note"]
    # a missing value becomes the training mean: 0 after standardising
    missing_tr = np.isnan(raw[perm[:25], 0])
    assert missing_tr.any() and np.allclose(x_tr[missing_tr, 0], 0.0, atol=1e-6)


def test_standardise_by_hand():
    a = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, 8.0]])
    b = np.array([[np.nan, 0.0]])
    tr, te = standardise(a, b)
    # column 1: missing → mean 6 of the observed training values; then (v − 6) / std([6, 4, 8])
    np.testing.assert_allclose(tr[:, 1], (np.array([6.0, 4.0, 8.0]) - 6.0) / np.std([6.0, 4.0, 8.0]), rtol=1e-6)
    np.testing.assert_allclose(te[0], [0.0, -6.0 / np.std([6.0, 4.0, 8.0])], rtol=1e-6)


def test_uci_file_found_from_env_and_sizes_checked(tmp_path, monkeypatch):
    (tmp_path / "higgs").mkdir()
    _uci_file(tmp_path / "higgs" / "HIGGS.csv.gz", n=30)
    monkeypatch.setenv("KERAS_KARE_DATA", str(tmp_path))
    x_tr, y_tr, x_te, y_te, info = load_higgs(n_train=10, n_test=10)
    assert info["layout"] == "uci" and set(np.unique(y_tr)) <= {-1.0, 1.0}
    with pytest.raises(DatasetError, match="fewer than n_train"):
        load_higgs(n_train=20, n_test=20)


def test_bad_files_fail_clearly(tmp_path):
    (tmp_path / "HIGGS.csv").write_text("1,2,3\n")
    with pytest.raises(DatasetError, match="unknown layout"):
        read_higgs(tmp_path / "HIGGS.csv")
    (tmp_path / "HIGGS.csv").write_text(",".join(["2"] + ["0.5"] * 28) + "\n")
    with pytest.raises(DatasetError, match="label"):
        read_higgs(tmp_path / "HIGGS.csv")
    (tmp_path / "training.csv").write_text("EventId,f,Weight,Label\n1,0.5,1.0,x\n")
    with pytest.raises(DatasetError, match="Label 'x'"):
        read_higgs(tmp_path / "training.csv")
    with pytest.raises(DatasetError, match="no Higgs file"):
        load_higgs(data_dir=tmp_path / "training.csv.parent-missing")


@pytest.mark.slow
def test_reproduce_higgs_cli_tiny(tmp_path, capsys):
    from keras_kare.cli import main

    _kaggle_file(tmp_path / "training.csv", n=50)
    out = tmp_path / "run"
    argv = [
        "reproduce",
        "higgs",
        "--data-dir",
        str(tmp_path),
        "--n-train",
        "15",
        "--n-test",
        "15",
        "--depth",
        "1",
        "--width",
        "4",
        "--seeds",
        "1",
        "--kare-steps",
        "2",
        "--dnn-steps",
        "3",
        "--ridges",
        "0.1,10",
        "--out",
        str(out),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    summary = (out / "summary.json").read_text()
    assert "kaggle layout" in summary and (out / "table.md").is_file()
