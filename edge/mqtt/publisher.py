"""The MQTT publisher of emotion events: QoS 1, availability (birth, last will), a durable outbox.

It is an :class:`edge.sinks.EventSink` for the events, and the daemon's explicit MQTT handle for
the rest (:meth:`MqttPublisher.publish_raw` for stats and Home Assistant discovery,
:meth:`MqttPublisher.subscribe`, :meth:`MqttPublisher.add_on_connected`).

MQTT delivery is at-least-once and in order. Every event is first written to the outbox
(:mod:`edge.mqtt.outbox`: SQLite under the state directory, or memory), then sent; it leaves the
outbox only when the broker's PUBACK arrives. Events still in the outbox when the process stops
(or is killed, or the power goes) are sent at the next start, before any new one. A subscriber
may see an event twice (after a reconnect or a restart) and can dedupe by
``(device_id, session, seq)``.

MQTT 5 (default) or 3.1.1 (``protocol = "3.1.1"``, or automatically when the broker refuses 5):
under MQTT 5 the PUBACK carries a reason code, and one >= 0x80 (e.g. 0x87 "Not authorized": the
broker's ACL denies the topic) means the broker did **not** accept the event; it is counted in
:attr:`MqttPublisher.refused_events`, logged once per reason, and removed from the outbox
(retrying cannot help). Under MQTT 3.1.1 a PUBACK has no reason code: a broker that denies the
topic still acknowledges it (mosquitto logs "Denied PUBLISH"), so the loss is invisible to the
device. Use 3.1.1 only with a broker that cannot speak 5.

:func:`edge.mqtt.listen.listen` is the other side (``ser-edge listen``).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt

from edge.events import EmotionEvent
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
from edge.mqtt.limits import NO_LIMITS, PAHO_MAX_INFLIGHT, BrokerLimits, ReconnectBackoff, publish_packet_bytes
from edge.mqtt.outbox import OUTBOX_FILE, Outbox
from edge.mqtt.topics import EMOTION_QOS, STATUS_OFFLINE, STATUS_ONLINE, SUBSCRIBE_QOS, emotion_topic, status_topic
from edge.sinks import StartStopContext
from edge.validate import plural

logger = logging.getLogger(__name__)

MIN_OFFLINE_WAIT_S = 1.0
"""``close()`` waits at least this long for the PUBACK of the retained ``offline``."""

CONNACK_TIMEOUT_S = 10.0
"""A broker that accepted the TCP connection but sent no CONNACK within this is logged (once)."""

SENDER_WAKE_S = 1.0
"""The sender thread's longest sleep: it then checks for a missing CONNACK."""

MAX_SEND_ATTEMPTS = 3
"""An event whose sending ended this many short-lived connections in a row (the broker dropped the
connection each time it was in flight, with no other message unacknowledged, e.g. over a limit it
did not announce) is refused: counted in :attr:`MqttPublisher.refused_events`, removed from the
outbox, never sent again. A connection dropped while a status, stats or discovery message was also
unacknowledged does not count against the event (that message may be the one refused)."""

MAX_EARLY_ACKS = 1000
"""Bound of the acknowledgements remembered for messages whose ``publish()`` has not returned yet."""

SESSION_TAKEN_OVER = 0x8E
"""MQTT 5 DISCONNECT reason "Session taken over": another client connected with this client id."""

RETAIN_NOT_SUPPORTED = 0x9A
QOS_NOT_SUPPORTED = 0x9B
"""CONNACK refusals of the last will (MQTT 5 sec. 3.1.2.5, 3.1.2.6): it is set again without retain
or at the broker's Maximum QoS, and the next attempt succeeds."""


class MqttPublisher(StartStopContext):
    """Publishes emotion events to ``{prefix}/{device_id}/emotion`` with QoS 1, never blocking the caller.

    Availability: a retained ``online`` (QoS 1) on ``{prefix}/{device_id}/status`` after every
    connect (birth message), a retained ``offline`` on :meth:`close`, and ``offline`` as last will
    (QoS 1, retained) when the connection dies without a clean disconnect.

    Delivery: :meth:`publish` writes the event to the outbox (:class:`edge.mqtt.outbox.Outbox`, in
    ``settings.state_dir`` or memory; bounded by ``settings.queue_size``, the oldest dropped and
    counted on overflow) and returns. A sender thread sends the outbox's oldest event while
    connected, one at a time, and is in one of two states:

    * **idle**: nothing in flight. When connected and the outbox is not empty it hands the oldest
      row to paho (``client.publish``) and goes to *in flight*.
    * **in flight** (row id, mid): waiting for the PUBACK of that mid. paho keeps the message and
      sends it again after a reconnect (QoS 1), so nothing is done on a disconnect. The PUBACK
      removes the row (a reason code >= 0x80 counts it as refused) and the sender goes back to
      *idle*. A new client (protocol fallback) also goes back to *idle*, the row still there.

    One event in flight at a time keeps the order without any bookkeeping of paho's resends; it
    costs one round trip per event, far below the rate of utterances even after a long outage
    (a thousand queued events take a thousand round trips: about a second on a LAN).

    Session: clean (MQTT 5 clean start with no session expiry; 3.1.1 clean session). The publisher
    subscribes only to what :meth:`subscribe` asks for and does so again on every connect.

    Broker limits (MQTT 5 CONNACK, :class:`edge.mqtt.limits.BrokerLimits`), never exceeded:

    * Maximum Packet Size: an event larger than it is refused locally (ERROR line, counted in
      :attr:`refused_events` and :attr:`oversized_events`, removed from the outbox: this broker can
      never take it, and keeping it would block every later event); a :meth:`publish_raw` message
      larger than it (a Home Assistant discovery config, stats) is skipped, one WARNING per topic.
    * Maximum QoS 0: events, status and the last will are sent with QoS 0 (at most once: an event
      on the wire when the connection drops is lost); one WARNING.
    * Retain Available 0: retained messages (status, last will, stats, discovery configs) are sent
      **non-retained**, not skipped: a subscriber connected at the time still sees them, and Home
      Assistant gets the configs again when it comes online (its birth message); one WARNING.
    * Receive Maximum: paho's limit of messages in flight is lowered to it.

    The will is part of CONNECT, before any limit is known: a broker that refuses it (CONNACK
    "Retain not supported" or "QoS not supported") gets it adapted at the next attempt.
    Connections that end within :data:`edge.mqtt.limits.STABLE_CONNECTION_S` of their CONNACK back
    off (:class:`edge.mqtt.limits.ReconnectBackoff`); "Session taken over" (another client with this
    client id) is logged as such and always backs off.

    Threads: paho's network thread runs the callbacks; the sender thread calls ``client.publish``
    for events; :meth:`publish` may be called from any thread. One condition variable guards the
    outbox and the counters; it is never held while calling into paho (paho holds its own lock
    while calling ``on_publish``, so holding ours around ``client.publish`` could deadlock).
    """

    def __init__(self, settings: MqttSettings, device_id: str, availability: bool = True) -> None:
        """:param availability: publish the retained ``online``/``offline`` and the last will;
            ``False`` for a replay that must not speak for a device (no status at all).
        :raises ValueError: for a ``device_id`` unusable as a topic level or a missing TLS file.
        :raises OutboxError: if the outbox in ``settings.state_dir`` cannot be opened."""
        self._availability = availability
        self._settings = settings
        self._device_id = device_id
        self._emotion_topic = emotion_topic(settings.topic_prefix, device_id)
        self._status_topic = status_topic(settings.topic_prefix, device_id)
        self._client_id = settings.client_id or f"ser-edge-{device_id}-{secrets.token_hex(3)}"
        self._protocol = settings.protocol
        self._will_qos = EMOTION_QOS
        self._will_retain = True
        self._network_error: BaseException | None = None  # why paho's network thread died
        self._client = self._new_client()

        self._cond = threading.Condition()
        path = None if settings.state_dir is None else Path(settings.state_dir) / OUTBOX_FILE
        self._outbox = Outbox(path, settings.queue_size)
        self._inflight: tuple[int, int] | None = None  # (row id, mid) of the event awaiting its PUBACK
        self._acks: dict[int, mqtt.ReasonCode] = {}  # PUBACKs received while an event was in flight
        self._awaiting = False  # an event is being handed to paho or is in flight
        self._generation = 0  # bumped when the client is replaced (protocol fallback)
        self._connected = False
        self._started = False
        self._closing = False
        self._stopping = False
        self._closed = False
        self._last_seq: int | None = None
        self._published = 0
        self._dropped = 0
        self._refused = 0
        self._refusal_reasons: set[str] = set()
        self._oversized = 0
        self._limits = NO_LIMITS  # of the current connection
        self._warned: set[object] = set()  # limits and skipped topics already logged
        self._backoff = ReconnectBackoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self._connected_at = 0.0  # monotonic time of the last CONNACK
        self._disconnects = 0  # connections ended so far (a QoS 0 event in flight is then sent again)
        self._strikes: tuple[int | None, int] = (None, 0)  # (outbox row, short connections it ended in a row)
        self._last_drop = ""  # the reason code of the last dropped connection
        # mids of the other messages (status, stats, discovery) not yet acknowledged, and of the
        # acknowledgements that came before publish() returned their mid: an event is blamed for a
        # dropped connection only when nothing else was unacknowledged
        self._others_unacked: set[int] = set()
        self._early_acks: set[int] = set()
        self._connack_timeout_logged = False
        self._connect_failures = 0
        self._failure: str | None = None  # why the broker is not connected, as last logged; None: connected
        self._connecting_since: float | None = None  # monotonic time of the last TCP connection attempt
        self._fallback = False  # the broker refused MQTT 5: the sender thread switches to 3.1.1
        self._sender: threading.Thread | None = None
        self._sender_error: BaseException | None = None  # why the sender thread died
        self._connected_hooks: list[Callable[[], None]] = []
        self._subscriptions: dict[str, int] = {}  # topic filter -> QoS
        self._dispatchers: dict[str, Callable[..., None]] = {}  # topic filter -> paho message callback
        if len(self._outbox):
            logger.info("outbox %s holds %s from an earlier run; they are sent first",
                        path, plural(len(self._outbox), "event"))

    def _new_client(self) -> Client:
        client = make_client(self._settings, self._client_id, self._protocol)
        if self._availability:
            client.will_set(self._status_topic, STATUS_OFFLINE, qos=self._will_qos, retain=self._will_retain)
        client.on_network_error = self._on_network_error
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        for topic_filter, dispatch in getattr(self, "_dispatchers", {}).items():
            client.message_callback_add(topic_filter, dispatch)
        return client

    # ------------------------------------------------------------------ properties

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def settings(self) -> MqttSettings:
        return self._settings

    @property
    def protocol(self) -> str:
        """The MQTT version in use: ``"5"`` or ``"3.1.1"`` (after a fallback, or as configured)."""
        return self._protocol

    @property
    def connected(self) -> bool:
        """Whether a broker connection is up (CONNACK received, no disconnect since)."""
        with self._cond:
            return self._connected

    @property
    def published_events(self) -> int:
        """Events acknowledged by the broker (PUBACK with a success code) so far."""
        with self._cond:
            return self._published

    @property
    def dropped_events(self) -> int:
        """Events lost: outbox overflow, or still unsent at :meth:`close` with an in-memory outbox
        (a durable outbox keeps them for the next start: they are pending, not dropped)."""
        with self._cond:
            return self._dropped + self._outbox.lost

    @property
    def refused_events(self) -> int:
        """Events the broker refused: a PUBACK reason code >= 0x80 (MQTT 5 only), larger than its
        Maximum Packet Size (:attr:`oversized_events`), or dropping the connection each time
        (:data:`MAX_SEND_ATTEMPTS`)."""
        with self._cond:
            return self._refused

    @property
    def oversized_events(self) -> int:
        """Events larger than the broker's Maximum Packet Size: refused locally, never sent (also
        counted in :attr:`refused_events`)."""
        with self._cond:
            return self._oversized

    @property
    def limits(self) -> BrokerLimits:
        """The broker limits of the current (or last) connection; :data:`edge.mqtt.limits.NO_LIMITS` under 3.1.1."""
        with self._cond:
            return self._limits

    @property
    def pending(self) -> int:
        """Events in the outbox: not yet acknowledged (in flight included)."""
        with self._cond:
            return len(self._outbox) if self._outbox.durable or not self._closed else 0

    @property
    def outbox_state(self) -> str:
        """The outbox's :attr:`edge.outbox.Outbox.state`: ``"durable"``, ``"memory"`` or
        ``"degraded: <reason>"`` (a storage error: events in memory until the disk works again)."""
        with self._cond:
            return self._outbox.state

    @property
    def alive(self) -> bool:
        """``False`` once the sender thread or paho's network thread died (logged CRITICAL); the daemon
        then exits for systemd to restart it."""
        with self._cond:
            return self._sender_error is None and self._network_error is None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start connecting in the background; returns at once and never raises if the broker is down.

        A failed connection is logged once as a warning and retried with capped exponential
        backoff (``reconnect_min_s`` doubling up to ``reconnect_max_s``). Calling it again is a no-op.

        :raises RuntimeError: if the publisher was closed.
        """
        with self._cond:
            if self._closed or self._closing:
                raise RuntimeError("expected an open publisher, got start() after close()")
            if self._started:
                return
            self._started = True
        s = self._settings
        warn_password_in_clear(s)
        if not self._outbox.durable:
            logger.info("no state directory: the event outbox is in memory (lost if the process dies)")
        self._sender = threading.Thread(target=self._sender_main, name=f"mqtt-sender-{self._device_id}",
                                        daemon=True)
        self._sender.start()
        logger.info("connecting to MQTT broker %s:%d as %r with MQTT %s (events on %s)", s.host, s.port,
                    self._client_id, self._protocol, self._emotion_topic)
        connect(self._client, s, self._protocol)
        self._client.loop_start()

    def publish(self, event: EmotionEvent) -> None:
        """Store an event in the outbox for delivery; returns once it is stored (fsync'ed if durable;
        in memory while a storage error such as a full disk lasts, see :mod:`edge.outbox`).

        :param event: an event of this publisher's device, ``seq`` greater than the previous one.
        :raises ValueError: if ``event.device_id`` differs from the publisher's or ``seq`` does not
            increase.
        :raises RuntimeError: after :meth:`close`.
        """
        if not isinstance(event, EmotionEvent):
            raise ValueError(f"expected an EmotionEvent, got {type(event).__name__}")
        if event.device_id != self._device_id:
            raise ValueError(f"expected device_id {self._device_id!r}, got {event.device_id!r}")
        payload = event.to_json().encode("utf-8")
        with self._cond:
            if self._closing or self._closed:
                raise RuntimeError("expected an open publisher, got publish() after close()")
            if self._last_seq is not None and event.seq <= self._last_seq:
                raise ValueError(f"expected seq > {self._last_seq}, got {event.seq}")
            self._last_seq = event.seq
            keep = self._inflight[0] if self._inflight is not None else None
            dropped = self._outbox.append(self._emotion_topic, payload, keep=keep)
            self._dropped += dropped
            self._cond.notify_all()
        if dropped:
            logger.warning("event outbox full (%d events); dropped the %d oldest", self._settings.queue_size,
                           dropped)

    def publish_raw(self, topic: str, payload: str | bytes, retain: bool = False,
                    qos: int = 1, what: str | None = None) -> mqtt.MQTTMessageInfo | None:
        """Publish any message directly through paho (stats, Home Assistant discovery), within the
        broker's limits: ``qos`` capped at its Maximum QoS, ``retain`` dropped if it has no retained
        messages, and nothing sent if the packet exceeds its Maximum Packet Size (a WARNING naming
        ``what``, default the topic, its size and the limit: once per topic and limit).

        Not in the outbox: while disconnected, paho keeps QoS 1/2 messages in memory (unbounded)
        and sends them after reconnecting; QoS 0 messages are lost.

        :returns: paho's ``MQTTMessageInfo`` (``wait_for_publish(timeout)`` to block on the PUBACK),
            or ``None`` when the message is over the broker's packet size limit (not sent).
        :raises ValueError: for an invalid topic (empty, wildcards) or ``qos`` not in 0..2.
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        with self._cond:
            limits, protocol = self._limits, self._protocol
        qos, retain = self._within(limits, qos, retain)
        size = publish_packet_bytes(topic, data, qos, protocol)
        if not limits.fits(size):
            key = (topic, limits.max_packet_bytes)
            with self._cond:
                first = key not in self._warned
                self._warned.add(key)
            logger.log(logging.WARNING if first else logging.DEBUG,
                       "not sending %s: %d bytes, over the broker's maximum packet size of %d bytes%s",
                       what or f"the message on {topic}", size, limits.max_packet_bytes,
                       " (mosquitto: max_packet_size)" if first else " (again)")
            return None
        client = self._client
        return self._track(client, qos, client.publish(topic, data, qos=qos, retain=retain))

    def _track(self, client: mqtt.Client, qos: int, info: mqtt.MQTTMessageInfo) -> mqtt.MQTTMessageInfo:
        """Note a QoS 1/2 message other than an event as unacknowledged until its PUBACK (``_others_unacked``)."""
        with self._cond:
            if (qos > 0 and client is self._client
                    and info.rc in (mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS, mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN)):
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                else:
                    self._others_unacked.add(info.mid)
        return info

    @staticmethod
    def _within(limits: BrokerLimits, qos: int, retain: bool) -> tuple[int, bool]:
        """``(qos, retain)`` capped at the broker's Maximum QoS and Retain Available."""
        return min(qos, limits.maximum_qos), retain and limits.retain_available

    def add_on_connected(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` after every successful (re)connect, after the birth message and the
        subscriptions. It runs on paho's network thread: it must not block, and may call
        :meth:`publish_raw`. An exception in it is logged, not raised."""
        with self._cond:
            self._connected_hooks.append(hook)

    def subscribe(self, topic_filter: str, on_message: Callable[[str, bytes], None],
                  qos: int = SUBSCRIBE_QOS) -> None:
        """Deliver messages matching ``topic_filter`` to ``on_message(topic, payload)``.

        The subscription is made now if connected and again after every reconnect. The function
        runs on paho's network thread (must not block); an exception in it is logged.

        :raises ValueError: for an empty filter, a misplaced wildcard, or ``qos`` not in 0..2.
        """
        if not isinstance(topic_filter, str) or not topic_filter or "\x00" in topic_filter:
            raise ValueError(f"expected a non-empty topic filter, got {topic_filter!r}")
        levels = topic_filter.split("/")
        if any(("#" in lv and (lv != "#" or i != len(levels) - 1)) or ("+" in lv and lv != "+")
               for i, lv in enumerate(levels)):
            raise ValueError(f"expected '+' and '#' as whole levels ('#' last), got {topic_filter!r}")
        if qos not in (0, 1, 2):
            raise ValueError(f"expected qos 0, 1 or 2, got {qos!r}")

        def dispatch(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
            try:
                on_message(message.topic, bytes(message.payload))
            except Exception:  # noqa: BLE001 - a handler must not break the network thread
                logger.exception("handler for %s failed on a message on %s", topic_filter, message.topic)

        self._dispatchers[topic_filter] = dispatch
        self._client.message_callback_add(topic_filter, dispatch)
        with self._cond:
            self._subscriptions[topic_filter] = qos
            connected = self._connected
        if connected:
            self._client.subscribe(topic_filter, qos)

    def flush(self, timeout_s: float = 5.0, warn: bool = True, waited_s: float | None = None) -> bool:
        """Wait until the outbox is empty (every event acknowledged or refused).

        :param waited_s: the total wait to name in the warning, when this call ends a longer wait
            made of several calls (default ``timeout_s``).
        :returns: ``True`` if nothing is pending, ``False`` after ``timeout_s`` seconds (then, with
            ``warn``, logs how many events remain and why).
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._outbox) and not self._closed and self._sender_error is None and self._network_error is None:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    if not warn:
                        return False
                    logger.warning("%s still unacknowledged after %.1f s (%s)",
                                   plural(len(self._outbox), "event"), timeout_s if waited_s is None else waited_s,
                                   "broker connected" if self._connected else
                                   f"broker {UNREACHABLE}" if self._failure in (None, UNREACHABLE) else
                                   f"not connected: {self._failure}")
                    return False
                self._cond.wait(remaining_s)
            return (self._sender_error is None and self._network_error is None) or not len(self._outbox) or self._closed

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush, publish the retained ``offline``, disconnect cleanly and stop the threads.

        Takes at most about ``timeout_s`` (plus :data:`MIN_OFFLINE_WAIT_S` for the ``offline``);
        ``timeout_s = 0`` does not wait for queued events (e.g. after a :meth:`flush` that timed out).
        Events still unacknowledged stay in a durable outbox for the next start; with an in-memory
        outbox they are counted in :attr:`dropped_events`. Idempotent.
        """
        with self._cond:
            if self._closed or self._closing:
                return
            started = self._started
        deadline = time.monotonic() + timeout_s
        if started and timeout_s > 0:
            self.flush(timeout_s)
        with self._cond:
            self._closing = True
            connected = self._connected
        if started and connected and self._availability:
            qos, retain = self._within(self.limits, EMOTION_QOS, True)
            info = self._client.publish(self._status_topic, STATUS_OFFLINE, qos=qos, retain=retain)
            try:
                info.wait_for_publish(max(deadline - time.monotonic(), MIN_OFFLINE_WAIT_S))
            except (RuntimeError, ValueError) as err:
                logger.warning("could not publish %r on %s: %s", STATUS_OFFLINE, self._status_topic, err)
            if not info.is_published():
                logger.warning("no PUBACK for %r on %s; subscribers rely on the last will",
                               STATUS_OFFLINE, self._status_topic)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._sender is not None:
            self._sender.join(timeout=MIN_OFFLINE_WAIT_S)
        if started:
            self._client.disconnect()
            self._client.loop_stop()
        with self._cond:
            left = len(self._outbox)
            self._outbox.close()  # a degraded outbox tries the disk once more
            if not self._outbox.durable:
                self._dropped += left
            self._closed = True
            self._cond.notify_all()
        if left and self._outbox.durable:
            logger.warning("closed with %s kept in %s for the next start", plural(left, "unacknowledged event"),
                           self._outbox.path)
        elif left and self._outbox.degraded:
            logger.error("closed with %s lost: the outbox %s could not be written (%s)", plural(left, "undelivered event"),
                         self._outbox.path, self._outbox.storage_error)
        elif left:
            logger.warning("closed with %s (dropped: the outbox is in memory)", plural(left, "undelivered event"))
        logger.info("MQTT publisher closed: %d events acknowledged, %d refused by the broker, %d dropped",
                    self._published, self._refused, self._dropped + self._outbox.lost)

    # ------------------------------------------------------------------ sender thread

    def _sender_main(self) -> None:
        """The state machine of the class docstring: the only caller of ``client.publish`` for events.
        A storage error does not stop it (the outbox degrades to memory); any other exception is a
        bug: logged once, :attr:`alive` becomes ``False`` and the daemon exits."""
        try:
            while self._send_one():
                pass
        except BaseException as exc:  # noqa: BLE001 - a worker thread never dies silently
            logger.critical("the MQTT sender thread died (%s: %s); events are no longer sent",
                            type(exc).__name__, exc, exc_info=True)
            with self._cond:
                self._sender_error = exc
                self._cond.notify_all()

    def _send_one(self) -> bool:
        """Idle -> in flight -> idle for the oldest event; ``False`` when stopping."""
        row = None
        with self._cond:
            while True:
                if self._stopping:
                    return False
                if self._fallback:
                    break
                self._outbox.recover()  # a degraded outbox tries the disk again (rate-limited)
                row = self._outbox.oldest() if self._connected else None
                if row is not None:
                    self._acks.clear()
                    self._awaiting = True
                    generation = self._generation
                    break
                self._check_connect_timeout_locked()
                self._cond.wait(SENDER_WAKE_S)
        if row is None:  # the broker refused MQTT 5
            self._switch_to_mqtt311()
            return True
        row_id, topic, payload = row
        with self._cond:
            limits, protocol, disconnects = self._limits, self._protocol, self._disconnects
        qos, _ = self._within(limits, EMOTION_QOS, False)
        size = publish_packet_bytes(topic, payload, qos, protocol)
        if not limits.fits(size):
            with self._cond:
                self._awaiting = False
                self._outbox.remove(row_id)
                self._oversized += 1
                self._refused += 1
                self._cond.notify_all()
            logger.error("event on %s not sent: %d bytes, over the broker's maximum packet size of %d bytes; "
                         "refused (dropped from the outbox: this broker can never take it)", topic, size,
                         limits.max_packet_bytes)
            return True
        try:
            info = self._client.publish(topic, payload, qos=qos)
        except (ValueError, TypeError) as exc:  # a topic or payload paho rejects: it never will take it
            logger.error("paho refused outbox row %d for %s (%s); dropped", row_id, topic, exc)
            with self._cond:
                self._awaiting = False
                self._outbox.remove(row_id)
                self._dropped += 1
                self._cond.notify_all()
            return True
        with self._cond:
            self._inflight = (row_id, info.mid)
            while (not self._stopping and info.mid not in self._acks and self._generation == generation
                   and not (qos == 0 and self._disconnects != disconnects)  # paho drops QoS 0 on a disconnect
                   and not self._struck_out_locked(row_id)):
                self._check_connect_timeout_locked()
                self._cond.wait(SENDER_WAKE_S)
            if self._stopping:
                return False
            self._inflight = None
            self._awaiting = False
            struck_out = info.mid not in self._acks and self._struck_out_locked(row_id)
            if self._generation != generation or (info.mid not in self._acks and not struck_out):
                return True  # a new client, or a QoS 0 event lost with its connection: send the row again
            if struck_out:
                self._outbox.remove(row_id)
                self._refused += 1
                self._strikes = (None, 0)
                self._cond.notify_all()
        if struck_out:
            logger.error("broker dropped the connection each of the %d times the event on %s was in flight "
                         "(last reason: %s); refused (dropped from the outbox, not sent again)", MAX_SEND_ATTEMPTS,
                         topic, self._last_drop)
            self._replace_client(self._protocol)  # paho would send it again at every reconnect
            return True
        with self._cond:
            reason = self._acks.pop(info.mid)
            self._acks.clear()
            self._strikes = (None, 0)
            self._outbox.remove(row_id)
            refused = reason.is_failure
            if refused:
                self._refused += 1
                first = str(reason) not in self._refusal_reasons
                self._refusal_reasons.add(str(reason))
            else:
                self._published += 1
            self._cond.notify_all()
        if refused:
            logger.log(logging.ERROR if first else logging.DEBUG,
                       "broker refused an event on %s: PUBACK reason 0x%02x %s (not delivered; the "
                       "broker's ACL may deny this topic)%s", topic, reason.value, reason,
                       "" if first else " (again)")
        return True

    def _struck_out_locked(self, row_id: int) -> bool:
        """Whether the event of ``row_id`` ended :data:`MAX_SEND_ATTEMPTS` short connections in a row."""
        return self._strikes[0] == row_id and self._strikes[1] >= MAX_SEND_ATTEMPTS

    def _check_connect_timeout_locked(self) -> None:
        """Log once per outage when TCP connections are made but no CONNACK came within
        :data:`CONNACK_TIMEOUT_S` of the first: also when paho gives up on each attempt sooner
        (a keep-alive below it), since the time counts from the first unanswered attempt."""
        since = self._connecting_since
        if since is not None and not self._connected and time.monotonic() - since > CONNACK_TIMEOUT_S:
            self._connecting_since = None
            first = not self._connack_timeout_logged
            self._connack_timeout_logged = True
            s = self._settings
            logger.log(logging.WARNING if first else logging.DEBUG,
                       "MQTT broker %s:%d: no answer (CONNACK) within %g s of connecting; paho gives up "
                       "after the keep-alive (%d s) and retries", s.host, s.port, CONNACK_TIMEOUT_S,
                       s.keepalive_s)

    def _switch_to_mqtt311(self) -> None:
        """Replace the MQTT 5 client by a 3.1.1 one (the broker refused 5); called by the sender thread."""
        s = self._settings
        logger.warning("MQTT broker %s:%d does not speak MQTT 5; using 3.1.1, which cannot report refused "
                       "events (set mqtt.protocol = \"3.1.1\" to skip this attempt)", s.host, s.port)
        self._replace_client("3.1.1")

    def _replace_client(self, protocol: str) -> None:
        """A new paho client speaking ``protocol`` (paho's queue of the old one is forgotten); called
        by the sender thread. The reconnect backoff carries over."""
        old = self._client
        old.disconnect()
        old.loop_stop()
        with self._cond:
            self._protocol = protocol
            self._limits = NO_LIMITS
            self._client = self._new_client()
            self._generation += 1
            self._fallback = False
            self._acks.clear()
            self._others_unacked.clear()
            self._early_acks.clear()
            client = self._client
        connect(client, self._settings, protocol)
        client.loop_start()

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _log_failure(self, failure: str) -> None:
        """Log why connecting failed: once per outage and cause (a warning for an unreachable broker,
        an error for a refusal or a TLS problem), the retries at debug level."""
        s = self._settings
        with self._cond:
            self._connect_failures += 1
            new = failure != self._failure
            self._failure = failure
            pending = len(self._outbox)
            attempt = self._connect_failures
            self._connecting_since = None
        if not new:
            logger.debug("MQTT broker %s:%d: %s (attempt %d)", s.host, s.port, failure, attempt)
        elif failure == UNREACHABLE:
            error = getattr(self._client, "last_connect_error", None)
            cause = f" ({error.strerror or error})" if error is not None else ""
            logger.warning("MQTT broker %s:%d unreachable%s; queueing events (%d pending) and retrying "
                           "every %g..%g s", s.host, s.port, cause, pending, s.reconnect_min_s, s.reconnect_max_s)
        else:
            logger.error("connection to MQTT broker %s:%d failed: %s; queueing events (%d pending) and "
                         "retrying every %g..%g s", s.host, s.port, failure, pending, s.reconnect_min_s,
                         s.reconnect_max_s)

    def _on_network_error(self, error: BaseException) -> None:  # logged by edge.mqtt.client.Client
        with self._cond:
            self._network_error = error
            self._cond.notify_all()

    def _on_pre_connect(self, client: mqtt.Client, userdata: object) -> None:
        with self._cond:
            if self._connecting_since is None:  # counts from the first unanswered attempt
                self._connecting_since = time.monotonic()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        s = self._settings
        if client is not self._client:
            return
        if refuses_protocol(reason_code, self._protocol):
            with self._cond:
                self._fallback = True
                self._connecting_since = None
                self._cond.notify_all()
            return
        if reason_code.is_failure:  # CONNACK refusal (bad credentials, not authorised): paho retries
            if not self._adapt_will(client, reason_code, properties):
                self._log_failure(describe_refusal(reason_code, s))
            return
        limits = BrokerLimits.from_properties(properties) if self._protocol == "5" else NO_LIMITS
        self._apply_limits(client, limits)
        # Birth message first: it goes out before paho re-sends an unacknowledged event and before
        # the sender thread sees `connected`.
        if self._availability:
            qos, retain = self._within(limits, EMOTION_QOS, True)
            self._track(client, qos, client.publish(self._status_topic, STATUS_ONLINE, qos=qos, retain=retain))
        if not self._backoff.short_lived:  # paho's warnings stay demoted while connections keep dropping
            client.on_log.reset()
        with self._cond:
            self._connected = True
            self._connected_at = time.monotonic()
            self._connecting_since = None
            self._connack_timeout_logged = False
            self._connect_failures = 0
            self._failure = None
            pending = len(self._outbox)
            # taken with `connected` set, so a concurrent subscribe() is made either here or there
            subscriptions = list(self._subscriptions.items())
            hooks = list(self._connected_hooks)
            self._cond.notify_all()
        if subscriptions:  # a clean session starts with none: (re)subscribe on every connect
            client.subscribe(subscriptions)
        logger.info("connected to MQTT broker %s:%d (MQTT %s); %s pending", s.host, s.port,
                    self._protocol, plural(pending, "event"))
        for hook in hooks:
            try:
                hook()
            except Exception:  # noqa: BLE001 - a hook must not break the network thread
                logger.exception("on-connected hook %r failed", hook)

    def _adapt_will(self, client: mqtt.Client, reason_code: mqtt.ReasonCode, properties: object) -> bool:
        """Set the last will again within the broker's limits after a CONNACK refusing it ("Retain
        not supported", "QoS not supported"; MQTT 5 sec. 3.1.2.5-6); ``False`` for any other refusal.
        paho's next attempt (its backoff) carries the new will."""
        s = self._settings
        if reason_code.value == RETAIN_NOT_SUPPORTED and self._will_retain:
            self._will_retain = False
            logger.warning("MQTT broker %s:%d does not support retained messages: the status (online/offline, "
                           "last will), stats and Home Assistant discovery configs are sent non-retained",
                           s.host, s.port)
        elif reason_code.value == QOS_NOT_SUPPORTED and self._will_qos > 0:
            self._will_qos = min(self._will_qos, getattr(properties, "MaximumQoS", 0))
            logger.warning("MQTT broker %s:%d refused the last will's QoS %d: sending it with QoS %d",
                           s.host, s.port, EMOTION_QOS, self._will_qos)
        else:
            return False
        client.will_set(self._status_topic, STATUS_OFFLINE, qos=self._will_qos, retain=self._will_retain)
        return True

    def _apply_limits(self, client: mqtt.Client, limits: BrokerLimits) -> None:
        """Remember the limits of this connection (used by every later publish), lower paho's
        in-flight window to the Receive Maximum and log each new limit once."""
        with self._cond:
            self._limits = limits
            new = limits not in self._warned
            self._warned.add(limits)
        # paho refuses max_inflight_messages_set on an open connection, and the CONNACK is the first
        # moment the value is known; paho reads the attribute at every publish and acknowledgement.
        client._max_inflight_messages = min(PAHO_MAX_INFLIGHT, limits.receive_maximum)
        if not new or limits == NO_LIMITS:
            return
        s = self._settings
        logger.info("MQTT broker %s:%d limits: %s", s.host, s.port, limits.describe() or "none")
        if limits.maximum_qos < EMOTION_QOS:
            logger.warning("MQTT broker %s:%d allows QoS %d at most: events are sent with QoS %d (at most "
                           "once: an event on the wire when the connection drops is lost)", s.host, s.port,
                           limits.maximum_qos, limits.maximum_qos)
        if not limits.retain_available and self._will_retain:
            logger.warning("MQTT broker %s:%d does not support retained messages: the status, stats and Home "
                           "Assistant discovery configs are sent non-retained", s.host, s.port)

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self._log_failure(describe_connect_error(getattr(client, "last_connect_error", None), self._settings))

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        if client is not self._client:
            return
        s = self._settings
        taken_over = reason_code.value == SESSION_TAKEN_OVER
        with self._cond:
            was_connected = self._connected
            self._connected = False
            if was_connected:  # the warning below stands for this outage; unreachable retries log at debug
                self._connecting_since = None
                self._failure = UNREACHABLE
                self._disconnects += 1
            pending = len(self._outbox) if not self._closed else 0
            closing = self._closing
            up_s = time.monotonic() - self._connected_at
            delay = self._backoff.after(up_s, failed=taken_over) if was_connected and not closing else None
            short = self._backoff.short_lived
            self._last_drop = str(reason_code)
            if delay is not None and self._inflight is not None and not taken_over and not self._others_unacked:
                row_id = self._inflight[0]
                self._strikes = (row_id, self._strikes[1] + 1 if self._strikes[0] == row_id else 1)
            self._cond.notify_all()
        if not was_connected or closing:
            return
        if delay is None:
            client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)  # type: ignore[arg-type]
        else:  # paho forgot its backoff at the CONNACK: it would retry after reconnect_min_s, forever
            client.reconnect_delay_set(delay, max(delay, s.reconnect_max_s))  # type: ignore[arg-type]
        if taken_over:
            logger.warning("another client with this client id (%r) connected to MQTT broker %s:%d and took over "
                           "the session (two daemons with one mqtt.client_id? leave it empty for a unique one); "
                           "%s pending, next attempt in %g s", self._client_id, s.host, s.port, plural(pending, "event"),
                           delay)
        elif delay is not None:
            # mosquitto 2.0 closes the older of two connections with one client id without a reason code
            hint = (f"; another client with this client id ({self._client_id!r}) connected? two daemons must not "
                    f"share mqtt.client_id" if s.client_id is not None and self._inflight is None else "")
            logger.warning("lost connection to MQTT broker %s:%d %.1f s after connecting (%s; %d short connections "
                           "in a row%s); %s pending, next attempt in %g s", s.host, s.port, up_s, reason_code,
                           short, hint, plural(pending, "event"), delay)
        else:
            logger.warning("lost connection to MQTT broker %s:%d (%s); %s pending, reconnecting",
                           s.host, s.port, reason_code, plural(pending, "event"))

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        # Called by paho with its message lock held: only bookkeeping here, no calls into paho.
        with self._cond:
            if client is not self._client:
                return
            if self._awaiting:
                self._acks[mid] = reason_code
                self._cond.notify_all()
            if mid in self._others_unacked:
                self._others_unacked.discard(mid)
            elif self._inflight is None or self._inflight[1] != mid:  # perhaps one whose publish() has not returned
                if len(self._early_acks) >= MAX_EARLY_ACKS:  # events' acks that came before their mid was known
                    self._early_acks.clear()
                self._early_acks.add(mid)
