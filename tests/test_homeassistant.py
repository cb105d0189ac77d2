"""Home Assistant MQTT discovery: payloads checked against the keys and types of Home Assistant's
MQTT documentation, templates rendered with Jinja2 on real events, and the retained configs on a
real mosquitto: published, republished on Home Assistant's birth (rate-limited), removed when
discovery is disabled or the device id changes."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import jinja2
import paho.mqtt.publish as publish
import pytest
from paths import RAVDESS_48K, SHIPPED_MODEL

from edge import __version__
from edge.events import UNSURE_EVENT_TYPE, EmotionEvent
from edge.manifest import load_manifest
from edge.mood import MoodState, mood_json
from edge.mqtt.config import MqttSettings
from edge.mqtt.homeassistant import STATE_FILE_NAME, HomeAssistantDiscovery, discovery_configs, node_id
from edge.mqtt.publisher import MqttPublisher
from edge.mqtt.topics import emotion_topic, mood_topic, stats_topic, status_topic
from edge.service.daemon import StopFlag, run_replay
from edge.settings import parse_settings

CLIPS = sorted(RAVDESS_48K.glob("*.wav"))
N_CONFIGS = (5 + len(load_manifest(SHIPPED_MODEL).dimensions)
             + ("arousal" in load_manifest(SHIPPED_MODEL).dimensions))
"""Discovery configs of the shipped model: event, label, confidence, two diagnostics (audio, storage),
arousal/valence if it has them, and the mood sensor with arousal."""
WAIT_S = 20.0

# --- The schema, from https://www.home-assistant.io/integrations/mqtt/ (discovery, the "device" and
# "origin" blocks, availability), /integrations/sensor.mqtt/, /integrations/event.mqtt/,
# /integrations/binary_sensor.mqtt/ and /integrations/sensor/ (device classes, state classes).
# key -> a predicate on the value. Keys not listed are not Home Assistant's.
_str = lambda v: isinstance(v, str) and v != ""  # noqa: E731
_bool = lambda v: isinstance(v, bool)  # noqa: E731
_str_list = lambda v: isinstance(v, list) and v and all(_str(x) for x in v)  # noqa: E731
_template = lambda v: _str(v) and "{{" in v and "}}" in v  # noqa: E731

DEVICE_KEYS = {"identifiers": lambda v: _str(v) or _str_list(v), "connections": lambda v: isinstance(v, list),
               "name": _str, "model": _str, "model_id": _str, "manufacturer": _str, "sw_version": _str,
               "hw_version": _str, "serial_number": _str, "suggested_area": _str, "via_device": _str,
               "configuration_url": _str}
ORIGIN_KEYS = {"name": _str, "sw_version": _str, "support_url": _str}
ENTITY_KEYS = {
    "availability_topic": _str, "payload_available": _str, "payload_not_available": _str,
    "availability_template": _template, "availability_mode": lambda v: v in ("all", "any", "latest"),
    "device": lambda v: isinstance(v, dict) and "identifiers" in v
    and all(k in DEVICE_KEYS and DEVICE_KEYS[k](x) for k, x in v.items()),
    "origin": lambda v: isinstance(v, dict) and "name" in v
    and all(k in ORIGIN_KEYS and ORIGIN_KEYS[k](x) for k, x in v.items()),
    "enabled_by_default": _bool, "encoding": lambda v: isinstance(v, str),
    "entity_category": lambda v: v in ("config", "diagnostic"), "entity_picture": _str, "icon": _str,
    "json_attributes_topic": _str, "json_attributes_template": _template, "name": lambda v: v is None or _str(v),
    "qos": lambda v: v in (0, 1, 2), "unique_id": _str, "state_topic": _str, "value_template": _template,
}
SENSOR_DEVICE_CLASSES = {"enum", "timestamp", "duration", "power", "temperature", "humidity", "battery"}
"""The subset of https://www.home-assistant.io/integrations/sensor/#device-class that could apply here."""
COMPONENT_KEYS = {
    "sensor": {"device_class": lambda v: v in SENSOR_DEVICE_CLASSES, "options": _str_list,
               "expire_after": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
               "force_update": _bool, "state_class": lambda v: v in ("measurement", "total", "total_increasing"),
               "unit_of_measurement": _str,
               "suggested_display_precision": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
               "last_reset_value_template": _template},
    "event": {"event_types": _str_list, "device_class": lambda v: v in ("button", "doorbell", "motion")},
    "binary_sensor": {"payload_on": _str, "payload_off": _str, "device_class": lambda v: v in ("problem", "running"),
                      "expire_after": lambda v: isinstance(v, int) and v > 0, "force_update": _bool,
                      "off_delay": lambda v: isinstance(v, int) and v > 0},
}
REQUIRED = {"sensor": {"state_topic"}, "event": {"state_topic", "event_types"}, "binary_sensor": {"state_topic"}}


def check_config(topic: str, config: dict) -> None:
    """Assert that ``config`` is a valid discovery payload for its component, per the docs above."""
    prefix, component, node, object_id, last = topic.split("/")
    assert (prefix, last) == ("homeassistant", "config") and component in COMPONENT_KEYS, topic
    allowed = {**ENTITY_KEYS, **COMPONENT_KEYS[component]}
    for key, value in config.items():
        assert key in allowed, f"{topic}: {key!r} is not a documented key of an MQTT {component}"
        assert allowed[key](value), f"{topic}: {key} = {value!r} has the wrong type or value"
    assert REQUIRED[component] <= set(config), topic
    if config.get("device_class") == "enum":  # sensor docs: an enum sensor has options, no unit or state class
        assert "options" in config and "unit_of_measurement" not in config and "state_class" not in config
    if "options" in config:
        assert config.get("device_class") == "enum"
    assert config["unique_id"].startswith("ser-edge-" + node)


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(SHIPPED_MODEL)


def _configs(manifest, dimensions=(), **kwargs) -> dict[str, dict]:
    return discovery_configs("homeassistant", "ser", "kitchen.pi", manifest.model_id, __version__,
                             manifest.labels, dimensions, **kwargs)


def test_discovery_payloads_follow_home_assistants_documented_schema(manifest) -> None:
    plain = _configs(manifest)
    with_dimensions = _configs(manifest, ("arousal", "valence"))
    node = node_id("kitchen.pi")
    assert set(plain) == {f"homeassistant/event/{node}/emotion/config",
                          f"homeassistant/sensor/{node}/emotion_label/config",
                          f"homeassistant/sensor/{node}/emotion_confidence/config",
                          f"homeassistant/binary_sensor/{node}/audio_problem/config",
                          f"homeassistant/binary_sensor/{node}/storage_problem/config"}
    assert set(with_dimensions) - set(plain) == {f"homeassistant/sensor/{node}/arousal/config",
                                                  f"homeassistant/sensor/{node}/valence/config"}
    for topic, config in with_dimensions.items():
        check_config(topic, config)
        assert config["availability_topic"] == status_topic("ser", "kitchen.pi")
        assert config["origin"] == {"name": "ser-edge", "sw_version": __version__}
        assert config["device"]["model"] == manifest.model_id
    outcomes = [*manifest.labels, UNSURE_EVENT_TYPE]
    assert with_dimensions[f"homeassistant/event/{node}/emotion/config"]["event_types"] == outcomes
    label = with_dimensions[f"homeassistant/sensor/{node}/emotion_label/config"]
    assert (label["device_class"], label["options"], label["expire_after"]) == ("enum", outcomes, 300)
    diagnostic = with_dimensions[f"homeassistant/binary_sensor/{node}/audio_problem/config"]
    assert diagnostic["entity_category"] == "diagnostic" and diagnostic["state_topic"] == stats_topic("ser", "kitchen.pi")
    assert len({c["unique_id"] for c in with_dimensions.values()}) == len(with_dimensions)
    # expire_after 0 = never: the key is left out (Home Assistant wants a positive number)
    assert all("expire_after" not in c for c in _configs(manifest, expire_after_s=0).values())
    assert not any("_problem" in t for t in _configs(manifest, audio_diagnostic=False))
    with_mood = _configs(manifest, ("arousal", "valence"), mood=True)
    assert set(with_mood) - set(with_dimensions) == {f"homeassistant/sensor/{node}/mood/config"}
    mood = with_mood[f"homeassistant/sensor/{node}/mood/config"]
    check_config(f"homeassistant/sensor/{node}/mood/config", mood)
    assert mood["state_topic"] == mood["json_attributes_topic"] == mood_topic("ser", "kitchen.pi")
    assert (mood["device_class"], mood["options"]) == ("enum", ["calm", "neutral", "agitated"])
    with pytest.raises(ValueError, match="expected expire_after_s >= 0"):
        _configs(manifest, expire_after_s=-1)


def test_node_ids_never_collide() -> None:
    """Ids that sanitise alike (non-ASCII of one length, '.' vs '_') still get different node ids."""
    ids = ["küche", "kä_he", "kitchen.pi", "kitchen_pi", "kitchen-pi", "台所", "寝室", "x" * 200, "x" * 201]
    nodes = [node_id(i) for i in ids]
    assert len(set(nodes)) == len(ids)
    assert all(len(n) <= 32 + 1 + 8 and n.replace("_", "").replace("-", "").isalnum() and n.isascii() for n in nodes)
    assert node_id("kitchen.pi").startswith("kitchen_pi_")


def _render(template: str, payload: str) -> str:
    """Render a Home Assistant value template the way its MQTT entities do: ``value_json`` is the
    parsed payload (Jinja2, whose ``tojson`` and ``round`` match Home Assistant's for these uses)."""
    return jinja2.Environment().from_string(template).render(value_json=json.loads(payload), value=payload)


@pytest.mark.slow
def test_templates_turn_real_events_into_home_assistant_states(manifest) -> None:
    """The event entity gets ``event_type`` (label, or ``unsure``) plus attributes; the enum sensor a
    state from its options; confidence in %. Events from a replay of real speech."""
    events = _replayed_events(CLIPS[:2])
    assert events
    configs = _configs(manifest, ("arousal", "valence"))
    by_object = {t.split("/")[3]: c for t, c in configs.items()}
    for event in events:
        for unsure in (False, True):
            payload = json.loads(event.to_json())
            payload["unsure"] = unsure
            text = json.dumps(payload)
            fired = json.loads(_render(by_object["emotion"]["value_template"], text))
            expected = UNSURE_EVENT_TYPE if unsure else event.label
            assert fired["event_type"] == expected and fired["event_type"] in by_object["emotion"]["event_types"]
            assert fired["label"] == event.label and fired["scores"] == payload["scores"]
            assert _render(by_object["emotion_label"]["value_template"], text) == expected
            attributes = json.loads(_render(by_object["emotion_label"]["json_attributes_template"], text))
            assert attributes["confidence"] == payload["confidence"]
        assert float(_render(by_object["emotion_confidence"]["value_template"], event.to_json())) == round(
            event.confidence * 100)
        arousal = json.loads(event.to_json())["arousal"]  # a float with the shipped model's head, else null
        assert _render(by_object["arousal"]["value_template"], event.to_json()) == str(arousal)
    mood = {t.split("/")[3]: c for t, c in _configs(manifest, ("arousal",), mood=True).items()}["mood"]
    for level, ema in (("calm", -0.21), ("agitated", 0.4567)):
        text = mood_json(MoodState(ema, level, 7, 12.5), "kitchen.pi", 30.0, events[0].time)
        assert _render(mood["value_template"], text) == level and level in mood["options"]
        attributes = json.loads(_render(mood["json_attributes_template"], text))
        assert attributes == {"arousal": ema, "utterances": 7, "tau_s": 30.0, "time": events[0].time}
    stats = {"source": "ok"}
    diagnostic = by_object["audio_problem"]
    assert _render(diagnostic["value_template"], json.dumps(stats)) == diagnostic["payload_off"]
    assert _render(diagnostic["value_template"], json.dumps({"source": "unavailable: no device"})) == "ON"
    storage = by_object["storage_problem"]
    for outbox, state in (("durable", "OFF"), ("memory", "OFF"), ("degraded: database or disk is full", "ON")):
        assert _render(storage["value_template"], json.dumps({"source": "ok", "outbox": outbox})) == state
        assert json.loads(_render(storage["json_attributes_template"], json.dumps({"outbox": outbox}))) == {
            "outbox": outbox}
    assert _render(storage["value_template"], json.dumps(stats)) == "OFF"  # stats of an older version


def _replayed_events(clips: list[Path]) -> list[EmotionEvent]:
    import contextlib
    import io

    out = io.StringIO()
    settings = parse_settings({"model": {"path": str(SHIPPED_MODEL)}})
    with contextlib.redirect_stdout(out):
        assert run_replay(settings, clips, "stdout", False, StopFlag()) == 0
    return [EmotionEvent.from_json(line) for line in out.getvalue().splitlines()]


# ----------------------------------------------------------------------------------------- broker


def _settings(broker, device_id: str, state_directory: str = "", **homeassistant: object):
    return parse_settings({"device_id": device_id, "model": {"path": str(SHIPPED_MODEL)},
                           "state_directory": state_directory,
                           "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.2,
                                    "reconnect_max_s": 0.5},
                           "homeassistant": homeassistant})


def _retained(broker, mqtt_subscriber, expected: int) -> dict[str, dict]:
    """The retained configs on the broker now (a fresh subscriber gets exactly those)."""
    late = mqtt_subscriber(broker.host, broker.port, "homeassistant/+/+/+/config")
    messages = late.wait_for(expected, WAIT_S) if expected else []
    return {m.topic: json.loads(m.payload) for m in messages if m.payload}


@pytest.mark.slow
def test_replay_with_an_explicit_id_publishes_retained_configs(mosquitto, mqtt_subscriber, monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert run_replay(_settings(mosquitto, "kitchen.pi"), CLIPS[:1], "mqtt", False, StopFlag()) == 0
    n = N_CONFIGS
    configs = _retained(mosquitto, mqtt_subscriber, n)
    assert len(configs) == n
    for topic, config in configs.items():
        check_config(topic, config)
    remembered = json.loads((tmp_path / "state" / "homeassistant-discovery.json").read_text())
    assert remembered["devices"] == {"kitchen.pi": sorted(configs)}


@pytest.mark.slow
def test_a_changed_device_id_leaves_the_old_configs_and_disabled_discovery_removes_its_own(
        mosquitto, mqtt_subscriber, monkeypatch, tmp_path, caplog):
    """A daemon removes only configs it published under its own device id: a renamed device's old
    entities stay (named in one warning, for the user to delete in Home Assistant); disabling
    discovery removes this device's."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    watcher = mqtt_subscriber(mosquitto.host, mosquitto.port, "homeassistant/#")
    assert run_replay(_settings(mosquitto, "old-name"), CLIPS[:1], "mqtt", False, StopFlag()) == 0
    n = N_CONFIGS
    old = set(_retained(mosquitto, mqtt_subscriber, n))
    assert all(node_id("old-name") in t for t in old)

    caplog.clear()
    assert run_replay(_settings(mosquitto, "new-name"), CLIPS[:1], "mqtt", False, StopFlag()) == 0
    assert not [m for m in watcher.wait_for(n + n, WAIT_S) if not m.payload]
    now = _retained(mosquitto, mqtt_subscriber, 2 * n)
    assert set(now) >= old and len(now) == 2 * n
    assert [r for r in caplog.records if "'old-name'" in r.getMessage() and "left in place" in r.getMessage()]

    assert run_replay(_settings(mosquitto, "new-name", enabled=False), CLIPS[:1], "mqtt", False, StopFlag()) == 0
    removed_now = {m.topic for m in watcher.wait_for(3 * n, WAIT_S)[-n:] if not m.payload}
    assert removed_now == set(now) - old
    assert set(_retained(mosquitto, mqtt_subscriber, n)) == old


@pytest.mark.slow
def test_a_cloned_state_directory_never_removes_the_other_devices_configs(mosquitto, mqtt_subscriber,
                                                                          monkeypatch, tmp_path):
    """Issue 18 item 6: device ha1 publishes its configs; a replay as ``clone`` with ha1's memory file
    in its state directory (a cloned SD card) leaves ha1's retained configs in place, and the memory
    file then holds both devices, each under its own id."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    ha1_state, clone_state = tmp_path / "ha1", tmp_path / "clone"
    assert run_replay(_settings(mosquitto, "ha1", str(ha1_state)), CLIPS[:1], "mqtt", False, StopFlag()) == 0
    n = N_CONFIGS
    ha1 = _retained(mosquitto, mqtt_subscriber, n)
    assert len(ha1) == n and all(node_id("ha1") in t for t in ha1)
    clone_state.mkdir()
    shutil.copy(ha1_state / STATE_FILE_NAME, clone_state / STATE_FILE_NAME)

    watcher = mqtt_subscriber(mosquitto.host, mosquitto.port, "homeassistant/#")
    watcher.wait_for(n, WAIT_S)  # ha1's retained configs, delivered on subscribe
    assert run_replay(_settings(mosquitto, "clone", str(clone_state)), CLIPS[:1], "mqtt", False, StopFlag()) == 0
    assert not [m for m in watcher.wait_for(2 * n, WAIT_S) if not m.payload]
    now = _retained(mosquitto, mqtt_subscriber, 2 * n)
    assert {t: c for t, c in now.items() if node_id("ha1") in t} == ha1
    assert len([t for t in now if node_id("clone") in t]) == n
    memory = json.loads((clone_state / STATE_FILE_NAME).read_text())["devices"]
    assert memory == {"ha1": sorted(ha1), "clone": sorted(t for t in now if node_id("clone") in t)}


@pytest.mark.slow
def test_discovery_memory_follows_state_directory_outside_systemd(mosquitto, mqtt_subscriber, monkeypatch,
                                                                  tmp_path):
    """No $STATE_DIRECTORY (not under systemd), ``state_directory`` configured: the memory of the published
    configs lands there, keyed by device id, so disabling discovery later removes them (the bug: it was
    kept only under $STATE_DIRECTORY, and the entities stayed orphaned in Home Assistant)."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    state = tmp_path / "configured-state"
    watcher = mqtt_subscriber(mosquitto.host, mosquitto.port, "homeassistant/#")
    assert run_replay(_settings(mosquitto, "name", str(state)), CLIPS[:1], "mqtt", False, StopFlag()) == 0
    n = N_CONFIGS
    old = set(_retained(mosquitto, mqtt_subscriber, n))
    assert json.loads((state / STATE_FILE_NAME).read_text())["devices"] == {"name": sorted(old)}

    assert run_replay(_settings(mosquitto, "name", str(state), enabled=False), CLIPS[:1], "mqtt", False,
                      StopFlag()) == 0
    removals = [m for m in watcher.wait_for(2 * n, WAIT_S) if not m.payload]
    assert {m.topic for m in removals} == old
    assert json.loads((state / STATE_FILE_NAME).read_text())["devices"] == {"name": []}


@pytest.mark.slow
def test_replay_without_a_device_id_never_speaks_for_the_live_device(mosquitto, mqtt_subscriber):
    """No explicit id: events as ``<host>-replay``; no status, stats or discovery at all."""
    everything = mqtt_subscriber(mosquitto.host, mosquitto.port, "#")
    settings = parse_settings({"model": {"path": str(SHIPPED_MODEL)},
                               "mqtt": {"host": mosquitto.host, "port": mosquitto.port}})
    assert run_replay(settings, CLIPS[:1], "mqtt", False, StopFlag()) == 0
    received = everything.wait_for(1, WAIT_S)
    replay_id = settings.resolved_device_id + "-replay"
    assert received[0].topic == emotion_topic("ser", replay_id)
    marker = mqtt_subscriber(mosquitto.host, mosquitto.port, "#")  # a late subscriber sees every retained message
    publish.single("test/marker", "x", hostname=mosquitto.host, port=mosquitto.port, qos=1)
    marker.wait_for(1, WAIT_S, topic="test/marker")
    assert [m.topic for m in marker.messages()] == ["test/marker"]  # nothing retained
    assert {m.topic for m in everything.messages()} <= {emotion_topic("ser", replay_id), "test/marker"}


def test_a_burst_of_home_assistant_birth_messages_gives_at_most_two_republishes(mosquitto, mqtt_subscriber,
                                                                              manifest) -> None:
    """500 birth messages right after the connect's publication: one republish, deferred to the end
    of the interval, and none more. (The interval's clock is frozen at the connect, so a slow machine
    cannot let it expire in the middle of the burst; the deferral itself waits for real.)"""
    configs = _configs(manifest)
    discovery = HomeAssistantDiscovery("homeassistant", configs, republish_min_interval_s=1.0, clock=lambda: 0.0)
    publisher = MqttPublisher(MqttSettings(host=mosquitto.host, port=mosquitto.port), "kitchen.pi")
    watcher = mqtt_subscriber(mosquitto.host, mosquitto.port, "homeassistant/+/+/+/config")
    discovery.attach(publisher)
    drained = threading.Event()
    publisher.subscribe("test/drained", lambda topic, payload: drained.set())
    publisher.start()
    try:
        watcher.wait_for(len(configs), WAIT_S)  # the set sent on connect
        publish.multiple([("homeassistant/status", "online", 1, False)] * 500 + [("test/drained", "x", 1, False)],
                         hostname=mosquitto.host, port=mosquitto.port)
        assert drained.wait(WAIT_S)  # the publisher has seen every birth message (one connection, in order)
        watcher.wait_for(2 * len(configs), WAIT_S)  # the deferred republish
        assert not discovery.republish_pending  # fired, and nothing else is pending
        assert len(watcher.messages()) == 2 * len(configs)
    finally:
        discovery.cancel()
        publisher.close()


def _slug(text: str) -> str:
    """Home Assistant's entity-id slug (``homeassistant.util.slugify`` for ASCII names)."""
    import re

    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


@pytest.mark.slow
def test_readme_automation_uses_the_discovered_event_entity_and_its_event_types(manifest) -> None:
    """The README's example automation: valid YAML, triggered by the event entity Home Assistant
    makes from our config (entity id = device name + entity name), on an event type it declares."""
    import re

    import yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- automation:.*?-->\n```yaml\n(.*?)```", readme, re.DOTALL).group(1)
    [automation] = yaml.safe_load(block)["automation"]
    [trigger] = automation["triggers"]
    configs = discovery_configs("homeassistant", "ser", "kitchen-pi", manifest.model_id, __version__, manifest.labels)
    [event] = [c for t, c in configs.items() if t.split("/")[1] == "event"]
    assert trigger["trigger"] == "state"
    assert trigger["entity_id"] == f"event.{_slug(event['device']['name'] + ' ' + event['name'])}"
    wanted = re.findall(r"event_type == '(\w+)'", automation["conditions"][0]["value_template"])
    assert wanted and set(wanted) <= set(event["event_types"])
    fired = json.loads(_render(event["value_template"], _replayed_events(CLIPS[:1])[0].to_json()))
    assert "confidence" in fired  # the attribute the condition reads
