"""Emotion events and their MQTT publisher, against a real mosquitto on a loopback port (no mocks)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import DESIGN_SCORES, MQTT_TEST_PREFIX, make_event, settings_for, wait_until
from mqtt_helpers import free_port

from edge.events import EVENT_FIELDS, EmotionEvent, model_id, utc_now_rfc3339
from edge.mqtt.config import MqttSettings
from edge.mqtt.listen import format_event_line, listen
from edge.mqtt.publisher import MqttPublisher
from edge.mqtt.topics import STATUS_OFFLINE, STATUS_ONLINE, emotion_topic, stats_topic, status_topic
from edge.sinks import StdoutSink

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFIX = MQTT_TEST_PREFIX
WAIT_S = 10.0
"""Upper bound of every wait on the broker; loopback deliveries take milliseconds."""

def seqs_of(messages) -> list[int]:
    return [EmotionEvent.from_json(m.payload).seq for m in messages]


# ------------------------------------------------------------------------------------- events, offline


def test_event_round_trip_is_compact_and_ordered() -> None:
    event = make_event(42)
    text = event.to_json()
    assert " " not in text and "\n" not in text
    assert list(json.loads(text)) == list(EVENT_FIELDS)
    assert EmotionEvent.from_json(text) == event
    assert EmotionEvent.from_json(text.encode("utf-8")) == event


def test_to_json_rounds_times_to_ms_and_scores_to_4_decimals() -> None:
    event = make_event(0, start_s=1.23456, end_s=2.0004, confidence=0.712345,
                       scores={**DESIGN_SCORES, "angry": 0.712345})
    data = json.loads(event.to_json())
    assert (data["start_s"], data["end_s"]) == (1.235, 2.0)
    assert data["confidence"] == 0.7123 and data["scores"]["angry"] == 0.7123


def test_integer_numbers_are_accepted_as_floats() -> None:
    data = json.loads(make_event(1).to_json())
    data.update(start_s=0, end_s=3, confidence=1, scores={"angry": 1, "sad": 0})
    event = EmotionEvent.from_json(json.dumps(data))
    assert isinstance(event.start_s, float) and isinstance(event.scores["sad"], float)


def test_utc_now_rfc3339_is_accepted_by_the_event() -> None:
    now = utc_now_rfc3339()
    assert now.endswith("Z") and len(now) == len("2026-11-21T14:03:07.120Z")
    assert make_event(0, time=now).time == now


def _mutated(**changes: object) -> str:
    data = json.loads(make_event(7).to_json())
    for name, value in changes.items():
        if value is _DELETE:
            del data[name]
        else:
            data[name] = value
    return json.dumps(data)


_DELETE = object()


@pytest.mark.parametrize("text, fragment", [
    ("not json", "invalid JSON"),
    ("[1, 2]", "got list"),
    (_mutated(model=_DELETE), "missing ['model']"),
    (_mutated(extra=1), "unknown fields ['extra']"),
    (_mutated(schema=1), "expected schema 2, got 1"),
    (_mutated(seq="7"), "expected seq to be an integer, got str"),
    (_mutated(seq=True), "expected seq to be an integer, got bool"),
    (_mutated(seq=-1), "expected seq >= 0"),
    (_mutated(device_id=""), "expected device_id to be a non-empty string"),
    (_mutated(time="2026-11-21 14:03:07"), "expected time as RFC 3339"),
    (_mutated(time="2026-11-21T14:03:07.120+00:00"), "expected time as RFC 3339"),
    (_mutated(time="2026-13-21T14:03:07.120Z"), "expected a valid calendar time"),
    (_mutated(start_s="1.0"), "expected start_s to be a number"),
    (_mutated(start_s=5.0, end_s=4.0), "expected start_s <= end_s"),
    (_mutated(label="bored"), "expected label to be one of"),
    (_mutated(confidence=1.5), "expected confidence in [0, 1]"),
    (_mutated(scores={"angry": -0.1}), "expected scores['angry'] in [0, 1]"),
    (_mutated(scores=[]), "expected scores to be a non-empty object"),
    (make_event(7).to_json().replace("0.71", "NaN", 1), "expected finite numbers, got NaN"),
    (b"\xff\xfe", "expected UTF-8 JSON"),
])
def test_from_json_rejects(text: str | bytes, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        EmotionEvent.from_json(text)
    message = str(info.value)
    assert message.startswith("expected") and "\n" not in message
    assert fragment in message


def test_topics() -> None:
    assert emotion_topic("ser", "kitchen-pi") == "ser/kitchen-pi/emotion"
    assert status_topic("home/ser", "kitchen-pi") == "home/ser/kitchen-pi/status"
    assert stats_topic("ser", "kitchen-pi") == "ser/kitchen-pi/stats"
    for prefix, device_id in [("ser", "a/b"), ("ser", "+"), ("ser", ""), ("ser/#", "pi"), ("/ser", "pi")]:
        with pytest.raises(ValueError, match="^expected"):
            emotion_topic(prefix, device_id)
    assert model_id("ravdess8-conv1d", "3F9A1C2B7D10" + "0" * 52) == "ravdess8-conv1d@3f9a1c2b7d10"


def test_stdout_sink_prints_one_json_line_per_event() -> None:
    stream = io.StringIO()
    with StdoutSink(stream) as sink:
        sink.publish(make_event(1))
        sink.publish(make_event(2))
    lines = stream.getvalue().splitlines()
    assert [EmotionEvent.from_json(line).seq for line in lines] == [1, 2]
    assert sink.published_events == 2


def test_settings_and_publish_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="^expected port"):
        MqttSettings(port=0)
    with pytest.raises(ValueError, match="^expected a username"):
        MqttSettings(password="secret")
    with pytest.raises(ValueError, match="^expected reconnect_max_s"):
        MqttSettings(reconnect_min_s=5, reconnect_max_s=1)
    publisher = MqttPublisher(MqttSettings(topic_prefix=PREFIX), "test-pi")  # never started
    with pytest.raises(ValueError, match="^expected device_id 'test-pi', got 'other-pi'"):
        publisher.publish(make_event(0, device_id="other-pi"))
    publisher.publish(make_event(3))
    with pytest.raises(ValueError, match="^expected seq > 3, got 3"):
        publisher.publish(make_event(3))
    publisher.close()
    assert publisher.dropped_events == 1
    with pytest.raises(RuntimeError):
        publisher.publish(make_event(4))


def test_paho_retry_noise_is_one_line_per_kind_of_failure_until_the_next_connection() -> None:
    """The same refusal surfaces as a TLS alert on one attempt and as an EOF on the next (which one
    depends on the read order); only the first is shown, and each kind shows again after a reset.
    The routing uses paho's public ``on_log`` levels and texts, not its function names."""
    import paho.mqtt.client as mqtt

    from edge.mqtt.client import PahoLog

    noise = PahoLog()
    alert = "failed to receive on socket: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] ..."
    eof = "failed to receive on socket: EOF occurred in violation of protocol (_ssl.c:2427)"
    refused = "failed to connect: Connection refused"
    not_connected = "Client is not connected. Socket: None). Retrying"
    levels = [noise.level_of(mqtt.MQTT_LOG_ERR, m) for m in (alert, eof, refused, not_connected)]
    assert levels == [logging.ERROR, logging.DEBUG, logging.ERROR, logging.DEBUG]
    noise.reset()
    assert noise.level_of(mqtt.MQTT_LOG_ERR, eof) == logging.ERROR
    assert noise.level_of(mqtt.MQTT_LOG_DEBUG, "Sending PUBLISH") == logging.DEBUG


# ------------------------------------------------------------------------------------- real broker


def test_events_reach_subscriber_with_qos1(mosquitto, mqtt_subscriber) -> None:
    topic = emotion_topic(PREFIX, "test-pi")
    subscriber = mqtt_subscriber(mosquitto.host, mosquitto.port, f"{PREFIX}/+/emotion", qos=2)
    events = [make_event(seq) for seq in range(3)]
    with MqttPublisher(settings_for(mosquitto), "test-pi") as publisher:
        for event in events:
            publisher.publish(event)
        assert publisher.flush(WAIT_S)
        assert publisher.published_events == 3 and publisher.pending == 0 and publisher.dropped_events == 0
        messages = subscriber.wait_for(3, WAIT_S)
    assert [m.topic for m in messages] == [topic] * 3
    assert [m.qos for m in messages] == [1] * 3  # min(publish QoS, subscription QoS 2)
    assert [EmotionEvent.from_json(m.payload) for m in messages] == events


def test_online_is_retained_for_late_subscribers(mosquitto, mqtt_subscriber) -> None:
    with MqttPublisher(settings_for(mosquitto), "test-pi") as publisher:
        assert wait_until(lambda: publisher.connected, WAIT_S)
        topic = status_topic(PREFIX, "test-pi")
        late = mqtt_subscriber(mosquitto.host, mosquitto.port, topic)
        [message] = late.wait_for(1, WAIT_S)
    assert (message.payload, message.retain, message.qos) == (STATUS_ONLINE.encode(), True, 1)


def test_close_publishes_retained_offline(mosquitto, mqtt_subscriber) -> None:
    topic = status_topic(PREFIX, "test-pi")
    live = mqtt_subscriber(mosquitto.host, mosquitto.port, topic)
    publisher = MqttPublisher(settings_for(mosquitto), "test-pi")
    publisher.start()
    assert wait_until(lambda: publisher.connected, WAIT_S)
    publisher.close()
    assert not publisher.connected
    assert [m.payload for m in live.wait_for(2, WAIT_S)] == [b"online", b"offline"]
    late = mqtt_subscriber(mosquitto.host, mosquitto.port, topic)
    [message] = late.wait_for(1, WAIT_S)
    assert (message.payload, message.retain) == (STATUS_OFFLINE.encode(), True)


DOOMED_PUBLISHER = """
import sys, time
from edge.mqtt.config import MqttSettings
from edge.mqtt.publisher import MqttPublisher
publisher = MqttPublisher(MqttSettings(host=sys.argv[1], port=int(sys.argv[2]), topic_prefix=sys.argv[3]),
                          "doomed-pi")
publisher.start()
deadline = time.monotonic() + 10
while not publisher.connected and time.monotonic() < deadline:
    time.sleep(0.01)
print("connected" if publisher.connected else "not connected", flush=True)
time.sleep(60)
"""


def test_last_will_is_offline_when_the_process_dies(mosquitto, mqtt_subscriber) -> None:
    topic = status_topic(PREFIX, "doomed-pi")
    live = mqtt_subscriber(mosquitto.host, mosquitto.port, topic)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                    os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", DOOMED_PUBLISHER, mosquitto.host, str(mosquitto.port), PREFIX],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "connected"
        live.wait_for(1, WAIT_S)
        proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the kernel closes the socket, the broker sends the will
        proc.wait(WAIT_S)
    finally:
        proc.kill()
        proc.wait(WAIT_S)
    assert [m.payload for m in live.wait_for(2, WAIT_S)] == [b"online", b"offline"]
    late = mqtt_subscriber(mosquitto.host, mosquitto.port, topic)
    [message] = late.wait_for(1, WAIT_S)
    assert (message.payload, message.retain) == (b"offline", True)


def _persistent_subscription(broker, mqtt_subscriber, topic: str, client_id: str):
    """Register a persistent session subscribed to ``topic``, so the broker queues QoS 1 messages
    for it across its own restarts; returns a function that reconnects it."""
    mqtt_subscriber(broker.host, broker.port, topic, client_id=client_id, clean_session=False).close()
    return lambda: mqtt_subscriber(broker.host, broker.port, topic, client_id=client_id, clean_session=False)


def test_events_queued_while_broker_down_are_delivered_in_order(mosquitto_factory, mqtt_subscriber,
                                                                 caplog) -> None:
    broker = mosquitto_factory(persistence=True)
    reconnect = _persistent_subscription(broker, mqtt_subscriber, emotion_topic(PREFIX, "late-pi"), "sub-late")
    broker.stop()
    caplog.set_level(logging.DEBUG, logger="edge.mqtt.publisher")
    with MqttPublisher(settings_for(broker), "late-pi") as publisher:
        for seq in range(5):
            publisher.publish(make_event(seq, "late-pi"))
        assert not publisher.flush(0.5)  # broker down: nothing acknowledged, a few retries happen
        assert publisher.pending == 5 and not publisher.connected
        broker.start()
        assert publisher.flush(WAIT_S)
        assert publisher.published_events == 5
    outage_lines = [r.getMessage() for r in caplog.records
                    if r.name == "edge.mqtt.publisher" and r.levelno >= logging.WARNING and "flush" not in r.funcName]
    assert len(outage_lines) == 1 and "unreachable" in outage_lines[0]  # one line per outage, no paho noise
    assert seqs_of(reconnect().wait_for(5, WAIT_S)) == [0, 1, 2, 3, 4]


def test_queue_overflow_drops_the_oldest(mosquitto_factory, mqtt_subscriber) -> None:
    broker = mosquitto_factory(persistence=True)
    reconnect = _persistent_subscription(broker, mqtt_subscriber, emotion_topic(PREFIX, "full-pi"), "sub-full")
    broker.stop()
    with MqttPublisher(settings_for(broker, queue_size=3), "full-pi") as publisher:
        for seq in range(5):
            publisher.publish(make_event(seq, "full-pi"))
        assert (publisher.dropped_events, publisher.pending) == (2, 3)
        broker.start()
        assert publisher.flush(WAIT_S)
    assert seqs_of(reconnect().wait_for(3, WAIT_S)) == [2, 3, 4]


def test_broker_restart_republishes_online_and_delivers_every_event(mosquitto_factory,
                                                                    mqtt_subscriber) -> None:
    broker = mosquitto_factory(persistence=True)
    topic = emotion_topic(PREFIX, "restart-pi")
    reconnect = _persistent_subscription(broker, mqtt_subscriber, topic, "sub-restart")
    with MqttPublisher(settings_for(broker), "restart-pi") as publisher:
        for seq in range(3):
            publisher.publish(make_event(seq, "restart-pi"))
        assert publisher.flush(WAIT_S)
        broker.stop()
        assert wait_until(lambda: not publisher.connected, WAIT_S)
        for seq in range(3, 6):
            publisher.publish(make_event(seq, "restart-pi"))
        broker.start()
        assert publisher.flush(WAIT_S)
        status = mqtt_subscriber(broker.host, broker.port, status_topic(PREFIX, "restart-pi"))
        assert status.wait_for(1, WAIT_S)[0].payload == b"online"  # birth message again after reconnect
    seqs = seqs_of(reconnect().wait_for(6, WAIT_S))
    # At-least-once: duplicates are allowed, but first deliveries are in seq order.
    assert list(dict.fromkeys(seqs)) == [0, 1, 2, 3, 4, 5]


# ------------------------------------------------------------------------------------- listen


def _run_listen(settings: MqttSettings, **kwargs: object) -> tuple[io.StringIO, threading.Thread, dict]:
    out = io.StringIO()
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.update(rc=listen(settings, out=out, **kwargs)), daemon=True)
    thread.start()
    return out, thread, result


def test_listen_prints_readable_lines_and_skips_malformed(mosquitto, caplog) -> None:
    settings = settings_for(mosquitto)
    event = make_event(42, "kitchen-pi", start_s=812.34, end_s=815.9)
    with MqttPublisher(settings, "kitchen-pi") as publisher:
        assert wait_until(lambda: publisher.connected, WAIT_S)
        out, thread, result = _run_listen(settings, as_json=False, stop_after=2, timeout_s=WAIT_S)
        assert wait_until(lambda: "kitchen-pi is online" in out.getvalue(), WAIT_S)  # subscribed: retained status
        publisher.publish_raw(emotion_topic(PREFIX, "kitchen-pi"), b'{"schema": 1}').wait_for_publish(WAIT_S)
        publisher.publish_raw(status_topic(PREFIX, "junk-pi"), b"junk")  # a status listen must refuse
        publisher.publish(event)
        publisher.publish(make_event(43, "kitchen-pi"))
        thread.join(WAIT_S + 5)
    assert result == {"rc": 0}
    lines = out.getvalue().splitlines()
    assert lines == [
        "kitchen-pi is online",
        "2026-11-21T14:03:03.050Z +3.56s kitchen-pi 5f0c2a9be41d#42  angry 0.71  "
        "(neutral 0.03, calm 0.01, happy 0.08, sad 0.02, fearful 0.05, disgust 0.07, surprised 0.03)",
        format_event_line(make_event(43, "kitchen-pi")),
    ]
    skipped = [r.getMessage() for r in caplog.records if "skipping malformed message" in r.getMessage()]
    assert any(f"on {status_topic(PREFIX, 'junk-pi')}: expected one of" in m for m in skipped), skipped
    assert any(f"on {emotion_topic(PREFIX, 'kitchen-pi')}" in m for m in skipped), skipped


def test_listen_as_json_prints_payloads_only(mosquitto, caplog) -> None:
    """--json: stdout is the events' payloads as published, nothing else; availability is a log record."""
    caplog.set_level(logging.INFO, logger="edge.mqtt.listen")
    settings = settings_for(mosquitto)
    with MqttPublisher(settings, "json-pi") as publisher:
        assert wait_until(lambda: publisher.connected, WAIT_S)
        out, thread, result = _run_listen(settings, as_json=True, stop_after=1, timeout_s=WAIT_S)
        assert wait_until(lambda: any(r.getMessage() == "json-pi is online" for r in caplog.records), WAIT_S)
        publisher.publish(make_event(0, "json-pi"))
        thread.join(WAIT_S + 5)
    assert result == {"rc": 0}
    assert out.getvalue().splitlines() == [make_event(0, "json-pi").to_json()]


def test_listen_with_a_timeout_and_no_broker_fails_with_one_error(caplog) -> None:
    """A broker that is never reached within --timeout is a failure (status 1), said in one ERROR line."""
    caplog.set_level(logging.DEBUG, logger="edge.mqtt.listen")
    settings = MqttSettings(host="127.0.0.1", port=free_port(), topic_prefix=PREFIX, reconnect_min_s=0.1,
                            reconnect_max_s=0.2)
    out, thread, result = _run_listen(settings, as_json=True, timeout_s=1.0)
    thread.join(WAIT_S)
    assert result == {"rc": 1}
    assert out.getvalue() == ""
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"MQTT broker 127.0.0.1:{settings.port} unreachable: gave up after --timeout 1 s"], errors


@pytest.mark.slow
def test_listen_times_out_with_status_1(mosquitto) -> None:
    """Subscribed (it prints the retained status and one event), then the timeout ends it short of
    ``stop_after``: status 1. A listen that never subscribed would print nothing and fail here."""
    settings = settings_for(mosquitto)
    with MqttPublisher(settings, "slow-pi") as publisher:
        assert wait_until(lambda: publisher.connected, WAIT_S)
        out, thread, result = _run_listen(settings, as_json=False, stop_after=2, timeout_s=WAIT_S / 2)
        assert wait_until(lambda: "slow-pi is online" in out.getvalue(), WAIT_S)  # subscribed: retained status
        publisher.publish(make_event(7, "slow-pi"))
        thread.join(WAIT_S + 5)
    assert result == {"rc": 1}
    assert out.getvalue().splitlines() == ["slow-pi is online", format_event_line(make_event(7, "slow-pi"))]
