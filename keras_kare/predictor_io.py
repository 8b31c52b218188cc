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

Loading checks the archive before using it: every member's CRC, the three
members, the metadata's fields and the arrays it lists. A file that fails any
of these (truncated, a changed byte, a missing member or array, metadata that
is not the expected JSON) raises :class:`IncompatibleFormatError`; errors of
the Keras model itself (an unregistered custom layer) are Keras' own. Saving
writes a temporary file beside ``path`` and renames it into place: a failed
save leaves neither a partial file nor a temporary one, and an existing file
at ``path`` is untouched.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import uuid
import zipfile
from typing import Any

import keras
import numpy as np

FORMAT_NAME = "keras_kare.KernelPredictor"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Format 1 predates the ``solver``/``n_centers``/``seed`` parameters; it loads as an exact predictor."""
_LEAF = "__leaf__"


MEMBERS = ("metadata.json", "model.keras", "arrays.npz")
METADATA_FIELDS = {"format": str, "format_version": int, "params": dict, "fitted": bool, "arrays": list}
FITTED_FIELDS = {"state": dict, "x_structure": dict}


class IncompatibleFormatError(ValueError):
    """The file is not a KernelPredictor archive this version of keras_kare can read (or it is damaged)."""


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
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory; expected the path of a file to write.")
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
        metadata = json.dumps(meta, indent=2, default=_json_scalar)
        directory, name = os.path.split(os.path.abspath(path))
        tmp_out = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")  # renamed into place when complete
        fd = os.open(tmp_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        try:
            with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr("metadata.json", metadata)
                zf.write(model_path, "model.keras")
                zf.writestr("arrays.npz", buf.getvalue())
            os.replace(tmp_out, path)
        except BaseException:
            os.unlink(tmp_out)
            raise


# ---------------------------------------------------------------- load
def _damaged(path, what: str) -> IncompatibleFormatError:
    return IncompatibleFormatError(
        f"{path!r} is damaged or incomplete ({what}); it cannot be read as a KernelPredictor archive. "
        "Save the predictor again."
    )


def _open_archive(path) -> zipfile.ZipFile:
    """The archive, after checking it is a zip whose members all pass their CRC check."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such KernelPredictor file: {path!r}")
    if not zipfile.is_zipfile(path):
        raise IncompatibleFormatError(
            f"{path!r} is not a KernelPredictor file (expected a zip archive written by KernelPredictor.save; "
            "a truncated file is not one either)."
        )
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise _damaged(path, f"unreadable zip directory: {err}") from err
    try:
        bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        zf.close()
        raise _damaged(path, f"unreadable member: {err}") from err
    if bad is not None:
        zf.close()
        raise _damaged(path, f"member {bad!r} fails its CRC check")
    return zf


def _check_fields(path, meta: dict, fields: dict) -> None:
    for key, kind in fields.items():
        value = meta.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _damaged(path, f"metadata field {key!r} is {value!r}, expected a {kind.__name__}")


def read_metadata(path) -> dict:
    """The archive's ``metadata.json``, after checking the archive, the format name and version."""
    path = os.fspath(path)
    with _open_archive(path) as zf:
        return _metadata(path, zf)


def _metadata(path: str, zf: zipfile.ZipFile) -> dict:
    if "metadata.json" not in zf.namelist():
        raise IncompatibleFormatError(f"{path!r} has no metadata.json; it was not written by KernelPredictor.save.")
    try:
        meta = json.loads(zf.read("metadata.json"))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise _damaged(path, f"metadata.json is not JSON: {err}") from err
    if not isinstance(meta, dict):
        raise _damaged(path, f"metadata.json holds a {type(meta).__name__}, expected an object")
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
    _check_fields(path, meta, METADATA_FIELDS)
    if meta["fitted"]:
        _check_fields(path, meta, FITTED_FIELDS)
    return meta


def load_predictor(cls, path, custom_objects=None, compile: bool = True):
    """Rebuild a predictor written by :func:`save_predictor`; see ``KernelPredictor.load``."""
    path = os.fspath(path)
    with _open_archive(path) as zf:
        meta = _metadata(path, zf)
        missing = [m for m in MEMBERS if m not in zf.namelist()]
        if missing:
            raise _damaged(path, f"missing member(s) {missing}")
        try:
            with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise _damaged(path, f"arrays.npz is unreadable: {err}") from err
        absent = sorted(set(meta["arrays"]) - set(arrays))
        if absent:
            raise _damaged(path, f"arrays {absent} listed in metadata.json are not in arrays.npz")
        with tempfile.TemporaryDirectory() as tmp:
            zf.extract("model.keras", tmp)
            model = keras.models.load_model(
                os.path.join(tmp, "model.keras"), custom_objects=custom_objects, compile=compile
            )
    try:
        predictor = cls(model, **meta["params"])
    except TypeError as err:
        raise _damaged(path, f"metadata params do not fit {cls.__name__}: {err}") from err
    if not meta["fitted"]:
        return predictor
    try:
        n_leaves = sum(1 for k in arrays if k.startswith("x_fit_"))
        x_fit = _structure_from_json(meta["x_structure"], [arrays[f"x_fit_{i}"] for i in range(n_leaves)])
        return predictor.restore_fitted_state(x_fit, meta["state"], arrays)
    except (KeyError, IndexError, TypeError) as err:
        raise _damaged(path, f"the fitted state is incomplete: {type(err).__name__}: {err}") from err
