"""Resident memory of the daemon's hot path (issue 19): replaying 16 kHz audio must not import
``scipy.signal`` (+79 MB resident with scipy 1.17) or ``sounddevice`` (+20 MB, PortAudio), so the
daemon stays within its 60 MB budget on a Pi Zero 2 W. ``tests/benchmarks/bench_pipeline.py``
measures the RSS itself; this test guards the imports, which is what moves it."""

from __future__ import annotations

import json
import subprocess
import sys

import soundfile
from paths import REPO, SAMPLE, SHIPPED_MODEL

HEAVY = ("scipy.signal", "sounddevice")

PROBE = """
import contextlib, io, json, sys
from edge.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    status = main(["replay", sys.argv[1], "--model", sys.argv[2], "--sink", "stdout", "--log-level", "WARNING"])
print(json.dumps({"status": status, "events": len(out.getvalue().splitlines()),
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("scipy", "sounddevice"))}))
"""


def test_replaying_16khz_audio_imports_neither_scipy_signal_nor_sounddevice():
    assert soundfile.info(str(SAMPLE)).samplerate == 16000  # the model's rate: no resampling needed
    done = subprocess.run([sys.executable, "-c", PROBE, str(SAMPLE), str(SHIPPED_MODEL)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["status"] == 0 and report["events"] > 0, report  # the pipeline really ran
    imported = [m for m in report["modules"] if m.startswith(HEAVY)]
    assert not imported, f"the 16 kHz replay path imported {imported}"


def test_the_live_daemon_imports_no_file_decoder_resampler_or_portaudio():
    """``ser-edge run`` (microphone or input command at the model's rate) loads what it uses: soundfile only
    to decode files, scipy.signal only to resample, sounddevice only when it opens the microphone."""
    code = ("import json, sys\n"
            "import edge.cli, edge.service.daemon, edge.audio.live, edge.pipeline, edge.mqtt.publisher\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'sounddevice', 'soundfile'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = [m for m in json.loads(done.stdout) if m.startswith((*HEAVY, "soundfile"))]
    assert not imported, f"the daemon's modules imported {imported}"
