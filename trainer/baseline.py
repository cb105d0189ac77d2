"""The widely copied tutorial baseline, scored on our speaker-independent folds.

Many "speech emotion recognition with librosa" tutorials (DataFlair's, and the Kaggle notebooks
copied from it) average MFCC(40), chroma(12) and mel(128) features over a whole clip (180 numbers)
and fit ``MLPClassifier(alpha=0.01, batch_size=256, epsilon=1e-08, hidden_layer_sizes=(300,),
learning_rate="adaptive", max_iter=500)``, usually on a random split of the clips, so the same
actors are in training and test. Here the same features and classifier are scored on the run's
speaker-held-out folds. The features are computed with numpy/scipy, not librosa, following
librosa's conventions: a centred (reflect-padded) STFT with a Hann window, ``n_fft`` 2048, hop 512;
the power spectrogram through a 128-band mel filterbank (``edge.dsp.features.mel_filterbank``: the
python_speech_features mel scale, not librosa's Slaney one); MFCC = the orthonormal DCT-II of the
mel power in dB (``10 log10``, floored at 80 dB below the peak, as ``librosa.power_to_db``);
chroma = the power of each bin summed into its pitch class (12-TET, A4 = 440 Hz), each frame
divided by its maximum (``librosa.feature.chroma_stft``'s ``norm=inf``, with hard bin-to-class
assignment instead of its Gaussian-weighted filters). The features are standardised with the
training speakers' mean and deviation (the tutorials skip this; without it the MLP's fit depends
on the mel power's scale).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import scipy.fft
from tqdm import tqdm

from edge.dsp.features import mel_filterbank
from trainer.corpora import Clip
from trainer.folds import Fold
from trainer.metrics import summarize

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
N_FFT = 2048
HOP = 512
N_MELS = 128
N_MFCC = 40
N_CHROMA = 12
TOP_DB = 80.0
FEATURES_VERSION = "mlp-features-1"
MLP_PARAMS = {"hidden_layer_sizes": (300,), "alpha": 0.01, "batch_size": 256, "epsilon": 1e-08,
              "learning_rate": "adaptive", "max_iter": 500}


def power_spectrogram(samples: np.ndarray) -> np.ndarray:
    """``|STFT|^2`` of float32 ``(n,)`` samples: centred, reflect-padded, Hann window ``N_FFT``, hop
    ``HOP``. Returns float64 ``(N_FFT // 2 + 1, n_frames)``."""
    padded = np.pad(samples.astype(np.float64), N_FFT // 2, mode="reflect" if samples.size > N_FFT // 2 else "constant")
    if padded.size < N_FFT:
        padded = np.pad(padded, (0, N_FFT - padded.size))
    n_frames = 1 + (padded.size - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    window = np.hanning(N_FFT + 1)[:-1]
    return (np.abs(scipy.fft.rfft(frames * window, axis=1)) ** 2).T


def chroma_matrix(sample_rate_hz: int = SAMPLE_RATE_HZ, n_fft: int = N_FFT) -> np.ndarray:
    """``(12, n_fft // 2 + 1)`` 0/1 matrix: FFT bin -> pitch class (0 = C) of its nearest 12-TET
    semitone (MIDI ``69 + 12 log2(f / 440)``); the DC bin belongs to none."""
    freqs = np.arange(n_fft // 2 + 1) * sample_rate_hz / n_fft
    out = np.zeros((N_CHROMA, freqs.size))
    midi = 69 + 12 * np.log2(freqs[1:] / 440.0)
    out[np.round(midi).astype(int) % N_CHROMA, np.arange(1, freqs.size)] = 1.0
    return out


def clip_features(samples: np.ndarray) -> np.ndarray:
    """The 180 clip-mean features ``[MFCC(40), chroma(12), mel(128)]`` of 16 kHz float32 samples; float32."""
    power = power_spectrogram(samples)
    mel = np.asarray(mel_filterbank(N_MELS, N_FFT, SAMPLE_RATE_HZ, 0.0, SAMPLE_RATE_HZ / 2), dtype=np.float64).T @ power
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - TOP_DB)
    mfcc = scipy.fft.dct(db, type=2, norm="ortho", axis=0)[:N_MFCC]
    chroma = chroma_matrix() @ power
    chroma /= np.maximum(chroma.max(axis=0, keepdims=True), 1e-10)
    return np.concatenate([mfcc.mean(axis=1), chroma.mean(axis=1), mel.mean(axis=1)]).astype(np.float32)


def features_of(clips: list[Clip], cache_dir: Path | None = None, progress: bool = True) -> np.ndarray:
    """``(n_clips, 180)`` float32 features of every clip (audio through ``edge.audio.load_audio``),
    cached per clip as ``.npy`` under ``cache_dir / "mlp"`` keyed by path, size and mtime."""
    from edge.audio.io import load_audio
    from trainer.featurize import quiet_clipping_warnings

    out = np.empty((len(clips), N_MFCC + N_CHROMA + N_MELS), dtype=np.float32)
    for i, clip in enumerate(tqdm(clips, desc="MLP features", unit="clip", disable=not progress, leave=False)):
        target = None
        if cache_dir is not None:
            stat = clip.path.stat()
            key = f"{clip.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{FEATURES_VERSION}"
            target = Path(cache_dir) / "mlp" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npy"
            if target.is_file():
                out[i] = np.load(target)
                continue
        with quiet_clipping_warnings():  # fit reports clipping once per corpus (trainer.featurize.report_clipping)
            out[i] = clip_features(load_audio(clip.path, SAMPLE_RATE_HZ))
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")  # a reader never sees half a file
            np.save(tmp, out[i])
            tmp.replace(target)
    return out


def mlp_on_folds(clips: list[Clip], labels: tuple[str, ...], folds: list[Fold], seed: int = 0,
                 cache_dir: Path | None = None, progress: bool = True) -> dict:
    """Fit the tutorial MLP on each fold's training + validation speakers, score its test speakers.

    ``clips``: labels already in ``labels`` (the run's scheme). Returns the pooled
    :func:`trainer.metrics.summarize` dict plus ``folds`` (``fold``, ``ua``, ``wa``, ``clips``),
    ``mean_fold_ua`` and ``params``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = features_of(clips, cache_dir, progress)
    index = {label: k for k, label in enumerate(labels)}
    y = np.array([index[c.label] for c in clips])
    speakers = np.array([c.speaker for c in clips])
    rows, y_true, y_pred = [], [], []
    for fold in tqdm(folds, desc="MLP folds", unit="fold", disable=not progress, leave=False):
        test = np.isin(speakers, fold.test)
        model = make_pipeline(StandardScaler(), MLPClassifier(random_state=seed, **MLP_PARAMS))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x[~test], y[~test])
        pred = model.predict(x[test])
        summary = summarize(y[test], pred, labels)
        rows.append({"fold": fold.index, "ua": summary["ua"], "wa": summary["wa"], "clips": int(test.sum())})
        logger.info("MLP baseline fold %d: UA %.3f WA %.3f", fold.index, summary["ua"], summary["wa"])
        y_true.append(y[test])
        y_pred.append(pred)
    pooled = summarize(np.concatenate(y_true), np.concatenate(y_pred), labels)
    pooled.update({"folds": rows, "mean_fold_ua": float(np.mean([r["ua"] for r in rows])),
                   "params": {**MLP_PARAMS, "hidden_layer_sizes": list(MLP_PARAMS["hidden_layer_sizes"]),
                              "features": "mean MFCC(40) + chroma(12) + mel(128), standardised"}})
    return pooled
