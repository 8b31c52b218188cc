"""``KAREModel(kare_scope=...)``: one KARE over the global batch across replicas, and its building blocks.

The distributed runs use 2 logical CPU devices under ``MirroredStrategy`` in a
fresh process (``logical_cpus``); the reference is the same model trained on
one device with the same global batches.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from logical_cpus import run_script
from precision import float32_gram_entry_rtol

import keras_kare
from keras_kare import KAREModel
from keras_kare.backend import row_block_gram

SCRIPT = r"""
    import keras_kare
    from keras_kare import KAREModel

    def net(dtype, outputs, embedding):
        keras.utils.set_random_seed(7)
        if embedding:  # integer ids through an Embedding: factors with an integer tensor
            inp = keras.Input((3,), dtype="int32")
            h = keras.layers.Flatten()(keras.layers.Embedding(11, 4)(inp))
        else:
            inp = keras.Input((5,))
            h = inp
        h = keras.layers.Dense(8, "gelu")(h)
        return keras.Model(inp, keras.layers.Dense(outputs)(h))

    def _full(model, xs, impl):  # the (nC)x(nC) block kernel, the oracle of kernel="full"
        k = keras_kare.ntk(model, xs, kernel="full", implementation=impl)
        n, c = k.shape[0], k.shape[2]
        return tf.reshape(tf.transpose(k, [0, 2, 1, 3]), [n * c, n * c])

    def _flat(ys, kernel):
        return ys.reshape(-1, 1) if kernel == "full" else ys

    def weights(model):
        return [w.numpy().tolist() for w in model.base_model.trainable_variables]

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {"replicas": strategy.num_replicas_in_sync}
    for case in sys.argv[1:]:
        dtype, impl, kernel, kind = case.split(":")
        keras.config.set_floatx(dtype)
        r = np.random.default_rng(0)
        embedding = kind == "embedding"
        x = r.integers(0, 11, (32, 3)).astype("int32") if embedding else r.standard_normal((32, 5)).astype(dtype)
        signal = x[:, 0].astype(dtype) - (5.0 if embedding else -0.2)
        y = np.stack([np.sign(signal), np.cos(x[:, 1].astype(dtype))], 1).astype(dtype)
        res = {}
        for scope in ("global", "replica"):
            with strategy.scope():
                m = KAREModel(net(dtype, 2, embedding), ridge=0.1, implementation=impl, kernel=kernel, kare_scope=scope)
                m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5))
            h = m.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
            res[scope] = {"kare": h.history["kare"], "weights": weights(m)}
            if scope == "global":
                res[scope]["val_kare"] = m.evaluate(x[:16], y[:16], batch_size=16, verbose=0, return_dict=True)["kare"]
                res["val_ref"] = float(keras_kare.kare(
                    keras_kare.ntk(m.base_model, x[:16], kernel=kernel, implementation=impl)
                    if kernel != "full" else _full(m.base_model, x[:16], impl), _flat(y[:16], kernel), ridge=0.1))
        ref = KAREModel(net(dtype, 2, embedding), ridge=0.1, implementation=impl, kernel=kernel)
        ref.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5))
        h = ref.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        res["single"] = {"kare": h.history["kare"], "weights": weights(ref)}
        res["n_params"] = int(sum(np.prod(w.shape) for w in ref.base_model.trainable_variables))
        out[case] = res

    # a NaN target in the second replica's share: the one global KARE is non-finite on every replica
    keras.config.set_floatx("float32")
    r = np.random.default_rng(1)
    x = r.standard_normal((16, 5)).astype("float32")
    y = x[:, :2].copy()
    y[12, 0] = np.nan
    with strategy.scope():
        m = KAREModel(net("float32", 2, False), kare_scope="global", on_nonfinite="skip")
        m.compile(optimizer=keras.optimizers.SGD(0.05))
    w0 = weights(m)
    h = m.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=1, verbose=0)  # arrays: refused up front
    out["skip"] = {"unchanged": weights(m) == w0, "nonfinite_steps": h.history["nonfinite_steps"][0]}
    print("RESULT " + json.dumps(out))
"""

CASES = [
    "float64:structured:trace:dense",
    "float64:jacobian:summed_output:dense",
    "float32:structured:full:dense",
    "float32:structured:trace:embedding",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_script(tmp_path_factory.mktemp("scope"), SCRIPT, *CASES)


def _max_rel(a, b) -> float:
    a, b = np.concatenate([np.ravel(t) for t in a]), np.concatenate([np.ravel(t) for t in b])
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.slow
def test_two_replicas(results):
    assert results["replicas"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_global_scope_equals_single_device_step(results, case):
    res = results[case]
    if case.startswith("float64"):
        # the same float64 products, grouped by row blocks instead of one Gram: round-off only (~1e-15);
        # 1e-10 still separates it from any wrong gradient share (a factor of R: O(lr·|g|) ~ 1e-2)
        rtol = 1e-10
    else:
        # float32 Gram entries regrouped (precision.float32_gram_entry_rtol), over 4 momentum steps
        rtol = 4 * float32_gram_entry_rtol(res["n_params"])
    np.testing.assert_allclose(res["global"]["kare"], res["single"]["kare"], rtol=rtol)
    assert _max_rel(res["global"]["weights"], res["single"]["weights"]) < rtol
    # validation under the strategy is the KARE of the whole global batch too
    np.testing.assert_allclose(res["global"]["val_kare"], res["val_ref"], rtol=rtol)
    # and the per-replica scope trains something else (so the comparison above can fail)
    assert _max_rel(res["replica"]["weights"], res["single"]["weights"]) > 100 * rtol


@pytest.mark.slow
def test_global_scope_nonfinite_step_skipped_on_every_replica(results):
    assert results["skip"]["unchanged"]
    assert results["skip"]["nonfinite_steps"] == 1


# ------------------------------------------------------------------ in-process parts (no strategy)
def _net(outputs=2):
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, "tanh"), keras.layers.Dense(outputs)])


@pytest.mark.parametrize("implementation", ["structured", "jacobian"])
@pytest.mark.parametrize("kernel", ["trace", "summed_output", "full"])
def test_row_block_gram_of_one_participant_is_the_gram(implementation, kernel):
    net = _net()
    x = np.random.default_rng(1).standard_normal((7, 4)).astype("float32")
    rows = row_block_gram(net, x, lambda t, axis: t, kernel, implementation)
    k = keras_kare.ntk(net, x, kernel=kernel, implementation="jacobian")
    np.testing.assert_allclose(
        rows.numpy(), np.asarray(k), rtol=0, atol=4 * float32_gram_entry_rtol(6 * 4 + 6 + 14) * float(np.max(np.abs(k)))
    )


def test_row_block_gram_rows_against_other_examples():
    """Two participants emulated in one process: gather = [own, other's] in participant order."""
    net = _net()
    x = np.random.default_rng(2).standard_normal((10, 4)).astype("float32")
    full = np.asarray(keras_kare.ntk(net, x, implementation="jacobian"))
    from keras_kare.backend.tensorflow import structured

    other = structured.structured_features(net, x[5:])
    tensors = iter([t for f in other.values() for t in f.tensors()])

    # participant 0 holds x[:5]; its gather appends participant 1's factors, in the factors' order
    def gather(t, axis):
        return tf.concat([t, next(tensors)], axis=axis)

    rows = row_block_gram(net, x[:5], gather, "trace", "structured")
    tol = 4 * float32_gram_entry_rtol(6 * 4 + 6 + 14) * float(np.max(np.abs(full)))
    np.testing.assert_allclose(rows.numpy(), full[:5], rtol=0, atol=tol)


def test_kare_scope_validated_and_saved(tmp_path):
    with pytest.raises(ValueError, match=r"kare_scope must be one of \('replica', 'global'\), received 'batch'"):
        KAREModel(_net(), kare_scope="batch")
    model = KAREModel(_net(), kare_scope="global")
    assert model.get_config()["kare_scope"] == "global"
    model.compile(optimizer="sgd")
    x = np.random.default_rng(0).standard_normal((8, 4)).astype("float32")
    model.fit(x, x[:, :2], batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    assert keras.saving.load_model(path).kare_scope == "global"


def test_global_scope_without_replicas_is_the_plain_step():
    x = np.random.default_rng(0).standard_normal((8, 4)).astype("float32")
    y = x[:, :2]
    out = []
    for scope in ("global", "replica"):
        model = KAREModel(_net(), kare_scope=scope)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        out.append([w.numpy() for w in model.base_model.trainable_variables])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
