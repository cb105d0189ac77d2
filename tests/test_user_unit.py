"""The user unit (systemd/ser-edge-user.service): valid for systemd, and its way of reading audio
(a recorder command's raw PCM on a pipe) runs the daemon on real speech."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import parse_unit

UNIT_PATH = Path(__file__).resolve().parent.parent / "systemd" / "ser-edge-user.service"


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT_PATH.read_text(encoding="utf-8"))


def test_user_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    text = UNIT_PATH.read_text(encoding="utf-8").replace("/opt/ser-edge/venv/bin/ser-edge", f"{sys.executable} -m edge.cli")
    copy = tmp_path / "ser-edge.service"
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert [line for line in output.splitlines() if str(copy) in line] == [], output


def test_user_unit_reads_the_sound_server_through_the_input_command(unit) -> None:
    service = unit["Service"]
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    assert unit["Install"]["WantedBy"] == ["default.target"]
    assert "pipewire-pulse.service" in unit["Unit"]["After"][0]
    argv = shlex.split(service["ExecStart"][0])
    assert argv[1] == "run" and "--input-command" in argv
    recorder = shlex.split(argv[argv.index("--input-command") + 1])
    assert recorder[0] == "parecord" and {"--raw", "--format=s16le", "--rate=16000", "--channels=1"} <= set(recorder)
    assert "StateDirectory" in service and "WatchdogSec" in service
