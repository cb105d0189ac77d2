"""Home Assistant MQTT discovery: the device's entities, created by Home Assistant by itself.

Per https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery, a retained config on
``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` describes one entity; an empty
retained payload on the same topic removes it. ser-edge publishes, for one device:

* ``event/<node>/emotion``: an **event** entity (https://www.home-assistant.io/integrations/event.mqtt/)
  that fires on every utterance, even when the label repeats. ``event_types`` are the model's
  labels plus ``"unsure"``; the event type is ``"unsure"`` when the event's ``unsure`` is true,
  else its label; confidence, scores, arousal, valence and the utterance's times are attributes.
* ``sensor/<node>/emotion_label``: the latest outcome as a ``device_class: enum`` sensor with
  ``options`` (so the automation editor offers the list), ``expire_after`` seconds (it becomes
  unavailable when nobody spoke for that long) and the scores as attributes.
* ``sensor/<node>/emotion_confidence``: its confidence in %.
* ``sensor/<node>/arousal`` and ``sensor/<node>/valence`` (in [-1, 1]), only when the model's
  manifest lists those ``dimensions``.
* ``sensor/<node>/mood``: the mood level (``calm``, ``neutral``, ``agitated``) as an enum sensor
  reading the retained ``.../mood`` topic (:mod:`edge.mood`), the smoothed arousal as the attribute
  ``arousal``; only with an arousal output and ``[mood] enabled``. No ``expire_after``: the mood
  relaxes to ``neutral`` in silence by itself.
* ``binary_sensor/<node>/audio_problem``: a diagnostic entity (``device_class: problem``), on
  while the audio source is not delivering (from the ``stats`` topic's ``source``; only when
  statistics are published).
* ``binary_sensor/<node>/storage_problem``: a diagnostic entity (``device_class: problem``), on
  while the event outbox is degraded to memory by a storage error such as a full disk (from the
  ``stats`` topic's ``outbox``, its reason as an attribute; only when statistics are published).

Every config has an ``origin`` block, the ``device`` block and availability on the status topic.
``node_id`` is the device id made topic-safe plus a short sha256 of the device id, so two ids that
sanitise alike never share one. Configs are sent on every (re)connect and when Home Assistant's
birth message (``online`` on ``<discovery_prefix>/status``) arrives, at most once per
:data:`REPUBLISH_MIN_INTERVAL_S` (a burst of birth messages gives one republish now and one at the
end of the interval). When discovery is disabled, its retained configs are removed with empty
payloads; with a state directory the topics published last are remembered per device id
(:func:`state_file`), and a daemon removes only configs it published itself under its own device id
(e.g. the arousal/valence sensors of a previous model, or all of them when discovery is disabled).
Configs remembered under another device id are left in place and named in one log line: a cloned SD
card (another device's memory file) must not delete that device's entities, and a renamed device's
old entities are removed in Home Assistant (device page, "Delete"), not guessed at here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.events import UNSURE_EVENT_TYPE
from edge.mood import LEVELS
from edge.mqtt.topics import (
    EMOTION_QOS,
    STATUS_OFFLINE,
    STATUS_ONLINE,
    emotion_topic,
    mood_topic,
    stats_topic,
    status_topic,
)
from edge.validate import atomic_write_text

if TYPE_CHECKING:
    from edge.manifest import ModelManifest
    from edge.settings import Settings

logger = logging.getLogger(__name__)

HA_STATUS_SUBTOPIC = "status"
"""Home Assistant publishes its birth (``online``) and last will (``offline``) on ``<discovery_prefix>/status``."""
HA_ONLINE = "online"
MANUFACTURER = "ser-edge"
ORIGIN_NAME = "ser-edge"

EVENT_OBJECT_ID = "emotion"
LABEL_OBJECT_ID = "emotion_label"
CONFIDENCE_OBJECT_ID = "emotion_confidence"
AUDIO_PROBLEM_OBJECT_ID = "audio_problem"
STORAGE_PROBLEM_OBJECT_ID = "storage_problem"
MOOD_OBJECT_ID = "mood"

NODE_HASH_CHARS = 8
"""Hex digits of sha256(device id) appended to the node id (32 bits: a collision between two
devices of one home is practically impossible, and the readable part tells them apart anyway)."""
NODE_READABLE_CHARS = 32
"""At most this many characters of the sanitised device id lead the node id."""

REPUBLISH_MIN_INTERVAL_S = 30.0
"""Home Assistant's birth message triggers at most one republish of the configs per this many seconds."""

DEFAULT_EXPIRE_AFTER_S = 300
"""Default ``expire_after`` of the emotion sensors: unavailable after 5 minutes without speech."""

STATE_FILE_NAME = "homeassistant-discovery.json"
LEGACY_UNKNOWN_DEVICE = "(unknown: earlier file format)"
"""The memory file's key for topics of the earlier format that belong to another device id."""

EVENT_TEMPLATE = (
    "{{ {'event_type': ('" + UNSURE_EVENT_TYPE + "' if value_json.unsure else value_json.label), "
    "'label': value_json.label, 'confidence': value_json.confidence, 'scores': value_json.scores, "
    "'arousal': value_json.arousal, 'valence': value_json.valence, "
    "'start_time': value_json.start_time, 'end_time': value_json.end_time, "
    "'session': value_json.session, 'seq': value_json.seq} | tojson }}"
)
"""Renders the event payload into the JSON Home Assistant's MQTT event expects: ``event_type`` plus attributes."""
LABEL_TEMPLATE = "{{ '" + UNSURE_EVENT_TYPE + "' if value_json.unsure else value_json.label }}"
CONFIDENCE_TEMPLATE = "{{ (value_json.confidence * 100) | round(0) }}"
ATTRIBUTES_TEMPLATE = (
    "{{ {'label': value_json.label, 'confidence': value_json.confidence, 'unsure': value_json.unsure, "
    "'scores': value_json.scores, 'start_time': value_json.start_time, 'end_time': value_json.end_time} "
    "| tojson }}"
)
MOOD_TEMPLATE = "{{ value_json.level }}"
MOOD_ATTRIBUTES_TEMPLATE = (
    "{{ {'arousal': value_json.arousal_ema, 'utterances': value_json.utterances, 'tau_s': value_json.tau_s, "
    "'time': value_json.time} | tojson }}"
)
"""The mood sensor's attributes: the smoothed arousal (``arousal``), how many utterances, the time constant."""
AUDIO_PROBLEM_TEMPLATE = "{{ 'OFF' if value_json.source in ('ok', 'file') else 'ON' }}"
AUDIO_ATTRIBUTES_TEMPLATE = "{{ {'source': value_json.source} | tojson }}"
STORAGE_PROBLEM_TEMPLATE = "{{ 'ON' if (value_json.outbox | default('')).startswith('degraded') else 'OFF' }}"
STORAGE_ATTRIBUTES_TEMPLATE = "{{ {'outbox': value_json.outbox | default(none)} | tojson }}"

_NODE_ID_FORBIDDEN = re.compile(r"[^a-zA-Z0-9_-]")


def node_id(device_id: str) -> str:
    """The discovery ``node_id`` of a device: its id with anything but ``[a-zA-Z0-9_-]`` as ``_``
    (at most :data:`NODE_READABLE_CHARS`), ``_``, and the first :data:`NODE_HASH_CHARS` hex digits
    of the sha256 of the UTF-8 device id: ``kitchen-pi_1a2b3c4d``."""
    readable = _NODE_ID_FORBIDDEN.sub("_", device_id)[:NODE_READABLE_CHARS]
    digest = hashlib.sha256(device_id.encode("utf-8")).hexdigest()[:NODE_HASH_CHARS]
    return f"{readable}_{digest}"


def config_topic(discovery_prefix: str, component: str, device_id: str, object_id: str) -> str:
    """``<discovery_prefix>/<component>/<node_id>/<object_id>/config``."""
    return f"{discovery_prefix}/{component}/{node_id(device_id)}/{object_id}/config"


def discovery_configs(discovery_prefix: str, topic_prefix: str, device_id: str, model: str, version: str,
                      labels: tuple[str, ...] | list[str], dimensions: tuple[str, ...] | list[str] = (),
                      expire_after_s: int = DEFAULT_EXPIRE_AFTER_S,
                      audio_diagnostic: bool = True, mood: bool = False) -> dict[str, dict[str, Any]]:
    """Config topic -> config payload (a dict, to be sent as JSON) for each entity of the device.

    :param model: the events' ``model`` field (``name@sha256prefix``), shown as the device's model.
    :param version: ser-edge's version (device ``sw_version`` and ``origin.sw_version``).
    :param labels: the model's labels, in the manifest's order (``options``/``event_types``).
    :param dimensions: the manifest's continuous outputs; ``arousal``/``valence`` get a sensor each.
    :param expire_after_s: ``expire_after`` of the emotion sensors, seconds; 0 = never expire (omitted).
    :param audio_diagnostic: add the audio-problem diagnostic (needs the stats topic).
    :param mood: add the mood sensor (an enum: calm, neutral, agitated; the smoothed arousal as the
        attribute ``arousal``), reading the retained mood topic (:mod:`edge.mood`).
    :raises ValueError: as :func:`edge.mqtt.topics.emotion_topic` for a bad prefix or device id, or
        ``expire_after_s`` < 0.
    """
    if isinstance(expire_after_s, bool) or not isinstance(expire_after_s, int) or expire_after_s < 0:
        raise ValueError(f"expected expire_after_s >= 0 (integer seconds), got {expire_after_s!r}")
    state = emotion_topic(topic_prefix, device_id)
    node = node_id(device_id)
    outcomes = [*labels, UNSURE_EVENT_TYPE]
    common: dict[str, Any] = {
        "availability_topic": status_topic(topic_prefix, device_id),
        "payload_available": STATUS_ONLINE,
        "payload_not_available": STATUS_OFFLINE,
        "qos": EMOTION_QOS,
        "device": {
            "identifiers": [f"ser-edge-{node}"],
            "name": f"ser-edge {device_id}",
            "model": model,
            "manufacturer": MANUFACTURER,
            "sw_version": version,
        },
        "origin": {"name": ORIGIN_NAME, "sw_version": version},
    }
    expire = {"expire_after": expire_after_s} if expire_after_s else {}

    def uid(object_id: str) -> str:
        return f"ser-edge-{node}-{object_id}"

    configs: dict[str, dict[str, Any]] = {
        config_topic(discovery_prefix, "event", device_id, EVENT_OBJECT_ID): {
            "name": "Emotion",
            "unique_id": uid(EVENT_OBJECT_ID),
            "state_topic": state,
            "value_template": EVENT_TEMPLATE,
            "event_types": outcomes,
            "icon": "mdi:emoticon-outline",
            **common,
        },
        config_topic(discovery_prefix, "sensor", device_id, LABEL_OBJECT_ID): {
            "name": "Latest emotion",
            "unique_id": uid(LABEL_OBJECT_ID),
            "state_topic": state,
            "value_template": LABEL_TEMPLATE,
            "device_class": "enum",
            "options": outcomes,
            "force_update": True,
            "json_attributes_topic": state,
            "json_attributes_template": ATTRIBUTES_TEMPLATE,
            "icon": "mdi:emoticon-outline",
            **expire,
            **common,
        },
        config_topic(discovery_prefix, "sensor", device_id, CONFIDENCE_OBJECT_ID): {
            "name": "Emotion confidence",
            "unique_id": uid(CONFIDENCE_OBJECT_ID),
            "state_topic": state,
            "value_template": CONFIDENCE_TEMPLATE,
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "icon": "mdi:gauge",
            **expire,
            **common,
        },
    }
    for dimension in ("arousal", "valence"):
        if dimension in dimensions:
            configs[config_topic(discovery_prefix, "sensor", device_id, dimension)] = {
                "name": dimension.capitalize(),
                "unique_id": uid(dimension),
                "state_topic": state,
                "value_template": f"{{{{ value_json.{dimension} }}}}",
                "state_class": "measurement",
                "suggested_display_precision": 2,
                "icon": "mdi:chart-bell-curve",
                **expire,
                **common,
            }
    if mood:
        moods = mood_topic(topic_prefix, device_id)
        configs[config_topic(discovery_prefix, "sensor", device_id, MOOD_OBJECT_ID)] = {
            "name": "Mood",
            "unique_id": uid(MOOD_OBJECT_ID),
            "state_topic": moods,
            "value_template": MOOD_TEMPLATE,
            "device_class": "enum",
            "options": list(LEVELS),
            "json_attributes_topic": moods,
            "json_attributes_template": MOOD_ATTRIBUTES_TEMPLATE,
            "icon": "mdi:account-voice",
            **common,
        }
    if audio_diagnostic:
        stats = stats_topic(topic_prefix, device_id)
        configs[config_topic(discovery_prefix, "binary_sensor", device_id, AUDIO_PROBLEM_OBJECT_ID)] = {
            "name": "Audio input problem",
            "unique_id": uid(AUDIO_PROBLEM_OBJECT_ID),
            "state_topic": stats,
            "value_template": AUDIO_PROBLEM_TEMPLATE,
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "problem",
            "entity_category": "diagnostic",
            "json_attributes_topic": stats,
            "json_attributes_template": AUDIO_ATTRIBUTES_TEMPLATE,
            **common,
        }
        configs[config_topic(discovery_prefix, "binary_sensor", device_id, STORAGE_PROBLEM_OBJECT_ID)] = {
            "name": "Event storage problem",
            "unique_id": uid(STORAGE_PROBLEM_OBJECT_ID),
            "state_topic": stats,
            "value_template": STORAGE_PROBLEM_TEMPLATE,
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "problem",
            "entity_category": "diagnostic",
            "json_attributes_topic": stats,
            "json_attributes_template": STORAGE_ATTRIBUTES_TEMPLATE,
            **common,
        }
    return configs


def state_file(state_dir: str | Path | None) -> Path | None:
    """Where the config topics published last are remembered: ``state_dir`` (the daemon's state
    directory, ``Settings.state_dir``: ``state_directory``, else ``$STATE_DIRECTORY``) /
    ``homeassistant-discovery.json``; ``None`` without a state directory.

    The file is ``{"devices": {"<device id>": ["<config topic>", ...]}}``: each daemon reads and
    rewrites only its own device id's entry and keeps the others as they are. (The earlier format,
    ``{"topics": [...]}``, is read as the topics of whichever device id their node id belongs to.)"""
    return Path(state_dir) / STATE_FILE_NAME if state_dir else None


def _topic_node(topic: str) -> str | None:
    """The ``node_id`` part of ``<prefix>/<component>/<node_id>/<object_id>/config``."""
    parts = topic.split("/")
    return parts[-3] if len(parts) >= 4 and parts[-1] == "config" else None


class HomeAssistantDiscovery:
    """Publishes (or removes) the retained discovery configs through an :class:`edge.mqtt.publisher.MqttPublisher`.

    :meth:`attach` (before the publisher starts) hooks :meth:`publish_configs` to every (re)connect
    and, when enabled, subscribes to Home Assistant's status topic, republishing on its birth
    message at most once per ``republish_min_interval_s``.
    """

    def __init__(self, discovery_prefix: str, configs: dict[str, dict[str, Any]], enabled: bool = True,
                 memory: Path | None = None, republish_min_interval_s: float = REPUBLISH_MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, device_id: str = "") -> None:
        """:param configs: from :func:`discovery_configs` (needed also when disabled: they are removed).
        :param memory: state file remembering the topics published last, per device id (None: no memory).
        :param device_id: the device id ``configs`` were made for: the key of this daemon's entry in
            ``memory``; only topics remembered under it are ever removed.
        :raises ValueError: for a ``memory`` without a ``device_id``.
        """
        if memory is not None and not device_id:
            raise ValueError("expected the device id that keys the discovery memory, got none")
        self.discovery_prefix = discovery_prefix
        self.device_id = device_id
        self.enabled = enabled
        self.ha_status_topic = f"{discovery_prefix}/{HA_STATUS_SUBTOPIC}"
        self.configs = {topic: json.dumps(config, separators=(",", ":")) for topic, config in configs.items()}
        self.memory = memory
        self.republish_min_interval_s = republish_min_interval_s
        self._clock = clock
        self._publisher = None
        self._lock = threading.Lock()
        self._last_publish = -float("inf")
        self._deferred: threading.Timer | None = None
        self._removed = False
        self._others_logged = False

    @classmethod
    def for_settings(cls, settings: Settings, device_id: str, manifest: ModelManifest,
                     version: str) -> HomeAssistantDiscovery:
        """The discovery of a daemon with ``settings`` (``[homeassistant]``), for ``device_id`` and the model."""
        ha = settings.homeassistant
        configs = discovery_configs(
            ha.discovery_prefix, settings.mqtt.topic_prefix, device_id, manifest.model_id, version,
            manifest.labels, manifest.dimensions, expire_after_s=ha.expire_after_s,
            audio_diagnostic=settings.mqtt.stats_interval_s > 0,
            mood=settings.mood.enabled and "arousal" in manifest.dimensions)
        return cls(ha.discovery_prefix, configs, enabled=ha.enabled, memory=state_file(settings.state_dir),
                   device_id=device_id)

    def attach(self, publisher) -> None:
        """Wire into ``publisher``: configs (or their removal) on every connect, and on Home
        Assistant's ``online`` when enabled."""
        self._publisher = publisher
        publisher.add_on_connected(self.publish_configs)
        if self.enabled:
            publisher.subscribe(self.ha_status_topic, self._on_ha_status)

    def _read_memory(self) -> dict[str, list[str]]:
        """The memory file's ``{device id: [topics]}`` (empty if absent or unreadable; the earlier
        ``{"topics": [...]}`` format is attributed by node id: this device's topics to it, others kept
        under :data:`LEGACY_UNKNOWN_DEVICE`, never removed)."""
        if self.memory is None:
            return {}
        try:
            data = json.loads(self.memory.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        devices = data.get("devices")
        memory: dict[str, list[str]] = {}
        if isinstance(devices, dict):
            for device, topics in devices.items():
                if isinstance(device, str) and isinstance(topics, list):
                    memory[device] = [t for t in topics if isinstance(t, str)]
        legacy = data.get("topics")
        if isinstance(legacy, list):
            own = node_id(self.device_id)
            for topic in legacy:
                if isinstance(topic, str):
                    memory.setdefault(self.device_id if _topic_node(topic) == own else LEGACY_UNKNOWN_DEVICE, []).append(topic)
        return memory

    def _remembered(self, memory: dict[str, list[str]]) -> set[str]:
        """The topics this device id published last (under this discovery prefix and its node id)."""
        own = node_id(self.device_id)
        return {t for t in memory.get(self.device_id, [])
                if t.startswith(self.discovery_prefix + "/") and _topic_node(t) == own}

    def _remember(self, memory: dict[str, list[str]], topics: list[str]) -> None:
        if self.memory is None:
            return
        memory = {device: sorted(set(t)) for device, t in memory.items() if device != self.device_id}
        memory[self.device_id] = sorted(topics)
        try:
            self.memory.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.memory, json.dumps({"devices": memory}, sort_keys=True) + "\n")
        except OSError as exc:
            logger.warning("cannot remember the discovery topics in %s (%s); configs this device stops "
                           "publishing will stay in Home Assistant", self.memory, exc.strerror)

    def publish_configs(self) -> None:
        """Publish every config, retained, QoS 1 (or, when disabled, an empty retained payload on
        each, which removes the entity: once per process); also remove the configs remembered from a
        previous device id."""
        if self._publisher is None:
            raise RuntimeError("expected attach(publisher) before publish_configs()")
        with self._lock:
            self._last_publish = self._clock()
        current = set(self.configs) if self.enabled else set()
        if not self.enabled and self._removed:
            return  # disabled: the removal was sent on the first connect; nothing more under the prefix
        memory = self._read_memory()
        stale = (self._remembered(memory) | (set(self.configs) if not self.enabled else set())) - current
        for topic in sorted(stale):
            self._publisher.publish_raw(topic, b"", retain=True, qos=EMOTION_QOS)
        if current:
            for topic, payload in self.configs.items():
                self._publisher.publish_raw(topic, payload, retain=True, qos=EMOTION_QOS,
                                            what=f"the Home Assistant discovery config of entity {topic.split('/')[-2]!r} ({topic})")
        others = sorted(device for device, topics in memory.items() if device != self.device_id and topics)
        if others and not self._others_logged:
            self._others_logged = True
            logger.warning("%s also remembers Home Assistant discovery configs of device id%s %s; left in "
                           "place (this device removes only its own, %r: if that device is gone, delete it "
                           "in Home Assistant)", self.memory, "s" if len(others) > 1 else "",
                           ", ".join(repr(d) for d in others), self.device_id)
        self._remember(memory, sorted(current))
        self._removed = not self.enabled
        if stale:
            logger.info("removed %d Home Assistant discovery configs%s", len(stale),
                        "" if self.enabled else " (discovery disabled)")
        if current:
            logger.debug("published %d Home Assistant discovery configs under %s/", len(current),
                         self.discovery_prefix)

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.decode("utf-8", errors="replace").strip() != HA_ONLINE:
            return
        with self._lock:
            wait_s = self._last_publish + self.republish_min_interval_s - self._clock()
            if wait_s > 0:
                if self._deferred is None:  # one republish at the end of the interval covers the burst
                    self._deferred = threading.Timer(wait_s, self._deferred_publish)
                    self._deferred.daemon = True
                    self._deferred.start()
                    logger.info("Home Assistant is online (%s); republishing discovery configs in %.0f s",
                                topic, wait_s)
                return
        logger.info("Home Assistant is online (%s); republishing discovery configs", topic)
        self.publish_configs()

    def _deferred_publish(self) -> None:
        with self._lock:
            self._deferred = None
        self.publish_configs()

    @property
    def republish_pending(self) -> bool:
        """Whether a deferred republish (after a burst of Home Assistant birth messages) is waiting."""
        with self._lock:
            return self._deferred is not None

    def cancel(self) -> None:
        """Cancel a deferred republish (at shutdown)."""
        with self._lock:
            if self._deferred is not None:
                self._deferred.cancel()
                self._deferred = None
