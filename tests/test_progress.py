"""Progress bars (keras.utils.Progbar) for blocked Gram work and the ridge path."""

import keras
import numpy as np
import pytest

import keras_kare
from keras_kare import KernelPredictor
from keras_kare.progress import HANDFUL, shows


def _net():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(6, "tanh"), keras.layers.Dense(1)])


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3)).astype("float32")


def test_shows_rule():
    assert not shows("auto", HANDFUL) and shows("auto", HANDFUL + 1)
    assert shows(1, 1) and shows(True, 1) and not shows(0, 100)
    with pytest.raises(ValueError, match="verbose must be"):
        shows(2, 1)


def test_ntk_blocks_progress(capsys):
    net, x = _net(), _x(12)
    k_quiet = keras_kare.ntk(net, x, batch_size=4).numpy()  # 3 row blocks → 6 computed blocks ≤ handful
    assert capsys.readouterr().out == ""
    k_loud = keras_kare.ntk(net, x, batch_size=4, verbose=1).numpy()
    out = capsys.readouterr().out
    assert "6/6" in out
    np.testing.assert_array_equal(k_quiet, k_loud)
    keras_kare.ntk(net, _x(12), _x(9, 1), batch_size=3)  # 4 × 3 = 12 blocks > handful: shown by default
    assert "12/12" in capsys.readouterr().out
    keras_kare.ntk(net, _x(12), _x(9, 1), batch_size=3, verbose=0)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="verbose"):
        keras_kare.ntk(net, x, verbose="loud")


def test_predictor_progress(capsys):
    net, x = _net(), _x(16)
    y = np.sign(x[:, 0])
    kp = KernelPredictor(net, ridge=1e-2, batch_size=2, verbose=0).fit(x, y)  # 36 blocks, silenced
    kp.predict(_x(8, 1))
    kp.ridge_path([1e-3, 1e-2])
    assert capsys.readouterr().out == ""
    kp_loud = KernelPredictor(net, ridge=1e-2, batch_size=2, verbose=1).fit(x, y)
    assert "36/36" in capsys.readouterr().out
    np.testing.assert_array_equal(kp_loud.predict(_x(8, 1)), kp.predict(_x(8, 1)))
    assert "32/32" in capsys.readouterr().out  # 4 × 8 cross blocks
    p1 = kp_loud.ridge_path(np.logspace(-4, 1, 12))
    assert "9/9" in capsys.readouterr().out  # the eigendecomposition + 8 chunks of the grid
    np.testing.assert_allclose(p1.kare, kp.ridge_path(np.logspace(-4, 1, 12)).kare, rtol=1e-12)
    bad = KernelPredictor(net, verbose=3)  # scikit-learn convention: checked by fit, not __init__
    with pytest.raises(ValueError, match="verbose"):
        bad.fit(x, y)
