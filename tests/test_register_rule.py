"""A user-defined layer's structured-NTK rule (docs/adding_a_layer.md, executed here) against the Jacobian oracle.

The page's code defines ``ScaledDense`` and registers its rule with ``keras_kare.register_rule``; the
registry is restored after every test. Tolerance: each Gram entry within the float32 bound of
``precision.gram_entry_rtol`` (``(P + 8)·2⁻²⁴·√(K_ii K_jj)``).
"""

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from precision import gram_entry_rtol

import keras_kare
from keras_kare.backend.tensorflow import structured_rules
from keras_kare.backend.tensorflow.structured_factors import LinearFactor
from keras_kare.backend.tensorflow.structured_rules import Site, find_rule

PAGE = Path(__file__).resolve().parents[1] / "docs" / "adding_a_layer.md"


@pytest.fixture(autouse=True)
def restore_registry():
    saved = dict(structured_rules._RULES)
    yield
    structured_rules._RULES.clear()
    structured_rules._RULES.update(saved)


@pytest.fixture
def page():
    """The namespace of the page's first code block (the layer and its registered rule)."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    namespace = {"__name__": "adding_a_layer"}
    exec(compile(blocks[0], str(PAGE), "exec"), namespace)
    return namespace


def _net(layer_cls, frozen=False):
    first = layer_cls(7, "gelu")
    first.trainable = not frozen
    return keras.Sequential([keras.Input((5,)), first, layer_cls(6, "tanh"), keras.layers.Dense(2)])


def _entry_errors(model, x, kernel):
    """max over entries of |K_structured − K_jacobian| / (γ √(K_ii K_jj)): ≤ 1 passes."""
    k_s = np.asarray(keras_kare.ntk(model, x, kernel=kernel, implementation="structured"), np.float64)
    k_j = np.asarray(keras_kare.ntk(model, x, kernel=kernel, implementation="jacobian"), np.float64)
    n_params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    scale = np.sqrt(np.outer(np.diag(k_j), np.diag(k_j)))
    assert np.all(scale > 0)
    return float(np.max(np.abs(k_s - k_j) / (gram_entry_rtol(n_params) * scale)))


@pytest.mark.parametrize("kernel", ["trace", "summed_output"])
@pytest.mark.parametrize("frozen", [False, True])
def test_user_rule_matches_the_jacobian(page, kernel, frozen, rng):
    rule, calls = page["scaled_dense_rule"], []

    @keras_kare.register_rule(page["ScaledDense"])
    def counting(layer, x, rec):
        calls.append(layer.name)
        return rule(layer, x, rec)

    model = _net(page["ScaledDense"], frozen=frozen)
    x = rng.normal(size=(9, 5)).astype("float32")
    assert _entry_errors(model, x, kernel) <= 1.0
    # both ScaledDense layers went through the rule (the frozen one is skipped: nothing to differentiate)
    assert len(calls) == (1 if frozen else 2)


def test_register_rule_is_public_and_registers(page):
    assert keras_kare.register_rule is structured_rules.register_rule
    layer = page["ScaledDense"](3)
    assert find_rule(layer) is page["scaled_dense_rule"]


def test_registry_is_restored_between_tests():
    assert all(cls.__name__ != "ScaledDense" for cls in structured_rules._RULES)


def test_a_wrong_rule_fails_the_comparison(page, rng):
    """A rule that leaves out the bias's contribution gives another Gram: the oracle comparison can fail."""

    @keras_kare.register_rule(page["ScaledDense"])
    def without_bias(layer, x, rec):
        a = x * layer.scale
        z = keras.ops.matmul(a, layer.kernel) + layer.bias
        rec.watch(z)

        def finish(deltas):
            (delta,) = deltas
            n, c = tf.shape(a)[0], tf.shape(delta)[0]  # the batch axis is dynamic in the compiled Gram
            a4 = tf.reshape(a, [n, 1, 1, a.shape[-1]])
            return [((id(layer.kernel),), LinearFactor(a4, tf.reshape(delta, [c, n, 1, 1, layer.units])))]

        rec.sites.append(Site(layer, [z], finish))
        return layer.activation(z)

    model = _net(page["ScaledDense"])
    assert _entry_errors(model, rng.normal(size=(9, 5)).astype("float32"), "trace") > 100.0


def test_the_pages_check_runs(page, capsys):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    exec(compile(blocks[1], str(PAGE), "exec"), page)
    assert float(capsys.readouterr().out) < 1e-5
