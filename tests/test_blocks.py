"""Capture-once blocked Grams (``backend.tensorflow.blocks``) against unblocked and jacobian Grams.

A blocked structured Gram captures each block's layer factors once and pairs
them; it must equal the one-block Gram (and the jacobian oracle) in every
kernel mode, for symmetric and cross Grams, with a ragged last block, for
layers whose factors are stored materialised (convolutions) or as ids
(embeddings), and when the memory check sends it back to per-pair capture.
"""

import logging
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from precision import gram_entry_rtol
from test_structured import KERNELS, _inputs, build, rel_err

import keras_kare
from keras_kare.backend import CapturedBlocks
from keras_kare.backend.tensorflow import structured_factors as sf
from keras_kare.backend.tensorflow.jacobian import jacobian_gram

ntk_module = sys.modules["keras_kare.ntk"]  # (keras_kare.ntk the attribute is the function)


def _count_captures(monkeypatch) -> list:
    calls = []
    original = CapturedBlocks.capture

    def counting(self, x):
        calls.append(int(tf.nest.flatten(x)[0].shape[0]))
        return original(self, x)

    monkeypatch.setattr(CapturedBlocks, "capture", counting)
    return calls


@pytest.mark.parametrize("name", ["mlp", "cnn", "text", "graph"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_blocked_equals_one_block_and_oracle(name, kernel, rng, monkeypatch):
    model = build(name, rng, c=3)
    x = _inputs(name, rng, 7, "float32")
    calls = _count_captures(monkeypatch)
    blocked = keras_kare.ntk(model, x, kernel=kernel, implementation="structured", batch_size=3)
    assert calls == [3, 3, 1]  # each block captured once (not once per pair: 6 pairs)
    whole = keras_kare.ntk(model, x, kernel=kernel, implementation="structured")
    oracle = jacobian_gram(model, x, None, kernel=kernel)
    tol = gram_entry_rtol(model.count_params())  # float32 Grams, see tests/precision.py
    assert rel_err(blocked, whole) <= tol
    assert rel_err(blocked, oracle) <= tol
    k = blocked.numpy()
    swapped = np.transpose(k, (1, 0, 3, 2)) if kernel == "full" else k.T
    np.testing.assert_array_equal(k, swapped)  # exactly symmetric


@pytest.mark.parametrize("name", ["mlp", "cnn", "text"])
def test_blocked_cross_gram(name, rng, monkeypatch):
    model = build(name, rng, c=2)
    x1, x2 = _inputs(name, rng, 5, "float32"), _inputs(name, rng, 4, "float32")
    calls = _count_captures(monkeypatch)
    blocked = keras_kare.ntk(model, x1, x2, implementation="structured", batch_size=2)
    assert calls == [2, 2, 1, 2, 2]  # 3 blocks of x1, 2 of x2, once each
    assert rel_err(blocked, jacobian_gram(model, x1, x2, kernel="trace")) <= gram_entry_rtol(model.count_params())


def test_float64_blocked_matches_oracle_to_float64_precision(rng):
    model = keras.Sequential(
        [
            keras.Input((5,), dtype="float64"),
            keras.layers.Dense(6, "tanh", dtype="float64"),
            keras.layers.Dense(2, dtype="float64"),
        ]
    )
    x = rng.normal(size=(9, 5))
    blocked = keras_kare.ntk(model, x, implementation="structured", batch_size=4)
    assert rel_err(blocked, jacobian_gram(model, tf.constant(x), None, kernel="trace")) <= gram_entry_rtol(
        model.count_params(), "float64"
    )


def test_convolution_factors_are_kept_materialised():
    """A conv layer over hundreds of positions is stored as per-example gradients, not patches."""
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(h)))
    x = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype("float32")
    from keras_kare.backend.tensorflow.structured import structured_features

    kept = structured_features(model, tf.constant(x), "trace", block_size=256)
    raw = structured_features(model, tf.constant(x), "trace")
    conv_key = next(k for k, f in raw.items() if isinstance(f, sf.LinearFactor) and f.a.shape[1] > 1)
    assert isinstance(kept[conv_key], sf.GradFactor)
    assert kept[conv_key].grad.shape == (1, 4, 9 * 8 + 8)  # kernel + bias per example
    assert CapturedBlocks.nbytes(sf.flatten_factors(kept)[1]) < CapturedBlocks.nbytes(sf.flatten_factors(raw)[1]) / 10


def test_memory_check_falls_back_to_per_pair_capture(rng, monkeypatch, caplog):
    model = build("mlp", rng, c=2)
    x = _inputs("mlp", rng, 7, "float32")
    reference = keras_kare.ntk(model, x, implementation="structured", batch_size=3).numpy()
    monkeypatch.setattr(ntk_module, "CAPTURE_MEMORY_FRACTION", 1e-12)
    calls = _count_captures(monkeypatch)
    with caplog.at_level(logging.INFO, logger="keras_kare"):
        k = keras_kare.ntk(model, x, implementation="structured", batch_size=3).numpy()
    assert calls == [3]  # the first block only, to measure its size
    assert "recomputing them for every block pair" in caplog.text
    assert rel_err(k, reference) <= gram_entry_rtol(model.count_params())


def test_jacobian_implementation_keeps_per_pair_path(rng, monkeypatch):
    model = build("mlp", rng, c=2)
    x = _inputs("mlp", rng, 5, "float32")
    calls = _count_captures(monkeypatch)
    kj = keras_kare.ntk(model, x, implementation="jacobian", batch_size=2)
    assert calls == []
    assert rel_err(kj, jacobian_gram(model, x, None, kernel="trace")) <= gram_entry_rtol(model.count_params())


def test_flatten_round_trip():
    a, d = tf.ones([2, 1, 1, 3]), tf.ones([1, 2, 1, 1, 4])
    factors = {
        (1,): sf.LinearFactor(a, d, ones=True),
        (2,): sf.EmbeddingFactor(tf.zeros([2, 3], tf.int32), tf.ones([1, 2, 3, 5]), 7),
        (3,): sf.GradFactor(tf.ones([1, 2, 6])),
    }
    meta, tensors = sf.flatten_factors(factors)
    back = sf.unflatten_factors(meta, tensors)
    assert list(back) == [(1,), (2,), (3,)]
    assert back[(1,)].ones and back[(2,)].vocab == 7 and isinstance(back[(3,)], sf.GradFactor)


def test_float64_inputs_of_a_float64_model_are_not_rounded(rng):
    """Per-layer float64 model under the default float32 policy: ntk keeps x in float64."""
    model = keras.Sequential(
        [
            keras.Input((5,), dtype="float64"),
            keras.layers.Dense(6, "tanh", dtype="float64"),
            keras.layers.Dense(2, dtype="float64"),
        ]
    )
    x = rng.normal(size=(6, 5))
    k = keras_kare.ntk(model, x, implementation="jacobian")
    assert k.dtype == tf.float64
    assert rel_err(k, jacobian_gram(model, tf.constant(x), None, kernel="trace")) <= gram_entry_rtol(
        model.count_params(), "float64"
    )
