"""Quiet TensorFlow start-up for the ``keras-kare`` command (library imports are left alone).

TensorFlow's native libraries log to file descriptor 2 while they load — the
CUDA stub ("Could not find cuda drivers"), ``cpu_feature_guard``, oneDNN and
``cuInit`` lines — and some of these lines ignore ``TF_CPP_MIN_LOG_LEVEL``.
The command line therefore loads TensorFlow with descriptor 2 pointed at the
null device, unless ``--debug`` is given. oneDNN itself is left as configured
(``TF_ENABLE_ONEDNN_OPTS`` changes numerics, so it is not touched here).

Because ``import keras_kare`` loads TensorFlow before the command's ``main``
runs, the package's ``__init__`` enters :func:`tensorflow_startup` around its
imports; it does something only when the process was started as
``keras-kare …`` or ``python -m keras_kare …``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path

_SCRIPT_NAMES = {"keras-kare", "keras-kare.exe", "keras-kare-script.py"}
_MODULES = {"keras_kare", "keras_kare.cli"}


def invoked_as_cli() -> bool:
    """True when this process runs the ``keras-kare`` command (console script or ``python -m``)."""
    if sys.argv and Path(sys.argv[0]).name in _SCRIPT_NAMES:
        return True
    orig = list(getattr(sys, "orig_argv", []))  # the interpreter's own argv: python [opts] -m keras_kare ...
    return any(a == "-m" and i + 1 < len(orig) and orig[i + 1] in _MODULES for i, a in enumerate(orig))


@contextlib.contextmanager
def native_stderr_silenced():
    """Point file descriptor 2 at the null device for the block (Python exceptions still propagate)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_python_logs() -> None:
    """Python-side TensorFlow/Keras chatter to errors only (absl, ``tf.get_logger``, Keras UserWarnings)."""
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    import absl.logging
    import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")  # retracing notices are not progress


@contextlib.contextmanager
def tensorflow_startup(debug: bool | None = None):
    """Load TensorFlow quietly inside the block when running as the command without ``--debug``.

    Args:
        debug: show everything; ``None`` reads ``--debug`` from ``sys.argv``.
            Outside the command (``invoked_as_cli()`` false) the block runs unchanged.
    """
    if debug is None:
        debug = "--debug" in sys.argv[1:]
    if debug or not invoked_as_cli():
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery logs (cuInit) here, not at the first op
        yield
    quiet_python_logs()
