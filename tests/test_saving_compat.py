"""Files written by an earlier keras_kare still load and predict what they predicted when saved.

The fixtures in tests/fixtures/saved were written once (make_fixtures.py there) and are never
regenerated: a change that breaks reading them fails here. Tolerances: the stored dual coefficients and
ridge systems are float64 and load exactly; predictions recompute the float32 cross-Gram K(x, B), so
they agree to float32 round-off of the Gram (~1e-7 relative) amplified by the sum over the basis;
1e-5 of the prediction scale is a hundred times that and far below any change of ridge or coefficients.
"""

import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_kare import KAREModel, KernelPredictor

SAVED = Path(__file__).parent / "fixtures" / "saved"
WRITTEN_WITH = json.loads(zipfile.ZipFile(SAVED / "kare_model.keras").read("metadata.json"))["keras_version"]


def _minor(version: str) -> tuple[int, int]:
    return tuple(int(p) for p in version.split(".")[:2])


# Keras reads files of its own minor and older ones only: a 3.14 cannot rebuild the layer configs
# a 3.15 writes (e.g. GlorotUniform's input_axes). Newer code on an older Keras is not what this tests.
pytestmark = pytest.mark.skipif(
    _minor(keras.__version__) < _minor(WRITTEN_WITH),
    reason=f"the fixtures were written by Keras {WRITTEN_WITH}, newer than the installed {keras.__version__}",
)


@pytest.fixture(scope="module")
def expected():
    with np.load(SAVED / "expected.npz") as npz:
        return {k: npz[k] for k in npz.files}


def _close(actual, desired):
    desired = np.asarray(desired, dtype=np.float64)
    np.testing.assert_allclose(actual, desired, rtol=1e-5, atol=1e-5 * np.max(np.abs(desired)))


def test_saved_kare_model_loads_and_predicts(expected):
    model = keras.models.load_model(SAVED / "kare_model.keras")
    assert isinstance(model, KAREModel)
    _close(model.predict(expected["x_test"], verbose=0), expected["kare_model_predict"])
    y = np.sin(expected["x_train"].sum(axis=1))
    kare = model.evaluate(expected["x_train"], y, batch_size=12, verbose=0, return_dict=True)["kare"]
    assert kare == pytest.approx(float(expected["kare_model_kare"]), rel=1e-5)


@pytest.mark.parametrize(
    "name, solver, shape",
    [("exact_auto", "exact", (5,)), ("exact_full", "exact", (5, 2)), ("nystrom", "nystrom", (5, 2))],
)
def test_saved_predictor_loads_and_predicts(expected, name, solver, shape):
    kp = KernelPredictor.load(SAVED / f"{name}.kkp")
    assert kp.solver_ == solver
    x_test = expected["x_test"]
    pred = kp.predict(x_test)
    assert pred.shape == shape
    _close(pred, expected[f"{name}_predict"])
    _close(kp.predict_path(x_test, expected["grid"]), expected[f"{name}_predict_path"])
    if name == "nystrom":
        np.testing.assert_allclose(kp.kernel_eigenvalues(), expected["nystrom_eigenvalues"], rtol=1e-12, atol=1e-12)
    if name == "exact_auto":
        assert isinstance(kp.model, KAREModel)
        assert kp.ridge == "auto" and kp.ridge_path_.kare.size == 37
