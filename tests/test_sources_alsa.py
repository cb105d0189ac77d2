"""The README's ALSA ``dsnoop`` example (``asound.conf``), read by the real alsa-lib; and a
microphone (ALSA file plugin) that sends NaN samples.

Without a sound card (``/dev/snd`` is absent here) a dsnoop PCM cannot be opened: dsnoop needs a
hardware slave, and ALSA's ``file``/``null`` plugins, which stand in for the microphone in
``test_microphone.py``, are refused as its slave ("Invalid type 'null' for slave PCM"). What this
test does check: alsa-lib parses the README's block, lists both PCMs with their descriptions, and
opening the one readers use walks plug → dsnoop → the card (failing only for the missing card,
not for the configuration).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs ser-edge or a broker for several seconds (make check skips them)

README = Path(__file__).resolve().parents[1] / "README.md"


def _asound_conf() -> str:
    text = README.read_text(encoding="utf-8")
    return re.search(r"<!-- asound.conf:.*?-->\n```\n(.*?)```", text, re.DOTALL).group(1)


@pytest.fixture
def alsa_home(tmp_path: Path) -> dict[str, str]:
    if shutil.which("arecord") is None:
        pytest.skip("arecord (alsa-utils) not installed")
    (tmp_path / ".asoundrc").write_text(_asound_conf())
    return {**os.environ, "HOME": str(tmp_path)}


def test_alsa_reads_the_readme_dsnoop_configuration(alsa_home: dict[str, str]) -> None:
    listed = subprocess.run(["arecord", "-L"], env=alsa_home, capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    names = listed.stdout.splitlines()
    assert "mic_shared" in names and "mic" in names
    assert names[names.index("mic_shared") + 1].strip() == "shared microphone (dsnoop)"
    opened = subprocess.run(["arecord", "-q", "-D", "mic", "-f", "S16_LE", "-r", "16000", "-c", "1", "-d", "1",
                             os.devnull], env=alsa_home, capture_output=True, text=True, timeout=30)
    if Path("/dev/snd").exists() and opened.returncode == 0:
        return  # a machine with that card: the shared microphone records
    assert opened.returncode != 0
    assert "Cannot get card index for seeed2micvoicec" in opened.stderr, opened.stderr
    assert "parse" not in opened.stderr.lower() and "unknown" not in opened.stderr.lower(), opened.stderr


def test_a_microphone_sending_nan_is_refused_like_a_file_and_reopened(tmp_path: Path, clip_48k, model_path) -> None:  # noqa: F811
    """PortAudio → ALSA file plugin → a FIFO carrying NaN samples: the daemon logs the samples as a
    file's would be refused, reports the microphone unavailable, reopens it, stays up, exits 0."""
    import numpy as np
    from microphone import BLOCK_MS, MIC_RATE_HZ, PCM_NAME, PERIOD_FRAMES, Daemon, FifoMicrophone, asoundrc

    broken = clip_48k.copy()
    broken[::7] = np.nan
    home = tmp_path / "home"
    home.mkdir()
    mic = FifoMicrophone(tmp_path / "mic.f32le", broken, MIC_RATE_HZ, PERIOD_FRAMES)
    (home / ".asoundrc").write_text(asoundrc(mic.fifo))
    config = tmp_path / "ser-edge.toml"
    config.write_text(f"[audio]\nsample_rate_hz = {MIC_RATE_HZ}\nblock_ms = {BLOCK_MS}\n[mqtt]\nenabled = false\n")
    daemon = Daemon(["--config", str(config), "--device", PCM_NAME, "--model", str(model_path)],
                    {**os.environ, "HOME": str(home)}, cwd=tmp_path)
    try:
        daemon.wait_for_lines(r"microphone: expected finite samples, got \d+ NaN/inf; reopening in", 1, 60)
        daemon.wait_for_lines(rf"microphone '{PCM_NAME}' open at {MIC_RATE_HZ} Hz", 2, 60)  # reopened
        status = daemon.terminate()
    finally:
        daemon.kill()
        mic.stop()
    assert status == 0, daemon.log()
    assert not any("Traceback" in line for line in daemon.lines), daemon.log()
