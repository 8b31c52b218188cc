"""Numpy loaders: IDX (incl. corrupt files), MNIST 7-vs-9, synthetic, UCI layout + preprocessing."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from keras_kare.datasets import (
    DatasetError,
    encode_targets,
    list_uci_datasets,
    load_mnist_7v9,
    load_uci,
    make_single_index,
    mnist_dir,
    preprocess_features,
    read_idx,
    uci_split,
)
from keras_kare.datasets.synthetic import single_index_target
from keras_kare.decision import class_index

FIXTURES = Path(__file__).parent / "fixtures"
UCI_DIR = FIXTURES / "uci"


def write_idx(path: Path, array: np.ndarray, gz: bool = False):
    codes = {np.dtype("uint8"): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.tobytes()
    (gzip.open(path, "wb") if gz else open(path, "wb")).write(raw) if not gz else gzip.open(path, "wb").write(raw)
    return path


def fake_mnist_dir(root: Path, n: int = 60, split: str = "t10k", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    labels = np.array([7, 9, 1] * (n // 3), dtype=np.uint8)
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    write_idx(root / f"{split}-images-idx3-ubyte.gz", images, gz=True)
    write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels, gz=True)
    return root


# ------------------------------------------------------------------------ IDX
def test_read_idx_plain_and_gzip(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    # hand-written header: magic 0x00000803, then dims 3, 2, 2
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(range(12))
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), arr)
    with gzip.open(tmp_path / "a-idx3-ubyte.gz", "wb") as f:
        f.write(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)
    big = np.array([1, -2, 70000], dtype=">i4")
    write_idx(tmp_path / "b", big)
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), [1, -2, 70000])


@pytest.mark.parametrize(
    "raw, match",
    [
        (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "truncated or corrupt"),  # says 5 bytes, holds 2
        (bytes([1, 2, 3, 4, 0, 0, 0, 1, 1]), "bad IDX magic"),
        (bytes([0, 0]), "too short"),
        (bytes([0, 0, 8, 3, 0, 0]), "header declares 3 dimensions"),
    ],
)
def test_read_idx_corrupt_names_file(tmp_path, raw, match):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(raw)
    with pytest.raises(DatasetError, match=match) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_read_idx_bad_gzip_and_missing(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="gzip"):
        read_idx(path)
    with pytest.raises(DatasetError, match="file not found"):
        read_idx(tmp_path / "nope")


# ----------------------------------------------------------------------- MNIST
def test_mnist_test_only_folder_draws_disjoint(tmp_path):
    d = fake_mnist_dir(tmp_path / "m", n=90)  # 30 sevens, 30 nines
    x_tr, y_tr, x_te, y_te, info = load_mnist_7v9(n_train=25, n_test=30, seed=1, data_dir=d)
    assert x_tr.shape == (25, 576) and x_te.shape == (30, 576) and x_tr.dtype == np.float32
    assert set(np.unique(y_tr)) <= {-1.0, 1.0}
    np.testing.assert_allclose(x_tr.mean(axis=1), 0, atol=1e-6)
    rows_tr = {r.tobytes() for r in x_tr}
    assert not rows_tr & {r.tobytes() for r in x_te}
    assert "disjoint" in info["note"] and str(d) in info["source"]
    with pytest.raises(DatasetError, match="fewer than"):
        load_mnist_7v9(n_train=40, n_test=30, data_dir=d)


def test_mnist_preprocessing_by_hand(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    img = np.zeros((2, 28, 28), np.uint8)
    img[0, 2, 2] = 255  # inside the crop: kept
    img[0, 0, 0] = 255  # border: cropped away
    img[1, 10, 10] = 51
    write_idx(d / "t10k-images-idx3-ubyte", img)
    write_idx(d / "t10k-labels-idx1-ubyte", np.array([7, 9], np.uint8))
    x_tr, y_tr, x_te, y_te, _ = load_mnist_7v9(n_train=1, n_test=1, seed=0, data_dir=d)
    x = np.concatenate([x_tr, x_te])
    y = np.concatenate([y_tr, y_te])
    seven = x[y == 1][0]
    nine = x[y == -1][0]
    assert seven[0] == pytest.approx(1 - 1 / 576) and seven[1] == pytest.approx(-1 / 576)
    assert nine.max() == pytest.approx(0.2 - 0.2 / 576)


def test_mnist_train_and_test_files(tmp_path):
    d = fake_mnist_dir(tmp_path / "m", n=30, split="t10k")
    fake_mnist_dir(d, n=30, split="train", seed=1)
    *_, info = load_mnist_7v9(n_train=10, n_test=10, data_dir=d)
    assert "training set" in info["note"]


def test_mnist_location_from_environment(tmp_path, monkeypatch):
    fake_mnist_dir(tmp_path / "mnist", n=90)
    monkeypatch.setenv("KERAS_KARE_DATA", str(tmp_path))
    assert mnist_dir() == tmp_path / "mnist"
    *_, info = load_mnist_7v9(n_train=10, n_test=10)
    assert info["source"] == f"IDX files in {tmp_path / 'mnist'}"
    other = fake_mnist_dir(tmp_path / "other", n=90)
    assert mnist_dir(other) == other  # the argument wins over the environment
    monkeypatch.setenv("KERAS_KARE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match=r"nowhere/mnist: MNIST data folder \(\$KERAS_KARE_DATA/mnist\) does not"):
        load_mnist_7v9()


def test_mnist_without_location_names_argument_and_variable(monkeypatch):
    monkeypatch.delenv("KERAS_KARE_DATA", raising=False)
    with pytest.raises(DatasetError, match=r"pass data_dir .* or set \$KERAS_KARE_DATA"):
        mnist_dir()
    with pytest.raises(DatasetError, match=r"pass data_dir .* or set \$KERAS_KARE_DATA"):
        load_mnist_7v9(use_tfds=False)


def test_mnist_from_prepared_tfds(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    from keras_kare.datasets import mnist

    monkeypatch.delenv("KERAS_KARE_DATA", raising=False)
    monkeypatch.setattr(mnist, "tfds_prepared", lambda name: name == "mnist")  # mock data are never "prepared"
    with tfds.testing.mock_data(num_examples=200):
        x_tr, y_tr, x_te, y_te, info = load_mnist_7v9(n_train=5, n_test=5)
    assert info["source"] == "tensorflow-datasets mnist" and "training set" in info["note"]
    assert x_tr.shape == (5, 576) and set(np.unique(np.concatenate([y_tr, y_te]))) <= {-1.0, 1.0}


def test_mnist_bad_folders(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_mnist_7v9(data_dir=tmp_path / "missing")
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        load_mnist_7v9(data_dir=tmp_path)
    d = fake_mnist_dir(tmp_path / "c", n=30)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 99, 7])))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist_7v9(n_train=2, n_test=2, data_dir=d)


def test_mnist_offline_copy(offline_mnist):
    x_tr, y_tr, x_te, y_te, info = load_mnist_7v9(n_train=1000, n_test=1000, seed=0, data_dir=offline_mnist)
    assert x_tr.shape == (1000, 576) and x_te.shape == (1000, 576)
    assert 0.3 < np.mean(y_tr == 1) < 0.7
    assert "test set" in info["note"]


# ------------------------------------------------------------------- synthetic
def test_single_index_generator():
    a = make_single_index(1.0, 0.0, seed=3)
    b = make_single_index(1.0, 0.0, seed=3)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    x_tr, y_tr, x_te, y_te = a
    assert x_tr.shape == (800, 10) and x_te.shape == (200, 10) and y_tr.shape == (800,)
    # the authors' stream: x, then w, then noise from np.random.RandomState(seed)
    rng = np.random.RandomState(3)
    x = rng.randn(1000, 10)
    w = rng.randn(10, 1)
    np.testing.assert_allclose(y_te, single_index_target(x[800:] @ w)[:, 0], rtol=1e-5, atol=1e-6)
    assert single_index_target(np.array(0.0)) == pytest.approx(0.5)
    _, y_noisy, _, _ = make_single_index(1.0, 0.1, seed=3)
    assert 0.05 < np.std(y_noisy - y_tr) < 0.15
    with pytest.raises(ValueError, match="n_train"):
        make_single_index(n=10, n_train=10)


# ------------------------------------------------------------------------- UCI
def test_uci_loader_fixture():
    assert list_uci_datasets(UCI_DIR) == ["tiny2", "tiny3"]
    ds = load_uci(UCI_DIR, "tiny2")
    assert ds.x.shape == (10, 3) and ds.n_classes == 2
    np.testing.assert_array_equal(ds.x[1], [1.5, 2.0, 3.0])
    np.testing.assert_array_equal(ds.labels, [0, 1, 0, 1, 1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(ds.train_index, [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(ds.test_index, [6, 7, 8, 9])
    assert len(ds.kfold) == 4
    np.testing.assert_array_equal(ds.kfold[3][1], [6, 7, 8, 9])
    ds3 = load_uci(UCI_DIR, "tiny3")
    assert ds3.n_classes == 3 and ds3.x.shape == (12, 2)


def test_uci_split_by_hand():
    """n < 100: robust scaling with training median and IQR (numpy's linear percentiles)."""
    x_tr, y_tr, x_te, y_te, labels = uci_split(load_uci(UCI_DIR, "tiny2"))
    # f1 train = 0.5..5.5: median 3, q25 1.75, q75 4.25 -> IQR 2.5; test 6.5 -> 1.4
    assert x_te[0, 0] == pytest.approx(1.4)
    # f2 train = [1,2,0,1,2,0]: median 1, q25 0.25, q75 1.75 -> IQR 1.5; test row 7 has 2.0 -> 2/3
    assert x_te[1, 1] == pytest.approx(2 / 3)
    # f3 constant: IQR 0 -> scale 1, centred to 0
    np.testing.assert_array_equal(x_tr[:, 2], 0)
    np.testing.assert_array_equal(y_tr, [-1, 1, -1, 1, 1, -1])
    np.testing.assert_array_equal(labels, [1, 0, 1, 0])
    _, y3, _, _, _ = uci_split(load_uci(UCI_DIR, "tiny3"))
    np.testing.assert_array_equal(y3[0], [1, -1, -1])
    np.testing.assert_array_equal(y3[2], [-1, 1, -1])


def test_uci_standardisation_branch_by_hand():
    """n >= 100: clip to the training 5th-95th percentiles, then standardise."""
    x_tr = np.arange(101, dtype=float)[:, None]  # percentiles 5 and 95 are exactly 5 and 95
    x_te = np.array([[-10.0], [50.0], [200.0]])
    a, b = preprocess_features(x_tr, x_te)
    clipped = np.clip(np.arange(101.0), 5, 95)
    mean, std = clipped.mean(), clipped.std()
    assert mean == pytest.approx(50.0)
    np.testing.assert_allclose(b[:, 0], [(5 - 50) / std, 0.0, (95 - 50) / std])
    assert a.mean() == pytest.approx(0.0, abs=1e-12) and a.std() == pytest.approx(1.0)


def test_encode_decode():
    np.testing.assert_array_equal(encode_targets([0, 1, 1], 2), [-1, 1, 1])
    np.testing.assert_array_equal(encode_targets([2, 0], 3), [[-1, -1, 1], [1, -1, -1]])
    labels = np.array([0, 1, 1, 0])
    np.testing.assert_array_equal(class_index(encode_targets(labels, 2)), labels)  # decoding inverts encoding
    np.testing.assert_array_equal(class_index(encode_targets([2, 0, 1], 3)), [2, 0, 1])


def _copy_fixture(tmp_path, name="tiny2"):
    import shutil

    root = tmp_path / "uci"
    shutil.copytree(UCI_DIR / name, root / name)
    return root


def test_uci_bad_inputs(tmp_path):
    root = _copy_fixture(tmp_path)
    with pytest.raises(DatasetError, match="unknown UCI data set 'nope'"):
        load_uci(root, "nope")
    with pytest.raises(DatasetError, match="does not exist"):
        load_uci(tmp_path / "missing", "tiny2")
    with pytest.raises(DatasetError, match="no UCI data sets found"):
        list_uci_datasets(tmp_path / "uci" / "tiny2")
    table = root / "tiny2" / "tiny2_R.dat"
    lines = table.read_text().splitlines()
    lines[3] = lines[3] + "\t7.0"
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 4 has 6 columns, expected 5") as err:
        load_uci(root, "tiny2")
    assert str(table) in str(err.value)


def test_uci_bad_index_files(tmp_path):
    root = _copy_fixture(tmp_path)
    (root / "tiny2" / "conxuntos.dat").write_text("0 1 2 3 4 5\n6 7 8 99\n")
    with pytest.raises(DatasetError, match="outside 0..9"):
        load_uci(root, "tiny2")
    (root / "tiny2" / "conxuntos.dat").unlink()
    with pytest.raises(DatasetError, match="conxuntos.dat: file not found"):
        load_uci(root, "tiny2")
