"""The seam between keras_kare and the framework that differentiates the network.

keras_kare runs on Keras 3 with the TensorFlow backend only; importing it with
another Keras backend raises ``ImportError`` at once (:func:`check_keras_backend`).

Where TensorFlow is used:

* ``backend/tensorflow`` — everything that *differentiates a network*: the
  per-example Jacobian Gram (``tf.GradientTape.jacobian`` with ``pfor``), the
  structured NTK (a tape watching each layer's pre-activation, nested tapes so
  KARE's gradient flows through the Gram) and blocked Grams. The rest of the
  package reaches it only through the names exported here.
* ``risk.py``, ``factor.py``, ``ridge.py`` — KARE and kernel ridge algebra on
  TensorFlow tensors: float64 Cholesky with a jitter ladder (``tf.while_loop``),
  triangular solves, a ``tf.custom_gradient`` for KARE, ``eigvalsh``. These are
  backend-neutral in substance (``keras.ops.linalg`` has Cholesky, triangular
  solves and ``eigh``) but written in TensorFlow.
* ``model.py`` (``train_step`` with ``tf.GradientTape``, ``tf.cond``) and
  ``distribute.py`` (``tf.distribute`` replica logic, device placement of Gram
  blocks); ``_validation.py``, ``ntk.py``, ``callbacks`` (``tf.summary``) and
  ``datasets`` (``tf.data``) use TensorFlow utilities (``tf.nest``,
  ``tf.function``).

What a JAX port would have to provide: this package's functions (``gram``,
``compiled_gram``, ``captured_blocks``/``CapturedBlocks``, ``row_block_gram``, ``forward_profile``,
``resolve_implementation``, ``swap_examples``) built on ``jax.jacrev``/``vmap`` (neural-tangents'
``empirical.py`` is the model), the KARE and ridge algebra in ``keras.ops`` or
``jax.numpy`` with ``jax.custom_vjp`` in place of ``tf.custom_gradient``, a
``KAREModel.train_step`` in the stateless JAX trainer style, and
``jax.sharding`` in place of ``tf.distribute``.
"""

from keras_kare.backend._check import check_keras_backend

check_keras_backend()

from keras_kare.backend.tensorflow import (  # noqa: E402 - only after the backend check
    IMPLEMENTATIONS,
    CapturedBlocks,
    cached_functions,
    captured_blocks,
    compiled_gram,
    forward_profile,
    gram,
    register_rule,
    resolve_implementation,
    row_block_gram,
    swap_examples,
)

__all__ = [
    "IMPLEMENTATIONS",
    "CapturedBlocks",
    "cached_functions",
    "captured_blocks",
    "check_keras_backend",
    "compiled_gram",
    "forward_profile",
    "gram",
    "register_rule",
    "resolve_implementation",
    "row_block_gram",
    "swap_examples",
]
