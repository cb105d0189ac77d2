"""MQTT topics and their constants: every topic the device publishes on or subscribes to is built here.

* ``{prefix}/{device_id}/emotion``: one event per utterance (QoS 1, :mod:`edge.events`);
* ``{prefix}/{device_id}/status``: retained ``online``/``offline`` (``offline`` is also the last will);
* ``{prefix}/{device_id}/stats``: retained periodic statistics (:mod:`edge.service.stats`);
* ``{prefix}/{device_id}/mood``: retained mood state, smoothed arousal and its level (:mod:`edge.mood`).

Home Assistant's discovery topics are :mod:`edge.mqtt.homeassistant`'s.
"""

from __future__ import annotations

from edge.validate import expect_topic_level

EMOTION_SUBTOPIC = "emotion"
STATUS_SUBTOPIC = "status"
STATS_SUBTOPIC = "stats"
MOOD_SUBTOPIC = "mood"

STATUS_ONLINE = "online"
"""Retained birth message on the status topic."""
STATUS_OFFLINE = "offline"
"""Retained message on the status topic on clean shutdown, and the last will."""
STATUS_VALUES = (STATUS_ONLINE, STATUS_OFFLINE)

EMOTION_QOS = 1
"""QoS of emotion events and status messages: at least once."""

SUBSCRIBE_QOS = 1
"""QoS of the subscriptions the device and ``ser-edge listen`` make."""


def check_topic_parts(prefix: str, device_id: str) -> None:
    """Raise ``ValueError`` unless ``prefix``/``device_id`` form a valid, wildcard-free topic
    (:func:`edge.validate.expect_topic_level`)."""
    expect_topic_level(prefix, "topic prefix", levels=True)
    expect_topic_level(device_id, "device_id")


def emotion_topic(prefix: str, device_id: str) -> str:
    """Topic of the emotion events of one device: ``f"{prefix}/{device_id}/emotion"``.

    :raises ValueError: if ``prefix`` is empty, starts/ends with '/' or holds a wildcard, or if
        ``device_id`` is empty or holds '/', '+', '#'.
    """
    check_topic_parts(prefix, device_id)
    return f"{prefix}/{device_id}/{EMOTION_SUBTOPIC}"


def status_topic(prefix: str, device_id: str) -> str:
    """Availability topic of one device (retained ``online``/``offline``): ``.../status``.

    :raises ValueError: as :func:`emotion_topic`.
    """
    check_topic_parts(prefix, device_id)
    return f"{prefix}/{device_id}/{STATUS_SUBTOPIC}"


def stats_topic(prefix: str, device_id: str) -> str:
    """Statistics topic of one device: ``.../stats``.

    :raises ValueError: as :func:`emotion_topic`.
    """
    check_topic_parts(prefix, device_id)
    return f"{prefix}/{device_id}/{STATS_SUBTOPIC}"


def mood_topic(prefix: str, device_id: str) -> str:
    """Retained mood state of one device (:mod:`edge.mood`): ``.../mood``.

    :raises ValueError: as :func:`emotion_topic`.
    """
    check_topic_parts(prefix, device_id)
    return f"{prefix}/{device_id}/{MOOD_SUBTOPIC}"
