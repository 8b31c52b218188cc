"""KAREModel: train a network's empirical NTK to minimise KARE with ``fit()``."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_kare import _validation as v
from keras_kare.backend import IMPLEMENTATIONS, gram, resolve_implementation
from keras_kare.layers.kare_layer import KARE

_METRIC_NAMES = ("loss", "kare", "kare_numerator", "kare_denominator", "effective_ridge")


def _metrics_group(trackers):
    """Group the trackers the way compiled metrics are grouped.

    Keras' monitor callbacks (ModelCheckpoint, EarlyStopping, ReduceLROnPlateau)
    infer ``mode="min"`` from a metric's direction only for metrics inside such a
    group, so grouping makes ``EarlyStopping(monitor="kare")`` work without
    ``mode=``. If a future Keras drops the (private) class, the trackers are
    returned ungrouped and users pass ``mode="min"``.
    """
    try:
        from keras.src.trainers.compile_utils import MetricsList
    except ImportError:  # pragma: no cover
        return None

    class _KAREMetrics(MetricsList):
        def result(self):
            return self.get_result()

    return _KAREMetrics(trackers, name="kare_metrics")


@keras.saving.register_keras_serializable(package="keras_kare")
class KAREModel(keras.Model):
    """A Keras model whose ``train_step`` minimises KARE of its batch NTK.

    For every batch (x, y) the model builds the empirical NTK Gram K of
    ``base_model`` on x (inference mode: dropout off, batch-norm on moving
    statistics), evaluates ``KARE(K, y, ridge)`` with the :class:`~keras_kare.layers.KARE`
    layer and differentiates it with respect to the base model's trainable
    weights *through* the Gram (nested ``GradientTape``), then applies the
    compiled optimizer (Schwab, Kelly, Malamud, Xu 2025). Calling the model
    returns the base network's outputs; predict with kernel ridge regression
    through :class:`keras_kare.KernelPredictor`.

    Logs (progress bar, History, callbacks): ``kare`` (also reported as
    ``loss`` so that ``TerminateOnNaN``/``ReduceLROnPlateau`` defaults work),
    ``kare_numerator``, ``kare_denominator`` and ``effective_ridge``; during
    validation the same with a ``val_`` prefix.

    Args:
        base_model: the network whose NTK is trained (any Keras model).
        ridge: KARE's ridge z > 0 (paper default 0.1, absolute).
        relative_ridge: use ``ridge * trace(K) / n**2`` instead.
        kernel: ``"trace"``, ``"summed_output"`` (the paper's convention for
            multi-output nets) or ``"full"`` (KARE of the (nC)×(nC) block
            kernel against the flattened targets).
        implementation: NTK implementation, see :func:`keras_kare.ntk`.
        solve_dtype: precision of KARE's Cholesky solve (default float64).

    Batches must hold at least 2 examples (KARE of one example is constant);
    use ``drop_remainder=True`` or a batch size that leaves no remainder of 1.
    ``sample_weight`` is not supported and raises.

    Example:
        >>> net = keras.Sequential([keras.Input((10,)), keras.layers.Dense(64, "gelu"), keras.layers.Dense(1)])
        >>> model = KAREModel(net, ridge=0.1)
        >>> model.compile(optimizer=keras.optimizers.SGD(100.0))
        >>> history = model.fit(x, y, batch_size=len(x), epochs=100)  # doctest: +SKIP
    """

    _is_kare_model = True

    def __init__(
        self,
        base_model,
        ridge: float = 0.1,
        relative_ridge: bool = False,
        kernel: str = "trace",
        implementation: str = "auto",
        solve_dtype: str = "float64",
        **kwargs,
    ):
        super().__init__(**kwargs)
        v.check_model(base_model, "base_model")
        v.check_kernel_mode(kernel)
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, received {implementation!r}.")
        self.base_model = base_model
        self.kare_layer = KARE(ridge=ridge, relative_ridge=relative_ridge, solve_dtype=solve_dtype, name="kare")
        self.kernel = kernel
        self.implementation = implementation
        self._trackers = {name: keras.metrics.Mean(name=name) for name in _METRIC_NAMES}
        for name in ("loss", "kare", "kare_numerator"):
            self._trackers[name]._direction = "down"  # lower is better
        self._metrics_group = _metrics_group(list(self._trackers.values()))
        if base_model.built and not base_model.trainable_variables:
            raise ValueError("base_model has no trainable weights: there is no NTK to train.")

    # ------------------------------------------------------------------ Keras API
    def call(self, inputs, training=None):
        return self.base_model(inputs, training=training)

    def build(self, input_shape):
        if not self.base_model.built:
            # keras.Model.build cannot build a subclassed network; a symbolic call can.
            symbolic = keras.tree.map_shape_structure(lambda s: keras.KerasTensor((None,) + tuple(s)[1:]), input_shape)
            self.base_model(symbolic, training=False)
        self._note_input_shape(input_shape)

    def _ensure_built(self, x):
        """Build the base network on ``x`` (a subclassed one has no weights yet) and note the shape."""
        if not self.base_model.built:
            self.base_model(x, training=False)
        if not self.built or getattr(self, "_build_shapes_dict", None) is None:
            self._note_input_shape(tf.nest.map_structure(lambda t: tuple(t.shape), x))

    def _note_input_shape(self, input_shape):
        """Record the input shape for ``get_build_config`` (saving) and mark the model built.

        ``train_step`` never calls the model itself, so Keras would otherwise
        save a KAREModel as "unbuilt"; the shape (batch axis dropped) lets
        ``load_model`` rebuild a subclassed base network before loading weights.
        """
        if getattr(self, "_build_shapes_dict", None) is None and input_shape is not None:
            shape = keras.tree.map_shape_structure(lambda s: (None,) + tuple(s)[1:], input_shape)
            self._build_shapes_dict = {"input_shape": shape}
        self.built = True

    @property
    def metrics(self):
        return [self._metrics_group] if self._metrics_group is not None else list(self._trackers.values())

    def compile(self, optimizer="sgd", loss=None, **kwargs):
        """Like ``keras.Model.compile``; KARE is the objective, so ``loss`` must be None."""
        if loss is not None:
            raise ValueError(
                f"KAREModel minimises KARE and takes no loss; received loss={loss!r}. "
                "Call compile(optimizer=...) without a loss."
            )
        if kwargs.get("metrics"):
            raise ValueError("KAREModel reports KARE metrics itself; compile(metrics=...) is not supported.")
        super().compile(optimizer=optimizer, **kwargs)

    # ------------------------------------------------------------- KARE steps
    def _resolved_implementation(self) -> str:
        return resolve_implementation(self.base_model, self.implementation)

    def _kare_terms(self, x, y):
        if y is None:
            raise ValueError("KAREModel needs targets: call fit(x, y) or give a dataset of (x, y) pairs.")
        n_static = tf.nest.flatten(x)[0].shape[0]
        if n_static is not None and n_static < 2:
            raise ValueError(
                f"KAREModel needs at least 2 examples per batch, received a batch of {n_static} "
                "(often the last partial batch: use drop_remainder=True, or a batch size that "
                "does not leave a remainder of 1)."
            )
        n = tf.shape(tf.nest.flatten(x)[0])[0]
        tf.debugging.assert_greater_equal(
            n, 2, message="KAREModel needs at least 2 examples per batch (last partial batch of 1? use drop_remainder=True)."
        )
        k = gram(self.base_model, x, None, kernel=self.kernel, implementation=self._resolved_implementation())
        y = tf.convert_to_tensor(y)
        dtype = k.dtype
        y = tf.cast(y, dtype)
        if y.shape.rank == 1:
            y = y[:, None]
        if self.kernel == "full":
            c = tf.shape(k)[2]
            k = tf.reshape(tf.transpose(k, [0, 2, 1, 3]), [n * c, n * c])
            y = tf.reshape(y, [-1, 1])
        return self.kare_layer.terms(k, y)

    def _update_trackers(self, terms):
        values = {
            "loss": terms.value,
            "kare": terms.value,
            "kare_numerator": terms.numerator,
            "kare_denominator": terms.denominator,
            "effective_ridge": terms.ridge,
        }
        for name, tracker in self._trackers.items():
            tracker.update_state(values[name])
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("KAREModel does not support sample_weight: KARE has no per-example weighting.")
        self._ensure_built(x)
        variables = self.base_model.trainable_variables
        with tf.GradientTape() as tape:
            terms = self._kare_terms(x, y)
        grads = tape.gradient(terms.value, variables)
        # Structurally-zero gradients (e.g. the output bias, whose NTK contribution is a
        # constant) come back as None; the optimizer gets explicit zeros instead of a warning.
        grads = [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(grads, variables)]
        self.optimizer.apply(grads, variables)
        return self._update_trackers(terms)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("KAREModel does not support sample_weight: KARE has no per-example weighting.")
        self._ensure_built(x)
        return self._update_trackers(self._kare_terms(x, y))

    # --------------------------------------------------------------- saving
    def get_config(self):
        config = super().get_config()
        config.update(
            base_model=keras.saving.serialize_keras_object(self.base_model),
            ridge=self.kare_layer.ridge,
            relative_ridge=self.kare_layer.relative_ridge,
            kernel=self.kernel,
            implementation=self.implementation,
            solve_dtype=self.kare_layer.solve_dtype,
        )
        return config

    def get_compile_config(self):
        """The compile arguments (optimizer etc.); ``loss``/``metrics`` are always None here."""
        return super().get_compile_config()

    def compile_from_config(self, config):
        """Re-compile on ``load_model`` (``compile`` is overridden, so Keras would skip it).

        The optimizer is built on the base network's trainable variables (the
        list ``train_step`` applies gradients to) so that its saved state
        (iterations, slots) loads into matching variables.
        """
        config = dict(keras.saving.deserialize_keras_object(config))
        for key in ("loss", "metrics", "weighted_metrics", "loss_weights"):
            config.pop(key, None)
        self.compile(**config)
        if self.built or self.base_model.built:
            self.optimizer.build(self.base_model.trainable_variables)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["base_model"] = keras.saving.deserialize_keras_object(config["base_model"], custom_objects=custom_objects)
        return cls(**config)
