"""KernelRidgeEarlyStopping: held-out kernel-ridge error drives keras' EarlyStopping and restores the best weights."""

import warnings

import keras
import numpy as np
import pytest

from keras_kare import KAREModel
from keras_kare.callbacks import KernelRidgeEarlyStopping
from keras_kare.risk import NonFiniteKernelError


def make_net(d=3, seed=0):
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential(
        [keras.Input((d,)), keras.layers.Dense(16, "tanh", kernel_initializer=init), keras.layers.Dense(1)]
    )


@pytest.fixture
def problem(rng):
    x = rng.normal(size=(24, 3)).astype("float32")
    y = np.sin(2 * x[:, 0]).astype("float32")
    return x[:16], y[:16], x[16:], y[16:]


class Snapshots(keras.callbacks.Callback):
    """The weights at the end of every epoch (read before any restore at train end)."""

    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = [w.copy() for w in self.model.get_weights()]


def scripted(stop, values):
    """Replace the kernel-ridge evaluation by a known sequence of held-out errors (one per evaluation)."""
    sequence = iter(values)
    stop.evaluate = lambda: {"mse": next(sequence), "ridge": 1.0}
    return stop


def kare_model(seed=0):
    model = KAREModel(make_net(seed=seed), ridge=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    return model


def assert_same_weights(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)  # bit for bit


def test_stops_after_patience_and_restores_the_best_epoch(problem):
    x, y, xv, yv = problem
    model = kare_model()
    stop = scripted(KernelRidgeEarlyStopping(x, y, (xv, yv), patience=2), [5.0, 4.0, 3.0, 3.5, 3.2, 1.0, 0.5])
    snaps = Snapshots()
    history = model.fit(x, y, batch_size=16, epochs=20, verbose=0, callbacks=[stop, snaps])
    # best at epoch 2; epochs 3 and 4 do not improve -> stop at the end of epoch 4
    assert len(history.history["kare"]) == 5
    assert (stop.best_epoch, stop.stopped_epoch, stop.best) == (2, 4, 3.0)
    assert history.history["val_krr_mse"] == [5.0, 4.0, 3.0, 3.5, 3.2]
    assert_same_weights(model.get_weights(), snaps.weights[2])
    assert not np.array_equal(snaps.weights[2][0], snaps.weights[4][0])  # the restore changed something


def test_patience_counts_evaluations_and_runs_to_the_end_without_a_stop(problem):
    x, y, xv, yv = problem
    model = kare_model()
    stop = scripted(KernelRidgeEarlyStopping(x, y, (xv, yv), patience=2, every_n_epochs=3), [3.0, 2.0, 2.5, 1.0])
    snaps = Snapshots()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "metric not available" warning on the epochs without evaluation
        history = model.fit(x, y, batch_size=16, epochs=12, verbose=0, callbacks=[stop, snaps])
    logs = history.history
    assert len(logs["kare"]) == 12 and stop.stopped_epoch == 0
    assert [e for e, _ in stop.history] == [2, 5, 8, 11]
    assert stop.best_epoch == 11  # the last evaluation is the best: nothing earlier is restored
    assert_same_weights(model.get_weights(), snaps.weights[11])

    # the same sequence with patience 1 stops at the third evaluation (epoch 8) and restores epoch 5
    model = kare_model()
    stop = scripted(KernelRidgeEarlyStopping(x, y, (xv, yv), patience=1, every_n_epochs=3), [3.0, 2.0, 2.5, 1.0])
    snaps = Snapshots()
    history = model.fit(x, y, batch_size=16, epochs=12, verbose=0, callbacks=[stop, snaps])
    assert (len(history.history["kare"]), stop.best_epoch, stop.stopped_epoch) == (9, 5, 8)
    assert_same_weights(model.get_weights(), snaps.weights[5])


def test_real_evaluation_on_a_network_trained_on_its_loss(problem):
    """Any Keras model (here a DNN trained on the MSE: its after-kernel); the restored weights are the best epoch's."""
    x, y, xv, yv = problem
    net = make_net(seed=3)
    net.compile(optimizer=keras.optimizers.SGD(0.3), loss="mse")
    stop = KernelRidgeEarlyStopping(x, y, (xv, yv), patience=1, every_n_epochs=3, ridge=1e-2)
    snaps = Snapshots()
    net.fit(x, y, batch_size=8, epochs=12, verbose=0, callbacks=[stop, snaps])
    errors = {epoch: res["mse"] for epoch, res in stop.history}
    best = min(errors, key=errors.get)  # first minimum, as EarlyStopping keeps the first of equal values
    assert stop.best_epoch == best and stop.best == errors[best]
    assert all(np.isfinite(list(errors.values())))
    assert_same_weights(net.get_weights(), snaps.weights[best])
    # the restored weights reproduce the best held-out error
    assert stop.evaluate()["mse"] == pytest.approx(errors[best], rel=1e-6)


def test_accuracy_monitor_is_maximised(problem, rng):
    x, _, xv, _ = problem
    y, yv = np.sign(x[:, 0]), np.sign(xv[:, 0])
    model = kare_model()
    stop = KernelRidgeEarlyStopping(x, y, (xv, yv), monitor="accuracy", patience=1)
    seq = iter([0.5, 0.75, 0.625, 0.5])
    stop.evaluate = lambda: {"mse": 1.0, "accuracy": next(seq), "ridge": 1.0}
    history = model.fit(x, y, batch_size=16, epochs=10, verbose=0, callbacks=[stop])
    assert (len(history.history["kare"]), stop.best_epoch, stop.best) == (3, 1, 0.75)


def test_custom_loop_update_and_finish(problem):
    x, y, xv, yv = problem
    net = make_net()
    stop = scripted(KernelRidgeEarlyStopping(x, y, (xv, yv), patience=0), [2.0, 1.0, 1.5])
    stop.set_model(net)
    stop.on_train_begin()
    kept = None
    for epoch in range(3):
        net.layers[-1].bias.assign([float(epoch)])
        if epoch == 1:
            kept = [w.copy() for w in net.get_weights()]
        if stop.update(epoch):
            break
    assert epoch == 2
    stop.finish()
    assert_same_weights(net.get_weights(), kept)


class InitialWeights(keras.callbacks.Callback):
    """The weights when training begins (before any step; registered after the stopper, which only reads them)."""

    def on_train_begin(self, logs=None):
        self.weights = [w.copy() for w in self.model.get_weights()]


def test_include_initial_restores_the_starting_weights_when_training_only_gets_worse(problem):
    """Held-out errors 1.0 (initial), then 2.0, 1.5, 1.2: patience 3 stops after the third epoch, initial kept."""
    x, y, xv, yv = problem
    model = kare_model()
    stop = scripted(KernelRidgeEarlyStopping(x, y, (xv, yv), patience=3, include_initial=True), [1.0, 2.0, 1.5, 1.2])
    start, snaps = InitialWeights(), Snapshots()
    history = model.fit(x, y, batch_size=16, epochs=20, verbose=0, callbacks=[stop, start, snaps])
    assert len(history.history["kare"]) == 3
    assert (stop.best_epoch, stop.stopped_epoch, stop.best) == (-1, 2, 1.0)
    assert [e for e, _ in stop.history] == [-1, 0, 1, 2]
    assert history.history["val_krr_mse"] == [2.0, 1.5, 1.2]  # the initial evaluation is not an epoch's log
    assert not np.array_equal(start.weights[0], snaps.weights[2][0])  # training did move the weights
    assert_same_weights(model.get_weights(), start.weights)


def test_include_initial_changes_nothing_once_training_beats_the_initial_weights(problem):
    """The same errors after the first evaluation: the stop, the best epoch and the restored weights agree."""
    x, y, xv, yv = problem
    errors = [3.0, 2.0, 2.5, 2.4, 2.6]
    runs = {}
    for include in (False, True):
        model = kare_model()
        stop = scripted(
            KernelRidgeEarlyStopping(x, y, (xv, yv), patience=3, include_initial=include),
            ([4.0] if include else []) + errors,
        )
        snaps = Snapshots()
        history = model.fit(x, y, batch_size=16, epochs=20, verbose=0, callbacks=[stop, snaps])
        runs[include] = (len(history.history["kare"]), stop.best_epoch, stop.stopped_epoch, stop.best)
        assert_same_weights(model.get_weights(), snaps.weights[1])
    assert runs[False] == runs[True] == (5, 1, 4, 2.0)


def test_include_initial_with_a_real_evaluation_matches_the_kernel_ridge_of_the_initial_network(problem):
    """The epoch -1 entry is the held-out error of KRR on the untrained network's NTK (a KernelRidgeEvaluation
    of the same network before fit); the restored weights are those of the best entry, initial ones included."""
    from keras_kare.callbacks import KernelRidgeEvaluation

    x, y, xv, yv = problem
    model = KAREModel(make_net(seed=1), ridge=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    reference = KernelRidgeEvaluation(x, y, (xv, yv), ridge=1e-2)
    reference.set_model(model)
    expected = reference.evaluate()["mse"]
    stop = KernelRidgeEarlyStopping(x, y, (xv, yv), patience=1, ridge=1e-2, include_initial=True)
    model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[stop])
    epoch, first = stop.history[0]
    assert epoch == -1 and first["mse"] == pytest.approx(expected, rel=1e-6)
    errors = {e: r["mse"] for e, r in stop.history}
    best = min(errors, key=errors.get)
    assert stop.best_epoch == best
    assert stop.evaluate()["mse"] == pytest.approx(errors[best], rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(monitor="loss"), "monitor must be one of"),
        (dict(patience=-1), "patience must be an int >= 0"),
        (dict(patience=1.5), "patience must be an int >= 0"),
        (dict(min_delta=-0.1), "min_delta must be a finite float >= 0"),
        (dict(min_delta=float("nan")), "min_delta must be a finite float >= 0"),
        (dict(restore_best_weights="yes"), "restore_best_weights must be a bool"),
        (dict(every_n_epochs=0), "every_n_epochs must be a positive int"),
        (dict(start_from_epoch=-2), "start_from_epoch must be an int >= 0"),
        (dict(include_initial=1), "include_initial must be a bool"),
        (dict(include_initial=True, start_from_epoch=2), "start_from_epoch must be 0; received 2"),
        (dict(monitor="accuracy"), "monitor='accuracy' needs"),  # regression targets
        (dict(validation_data=None), "validation_data must be a pair"),
    ],
)
def test_bad_arguments_raise_at_construction(problem, kwargs, match):
    x, y, xv, yv = problem
    kwargs = {"validation_data": (xv, yv), **kwargs}
    with pytest.raises(ValueError, match=match):
        KernelRidgeEarlyStopping(x, y, **kwargs)


def test_a_kernel_that_overflows_stops_training_with_the_best_evaluated_weights(problem):
    """A diverged training (its NTK not finite) ends fit with a warning and the best weights, not the error."""
    x, y, xv, yv = problem
    model = kare_model()
    stop = KernelRidgeEarlyStopping(x, y, (xv, yv), patience=5)
    values = iter([3.0, 2.0, 2.5])

    def evaluate():
        value = next(values, None)
        if value is None:
            raise NonFiniteKernelError("the NTK on the training inputs has a non-finite trace (inf).")
        return {"mse": value, "ridge": 1.0}

    stop.evaluate = evaluate
    snaps = Snapshots()
    with pytest.warns(RuntimeWarning, match="epoch 3: the NTK .* best evaluated epoch \\(1\\) are restored"):
        history = model.fit(x, y, batch_size=16, epochs=20, verbose=0, callbacks=[stop, snaps])
    assert len(history.history["kare"]) == 4  # stopped at the end of epoch 3 (0-based), the failed evaluation
    assert (stop.diverged_epoch, stop.best_epoch, stop.best) == (3, 1, 2.0)
    assert_same_weights(model.get_weights(), snaps.weights[1])


def test_a_kernel_that_overflows_at_the_first_evaluation_keeps_the_weights_and_says_so(problem):
    x, y, xv, yv = problem
    model = kare_model()
    stop = KernelRidgeEarlyStopping(x, y, (xv, yv), patience=5)

    def evaluate():
        raise NonFiniteKernelError("the NTK on the training inputs has a non-finite trace (inf).")

    stop.evaluate = evaluate
    snaps = Snapshots()
    with pytest.warns(RuntimeWarning, match="no earlier evaluated weights to restore"):
        history = model.fit(x, y, batch_size=16, epochs=20, verbose=0, callbacks=[stop, snaps])
    assert len(history.history["kare"]) == 1
    assert_same_weights(model.get_weights(), snaps.weights[0])  # the weights of the failing epoch, nothing restored
    assert stop.diverged_epoch == 0 and stop.stopper.best_weights is None
