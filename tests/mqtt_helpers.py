"""Test helpers around a real mosquitto: a broker process on a free loopback port and a paho subscriber."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

logger = logging.getLogger(__name__)

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")
BROKER_START_TIMEOUT_S = 10.0
BROKER_STOP_TIMEOUT_S = 5.0
SUBSCRIBE_TIMEOUT_S = 5.0


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (PATH first, then the usual sbin dirs), or ``None``."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_CANDIDATES if os.access(p, os.X_OK)), None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MosquittoBroker:
    """A mosquitto process listening on ``127.0.0.1:port`` with anonymous access.

    ``stop()``/``start()`` restart it on the same port (broker-restart tests). With
    ``persistence=True`` the broker saves sessions and queued QoS 1 messages to ``workdir`` on
    ``stop()`` and restores them on ``start()``; with ``autosave=True`` as well, it saves them after
    every change, so they also survive ``kill()`` (SIGKILL, no chance to save).
    """

    def __init__(self, binary: str, workdir: Path, port: int | None = None, persistence: bool = False,
                 autosave: bool = False) -> None:
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self.workdir = workdir
        self.persistence = persistence
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            "log_dest stderr",
            "log_type all",
            *(["autosave_on_changes true", "autosave_interval 1"] if autosave else []),
            "max_queued_messages 100000",  # per offline persistent session; mosquitto's default is 1000
            # As root, mosquitto drops to user 'mosquitto', which cannot write workdir; stay ourselves.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        ]
        self.config_path.write_text("\n".join(lines) + "\n")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the broker and wait until its port accepts connections.

        :raises RuntimeError: if it exits or does not listen within ``BROKER_START_TIMEOUT_S``.
        """
        if self.running:
            return
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        try:
            self._proc = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdout=log,
                                          stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {BROKER_START_TIMEOUT_S} s: "
                           f"{self.log_tail()}")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); clients see their connections drop."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(BROKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(BROKER_STOP_TIMEOUT_S)

    def kill(self) -> None:
        """SIGKILL the broker: no DISCONNECT to clients, no last save of its persistence file."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(BROKER_STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int


class Subscriber:
    """A paho subscriber that records every message it receives, in arrival order.

    The constructor returns once the broker acknowledged the subscriptions (SUBACK); after a
    reconnect it subscribes again. ``clean_session=False`` with a fixed ``client_id`` makes a
    persistent session, so the broker queues QoS 1 messages while it is disconnected.
    """

    def __init__(self, host: str, port: int, topics: list[str] | tuple[str, ...] | str, qos: int = 1,
                 client_id: str = "", clean_session: bool = True) -> None:
        self._topics = [topics] if isinstance(topics, str) else list(topics)
        self._qos = qos
        self._lock = threading.Condition()
        self._messages: list[Received] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=clean_session)
        self._client.enable_logger(logger)
        self._client.reconnect_delay_set(0.1, 1.0)  # after a broker restart, be back within a second
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(SUBSCRIBE_TIMEOUT_S):
            self.close()
            raise TimeoutError(f"no SUBACK for {self._topics} within {SUBSCRIBE_TIMEOUT_S} s")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(t, self._qos) for t in self._topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self._messages.append(Received(message.topic, bytes(message.payload), bool(message.retain),
                                           message.qos))
            self._lock.notify_all()

    def messages(self, topic: str | None = None) -> list[Received]:
        """A copy of the messages so far, optionally only those on ``topic``."""
        with self._lock:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def wait_for(self, n: int, timeout_s: float, topic: str | None = None) -> list[Received]:
        """Wait until at least ``n`` messages (on ``topic`` if given) arrived; return them.

        :raises AssertionError: after ``timeout_s`` seconds, listing what did arrive.
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                got = [m for m in self._messages if topic is None or m.topic == topic]
                remaining_s = deadline - time.monotonic()
                if len(got) >= n or remaining_s <= 0:
                    break
                self._lock.wait(remaining_s)
        assert len(got) >= n, f"expected {n} messages{f' on {topic}' if topic else ''} " \
                              f"within {timeout_s} s, got {len(got)}: {got}"
        return got

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
