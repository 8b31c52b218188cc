"""In-memory arrays through one pipeline per fit: same batches, same epochs, same weights as plain tf.data."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from precision import float32_gram_entry_rtol

from keras_kare import KAREModel, in_memory


def _net(d=4, width=8, outputs=1, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(width, "gelu"), keras.layers.Dense(outputs)])


def _data(rng, n=24, d=4, outputs=1):
    x = rng.normal(size=(n, d)).astype("float32")
    y = np.sin(x @ rng.normal(size=(d, outputs))).astype("float32")
    return x, y


def _kare_model(seed=0, **kw):
    m = KAREModel(_net(seed=seed), ridge=0.1, **kw)
    m.compile(optimizer=keras.optimizers.SGD(0.5))
    return m


def _epochs(dataset, steps, n_epochs):
    it = iter(dataset)
    return [[next(it) for _ in range(steps)] for _ in range(n_epochs)]


def test_epoch_dataset_batches_cover_every_example_once_per_epoch(rng):
    x = np.arange(10, dtype="float32")[:, None]
    y = -x
    ds, steps = in_memory.epoch_dataset(x, y, batch_size=4, shuffle=True, seed=3)
    assert steps == 3
    orders = []
    for epoch in _epochs(ds, steps, 3):
        sizes = [int(b[0].shape[0]) for b in epoch]
        assert sizes == [4, 4, 2]  # the last batch of every epoch is the partial one
        xs = np.concatenate([b[0].numpy()[:, 0] for b in epoch])
        ys = np.concatenate([b[1].numpy()[:, 0] for b in epoch])
        assert sorted(xs) == list(range(10))  # a permutation: every example exactly once
        np.testing.assert_array_equal(ys, -xs)  # x and y stay paired
        orders.append(tuple(xs))
    assert len(set(orders)) > 1  # reshuffled between epochs


def test_epoch_dataset_without_shuffle_is_in_order(rng):
    x, y = _data(rng, n=10)
    ds, steps = in_memory.epoch_dataset(x, y, batch_size=4, shuffle=False)
    for epoch in _epochs(ds, steps, 2):
        np.testing.assert_array_equal(np.concatenate([b[0] for b in epoch]), x)


def test_full_batch_is_one_unpermuted_batch(rng):
    x, y = _data(rng, n=12)
    ds, steps = in_memory.epoch_dataset(x, y, batch_size=100, shuffle=True)
    assert steps == 1
    for ((bx, by),) in _epochs(ds, 1, 2):
        np.testing.assert_array_equal(bx, x)
        np.testing.assert_array_equal(by, y)


def test_multi_input_lists_stay_separate_inputs(rng):
    a, b = rng.normal(size=(6, 2)).astype("float32"), rng.normal(size=(6, 3)).astype("float32")
    ds, _ = in_memory.epoch_dataset([a, b], np.zeros((6, 1), "float32"), batch_size=6)
    (xa, xb), _ = next(iter(ds))
    assert xa.shape == (6, 2) and xb.shape == (6, 3)


def test_bad_inputs_are_clear_errors(rng):
    x, y = _data(rng, n=10)
    with pytest.raises(ValueError, match="same number of examples"):
        in_memory.epoch_dataset(x, y[:9], batch_size=4)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            in_memory.epoch_dataset(x, y, batch_size=bad)
    with pytest.raises(ValueError, match="validation_split"):
        in_memory.fit_arguments({"x": x, "y": y, "validation_split": 1.5})


def test_fit_arguments_leave_datasets_and_user_dict_alone(rng):
    x, y = _data(rng)
    ds = tf.data.Dataset.from_tensors((x, y))
    args = {"x": ds, "epochs": 2}
    assert in_memory.fit_arguments(args) == args
    user = {"x": x, "y": y, "batch_size": 8, "validation_split": 0.25}
    before = dict(user)
    out = in_memory.fit_arguments(user)
    assert user == before  # not mutated
    assert out["steps_per_epoch"] == 3  # 18 training rows in batches of 8
    vx, _ = next(iter(out["validation_data"]))
    np.testing.assert_array_equal(vx, x[18:])  # Keras' split: the last quarter, before shuffling


@pytest.mark.parametrize("batch_size", [24, 8])
def test_same_weights_as_a_plain_tf_data_pipeline(rng, batch_size):
    """The fast path runs exactly the steps Keras runs on the equivalent (unshuffled) tf.data input."""
    x, y = _data(rng)
    fast = _kare_model()
    fast.fit(x, y, batch_size=batch_size, epochs=3, shuffle=False, verbose=0)
    plain = _kare_model()
    if batch_size >= len(x):  # one batch of static shape, as the fast path feeds it
        pipeline = tf.data.Dataset.from_tensors((x, y))
    else:
        pipeline = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    plain.fit(pipeline, epochs=3, verbose=0)
    for a, b in zip(fast.base_model.get_weights(), plain.base_model.get_weights()):
        np.testing.assert_array_equal(a, b)  # identical ops on identical batches


def test_epoch_semantics_history_callbacks_validation(rng):
    x, y = _data(rng, n=32)
    seen = []
    cb = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(e))
    m = _kare_model()
    hist = m.fit(x[:24], y[:24], batch_size=12, epochs=4, validation_data=(x[24:], y[24:]), callbacks=[cb], verbose=0)
    assert seen == [0, 1, 2, 3]
    assert len(hist.history["kare"]) == 4 and len(hist.history["val_kare"]) == 4
    # each epoch's kare is the mean over that epoch's 2 batches: evaluate agrees with the last val entry
    val = m.evaluate(x[24:], y[24:], batch_size=12, verbose=0, return_dict=True)
    np.testing.assert_allclose(val["kare"], hist.history["val_kare"][-1], rtol=1e-6)
    # resume: initial_epoch continues the numbering and History covers only the new epochs
    seen.clear()
    hist2 = m.fit(x[:24], y[:24], batch_size=12, epochs=6, initial_epoch=4, callbacks=[cb], verbose=0)
    assert seen == [4, 5] and len(hist2.history["kare"]) == 2


def test_validation_split_matches_explicit_validation_data(rng):
    x, y = _data(rng, n=20)
    a = _kare_model()
    ha = a.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, shuffle=False, verbose=0)
    b = _kare_model()
    hb = b.fit(x[:16], y[:16], batch_size=16, epochs=2, validation_data=(x[16:], y[16:]), shuffle=False, verbose=0)
    np.testing.assert_allclose(ha.history["val_kare"], hb.history["val_kare"], rtol=1e-6)


def test_early_stopping_stops_at_the_right_epoch(rng):
    x, y = _data(rng)
    m = _kare_model()
    stop = keras.callbacks.EarlyStopping(monitor="kare", patience=0, min_delta=1e9)  # no epoch improves by 1e9
    hist = m.fit(x, y, batch_size=24, epochs=10, callbacks=[stop], verbose=0)
    assert len(hist.history["kare"]) == 2 and stop.stopped_epoch == 1


def test_epoch_metrics_are_reset_every_epoch(rng):
    """The compiled reset zeroes every tracker: an epoch's kare is that epoch's steps only."""
    x, y = _data(rng)
    m = _kare_model()
    hist = m.fit(x, y, batch_size=24, epochs=3, verbose=0)
    again = _kare_model()
    per_step = [again.fit(x, y, batch_size=24, epochs=1, verbose=0).history["kare"][0] for _ in range(3)]
    np.testing.assert_allclose(hist.history["kare"], per_step, rtol=1e-6)
    assert hist.history["nonfinite_steps"] == [0.0, 0.0, 0.0]


def test_fit_in_memory_for_a_plain_keras_model(rng):
    x, y = _data(rng)
    fast, plain = _net(seed=1), _net(seed=1)
    for net in (fast, plain):
        net.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    h = in_memory.fit_in_memory(fast, x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    plain.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    assert len(h.history["loss"]) == 3
    for a, b in zip(fast.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ resuming a fit
def test_epoch_permutations_depend_only_on_seed_and_epoch(rng):
    """Epoch e's order is epoch_permutation(n, seed, e): a dataset started at epoch 2
    continues exactly where one started at epoch 0 is after two epochs."""
    x = np.arange(10, dtype="float32")[:, None]
    y = -x
    ds0, steps = in_memory.epoch_dataset(x, y, batch_size=4, shuffle=True, seed=5, first_epoch=0)
    ds2, _ = in_memory.epoch_dataset(x, y, batch_size=4, shuffle=True, seed=5, first_epoch=2)
    from_zero, from_two = _epochs(ds0, steps, 4), _epochs(ds2, steps, 2)
    orders = []
    for e, epoch in enumerate(from_zero):
        assert [int(b[0].shape[0]) for b in epoch] == [4, 4, 2]  # the partial batch ends every epoch
        xs = np.concatenate([b[0].numpy()[:, 0] for b in epoch])
        np.testing.assert_array_equal(xs, in_memory.epoch_permutation(10, 5, e))
        np.testing.assert_array_equal(np.concatenate([b[1].numpy()[:, 0] for b in epoch]), -xs)
        orders.append(tuple(xs))
    assert len(set(orders)) > 1
    for a, b in zip(from_zero[2:], from_two):
        for (ax, ay), (bx, by) in zip(a, b):
            np.testing.assert_array_equal(ax, bx)
            np.testing.assert_array_equal(ay, by)
    with pytest.raises(ValueError, match="first_epoch"):
        in_memory.epoch_dataset(x, y, batch_size=4, first_epoch=-1)


def test_shuffled_fits_follow_the_global_seed(rng):
    """One stateless shuffle for every fit: the same keras.utils.set_random_seed gives the same batches (weights),
    another seed other batches, and without a seed argument the orders are epoch_permutation's of a drawn seed."""
    x, y = _data(rng, n=24)

    def fit(seed):
        model = _kare_model()  # the same initial weights (seeded initialisers)
        keras.utils.set_random_seed(seed)
        model.fit(x, y, batch_size=8, epochs=3, shuffle=True, verbose=0)
        return model.base_model.get_weights()

    first, again, other = fit(1), fit(1), fit(2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))
    keras.utils.set_random_seed(4)
    ds, steps = in_memory.epoch_dataset(x, y, batch_size=8)
    keras.utils.set_random_seed(4)
    drawn = in_memory.permutation_seed()
    for e, epoch in enumerate(_epochs(ds, steps, 2)):
        np.testing.assert_array_equal(
            np.concatenate([b[0] for b in epoch]), x[in_memory.epoch_permutation(24, drawn, e)]
        )


def test_permutation_is_the_same_eagerly_in_tf_data_and_under_xla():
    """Compiled training loops draw epoch_dataset's orders themselves: every context must give the same ones."""
    eager = [in_memory.permutation(50, 7, e).numpy() for e in range(3)]
    assert all(sorted(p) == list(range(50)) for p in eager)
    assert len({tuple(p) for p in eager}) == 3
    xla = tf.function(lambda s, e: in_memory.permutation(50, s, e), jit_compile=True)
    ds = tf.data.Dataset.range(3).map(lambda e: in_memory.permutation(50, 7, e))
    for e, from_data in enumerate(ds):
        np.testing.assert_array_equal(xla(tf.constant(7, tf.int64), tf.constant(e, tf.int64)), eager[e])
        np.testing.assert_array_equal(from_data, eager[e])
    assert not np.array_equal(in_memory.permutation(50, 8, 0), eager[0])  # the seed matters


def test_fit_arguments_start_the_shuffles_at_the_backup_epoch(rng, tmp_path):
    x, y = _data(rng, n=10)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    seen = []
    for metadata in (None, {"epoch": 3, "batch": 0}):
        if metadata is not None:
            (tmp_path / "training_metadata.json").write_text(json.dumps(metadata))
        args = in_memory.fit_arguments({"x": x, "y": y, "batch_size": 4, "callbacks": [backup]}, seed=11)
        seen.append(np.concatenate([next(iter(args["x"]))[0].numpy()[:, :1]]))
    assert in_memory._first_epoch({"x": x, "y": y}) == 0
    assert in_memory._first_epoch({"initial_epoch": 2}) == 2
    order = lambda e: x[in_memory.epoch_permutation(10, 11, e)[:4], :1]  # noqa: E731
    np.testing.assert_array_equal(seen[0], order(0))
    np.testing.assert_array_equal(seen[1], order(3))  # the first batch of epoch 3, where Keras will resume


def test_interrupted_fit_resumed_by_backup_and_restore_equals_uninterrupted(rng, tmp_path):
    """In one process (the kill -9 versions are in test_multiworker): a shuffled fit that fails during epoch 2
    and is run again with a fresh model and the same seeds resumes at epoch 2 with the backed-up weights and
    optimizer state (SGD momentum), sees the batches of epochs 2 and 3, and ends where an uninterrupted fit ends."""
    x, y = _data(rng, n=24)

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 2 and batch == 0:
                raise RuntimeError("interrupted")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    def run(backup_dir, *extra):
        model = KAREModel(_net(seed=3), ridge=0.1)
        model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
        callbacks = [keras.callbacks.BackupAndRestore(str(backup_dir)), *extra]
        history = model.fit(x, y, batch_size=8, epochs=4, shuffle=True, callbacks=callbacks, verbose=0)
        return model, history

    with pytest.raises(RuntimeError, match="interrupted"):
        run(tmp_path / "a", Interrupt())
    resumed, history = run(tmp_path / "a")
    straight, full = run(tmp_path / "b")
    assert history.epoch == [2, 3]
    assert int(resumed.optimizer.iterations) == int(straight.optimizer.iterations) == 4 * 3
    # the same float32 operations on the same batches: at most the Gram entry rounding bound per step (12 steps;
    # equal in practice, but this process does not enable op determinism, which is global and permanent)
    rtol = 12 * float32_gram_entry_rtol(resumed.base_model.count_params())
    np.testing.assert_allclose(history.history["kare"], full.history["kare"][2:], rtol=rtol)
    for a, b in zip(resumed.base_model.get_weights(), straight.base_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("batch_size", [None, 4])
def test_pipelines_shard_by_data_and_do_not_autotune(batch_size):
    """In-memory pipelines: DATA sharding (multi-worker) and no autotuning thread (which delays fit's end)."""
    x = np.arange(12, dtype="float32").reshape(6, 2)
    dataset, _ = in_memory.epoch_dataset(x, x[:, 0], batch_size=batch_size or len(x))
    resumable, _ = in_memory.epoch_dataset(x, x[:, 0], batch_size=batch_size or len(x), first_epoch=1)
    for ds in (dataset, resumable):
        options = ds.options()
        assert options.autotune.enabled is False
        assert options.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


def test_epoch_logs_are_the_last_steps_metric_results():
    """The epoch's logs come from the last step, without a second read-out, and equal that read-out."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).standard_normal((24, 4)).astype("float32")
    y = np.tanh(x[:, :2])
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, "tanh"), keras.layers.Dense(2)])
    model = KAREModel(net, ridge=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    calls = []
    read_out = model.get_metrics_result
    model.get_metrics_result = lambda: calls.append(1) or read_out()
    hist = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, validation_data=(x[:16], y[:16]))
    assert not calls  # neither the training epochs nor the validation read the metrics again
    del model.get_metrics_result
    after = {k: float(v) for k, v in model.get_metrics_result().items()}  # the validation's state, read now
    for name, value in after.items():
        np.testing.assert_allclose(hist.history["val_" + name][-1], value, rtol=0, atol=0)
    # and they are the validation's values: the mean KARE of its 2 batches of 8, evaluated again
    evaluated = model.evaluate(x[:16], y[:16], batch_size=8, verbose=0, return_dict=True)
    np.testing.assert_allclose(hist.history["val_kare"][-1], evaluated["kare"], rtol=4 * float32_gram_entry_rtol(44))
    assert len(hist.history["kare"]) == 3 and np.isfinite(hist.history["kare"]).all()
