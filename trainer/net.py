"""The compact Conv1D emotion classifier (Keras 3): layers, the optional corpus-adversarial head, the
moving average of its weights, and its quick float scoring of clips.

Input: ``(frames, n_mfcc)`` MFCCs normalised with the training mean/std (zeros where the daemon
pads frames before the stream start). Output: softmax over the labels, or logits and arousal/valence.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

DELTA_KERNEL = (-2.0, -1.0, 0.0, 1.0, 2.0)
"""Regression deltas over N=2 frames: ``sum_n n (c[t+n] - c[t-n]) / (2 sum_n n^2)`` (python_speech_features
``delta``; here zero-padded at the window edges instead of edge-replicated)."""


def _instance_cmn_layer():
    import keras
    from keras import ops

    class InstanceCMN(keras.layers.Layer):
        """Per-window cepstral mean normalisation: ``x - mean_t(x)`` per coefficient, ``(batch, frames, coeffs)``."""

        def call(self, x):
            return x - ops.mean(x, axis=1, keepdims=True)

    return InstanceCMN(name="instance_cmn")


def _delta_layer(coefficients: int, name: str):
    import keras

    kernel = np.asarray(DELTA_KERNEL, dtype=np.float32) / float(2 * sum(n * n for n in (1, 2)))
    layer = keras.layers.DepthwiseConv1D(len(DELTA_KERNEL), padding="same", use_bias=False, trainable=False, name=name)
    layer.build((None, None, coefficients))
    layer.set_weights([np.tile(kernel[:, None, None], (1, coefficients, 1))])
    return layer


def _gradient_reversal_layer():
    import keras
    from keras import ops

    class GradientReversal(keras.layers.Layer):
        """Identity forward; the gradient multiplied by ``-strength`` backward (Ganin et al. 2016).
        Written as ``(1 + s) * stop_gradient(x) - s * x``, which any Keras backend differentiates."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.strength = keras.Variable(0.0, trainable=False, name="strength")

        def call(self, x):
            s = ops.cast(self.strength, x.dtype)
            return (1.0 + s) * ops.stop_gradient(x) - s * x

    return GradientReversal(name="gradient_reversal")


def with_corpus_head(model, n_corpora: int):
    """The training model of corpus-adversarial training: ``model``'s outputs (a dict: logits and
    dimensions, :func:`build_model` with ``n_dims``) plus ``"corpus"`` logits ``(batch, n_corpora)``
    from its pooled features (the layer named ``pooled``) through a :func:`_gradient_reversal_layer`
    and a 64-unit hidden layer. Shares every layer with ``model``, so training it trains ``model``."""
    import keras
    from keras import layers

    pooled = model.get_layer("pooled").output
    reversal = _gradient_reversal_layer()
    hidden = layers.Dense(64, activation="relu", name="corpus_hidden")(reversal(pooled))
    corpus = layers.Dense(n_corpora, name="corpus")(hidden)
    outputs = {name: model.get_layer(name).output for name in ("scores", "dimensions")}
    return keras.Model(model.inputs, {**outputs, "corpus": corpus}, name="ser_conv1d_adversarial"), reversal


def adversary_strength(weight: float, progress: float) -> float:
    """Gradient reversal strength after ``progress`` (0..1) of training: ``weight (2 / (1 + exp(-10 p)) - 1)``
    (Ganin et al., JMLR 2016, eq. 14): near 0 while the features are still random, ``weight`` by the end."""
    return float(weight * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0))


def build_model(frames: int, coefficients: int, n_labels: int, width: int = 64, dropout: float = 0.3, seed: int = 0,
                instance_norm: bool = False, deltas: bool = False, attention_pooling: bool = False,
                n_dims: int = 0):
    """Conv1D stack: 4 blocks of Conv1D + BatchNorm + ReLU + MaxPool(2), global average and max
    pooling, dropout, Dense softmax. About 9.5M MACs and 90k parameters for ``(300, 40)``, width 64
    (with deltas and attention pooling about 17M MACs and 119k parameters, 146 KB as int8 TFLite).

    ``instance_norm``: per-window cepstral mean normalisation first (the mean over all ``frames``,
    zero padding included, as the daemon pads). ``deltas``: deltas and delta-deltas (``DELTA_KERNEL``)
    concatenated to the coefficients. ``attention_pooling``: a learned softmax over time pools a
    third summary vector.

    Clears Keras' global state first (``keras.backend.clear_session``), so the automatic layer names,
    which end up as tensor names in the TFLite file, do not depend on how many models this process
    built before: the same seed and data give the same ``.tflite`` bytes in a fit's parent process
    or in a fold worker.
    """
    import keras
    from keras import layers, ops

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((frames, coefficients), name="mfcc")
    x = inputs
    if instance_norm:
        x = _instance_cmn_layer()(x)
    if deltas:
        d1 = _delta_layer(coefficients, "delta")(x)
        d2 = _delta_layer(coefficients, "delta_delta")(d1)
        x = layers.Concatenate(name="with_deltas")([x, d1, d2])
    for filters, kernel in ((width, 5), (width, 5), (width * 3 // 2, 3), (width * 2, 3)):
        x = layers.Conv1D(filters, kernel, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling1D(2)(x)
    pooled = [layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)]
    if attention_pooling:
        steps = x.shape[1]
        logits = layers.Reshape((steps,))(layers.Dense(1)(x))
        weights = layers.Reshape((steps, 1))(layers.Softmax()(logits))
        pooled.append(layers.Lambda(lambda t: ops.sum(t[0] * t[1], axis=1), name="attention_pool")([x, weights]))
    x = layers.Concatenate(name="pooled")(pooled)
    x = layers.Dropout(dropout)(x)
    if not n_dims:
        outputs = layers.Dense(n_labels, activation="softmax", name="scores")(x)
        return keras.Model(inputs, outputs, name="ser_conv1d")
    # logits (the device applies the softmax and the calibration temperature) and a small tanh head
    # for arousal/valence in [-1, 1] on the same pooled features
    logits = layers.Dense(n_labels, name="scores")(x)
    dims = layers.Dense(n_dims, activation="tanh", name="dimensions")(layers.Dense(32, activation="relu")(x))
    return keras.Model(inputs, {"scores": logits, "dimensions": dims}, name="ser_conv1d")


def window_ending_at(x: np.ndarray, end: int, frames: int) -> np.ndarray:
    """The ``frames`` rows of normalised ``x`` ending (exclusively) at row ``end``, zero-padded at the
    start where ``end < frames`` (the daemon pads frames before the stream start with the training
    mean, which is zero after normalisation). Returns float32 ``(frames, x.shape[1])``."""
    out = np.zeros((frames, x.shape[1]), dtype=np.float32)
    start = end - frames
    if start >= 0:
        out[:] = x[start:end]
    else:
        out[-end:] = x[:end]
    return out


class WeightAverage:
    """Per-step exponential moving average of every model weight (BatchNorm statistics included,
    as timm's ``ModelEmaV2`` does), kept in float64 numpy arrays.

    ``swapped()`` is a context manager that puts the averaged weights in the model and restores
    the trained ones on exit; ``apply()`` puts them in for good.
    """

    def __init__(self, model, decay: float):
        self.model = model
        self.decay = decay
        self.updates = 0
        self.average = [np.asarray(w, dtype=np.float64) for w in model.get_weights()]

    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, weight in zip(self.average, self.model.get_weights(), strict=True):
            average *= decay
            average += (1 - decay) * np.asarray(weight, dtype=np.float64)

    def callback(self):
        import keras

        average = self

        class UpdateEveryStep(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                average.update()

        return UpdateEveryStep()

    def apply(self) -> None:
        self.model.set_weights([a.astype(np.float32) for a in self.average])

    @contextlib.contextmanager
    def swapped(self):
        trained = self.model.get_weights()
        self.apply()
        try:
            yield self.model
        finally:
            self.model.set_weights(trained)


def clip_scores(model, normalized: list[np.ndarray], frames: int, hop: int = 50) -> np.ndarray:
    """Mean softmax over windows ending every ``hop`` frames back from each clip's end (quick,
    for validation only; evaluation goes through ``edge.pipeline``). Returns ``(n_clips, n_labels)``."""
    windows, owner = [], []
    for i, x in enumerate(normalized):
        ends = range(x.shape[0], max(frames // 2, 1) - 1, -hop) if x.shape[0] > frames // 2 else [x.shape[0]]
        for end in ends:
            windows.append(window_ending_at(x, end, frames))
            owner.append(i)
    probs = model.predict(np.stack(windows), batch_size=256, verbose=0)
    if isinstance(probs, dict):  # logits + dimensions
        logits = probs["scores"]
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
    owner = np.asarray(owner)
    return np.stack([probs[owner == i].mean(axis=0) for i in range(len(normalized))])


def pack_label_targets(allowed: np.ndarray, support: np.ndarray, lam: np.ndarray | None = None,
                       perm: np.ndarray | None = None) -> np.ndarray:
    """The target rows :class:`PartialLabelLoss` reads: float32 ``(n, 1 + 4 K)``, each
    ``[lam, allowed_a, support_a, allowed_b, support_b]``.

    ``allowed``/``support``: float ``(n, K)`` 0/1 masks, per window the classes its label allows and the
    classes its corpus has (:func:`trainer.train.class_support`). With mixup, window ``i`` mixes itself
    (weight ``lam[i]``) with window ``perm[i]``: the loss of a mixed window is the mix of the two windows'
    losses, as mixup's soft targets give for cross-entropy (linear in the target). Without, ``lam`` is 1.
    """
    allowed = np.asarray(allowed, dtype=np.float32)
    support = np.asarray(support, dtype=np.float32)
    n = allowed.shape[0]
    if lam is None:
        lam, perm = np.ones(n, dtype=np.float32), np.arange(n)
    return np.concatenate([np.asarray(lam, dtype=np.float32)[:, None], allowed, support, allowed[perm],
                           support[perm]], axis=1)


def partial_label_loss_class():
    """:class:`PartialLabelLoss`, defined on first use (Keras is imported only when training)."""
    import keras
    from keras import ops

    class PartialLabelLoss(keras.losses.Loss):
        """Cross-entropy for labels that name a set of classes, within the classes a clip's corpus has.

        For one window with label-allowed classes ``A``, corpus classes ``S`` (``A`` within ``S``) and
        probabilities ``p``, the loss is ``-log(sum_A p / sum_S p)``: minus the log of the probability that
        the class is in ``A`` given that it is in ``S``, the softmax renormalised over the corpus's classes
        (Jin & Ghahramani 2002, "Learning with multiple labels", NIPS, for the sum over a candidate set).
        With one allowed class and ``S`` all classes it is ordinary cross-entropy, ``-log p_y``. Classes
        outside ``S`` get no gradient at all: a corpus without sad says nothing about sad.

        ``label_smoothing`` ``e`` follows Keras' ``CategoricalCrossentropy`` (Szegedy et al. 2016): the
        target mixes the label with a uniform distribution, here uniform over ``S`` (not over classes the
        corpus lacks): ``(1 - e) (-log(sum_A p / sum_S p)) + e mean_{c in S} (-log(p_c / sum_S p))``, which
        for a one-hot label and ``S`` all classes is exactly Keras' loss.

        ``y_true``: :func:`pack_label_targets` rows, float32 ``(batch, 1 + 4 K)``. ``y_pred``: ``(batch, K)``
        logits (``from_logits``) or probabilities (clipped to ``[1e-7, 1]`` before the log, as Keras does).
        Returns the loss per window, ``(batch,)``; Keras applies sample weights and the mean.
        """

        def __init__(self, n_labels: int, label_smoothing: float = 0.0, from_logits: bool = True,
                     name: str = "partial_label_crossentropy", **kwargs):
            super().__init__(name=name, **kwargs)
            self.n_labels = n_labels
            self.label_smoothing = float(label_smoothing)
            self.from_logits = from_logits

        def _one(self, scores, allowed, support):
            def masked_logsumexp(mask):
                return ops.logsumexp(ops.where(mask > 0, scores, ops.full_like(scores, -1e9)), axis=-1)

            in_support = masked_logsumexp(support)
            loss = in_support - masked_logsumexp(allowed)
            if self.label_smoothing:
                mean_in_support = ops.sum(scores * support, axis=-1) / ops.maximum(ops.sum(support, axis=-1), 1.0)
                loss = (1.0 - self.label_smoothing) * loss + self.label_smoothing * (in_support - mean_in_support)
            return loss

        def call(self, y_true, y_pred):
            k = self.n_labels
            y_true = ops.cast(y_true, y_pred.dtype)
            # logits, or log-probabilities: log-sum-exp over a set of them is log(sum p) over it either way
            scores = y_pred if self.from_logits else ops.log(ops.clip(y_pred, 1e-7, 1.0))
            lam = y_true[:, 0]
            first = self._one(scores, y_true[:, 1 : 1 + k], y_true[:, 1 + k : 1 + 2 * k])
            second = self._one(scores, y_true[:, 1 + 2 * k : 1 + 3 * k], y_true[:, 1 + 3 * k : 1 + 4 * k])
            return lam * first + (1.0 - lam) * second

        def get_config(self):
            return {**super().get_config(), "n_labels": self.n_labels, "label_smoothing": self.label_smoothing,
                    "from_logits": self.from_logits}

    return PartialLabelLoss


def pack_dimension_targets(dims: np.ndarray, lam: np.ndarray | None = None, perm: np.ndarray | None = None) -> np.ndarray:
    """Targets of :func:`masked_mse`: float32 ``(n, 2 D)``, each ``[values (NaN as 0), known (0/1)]``, from
    ``dims`` float ``(n, D)`` with NaN where a clip has no target (a partial label: non-neutral may be sad
    or angry, so it has no arousal). With mixup (``lam``, ``perm`` as :func:`pack_label_targets`) the values
    mix and a value is known only if both windows' are."""
    dims = np.asarray(dims, dtype=np.float32)
    known = np.isfinite(dims).astype(np.float32)
    values = np.nan_to_num(dims, nan=0.0)
    if lam is not None:
        lam = np.asarray(lam, dtype=np.float32)[:, None]
        values = lam * values + (1 - lam) * values[perm]
        known = known * known[perm]
    return np.concatenate([values, known], axis=1)


def masked_mse(y_true, y_pred):
    """Mean squared error over the known targets of each window (:func:`pack_dimension_targets` rows, float32
    ``(batch, 2 D)``, against ``y_pred`` ``(batch, D)``); 0 for a window with none. Returns ``(batch,)``."""
    from keras import ops

    d = ops.shape(y_pred)[-1]
    y_true = ops.cast(y_true, y_pred.dtype)
    values, known = y_true[:, :d], y_true[:, d:]
    return ops.sum(known * ops.square(values - y_pred), axis=-1) / ops.maximum(ops.sum(known, axis=-1), 1.0)
