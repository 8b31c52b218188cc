"""Saving and loading :class:`~keras_kare.KernelPredictor` (``KernelPredictor.save/load``).

File format (a single zip archive, conventionally ``*.kkp``; any name works):

``metadata.json``
    ``{"format": "keras_kare.KernelPredictor", "format_version": 2,
    "keras_kare_version": ..., "keras_version": ..., "params": {the
    constructor's arguments but the model}, "fitted": bool, "state": {the
    scalars of KernelPredictor.fitted_state()}, "x_structure": <nesting of the
    training inputs>, "arrays": [names in arrays.npz]}``
``model.keras``
    The model (a :class:`~keras_kare.KAREModel` or any Keras model) in Keras'
    native ``.keras`` format, so custom objects registered with
    ``keras.saving.register_keras_serializable`` load without
    ``custom_objects``.
``arrays.npz``
    ``x_fit_0 … x_fit_{k-1}`` (the leaves of ``X_fit_`` in ``tf.nest`` order),
    and the arrays of ``KernelPredictor.fitted_state()``: ``y_fit``,
    ``dual_coef``; for the exact solver optionally ``train_kernel`` (the
    float64 training Gram, needed by ``ridge_path``; recomputed on load if it
    was not stored); for Nyström ``centers_idx`` and the ``nystrom_*`` arrays
    of its m-dimensional system; for ``ridge="auto"`` the ``ridge_path_*``
    arrays.

The archive layout lives here; what a fitted predictor consists of is the
predictor's own business (``fitted_state`` / ``restore_fitted_state``).

The predictor's training inputs are stored as given (not as features): the NTK
of a new input against them needs the network's gradients at the training
points. ``FORMAT_VERSION`` changes whenever the layout changes incompatibly;
loading any other version raises :class:`IncompatibleFormatError`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from typing import Any

import keras
import numpy as np

FORMAT_NAME = "keras_kare.KernelPredictor"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Format 1 predates the ``solver``/``n_centers``/``seed`` parameters; it loads as an exact predictor."""
_LEAF = "__leaf__"


class IncompatibleFormatError(ValueError):
    """The file is not a KernelPredictor archive this version of keras_kare can read."""


# ---------------------------------------------------------------- nesting
def _structure_to_json(x) -> Any:
    """The nesting of ``x`` with leaves replaced by ``{"__leaf__": index}`` (JSON-safe)."""
    counter = iter(range(10**9))

    def encode(node):
        if isinstance(node, dict):
            return {"dict": {str(k): encode(node[k]) for k in sorted(node)}}
        if isinstance(node, (list, tuple)):
            return {"list" if isinstance(node, list) else "tuple": [encode(n) for n in node]}
        return {_LEAF: next(counter)}

    return encode(x)


def _structure_from_json(spec, leaves: list):
    if _LEAF in spec:
        return leaves[spec[_LEAF]]
    if "dict" in spec:
        return {k: _structure_from_json(v, leaves) for k, v in spec["dict"].items()}
    if "list" in spec:
        return [_structure_from_json(v, leaves) for v in spec["list"]]
    return tuple(_structure_from_json(v, leaves) for v in spec["tuple"])


def _flatten(x) -> list:
    """Leaves in the same order as :func:`_structure_to_json` numbers them."""
    if isinstance(x, dict):
        return [leaf for k in sorted(x) for leaf in _flatten(x[k])]
    if isinstance(x, (list, tuple)):
        return [leaf for n in x for leaf in _flatten(n)]
    return [x]


# ---------------------------------------------------------------- save
def _json_scalar(value):
    """NumPy scalars (e.g. an ``np.int64`` seed) as their Python values."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {value!r} ({type(value).__name__}) in the predictor's metadata.")


def save_predictor(predictor, path, include_train_kernel: bool = True, overwrite: bool = True) -> None:
    """Write ``predictor`` to ``path`` (see the module docstring for the format).

    Args:
        predictor: a :class:`~keras_kare.KernelPredictor`, fitted or not.
        path: destination file.
        include_train_kernel: store the n×n float64 training Gram (fast
            ``ridge_path`` after loading); if False it is recomputed on load.
        overwrite: replace an existing file.

    Raises:
        ValueError: if the model's weights changed since ``fit`` (the dual
            coefficients would not match the saved network), or ``path``
            exists and ``overwrite`` is False.
    """
    from keras_kare.version import __version__

    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"{path!r} exists; pass overwrite=True to replace it.")
    fitted = hasattr(predictor, "dual_coef_")
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "keras_kare_version": __version__,
        "keras_version": keras.__version__,
        "params": {k: v for k, v in predictor.get_params(deep=False).items() if k != "model"},
        "fitted": fitted,
    }
    arrays: dict[str, np.ndarray] = {}
    if fitted:
        meta["state"], state_arrays = predictor.fitted_state(include_train_kernel=include_train_kernel)
        meta["x_structure"] = _structure_to_json(predictor.X_fit_)
        for i, leaf in enumerate(_flatten(predictor.X_fit_)):
            arrays[f"x_fit_{i}"] = np.asarray(leaf)
        arrays.update(state_arrays)
    meta["arrays"] = sorted(arrays)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "model.keras")
        predictor.model.save(model_path)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        tmp_out = path + ".tmp"
        with zipfile.ZipFile(tmp_out, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("metadata.json", json.dumps(meta, indent=2, default=_json_scalar))
            zf.write(model_path, "model.keras")
            zf.writestr("arrays.npz", buf.getvalue())
        os.replace(tmp_out, path)


# ---------------------------------------------------------------- load
def read_metadata(path) -> dict:
    """The archive's ``metadata.json``, after checking format name and version."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such KernelPredictor file: {path!r}")
    if not zipfile.is_zipfile(path):
        raise IncompatibleFormatError(
            f"{path!r} is not a KernelPredictor file (expected a zip archive written by KernelPredictor.save)."
        )
    with zipfile.ZipFile(path) as zf:
        if "metadata.json" not in zf.namelist():
            raise IncompatibleFormatError(f"{path!r} has no metadata.json; it was not written by KernelPredictor.save.")
        meta = json.loads(zf.read("metadata.json"))
    if meta.get("format") != FORMAT_NAME:
        raise IncompatibleFormatError(f"{path!r} holds {meta.get('format')!r}, not a {FORMAT_NAME} archive.")
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise IncompatibleFormatError(
            f"{path!r} was saved in KernelPredictor format version {version!r} "
            f"(keras_kare {meta.get('keras_kare_version', 'unknown')}); this keras_kare reads format versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} only. Load it with the keras_kare version that wrote it, "
            "or refit the predictor."
        )
    return meta


def load_predictor(cls, path, custom_objects=None, compile: bool = True):
    """Rebuild a predictor written by :func:`save_predictor`; see ``KernelPredictor.load``."""
    meta = read_metadata(path)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(os.fspath(path)) as zf:
        zf.extract("model.keras", tmp)
        model = keras.models.load_model(
            os.path.join(tmp, "model.keras"), custom_objects=custom_objects, compile=compile
        )
        with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    predictor = cls(model, **meta["params"])
    if not meta["fitted"]:
        return predictor
    n_leaves = sum(1 for k in arrays if k.startswith("x_fit_"))
    x_fit = _structure_from_json(meta["x_structure"], [arrays[f"x_fit_{i}"] for i in range(n_leaves)])
    return predictor.restore_fitted_state(x_fit, meta["state"], arrays)
