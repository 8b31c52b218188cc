"""keras_kare refuses a non-TensorFlow Keras backend at import, with one clear message."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keras_kare.backend import check_keras_backend
from keras_kare.backend._check import configured_backend

REPO = Path(__file__).resolve().parents[1]


def _import_keras_kare(tmp_path, **env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "KERAS_HOME")}
    env.update(PYTHONPATH=str(REPO), KERAS_HOME=str(tmp_path), **env_overrides)
    code = "import keras_kare, sys; print('keras imported:', 'keras' in sys.modules)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backend_fails_at_import_naming_both_backends(tmp_path, backend):
    proc = _import_keras_kare(tmp_path, KERAS_BACKEND=backend)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    # our message, not Keras' own failure to import jax/torch: the check runs before Keras is imported
    assert last.startswith("ImportError: keras_kare needs Keras' 'tensorflow' backend"), proc.stderr[-2000:]
    assert f"configured for {backend!r} (from KERAS_BACKEND)" in last


def test_backend_from_keras_json(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    proc = _import_keras_kare(tmp_path)
    assert proc.returncode != 0
    assert "configured for 'jax' (from the Keras configuration)" in proc.stderr, proc.stderr[-2000:]


def test_tensorflow_backend_imports(tmp_path):
    proc = _import_keras_kare(tmp_path, KERAS_BACKEND="tensorflow")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "keras imported: True" in proc.stdout


def test_check_uses_the_imported_keras():
    import keras

    assert configured_backend() == keras.config.backend() == "tensorflow"  # keras already imported here
    check_keras_backend()
    with pytest.raises(ImportError, match="needs Keras' 'tensorflow' backend.*configured for 'jax'"):
        check_keras_backend("jax")
