"""The MQTT settings: the ``[mqtt]`` table of the configuration and the publisher's connection, one
frozen dataclass validated on construction (``ValueError("expected ..., got ...")``).

Kept apart from :mod:`edge.mqtt.client` and :mod:`edge.mqtt.publisher` so that parsing the
configuration (:mod:`edge.settings`) never imports paho.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from edge.mqtt.topics import emotion_topic
from edge.validate import expect_float, expect_int

PROTOCOL_NAMES = ("5", "3.1.1")
"""``mqtt.protocol`` values (:data:`edge.mqtt.client.PROTOCOLS` maps them to paho's constants)."""

MAX_QUEUE_SIZE = 1_000_000
MAX_RECONNECT_S = 3600.0
MAX_STATS_INTERVAL_S = 86400.0
MIN_STATS_INTERVAL_S = 1.0
"""The shortest stats period (s): each is a retained publish, and 1e-9 made ten a second."""


@dataclass(frozen=True)
class MqttSettings:
    """Broker connection and the switches of the ``[mqtt]`` table. These defaults are the only ones.

    In the configuration file, an empty string stands for ``None`` (``client_id = ""``); ``password``
    and ``state_dir`` are never read from the file: ``edge.settings.Settings.mqtt_settings`` fills
    them from the environment (or ``password_file``) and ``state_directory``.
    """

    enabled: bool = True
    """Publish to a broker; ``False``: the daemon prints events on stdout instead."""
    host: str = "localhost"
    port: int = 1883
    topic_prefix: str = "ser"
    """First topic level(s): events go to ``{topic_prefix}/{device_id}/emotion``."""
    client_id: str | None = None
    """MQTT client id; ``None`` makes a unique one (``ser-edge-{device_id}-{6 hex}``), so two
    processes never take over each other's connection."""
    keepalive_s: int = 60
    """MQTT keep-alive, 1..65535 s (the protocol's 16-bit field); the broker sends the last will
    about 1.5 x this after the device vanishes without closing its TCP connection (power loss)."""
    protocol: str = "5"
    """``"5"`` (MQTT 5: PUBACK reason codes reveal refused events) or ``"3.1.1"``; see :mod:`edge.mqtt.publisher`."""
    username: str | None = None
    password: str | None = None
    """Never from the file: ``SER_EDGE_MQTT_PASSWORD`` or the first line of ``password_file``."""
    password_file: str | None = None
    tls: bool = False
    """Use TLS. With no ``tls_ca_file`` the system's CA certificates verify the broker. TLS is also
    used whenever any ``tls_*`` file is given."""
    tls_ca_file: str | None = None
    tls_certfile: str | None = None
    """Client certificate (PEM) for mutual TLS; ``tls_keyfile`` is its key if not inside it."""
    tls_keyfile: str | None = None
    queue_size: int = 1000
    """Events kept in the outbox (not yet acknowledged); on overflow the oldest is dropped."""
    reconnect_min_s: float = 1.0
    """First reconnect delay; doubled after each failure up to ``reconnect_max_s``."""
    reconnect_max_s: float = 60.0
    stats_interval_s: float = 60.0
    """Wall-clock seconds between retained messages on ``<topic_prefix>/<device_id>/stats``:
    0 (none) or 1..86400."""
    state_dir: str | None = None
    """Directory of the durable outbox (``outbox.sqlite3``); ``None``: the outbox is in memory and
    events not yet acknowledged are lost with the process."""

    MAX_QUEUE_SIZE: ClassVar[int] = MAX_QUEUE_SIZE
    MAX_RECONNECT_S: ClassVar[float] = MAX_RECONNECT_S
    RANGES: ClassVar[dict[str, tuple[float, float, bool]]] = {
        "port": (1, 65535, False),
        "keepalive_s": (1, 65535, False),
        "queue_size": (1, MAX_QUEUE_SIZE, False),
        "reconnect_min_s": (0.0, MAX_RECONNECT_S, True),
        "reconnect_max_s": (0.0, MAX_RECONNECT_S, True),
        "stats_interval_s": (0.0, MAX_STATS_INTERVAL_S, False),
    }
    """Every numeric field's range ``(low, high, low is exclusive)``; ``edge.settings.RANGES`` lists them too."""

    OPTIONAL_TEXT: ClassVar[tuple[str, ...]] = ("client_id", "username", "password", "password_file", "tls_ca_file",
                                                "tls_certfile", "tls_keyfile", "state_dir")
    """Fields where ``None`` means unset (an empty string in the configuration file)."""

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host or "\x00" in self.host:
            raise ValueError(f"expected a broker host name, got {self.host!r}")
        for name, (low, high, exclusive) in self.RANGES.items():
            value = getattr(self, name)
            if isinstance(low, int) and isinstance(high, int):
                expect_int(value, name, low, high)
            else:
                expect_float(value, name, low, high, low_open=exclusive)
        emotion_topic(self.topic_prefix, "x")  # raises ValueError for a bad prefix
        if self.client_id is not None and not self.client_id:
            raise ValueError("expected client_id to be None or non-empty, got ''")
        if self.protocol not in PROTOCOL_NAMES:
            raise ValueError(f"expected protocol in {sorted(PROTOCOL_NAMES)}, got {self.protocol!r}")
        if self.password is not None and self.username is None:
            raise ValueError("expected a username with the password, got a password only")
        if self.tls_keyfile is not None and self.tls_certfile is None:
            raise ValueError("expected tls_certfile with tls_keyfile, got tls_keyfile only")
        if 0 < self.stats_interval_s < MIN_STATS_INTERVAL_S:
            raise ValueError(f"expected stats_interval_s to be 0 (no statistics) or {MIN_STATS_INTERVAL_S:g}.."
                             f"{MAX_STATS_INTERVAL_S:g} s, got {self.stats_interval_s!r}")
        if not self.reconnect_max_s >= self.reconnect_min_s:
            raise ValueError(f"expected reconnect_max_s >= reconnect_min_s ({self.reconnect_min_s}), "
                             f"got {self.reconnect_max_s!r}")

    @property
    def uses_tls(self) -> bool:
        """Whether the connection is TLS: ``tls`` or any ``tls_*`` file set."""
        return self.tls or any(f is not None for f in (self.tls_ca_file, self.tls_certfile, self.tls_keyfile))

    @property
    def password_in_clear(self) -> bool:
        """Whether a password would cross a network unencrypted: plain TCP to a non-loopback host."""
        if self.password is None or self.uses_tls or self.host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name
            return True
