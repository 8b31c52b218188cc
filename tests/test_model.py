import inspect
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from oracles import kare_oracle, ntk_oracle
from precision import U32, float32_gram_entry_rtol, kare_rtol

import keras_kare


def make_net(d=4, c=1, width=16, seed=0):
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential(
        [
            keras.Input((d,)),
            keras.layers.Dense(width, "gelu", kernel_initializer=init),
            keras.layers.Dense(c, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1)),
        ]
    )


def data(rng, n=32, d=4, c=1):
    x = rng.normal(size=(n, d)).astype("float32")
    y = np.cos(x[:, :c] * 1.5).astype("float32")
    return x, (y[:, 0] if c == 1 else y)


def batch_kare(model, x, y, ridge=0.1):
    """(oracle KARE of the batch, its tolerance) for the float32 network ``model.base_model``.

    The logged KARE comes from a float32 Gram; its relative error is bounded by
    :func:`precision.kare_rtol` with float32 entry errors (:func:`precision.float32_gram_entry_rtol`).
    """
    net = model.base_model
    k = ntk_oracle(net, x)
    rtol = kare_rtol(k, y, ridge, float32_gram_entry_rtol(net.count_params()))
    return kare_oracle(k, y, ridge), rtol


def test_one_epoch_lowers_training_kare(rng):
    x, y = data(rng)
    model = keras_kare.KAREModel(make_net())
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    before, rtol = batch_kare(model, x, y)
    hist = model.fit(x, y, batch_size=len(x), epochs=3, verbose=0)
    after, _ = batch_kare(model, x, y)
    # the logged KARE of the first step is KARE before the update
    assert hist.history["kare"][0] == pytest.approx(before, rel=rtol)
    assert after < 0.9 * before
    for key in ("loss", "kare", "kare_numerator", "kare_denominator", "effective_ridge"):
        assert key in hist.history
    assert hist.history["effective_ridge"][0] == pytest.approx(0.1, rel=U32)  # float32(0.1)


def test_step_is_one_sgd_step_on_kare(rng):
    """One train_step == θ - lr ∇θ KARE(NTK(θ)), gradient from the oracle NTK by finite differences."""
    x, y = data(rng, n=10)
    net = make_net(width=3)
    model = keras_kare.KAREModel(net, ridge=0.1)
    lr = 0.5
    model.compile(optimizer=keras.optimizers.SGD(lr))
    theta0 = [v.numpy().copy() for v in net.trainable_variables]
    model.fit(x, y, batch_size=10, epochs=1, verbose=0)
    theta1 = [v.numpy() for v in net.trainable_variables]
    # finite-difference gradient of the oracle KARE w.r.t. the first layer's bias
    eps = 1e-3
    bias = net.trainable_variables[1]
    fd = []
    for j in range(bias.shape[0]):
        vals = []
        for sgn in (1, -1):
            w = [t.copy() for t in theta0]
            w[1][j] += sgn * eps
            for var, val in zip(net.trainable_variables, w):
                var.assign(val)
            vals.append(kare_oracle(ntk_oracle(net, x), y, 0.1))
        fd.append((vals[0] - vals[1]) / (2 * eps))
    step = (theta0[1] - theta1[1]) / lr
    # Central differences with eps = 1e-3: truncation O(eps^2) is about 1e-6 relative; round-off is
    # the float32 network's KARE error (kare_rtol, about 1e-5 relative) over eps, about 1e-2 relative.
    np.testing.assert_allclose(step, fd, rtol=2e-2, atol=1e-4)
    # output bias: its NTK contribution is constant, so it must not move
    np.testing.assert_array_equal(theta0[3], theta1[3])


def test_xla_and_graph_steps_agree(rng):
    x, y = data(rng)
    weights = None
    results = {}
    for jit in (False, True):
        net = make_net()
        if weights is None:
            weights = net.get_weights()
        net.set_weights(weights)
        model = keras_kare.KAREModel(net)
        model.compile(optimizer=keras.optimizers.SGD(2.0), jit_compile=jit)
        h = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        results[jit] = (h.history["kare"], net.get_weights())
    # XLA fuses and reorders float32 operations, so the runs differ by rounding alone: per step at
    # most the float32 KARE bound of the first batch (kare_rtol), accumulated over the 4 steps.
    # The SGD updates inherit the same relative error. Measured: at most 16 u32 (about 1e-6).
    net = make_net()
    net.set_weights(weights)
    _, step_rtol = batch_kare(keras_kare.KAREModel(net), x[:16], y[:16])
    rtol = 4 * step_rtol
    np.testing.assert_allclose(results[False][0], results[True][0], rtol=rtol)
    for a, b in zip(results[False][1], results[True][1]):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def test_tf_data_with_drop_remainder_and_validation(rng):
    x, y = data(rng, n=40)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16, drop_remainder=True)
    model = keras_kare.KAREModel(make_net())
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    h = model.fit(ds, epochs=2, validation_data=ds, verbose=0)
    assert len(h.history["kare"]) == 2 and np.all(np.isfinite(h.history["val_kare"]))
    ev = model.evaluate(ds, verbose=0, return_dict=True)
    # the same compiled test step on the same weights and data; only the float32 mean can round differently
    assert ev["kare"] == pytest.approx(h.history["val_kare"][-1], rel=4 * U32)


def test_batch_of_one_is_a_clear_error(rng):
    x, y = data(rng, n=17)
    model = keras_kare.KAREModel(make_net())
    model.compile(optimizer="sgd")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # last batch has 1 example
    with pytest.raises(Exception, match="at least 2 examples per batch"):
        model.fit(ds, epochs=1, verbose=0)


def test_callbacks_history_checkpoint_earlystopping(rng, tmp_path):
    x, y = data(rng)
    model = keras_kare.KAREModel(make_net())
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    ckpt = os.path.join(tmp_path, "best.weights.h5")
    cbs = [
        keras.callbacks.ModelCheckpoint(ckpt, monitor="kare", save_best_only=True, save_weights_only=True),
        keras.callbacks.EarlyStopping(monitor="kare", patience=1, min_delta=10.0),  # stops after 2 epochs
    ]
    h = model.fit(x, y, batch_size=32, epochs=10, callbacks=cbs, verbose=0)
    assert len(h.history["kare"]) == 2
    assert os.path.exists(ckpt)


def test_call_returns_base_outputs_and_multi_output_modes(rng):
    x, y = data(rng, n=12, c=3)
    for kernel in ("trace", "summed_output", "full"):
        net = make_net(c=3)
        model = keras_kare.KAREModel(net, kernel=kernel)
        np.testing.assert_allclose(model(x).numpy(), net(x).numpy())
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        h = model.fit(x, y, batch_size=12, epochs=1, verbose=0)
        assert np.isfinite(h.history["kare"][0])


def test_full_kernel_kare_is_block_kernel_kare(rng):
    x, y = data(rng, n=6, c=2)
    net = make_net(c=2)
    model = keras_kare.KAREModel(net, kernel="full")
    model.compile(optimizer=keras.optimizers.SGD(1e-9))
    full = ntk_oracle(net, x, kernel="full")  # (n, n, C, C)
    big = full.transpose(0, 2, 1, 3).reshape(12, 12)
    want = kare_oracle(big, y.reshape(-1), 0.1)
    got = model.evaluate(x, y, batch_size=6, verbose=0, return_dict=True)["kare"]
    assert got == pytest.approx(
        want, rel=kare_rtol(big, y.reshape(-1), 0.1, float32_gram_entry_rtol(net.count_params()))
    )


def test_no_warnings_for_structurally_zero_gradients(rng):
    x, y = data(rng)
    model = keras_kare.KAREModel(make_net())
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)


def test_integer_and_pm1_targets(rng):
    x, _ = data(rng)
    y = np.where(x[:, 0] > 0, 1, -1).astype("int64")
    model = keras_kare.KAREModel(make_net())
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    before, rtol = batch_kare(model, x, y.astype(float))
    h = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert h.history["kare"][0] == pytest.approx(before, rel=rtol)


def test_bad_construction_and_compile():
    net = make_net()
    with pytest.raises(ValueError, match="kernel must be one of"):
        keras_kare.KAREModel(net, kernel="diag")
    with pytest.raises(ValueError, match="ridge must be a finite number > 0"):
        keras_kare.KAREModel(net, ridge=0.0)
    with pytest.raises(ValueError, match="ridge"):
        keras_kare.KAREModel(net, ridge=float("nan"))
    with pytest.raises(ValueError, match="implementation must be one of"):
        keras_kare.KAREModel(net, implementation="magic")
    with pytest.raises(TypeError, match="base_model must be a keras.Model"):
        keras_kare.KAREModel("not a model")
    frozen = make_net()
    frozen.trainable = False
    with pytest.raises(ValueError, match="no trainable weights"):
        keras_kare.KAREModel(frozen)
    model = keras_kare.KAREModel(net)
    with pytest.raises(ValueError, match="takes no loss"):
        model.compile(optimizer="sgd", loss="mse")


def test_bad_fit_inputs(rng):
    x, y = data(rng)
    model = keras_kare.KAREModel(make_net())
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="needs targets"):
        model.fit(x, batch_size=32, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(x, y, sample_weight=np.ones(len(x)), batch_size=32, epochs=1, verbose=0)
    with pytest.raises(ValueError):
        model.fit(x, y[:-3], batch_size=32, epochs=1, verbose=0)


def test_config_round_trip():
    model = keras_kare.KAREModel(make_net(), ridge=0.3, relative_ridge=True, kernel="summed_output")
    clone = keras_kare.KAREModel.from_config(model.get_config())
    assert clone.kare_layer.ridge == 0.3 and clone.kare_layer.relative_ridge and clone.kernel == "summed_output"
    assert isinstance(clone.base_model, keras.Sequential)


def test_kare_model_fit_takes_exactly_keras_fit_arguments():
    ours = inspect.signature(keras_kare.KAREModel.fit).parameters
    theirs = inspect.signature(keras.Model.fit).parameters
    assert [(p.name, p.default) for p in ours.values()] == [(p.name, p.default) for p in theirs.values()]


def test_kare_model_fit_passes_positional_arguments_like_keras(rng):
    x = rng.normal(size=(12, 4)).astype("float32")
    y = rng.normal(size=12).astype("float32")
    model = keras_kare.KAREModel(make_net(), ridge=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(x, y, 6, 3, 0)  # x, y, batch_size, epochs, verbose
    assert len(history.history["kare"]) == 3
    assert model.optimizer.iterations.numpy() == 6  # two batches of 6 per epoch
