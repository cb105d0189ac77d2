"""The compact Conv1D emotion classifier (Keras 3) and its training loop with augmentation.

Input: ``(frames, n_mfcc)`` MFCCs normalised with the training mean/std (zeros where the daemon
pads frames before the stream start). Output: softmax over the labels.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from tqdm import tqdm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainParams:
    """Training hyper-parameters; recorded in the manifest's ``training`` block."""

    epochs: int = 25
    """Length of the cosine schedule (the maximum with ``early_stopping``)."""
    batch_size: int = 32
    learning_rate: float = 2e-3
    patience: int = 15
    seed: int = 0
    crops_per_clip: int = 2
    noise_std: float = 0.1
    time_masks: int = 2
    time_mask_frames: int = 25
    coefficient_masks: int = 1
    coefficient_mask_width: int = 5
    mixup_alpha: float = 0.3
    dropout: float = 0.3
    width: int = 64
    instance_norm: bool = False
    """Subtract each window's mean over time from every coefficient, inside the model (per-window CMN)."""
    deltas: bool = True
    """Append deltas and delta-deltas computed inside the model (fixed depthwise Conv1D, N=2)."""
    attention_pooling: bool = True
    """Add a learned softmax-over-time weighted average to the global average and max pooling."""
    daemon_windows: float = 1.0
    """Fraction of training windows ending where the daemon's windows end (VAD), the rest random crops."""
    end_jitter_frames: int = 30
    """Uniform jitter (+-) of the daemon-placed window ends."""
    label_smoothing: float = 0.1
    early_stopping: bool = False
    """Stop after ``patience`` epochs without a better validation UA and keep the best epoch's weights
    (needs validation speakers); False: run all ``epochs`` of the cosine schedule and keep the last
    weights (validation UA, if any, is still recorded). On the RAVDESS 6-fold protocol a fixed 25
    epochs on all 20 training actors beat early stopping on 4 of them held out (README)."""
    ema_decay: float = 0.995
    """Exponential moving average of the weights, updated every step (0 = off). Validation, early
    stopping and the exported model all use the averaged weights (Polyak & Juditsky 1992; the
    warm-up ``min(decay, (1 + t) / (10 + t))`` of ``tf.train.ExponentialMovingAverage``)."""
    speed_factors: tuple[float, ...] = (0.9, 1.1)
    """Speed perturbation (Ko et al., Interspeech 2015): besides the original, each clip is also
    featurised resampled to these speeds, and every epoch draws one version per clip uniformly."""
    noise_variants: int = 0
    """Versions of each clip with additive pink noise (``trainer.featurize.Perturbation``), at the
    original speed and then each of ``speed_factors`` in turn; drawn like the speed versions."""
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    """SNR range of the noisy versions, dB, drawn uniformly per clip."""
    gain_db: float = 0.0
    """Random gain per training window, uniform in +-``gain_db`` dB: a shift of the log-energy
    coefficient 0, which is exactly what a gain does to it (the other MFCCs are unchanged by a gain)."""
    far_field_variants: int = 2
    """Versions of each training clip through a simulated room, noise and microphone
    (:mod:`trainer.acoustics`, ``split="train"``); drawn like the speed versions."""
    windows_per_epoch: int = 6000
    """0: every clip ``crops_per_clip`` times per epoch. Otherwise this many windows per epoch, clips
    drawn with the sampling weights :func:`trainer.train.balanced_weights` gives (balanced across
    corpora and classes)."""
    corpus_balance: str = "clips"
    """How :func:`trainer.train.balanced_weights` weighs the corpora: by the square root of their clips
    ("clips") or of their speakers ("speakers": a corpus of two voices is drawn less than one of ninety)."""
    dims_weight: float = 0.5
    """Weight of the arousal/valence regression loss (mean squared error) beside the label loss."""
    adapt_time_constant_s: float = 120.0
    """Adaptive normalisation time constant, seconds of speech (``edge.features.AdaptiveNormalizer``);
    0 = fixed training statistics."""
    adapt_prior_s: float = 10.0
    """Weight of the training statistics at start-up, seconds of speech."""
    adversary_weight: float = 0.0
    """Corpus-adversarial training (domain-adversarial training, Ganin et al., JMLR 2016): a corpus
    classifier on the pooled features behind a gradient reversal layer whose strength ramps from 0 to
    this value as ``w (2 / (1 + exp(-10 p)) - 1)``, ``p`` the fraction of training done (their eq. 14).
    0 = off. The corpus head exists only while training; the exported model does not have it."""


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


def random_windows(normalized: list[np.ndarray], frames: int, rng: np.random.Generator, min_end: int,
                   daemon_ends: list[np.ndarray] | None = None, daemon_fraction: float = 0.0,
                   jitter: int = 0) -> np.ndarray:
    """One window per clip ending at a uniformly random frame in ``[min(min_end, n), n]``; or, with
    probability ``daemon_fraction``, at one of the clip's ``daemon_ends`` (where the daemon's windows
    end, see ``trainer.train.daemon_window_ends``) moved by up to ``jitter`` frames either way."""
    out = np.empty((len(normalized), frames, normalized[0].shape[1]), dtype=np.float32)
    for i, x in enumerate(normalized):
        n = x.shape[0]
        if daemon_ends is not None and daemon_fraction > 0 and rng.random() < daemon_fraction:
            end = int(rng.choice(daemon_ends[i])) + int(rng.integers(-jitter, jitter + 1))
            end = min(max(end, 1), n)
        else:
            end = int(rng.integers(min(min_end, n), n + 1))
        out[i] = window_ending_at(x, max(end, 1), frames)
    return out


def augment(batch: np.ndarray, params: TrainParams, rng: np.random.Generator,
            energy_per_db: float | None = None) -> np.ndarray:
    """Gaussian noise in normalised feature space, a random gain (``params.gain_db``; needs
    ``energy_per_db``, the change of normalised coefficient 0 per dB, ``ln(10) / 10 / std[0]`` when it
    is the log energy) and SpecAugment-style masks (Park et al. 2019):
    ``time_masks`` runs of up to ``time_mask_frames`` frames and ``coefficient_masks`` runs of up to
    ``coefficient_mask_width`` coefficients set to 0 (the mean). In place; returns ``batch``.
    The gain is applied before the masks, so masked cells stay at the mean."""
    n, frames, coefficients = batch.shape
    batch += rng.normal(0.0, params.noise_std, batch.shape).astype(np.float32)
    if params.gain_db > 0 and energy_per_db:
        batch[:, :, 0] += (rng.uniform(-params.gain_db, params.gain_db, n) * energy_per_db)[:, None].astype(np.float32)
    for i in range(n):
        for _ in range(params.time_masks):
            width = int(rng.integers(0, params.time_mask_frames + 1))
            start = int(rng.integers(0, frames - width + 1))
            batch[i, start : start + width] = 0.0
        for _ in range(params.coefficient_masks):
            width = int(rng.integers(0, params.coefficient_mask_width + 1))
            start = int(rng.integers(0, coefficients - width + 1))
            batch[i, :, start : start + width] = 0.0
    return batch


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


def class_weights(y: np.ndarray, n_labels: int) -> dict[int, float]:
    """``n / (n_labels * count)`` per class (sklearn's "balanced")."""
    counts = np.bincount(y, minlength=n_labels).astype(np.float64)
    return {k: float(len(y) / (n_labels * c)) if c else 0.0 for k, c in enumerate(counts)}


def train(
    train_x: list[np.ndarray],
    train_y: np.ndarray,
    n_labels: int,
    frames: int,
    params: TrainParams,
    val_x: list[np.ndarray] | None = None,
    val_y: np.ndarray | None = None,
    progress: bool = True,
    desc: str = "train",
    daemon_ends: list[np.ndarray] | None = None,
    variants: list[list[tuple[np.ndarray, np.ndarray | None]]] | None = None,
    energy_per_db: float | None = None,
    train_dims: np.ndarray | None = None,
    clip_weights: np.ndarray | None = None,
    train_corpora: np.ndarray | None = None,
):
    """Train on normalised clips (``train_x``: list of float32 ``(n_frames, n_mfcc)``, ``train_y``: int
    label indices). With ``params.early_stopping`` and validation clips, stops after ``patience``
    epochs without a better validation UA and restores the best epoch's weights; otherwise runs all
    ``params.epochs`` epochs (recording validation UA if there are validation clips). ``daemon_ends``: per
    training clip, the frames where the daemon's analysis windows end (for ``params.daemon_windows``).
    ``variants``: per training clip, other versions of it (speed-perturbed, noisy) as ``(normalised features,
    daemon ends)``; each epoch draws the original or one of them uniformly per clip.
    ``energy_per_db``: see :func:`augment` (for ``params.gain_db``).
    ``train_dims``: float32 ``(n_clips, n_dims)`` arousal/valence targets in [-1, 1]: the model gets a
    second head and outputs logits (see :func:`build_model`). ``clip_weights``: sampling probability
    per clip (sums to 1) for ``params.windows_per_epoch`` draws per epoch (then no class weights).
    ``train_corpora``: int corpus index per clip, for ``params.adversary_weight`` (needs ``train_dims``;
    ignored with fewer than two corpora). With ``params.ema_decay`` the model returned carries the
    moving-average weights. The returned model never has the corpus head.
    Returns ``(model, best_epoch, history)``; ``best_epoch`` is 1-based.
    """
    import keras

    n_dims = 0 if train_dims is None else train_dims.shape[1]
    model = build_model(frames, train_x[0].shape[1], n_labels, params.width, params.dropout, params.seed,
                        params.instance_norm, params.deltas, params.attention_pooling, n_dims)
    n_corpora = int(train_corpora.max()) + 1 if train_corpora is not None and len(train_corpora) else 0
    adversarial = params.adversary_weight > 0 and n_corpora >= 2
    if params.adversary_weight > 0 and not n_dims:
        raise ValueError("corpus-adversarial training needs the arousal/valence head (train_dims)")
    trained, reversal = with_corpus_head(model, n_corpora) if adversarial else (model, None)
    sampled = clip_weights is not None and params.windows_per_epoch > 0
    per_epoch = params.windows_per_epoch if sampled else len(train_x) * params.crops_per_clip
    steps = math.ceil(per_epoch / params.batch_size) * params.epochs
    schedule = keras.optimizers.schedules.CosineDecay(params.learning_rate, decay_steps=max(steps, 1), alpha=0.05)
    if n_dims:
        loss = {"scores": keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=params.label_smoothing),
                "dimensions": keras.losses.MeanSquaredError()}
        loss_weights = {"scores": 1.0, "dimensions": params.dims_weight}
        if adversarial:
            loss["corpus"] = keras.losses.CategoricalCrossentropy(from_logits=True)
            loss_weights["corpus"] = 1.0
        trained.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, loss_weights=loss_weights)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)
    rng = np.random.default_rng(params.seed)
    weights = class_weights(train_y, n_labels) if not sampled else {k: 1.0 for k in range(n_labels)}
    sample_weight_of_class = np.array([weights[k] for k in range(n_labels)], dtype=np.float32)
    min_end = frames // 2
    average = WeightAverage(trained, params.ema_decay) if params.ema_decay > 0 else None
    callbacks = [average.callback()] if average else []
    best = (-1.0, 0, None)
    history = []
    bar = tqdm(range(1, params.epochs + 1), desc=desc, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        if reversal is not None:
            reversal.strength.assign(adversary_strength(params.adversary_weight, (epoch - 1) / max(params.epochs - 1, 1)))
        xs, idx = [], []
        rounds = [rng.choice(len(train_x), size=params.windows_per_epoch, p=clip_weights)] if sampled else [
            np.arange(len(train_x))] * params.crops_per_clip
        for chosen in rounds:
            sub_x = [train_x[i] for i in chosen]
            sub_ends = [daemon_ends[i] for i in chosen] if daemon_ends is not None else None
            clips_x, clips_ends = sub_x, sub_ends
            if variants:
                clips_x, clips_ends = _draw_versions(sub_x, sub_ends, [variants[i] for i in chosen], rng)
            xs.append(random_windows(clips_x, frames, rng, min_end, clips_ends, params.daemon_windows,
                                     params.end_jitter_frames))
            idx.append(chosen)
        x = augment(np.concatenate(xs), params, rng, energy_per_db)
        chosen = np.concatenate(idx)
        y_index = train_y[chosen]
        y = np.eye(n_labels, dtype=np.float32)[y_index]
        d = train_dims[chosen].astype(np.float32) if n_dims else None
        c = np.eye(n_corpora, dtype=np.float32)[train_corpora[chosen]] if adversarial else None
        sw = sample_weight_of_class[y_index]
        if params.mixup_alpha > 0:
            lam = rng.beta(params.mixup_alpha, params.mixup_alpha, size=len(x)).astype(np.float32)
            perm = rng.permutation(len(x))
            x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[perm]
            y = lam[:, None] * y + (1 - lam[:, None]) * y[perm]
            sw = lam * sw + (1 - lam) * sw[perm]
            if n_dims:
                d = lam[:, None] * d + (1 - lam[:, None]) * d[perm]
            if adversarial:
                c = lam[:, None] * c + (1 - lam[:, None]) * c[perm]
        targets = {"scores": y, "dimensions": d} if n_dims else y
        if adversarial:
            targets["corpus"] = c
        fit = trained.fit(x, targets, sample_weight=sw, batch_size=params.batch_size, epochs=1, shuffle=True, verbose=0,
                        callbacks=callbacks)
        record = {"epoch": epoch, "loss": float(fit.history["loss"][0])}
        if val_x:
            with average.swapped() if average else contextlib.nullcontext():
                pred = clip_scores(model, val_x, frames).argmax(axis=1)
                weights = model.get_weights() if params.early_stopping else None  # only early stopping restores them
            record["val_ua"] = float(balanced_accuracy_score(val_y, pred))
            if record["val_ua"] > best[0]:
                best = (record["val_ua"], epoch, weights)
            bar.set_postfix(loss=f"{record['loss']:.3f}", val_ua=f"{record['val_ua']:.3f}", best=best[1])
            if params.early_stopping and epoch - best[1] >= params.patience:
                history.append(record)
                break
        else:
            bar.set_postfix(loss=f"{record['loss']:.3f}")
        history.append(record)
    bar.close()
    if val_x and params.early_stopping and best[2] is not None:
        model.set_weights(best[2])
        return model, best[1], history
    if average:
        average.apply()
    return model, len(history), history


def _draw_versions(train_x, daemon_ends, variants, rng: np.random.Generator):
    """One version per clip: the original or one of its ``variants``, uniformly."""
    xs, ends = [], []
    for i, x in enumerate(train_x):
        k = int(rng.integers(0, len(variants[i]) + 1))
        if k == 0:
            xs.append(x)
            ends.append(daemon_ends[i] if daemon_ends is not None else None)
        else:
            xs.append(variants[i][k - 1][0])
            ends.append(variants[i][k - 1][1])
    return xs, (ends if daemon_ends is not None else None)
