"""The paho side of MQTT: the client factory (clean session, auth, TLS, callback API v2), paho's log
routed into ours (:class:`PahoLog`), and the phrases that say why a connection failed.

Used by the publisher (:mod:`edge.mqtt.publisher`) and by ``ser-edge listen`` (:mod:`edge.mqtt.listen`).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.mqtt.config import PROTOCOL_NAMES, MqttSettings

logger = logging.getLogger(__name__)

_PAHO_LEVELS = {mqtt.MQTT_LOG_DEBUG: logging.DEBUG, mqtt.MQTT_LOG_INFO: logging.INFO,
                mqtt.MQTT_LOG_NOTICE: logging.INFO, mqtt.MQTT_LOG_WARNING: logging.WARNING,
                mqtt.MQTT_LOG_ERR: logging.ERROR}


class PahoLog:
    """paho's log lines (its public ``on_log`` callback) routed into this module's logger, its
    repeated warnings and errors demoted to DEBUG until the next successful connection.

    paho 2.2 logs ERROR "Client is not connected" after every failed reconnect attempt; while the
    broker is down that would be an error line every backoff period, and the publisher logs one
    warning per outage itself: always demoted. Other warnings and errors of paho are shown once and
    demoted when repeated before :meth:`reset`, e.g. "failed to receive on socket: [SSL:
    TLSV13_ALERT_CERTIFICATE_REQUIRED]" on every attempt against a broker that wants a client
    certificate. A repeat is recognised by the text before the first colon ("failed to receive on
    socket"): the same refusal may surface as the TLS alert on one attempt and as "EOF occurred in
    violation of protocol" on the next.
    """

    MAX_REMEMBERED = 100

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def reset(self) -> None:
        """Forget the messages seen: the next occurrence of each is shown again."""
        self._seen = set()

    def level_of(self, paho_level: int, message: str) -> int:
        """The :mod:`logging` level for one paho message (and remember it)."""
        level = _PAHO_LEVELS.get(paho_level, logging.DEBUG)
        if level < logging.WARNING:
            return level
        kind = message.split(":", 1)[0]
        if kind.startswith("Client is not connected") or kind in self._seen:
            return logging.DEBUG
        if len(self._seen) >= self.MAX_REMEMBERED:
            self._seen = set()
        self._seen.add(kind)
        return level

    def __call__(self, client: mqtt.Client, userdata: object, level: int, message: str) -> None:
        logger.log(self.level_of(level, message), "paho: %s", message)


PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
"""``mqtt.protocol`` values (:data:`edge.mqtt.config.PROTOCOL_NAMES`) and paho's protocol constants."""

REFUSED_PROTOCOL_CODES = (0x01, 0x84)
"""CONNACK codes meaning "this broker does not speak the protocol version": 3.1.1's return code 1
(as a 3.1.1-only broker answers a version-5 CONNECT) and MQTT 5's 0x84."""
assert tuple(PROTOCOLS) == PROTOCOL_NAMES


class Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed, and reporting the death
    of its network thread.

    paho's network loop catches the ``OSError`` of a failed attempt (TCP refused, TLS handshake)
    and calls ``on_connect_fail`` without it; :attr:`last_connect_error` keeps it for the log line.

    Any other exception ends paho's network thread (``loop_start`` runs :meth:`loop_forever` in
    it): nothing is sent or received any more, and paho says nothing but a traceback on stderr.
    :meth:`loop_forever` catches it, logs it once (CRITICAL), keeps it in :attr:`network_error`
    and calls :attr:`on_network_error` (the publisher then reports itself dead: the daemon exits 1
    and systemd restarts it; ``listen`` exits 1).
    """

    last_connect_error: OSError | None = None
    network_error: BaseException | None = None
    """Why the network loop died; ``None`` while it runs (or after a clean stop)."""
    on_network_error: Callable[[BaseException], None] | None = None
    """Called on the dying network thread with the exception."""

    def loop_forever(self, timeout: float = 1.0, retry_first_connection: bool = False) -> mqtt.MQTTErrorCode:
        try:
            return super().loop_forever(timeout=timeout, retry_first_connection=retry_first_connection)
        except BaseException as exc:  # noqa: BLE001 - the network thread never dies silently
            self.network_error = exc
            logger.critical("the MQTT network thread (paho) died (%s: %s); nothing is sent or received any more",
                            type(exc).__name__, exc, exc_info=True)
            if self.on_network_error is not None:
                self.on_network_error(exc)
            return mqtt.MQTTErrorCode.MQTT_ERR_UNKNOWN

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            rc = super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise
        self.last_connect_error = None
        return rc


UNREACHABLE = "unreachable"
"""The failure phrase of a broker that does not answer (down, wrong host or port): transient."""


def describe_connect_error(error: OSError | None, settings: MqttSettings) -> str:
    """One phrase for why a connection attempt failed: :data:`UNREACHABLE` for a down broker, else
    what is wrong with TLS (certificate verification, handshake), which retrying alone will not fix.

    :param error: the exception of the failed attempt (``Client.last_connect_error``), or ``None``.
    """
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"TLS verification of the broker's certificate failed: {error.verify_message} "
                f"(CA file {settings.tls_ca_file or 'system default'})")
    # A broker stopping mid-handshake gives EOF errors: that is a down broker, not a TLS problem.
    if isinstance(error, ssl.SSLError) and not isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return f"TLS handshake failed: {error.reason or error}"
    return UNREACHABLE


def describe_refusal(reason_code: mqtt.ReasonCode, settings: MqttSettings) -> str:
    """One phrase for a CONNACK refusal, e.g. ``broker refused the connection: Not authorized (username 'ser')``."""
    who = f"username {settings.username!r}" if settings.username is not None else "no username"
    return f"broker refused the connection: {reason_code} ({who})"


def refuses_protocol(reason_code: mqtt.ReasonCode, protocol: str) -> bool:
    """Whether a CONNACK says the broker does not speak MQTT 5 (see :data:`REFUSED_PROTOCOL_CODES`)."""
    return protocol == "5" and reason_code.value in REFUSED_PROTOCOL_CODES


def make_client(settings: MqttSettings, client_id: str, protocol: str | None = None) -> Client:
    """A paho client (clean session / clean start, callback API v2) with auth/TLS from ``settings``,
    speaking ``protocol`` (default ``settings.protocol``); paho's log goes through :class:`PahoLog`.

    :raises ValueError: if a TLS file named in ``settings`` does not exist.
    """
    for name in ("tls_ca_file", "tls_certfile", "tls_keyfile"):
        path = getattr(settings, name)
        if path is not None and not Path(path).is_file():
            raise ValueError(f"expected an existing file for {name}, got {path!r}")
    protocol = protocol or settings.protocol
    if protocol == "5":  # MQTT 5 has clean_start at connect time instead of clean_session
        client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    else:
        client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                         protocol=PROTOCOLS[protocol])
    client.on_log = PahoLog()
    # An exception in one of our callbacks is logged by paho instead of killing its network thread.
    client.suppress_exceptions = True
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.uses_tls:
        client.tls_set(ca_certs=settings.tls_ca_file, certfile=settings.tls_certfile,
                       keyfile=settings.tls_keyfile)
    client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)  # type: ignore[arg-type]
    return client


def connect(client: Client, settings: MqttSettings, protocol: str) -> None:
    """``connect_async`` with clean start (MQTT 5) and the keep-alive of ``settings``; returns at once."""
    if protocol == "5":
        client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s, clean_start=True)
    else:
        client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)


def warn_password_in_clear(settings: MqttSettings) -> None:
    """Log a warning when the password would cross the network unencrypted (no TLS)."""
    if settings.password_in_clear:
        logger.warning("the MQTT password for %r goes to %s:%d over plain TCP (no TLS): anyone on the "
                       "network path can read it; set mqtt.tls = true", settings.username, settings.host,
                       settings.port)
