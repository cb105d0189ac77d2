"""Home Assistant MQTT discovery: two sensors per device, created by Home Assistant by itself.

Per https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery, a retained config on
``<discovery_prefix>/sensor/<node_id>/<object_id>/config`` describes one entity. ser-edge publishes:

* ``.../sensor/<node_id>/emotion/config``: the label of the latest event
  (``{{ value_json.label }}``), with the event's ``scores`` as attributes;
* ``.../sensor/<node_id>/emotion_confidence/config``: its confidence in %
  (``{{ (value_json.confidence * 100) | round(0) }}``).

Both read the emotion topic and are available while the status topic says ``online`` (retained,
with ``offline`` as last will). The configs are published on every (re)connect and again when Home
Assistant's birth message ``online`` arrives on ``<discovery_prefix>/status`` (it forgets
entities it does not hear about after its own restart, if the configs were not retained).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from edge.events import EMOTION_QOS, STATUS_OFFLINE, STATUS_ONLINE, emotion_topic, status_topic

logger = logging.getLogger(__name__)

COMPONENT = "sensor"
LABEL_OBJECT_ID = "emotion"
CONFIDENCE_OBJECT_ID = "emotion_confidence"
HA_STATUS_SUBTOPIC = "status"
"""Home Assistant publishes its birth (``online``) and last will (``offline``) on ``<discovery_prefix>/status``."""
HA_ONLINE = "online"
MANUFACTURER = "ser-edge"

LABEL_TEMPLATE = "{{ value_json.label }}"
CONFIDENCE_TEMPLATE = "{{ (value_json.confidence * 100) | round(0) }}"
SCORES_TEMPLATE = "{{ value_json.scores | tojson }}"

_NODE_ID_FORBIDDEN = re.compile(r"[^a-zA-Z0-9_-]")


def node_id(device_id: str) -> str:
    """The discovery ``node_id`` of a device: its id with anything but ``[a-zA-Z0-9_-]`` as ``_``."""
    return _NODE_ID_FORBIDDEN.sub("_", device_id)


def config_topic(discovery_prefix: str, device_id: str, object_id: str) -> str:
    """``<discovery_prefix>/sensor/<node_id>/<object_id>/config``."""
    return f"{discovery_prefix}/{COMPONENT}/{node_id(device_id)}/{object_id}/config"


def discovery_configs(discovery_prefix: str, topic_prefix: str, device_id: str, model: str,
                      version: str) -> dict[str, dict[str, Any]]:
    """Config topic -> config payload (a dict, to be sent as JSON) for each sensor of the device.

    :param model: the events' ``model`` field (``name@sha256prefix``), shown as the device's model.
    :param version: ser-edge's version, shown as the device's software version.
    :raises ValueError: as :func:`edge.events.emotion_topic` for a bad prefix or device id.
    """
    state = emotion_topic(topic_prefix, device_id)
    node = node_id(device_id)
    common = {
        "state_topic": state,
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
    }
    label = {
        "name": "Emotion",
        "unique_id": f"ser-edge-{node}-{LABEL_OBJECT_ID}",
        "value_template": LABEL_TEMPLATE,
        "json_attributes_topic": state,
        "json_attributes_template": SCORES_TEMPLATE,
        "icon": "mdi:emoticon-outline",
        **common,
    }
    confidence = {
        "name": "Emotion confidence",
        "unique_id": f"ser-edge-{node}-{CONFIDENCE_OBJECT_ID}",
        "value_template": CONFIDENCE_TEMPLATE,
        "unit_of_measurement": "%",
        "state_class": "measurement",
        "icon": "mdi:gauge",
        **common,
    }
    return {
        config_topic(discovery_prefix, device_id, LABEL_OBJECT_ID): label,
        config_topic(discovery_prefix, device_id, CONFIDENCE_OBJECT_ID): confidence,
    }


class HomeAssistantDiscovery:
    """Publishes the retained discovery configs through an :class:`edge.publisher.MqttPublisher`.

    :meth:`attach` (before the publisher starts) hooks :meth:`publish_configs` to every (re)connect
    and subscribes to Home Assistant's status topic, republishing on its birth message.
    """

    def __init__(self, discovery_prefix: str, topic_prefix: str, device_id: str, model: str, version: str) -> None:
        self.discovery_prefix = discovery_prefix
        self.ha_status_topic = f"{discovery_prefix}/{HA_STATUS_SUBTOPIC}"
        self.configs = {topic: json.dumps(config, separators=(",", ":"))
                        for topic, config in discovery_configs(discovery_prefix, topic_prefix, device_id,
                                                               model, version).items()}
        self._publisher = None
        self.published = 0
        """Times the set of configs was published."""

    def attach(self, publisher) -> None:
        """Wire into ``publisher``: configs on every connect and on Home Assistant's ``online``."""
        self._publisher = publisher
        publisher.add_on_connected(self.publish_configs)
        publisher.subscribe(self.ha_status_topic, self._on_ha_status)

    def publish_configs(self) -> None:
        """Publish every config, retained, QoS 1."""
        if self._publisher is None:
            raise RuntimeError("expected attach(publisher) before publish_configs()")
        for topic, payload in self.configs.items():
            self._publisher.publish_raw(topic, payload, retain=True, qos=EMOTION_QOS)
        self.published += 1
        logger.debug("published %d Home Assistant discovery configs under %s/", len(self.configs),
                     self.discovery_prefix)

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.decode("utf-8", errors="replace").strip() == HA_ONLINE:
            logger.info("Home Assistant is online (%s); republishing discovery configs", topic)
            self.publish_configs()
