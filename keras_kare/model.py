"""KAREModel: train a network's empirical NTK to minimise KARE with ``fit()``."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_kare import _keras_compat as compat
from keras_kare import _validation as v
from keras_kare import distribute as _distribute
from keras_kare import in_memory, kare_logs
from keras_kare.factor import min_eigenvalue, min_eigenvalue_estimate
from keras_kare.guard import NonFiniteGuard
from keras_kare.layers.kare_layer import KARE
from keras_kare.ntk import GramEngine
from keras_kare.risk import as_target_matrix


@keras.saving.register_keras_serializable(package="keras_kare")
class KAREModel(compat.EpochLogsFromLastStep, compat.MultiWorkerFix, keras.Model):
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
        solve_dtype: precision of KARE's Cholesky solve: ``"auto"`` (float64
            up to 4096 examples per batch), ``"float64"`` or ``"float32"``.
        on_nonfinite: what a step whose KARE or gradient is not finite (a
            failed factorisation, NaN in the batch, an exploding learning
            rate) does. Either way the weights are *not* updated by that step.
            ``"stop"`` (default) then stops ``fit`` with a message naming the
            epoch, batch and smallest eigenvalue of K/n + zI, so the weights
            of the last good step are what remain; ``"skip"`` continues with
            the next batch (a warning is logged once). Non-finite steps are
            counted in the ``nonfinite_steps`` log and left out of the
            ``kare``/``loss`` averages; ``keras.callbacks.TerminateOnNaN`` is
            therefore not needed (and does not fire on skipped steps).
        kare_scope: under a ``tf.distribute`` strategy with several replicas,
            ``"replica"`` (default, cheapest): each replica computes KARE on
            its own share of the global batch and the step minimises their
            mean; ``"global"``: one KARE over the whole global batch, equal to
            the single-device step (the replicas exchange per-example NTK
            factors and Gram rows). Without replicas both are the same. See
            :mod:`keras_kare.distribute` for the costs and when to use which.

    Factorisations that needed the jitter ladder of :mod:`keras_kare.factor`
    are counted in the ``factor_retries`` log (warned about once).

    Mixed precision (``keras.config.set_dtype_policy("mixed_float16")`` or
    ``"mixed_bfloat16"``): the network runs in 16 bits, but its variables stay
    float32, the per-example gradients are taken with respect to them and the
    Gram is accumulated in float32 (``implementation="auto"`` uses the
    jacobian NTK for such models), and KARE is solved in ``solve_dtype``
    (float64 by default). With ``mixed_float16`` the objective is loss-scaled
    for the ``LossScaleOptimizer`` that ``compile`` installs, which alone
    handles overflowing gradients.

    Distribution (``MirroredStrategy``, ``MultiWorkerMirroredStrategy``): with
    ``kare_scope="replica"`` each replica computes KARE on its own share of the
    global batch and the step minimises the mean of the replicas' KAREs; with
    ``kare_scope="global"`` the step is the single-device KARE step on the
    global batch; see :mod:`keras_kare.distribute`. The global batch must be
    divisible by the number of replicas. The ``nonfinite_steps`` and
    ``factor_retries`` logs count steps (a step skipped, or factorised with
    jitter, on any replica counts once). Multi-worker training and resuming a killed
    ``fit`` with ``keras.callbacks.BackupAndRestore``: ``docs/scaling_out.md``.

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
        solve_dtype: str = "auto",
        on_nonfinite: str = "stop",
        kare_scope: str = "replica",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', received {on_nonfinite!r}.")
        self.on_nonfinite = on_nonfinite
        self.kare_scope = _distribute.check_kare_scope(kare_scope)
        v.check_model(base_model, "base_model")
        self._engine = GramEngine(base_model, kernel, implementation)  # checks kernel and implementation
        self.base_model = base_model
        self.kare_layer = KARE(ridge=ridge, relative_ridge=relative_ridge, solve_dtype=solve_dtype, name="kare")
        self.kernel = kernel
        self.implementation = implementation
        self._trackers = kare_logs.make_trackers()
        # smallest eigenvalue of K/n + zI at the last non-finite step (for the stop message)
        self._failure_min_eig = keras.Variable(float("nan"), dtype="float64", trainable=False, name="failure_min_eig")
        self._metrics_group = compat.metrics_group(list(self._trackers.values()), name="kare_metrics")
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
        _distribute.check_replica_batch(x)  # equal KARE batch on every replica (no-op without a strategy)
        if not self.base_model.built:
            self.base_model(x, training=False)
        if not self.built or compat.build_shapes(self) is None:
            self._note_input_shape(tf.nest.map_structure(lambda t: tuple(t.shape), x))

    def _note_input_shape(self, input_shape):
        """Record the input shape for ``get_build_config`` (saving) and mark the model built.

        ``train_step`` never calls the model itself, so Keras would otherwise
        save a KAREModel as "unbuilt"; the shape (batch axis dropped) lets
        ``load_model`` rebuild a subclassed base network before loading weights.
        """
        if compat.build_shapes(self) is None and input_shape is not None:
            shape = keras.tree.map_shape_structure(lambda s: (None,) + tuple(s)[1:], input_shape)
            compat.record_build_shapes(self, shape)
        self.built = True

    def failure_min_eigenvalue(self) -> float:
        """Smallest eigenvalue of K/n + zI at the last non-finite step (NaN before any); for :mod:`keras_kare.guard`."""
        return float(self._failure_min_eig.numpy())

    @property
    def metrics(self):
        return [self._metrics_group] if self._metrics_group is not None else list(self._trackers.values())

    def compile(self, optimizer="sgd", loss=None, jit_compile="auto", **kwargs):
        """Like ``keras.Model.compile``; KARE is the objective, so ``loss`` must be None.

        ``jit_compile="auto"`` means XLA only when a GPU is visible: on a CPU,
        XLA's Cholesky is far slower than TensorFlow's LAPACK-style kernel
        (measured: 547 ms vs 30 ms at n = 800; a full KARE step at n = 800 is
        about 2× slower under XLA). ``jit_compile=True`` forces XLA; the step
        is XLA-compilable and tested both ways.
        """
        if jit_compile == "auto":
            jit_compile = bool(tf.config.list_physical_devices("GPU"))
        if loss is not None:
            raise ValueError(
                f"KAREModel minimises KARE and takes no loss; received loss={loss!r}. "
                "Call compile(optimizer=...) without a loss."
            )
        if kwargs.get("metrics"):
            raise ValueError("KAREModel reports KARE metrics itself; compile(metrics=...) is not supported.")
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        class_weight=None,
        sample_weight=None,
        initial_epoch=0,
        steps_per_epoch=None,
        validation_steps=None,
        validation_batch_size=None,
        validation_freq=1,
    ):
        """``keras.Model.fit`` (same arguments) plus the non-finite-step guard (see ``on_nonfinite``).

        Before the first step (so that no weight moves on bad input), arrays
        and Python lists of rows are checked against the base network and
        their targets (shape (n,) or (n, C), one row per example), and batch
        sizes that would leave a batch of one example (KARE is undefined on
        it) raise ``ValueError``; a dataset must yield (x, y) pairs whose
        static batch sizes agree (``keras_kare._validation.check_fit_arrays``,
        ``check_fit_dataset``).
        """
        arguments = dict(
            x=x,
            y=y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            class_weight=class_weight,
            sample_weight=sample_weight,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            validation_batch_size=validation_batch_size,
            validation_freq=validation_freq,
        )
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks.append(NonFiniteGuard(self.on_nonfinite))
        else:
            arguments["callbacks"] = list(callbacks or []) + [NonFiniteGuard(self.on_nonfinite)]
        self.stop_reason_ = None
        # everything knowable before the first step is checked here, before any weight moves
        x, y = v.check_fit_arrays(
            self.base_model, x, y, batch_size, validation_split, validation_data, validation_batch_size
        )
        arguments.update(x=x, y=y)
        v.check_fit_dataset(x)
        if isinstance(validation_data, tf.data.Dataset):
            v.check_fit_dataset(validation_data, "validation_data")
        _distribute.check_fit_arguments(x, batch_size, self.distribute_strategy)
        # in-memory arrays: one pipeline for the whole fit instead of one per epoch (keras_kare.in_memory)
        seed = None
        if _distribute.spans_workers(self.distribute_strategy) and in_memory.is_in_memory(x):
            seed = _distribute.shared_seed(self.distribute_strategy)  # the same shuffles on every worker
        arguments = in_memory.fit_arguments(arguments, seed=seed)
        self._build_from_dataset(arguments.get("x"))
        return super().fit(**arguments)

    def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
        """``keras.Model.evaluate`` with ``fit``'s checks run before the first batch.

        Arrays and Python lists of rows are checked against the base network
        and their targets, and a batch size that would leave a final batch of
        one example (KARE is undefined on it) raises ``ValueError`` before
        any batch is evaluated; a dataset must yield (x, y) pairs whose
        static batch sizes agree. The remaining arguments are Keras'.

        Example:
            >>> logs = model.evaluate(x_val, y_val, batch_size=len(x_val), return_dict=True)  # doctest: +SKIP
            >>> logs["kare"]  # doctest: +SKIP
        """
        x, y = v.check_fit_arrays(self.base_model, x, y, batch_size, method="KAREModel.evaluate")
        v.check_fit_dataset(x, method="KAREModel.evaluate")
        return super().evaluate(x, y, batch_size, *args, **kwargs)

    def _build_from_dataset(self, data):
        """Build from a dataset's element shapes before ``fit``, if not built yet.

        ``train_step`` would build the model at its first step, but callbacks
        run before that: ``keras.callbacks.BackupAndRestore`` restores into a
        built model only (and raises otherwise).
        """
        if self.built or not isinstance(data, tf.data.Dataset):
            return
        spec = data.element_spec
        x_spec = spec[0] if isinstance(spec, tuple) else spec
        self.build(tf.nest.map_structure(lambda s: tuple(s.shape), x_spec))

    # -------------------------------------------------- per-epoch metric work
    # Keras resets and reads the metrics once per epoch (and per evaluate), one
    # eager op per metric variable: about as long as a whole KARE step on small
    # data. Each is one compiled call here.
    def reset_metrics(self):
        if getattr(self, "_reset_metrics_fn", None) is None:
            trackers = list(self._trackers.values())

            def reset():
                for tracker in trackers:
                    tracker.reset_state()
                return tf.constant(True)

            self._reset_metrics_fn = tf.function(reset)
        self._reset_metrics_fn()

    def _logs_are_metric_results(self, logs) -> bool:
        """A step's logs are every tracker's result after the step (one replica: nothing averaged across replicas)."""
        return (
            isinstance(logs, dict)
            and set(logs) == set(self._trackers)
            and self.distribute_strategy.num_replicas_in_sync == 1
        )

    def get_metrics_result(self):
        if getattr(self, "_metrics_result_fn", None) is None:
            self._metrics_result_fn = tf.function(super().get_metrics_result)
        return kare_logs.per_replica_counts(self._metrics_result_fn(), self.distribute_strategy.num_replicas_in_sync)

    # ------------------------------------------------------------- KARE steps
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
            n,
            2,
            message="KAREModel needs at least 2 examples per batch (last partial batch of 1? use drop_remainder=True).",
        )
        engine = self._engine
        spread = self._global_scope()
        if n_static is not None:
            engine.check_step_memory(x, n_static * _distribute.num_replicas() if spread else n_static)
        if spread:
            # one Gram over the global batch: this replica's rows K(x, X), stacked across replicas
            k = _distribute.gather_replicated_rows(engine.global_rows(x, _distribute.gather_examples))
            y = _distribute.gather_examples(tf.stop_gradient(tf.convert_to_tensor(y)))
        else:
            k = engine.step_gram(x)
        y = as_target_matrix(y, k.dtype)
        if self.kernel == "full":
            n, c = tf.shape(k)[0], tf.shape(k)[2]  # n: the global batch under kare_scope="global"
            k = tf.reshape(tf.transpose(k, [0, 2, 1, 3]), [n * c, n * c])
            y = tf.reshape(y, [-1, 1])
        return self.kare_layer.terms(k, y), k

    def _global_scope(self) -> bool:
        """Whether this step computes one KARE over the global batch of a distributed step."""
        return self.kare_scope == "global" and _distribute.in_replicas()

    def _update_trackers(self, terms, ok=None):
        return kare_logs.update_trackers(self._trackers, terms, terms.ok if ok is None else ok)

    def _record_failure(self, k, ridge):
        """Store min eig(K/n + zI) of a failed step (evaluated only on failure)."""
        k64 = tf.cast(k, tf.float64)
        n = tf.cast(tf.shape(k64)[0], tf.float64)
        m = k64 / n + tf.cast(ridge, tf.float64) * tf.eye(tf.shape(k64)[0], dtype=tf.float64)
        # XLA's CPU eigensolver takes minutes at n ~ 1000: estimate there, exact otherwise.
        exact = not getattr(self, "jit_compile", False)
        self._failure_min_eig.assign(min_eigenvalue(m) if exact else min_eigenvalue_estimate(m))
        return tf.constant(False)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("KAREModel does not support sample_weight: KARE has no per-example weighting.")
        self._ensure_built(x)
        variables = self.base_model.trainable_variables
        with tf.GradientTape() as tape:
            terms, k = self._kare_terms(x, y)
            # under a tf.distribute strategy, "replica" scope: the mean of the per-replica KAREs;
            # "global": every replica holds the one KARE of the global batch (see keras_kare.distribute)
            objective = terms.value if self._global_scope() else _distribute.scale_for_replicas(terms.value)
            # mixed_float16: compile() wraps the optimizer in a LossScaleOptimizer, whose apply() unscales
            objective = self.optimizer.scale_loss(objective)
        grads = tape.gradient(objective, variables)
        # Structurally-zero gradients (e.g. the output bias, whose NTK contribution is a
        # constant) come back as None; the optimizer gets explicit zeros instead of a warning.
        grads = [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(grads, variables)]
        ok = tf.logical_and(terms.ok, tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads]))
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # overflowing scaled gradients are the LossScaleOptimizer's business (it skips the step
            # and lowers the scale); only a non-finite KARE counts as a failed step here
            ok = terms.ok

        # A non-finite step never touches the weights (nor the optimizer state).
        # (a tf.cond around optimizer.apply is not allowed in a MirroredStrategy replica context:
        # apply_or_else decides in the cross-replica context; every replica skips if any failed)
        ok = _distribute.all_replicas(ok)
        _distribute.apply_or_else(self.optimizer, ok, grads, variables, self._record_failure, (k, terms.ridge))
        return self._update_trackers(terms, ok)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("KAREModel does not support sample_weight: KARE has no per-example weighting.")
        self._ensure_built(x)
        return self._update_trackers(self._kare_terms(x, y)[0])

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
            on_nonfinite=self.on_nonfinite,
            kare_scope=self.kare_scope,
        )
        return config

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
        config["base_model"] = keras.saving.deserialize_keras_object(
            config["base_model"], custom_objects=custom_objects
        )
        return cls(**config)
