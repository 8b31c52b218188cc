"""KAREModel.fit under tf.distribute.MirroredStrategy on 2 logical CPU devices.

Logical devices must be configured before TensorFlow initialises its devices,
which the test process has long done, so the distributed runs happen in a
fresh Python subprocess that reports JSON back.
"""

import numpy as np
import pytest
from logical_cpus import run_script
from precision import float32_gram_entry_rtol

# two fresh processes that import TensorFlow and train under MirroredStrategy
pytestmark = pytest.mark.slow

WORKER = r"""
    import keras_kare
    from keras_kare import KAREModel, KernelPredictor

    impl = sys.argv[1]
    out = {}
    r = np.random.default_rng(0)
    x = r.standard_normal((32, 5)).astype("float32")
    y = np.sign(x[:, 0] + 0.2).astype("float32")

    def net():
        keras.utils.set_random_seed(7)
        return keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, "gelu"), keras.layers.Dense(1)])

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out["replicas"] = strategy.num_replicas_in_sync
    with strategy.scope():
        model = KAREModel(net(), ridge=0.1, implementation=impl)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5))
    w0 = [w.numpy() for w in model.base_model.trainable_variables]
    hist = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    out["dist_kare"] = hist.history["kare"]
    out["dist_weights"] = [w.numpy().tolist() for w in model.base_model.trainable_variables]

    # single-device reference: each global batch of 16 -> replica shares [0:8], [8:16]; mean KARE; SGD+momentum
    ref = net()
    for v, w in zip(ref.trainable_variables, w0):
        v.assign(w)
    opt = keras.optimizers.SGD(0.05, momentum=0.5)
    per_step = []
    for epoch in range(2):
        for s in range(0, 32, 16):
            with tf.GradientTape() as tape:
                vals = [keras_kare.kare(keras_kare.ntk(ref, x[a:a + 8], implementation=impl), y[a:a + 8], ridge=0.1)
                        for a in (s, s + 8)]
                obj = tf.add_n(vals) / 2.0
            grads = tape.gradient(obj, ref.trainable_variables)
            grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, ref.trainable_variables)]
            opt.apply(grads, ref.trainable_variables)
            per_step.append(float(obj))
    out["ref_kare"] = [float(np.mean(per_step[:2])), float(np.mean(per_step[2:]))]
    out["ref_weights"] = [w.numpy().tolist() for w in ref.trainable_variables]
    # NOT the same as single-device KARE on the whole batch of 16 (documented semantics)
    def kare_of(a, b):
        return float(keras_kare.kare(keras_kare.ntk(net(), x[a:b], implementation=impl), y[a:b], ridge=0.1))

    out["whole_batch_kare0"] = kare_of(0, 16)
    out["share_kare0"] = float(np.mean([kare_of(a, a + 8) for a in (0, 8)]))

    # a global batch not divisible by the replica count
    with strategy.scope():
        bad = KAREModel(net(), ridge=0.1, implementation=impl)
        bad.compile(optimizer="sgd")
    try:
        bad.fit(x[:18], y[:18], batch_size=9, epochs=1, verbose=0)
        out["indivisible_error"] = None
    except Exception as err:
        out["indivisible_error"] = f"{type(err).__name__}: {err}"
    out["indivisible_weights_unchanged"] = all(
        np.array_equal(a.numpy(), b) for a, b in zip(bad.base_model.trainable_variables, w0)
    )
    # ... known only at run time: a dataset without a static batch size whose last batch (5) splits 3 + 2
    ds = tf.data.Dataset.from_tensor_slices((x[:21], y[:21])).batch(8)
    try:
        bad.fit(ds, epochs=1, verbose=0)
        out["runtime_indivisible_error"] = None
    except Exception as err:
        out["runtime_indivisible_error"] = f"{type(err).__name__}: {err}"

    # a non-finite KARE on one replica skips the step on every replica
    with strategy.scope():
        skip = KAREModel(net(), ridge=0.1, implementation=impl, on_nonfinite="skip")
        skip.compile(optimizer=keras.optimizers.SGD(0.05))
    y_nan = y[:16].copy()
    y_nan[12] = np.nan  # in the second replica's share only
    # through tf.data: fit refuses non-finite arrays before the first step; a pipeline's values are seen in the step
    h = skip.fit(tf.data.Dataset.from_tensor_slices((x[:16], y_nan)).batch(16), epochs=1, verbose=0)
    out["skip_weights_unchanged"] = all(
        np.array_equal(a.numpy(), b) for a, b in zip(skip.base_model.trainable_variables, w0)
    )
    out["skip_nonfinite_steps"] = h.history.get("nonfinite_steps", [None])[0]

    # KernelPredictor inside the strategy's scope: same predictions as without a strategy
    kp_ref = KernelPredictor(ref, ridge=1e-2, batch_size=8, implementation=impl).fit(x[:24], y[:24])
    from keras_kare import distribute as dist_module

    seen, original = [], dist_module.compute_block

    def recording(*args, **kwargs):
        k = original(*args, **kwargs)
        seen.append(k.device)
        return k

    dist_module.compute_block = recording
    try:
        with strategy.scope():
            kp = KernelPredictor(ref, ridge=1e-2, batch_size=8, implementation=impl).fit(x[:24], y[:24])
            pred = kp.predict(x[24:])
    finally:
        dist_module.compute_block = original
    out["krr_block_devices"] = sorted({d.split("device:")[-1] for d in seen})
    out["krr_blocks"] = len(seen)
    out["krr_max_diff"] = float(np.max(np.abs(pred - kp_ref.predict(x[24:]))))
    out["krr_gram_diff"] = float(np.max(np.abs(kp.train_kernel_ - kp_ref.train_kernel_)))
    print("RESULT " + json.dumps(out))
    """


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_script(tmp_path_factory.mktemp("dist"), WORKER, "auto")


def test_two_logical_cpus(results):
    assert results["replicas"] == 2


def test_mirrored_fit_matches_single_device_mean_of_replica_kares(results):
    # The same float32 operations summed in another order (all-reduce vs add_n): per step the float32
    # Gram entry error bound for the P = 57 parameters (precision.float32_gram_entry_rtol; KARE with
    # z = 0.1 on 8 examples does not amplify it), over the 4 steps.
    rtol = 4 * float32_gram_entry_rtol(57)
    np.testing.assert_allclose(results["dist_kare"], results["ref_kare"], rtol=rtol)
    for a, b in zip(results["dist_weights"], results["ref_weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=rtol, atol=rtol * np.abs(np.array(b)).max())
    # and the per-replica semantics differ from KARE of the whole global batch
    assert abs(results["whole_batch_kare0"] - results["share_kare0"]) > 1e-3


def test_indivisible_global_batch_raises(results):
    err = results["indivisible_error"]
    assert err is not None and "global batch size 9 is not divisible by the 2 replicas" in err, err
    assert results["indivisible_weights_unchanged"]  # raised before any step
    err = results["runtime_indivisible_error"]
    assert err is not None and "global batch is not divisible by the number of replicas" in err, err


def test_nonfinite_on_one_replica_skips_everywhere(results):
    assert results["skip_weights_unchanged"]
    assert results["skip_nonfinite_steps"] == 1  # one step, skipped on both replicas, counted once


def test_kernel_predictor_under_strategy(results):
    assert results["krr_blocks"] == 6 + 3  # 3 row blocks (upper triangle: 6) + 3 cross blocks
    assert results["krr_block_devices"] == ["CPU:0", "CPU:1"]  # round-robin over the strategy's devices
    assert results["krr_gram_diff"] < 1e-5
    assert results["krr_max_diff"] < 1e-5
