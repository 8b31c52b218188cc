"""What determines a network's NTK, to tell whether it changed since a kernel was computed.

``KernelPredictor`` takes a fingerprint at ``fit`` and refuses ``predict``,
``predict_path`` and ``save`` when the network's NTK may differ from the one
its dual coefficients were solved with.
"""

from __future__ import annotations

import hashlib

import numpy as np

from keras_kare._keras_compat import nested_layers


def network_fingerprint(network) -> dict:
    """What determines a network's NTK, in three parts whose change :class:`KernelPredictor` reports by name.

    - ``"weights"``: every weight's name and a copy of its value, in the network's order, trainable or
      not (BatchNorm moving statistics change the features the NTK differentiates through). Names, not
      paths: Keras prefixes a path with the model's name scope when the model is built by a call but
      not when it is rebuilt from a saved config (pickling, ``load_model``), so paths differ for the
      same network; which layer a weight belongs to is covered by the order and by ``"layers"``;
    - ``"trainable"``: which of those weights are trainable (the NTK sums over exactly these);
    - ``"layers"``: a digest of each nested layer's class, name and configuration (e.g. an activation
      swapped in place).

    Random-seed state (``keras.random.SeedGenerator``) and metric variables are not weights and are left
    out: they change on calls that leave the function unchanged. Compare with :func:`fingerprint_changes`
    (bitwise, so a one-ulp change of one weight counts; copying and comparing beats hashing the values).
    """
    weights = network.weights
    trainable = {id(w) for w in network.trainable_weights}
    layers = hashlib.blake2b(digest_size=16)
    for layer in nested_layers(network):
        try:
            config = "" if hasattr(layer, "layers") else repr(layer.get_config())
        except NotImplementedError:  # a custom layer without get_config: its class and name still count
            config = ""
        layers.update(f"{type(layer).__module__}.{type(layer).__qualname__}|{layer.name}|{config}\n".encode())
    return {
        "weights": [(w.name, np.array(w.numpy())) for w in weights],
        "trainable": tuple(id(w) in trainable for w in weights),
        "layers": layers.hexdigest(),
    }


def _bits(a: np.ndarray) -> np.ndarray:
    """The bytes of a contiguous array, for a bitwise comparison (NaN equals itself, -0.0 differs from 0.0)."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _same_weights(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        pa == pb and wa.shape == wb.shape and wa.dtype == wb.dtype and np.array_equal(_bits(wa), _bits(wb))
        for (pa, wa), (pb, wb) in zip(a, b)
    )


def fingerprint_changes(before: dict, now: dict) -> list:
    """The parts (``"weights"``, ``"trainable"``, ``"layers"``) in which two :func:`network_fingerprint` differ."""
    changed = [] if _same_weights(before["weights"], now["weights"]) else ["weights"]
    return changed + [k for k in ("trainable", "layers") if before[k] != now[k]]


CHANGE_MESSAGES = {
    "weights": "the model's weights changed since fit() (trainable or not, e.g. BatchNorm moving statistics)",
    "trainable": "which of the model's weights are trainable changed since fit() (a layer's trainable flag)",
    "layers": "the model's layers changed since fit()",
}
