import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--data-dir",
        default=None,
        help="folder of offline data sets (mnist/ holds MNIST's IDX files); default: $KERAS_KARE_DATA. "
        "Tests that need real data are skipped when neither is given.",
    )


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def offline_mnist(request) -> Path:
    """The offline MNIST IDX folder: <--data-dir or $KERAS_KARE_DATA>/mnist; skips the test when not given."""
    root = request.config.getoption("--data-dir") or os.environ.get("KERAS_KARE_DATA")
    if not root:
        pytest.skip("offline MNIST not given (pass --data-dir DIR or set KERAS_KARE_DATA=DIR with DIR/mnist)")
    directory = Path(root) / "mnist"
    if not directory.is_dir():
        pytest.fail(f"{directory}: no such folder (from --data-dir / KERAS_KARE_DATA)")
    return directory
