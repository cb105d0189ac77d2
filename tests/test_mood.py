"""The mood state (edge.mood): the EMA over irregularly spaced utterances, the level's hysteresis, the
decay in silence; its [mood] settings; and a replay of real clips on a real mosquitto publishing the
retained mood that a subscriber recomputes from the events, with its Home Assistant sensor."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile
from helpers import wait_until
from hypothesis import given, settings
from hypothesis import strategies as st
from paths import CREMA_D_MINI, SHIPPED_MODEL

from edge.events import EmotionEvent
from edge.mood import AGITATED, CALM, LEVELS, MOOD_FIELDS, NEUTRAL, MoodParams, MoodTracker, next_level
from edge.mqtt.homeassistant import node_id
from edge.mqtt.topics import emotion_topic, mood_topic
from edge.service.daemon import Session, StopFlag, run_replay
from edge.settings import ConfigError, parse_settings

P = MoodParams()
WAIT_S = 20.0
arousals = st.floats(-1.0, 1.0, allow_nan=False)
gaps = st.floats(0.01, 120.0, allow_nan=False)


def _ema(values: list[tuple[float, float]], tau_s: float) -> float:
    """The average of the module docstring written out for (end_s, arousal) pairs without silence decay."""
    ema, previous = None, None
    for end_s, arousal in values:
        alpha = 1.0 if previous is None else 1.0 - math.exp(-(end_s - previous) / tau_s)
        ema = arousal if ema is None else ema + alpha * (arousal - ema)
        previous = end_s
    return ema


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(gaps, arousals), min_size=1, max_size=30))
def test_the_average_weights_utterances_by_the_time_since_the_previous_one(steps):
    tracker = MoodTracker(MoodParams(hold_s=1e6))  # no silence decay: the plain irregular EMA
    t, pairs = 0.0, []
    for gap, arousal in steps:
        t += gap
        pairs.append((t, arousal))
        state = tracker.update(arousal, t)
    assert state.arousal_ema == pytest.approx(_ema(pairs, P.tau_s), abs=1e-12)
    assert state.utterances == len(steps) and state.level in LEVELS
    assert -1.0 <= state.arousal_ema <= 1.0


def test_the_first_utterance_sets_it_and_one_time_constant_later_one_moves_it_by_1_minus_1_over_e():
    tracker = MoodTracker(MoodParams(hold_s=P.tau_s))  # no silence in between
    assert tracker.state.level == NEUTRAL and tracker.state.arousal_ema == P.rest_arousal
    assert tracker.update(0.5, 3.0).arousal_ema == 0.5
    moved = tracker.update(-0.5, 3.0 + P.tau_s).arousal_ema
    assert moved == pytest.approx(0.5 - (1 - math.exp(-1)) * 1.0)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(LEVELS), st.data())
def test_a_value_inside_a_hysteresis_band_never_flips_the_level(level, data):
    low = data.draw(st.floats(P.calm_enter, P.calm_leave, exclude_min=True))
    high = data.draw(st.floats(P.agitated_leave, P.agitated_enter, exclude_max=True))
    for value in (low, high):
        after = next_level(level, value, P)
        if value == low and level != AGITATED:
            assert after == level  # calm stays calm, neutral stays neutral
        if value == high and level != CALM:
            assert after == level  # agitated stays agitated, neutral stays neutral


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(P.calm_enter, P.calm_leave, exclude_min=True), min_size=1, max_size=20),
       st.sampled_from([0.0, 0.5]))
def test_a_sequence_hovering_in_a_band_keeps_the_level_it_entered_with(values, start):
    """Enter calm (or stay neutral), then an average anywhere inside the calm band: no flapping."""
    tracker = MoodTracker(MoodParams(hold_s=1e6))
    entered = tracker.update(-0.5 if start == 0.0 else 0.17, 1.0).level
    assert entered == (CALM if start == 0.0 else NEUTRAL)
    for k, value in enumerate(values):  # one tau_s apart: each step moves 63% of the way, so set it directly
        tracker._ema_u = value  # the average itself, not an utterance: the band is about the average
        assert tracker.decay(2.0 + k).level == entered


def test_thresholds_crossing_changes_the_level_both_ways():
    assert next_level(NEUTRAL, P.agitated_enter, P) == AGITATED
    assert next_level(AGITATED, P.agitated_leave - 1e-9, P) == NEUTRAL
    assert next_level(NEUTRAL, P.calm_enter, P) == CALM
    assert next_level(CALM, P.calm_leave + 1e-9, P) == NEUTRAL
    assert next_level(CALM, P.agitated_enter, P) == AGITATED
    assert next_level(AGITATED, P.calm_enter, P) == CALM
    with pytest.raises(ValueError, match="expected a level"):
        next_level("excited", 0.0, P)


@settings(max_examples=100, deadline=None)
@given(arousals, st.lists(st.floats(0.05, 30.0), min_size=1, max_size=40))
def test_silence_relaxes_toward_rest_and_ends_neutral_whatever_the_ticks(arousal, ticks):
    tracker = MoodTracker()
    start = tracker.update(arousal, 10.0)
    t = 10.0
    for tick in ticks:
        t += tick
        state = tracker.decay(t)
    expected_silence = max(0.0, t - 10.0 - P.hold_s)
    expected = P.rest_arousal + (start.arousal_ema - P.rest_arousal) * math.exp(-expected_silence / P.tau_s)
    assert state.arousal_ema == pytest.approx(expected, abs=1e-12)  # the same however often it ticks
    assert tracker.decay(10.0 + P.hold_s + 20 * P.tau_s).level == NEUTRAL
    assert tracker.value_at(10.0 + P.hold_s) == start.arousal_ema  # a pause up to hold_s is not silence


def test_an_utterance_after_silence_starts_from_the_relaxed_average():
    tracker = MoodTracker()
    tracker.update(0.9, 0.0)
    t = P.hold_s + P.tau_s
    relaxed = tracker.value_at(t)
    assert relaxed == pytest.approx(P.rest_arousal + (0.9 - P.rest_arousal) * math.exp(-1))
    alpha = 1 - math.exp(-t / P.tau_s)
    assert tracker.update(-0.2, t).arousal_ema == pytest.approx(relaxed + alpha * (-0.2 - relaxed))


def test_bad_input_is_refused():
    tracker = MoodTracker()
    tracker.update(0.1, 5.0)
    with pytest.raises(ValueError, match="expected arousal in"):
        tracker.update(1.5, 6.0)
    with pytest.raises(ValueError, match="expected time_s >="):
        tracker.update(0.1, 4.0)


@pytest.mark.parametrize(("table", "message"), [
    ({"tau_s": 0}, r"mood.tau_s: expected a value in \(0, 86400\]"),
    ({"hold_s": -1.0}, r"mood.hold_s: expected a value in \[0, 86400\]"),
    ({"calm_leave": 0.5}, "expected -1 <= calm_enter < calm_leave < rest_arousal"),
    ({"agitated_enter": 1.5}, r"mood.agitated_enter: expected a value in \[-1, 1\]"),
    ({"enabled": "yes"}, "mood.enabled: expected bool"),
    ({"tau": 3}, "mood.tau: unknown key"),
])
def test_bad_mood_settings_are_refused_naming_the_key(table, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings({"mood": table})
    assert parse_settings({"mood": {"tau_s": 60}}).mood.tau_s == 60.0


# ----------------------------------------------------------------------------------------- broker


@pytest.mark.slow
def test_a_replay_publishes_the_retained_mood_a_subscriber_recomputes_from_the_events(mosquitto, mqtt_subscriber,
                                                                                     tmp_path):
    """Real clips of the held-out CREMA-D actors, one of each emotion, replayed as a device: the
    retained mood equals the EMA of the events' arousal received on the same broker, and Home
    Assistant's mood sensor config is there and reads it."""
    clips = sorted((CREMA_D_MINI / "AudioWAV").glob("1001_DFA_*.wav"))
    assert len(clips) == 6
    device = "mood-pi"
    watcher = mqtt_subscriber(mosquitto.host, mosquitto.port, [emotion_topic("ser", device), mood_topic("ser", device)])
    config = parse_settings({"device_id": device, "model": {"path": str(SHIPPED_MODEL)},
                             "state_directory": str(tmp_path / "state"),
                             "mqtt": {"host": mosquitto.host, "port": mosquitto.port}})
    assert run_replay(config, clips, "mqtt", False, StopFlag()) == 0
    events = [EmotionEvent.from_json(m.payload) for m in watcher.messages(emotion_topic("ser", device))]
    assert len(events) >= len(clips) - 1 and all(e.arousal is not None for e in events)
    live = watcher.wait_for(1, WAIT_S, topic=mood_topic("ser", device))  # one per event while connected
    retained = mqtt_subscriber(mosquitto.host, mosquitto.port, mood_topic("ser", device)).wait_for(1, WAIT_S)
    mood = json.loads(retained[0].payload)
    assert list(mood) == list(MOOD_FIELDS) and retained[0].retain
    pairs = [(round(e.end_s, 3), round(e.arousal, 4)) for e in events]
    assert mood["arousal_ema"] == pytest.approx(_ema(pairs, mood["tau_s"]), abs=0.6e-4)
    assert mood["utterances"] == len(events) and mood["level"] in LEVELS
    assert mood["time_s"] == pytest.approx(pairs[-1][0], abs=1e-3)
    assert json.loads(live[-1].payload)["arousal_ema"] == mood["arousal_ema"]
    expected_level = NEUTRAL
    for k in range(1, len(pairs) + 1):
        expected_level = next_level(expected_level, _ema(pairs[:k], mood["tau_s"]), MoodParams())
    assert mood["level"] == expected_level

    sensor_topic = f"homeassistant/sensor/{node_id(device)}/mood/config"
    sensor = json.loads(mqtt_subscriber(mosquitto.host, mosquitto.port, sensor_topic).wait_for(1, WAIT_S)[0].payload)
    assert sensor["state_topic"] == sensor["json_attributes_topic"] == mood_topic("ser", device)
    assert sensor["options"] == list(LEVELS)


@pytest.mark.slow
def test_replay_mood_prints_a_mood_line_after_each_event(capsys):
    """``replay --sink stdout --mood``: every event line is followed by the mood it led to (JSON lines
    like the events, told apart by their fields); without --mood only events are printed."""
    clips = sorted((CREMA_D_MINI / "AudioWAV").glob("1002_DFA_*.wav"))
    config = parse_settings({"model": {"path": str(SHIPPED_MODEL)}})
    assert run_replay(config, clips, "stdout", False, StopFlag(), print_mood=True) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    events = [EmotionEvent.from_json(json.dumps(line)) for line in lines[0::2]]
    moods = lines[1::2]
    assert len(events) == len(moods) >= len(clips) - 1
    for k, (event, mood) in enumerate(zip(events, moods, strict=True)):
        assert list(mood) == list(MOOD_FIELDS) and mood["utterances"] == k + 1
        assert mood["device_id"] == event.device_id and mood["time_s"] == round(event.end_s, 3)
    assert run_replay(config, clips, "stdout", False, StopFlag()) == 0
    plain = capsys.readouterr().out.splitlines()
    assert [EmotionEvent.from_json(line).label for line in plain] == [e.label for e in events]


@pytest.mark.slow
def test_a_restart_replaces_the_previous_runs_mood_with_neutral_at_connect(mosquitto, mqtt_subscriber):
    """The retained mood of a previous run must not stand after a restart: before its first utterance
    the daemon publishes the initial state (neutral, at rest, 0 utterances) on connecting."""
    device = "restart-pi"
    config = parse_settings({"device_id": device, "model": {"path": str(SHIPPED_MODEL)},
                             "mqtt": {"host": mosquitto.host, "port": mosquitto.port}})
    clips = sorted((CREMA_D_MINI / "AudioWAV").glob("1002_*_ANG_*.wav"))[:3]
    assert run_replay(config, clips, "mqtt", False, StopFlag()) == 0
    before = json.loads(mqtt_subscriber(mosquitto.host, mosquitto.port, mood_topic("ser", device)).wait_for(1, WAIT_S)[0].payload)
    assert before["utterances"] >= 1
    session = Session(config, "mqtt", device_id=device)
    session.start()
    try:
        assert wait_until(lambda: session.mqtt.connected, WAIT_S)
        watcher = mqtt_subscriber(mosquitto.host, mosquitto.port, mood_topic("ser", device))
        assert wait_until(lambda: any(json.loads(m.payload)["utterances"] == 0 for m in watcher.messages()), WAIT_S)
        now = json.loads(watcher.messages()[-1].payload)
        assert (now["level"], now["arousal_ema"], now["utterances"]) == (NEUTRAL, MoodParams().rest_arousal, 0)
    finally:
        session.close()


@pytest.mark.slow
def test_the_daemon_lets_the_mood_relax_in_silence_and_says_so(tmp_path, capsys):
    """An angry utterance, then 90 s of silence: the daemon's ticks (audio time) publish the average
    relaxing toward rest, step by step, and the last message is neutral."""
    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(90 * 16000, dtype=np.int16), 16000, subtype="PCM_16")
    clip = CREMA_D_MINI / "AudioWAV" / "1002_DFA_ANG_XX.wav"
    config = parse_settings({"model": {"path": str(SHIPPED_MODEL)}})
    assert run_replay(config, [clip, silence], "stdout", False, StopFlag(), print_mood=True) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    moods = [line for line in lines if "level" in line]
    first = moods[0]
    assert first["utterances"] == 1 and first["level"] == AGITATED
    relaxing = moods[1:]
    assert len(relaxing) >= 2 and all(m["utterances"] == 1 for m in relaxing)
    distances = [abs(m["arousal_ema"] - P.rest_arousal) for m in moods]
    assert distances == sorted(distances, reverse=True)
    for mood in relaxing:  # each step is the decay formula at its own time
        silence_s = mood["time_s"] - first["time_s"] - P.hold_s
        expected = P.rest_arousal + (first["arousal_ema"] - P.rest_arousal) * math.exp(-silence_s / P.tau_s)
        assert mood["arousal_ema"] == pytest.approx(expected, abs=1e-3)
    assert relaxing[0]["time_s"] > first["time_s"] + P.hold_s
    assert moods[-1]["level"] == NEUTRAL
