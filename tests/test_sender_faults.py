"""Issue 18, item 1: no worker thread dies silently. The MQTT sender thread's death is logged once,
the systemd watchdog gets no ping from then on, and ``ser-edge run`` exits 1 (systemd restarts it).

No real fault is left that kills the sender (a storage error degrades the outbox to memory instead,
``test_outbox_faults.py``), so the death is a bug injected into the sender's loop; everything else
is real: the daemon's main loop on an input command, mosquitto, a ``$NOTIFY_SOCKET`` datagram socket.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest
from helpers import NotifySocket
from mqtt_helpers import kill_paho_loop
from paths import SHIPPED_MODEL

from edge.exitcodes import EXIT_FAILURE
from edge.mqtt.publisher import MqttPublisher
from edge.service.daemon import StopFlag, run_microphone
from edge.service.systemd import SystemdNotifier, Watchdog
from edge.settings import parse_settings

WAIT_S = 60.0
SILENCE_COMMAND = (f"{sys.executable} -c \"import sys, time\nwhile True:\n"
                   f"    sys.stdout.buffer.write(bytes(3200)); sys.stdout.flush(); time.sleep(0.1)\"")
"""Raw s16le silence at 16 kHz, in real time (100 ms every 100 ms), until killed."""


def _run_until_the_fault(mosquitto, device_id: str, notify: NotifySocket, die: threading.Event) -> tuple[bool, list[int]]:
    """``run_microphone`` on silence with ``device_id``, publishing to ``mosquitto``, pinging ``notify``;
    once it pinged the watchdog, ``die`` arms the injected fault. Returns whether the daemon then exited by
    itself within WAIT_S (it is stopped in any case) and its exit status (in a list: empty if it never returned)."""
    settings = parse_settings({
        "device_id": device_id, "model": {"path": str(SHIPPED_MODEL)},
        "audio": {"input_command": SILENCE_COMMAND},
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
    })
    stop = StopFlag()
    result: list[int] = []
    daemon = threading.Thread(target=lambda: result.append(run_microphone(settings, stop,
                                                                          SystemdNotifier(str(notify.path)))))
    daemon.start()
    try:
        notify.wait_for("WATCHDOG=1", 2)
        die.set()
        daemon.join(WAIT_S)
        exited_by_itself = not daemon.is_alive()
    finally:
        stop.event.set()
        daemon.join(WAIT_S)
        notify.close()
    return exited_by_itself, result


def test_the_daemon_exits_1_and_stops_pinging_when_the_sender_thread_dies(mosquitto, tmp_path: Path,
                                                                         monkeypatch, caplog) -> None:
    if len(str(tmp_path / "notify")) > 100:
        pytest.skip(f"tmp path too long for an AF_UNIX socket: {tmp_path}")
    notify = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # pings every 0.5 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    die = threading.Event()
    datagrams_at_death: list[int] = []

    def send_one_then_die(self) -> bool:  # the injected bug: the sender raises once told to
        die.wait()
        datagrams_at_death.append(len(notify.datagrams))
        raise RuntimeError("injected bug in the sender")

    monkeypatch.setattr(MqttPublisher, "_send_one", send_one_then_die)
    caplog.set_level(logging.INFO)
    exited_by_itself, result = _run_until_the_fault(mosquitto, "dead-sender-pi", notify, die)
    assert exited_by_itself, "the daemon kept running with its sender thread dead"
    assert result == [EXIT_FAILURE]
    deaths = [r for r in caplog.records if "sender thread died" in r.getMessage() and r.name == "edge.mqtt.publisher"]
    assert len(deaths) == 1 and deaths[0].levelno == logging.CRITICAL
    after = [d for _, d in notify.datagrams[datagrams_at_death[0]:]]
    assert after.count("WATCHDOG=1") <= 1, after  # at most one already on its way when it died
    assert after[-1] == "STOPPING=1", after


def test_the_watchdog_is_not_fed_while_unhealthy(tmp_path: Path, monkeypatch) -> None:
    if len(str(tmp_path / "notify")) > 100:
        pytest.skip(f"tmp path too long for an AF_UNIX socket: {tmp_path}")
    notify = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    healthy = [True]
    try:
        watchdog = Watchdog(SystemdNotifier(str(notify.path)), healthy=lambda: healthy[0])
        watchdog.feed(force=True)
        notify.wait_for("WATCHDOG=1", 1)
        healthy[0] = False
        watchdog.feed(force=True)
        healthy[0] = True
        watchdog.feed(force=True)
        notify.wait_for("WATCHDOG=1", 2)
    finally:
        notify.close()
    assert [d for _, d in notify.datagrams] == ["WATCHDOG=1", "WATCHDOG=1"]


def test_the_daemon_exits_1_when_the_paho_network_thread_dies(mosquitto, tmp_path: Path, monkeypatch,
                                                              caplog) -> None:
    """Issue 18 item 14: an exception that paho does not catch ends its network thread (``loop_start``'s
    ``loop_forever``): nothing is sent or received. The fault is injected into paho's loop (its
    keep-alive check, run on every pass); the detection, the log line and the exit are the real ones."""
    if len(str(tmp_path / "notify")) > 100:
        pytest.skip(f"tmp path too long for an AF_UNIX socket: {tmp_path}")
    notify = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    die = kill_paho_loop(monkeypatch)
    caplog.set_level(logging.INFO)
    exited_by_itself, result = _run_until_the_fault(mosquitto, "dead-network-pi", notify, die)
    assert exited_by_itself, "the daemon kept running with paho's network thread dead"
    assert result == [EXIT_FAILURE]
    deaths = [r for r in caplog.records if "network thread (paho) died" in r.getMessage()]
    assert len(deaths) == 1 and deaths[0].levelno == logging.CRITICAL, caplog.text
    assert "injected fault in paho's network loop" in deaths[0].getMessage()
    assert [d for _, d in notify.datagrams][-1] == "STOPPING=1"
