"""The README's ALSA ``dsnoop`` example (``asound.conf``), read by the real alsa-lib.

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
