"""The one Gram engine (``keras_kare.ntk.GramEngine``) and its single compiled-function cache.

Every Gram of the package goes through ``GramEngine``: inputs are checked
once at the boundary (not again for every block below it), compiled
functions live in one per-model cache that a deleted model releases, and the
training step's Gram is the engine's.
"""

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
from oracles import krr_predict_oracle, ntk_oracle

import keras_kare
from keras_kare import _validation
from keras_kare.backend import cached_functions
from keras_kare.ntk import GramEngine


def _net(d=4, width=8, outputs=1, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(width, "gelu"), keras.layers.Dense(outputs)])


@pytest.fixture
def count_checks(monkeypatch):
    calls = []
    original = _validation.as_network_input

    def counting(model, x, name, *args, **kwargs):
        calls.append(name)
        return original(model, x, name, *args, **kwargs)

    monkeypatch.setattr(_validation, "as_network_input", counting)
    return calls


def test_predictor_checks_its_inputs_once_however_many_blocks(count_checks, rng):
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.normal(size=40)
    net = _net()
    predictor = keras_kare.KernelPredictor(net, solver="nystrom", n_centers=8, batch_size=4, ridge=1e-2).fit(x, y)
    assert count_checks == ["x"]  # not once per streamed block (10 row blocks and their diagonal blocks)
    assert predictor.predict(x[:7]).shape == (7,)
    assert count_checks == ["x", "x"]
    exact = keras_kare.KernelPredictor(net, solver="exact", batch_size=4, ridge=1e-2, relative_ridge=False).fit(x, y)
    assert count_checks == ["x", "x", "x"]  # 10 x 10 blocks, half of them computed
    k = ntk_oracle(net, x)
    oracle = krr_predict_oracle(k, k[:7], y, 1e-2)
    np.testing.assert_allclose(exact.predict(x[:7]), oracle, rtol=1e-3, atol=1e-4)


def test_ntk_checks_each_argument_once(count_checks, rng):
    x = rng.normal(size=(9, 4)).astype("float32")
    keras_kare.ntk(_net(), x, x[:5], batch_size=2)
    assert count_checks == ["x1", "x2"]


def test_one_cache_per_model_released_with_the_model(rng):
    x = rng.normal(size=(7, 4)).astype("float32")
    net = _net()
    keras_kare.ntk(net, x)  # one compiled Gram
    keras_kare.ntk(net, x, batch_size=3)  # captured blocks (structured) and no second compiled-Gram cache
    kinds = sorted(type(f).__name__ for f in cached_functions(net))
    assert kinds.count("CapturedBlocks") == 1
    assert sum(isinstance(f, tf.types.experimental.PolymorphicFunction) for f in cached_functions(net)) == 1
    net.layers[0].trainable = False  # another set of variables: other functions, the old ones kept
    keras_kare.ntk(net, x)
    assert sum(isinstance(f, tf.types.experimental.PolymorphicFunction) for f in cached_functions(net)) == 2
    ref = weakref.ref(net)
    del net, kinds
    gc.collect()
    assert ref() is None  # nothing cached for it kept it alive


def test_engine_gram_forms_agree_with_the_oracle(rng):
    x = rng.normal(size=(6, 4)).astype("float32")
    net = _net(outputs=2)
    engine = GramEngine(net, kernel="trace", batch_size=4)
    xt = engine.inputs(x, "x")
    oracle = ntk_oracle(net, x)
    rtol = 1e-4  # float32 Grams of a 58-weight network
    np.testing.assert_allclose(engine.gram(xt).numpy(), oracle, rtol=rtol, atol=1e-5)
    np.testing.assert_allclose(engine.step_gram(xt).numpy(), oracle, rtol=rtol, atol=1e-5)
    rows = engine.global_rows(xt[:3], lambda t, axis: t)  # one participant: its rows are its own Gram
    np.testing.assert_allclose(rows.numpy(), oracle[:3, :3], rtol=rtol, atol=1e-5)


def test_engine_rejects_bad_settings_before_any_work():
    with pytest.raises(ValueError, match="kernel must be one of"):
        GramEngine(_net(), kernel="diag")
    with pytest.raises(ValueError, match="implementation must be one of"):
        GramEngine(_net(), implementation="fast")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        GramEngine(_net(), batch_size=0)
    with pytest.raises(TypeError, match="must be a keras.Model"):
        GramEngine(np.ones(3))
