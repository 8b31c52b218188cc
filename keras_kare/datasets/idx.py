"""Reader for the IDX format of the original MNIST distribution (LeCun et al.).

Layout: 2 zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), a byte with the number of dimensions, then one
big-endian uint32 per dimension, then the data in C order (big-endian).
Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from keras_kare.datasets.errors import DatasetError

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array.

    Args:
        path: file path; ``.gz`` files are decompressed.

    Returns:
        An array with the file's shape, in native byte order.

    Raises:
        DatasetError: the file is missing, truncated, not gzip despite its name,
            has a bad magic number, or its size does not match its header.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (expected an IDX file).")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DatasetError(
            f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'a file'} ({err})."
        ) from None
    if len(raw) < 4:
        raise DatasetError(f"{path}: {len(raw)} bytes, too short for an IDX header (expected at least 4).")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DatasetError(
            f"{path}: bad IDX magic number {raw[:4].hex()} (expected 0000 followed by a type byte in "
            f"{sorted(hex(t) for t in _DTYPES)} and a dimension count)."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DatasetError(f"{path}: IDX header declares {ndim} dimensions but the file is only {len(raw)} bytes.")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path}: IDX header says shape {shape} ({expected} data bytes) but the file holds "
            f"{len(raw) - header} data bytes (truncated or corrupt)."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx(directory, stem: str) -> Path:
    """``directory/stem`` or ``directory/stem.gz``, whichever exists.

    MNIST's names are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; the dot variant
    (``t10k-images.idx3-ubyte``) is accepted too.
    """
    directory = Path(directory)
    variants = [stem, stem.replace("-idx", ".idx")]
    for name in variants:
        for candidate in (directory / name, directory / (name + ".gz")):
            if candidate.is_file():
                return candidate
    raise DatasetError(f"{directory}: no {stem}[.gz] in this folder (expected MNIST IDX files).")


def read_idx_pair(directory, prefix: str):
    """``(images, labels)`` from ``<prefix>-images-idx3-ubyte[.gz]`` and ``<prefix>-labels-idx1-ubyte[.gz]``.

    Raises ``DatasetError`` if the two files hold different numbers of items.
    """
    directory = Path(directory)
    images = read_idx(find_idx(directory, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find_idx(directory, f"{prefix}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise DatasetError(f"{directory}: {len(images)} {prefix} images but {len(labels)} labels.")
    return images, labels


def idx_exists(directory, stem: str) -> bool:
    try:
        find_idx(directory, stem)
    except DatasetError:
        return False
    return True


__all__ = ["read_idx", "read_idx_pair", "find_idx", "idx_exists", "DatasetError"]
