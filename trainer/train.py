"""Training one model: the epoch loop (windows drawn per epoch, augmentation, mixup, the moving average
of the weights, early stopping), clip sampling weights, and :func:`fit_and_convert`, which normalises
the clips as the device would, trains and converts to int8 TFLite.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from tqdm import tqdm

from edge.dsp.features import FeatureParams
from trainer.augment import augment, draw_versions, random_windows
from trainer.config import TrainParams
from trainer.export import REPRESENTATIVE_WINDOWS, to_int8_tflite
from trainer.featurize import ClipFeatures
from trainer.net import (
    WeightAverage,
    adversary_strength,
    build_model,
    clip_scores,
    masked_mse,
    pack_dimension_targets,
    pack_label_targets,
    partial_label_loss_class,
    with_corpus_head,
)
from trainer.streams import daemon_window_ends, stream_normalized, with_statistics

logger = logging.getLogger(__name__)


def class_weights(y: np.ndarray, n_labels: int) -> dict[int, float]:
    """``n / (n_labels * count)`` per class (sklearn's "balanced"). ``y``: int class per clip ``(n,)``, or
    0/1 allowed classes per clip ``(n, n_labels)`` (:func:`allowed_masks`), where a clip whose label allows
    several classes counts ``1 / |allowed|`` towards each."""
    counts = allowed_fractions(y, n_labels).sum(axis=0)
    return {k: float(len(y) / (n_labels * c)) if c else 0.0 for k, c in enumerate(counts)}


def allowed_fractions(y: np.ndarray, n_labels: int) -> np.ndarray:
    """Per clip, float64 ``(n, n_labels)``: ``1 / |allowed|`` on each class its label allows, 0 elsewhere
    (one-hot for an int class). ``y`` as :func:`class_weights`."""
    y = np.asarray(y)
    masks = np.eye(n_labels)[y] if y.ndim == 1 else y.astype(np.float64)
    return masks / masks.sum(axis=1, keepdims=True)


def allowed_masks(clips: list[ClipFeatures], labels: tuple[str, ...], scheme: str = "native") -> np.ndarray:
    """float32 ``(n, len(labels))``: 1 on the classes each clip's label allows (:func:`trainer.labels.allowed_labels`:
    one for an ordinary clip, several for a partial label). Raises ValueError for a clip with none."""
    from trainer.labels import allowed_labels

    out = np.zeros((len(clips), len(labels)), dtype=np.float32)
    for i, c in enumerate(clips):
        allowed = allowed_labels(c.clip, scheme, labels)
        if allowed is None:
            raise ValueError(f"{c.clip.path}: label {c.clip.label!r} allows none of {', '.join(labels)}")
        out[i, [labels.index(label) for label in allowed]] = 1.0
    return out


MISSING_CLASSES = ("restrict", "ignore")
"""How training treats a class a corpus has no clips of (EmoSpeech has no sad): see :func:`class_support`."""


def class_support(clips: list[ClipFeatures], allowed: np.ndarray, missing_classes: str = "restrict") -> np.ndarray:
    """float32 ``(n, K)``: per clip, 1 on the classes its corpus has among ``clips`` (the union of the
    corpus's clips' ``allowed`` masks, a partial label's classes included), with ``missing_classes``
    ``"restrict"``; all ones with ``"ignore"``. :class:`trainer.net.PartialLabelLoss` renormalises each clip's
    softmax over its support, so a corpus never teaches that a class it lacks is unlikely (restrict), or
    its clips push every class they are not down, missing ones too (ignore: plain softmax cross-entropy).
    Raises ValueError for another ``missing_classes``."""
    if missing_classes not in MISSING_CLASSES:
        raise ValueError(f"missing_classes: expected one of {', '.join(MISSING_CLASSES)}, got {missing_classes!r}")
    if missing_classes == "ignore":
        return np.ones_like(allowed, dtype=np.float32)
    corpora = np.array([c.clip.corpus for c in clips])
    out = np.zeros_like(allowed, dtype=np.float32)
    for corpus in set(corpora.tolist()):
        mine = corpora == corpus
        out[mine] = allowed[mine].max(axis=0)
    return out


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
    train_support: np.ndarray | None = None,
):
    """Train on normalised clips (``train_x``: list of float32 ``(n_frames, n_mfcc)``, ``train_y``: int
    label indices ``(n,)``, or 0/1 allowed classes ``(n, n_labels)`` for labels that allow several,
    :func:`allowed_masks`). The label loss is :class:`trainer.net.PartialLabelLoss` (cross-entropy for
    one-hot labels); ``train_support``: float ``(n, n_labels)`` 0/1, the classes each clip's corpus has
    (:func:`class_support`; default all), over which its softmax is renormalised. With
    ``params.early_stopping`` and validation clips, stops after ``patience``
    epochs without a better validation UA and restores the best epoch's weights; otherwise runs all
    ``params.epochs`` epochs (recording validation UA if there are validation clips). ``daemon_ends``: per
    training clip, the frames where the daemon's analysis windows end (for ``params.daemon_windows``).
    ``variants``: per training clip, other versions of it (speed-perturbed, noisy) as ``(normalised features,
    daemon ends)``; each epoch draws the original or one of them uniformly per clip.
    ``energy_per_db``: see :func:`augment` (for ``params.gain_db``).
    ``train_dims``: float32 ``(n_clips, n_dims)`` arousal/valence targets in [-1, 1], NaN where a clip has
    none (:func:`trainer.net.masked_mse`): the model gets a second head and outputs logits (see :func:`build_model`). ``clip_weights``: sampling probability
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
    label_loss = partial_label_loss_class()(n_labels, params.label_smoothing, from_logits=bool(n_dims))
    if n_dims:
        loss = {"scores": label_loss, "dimensions": masked_mse}
        loss_weights = {"scores": 1.0, "dimensions": params.dims_weight}
        if adversarial:
            loss["corpus"] = keras.losses.CategoricalCrossentropy(from_logits=True)
            loss_weights["corpus"] = 1.0
        trained.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, loss_weights=loss_weights)
    else:
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=label_loss)
    rng = np.random.default_rng(params.seed)
    train_y = np.asarray(train_y)
    allowed = np.eye(n_labels, dtype=np.float32)[train_y] if train_y.ndim == 1 else train_y.astype(np.float32)
    support = np.ones_like(allowed) if train_support is None else np.asarray(train_support, dtype=np.float32)
    # class weights (without sampling): a clip weighs the mean of its allowed classes' weights
    weights = class_weights(allowed, n_labels) if not sampled else {k: 1.0 for k in range(n_labels)}
    clip_class_weight = (allowed_fractions(allowed, n_labels) @ np.array([weights[k] for k in range(n_labels)])
                         ).astype(np.float32)
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
                clips_x, clips_ends = draw_versions(sub_x, sub_ends, [variants[i] for i in chosen], rng)
            xs.append(random_windows(clips_x, frames, rng, min_end, clips_ends, params.daemon_windows,
                                     params.end_jitter_frames))
            idx.append(chosen)
        x = augment(np.concatenate(xs), params, rng, energy_per_db)
        chosen = np.concatenate(idx)
        c = np.eye(n_corpora, dtype=np.float32)[train_corpora[chosen]] if adversarial else None
        sw = clip_class_weight[chosen]
        lam = perm = None
        if params.mixup_alpha > 0:
            lam = rng.beta(params.mixup_alpha, params.mixup_alpha, size=len(x)).astype(np.float32)
            perm = rng.permutation(len(x))
            x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[perm]
            sw = lam * sw + (1 - lam) * sw[perm]
            if adversarial:
                c = lam[:, None] * c + (1 - lam[:, None]) * c[perm]
        # the mixed windows' loss mixes the two windows' losses (linear in mixup's soft targets)
        y = pack_label_targets(allowed[chosen], support[chosen], lam, perm)
        d = pack_dimension_targets(train_dims[chosen], lam, perm) if n_dims else None
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


def balanced_weights(clips: list[ClipFeatures], labels: tuple[str, ...], by: str = "clips") -> np.ndarray:
    """Sampling probability per clip: corpora weighted by the square root of their size (a small
    corpus is not drowned, a large one not over-repeated), counted in clips (``by="clips"``) or in
    speakers (``by="speakers"``), classes equal within each corpus, clips equal within a (corpus,
    class). float64 ``(n,)``, sums to 1. Raises ValueError for another ``by``.

    A corpus's share is split over the labels it *has*: a class it lacks (EmoSpeech's sad) is not
    counted, so it neither takes a share nor lowers the corpus's (3 classes, a third each). A partial
    label (CORAA-SER's non-neutral, :data:`trainer.labels.PARTIAL_LABELS`) counts as one label of its
    corpus, like a class: CORAA-SER's windows are half neutral, half non-neutral, the balance of the two
    things its annotators could say (counting non-neutral as the three classes it may be would make
    three in four of its windows non-neutral, pushing natural speech further from neutral, the
    weakness this corpus is there to mend)."""
    if by not in ("clips", "speakers"):
        raise ValueError(f"balanced_weights: by must be 'clips' or 'speakers', got {by!r}")
    keys = [(c.clip.corpus, c.clip.label) for c in clips]
    per_key = Counter(keys)
    if by == "clips":
        size = Counter(k[0] for k in keys)
    else:
        size = Counter(corpus for corpus, _ in {(c.clip.corpus, c.clip.speaker) for c in clips})
    classes = {corpus: len({k[1] for k in per_key if k[0] == corpus}) for corpus in size}
    weights = np.array([math.sqrt(size[k[0]]) / (classes[k[0]] * per_key[k]) for k in keys])
    return weights / weights.sum()


def representative_windows(normalized: list[np.ndarray], frames: int, seed: int) -> np.ndarray:
    """Up to :data:`REPRESENTATIVE_WINDOWS` training windows, cropped as in training, for int8 calibration."""
    rng = np.random.default_rng(seed + 1)
    chosen = rng.permutation(len(normalized))[:REPRESENTATIVE_WINDOWS]
    return random_windows([normalized[i] for i in chosen], frames, rng, frames // 2)


def fit_and_convert(
    train_clips: list[ClipFeatures],
    val_clips: list[ClipFeatures],
    labels: tuple[str, ...],
    params: FeatureParams,
    frames: int,
    train_params: TrainParams,
    progress: bool,
    desc: str,
    history: list[dict] | None = None,
    dims: dict[str, tuple[float, float]] | None = None,
    scheme: str = "native",
):
    """Train on ``train_clips`` (statistics from train + validation clips) and convert to int8.
    ``history``: if given, training's per-epoch records are appended to it. ``dims``: arousal/valence
    target per clip path (``str(path)``, NaN where a clip has none); with it the model gets its second
    head and outputs logits. ``scheme``: the label scheme of ``labels``, for what a partial label allows
    (:func:`allowed_masks`); each clip's softmax is renormalised over its corpus's classes as
    ``train_params.missing_classes`` says (:func:`class_support`). Validation UA counts the clips with
    one label only. Features are normalised as the device normalises them (:func:`stream_normalized`).

    Returns ``(keras_model, feature_params_with_stats, best_epoch, flatbuffer)``.
    """
    tp = train_params
    index = {label: k for k, label in enumerate(labels)}
    fitted = with_statistics(params, train_clips + val_clips, frames, tp.adapt_time_constant_s, tp.adapt_prior_s)
    train_x = stream_normalized([(c.mfcc, c.log_energy) for c in train_clips], train_clips, fitted, frames, tp.seed)
    train_y = allowed_masks(train_clips, labels, scheme)
    support = class_support(train_clips, train_y, tp.missing_classes)
    # validation clips are normalised in their order (the adaptation carries), then those with one label scored
    val_x = stream_normalized([(c.mfcc, c.log_energy) for c in val_clips], val_clips, fitted, frames, tp.seed) or None
    val_y = None
    if val_x:
        single = [i for i, c in enumerate(val_clips) if c.clip.label in index]
        val_x = [val_x[i] for i in single] or None
        val_y = np.array([index[val_clips[i].clip.label] for i in single]) if single else None
    use_ends = tp.daemon_windows > 0
    ends = [daemon_window_ends(c, params, frames) for c in train_clips] if use_ends else None
    variants = None
    n_variants = min(len(c.variants) for c in train_clips)
    if n_variants:
        per_version = [stream_normalized([c.variants[v] for c in train_clips], train_clips, fitted, frames, tp.seed + 1 + v)
                       for v in range(n_variants)]
        variants = [[(per_version[v][i],
                      daemon_window_ends(ClipFeatures(c.clip, *c.variants[v]), params, frames) if use_ends else None)
                     for v in range(n_variants)] for i, c in enumerate(train_clips)]
    # a gain g shifts the log energy (coefficient 0 with append_energy) by 2 ln g = ln(10) / 10 per dB
    energy_per_db = math.log(10) / 10 / fitted.std[0] if params.append_energy else None
    train_dims = None
    if dims is not None:
        train_dims = np.array([dims.get(str(c.clip.path), (0.0, 0.0)) for c in train_clips], dtype=np.float32)
    clip_weights = balanced_weights(train_clips, labels, tp.corpus_balance) if tp.windows_per_epoch else None
    corpus_index = {corpus: k for k, corpus in enumerate(sorted({c.clip.corpus for c in train_clips}))}
    train_corpora = np.array([corpus_index[c.clip.corpus] for c in train_clips])
    model, best_epoch, records = train(train_x, train_y, len(labels), frames, tp, val_x, val_y, progress, desc,
                                       ends, variants, energy_per_db, train_dims, clip_weights, train_corpora,
                                       support)
    if history is not None:
        history.extend(records)
    flatbuffer = to_int8_tflite(model, representative_windows(train_x + (val_x or []), frames, tp.seed))
    return model, fitted, best_epoch, flatbuffer
