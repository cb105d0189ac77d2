"""The systemd unit (systemd/ser-edge.service) and the sd_notify client (edge.service.systemd).

The notify tests bind a real AF_UNIX datagram socket and read back what the notifier sent;
the unit is checked with the real ``systemd-analyze verify``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import parse_unit, skip_or_fail

from edge.service.systemd import SystemdNotifier

UNIT_PATH = Path(__file__).resolve().parent.parent / "systemd" / "ser-edge.service"
RECV_TIMEOUT_S = 2.0
DATAGRAM_MAX_BYTES = 4096


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT_PATH.read_text(encoding="utf-8"))


# --- the unit file -----------------------------------------------------------------------------


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
    if analyze is None:
        skip_or_fail("systemd-analyze not installed")
    # verify checks that ExecStart's binary exists; the venv path only exists on the device.
    lines = UNIT_PATH.read_text(encoding="utf-8").splitlines()
    exec_lines = [i for i, line in enumerate(lines) if line.startswith("ExecStart=")]
    assert len(exec_lines) == 1, f"expected one ExecStart= line, got {len(exec_lines)}"
    lines[exec_lines[0]] = f"ExecStart={sys.executable} -m edge.cli run --config /etc/ser-edge/ser-edge.toml"
    copy = tmp_path / UNIT_PATH.name
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = subprocess.run(
        [analyze, "verify", str(copy)], check=False, capture_output=True, text=True, timeout=60
    )

    output = result.stdout + result.stderr
    about_unit = [line for line in output.splitlines() if UNIT_PATH.name in line or str(copy) in line]
    assert result.returncode == 0, output
    assert about_unit == [], output


def test_unit_has_key_directives(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/opt/ser-edge/venv/bin/ser-edge run --config /etc/ser-edge/ser-edge.toml",
        "EnvironmentFile": "-/etc/ser-edge/ser-edge.env",
        "Restart": "on-failure",
        "RestartSec": "5",
        "WatchdogSec": "30",
        "StateDirectory": "ser-edge",  # $STATE_DIRECTORY: the durable outbox
        "TimeoutStartSec": "60",
        "DynamicUser": "yes",
        "SupplementaryGroups": "audio",
        "DevicePolicy": "closed",
        "DeviceAllow": "char-alsa rw",
        "PrivateDevices": "no",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ProtectProc": "invisible",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "UMask": "0077",
        "SystemCallArchitectures": "native",
        "MemoryDenyWriteExecute": "no",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], f"{key}: expected {[value]}, got {service.get(key)}"
    for key in (
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictNamespaces",
        "LockPersonality",
        "RestrictRealtime",
    ):
        assert service.get(key) == ["yes"], f"{key}: expected ['yes'], got {service.get(key)}"
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert "IPAddressDeny" not in service, "the broker may be remote; IPAddressDeny= must stay unset"
    assert set(unit["Unit"]["After"][0].split()) == {"network-online.target", "sound.target"}
    assert unit["Unit"]["Wants"] == ["network-online.target"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


# --- the notify protocol -----------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A bound AF_UNIX datagram socket named by $NOTIFY_SOCKET (a filesystem path)."""
    path = tmp_path / "notify.sock"
    if len(os.fsencode(path)) >= 108:  # sun_path limit, unix(7)
        pytest.skip(f"tmp path too long for an AF_UNIX socket: {path}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(RECV_TIMEOUT_S)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def test_ready_status_watchdog_stopping_send_exact_datagrams(notify_socket: socket.socket) -> None:
    notifier = SystemdNotifier()
    assert notifier.enabled

    assert notifier.ready()
    assert notifier.status("listening on hw:1,0; MQTT connected")
    assert notifier.watchdog()
    assert notifier.stopping()

    received = [notify_socket.recv(DATAGRAM_MAX_BYTES) for _ in range(4)]
    assert received == [
        b"READY=1",
        b"STATUS=listening on hw:1,0; MQTT connected",
        b"WATCHDOG=1",
        b"STOPPING=1",
    ]


def test_notify_sends_fields_in_one_datagram_and_strips_newlines(notify_socket: socket.socket) -> None:
    notifier = SystemdNotifier()

    assert notifier.notify(READY=1, STATUS="two\nlines")
    assert notifier.send("EXTEND_TIMEOUT_USEC=5000000")

    assert notify_socket.recv(DATAGRAM_MAX_BYTES) == b"READY=1\nSTATUS=two lines"
    assert notify_socket.recv(DATAGRAM_MAX_BYTES) == b"EXTEND_TIMEOUT_USEC=5000000"


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"ser-edge-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(RECV_TIMEOUT_S)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)

        assert SystemdNotifier().ready()

        assert sock.recv(DATAGRAM_MAX_BYTES) == b"READY=1"


def test_unset_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()

    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False


def test_relative_notify_socket_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/notify.sock")

    assert not SystemdNotifier().enabled


def test_send_failure_never_raises_and_logs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    notifier = SystemdNotifier()

    with caplog.at_level(logging.DEBUG, logger="edge.service.systemd"):
        results = [notifier.ready(), notifier.watchdog(), notifier.watchdog()]

    assert results == [False, False, False]
    assert len([r for r in caplog.records if r.name == "edge.service.systemd"]) == 1


@pytest.mark.parametrize(
    ("usec", "pid", "expected_s"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "other", None),
        (None, None, None),
        ("0", None, None),
        ("not-a-number", None, None),
        ("30000000", "not-a-pid", None),
    ],
)
def test_watchdog_interval_s(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected_s: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        elif value == "self":
            monkeypatch.setenv(name, str(os.getpid()))
        elif value == "other":
            monkeypatch.setenv(name, str(os.getpid() + 1))
        else:
            monkeypatch.setenv(name, value)

    assert SystemdNotifier.watchdog_interval_s() == expected_s
