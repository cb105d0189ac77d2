"""``ser-edge run`` under a (test) service manager: READY/STATUS/WATCHDOG/STOPPING datagrams on a
real ``$NOTIFY_SOCKET``, with the microphone missing and a reopen backoff longer than WatchdogSec.

Before issue 10 the pings stopped for the whole backoff (up to 30 s = the unit's WatchdogSec), so
systemd would have killed the daemon the README says stays up. Nothing is mocked: the daemon is
the installed command, PortAudio looks for a device that does not exist, the broker is mosquitto.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import NotifySocket, skip_or_fail
from paths import SHIPPED_MODEL

pytestmark = pytest.mark.slow  # each test runs ser-edge or a broker for several seconds (make check skips them)

WATCHDOG_USEC = 2_000_000
"""WatchdogSec=2 s: the daemon pings every 0.5 s (a quarter), systemd would kill it after 2 s without."""
REOPEN_S = 4.0
"""The microphone backoff (min = max): twice WatchdogSec."""
WAIT_S = 60.0


def test_watchdog_is_fed_through_the_microphone_backoff(mosquitto, tmp_path: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", "import sounddevice"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        skip_or_fail("PortAudio not loadable (apt-get install libportaudio2)")
    if len(str(tmp_path / "notify")) > 100:
        pytest.skip(f"tmp path too long for an AF_UNIX socket: {tmp_path}")
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "c.toml"
    config.write_text(f'device_id = "watchdog-pi"\n[model]\npath = "{SHIPPED_MODEL}"\n[audio]\n'
                      f'device = "nonexistent-device-xyz"\nreopen_min_s = {REOPEN_S}\nreopen_max_s = {REOPEN_S}\n'
                      f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n')
    notify = NotifySocket(tmp_path / "notify")
    env = {**os.environ, "HOME": str(home), "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        notify.wait_for("STATUS=microphone unavailable", 3)  # two whole backoffs of 2 x WatchdogSec
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    assert proc.returncode == 0, stderr
    texts = [d for _, d in notify.datagrams]
    failures = [i for i, d in enumerate(texts) if d.startswith("STATUS=microphone unavailable")]
    ready, stopping = texts.index("READY=1"), texts.index("STOPPING=1")
    pings = [i for i, d in enumerate(texts) if d == "WATCHDOG=1"]
    assert ready < pings[0], texts  # READY first: systemd arms the watchdog with it
    assert stopping > failures[-1] and "Traceback" not in stderr, texts
    for before, after in zip(failures, failures[1:], strict=False):  # pings inside every backoff
        assert sum(before < i < after for i in pings) >= 2, texts
    times = [t for t, d in notify.datagrams if d == "WATCHDOG=1"]
    gap_s = max(b - a for a, b in zip(times, times[1:], strict=False))
    print(f"\nlargest gap between WATCHDOG=1 with the microphone missing: {gap_s:.2f} s "
          f"(WatchdogSec {WATCHDOG_USEC / 1e6:g} s, backoff {REOPEN_S:g} s, {len(times)} pings)")
