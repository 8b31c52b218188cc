"""tf.data helpers: numpy arrays, TFDS (mock data only, never downloads) and IDX files."""

import gzip
import struct
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

try:
    import tensorflow_datasets as tfds
except ImportError:  # the [tfds] extra is not installed
    tfds = None

from keras_kare import KAREModel
from keras_kare._optional import MissingExtraError
from keras_kare.datasets import DatasetError, read_idx, tfdata

needs_tfds = pytest.mark.skipif(tfds is None, reason="tensorflow-datasets not installed (the [tfds] extra)")


def _labelled(n=120, seed=0):
    r = np.random.default_rng(seed)
    x = r.integers(0, 256, size=(n, 6, 6), dtype=np.uint8)
    labels = np.arange(n) % 10  # every class, 12 of each
    return x, labels


def _batches(ds):
    return [(xb.numpy(), yb.numpy()) for xb, yb in ds]


def test_from_arrays_7_vs_9_pm1_flatten_scale():
    x, labels = _labelled()
    ds = tfdata.from_arrays(x, labels, batch_size=5, classes=(7, 9), encoding="pm1", normalize="scale", flatten=True)
    batches = _batches(ds)
    assert len(batches) == 4  # 24 examples, drop_remainder → 4 batches of 5
    assert ds.element_spec[0].shape.as_list() == [5, 36] and ds.element_spec[1].shape.as_list() == [5]
    xs = np.concatenate([b[0] for b in batches])
    ys = np.concatenate([b[1] for b in batches])
    keep = np.isin(labels, (7, 9))
    np.testing.assert_array_equal(ys, np.where(labels[keep] == 7, 1.0, -1.0)[:20])
    np.testing.assert_allclose(xs, x[keep].reshape(-1, 36)[:20] / 255.0, rtol=1e-6)
    assert xs.dtype == np.float32 and ys.dtype == np.float32


def test_encodings_and_subsetting():
    x, labels = _labelled()
    xa, ya = tfdata.prepare_arrays(x, labels, classes=(3, 1, 4), encoding="one_hot")
    assert ya.shape == (36, 3)
    first = np.flatnonzero(np.isin(labels, (3, 1, 4)))[0]
    assert labels[first] == 1 and ya[0].tolist() == [0, 1, 0]  # columns follow the classes order
    _, yp = tfdata.prepare_arrays(x, labels, classes=(3, 1, 4), encoding="pm1_one_hot")
    np.testing.assert_array_equal(yp, 2 * ya - 1)
    _, yi = tfdata.prepare_arrays(x, labels, encoding="index")
    np.testing.assert_array_equal(yi, labels.astype(np.float32))
    # seeded subset: reproducible, different across seeds, in source order, drawn after filtering
    a = tfdata.prepare_arrays(x, labels, classes=(7, 9), encoding="pm1", count=10, seed=1)
    b = tfdata.prepare_arrays(x, labels, classes=(7, 9), encoding="pm1", count=10, seed=1)
    c = tfdata.prepare_arrays(x, labels, classes=(7, 9), encoding="pm1", count=10, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (10, 6, 6) and set(np.unique(a[1])) <= {-1.0, 1.0}
    # a small draw that misses classes still gets one column per class of the whole input
    _, small = tfdata.prepare_arrays(x, labels, encoding="one_hot", count=3, seed=0)
    assert small.shape == (3, 10)
    # regression targets pass through
    _, yr = tfdata.prepare_arrays(x, np.linspace(0, 1, 120), encoding=None)
    assert yr.dtype == np.float32 and yr.shape == (120,)


def test_normalisations():
    x, labels = _labelled()
    xs = tfdata.normalize(x, "standardize", flatten=True)
    np.testing.assert_allclose(xs.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(xs.std(axis=0), 1, atol=1e-4)
    xc = tfdata.normalize(x, "center_examples", flatten=True)
    np.testing.assert_allclose(xc.mean(axis=1), 0, atol=1e-6)
    assert np.abs(xc).max() <= 1.0
    raw = tfdata.normalize(x.astype(np.float32), "scale")
    np.testing.assert_array_equal(raw, x.astype(np.float32))  # float inputs are not rescaled
    assert tfdata.normalize(x, None).shape == (120, 6, 6)


def test_pipeline_shuffle_cache_prefetch_and_fit():
    r = np.random.default_rng(0)
    x = r.standard_normal((40, 3)).astype("float32")
    y = np.sign(x[:, 0]).astype("float32")
    ds = tfdata.from_arrays(x, y, batch_size=8, shuffle=True, seed=3)
    e1 = np.concatenate([b[1] for b in _batches(ds)])
    e2 = np.concatenate([b[1] for b in _batches(ds)])
    assert sorted(e1.tolist()) == sorted(y.tolist()) and not np.array_equal(e1, e2)  # reshuffled each epoch
    ds_plain = tfdata.from_arrays(x, y, batch_size=8, cache=False, prefetch=False, drop_remainder=False)
    assert [b[0].shape[0] for b in _batches(ds_plain)] == [8] * 5
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, "gelu"), keras.layers.Dense(1)])
    model = KAREModel(net, ridge=0.1, implementation="jacobian")
    model.compile(optimizer="sgd")
    hist = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(hist.history["kare"][0])


@needs_tfds
@pytest.mark.parametrize(
    "name, classes, encoding, flatten, x_shape, y_shape",
    [
        ("mnist", (7, 9), "pm1", True, (16, 784), (16,)),
        ("fashion_mnist", None, "one_hot", False, (16, 28, 28, 1), (16, 10)),
        ("cifar10", (0, 1, 2), "one_hot", False, (16, 32, 32, 3), (16, 3)),
    ],
)
def test_from_tfds_mock_data(name, classes, encoding, flatten, x_shape, y_shape):
    with tfds.testing.mock_data(num_examples=300):
        ds = tfdata.from_tfds(name, 16, classes=classes, encoding=encoding, flatten=flatten, count=32, seed=0)
        xb, yb = next(iter(ds))
    assert tuple(xb.shape) == x_shape and tuple(yb.shape) == y_shape
    assert xb.dtype == tf.float32 and yb.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(xb)) and float(tf.reduce_max(xb)) <= 1.0  # "scale" of uint8 images
    if encoding == "pm1":
        assert set(np.unique(yb.numpy())) <= {-1.0, 1.0}
    else:
        np.testing.assert_array_equal(yb.numpy().sum(axis=1), 1.0)
    assert ds.cardinality().numpy() == 2  # 32 examples / 16, drop_remainder


@needs_tfds
def test_from_tfds_matches_arrays_under_mock():
    with tfds.testing.mock_data(num_examples=100):
        images, labels = tfdata.load_tfds_arrays("mnist", split="test")
        ds = tfdata.from_tfds("mnist", 4, split="test", classes=(7, 9), encoding="pm1", flatten=True)
    xs = np.concatenate([b[0] for b in _batches(ds)])
    keep = np.isin(labels, (7, 9))
    n = len(xs)
    assert n == (keep.sum() // 4) * 4
    np.testing.assert_allclose(xs, images[keep].reshape(-1, 784)[:n] / 255.0, rtol=1e-6)


def _write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim) + struct.pack(
        ">" + "I" * array.ndim, *array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_from_idx_local_files(tmp_path):
    x, labels = _labelled(n=50)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    ds = tfdata.from_idx(tmp_path, 4, classes=(7, 9), encoding="pm1", flatten=True, normalize="scale")
    xs = np.concatenate([b[0] for b in _batches(ds)])
    keep = np.isin(labels, (7, 9))
    np.testing.assert_allclose(xs, x[keep].reshape(-1, 36)[: len(xs)] / 255.0, rtol=1e-6)
    with pytest.raises(DatasetError, match="no t10k-images-idx3-ubyte"):
        tfdata.from_idx(tmp_path, 4, split="test")


def test_from_idx_offline_mnist_test_set(offline_mnist):
    ds = tfdata.from_idx(
        offline_mnist, 100, split="t10k", classes=(7, 9), encoding="pm1", count=400, seed=0, flatten=True
    )
    batches = _batches(ds)
    assert len(batches) == 4 and batches[0][0].shape == (100, 784)
    ys = np.concatenate([b[1] for b in batches])
    labels = read_idx(offline_mnist / "t10k-labels-idx1-ubyte.gz")
    share7 = np.mean(labels[np.isin(labels, (7, 9))] == 7)  # 1028 / 2037
    assert np.mean(ys == 1.0) == pytest.approx(share7, abs=0.08)


# ---------------------------------------------------------------- bad input
def test_from_tfds_without_tensorflow_datasets_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"tensorflow-datasets.*keras-kare\[tfds\]"):
        tfdata.from_tfds("mnist", 16)


@needs_tfds
def test_unknown_tfds_name_raises():
    with pytest.raises(DatasetError, match=r"no data set named 'mnistt'.*Did you mean 'mnist'"):
        tfdata.from_tfds("mnistt", 16)


@needs_tfds
def test_unprepared_tfds_never_downloads(tmp_path):
    with pytest.raises(DatasetError, match="not prepared in data_dir=.*download=False"):
        tfdata.from_tfds("mnist", 16, data_dir=str(tmp_path))


@needs_tfds
def test_absent_classes_raise():
    x, labels = _labelled()
    with pytest.raises(DatasetError, match=r"classes \[10, 11\] are not present in the arrays"):
        tfdata.from_arrays(x, labels, 4, classes=(7, 10, 11), encoding="one_hot")
    with tfds.testing.mock_data(num_examples=50):
        with pytest.raises(DatasetError, match=r"classes \[12\] are not present in TFDS 'mnist' split 'train'"):
            tfdata.from_tfds("mnist", 4, classes=(7, 12))


def test_other_bad_arguments():
    x, labels = _labelled()
    with pytest.raises(ValueError, match="exactly two classes"):
        tfdata.from_arrays(x, labels, 4, classes=(1, 2, 3), encoding="pm1")
    with pytest.raises(DatasetError, match="count=100 examples requested but the arrays has only 24"):
        tfdata.from_arrays(x, labels, 4, classes=(7, 9), encoding="pm1", count=100)
    with pytest.raises(ValueError, match="batch_size must be an int >= 2"):
        tfdata.from_arrays(x, labels, 1)
    with pytest.raises(ValueError, match="would be empty"):
        tfdata.from_arrays(x, labels, 64, classes=(7, 9), encoding="pm1")
    with pytest.raises(ValueError, match="encoding must be one of"):
        tfdata.from_arrays(x, labels, 4, encoding="onehot")
    with pytest.raises(ValueError, match="normalize must be one of"):
        tfdata.from_arrays(x, labels, 4, normalize="minmax")
    with pytest.raises(ValueError, match="same number of rows"):
        tfdata.from_arrays(x, labels[:5], 4)
    with pytest.raises(ValueError, match="distinct"):
        tfdata.from_arrays(x, labels, 4, classes=(7, 7))
