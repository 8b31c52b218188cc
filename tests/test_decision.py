"""keras_kare.decision and keras_kare.networks: one decision rule, one network unwrapping."""

import keras
import numpy as np
import pytest

from keras_kare import KAREModel
from keras_kare.decision import accuracy, class_index
from keras_kare.networks import is_kare_model, unwrap_network


def _slow_accuracy(pred, y):
    """Row by row: sign for one column (0 → negative), first maximum for several."""
    pred, y = np.asarray(pred, float).reshape(len(pred), -1), np.asarray(y, float).reshape(len(y), -1)

    def decide(row):
        if len(row) == 1:
            return 1 if row[0] > 0 else 0
        best = 0
        for j in range(1, len(row)):
            if row[j] > row[best]:
                best = j
        return best

    return sum(decide(p) == decide(t) for p, t in zip(pred, y)) / len(pred)


@pytest.mark.parametrize("columns", [1, 3])
def test_accuracy_matches_row_by_row_oracle(rng, columns):
    for _ in range(5):
        y = -np.ones((40, columns)) if columns > 1 else rng.choice([-1.0, 1.0], (40, 1))
        if columns > 1:
            y[np.arange(40), rng.integers(0, columns, 40)] = 1.0
        pred = y + rng.normal(0, 1.0, y.shape)
        pred[:3] = 0.0  # exact ties: the negative class / the first column
        assert accuracy(pred, y) == pytest.approx(_slow_accuracy(pred, y), abs=0)


def test_class_index_rules():
    np.testing.assert_array_equal(class_index(np.array([0.3, -0.1, 0.0])), [1, 0, 0])
    np.testing.assert_array_equal(class_index(np.array([[0.3], [0.0]])), [1, 0])
    np.testing.assert_array_equal(class_index(np.array([[0.1, 0.5, -1], [2, 0, 0]])), [1, 0])
    assert class_index(np.array([1.0])).dtype == np.int64
    # 1-D and one column are the same; 0/1 one-hot and ±1 one-hot decide alike
    assert accuracy(np.array([0.5, -2.0, 1.0]), np.array([[1.0], [-1.0], [-1.0]])) == pytest.approx(2 / 3)
    assert accuracy(np.array([[0.9, 0.1], [0.2, 0.4]]), np.array([[1, 0], [1, 0]])) == 0.5


def test_bad_input():
    with pytest.raises(ValueError, match=r"same rows and columns.*\(3,\) and \(2,\)"):
        accuracy(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"same rows and columns"):
        accuracy(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="non-empty"):
        class_index(np.array(1.0))
    with pytest.raises(TypeError, match="numeric"):
        class_index(np.array(["a", "b"]))


def test_unwrap_network():
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model = KAREModel(net)
    assert is_kare_model(model) and not is_kare_model(net)
    assert unwrap_network(model) is net and unwrap_network(net) is net
