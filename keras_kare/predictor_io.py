"""Saving and loading :class:`~keras_kare.KernelPredictor` (``KernelPredictor.save/load``).

File format (a single zip archive, conventionally ``*.kkp``; any name works):

``metadata.json``
    ``{"format": "keras_kare.KernelPredictor", "format_version": 1,
    "keras_kare_version": ..., "keras_version": ..., "params": {ridge,
    relative_ridge, kernel, batch_size, implementation, verbose}, "fitted": bool,
    "state": {n_outputs_, ridge_, effective_ridge_, y_ndim}, "x_structure":
    <nesting of the training inputs>, "arrays": [names in arrays.npz]}``
``model.keras``
    The model (a :class:`~keras_kare.KAREModel` or any Keras model) in Keras'
    native ``.keras`` format, so custom objects registered with
    ``keras.saving.register_keras_serializable`` load without
    ``custom_objects``.
``arrays.npz``
    ``x_fit_0 … x_fit_{k-1}`` (the leaves of ``X_fit_`` in ``tf.nest`` order),
    ``y_fit``, ``dual_coef``, optionally ``train_kernel`` (the float64 training
    Gram, needed by ``ridge_path``; recomputed on load if it was not stored)
    and, for ``ridge="auto"``, the ``ridge_path_`` arrays.

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
import tensorflow as tf

FORMAT_NAME = "keras_kare.KernelPredictor"
FORMAT_VERSION = 1
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
    from keras_kare import __version__

    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"{path!r} exists; pass overwrite=True to replace it.")
    fitted = hasattr(predictor, "dual_coef_")
    if fitted:
        now = predictor._weights_snapshot()
        if any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(now, predictor._fit_weights)):
            raise ValueError(
                "the model's weights changed since fit(); the dual coefficients belong to the old NTK, so "
                "saving would write an inconsistent predictor. Call fit again before saving."
            )
    params = {
        "ridge": predictor.ridge,
        "relative_ridge": predictor.relative_ridge,
        "kernel": predictor.kernel,
        "batch_size": predictor.batch_size,
        "implementation": predictor.implementation,
        "verbose": getattr(predictor, "verbose", "auto"),
    }
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "keras_kare_version": __version__,
        "keras_version": keras.__version__,
        "params": params,
        "fitted": fitted,
    }
    arrays: dict[str, np.ndarray] = {}
    if fitted:
        leaves = _flatten(predictor.X_fit_)
        meta["x_structure"] = _structure_to_json(predictor.X_fit_)
        for i, leaf in enumerate(leaves):
            arrays[f"x_fit_{i}"] = np.asarray(leaf)
        arrays["y_fit"] = np.asarray(predictor.y_fit_)
        arrays["dual_coef"] = np.asarray(predictor.dual_coef_)
        if include_train_kernel:
            arrays["train_kernel"] = np.asarray(predictor.train_kernel_)
        path_obj = getattr(predictor, "ridge_path_", None)
        if path_obj is not None:
            for field in ("ridges", "effective_ridges", "kare", "loo_mse", "train_mse"):
                arrays[f"ridge_path_{field}"] = np.asarray(getattr(path_obj, field))
        meta["state"] = {
            "n_outputs_": int(predictor.n_outputs_),
            "ridge_": float(predictor.ridge_),
            "effective_ridge_": float(predictor.effective_ridge_),
            "y_ndim": int(predictor._y_ndim),
        }
    meta["arrays"] = sorted(arrays)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "model.keras")
        predictor.model.save(model_path)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        tmp_out = path + ".tmp"
        with zipfile.ZipFile(tmp_out, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("metadata.json", json.dumps(meta, indent=2))
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
        raise IncompatibleFormatError(f"{path!r} is not a KernelPredictor file (expected a zip archive written by KernelPredictor.save).")
    with zipfile.ZipFile(path) as zf:
        if "metadata.json" not in zf.namelist():
            raise IncompatibleFormatError(f"{path!r} has no metadata.json; it was not written by KernelPredictor.save.")
        meta = json.loads(zf.read("metadata.json"))
    if meta.get("format") != FORMAT_NAME:
        raise IncompatibleFormatError(f"{path!r} holds {meta.get('format')!r}, not a {FORMAT_NAME} archive.")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise IncompatibleFormatError(
            f"{path!r} was saved in KernelPredictor format version {version!r} "
            f"(keras_kare {meta.get('keras_kare_version', 'unknown')}); this keras_kare reads format version "
            f"{FORMAT_VERSION} only. Load it with the keras_kare version that wrote it, or refit the predictor."
        )
    return meta


def load_predictor(cls, path, custom_objects=None, compile: bool = True):
    """Rebuild a predictor written by :func:`save_predictor`; see ``KernelPredictor.load``."""
    from keras_kare.ridge import RidgePath

    meta = read_metadata(path)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(os.fspath(path)) as zf:
        zf.extract("model.keras", tmp)
        model = keras.models.load_model(os.path.join(tmp, "model.keras"), custom_objects=custom_objects, compile=compile)
        with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    predictor = cls(model, **meta["params"])
    if not meta["fitted"]:
        return predictor
    state = meta["state"]
    n_leaves = sum(1 for k in arrays if k.startswith("x_fit_"))
    leaves = [arrays[f"x_fit_{i}"] for i in range(n_leaves)]
    predictor.X_fit_ = _structure_from_json(meta["x_structure"], leaves)
    predictor.y_fit_ = arrays["y_fit"]
    predictor.dual_coef_ = arrays["dual_coef"]
    predictor.n_outputs_ = state["n_outputs_"]
    predictor.ridge_ = state["ridge_"]
    predictor.effective_ridge_ = state["effective_ridge_"]
    predictor._y_ndim = state["y_ndim"]
    predictor._eig = None
    if "ridge_path_ridges" in arrays:
        predictor.ridge_path_ = RidgePath(
            *(arrays[f"ridge_path_{f}"] for f in ("ridges", "effective_ridges", "kare", "loo_mse", "train_mse"))
        )
    network = predictor._network()
    if not network.built:
        network(tf.nest.map_structure(lambda t: t[:1], predictor.X_fit_), training=False)
    if "train_kernel" in arrays:
        predictor.train_kernel_ = arrays["train_kernel"]
    else:
        predictor.train_kernel_ = predictor._gram(predictor.X_fit_)
    predictor._fit_weights = predictor._weights_snapshot()
    return predictor
