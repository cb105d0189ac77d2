"""The front end: samples -> MFCC frames + the energy the VAD gates on. One place, two callers.

The daemon's :class:`edge.pipeline.Pipeline` feeds a stream through :class:`FrontEnd` block by
block; the trainer (``trainer.featurize.compute``) passes a whole clip to :func:`compute`. Both
pair the same two things, frame by frame:

* MFCCs of the pre-emphasised signal (:mod:`edge.dsp.features`: :class:`StreamingMFCC` /
  :func:`mfcc_with_energy`; each frame's DC offset removed first when the manifest's
  ``remove_dc_offset`` says so), the model's input;
* the gating log energy of the DC-blocked signal (:class:`edge.dsp.vad.GatingEnergy`), the VAD's
  input: not the MFCC's own energy, so a DC offset in a cheap microphone does not look like speech.

Both are chunk-invariant: any chunking of a stream gives the frames of the whole signal, so a clip
featurised for training and the same clip replayed on the device see identical numbers
(``tests/test_replay_matches_trainer.py``).
"""

from __future__ import annotations

import numpy as np

from edge.dsp.features import FeatureParams, StreamingMFCC, mfcc_with_energy
from edge.dsp.vad import GatingEnergy


class FrontEnd:
    """The streaming front end: :meth:`process` takes 1-D float samples in [-1, 1] at
    ``params.sample_rate_hz`` and returns ``(mfcc, log_energy)``, float32 ``(k, n_features)`` and
    float64 ``(k,)``, for the ``k`` frames this chunk completed (possibly 0)."""

    def __init__(self, params: FeatureParams) -> None:
        self.params = params
        self.mfcc = StreamingMFCC(params)
        self.gating = GatingEnergy(params)

    def reset(self) -> None:
        """Forget all state: the next sample is sample 0 of a new stream."""
        self.mfcc.reset()
        self.gating.reset()

    def process(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coefficients, _ = self.mfcc.process(chunk)
        return coefficients, self.gating.process(chunk)


def compute(samples: np.ndarray, params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """The front end over a whole signal: float32 ``(n_frames, n_features)`` MFCCs and float32
    ``(n_frames,)`` gating log energies, the frames :class:`FrontEnd` gives for the same samples
    fed in any chunks.

    :raises ValueError: if ``samples`` is not 1-D.
    """
    mfcc, _ = mfcc_with_energy(samples, params)
    log_energy = GatingEnergy(params).process(samples)
    return mfcc.astype(np.float32), log_energy.astype(np.float32)
