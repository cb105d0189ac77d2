"""Streaming decisions on real speech: gating, windows, aggregation, determinism, latency."""

from __future__ import annotations

import numpy as np
import pytest
from paths import RAVDESS_48K, SHIPPED_MODEL, ravdess_mini_clips

from edge.audio.io import load_audio
from edge.dsp.features import FeatureParams
from edge.events import SCORE_DECIMALS
from edge.model import load_model
from edge.pipeline import FrameRing, Pipeline, classify_clip
from edge.postprocess import DecisionParams


@pytest.fixture(scope="module")
def model():
    return load_model(SHIPPED_MODEL)


@pytest.fixture(scope="module")
def speech():
    """Eight real RAVDESS clips (48 kHz originals, one per emotion) back to back: 30 s of speech and silence."""
    return np.concatenate([load_audio(p, 16000) for p in sorted(RAVDESS_48K.glob("*.wav"))])


def _run(pipeline: Pipeline, samples: np.ndarray, chunk: int):
    pipeline.reset()
    decisions = []
    for i in range(0, samples.size, chunk):
        decisions += pipeline.process(samples[i : i + chunk])
    return decisions + pipeline.flush()


def _summary(decisions):
    return [(d.start_frame, d.end_frame, d.windows, d.scores.tobytes()) for d in decisions]


def test_each_clip_is_one_utterance(model, speech):
    decisions = _run(Pipeline.for_model(model), speech, 1024)
    assert 8 <= len(decisions) <= 10  # one per clip; a clip may split at a long pause
    for d in decisions:
        assert 0 <= d.start_s < d.end_s <= speech.size / 16000
        assert d.scores.shape == (len(model.labels),)
        assert abs(float(d.scores.sum()) - 1) < 0.05
        assert d.windows >= 1


def test_decisions_identical_for_chunks_of_160_1024_4000(model, speech):
    pipeline = Pipeline.for_model(model)
    runs = [_summary(_run(pipeline, speech, chunk)) for chunk in (160, 1024, 4000)]
    assert runs[0] == runs[1] == runs[2]
    assert runs[0] == _summary(_run(pipeline, speech, 1024))  # and again: replay is deterministic


def test_silence_gives_no_decision(model):
    rng = np.random.default_rng(0)
    quiet_noise = (rng.standard_normal(16000 * 5) * 1e-4).astype(np.float32)  # -80 dBFS
    assert _run(Pipeline.for_model(model), quiet_noise, 1600) == []


def test_decision_arrives_within_one_hop_of_the_utterance_end(model, speech):
    pipeline = Pipeline.for_model(model)
    hop = model.manifest.features.hop_length
    hangover = pipeline.vad.hangover_frames
    pipeline.reset()
    decided = 0
    for i in range(0, speech.size, hop):
        for d in pipeline.process(speech[i : i + hop]):
            # the utterance ends at end_frame; the VAD knows it hangover frames later
            assert pipeline.frames_seen - (d.end_frame + hangover) <= 1
            decided += 1
    assert decided >= 8  # one per clip at least: the loop above must not pass by deciding nothing


def test_long_speech_is_cut_into_pieces(model):
    clips = [load_audio(p, 16000) for p in ravdess_mini_clips()[:8]]
    # remove the silences so the speech runs on for ~16 s
    speech = np.concatenate([c[int(0.9 * 16000) : int(2.4 * 16000)] for c in clips] * 2)
    decision = DecisionParams(max_utterance_s=4.0)
    decisions = _run(Pipeline.for_model(model, decision), speech, 4000)
    assert len(decisions) >= 3
    assert any(not d.final for d in decisions)
    assert all((d.end_frame - d.start_frame) * 0.01 <= 4.0 + 1e-9 for d in decisions)


def test_short_bursts_are_dropped(model):
    rng = np.random.default_rng(1)
    audio = np.zeros(16000 * 3, dtype=np.float32)
    audio[16000 : 16000 + 1600] = rng.uniform(-0.5, 0.5, 1600)  # a 0.1 s click
    pipeline = Pipeline.for_model(model, DecisionParams(min_utterance_s=0.3))
    assert _run(pipeline, audio, 1024) == []
    assert pipeline.short_utterances == 1


def test_confidence_threshold_marks_decisions_unpublished(model, speech):
    """Below the threshold: counted, not published; at or above it: published. Both sides are seen, so a
    pipeline that never (or always) publishes fails."""
    everything = _run(Pipeline.for_model(model, DecisionParams()), speech, 4000)
    assert len(everything) >= 2 and all(d.publish for d in everything)  # threshold 0: every utterance
    confidences = sorted(d.confidence for d in everything)
    threshold = (confidences[0] + confidences[-1]) / 2
    assert confidences[0] < threshold <= confidences[-1]
    decisions = _run(Pipeline.for_model(model, DecisionParams(confidence_threshold=threshold)), speech, 4000)
    assert [d.confidence for d in decisions] == [d.confidence for d in everything]  # same utterances
    assert [d.publish for d in decisions] == [d.confidence >= threshold for d in decisions]
    assert any(d.publish for d in decisions) and not all(d.publish for d in decisions)


def test_unsure_agrees_with_the_published_confidence_and_threshold(model, speech):
    """``unsure`` compares what is published: the payload's confidence (SCORE_DECIMALS) against the threshold
    as ``info`` prints it. A threshold a hair above a real utterance's confidence, equal once both are
    rounded (the issue: "confidence 0.484 flagged unsure" beside "unsure below 0.484"), is not unsure."""
    manifest = model.manifest
    confidence = _run(Pipeline.for_model(model), speech, 4000)[0].confidence
    shown = round(confidence, SCORE_DECIMALS)
    step = 0.5 * 10.0**-SCORE_DECIMALS
    threshold = shown + step / 50 if confidence <= shown else confidence + (shown + step - confidence) / 2
    assert confidence < threshold and round(threshold, SCORE_DECIMALS) == shown
    pipeline = Pipeline(model.score, manifest.features, manifest.input.frames, None, threshold, manifest.dimensions,
                        temperature=manifest.temperature)
    assert not _run(pipeline, speech, 4000)[0].unsure
    above = Pipeline(model.score, manifest.features, manifest.input.frames, None, shown + 2 * step,
                     manifest.dimensions, temperature=manifest.temperature)
    assert _run(above, speech, 4000)[0].unsure  # one printed step above: unsure


def test_classify_clip_uses_the_same_path(model):
    clip = load_audio(sorted(RAVDESS_48K.glob("*.wav"))[4], 16000)
    decisions = _run(Pipeline.for_model(model), clip, 4000)
    np.testing.assert_allclose(classify_clip(clip, 16000, model),
                               np.average([d.scores for d in decisions], axis=0,
                                          weights=[d.windows for d in decisions]), atol=1e-6)
    with pytest.raises(ValueError, match="expected samples at 16000 Hz"):
        classify_clip(clip, 48000, model)


def test_frame_ring_keeps_absolute_indices():
    pad = np.full(2, -1.0, np.float32)
    ring = FrameRing(capacity=10, coefficients=2, pad=pad)
    frames = np.arange(60, dtype=np.float32).reshape(30, 2)
    for i in range(0, 30, 3):
        ring.append(frames[i : i + 3])
    assert ring.end == 30
    np.testing.assert_array_equal(ring.window(30, 5), frames[25:30])
    with pytest.raises(IndexError):
        ring.window(30, 25)
    fresh = FrameRing(capacity=10, coefficients=2, pad=pad)
    fresh.append(frames[:4])
    window = fresh.window(4, 6)
    np.testing.assert_array_equal(window[:2], [pad, pad])
    np.testing.assert_array_equal(window[2:], frames[:4])


def test_decision_params_validation():
    with pytest.raises(ValueError, match="window_stride_s"):
        DecisionParams(window_stride_s=0)
    with pytest.raises(ValueError, match="min_utterance_s"):
        DecisionParams(min_utterance_s=5, max_utterance_s=4)
    assert FeatureParams().hop_s == 0.01
