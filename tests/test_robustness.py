"""Failure behaviour: ill-conditioning, degenerate kernels, non-finite steps, memory, determinism."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from oracles import kare_oracle, ntk_oracle
from precision import U32, U64

import keras_kare
from keras_kare.factor import JITTER_LADDER, robust_cholesky, robust_cholesky_numpy
from keras_kare.memory import GramMemoryError
from keras_kare.risk import DegenerateKernelError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spectral_kare(s, q, y, z):
    """KARE of K = Q diag(s) Qᵀ in closed form (no solve at all)."""
    n = len(s)
    y = y.reshape(n, -1)
    d = s / n + z
    proj = q.T @ y
    num = np.sum(proj**2 / d[:, None] ** 2) / (n * y.shape[1])
    den = np.sum(1.0 / d) / n
    return num / den**2


@pytest.mark.parametrize("cond", [1e8, 1e10, 1e12])
def test_ill_conditioned_kernels_match_closed_form(rng, cond):
    n = 60
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    s = np.logspace(0, -np.log10(cond), n) * n  # eigenvalues of K/n span [1/cond, 1]
    k = (q * s) @ q.T
    y = rng.normal(size=n)
    z = 1.0 / cond  # the ridge sits at the bottom of the spectrum: M has condition ~cond/2
    want = spectral_kare(s, q, y, z)
    got = float(keras_kare.kare(k, y, ridge=z))
    # float64 Cholesky solves with M of condition κ ≈ cond/2 err by about κ·u64 relative; KARE = N/D²
    # has two solves in N and D enters twice: about 4κ·u64 = 2·cond·u64 (2.2e-4 at cond 1e12).
    assert got == pytest.approx(want, rel=2 * cond * U64)


def test_rank_deficient_gram_from_few_parameters(rng):
    """P < n (like the paper's 769 parameters on 800 points): K = J Jᵀ has rank P."""
    n, p = 80, 6
    j = rng.normal(size=(n, p))
    k = j @ j.T
    y = rng.normal(size=n)
    assert np.linalg.matrix_rank(k) == p
    for z in (1e-6, 0.1):
        assert float(keras_kare.kare(k, y, ridge=z)) == pytest.approx(kare_oracle(k, y, z), rel=1e-6)
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, "tanh"), keras.layers.Dense(1)])  # P = 9
    x = rng.normal(size=(40, 2)).astype("float32")
    kp = keras_kare.KernelPredictor(net, ridge=1e-6).fit(x, np.sin(x[:, 0]))
    assert np.all(np.isfinite(kp.predict(x)))
    path = kp.ridge_path()
    assert np.all(np.isfinite(path.kare[path.ridges >= 1e-4]))


def test_degenerate_cases_exact(rng):
    # duplicate inputs: identical rows and columns
    base = rng.normal(size=(5, 3))
    feats = np.vstack([base, base[:2]])
    k = feats @ feats.T
    y = rng.normal(size=7)
    assert float(keras_kare.kare(k, y, 0.1)) == pytest.approx(kare_oracle(k, y, 0.1), rel=1e-9)
    # constant targets
    assert float(keras_kare.kare(k, np.ones(7), 0.1)) == pytest.approx(kare_oracle(k, np.ones(7), 0.1), rel=1e-9)
    # all-zero kernel: M = zI, so KARE = mean(y²) exactly
    y = rng.normal(size=(6, 2))
    assert float(keras_kare.kare(np.zeros((6, 6)), y, 0.1)) == pytest.approx(np.mean(y**2), rel=1e-12)
    with pytest.raises(DegenerateKernelError, match="kernel is zero"):
        keras_kare.kare(np.zeros((6, 6)), y, 0.1, relative_ridge=True)
    # n = 2
    k2 = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert float(keras_kare.kare(k2, [1.0, -1.0], 0.1)) == pytest.approx(kare_oracle(k2, [1.0, -1.0], 0.1), rel=1e-12)


def test_jitter_ladder_rescues_slightly_indefinite_matrix_and_reports_it():
    m = np.diag([1.0, 1.0, -1e-12])  # fails plain Cholesky; jitter 1e-10·tr/n fixes it
    fac = robust_cholesky(tf.constant(m))
    assert bool(fac.ok) and int(fac.retries) == 1
    np.testing.assert_allclose(
        fac.chol.numpy() @ fac.chol.numpy().T, m + JITTER_LADDER[0] * np.trace(m) / 3 * np.eye(3), atol=1e-14
    )
    k = 3.0 * (np.diag([1.0, 1.0, -1e-12]) - 0.1 * np.eye(3))  # K/n + 0.1 I = diag(1, 1, -1e-12)
    with pytest.warns(RuntimeWarning, match="jitter"):
        val = keras_kare.kare(k, np.ones(3), ridge=0.1)
    assert np.isfinite(float(val))


def test_numpy_ladder_matches_tensorflow_ladder():
    """The LAPACK twin used by KernelPredictor: same rungs, same factor, same failures."""
    m = np.diag([1.0, 1.0, -1e-12])
    chol, rungs = robust_cholesky_numpy(m)
    assert rungs == 1
    np.testing.assert_allclose(chol @ chol.T, m + JITTER_LADDER[0] * np.trace(m) / 3 * np.eye(3), atol=1e-14)
    assert m[2, 2] == -1e-12  # the caller's matrix is not modified
    spd = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])
    ours, rungs = robust_cholesky_numpy(np.tril(spd) + 99 * np.triu(np.ones((3, 3)), 1))  # upper triangle ignored
    assert rungs == 0
    np.testing.assert_allclose(ours, robust_cholesky(tf.constant(spd)).chol.numpy(), rtol=1e-14)
    for bad in (-np.eye(3), np.full((3, 3), np.nan)):
        assert robust_cholesky_numpy(bad) == (None, len(JITTER_LADDER))


def test_ladder_works_under_xla():
    fn = tf.function(robust_cholesky, jit_compile=True)
    fac = fn(tf.constant(np.diag([1.0, 1.0, -1e-12])))
    assert bool(fac.ok) and int(fac.retries) == 1
    bad = fn(tf.constant(-np.eye(3)))
    assert not bool(bad.ok) and int(bad.retries) == len(JITTER_LADDER)


def test_unfactorable_kernel_raises_with_diagnostics():
    with pytest.raises(FloatingPointError, match=r"smallest eigenvalue -1\.900e\+00"):
        keras_kare.kare(-10.0 * np.eye(5), np.ones(5), ridge=0.1)


def _net(seed=0, d=3):
    return keras.Sequential(
        [
            keras.Input((d,)),
            keras.layers.Dense(8, "gelu", kernel_initializer=keras.initializers.GlorotUniform(seed)),
            keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(seed + 1)),
        ]
    )


class WeightLog(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights, self.failures = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([w.numpy().copy() for w in self.model.base_model.trainable_variables])
        self.failures.append(float(logs["nonfinite_steps"]))


def test_exploding_learning_rate_stops_and_keeps_last_good_weights(rng):
    x = rng.normal(size=(16, 3)).astype("float32")
    y = np.sin(x[:, 0]).astype("float32")
    model = keras_kare.KAREModel(_net())
    model.compile(optimizer=keras.optimizers.SGD(1e30))
    log = WeightLog()
    with pytest.warns(RuntimeWarning, match="training stopped"):
        hist = model.fit(x, y, batch_size=16, epochs=200, verbose=0, callbacks=[log])
    assert len(hist.history["kare"]) < 200
    assert np.isnan(hist.history["kare"][-1])  # the last epoch had no finite step: NaN, not a fake 0
    assert "epoch" in model.stop_reason_ and "lower the learning rate" in model.stop_reason_
    final = [w.numpy() for w in model.base_model.trainable_variables]
    assert all(np.all(np.isfinite(w)) for w in final)
    # the failing step left the weights as the previous step had them
    assert log.failures[-1] == 1.0
    for a, b in zip(final, log.weights[-2]):
        np.testing.assert_array_equal(a, b)


def _nan_dataset(rng, bad_batch=2):
    x = rng.normal(size=(48, 3)).astype("float32")
    y = np.sin(x[:, 0]).astype("float32")
    x[bad_batch * 8 + 3, 1] = np.nan
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=True)


def test_nan_batch_stops_by_default(rng):
    model = keras_kare.KAREModel(_net())
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    log = WeightLog()
    with pytest.warns(RuntimeWarning, match="epoch 1, batch 2.*contains NaN or inf"):
        model.fit(_nan_dataset(rng), epochs=3, verbose=0, callbacks=[log])
    assert len(log.weights) == 3  # batches 0, 1, 2 then stop
    for a, b in zip(log.weights[2], log.weights[1]):
        np.testing.assert_array_equal(a, b)


def test_nan_batch_skipped_on_request_and_terminate_on_nan_does_not_fire(rng):
    model = keras_kare.KAREModel(_net(), on_nonfinite="skip")
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    with pytest.warns(RuntimeWarning, match="skipped"):
        hist = model.fit(_nan_dataset(rng), epochs=2, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()])
    assert hist.history["nonfinite_steps"] == [1.0, 1.0]
    assert np.all(np.isfinite(hist.history["kare"]))  # averaged over the good steps only
    assert np.all(np.isfinite(hist.history["loss"]))
    assert all(np.all(np.isfinite(w.numpy())) for w in model.base_model.trainable_variables)


def test_constant_output_model_trains_without_error(rng):
    """A dead-ReLU network: constant output, NTK = 11ᵀ from the output bias alone."""
    net = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(
                4, "relu", kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(-1.0)
            ),
            keras.layers.Dense(1),
        ]
    )
    x = rng.normal(size=(10, 3)).astype("float32")
    # exact: the only non-zero gradient is the output bias' 1 (float32 sums of 1s and 0s)
    np.testing.assert_allclose(keras_kare.ntk(net, x).numpy(), np.ones((10, 10)), atol=U32)
    model = keras_kare.KAREModel(net)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    y = rng.normal(size=10).astype("float32")
    hist = model.fit(x, y, batch_size=10, epochs=2, verbose=0)
    assert hist.history["nonfinite_steps"] == [0.0, 0.0]
    # exact Gram, float64 solve of a condition-11 matrix, logged in float32: two roundings
    assert hist.history["kare"][0] == pytest.approx(kare_oracle(np.ones((10, 10)), y, 0.1), rel=2 * U32)


def test_float64_end_to_end(rng):
    old, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        net = _net()
        x = rng.normal(size=(12, 3))
        y = np.sin(x[:, 0])
        k = keras_kare.ntk(net, x)
        assert k.dtype == tf.float64
        np.testing.assert_allclose(k.numpy(), ntk_oracle(net, x), rtol=1e-11, atol=1e-12)
        model = keras_kare.KAREModel(net)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        before = kare_oracle(ntk_oracle(net, x), y, 0.1)
        hist = model.fit(x, y, batch_size=12, epochs=1, verbose=0)
        assert hist.history["kare"][0] == pytest.approx(before, rel=1e-10)
        assert net.trainable_variables[0].dtype == "float64"
    finally:
        keras.config.set_floatx(old)
        keras.config.set_dtype_policy(old_policy)


def test_memory_guard_refuses_huge_gram_without_allocating(rng):
    net = _net(d=2)
    x = np.zeros((200_000, 2), np.float32)  # 1.6 MB of inputs; the Gram would be 149 GiB
    with pytest.raises(GramMemoryError, match="the result alone does not fit"):
        keras_kare.ntk(net, x, batch_size=1024)
    with pytest.raises(GramMemoryError, match=r"GiB.*Use solver='nystrom'"):
        keras_kare.KernelPredictor(net, solver="exact").fit(x, np.zeros(200_000))


def test_memory_guard_suggests_batch_size():
    from keras_kare.memory import check_gram_memory

    with pytest.raises(GramMemoryError, match="pass batch_size"):
        check_gram_memory(result=1 << 20, work=10 << 30, describe="ntk", batch_size=None, available=4 << 30)
    check_gram_memory(result=1 << 20, work=1 << 20, describe="ntk", batch_size=None, available=4 << 30)


def _issue3_cnn():
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(32, 3, activation="relu"),
            L.Conv2D(64, 3, activation="relu"),
            L.GlobalAveragePooling2D(),
            L.Dense(1),
        ]
    )


def test_jacobian_memory_estimate_counts_whole_batch_activation_cotangents():
    """tape.jacobian holds activation cotangents of the whole batch per output row: ~n²·A."""
    from keras_kare.backend import forward_profile
    from keras_kare.memory import estimate_gram_bytes

    cnn = _issue3_cnn()
    profile = forward_profile(cnn, tf.zeros([1, 28, 28, 1]))
    assert profile.outputs == 1
    assert 26 * 26 * 32 + 24 * 24 * 64 <= profile.activations <= 6 * (26 * 26 * 32 + 24 * 24 * 64)
    p = cnn.count_params()
    _, work = estimate_gram_bytes(
        128, 128, 1, p, 6, "trace", "jacobian", None, activations=profile.activations, one_jacobian=True
    )
    # measured peak of this Gram (benchmarks/RESULTS.md): 8.0 GB; an O(n·P) estimate would say 58 MB
    assert 6 * 2**30 < work < 16 * 2**30
    _, small = estimate_gram_bytes(128, 128, 1, p, 6, "trace", "structured", None)
    assert small < 2**26


class SmallSubclassedCNN(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(32, 3, activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(1)

    def call(self, x):
        return self.head(self.pool(self.conv(x)))


def test_kare_model_jacobian_step_refuses_batch_that_would_not_fit(monkeypatch):
    """A subclassed CNN (jacobian NTK) gets a GramMemoryError while the step is traced, not the OOM killer."""
    import keras_kare.memory as memory

    net = SmallSubclassedCNN()
    x = np.random.default_rng(0).normal(size=(64, 28, 28, 1)).astype("float32")
    y = np.zeros((64, 1), "float32")
    net(x[:1])
    before = [w.numpy().copy() for w in net.trainable_variables]
    model = keras_kare.KAREModel(net)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    monkeypatch.setattr(memory, "available_bytes", lambda: 256 * 2**20)  # pretend 256 MiB are free
    with pytest.raises(GramMemoryError, match="a training step on a batch of 64 with the jacobian NTK.*structured NTK"):
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(before, net.trainable_variables))
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * 2**30)
    model.fit(x[:8], y[:8], batch_size=8, epochs=1, verbose=0)  # a small batch with enough memory trains


DETERMINISM_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras, numpy as np, tensorflow as tf
    keras.utils.set_random_seed(7)
    tf.config.experimental.enable_op_determinism()
    import keras_kare
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = np.cos(x[:, 0]).astype("float32")
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, "gelu"), keras.layers.Dense(1)])
    model = keras_kare.KAREModel(net)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    h = model.fit(x, y, batch_size=16, epochs=3, shuffle=True, verbose=0)
    print(json.dumps([float(v).hex() for v in h.history["kare"]]))
    """
)


@pytest.mark.slow
def test_two_seeded_runs_are_bit_identical():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs = [
        subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
        for _ in range(2)
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    curves = [json.loads(r.stdout.strip().splitlines()[-1]) for r in runs]
    assert curves[0] == curves[1]
    assert len(set(curves[0])) == 3  # it trained: three different epoch values


def test_min_eigenvalue_estimate_matches_exact(rng):
    from keras_kare.factor import min_eigenvalue, min_eigenvalue_estimate

    a = rng.normal(size=(30, 30))
    m = a @ a.T / 30 - 0.5 * np.eye(30)  # indefinite, like a failed K/n + zI
    exact = float(min_eigenvalue(tf.constant(m)))
    assert exact == pytest.approx(np.linalg.eigvalsh(m).min(), rel=1e-10)
    est = float(tf.function(min_eigenvalue_estimate, jit_compile=True)(tf.constant(m)))
    assert est == pytest.approx(exact, abs=0.05 * abs(exact))
    assert np.isnan(float(min_eigenvalue_estimate(tf.constant(np.full((3, 3), np.nan)))))


def test_failure_under_xla_reports_an_estimate(rng):
    model = keras_kare.KAREModel(_net(), on_nonfinite="stop")
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
    with pytest.warns(RuntimeWarning, match="contains NaN or inf"):
        model.fit(_nan_dataset(rng), epochs=1, verbose=0)
    assert model.stop_reason_ is not None


LARGE_FIT_SCRIPT = textwrap.dedent(
    """
    import sys
    import keras, numpy as np
    from keras_kare import KernelPredictor
    n = int(sys.argv[1])
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "gelu"), keras.layers.Dense(1)])
    x = np.random.default_rng(0).standard_normal((n, 4)).astype("float32")
    y = np.sin(x[:, 0]) + 0.1 * x[:, 1]
    kp = KernelPredictor(net, ridge=1e-3, batch_size=4096, solver="exact", verbose=0).fit(x, y)
    pred = kp.predict(x[:100])
    assert np.all(np.isfinite(pred)), pred
    print("ok", kp.solver_, kp.train_kernel_.shape)
    """
)


@pytest.mark.slow
def test_exact_fit_at_16000_examples_exits_cleanly():
    """A 16 000 × 16 000 float64 Cholesky crashed the process in multi-threaded OpenBLAS potrf on AVX-512 CPUs."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", LARGE_FIT_SCRIPT, "16000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    assert r.returncode == 0, (
        f"exit code {r.returncode} (negative: killed by that signal, -11 = SIGSEGV)\n{r.stderr[-3000:]}"
    )
    assert "ok exact (16000, 16000)" in r.stdout


def test_predictor_cholesky_runs_with_one_blas_thread(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from keras_kare import factor

    seen = []
    real = np.linalg.cholesky

    def spy(a):
        seen.append([p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"])
        return real(a)

    monkeypatch.setattr(np.linalg, "cholesky", spy)
    m = np.eye(5) + 0.1
    chol, retries = factor.robust_cholesky_numpy(m)
    np.testing.assert_allclose(chol @ chol.T, m, rtol=1e-14)
    assert retries == 0 and seen and all(threads == [1] * len(threads) for threads in seen)
