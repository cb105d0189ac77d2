"""``ser-edge try`` in a pseudo-terminal, hearing real speech through the ALSA file-plugin microphone
of ``test_microphone.py`` (PortAudio → ALSA ``file`` plugin → a FIFO fed at real time)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
from helpers import ser_edge_command
from microphone import BLOCK_MS, MIC_RATE_HZ, PCM_NAME

from edge.manifest import load_manifest

pytestmark = pytest.mark.slow  # each test runs ser-edge or a broker for several seconds (make check skips them)

RUN_TIMEOUT_S = 60.0
"""Upper bound for two utterances: model load, 1 s lead, two 4.4 s clips with 1.5 s gaps."""
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _in_pty(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin/stdout/stderr; its exit status and everything it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        status = proc.wait(10)
        os.close(master)
    return status, b"".join(chunks).decode("utf-8", errors="replace")


def test_try_shows_level_speech_and_a_bar_per_score_in_a_terminal(alsa_mic, model_path: Path,  # noqa: F811
                                                                   tmp_path: Path) -> None:
    env, mic = alsa_mic
    labels = load_manifest(model_path).labels
    config = tmp_path / "ser-edge.toml"
    config.write_text(f"[audio]\nsample_rate_hz = {MIC_RATE_HZ}\nblock_ms = {BLOCK_MS}\n")
    status, screen = _in_pty([*ser_edge_command(), "try", "--config", str(config), "--device", PCM_NAME, "--model",
                              str(model_path), "--prompts", "--utterances", "2"], env, tmp_path)
    text = ANSI.sub("", screen).replace("\r", "\n")
    assert status == 0, screen
    assert "Traceback" not in text
    assert re.search(r"level \[[#.]{30}\] +-?\d+ dBFS \(peak -?\d+\)\s+silence", text), text
    assert re.search(r"level \[#+\.*\] +-?\d+ dBFS \(peak -?\d+\)\s+speech", text), text  # the clip is heard
    assert "\x1b[2K" in screen  # the status line is redrawn in place
    for number in (1, 2):
        match = re.search(rf"utterance {number}: (\d+\.\d) s  ->  (\w+) (0\.\d\d)", text)
        assert match and match.group(2) in labels, text
        assert 3.0 <= float(match.group(1)) <= 5.0  # the 4.4 s clip, as the VAD trims it
    for label in labels:  # one bar per score
        assert len(re.findall(rf"^  {label} +[#.]{{30}} [01]\.\d\d", text, re.MULTILINE)) == 2, label
    assert f'prompt 1: say something "{labels[0]}"' in text and f'prompt 2: say something "{labels[1]}"' in text
    assert re.search(rf"asked for {labels[0]}, heard \w+: (agree|disagree)  \(agreement [01]/1\)", text)
    assert re.search(r"2 utterances; the model agreed with the prompt [012] times", text)
    assert mic.readers >= 1
