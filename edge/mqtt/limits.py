"""What the broker allows, and how soon to try again when it keeps dropping the connection.

:class:`BrokerLimits`: the limits an MQTT 5 broker announces in its CONNACK (MQTT 5 sec. 3.2.2.3):
Maximum Packet Size, Receive Maximum, Maximum QoS, Retain Available. A client that sends more
than these is disconnected (mosquitto: ``max_packet_size``, ``max_qos``, ``retain_available false``),
so the publisher never does: :func:`publish_packet_bytes` sizes a PUBLISH before it is sent.
An MQTT 3.1.1 CONNACK carries no limits: :data:`NO_LIMITS` then, and a broker limit is only seen
as dropped connections (:class:`ReconnectBackoff` and the publisher's per-event attempt count).

:class:`ReconnectBackoff`: paho forgets its reconnect backoff at every successful CONNACK, so a
broker that accepts the connection and drops it right after (a limit exceeded, another client
taking over the client id, a broker that disconnects on every PUBLISH) would be reconnected to
every ``reconnect_min_s``, forever. The backoff counts connections that ended within
:data:`STABLE_CONNECTION_S` of their CONNACK and doubles the delay for each, up to
``reconnect_max_s``; a connection that stays up that long resets it.
"""

from __future__ import annotations

from dataclasses import dataclass

STABLE_CONNECTION_S = 30.0
"""A connection that stayed up this long (s, from its CONNACK) resets :class:`ReconnectBackoff`."""

PAHO_MAX_INFLIGHT = 20
"""paho's default limit of QoS 1/2 messages in flight; lowered to the broker's Receive Maximum."""


@dataclass(frozen=True)
class BrokerLimits:
    """The limits of one connection, from its CONNACK properties (absent property: the MQTT 5 default)."""

    max_packet_bytes: int | None = None
    """Maximum Packet Size (bytes of a whole packet, headers included); ``None``: no limit."""
    receive_maximum: int = 65535
    """Receive Maximum: QoS 1/2 PUBLISHes the broker takes unacknowledged at once."""
    maximum_qos: int = 2
    """Maximum QoS (0 or 1 when announced; a QoS 2 broker does not announce it)."""
    retain_available: bool = True
    """Retain Available: ``False``: a PUBLISH (or will) with the retain flag is refused."""

    @classmethod
    def from_properties(cls, properties: object) -> BrokerLimits:
        """The limits in paho's CONNACK ``properties`` (``None`` or without a property: its default)."""
        def value(name: str, default: object) -> object:
            return getattr(properties, name, default) if properties is not None else default

        return cls(max_packet_bytes=value("MaximumPacketSize", None),  # type: ignore[arg-type]
                   receive_maximum=value("ReceiveMaximum", 65535),  # type: ignore[arg-type]
                   maximum_qos=value("MaximumQoS", 2),  # type: ignore[arg-type]
                   retain_available=bool(value("RetainAvailable", 1)))

    def describe(self) -> str:
        """The limits that differ from MQTT's defaults, e.g. ``maximum packet size 800 bytes, maximum QoS 0``."""
        parts = ([f"maximum packet size {self.max_packet_bytes} bytes"] if self.max_packet_bytes is not None else [])
        parts += [f"receive maximum {self.receive_maximum}"] if self.receive_maximum < PAHO_MAX_INFLIGHT else []
        parts += [f"maximum QoS {self.maximum_qos}"] if self.maximum_qos < 2 else []
        parts += ["no retained messages"] if not self.retain_available else []
        return ", ".join(parts)

    def fits(self, size_bytes: int) -> bool:
        """Whether a packet of ``size_bytes`` bytes is within :attr:`max_packet_bytes`."""
        return self.max_packet_bytes is None or size_bytes <= self.max_packet_bytes


NO_LIMITS = BrokerLimits()
"""Before a CONNACK, and under MQTT 3.1.1."""


def _varint_bytes(n: int) -> int:
    """Length of MQTT's Variable Byte Integer encoding of ``n`` (1..4 bytes)."""
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


def publish_packet_bytes(topic: str, payload: bytes, qos: int, protocol: str) -> int:
    """Size in bytes of the PUBLISH packet paho sends for ``topic``/``payload`` (no topic alias, no
    properties): fixed header (1 byte + remaining length), topic (2 + UTF-8 bytes), packet
    identifier (2 bytes if ``qos`` > 0), MQTT 5's property length (1 byte: none), payload.
    The unit of Maximum Packet Size (MQTT 5 sec. 3.1.2.11.4, 3.3)."""
    remaining = 2 + len(topic.encode("utf-8")) + (2 if qos > 0 else 0) + (1 if protocol == "5" else 0) + len(payload)
    return 1 + _varint_bytes(remaining) + remaining


class ReconnectBackoff:
    """The delay before the next connection attempt after a connection ended (see the module docstring).

    Not thread-safe: the publisher calls it under its own lock.
    """

    def __init__(self, min_s: float, max_s: float, stable_s: float = STABLE_CONNECTION_S) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.stable_s = stable_s
        self.short_lived = 0
        """Connections in a row that ended within :attr:`stable_s`."""

    def reset(self) -> None:
        self.short_lived = 0

    def after(self, up_s: float, failed: bool = False) -> float | None:
        """The delay (s) before the next attempt after a connection that was up ``up_s`` seconds,
        or ``None`` (and reset) if it was stable: paho's own delay (``min_s``) then applies.

        :param failed: count it as short-lived whatever its length (another client took over the
            client id: reconnecting at once would take it back, and so on).
        """
        if up_s >= self.stable_s and not failed:
            self.short_lived = 0
            return None
        self.short_lived += 1
        return min(self.min_s * 2 ** (self.short_lived - 1), self.max_s)
