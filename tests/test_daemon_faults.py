"""The daemon as people run it, against a real mosquitto on loopback: broker down at start, broker
killed mid-stream, what leaves the device (privacy), the retained stats (Home Assistant discovery:
``test_homeassistant.py``).

Delivery is at least once: an event may arrive twice (paho re-sends what the dead broker never
acknowledged), never zero times, and first arrivals are in ``seq`` order. Every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import threading
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest
from helpers import ser_edge_command, skip_or_fail, wait_until
from paths import RAVDESS_48K, SHIPPED_MODEL

from edge import __version__
from edge.events import EVENT_FIELDS, EmotionEvent
from edge.manifest import load_manifest
from edge.model import INTERPRETER
from edge.mood import MOOD_FIELDS
from edge.mqtt.topics import emotion_topic, mood_topic, stats_topic, status_topic
from edge.service.daemon import StopFlag, run_replay
from edge.service.stats import STATS_FIELDS
from edge.settings import Settings, parse_settings

pytestmark = pytest.mark.slow  # each test runs ser-edge or a broker for several seconds (make check skips them)

CLIPS = sorted(RAVDESS_48K.glob("*.wav"))
WAIT_S = 20.0
"""Upper bound of every wait; on loopback things take milliseconds to a second or two."""
FAST_RECONNECT = {"reconnect_min_s": 0.2, "reconnect_max_s": 0.5}


@pytest.fixture(autouse=True)
def _clips_present():
    if len(CLIPS) != 8:
        skip_or_fail(f"expected 8 clips in {RAVDESS_48K}, got {len(CLIPS)}")


def make_settings(broker, device_id: str, **mqtt: object) -> Settings:
    return parse_settings({
        "device_id": device_id,
        "model": {"path": str(SHIPPED_MODEL)},
        "mqtt": {"host": broker.host, "port": broker.port, **FAST_RECONNECT, **mqtt},
    })


class Daemon:
    """``run_replay`` in a thread (the in-process daemon); :meth:`stop` is its SIGTERM."""

    def __init__(self, settings: Settings, files: list[Path], realtime: bool) -> None:
        self.stop_flag = StopFlag()
        self.rc: int | None = None
        self.thread = threading.Thread(target=self._run, args=(settings, files, realtime), daemon=True)
        self.thread.start()

    def _run(self, settings: Settings, files: list[Path], realtime: bool) -> None:
        self.rc = run_replay(settings, files, "mqtt", realtime, self.stop_flag)

    def stop(self) -> None:
        self.stop_flag.event.set()

    def join(self, timeout_s: float = WAIT_S) -> int | None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"the daemon did not finish within {timeout_s} s"
        return self.rc


def events_logged(caplog) -> list[int]:
    return [int(m.group(1)) for r in caplog.records if r.name == "edge.service.daemon"
            and (m := re.match(r"event #(\d+) ", r.getMessage()))]


def first_arrivals(messages) -> list[int]:
    """Seqs of the events in order of first arrival (duplicates of at-least-once delivery dropped)."""
    return list(dict.fromkeys(EmotionEvent.from_json(m.payload).seq for m in messages))


def persistent_session(broker, mqtt_subscriber, topic: str, client_id: str):
    """A subscriber with a persistent session: the broker queues QoS 1 messages while it is away."""
    return mqtt_subscriber(broker.host, broker.port, topic, client_id=client_id, clean_session=False)


# ----------------------------------------------------------------------------------------- faults


def test_broker_down_at_start_events_are_queued_and_delivered_in_order(mosquitto_factory, mqtt_subscriber,
                                                                       caplog):
    """The daemon starts with the broker stopped, keeps processing (events are made and queued), and
    delivers every event in seq order once the broker starts a few seconds later."""
    caplog.set_level(logging.INFO, logger="edge.service.daemon")
    caplog.set_level(logging.INFO, logger="edge.mqtt.publisher")
    broker = mosquitto_factory(persistence=True)
    topic = emotion_topic("ser", "down-at-start")
    persistent_session(broker, mqtt_subscriber, topic, "sub-down-at-start").close()
    broker.stop()

    daemon = Daemon(make_settings(broker, "down-at-start"), CLIPS, realtime=False)
    # keeps processing without a broker: an event (at least) per clip is made while it is down
    assert wait_until(lambda: len(events_logged(caplog)) >= len(CLIPS), WAIT_S)
    assert daemon.thread.is_alive()  # waiting for the broker to acknowledge
    assert wait_until(lambda: re.search(r"unreachable.*; queueing events", caplog.text), WAIT_S)  # it tried and failed
    broker.start()
    assert daemon.join() == 0
    n_events = len(events_logged(caplog))
    assert events_logged(caplog) == list(range(n_events))

    received = persistent_session(broker, mqtt_subscriber, topic, "sub-down-at-start").wait_for(n_events, WAIT_S)
    seqs = [EmotionEvent.from_json(m.payload).seq for m in received]
    assert first_arrivals(received) == list(range(n_events))
    assert seqs == sorted(seqs)  # in order; at least once (a duplicate would sit next to its first copy)


def test_broker_killed_and_restarted_mid_replay_loses_no_event(mosquitto_factory, mqtt_subscriber, tmp_path):
    """``ser-edge replay --realtime --sink both`` while the broker is SIGKILLed after the first event and
    restarted two seconds later, mid-stream. At least once: every event printed on stdout reaches a
    persistent-session subscriber (clean_session=False, fixed client id) one or more times, first
    arrivals in seq order, none lost."""
    broker = mosquitto_factory(persistence=True, autosave=True)  # the subscriber's session survives SIGKILL
    topic = emotion_topic("ser", "killed")
    subscriber = persistent_session(broker, mqtt_subscriber, topic, "sub-killed")
    config = tmp_path / "ser-edge.toml"
    config.write_text("[mqtt]\nreconnect_min_s = 0.2\nreconnect_max_s = 0.5\nstats_interval_s = 1.0\n")
    stderr_path = tmp_path / "stderr.log"
    clips = CLIPS[:3]  # 11.8 s of audio at real time
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen([*ser_edge_command(), "replay", *map(str, clips), "--realtime", "--sink", "both",
                                 "--config", str(config), "--model", str(SHIPPED_MODEL), "--device-id", "killed",
                                 "--mqtt-host", broker.host, "--mqtt-port", str(broker.port)],
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first event, about 2.6 s into the stream
        assert EmotionEvent.from_json(first).seq == 0, stderr_path.read_text()
        broker.kill()
        second = proc.stdout.readline()  # the next event, made while the broker is down: it waits in the outbox
        assert EmotionEvent.from_json(second).seq == 1, stderr_path.read_text()
        broker.start()
        rest, _ = proc.communicate(timeout=WAIT_S * 6)
    finally:
        proc.kill()
        proc.wait()
    log = stderr_path.read_text()
    assert proc.returncode == 0, log
    assert "Traceback" not in log
    assert "lost connection to MQTT broker" in log  # the outage happened while the daemon ran
    printed = [EmotionEvent.from_json(line).seq for line in [first, second, *rest.splitlines()]]
    assert printed == list(range(len(printed))) and len(printed) >= len(clips)
    assert log.count("edge.service.daemon: event #") == len(printed)
    received = subscriber.wait_for(len(printed), WAIT_S)
    assert first_arrivals(received) == printed


# ----------------------------------------------------------------------------------------- privacy

HA_CONFIG_KEYS = {"name", "unique_id", "state_topic", "value_template", "json_attributes_topic",
                  "json_attributes_template", "availability_topic", "payload_available", "payload_not_available",
                  "unit_of_measurement", "state_class", "icon", "qos", "device", "origin", "event_types",
                  "device_class", "options", "force_update", "expire_after", "payload_on", "payload_off",
                  "entity_category", "suggested_display_precision"}
HA_DEVICE_KEYS = {"identifiers", "name", "model", "manufacturer", "sw_version"}
MAX_PAYLOAD_BYTES = 2048
"""Every message is at most about a kilobyte (discovery configs); a second of 16-bit audio would be 32 000."""
MARKER_TOPIC = "test/marker"
"""Published by the test itself after the daemon exited (see the privacy test)."""
SUSPICIOUS = re.compile(r"sample|feature|mfcc|audio|pcm|wav|frame|spectr", re.IGNORECASE)


def _walk(value, path=""):
    """(path, value) for every value nested in a JSON document."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def test_only_documented_payloads_leave_the_device(mosquitto, mqtt_subscriber, caplog):
    """Everything published during a replay, on any topic: events (exactly EVENT_FIELDS), online/offline,
    stats (exactly STATS_FIELDS, scalars only), the mood (exactly MOOD_FIELDS, scalars only), Home Assistant configs. No arrays longer than the label
    count, no keys that name samples or features, no large payloads."""
    caplog.set_level(logging.INFO, logger="edge.service.daemon")
    manifest = load_manifest(SHIPPED_MODEL)
    labels = list(manifest.labels)
    mood = "arousal" in manifest.dimensions
    n_configs = 5 + len(manifest.dimensions) + mood  # event, label, confidence, 2 diagnostics (+ arousal, valence, mood)
    everything = mqtt_subscriber(mosquitto.host, mosquitto.port, "#")
    daemon = Daemon(make_settings(mosquitto, "private", stats_interval_s=1.0), CLIPS, realtime=False)
    assert daemon.join() == 0
    n_events = len(events_logged(caplog))
    assert n_events >= len(CLIPS)
    everything.wait_for(n_events + 2 + n_configs + 1, WAIT_S)  # events, online/offline, configs, final stats
    # Anything else the daemon published was acknowledged before it exited, so the broker routed it
    # before this marker: once the marker arrives, everything the daemon sent is in.
    mqtt_publish.single(MARKER_TOPIC, b"end", qos=1, hostname=mosquitto.host, port=mosquitto.port)
    everything.wait_for(1, WAIT_S, topic=MARKER_TOPIC)
    kinds: dict[str, int] = {}
    for message in everything.messages():
        assert len(message.payload) <= MAX_PAYLOAD_BYTES, message
        text = message.payload.decode("utf-8")
        if message.topic == MARKER_TOPIC:
            continue
        if message.topic == status_topic("ser", "private"):
            assert text in ("online", "offline")
            kinds["status"] = kinds.get("status", 0) + 1
            continue
        data = json.loads(text)
        if message.topic == emotion_topic("ser", "private"):
            assert list(data) == list(EVENT_FIELDS)
            assert list(EmotionEvent.from_json(text).scores) == labels
            kind = "event"
        elif message.topic == stats_topic("ser", "private"):
            assert list(data) == list(STATS_FIELDS)
            assert all(v is None or isinstance(v, int | float | str) for v in data.values()), data
            kind = "stats"
        elif message.topic == mood_topic("ser", "private"):
            assert list(data) == list(MOOD_FIELDS)
            assert all(isinstance(v, int | float | str) for v in data.values()), data
            kind = "mood"
        elif re.fullmatch(r"homeassistant/(event|sensor|binary_sensor)/private_[0-9a-f]{8}/[a-z_]+/config",
                          message.topic):
            assert set(data) <= HA_CONFIG_KEYS and set(data["device"]) <= HA_DEVICE_KEYS, data
            kind = "config"
        else:
            raise AssertionError(f"unexpected topic {message.topic!r}: {text[:200]!r}")
        kinds[kind] = kinds.get(kind, 0) + 1
        for path, value in _walk(data):
            if isinstance(value, list):
                assert len(value) <= len(labels) + 1, (message.topic, path)  # HA options: labels + unsure
            if isinstance(value, dict):
                for key in value:
                    assert key in labels or key == "audio_s" or not SUSPICIOUS.search(key), (message.topic, path, key)
    assert kinds["event"] >= n_events and kinds["status"] == 2 and kinds["config"] == n_configs and kinds["stats"] >= 1
    assert kinds.get("mood", 0) >= (1 if mood else 0)


# ----------------------------------------------------------------------------------------- stats


def test_stats_are_periodic_retained_and_documented(mosquitto, mqtt_subscriber, caplog):
    caplog.set_level(logging.INFO, logger="edge.service.daemon")
    manifest = load_manifest(SHIPPED_MODEL)
    topic = stats_topic("ser", "stats-pi")
    live = mqtt_subscriber(mosquitto.host, mosquitto.port, topic)
    daemon = Daemon(make_settings(mosquitto, "stats-pi", stats_interval_s=1.0), CLIPS, realtime=True)
    periodic = live.wait_for(3, WAIT_S)  # every 1 s (the shortest interval allowed) of wall clock while the audio plays
    daemon.stop()  # SIGTERM: one last stats message at the clean shutdown
    assert daemon.join() == 0
    n_events = len(events_logged(caplog))
    late = mqtt_subscriber(mosquitto.host, mosquitto.port, topic)
    [retained] = late.wait_for(1, WAIT_S)
    assert retained.retain
    final = json.loads(retained.payload)
    assert list(final) == list(STATS_FIELDS)
    assert final["schema"] == 1 and final["events"] == n_events and final["pending"] == 0
    assert final["dropped_events"] == 0 and final["overflows"] == 0
    assert final["utterances"] >= final["events"] and final["short_utterances"] >= 0
    assert 1.0 < final["audio_s"] <= final["uptime_s"] + 0.5  # real time: no more audio than wall clock
    assert 0 < final["processing_ms_per_s_mean"] and final["processing_ms_per_s_mean"] <= final["processing_ms_per_s_p95"]
    assert (final["interpreter"], final["model"], final["version"]) == (INTERPRETER, manifest.model_id, __version__)
    uptimes = [json.loads(m.payload)["uptime_s"] for m in periodic]
    assert uptimes == sorted(uptimes)
    assert all(list(json.loads(m.payload)) == list(STATS_FIELDS) for m in periodic)


def test_stats_interval_zero_publishes_no_stats(mosquitto, mqtt_subscriber):
    everything = mqtt_subscriber(mosquitto.host, mosquitto.port, "ser/#")
    daemon = Daemon(make_settings(mosquitto, "quiet-pi", stats_interval_s=0), CLIPS[:1], realtime=False)
    assert daemon.join() == 0
    everything.wait_for(2, WAIT_S, topic=status_topic("ser", "quiet-pi"))
    assert not everything.messages(stats_topic("ser", "quiet-pi"))


# ------------------------------------------------------------------ issue 18 item 11: stop signals, broker down


def _speech_raw(tmp_path: Path) -> Path:
    """The speech sample as headerless s16le 16 kHz mono (what an input command or a raw stdin carries)."""
    import soundfile
    from paths import SAMPLE

    speech, rate = soundfile.read(str(SAMPLE), dtype="int16")
    assert rate == 16000
    path = tmp_path / "speech.raw"
    path.write_bytes(speech.astype("<i2").tobytes())
    return path


def _config(tmp_path: Path, name: str, broker, durable: bool) -> Path:
    state = tmp_path / f"state-{name}"
    config = tmp_path / f"{name}.toml"
    config.write_text((f'state_directory = "{state}"\n' if durable else 'state_directory = ""\n')
                      + f'device_id = "{name}"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                      + "reconnect_min_s = 0.2\nreconnect_max_s = 0.5\n")
    return config


def _outbox_rows(tmp_path: Path, name: str) -> int:
    import sqlite3

    with sqlite3.connect(tmp_path / f"state-{name}" / "outbox.sqlite3") as db:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def test_a_stop_signal_with_the_broker_down_exits_0_when_the_events_stay_in_a_durable_outbox(
        mosquitto_factory, tmp_path, monkeypatch):
    """``ser-edge run`` (an input command speaking), the broker down, events pending: SIGTERM or SIGHUP
    is a clean stop, status 0, and the log says how many events stay in the outbox (the file holds
    them); with an in-memory outbox the same SIGTERM says they are lost and exits 1. (SIGTERM exited 1
    whatever the outbox; SIGHUP killed the daemon without cleanup.)"""
    from processes import LoggedProcess

    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    down = mosquitto_factory(start=False)  # a real broker's port, nothing listening
    raw = _speech_raw(tmp_path)
    cases = {"durable-term": (True, signal.SIGTERM), "durable-hup": (True, signal.SIGHUP),
             "memory-term": (False, signal.SIGTERM)}
    daemons = {}
    for name, (durable, _) in cases.items():
        daemons[name] = LoggedProcess([*ser_edge_command(), "run", "--config", str(_config(tmp_path, name, down, durable)),
                                       "--model", str(SHIPPED_MODEL), "--input-command", f"cat {raw}"],
                                      cwd=tmp_path, timeout_s=60.0)
    try:
        for name, daemon in daemons.items():
            daemon.wait_for_lines(r"event #1 ")
            daemon.proc.send_signal(cases[name][1])
        status = {name: daemon.wait() for name, daemon in daemons.items()}
    finally:
        for daemon in daemons.values():
            daemon.kill()
    for name, daemon in daemons.items():
        assert not [line for line in daemon.lines if "Traceback" in line], daemon.log()
        signame = signal.Signals(cases[name][1]).name
        daemon.wait_for_lines(rf"received {signame}, stopping", timeout_s=0)
    for name in ("durable-term", "durable-hup"):
        kept = daemons[name].wait_for_lines(r"closed with (\d+) unacknowledged events? kept in .*outbox", timeout_s=0)
        count = int(re.search(r"closed with (\d+)", kept[0]).group(1))
        assert status[name] == 0 and count >= 2 and count == _outbox_rows(tmp_path, name), daemons[name].log()
    memory = daemons["memory-term"]
    assert status["memory-term"] == 1, memory.log()
    memory.wait_for_lines(r"closed with \d+ undelivered events? \(dropped: the outbox is in memory\)", timeout_s=0)


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "memory"])
def test_a_second_sigterm_says_whether_the_pending_events_stay_or_are_lost(mosquitto_factory, tmp_path,
                                                                          monkeypatch, durable):
    """``ser-edge replay -`` (raw speech on a pipe kept open, so it is still reading), the broker down:
    the first SIGTERM starts the stop, the second exits at once (143) and says the unacknowledged events
    stay in the outbox only when it is durable; in memory, that they are lost, with their count."""
    from processes import LoggedProcess

    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    down = mosquitto_factory(start=False)
    name = "durable" if durable else "memory"
    replay = LoggedProcess([*ser_edge_command(), "replay", "-", "--raw-format", "s16le", "--rate", "16000",
                            "--config", str(_config(tmp_path, name, down, durable)), "--model", str(SHIPPED_MODEL)],
                           cwd=tmp_path, timeout_s=60.0, stdin=subprocess.PIPE)
    try:
        replay.proc.stdin.write(_speech_raw(tmp_path).read_bytes())  # and the pipe stays open: still reading
        replay.proc.stdin.flush()
        replay.wait_for_lines(r"event #1 ")
        replay.proc.send_signal(signal.SIGTERM)
        replay.wait_for_lines(r"received SIGTERM, stopping")
        replay.proc.send_signal(signal.SIGTERM)
        status = replay.wait()
    finally:
        replay.kill()
        replay.proc.stdin.close()
    assert status == 128 + signal.SIGTERM, replay.log()
    line = replay.wait_for_lines(r"received SIGTERM again, exiting now", timeout_s=0)[0]
    if durable:
        count = int(re.search(r"\((\d+) unacknowledged events stay in the durable outbox for the next start\)",
                              line).group(1))
        # the count is taken when the signal arrives; the pipeline thread may still append the event it
        # was writing before the process exits, so the file holds at least that many, never fewer
        assert 2 <= count <= _outbox_rows(tmp_path, name), replay.log()
    else:
        count = int(re.search(r"\((\d+) unacknowledged events are lost \(the outbox is in memory\)\)", line).group(1))
        assert count >= 2 and "stay in" not in line, replay.log()
