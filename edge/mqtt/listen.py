"""``ser-edge listen``: subscribe to every device under a prefix and print their events and availability.

The consumer's side of :mod:`edge.mqtt.publisher`: one line per event (:func:`format_event_line`)
or its JSON, one per availability change.
"""

from __future__ import annotations

import logging
import secrets
import signal
import sys
import threading
import time
from typing import IO

import paho.mqtt.client as mqtt

from edge.events import EmotionEvent
from edge.exitcodes import EXIT_FAILURE, EXIT_OK
from edge.mqtt.client import (
    UNREACHABLE,
    Client,
    connect,
    describe_connect_error,
    describe_refusal,
    make_client,
    refuses_protocol,
    warn_password_in_clear,
)
from edge.mqtt.config import MqttSettings
from edge.mqtt.topics import EMOTION_SUBTOPIC, STATUS_SUBTOPIC, STATUS_VALUES, SUBSCRIBE_QOS, emotion_topic
from edge.validate import expect_topic_level, plural

logger = logging.getLogger(__name__)


def format_event_line(event: EmotionEvent) -> str:
    """One human-readable line for an event: utterance start (UTC) and length, device, session/seq,
    label, confidence, ``unsure``, arousal/valence if any, other labels in the model's order::

        2026-11-21T14:03:03.050Z +3.56s kitchen-pi 5f0c2a9be41d#42  angry 0.71 unsure  a=+0.40 v=-0.55  (neutral 0.03, ...)
    """
    others = ", ".join(f"{name} {p:.2f}" for name, p in event.scores.items() if name != event.label)
    dims = "".join(f"  {short}={value:+.2f}" for short, value in (("a", event.arousal), ("v", event.valence))
                   if value is not None)
    return (f"{event.start_time} +{event.end_s - event.start_s:.2f}s {event.device_id} {event.session}#{event.seq}  "
            f"{event.label} {event.confidence:.2f}{' unsure' if event.unsure else ''}{dims}  ({others})")


def _split_topic(prefix: str, topic: str) -> tuple[str, str]:
    """``"{prefix}/{device_id}/{subtopic}"`` -> ``(device_id, subtopic)``; ValueError otherwise."""
    head = prefix + "/"
    parts = topic[len(head):].split("/") if topic.startswith(head) else []
    if len(parts) != 2 or not parts[0]:
        raise ValueError(f"expected a topic {prefix}/DEVICE/SUBTOPIC, got {topic!r}")
    return parts[0], parts[1]


SHARE_PREFIX = "$share"
"""MQTT 5 shared subscriptions (mosquitto also grants them to 3.1.1 clients): ``$share/GROUP/filter``;
the broker gives each message to one subscriber of the group."""


def listen_filters(prefix: str, device_id: str | None = None, share: str | None = None) -> list[tuple[str, int]]:
    """The subscriptions of :func:`listen`: ``{prefix}/{device_id or +}/emotion`` (as
    ``$share/{share}/...`` when ``share`` is given) and ``{prefix}/{device_id or +}/status`` (never
    shared: every consumer sees availability, and brokers send no retained messages to shared ones).

    :raises ValueError: for a device id or group that is empty or holds '/', '+', '#' or NUL.
    """
    level = "+"
    if device_id is not None:
        emotion_topic(prefix, device_id)  # raises ValueError for an unusable device id
        level = device_id
    emotion = f"{prefix}/{level}/{EMOTION_SUBTOPIC}"
    if share is not None:
        expect_topic_level(share, "share group name")
        emotion = f"{SHARE_PREFIX}/{share}/{emotion}"
    return [(emotion, SUBSCRIBE_QOS), (f"{prefix}/{level}/{STATUS_SUBTOPIC}", SUBSCRIBE_QOS)]


def listen(settings: MqttSettings, as_json: bool, out: IO[str] | None = None,
           stop_after: int | None = None, timeout_s: float | None = None,
           device_id: str | None = None, share: str | None = None) -> int:
    """Print the emotion events and availability of every device under ``settings.topic_prefix``
    (or of ``device_id`` only).

    Subscribes (QoS 1, again after every reconnect) to :func:`listen_filters`: ``{prefix}/+/emotion``
    and ``{prefix}/+/status``; with ``share``, the events through the shared subscription
    ``$share/{share}/{prefix}/+/emotion``, so consumers of one group split the events between them.
    Events are printed with :func:`format_event_line`, or as their compact
    JSON with ``as_json``; availability as a ``kitchen-pi is online`` line, or with ``as_json`` as a log
    record (INFO, stderr) with the same text, so that ``as_json`` output holds nothing but the events'
    payloads as the devices published them, one a line. Malformed payloads are logged as warnings and
    skipped. An unreachable broker is retried; with ``timeout_s``, until it expires. A broker that
    refuses MQTT 5 (``mqtt.protocol = "5"``, the default) is listened to with 3.1.1 (one warning), as
    the publisher does.

    :param out: text stream for the lines; ``None`` means ``sys.stdout``.
    :param stop_after: return after this many events (status lines do not count); ``None``: never.
    :param timeout_s: return after this many seconds; ``None``: never.
    :returns: exit status: 0 when ``stop_after`` events arrived, on timeout without ``stop_after``
        (connected), or on Ctrl-C; 1 if the timeout expired before ``stop_after`` events, or without
        ever connecting (broker unreachable: one ERROR line), the broker refused the connection (bad
        credentials), or paho's network thread died.
    :raises ValueError: if ``stop_after`` < 1 or ``timeout_s`` <= 0, or as :func:`listen_filters`.
    """
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"expected stop_after >= 1 or None, got {stop_after!r}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"expected timeout_s > 0 or None, got {timeout_s!r}")
    stream = out if out is not None else sys.stdout
    prefix = settings.topic_prefix
    filters = listen_filters(prefix, device_id, share)
    done = threading.Event()
    lock = threading.Lock()
    state = {"events": 0, "refused": False, "failures": 0, "dead": False, "fallback": False,
             "protocol": settings.protocol, "connected": False, "unreachable": False, "other_failure": False}

    def write(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    def on_connect(client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                   reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        if refuses_protocol(reason_code, state["protocol"]):  # the main thread switches to 3.1.1
            state["fallback"] = True
            done.set()
            return
        if reason_code.is_failure:
            logger.error("connection to MQTT broker %s:%d failed: %s", settings.host, settings.port,
                         describe_refusal(reason_code, settings))
            state["refused"] = True
            done.set()
            return
        state["failures"] = 0
        state["connected"] = True
        client.on_log.reset()
        client.subscribe(filters)
        logger.info("listening on %s:%d to %s", settings.host, settings.port, ", ".join(f for f, _ in filters))

    def on_connect_fail(client: mqtt.Client, userdata: object) -> None:
        state["failures"] += 1
        failure = describe_connect_error(getattr(client, "last_connect_error", None), settings)
        level = (logging.DEBUG if state["failures"] > 1 else
                 logging.WARNING if failure == UNREACHABLE else logging.ERROR)
        state["unreachable"] |= failure == UNREACHABLE
        state["other_failure"] |= failure != UNREACHABLE
        if failure == UNREACHABLE:
            logger.log(level, "MQTT broker %s:%d unreachable; retrying", settings.host, settings.port)
        else:
            logger.log(level, "connection to MQTT broker %s:%d failed: %s; retrying", settings.host,
                       settings.port, failure)

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            device_id, subtopic = _split_topic(prefix, message.topic)
            if subtopic == STATUS_SUBTOPIC:
                if not message.payload:  # a retained status being cleared
                    return
                status = message.payload.decode("utf-8", errors="replace")
                if status not in STATUS_VALUES:
                    raise ValueError(f"expected one of {list(STATUS_VALUES)}, got {status!r}")
                with lock:
                    if done.is_set():
                        return
                    if as_json:  # stdout holds the events' payloads only
                        logger.info("%s is %s", device_id, status)
                    else:
                        write(f"{device_id} is {status}")
                return
            event = EmotionEvent.from_json(message.payload)
            if event.device_id != device_id:
                raise ValueError(f"expected device_id {device_id!r} as in the topic, got {event.device_id!r}")
            with lock:
                if done.is_set():
                    return
                write(event.to_json() if as_json else format_event_line(event))
                state["events"] += 1
                if stop_after is not None and state["events"] >= stop_after:
                    done.set()
        except ValueError as err:
            logger.warning("skipping malformed message on %s: %s", message.topic, err)
        except OSError as err:  # output closed (e.g. `| head`): stop listening
            logger.debug("output closed: %s", err)
            done.set()

    def on_network_error(error: BaseException) -> None:  # logged (CRITICAL) by edge.mqtt.client.Client
        state["dead"] = True
        done.set()

    client_id = settings.client_id or f"ser-edge-listen-{secrets.token_hex(3)}"

    def start(protocol: str) -> Client:
        client = make_client(settings, client_id, protocol)
        client.on_connect = on_connect
        client.on_connect_fail = on_connect_fail
        client.on_message = on_message
        client.on_network_error = on_network_error
        connect(client, settings, protocol)
        client.loop_start()
        return client

    warn_password_in_clear(settings)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    client = start(settings.protocol)
    # SIGINT and SIGTERM end the listening cleanly, also when SIGINT was ignored by the parent (a
    # background job of a non-interactive shell inherits SIG_IGN, which Python keeps)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, signal.default_int_handler)  # KeyboardInterrupt below
    try:
        while True:
            finished = done.wait(None if deadline is None else max(deadline - time.monotonic(), 0.0))
            if not state["fallback"]:
                break
            client.disconnect()  # the broker refused MQTT 5: listen again with 3.1.1, as the publisher does
            client.loop_stop()
            logger.warning("MQTT broker %s:%d does not speak MQTT 5; listening with 3.1.1 (set mqtt.protocol = "
                           "\"3.1.1\" to skip this attempt)", settings.host, settings.port)
            state.update(fallback=False, protocol="3.1.1")
            done.clear()
            client = start("3.1.1")
    except KeyboardInterrupt:
        finished = True
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        client.disconnect()
        client.loop_stop()
    if state["refused"] or state["dead"]:
        return EXIT_FAILURE
    if not finished and not state["connected"]:
        if state["unreachable"] and not state["other_failure"]:  # else an ERROR line said why already
            logger.error("MQTT broker %s:%d unreachable: gave up after --timeout %g s", settings.host, settings.port,
                         timeout_s)
        return EXIT_FAILURE
    if not finished and stop_after is not None:
        logger.warning("timed out after %g s with %d of %s", timeout_s, state["events"], plural(stop_after, "event"))
        return EXIT_FAILURE
    return EXIT_OK
