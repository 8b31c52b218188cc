"""Which Keras backend is configured, found without importing Keras.

keras_kare differentiates networks with ``tf.GradientTape`` and runs its
solves on TensorFlow tensors, so it needs Keras' TensorFlow backend. Keras
reads the backend once, when it is first imported; this module applies the
same rule (an imported ``keras`` wins, then ``KERAS_BACKEND``, then
``$KERAS_HOME/keras.json`` or ``~/.keras/keras.json``, default
``"tensorflow"``) so that a wrong backend fails at ``import keras_kare`` with
one clear message, before Keras itself tries to import a missing jax/torch.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

REQUIRED_BACKEND = "tensorflow"


def configured_backend() -> str:
    """The backend Keras runs (or will run) on in this process."""
    keras = sys.modules.get("keras")
    config = getattr(keras, "config", None)
    if config is not None and hasattr(config, "backend"):
        return str(config.backend())
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    if "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return str(json.load(f).get("backend", REQUIRED_BACKEND))
    except (OSError, ValueError, AttributeError):
        return REQUIRED_BACKEND


def check_keras_backend(backend: Optional[str] = None) -> None:
    """Raise ``ImportError`` unless Keras runs on TensorFlow.

    Args:
        backend: the backend to check; None reads it with :func:`configured_backend`.

    Example::

        KERAS_BACKEND=jax python -c "import keras_kare"
        # ImportError: keras_kare needs Keras' 'tensorflow' backend, but Keras is configured for 'jax' ...
    """
    backend = configured_backend() if backend is None else backend
    if backend == REQUIRED_BACKEND:
        return
    source = "KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") == backend else "the Keras configuration"
    raise ImportError(
        f"keras_kare needs Keras' {REQUIRED_BACKEND!r} backend, but Keras is configured for {backend!r} "
        f'(from {source}). Set KERAS_BACKEND={REQUIRED_BACKEND} (or "backend": "{REQUIRED_BACKEND}" in '
        "~/.keras/keras.json) before Keras is first imported. keras_kare's autodiff and solves are "
        "TensorFlow code; see keras_kare.backend for what another backend would have to provide."
    )
