"""The stats payload: documented fields only, processing time per second of audio over a rolling window."""

from __future__ import annotations

import json

import pytest

from edge.service.stats import STATS_FIELDS, Stats, to_json


def _payload(stats: Stats) -> dict:
    return stats.payload(events=3, utterances=4, short_utterances=1, dropped_events=0, refused_events=0, pending=2,
                         interpreter="ai-edge-litert 1.0", model="m@0123456789ab", version="0.1.0")


def test_payload_has_exactly_the_documented_fields_in_order():
    stats = Stats()
    payload = _payload(stats)
    assert tuple(payload) == STATS_FIELDS
    assert payload["processing_ms_per_s_mean"] is None and payload["processing_ms_per_s_p95"] is None
    assert list(json.loads(to_json(payload))) == list(STATS_FIELDS)


def test_processing_time_is_ms_of_cpu_per_s_of_audio_over_the_window():
    stats = Stats(window_blocks=20)
    for _ in range(100):  # pushed out of the window
        stats.record_block(0.1, 0.1)
    for i in range(20):
        stats.record_block(0.1, 0.002 if i < 19 else 0.01)  # 20 ms/s, one block at 100 ms/s
    mean, p95 = stats.processing_ms_per_s()
    assert mean == pytest.approx(1000 * (19 * 0.002 + 0.01) / 2.0)
    assert 20 < p95 <= 100
    assert stats.audio_s == pytest.approx(12.0)
    stats.reset()
    assert stats.audio_s == 0 and stats.processing_ms_per_s() == (None, None)


def test_rejects_negative_times():
    with pytest.raises(ValueError, match="^expected"):
        Stats().record_block(-0.1, 0.0)
