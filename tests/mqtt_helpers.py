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
OPENSSL_TIMEOUT_S = 30.0


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


@dataclass(frozen=True)
class BrokerTls:
    """A TLS listener's PEM files; ``require_certificate`` makes it mutual TLS (clients signed by
    ``cafile`` only)."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False


def find_mosquitto_passwd() -> str | None:
    """Path of ``mosquitto_passwd`` (Debian package mosquitto), or ``None``."""
    return shutil.which("mosquitto_passwd")


def write_password_file(path: Path, users: dict[str, str], tool: str | None = None) -> Path:
    """A mosquitto password file for ``users`` (name -> password), made with ``mosquitto_passwd -b``
    (hashed, as mosquitto reads it); returns ``path``.

    :raises RuntimeError: if ``mosquitto_passwd`` is absent or fails.
    """
    tool = tool or find_mosquitto_passwd()
    if tool is None:
        raise RuntimeError("mosquitto_passwd not found (apt-get install mosquitto)")
    for i, (user, password) in enumerate(users.items()):
        create = ["-c"] if i == 0 else []
        done = subprocess.run([tool, "-b", *create, str(path), user, password], capture_output=True,
                              text=True, timeout=BROKER_STOP_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"mosquitto_passwd failed ({done.returncode}): {done.stderr.strip()}")
    return path


@dataclass(frozen=True)
class Pki:
    """Throwaway PEM files for TLS tests: a CA, a server certificate for 127.0.0.1/localhost and a
    client certificate, both signed by it, and a second CA that signed neither."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path


def _openssl(*args: str | Path) -> None:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                          timeout=OPENSSL_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed ({done.returncode}): {done.stderr.strip()}")


def make_pki(directory: Path) -> Pki:
    """Generate :class:`Pki` in ``directory`` with the ``openssl`` command (P-256 keys, valid 2 days).

    The extensions are the ones strict verifiers (Python 3.13's ``VERIFY_X509_STRICT``) want: CA
    basic constraints and key usage, subject/authority key identifiers, extended key usage, and the
    server's subjectAltName ``IP:127.0.0.1,DNS:localhost``.

    :raises RuntimeError: if ``openssl`` is absent or fails.
    """
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl not found (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    key_args = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

    def make_ca(name: str) -> tuple[Path, Path]:
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        _openssl("req", "-x509", *key_args, "-keyout", key, "-out", cert, "-days", "2",
                 "-subj", f"/CN=ser-edge test {name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-addext", "subjectKeyIdentifier=hash")
        return cert, key

    def make_leaf(name: str, ca: tuple[Path, Path], extensions: list[str]) -> tuple[Path, Path]:
        cert, key, csr, ext = (directory / f"{name}{suffix}" for suffix in (".crt", ".key", ".csr", ".ext"))
        _openssl("req", *key_args, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        ext.write_text("\n".join([
            "basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature",
            "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid", *extensions]) + "\n")
        _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial",
                 f"0x{os.urandom(8).hex()}", "-days", "2", "-extfile", ext, "-out", cert)
        return cert, key

    ca = make_ca("ca")
    server = make_leaf("localhost", ca, ["extendedKeyUsage=serverAuth",
                                         "subjectAltName=IP:127.0.0.1,DNS:localhost"])
    client = make_leaf("client", ca, ["extendedKeyUsage=clientAuth"])
    other_ca, _ = make_ca("other-ca")
    return Pki(ca_cert=ca[0], server_cert=server[0], server_key=server[1], client_cert=client[0],
               client_key=client[1], other_ca_cert=other_ca)


class MosquittoBroker:
    """A mosquitto process listening on ``127.0.0.1:port``, anonymous access by default.

    ``stop()``/``start()`` restart it on the same port (broker-restart tests). With
    ``persistence=True`` the broker saves sessions and queued QoS 1 messages to ``workdir`` on
    ``stop()`` and restores them on ``start()``; with ``autosave=True`` as well, it saves them after
    every change, so they also survive ``kill()`` (SIGKILL, no chance to save).

    With ``tls`` the listener speaks TLS only (:class:`BrokerTls`); with ``password_file`` (see
    :func:`write_password_file`) anonymous clients are refused (``allow_anonymous false``); with
    ``acl_file`` (mosquitto's ``acl_file`` format) the broker denies what it does not allow.
    ``extra_config`` lines are appended to its configuration file (e.g. the limits ``max_packet_size
    800``, ``max_qos 0``, ``retain_available false`` that an MQTT 5 CONNACK announces).
    """

    def __init__(self, binary: str, workdir: Path, port: int | None = None, persistence: bool = False,
                 autosave: bool = False, tls: BrokerTls | None = None,
                 password_file: Path | None = None, acl_file: Path | None = None,
                 extra_config: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self.workdir = workdir
        self.persistence = persistence
        self.tls = tls
        self.password_file = password_file
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        tls_lines = [] if tls is None else [
            f"cafile {tls.cafile}",
            f"certfile {tls.certfile}",
            f"keyfile {tls.keyfile}",
            f"require_certificate {'true' if tls.require_certificate else 'false'}",
        ]
        lines = [
            f"listener {self.port} {self.host}",  # the settings below are global (per_listener_settings false)
            *tls_lines,
            f"allow_anonymous {'false' if password_file is not None else 'true'}",
            *([f"password_file {password_file}"] if password_file is not None else []),
            *([f"acl_file {acl_file}"] if acl_file is not None else []),
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            "log_dest stderr",
            "log_type all",
            *(["autosave_on_changes true", "autosave_interval 1"] if autosave else []),
            "max_queued_messages 100000",  # per offline persistent session; mosquitto's default is 1000
            # As root, mosquitto drops to user 'mosquitto', which cannot write workdir; stay ourselves.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            *extra_config,
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
    ``username``/``password`` log in; ``ca_file`` (with ``certfile``/``keyfile`` for mutual TLS)
    connects over TLS, verifying the broker against ``ca_file``.
    """

    def __init__(self, host: str, port: int, topics: list[str] | tuple[str, ...] | str, qos: int = 1,
                 client_id: str = "", clean_session: bool = True, username: str | None = None,
                 password: str | None = None, ca_file: Path | None = None, certfile: Path | None = None,
                 keyfile: Path | None = None) -> None:
        self._topics = [topics] if isinstance(topics, str) else list(topics)
        self._qos = qos
        self._lock = threading.Condition()
        self._messages: list[Received] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=clean_session)
        self._client.enable_logger(logger)
        if username is not None:
            self._client.username_pw_set(username, password)
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file), certfile=certfile and str(certfile),
                                 keyfile=keyfile and str(keyfile))
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


class Mqtt311OnlyProxy:
    """mosquitto behind a TCP proxy that answers an MQTT 5 CONNECT as a 3.1.1-only broker does
    (CONNACK with return code 1, "unacceptable protocol version", then close; MQTT 3.1.1 sec. 3.1.2.2)
    and passes every other connection through to the real broker, byte for byte."""

    def __init__(self, broker) -> None:
        self.broker = broker
        self.refused = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @staticmethod
    def _read_packet(conn: socket.socket) -> bytes:
        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            return data

        header = read(1)
        length, shift, lengths = 0, 0, b""
        while True:
            byte = read(1)
            lengths += byte
            length |= (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                break
        return header + lengths + read(length)

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                connect = self._read_packet(conn)
            except ConnectionError:
                return
            body = connect[2:] if connect[1] < 0x80 else connect[3:]
            if body[6] == 5:  # protocol level after the name b"\x00\x04MQTT"
                self.refused += 1
                conn.sendall(b"\x20\x02\x00\x01")
                return
            with socket.create_connection((self.broker.host, self.broker.port)) as upstream:
                upstream.sendall(connect)
                threading.Thread(target=self._pump, args=(upstream, conn), daemon=True).start()
                self._pump(conn, upstream)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(5.0)
        self.server.close()


def kill_paho_loop(monkeypatch) -> threading.Event:
    """Arm a fault in paho's network loop (its keep-alive check, run on every pass) once the returned event
    is set: the thread then dies of an exception paho does not catch."""
    die = threading.Event()
    original = mqtt.Client._check_keepalive

    def check_keepalive_then_die(self) -> None:
        if die.is_set():
            raise RuntimeError("injected fault in paho's network loop")
        original(self)

    monkeypatch.setattr(mqtt.Client, "_check_keepalive", check_keepalive_then_die)
    return die
