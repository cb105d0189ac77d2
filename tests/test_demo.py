"""`make demo` (edge/samples/demo.py): the 24 held-out CREMA-D clips played as one stream through the
installed ``ser-edge replay -``, one line per clip, and a tally that adds up."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from paths import REPO, SHIPPED_MODEL

sys.path.insert(0, str(REPO / "edge" / "samples"))
import demo  # noqa: E402


def test_the_stream_holds_every_clip_at_its_start_with_noise_not_zeros_between():
    clips = demo.crema_d_clips()
    assert len(clips) == 24
    assert [c.acted for c in clips[:4]] == ["neutral", "happy", "sad", "angry"]
    assert [c.actor for c in clips] == ["1001"] * 12 + ["1002"] * 12
    stream, rate = soundfile.read(io.BytesIO(demo.crema_d_stream(clips)), dtype="int16")
    for clip in clips:
        samples = soundfile.read(clip.path, dtype="int16")[0]
        start = round(clip.start_s * rate)
        assert np.array_equal(stream[start:start + len(samples)], samples), clip.path.name
    pause = stream[round(clips[0].end_s * rate) + 1:round(clips[1].start_s * rate) - 1].astype(np.float64) / 32768
    assert abs(clips[1].start_s - clips[0].end_s - demo.SILENCE_S) < 1e-9
    floor = demo.noise_floor_rms([soundfile.read(c.path, dtype="float32")[0] for c in clips], rate)
    assert np.sqrt(np.mean(pause ** 2)) == pytest.approx(floor, rel=0.1) and np.count_nonzero(pause) > 0.9 * pause.size


@pytest.mark.slow
def test_the_demo_prints_a_line_per_clip_and_a_tally_that_adds_up():
    done = subprocess.run([sys.executable, str(REPO / "edge" / "samples" / "demo.py"), "--model", str(SHIPPED_MODEL)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "acted:" in line]
    assert len(lines) == 24
    hits: dict[str, list[bool]] = {}
    for line in lines:
        acted = re.search(r"acted: (\w+)", line).group(1)
        assert line.endswith("✓") or "✗" in line, line
        hits.setdefault(acted, []).append("✓" in line)
    right = sum(sum(h) for h in hits.values())
    ua = np.mean([np.mean(h) for h in hits.values()])
    tally = re.search(r"(\d+) of 24 right \(.*\); UA (\d\.\d\d) over the 4 acted emotions, chance 25%", done.stdout)
    assert tally, done.stdout
    assert int(tally.group(1)) == right and float(tally.group(2)) == round(ua, 2)
    assert "unsure:" in done.stdout and "arousal:" in done.stdout and "valence:" in done.stdout
