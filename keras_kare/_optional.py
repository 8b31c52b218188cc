"""Imports of optional dependencies, with an error naming the extra that installs them.

The core package needs only TensorFlow, Keras and NumPy. The extras of
``pyproject.toml`` add the rest::

    pip install "keras-kare[tfds]"       # tensorflow-datasets (datasets.from_tfds, MNIST via TFDS)
    pip install "keras-kare[reproduce]"  # matplotlib, scikit-learn (keras-kare reproduce plots)
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: import name -> (distribution name, extra that installs it)
OPTIONAL = {
    "tensorflow_datasets": ("tensorflow-datasets", "tfds"),
    "matplotlib": ("matplotlib", "reproduce"),
    "sklearn": ("scikit-learn", "reproduce"),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (a key of :data:`OPTIONAL`) or raise :class:`MissingExtraError`.

    Args:
        module: import name, e.g. ``"tensorflow_datasets"``.
        purpose: what needs it, for the message (e.g. ``"datasets.from_tfds"``).

    Returns:
        The imported module.

    Example:
        >>> tfds = require("tensorflow_datasets", "datasets.from_tfds")  # doctest: +SKIP
    """
    if module not in OPTIONAL:
        raise ValueError(f"module must be one of {sorted(OPTIONAL)}, received {module!r}.")
    dist, extra = OPTIONAL[module]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name is not None and err.name.split(".")[0] != module:
            raise  # the package is installed but one of its own dependencies is missing: show that
        raise MissingExtraError(
            f"{purpose} needs {dist}, which is not installed: "
            f"pip install 'keras-kare[{extra}]' (or pip install {dist})."
        ) from err


def available(module: str) -> bool:
    """True if the optional ``module`` can be imported (without raising)."""
    try:
        require(module, module)
    except MissingExtraError:
        return False
    return True
