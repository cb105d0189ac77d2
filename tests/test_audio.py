"""Audio input: resampling to the model's rate, streaming resampler, and bad files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile
from helpers import ser_edge_command
from hypothesis import given, settings
from hypothesis import strategies as st
from paths import RAVDESS_48K, SAMPLE, SHIPPED_MODEL, TESS_MINI

from edge.audio.io import (
    CLIPPING_REPORT_INTERVAL_S,
    CLIPPING_RUN,
    FILE_BLOCK_S,
    AudioError,
    ClippingMonitor,
    TruncatedAudio,
    clipping_runs,
    file_blocks,
    load_audio,
    read_audio,
)
from edge.audio.resample import StreamingResampler, rate_ratio, resample

ANGRY_48K = RAVDESS_48K / "03-01-05-02-01-01-03.wav"


def test_48k_original_is_resampled_with_resample_poly():
    samples, rate = read_audio(ANGRY_48K)
    assert rate == 48000
    out = load_audio(ANGRY_48K, 16000)
    np.testing.assert_array_equal(out, scipy.signal.resample_poly(samples, 1, 3).astype(np.float32))
    assert out.size == -(-samples.size // 3)


def test_tess_odd_rate_is_resampled():
    path = sorted((TESS_MINI / "OAF_angry").glob("*.wav"))[0]
    samples, rate = read_audio(path)
    assert rate == 24414
    assert rate_ratio(rate, 16000) == (8000, 12207)
    assert abs(load_audio(path, 16000).size - samples.size * 16000 / rate) <= 1


@pytest.mark.parametrize("from_hz", [48000, 44100, 24414, 16000])
def test_streaming_resampler_equals_whole_signal(from_hz):
    samples = resample(read_audio(ANGRY_48K)[0], 48000, from_hz)
    whole = resample(samples, from_hz, 16000)
    for chunk in (160, 1024, 4000):
        resampler = StreamingResampler(from_hz, 16000)
        out = np.concatenate([resampler.process(samples[i : i + chunk]) for i in range(0, samples.size, chunk)]
                             + [resampler.flush()])
        np.testing.assert_allclose(out, whole, rtol=0, atol=1e-6)
        assert out.size == whole.size


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 3000), chunk=st.integers(1, 900))
def test_fuzz_streaming_resampler_length_and_values(n, chunk):
    rng = np.random.default_rng(n)
    samples = rng.uniform(-1, 1, n).astype(np.float32)
    resampler = StreamingResampler(44100, 16000)
    parts = [resampler.process(samples[i : i + chunk]) for i in range(0, n, chunk)] + [resampler.flush()]
    out = np.concatenate(parts)
    whole = resample(samples, 44100, 16000) if n else np.zeros(0, np.float32)
    assert out.size == whole.size
    np.testing.assert_allclose(out, whole, rtol=0, atol=1e-5)


def _bytes(path, data: bytes):
    path.write_bytes(data)
    return path


def _write(path, data, rate, subtype):
    soundfile.write(str(path), data, rate, subtype=subtype)
    return path


def test_8bit_and_float_wav_are_read_like_16bit(tmp_path):
    samples, rate = read_audio(ANGRY_48K)
    for subtype, tolerance in (("PCM_U8", 1 / 64), ("FLOAT", 1e-6), ("PCM_16", 1e-4)):
        path = _write(tmp_path / f"{subtype}.wav", samples, rate, subtype)
        got, got_rate = read_audio(path)
        assert got_rate == rate
        np.testing.assert_allclose(got, samples, atol=tolerance)


def test_stereo_is_mixed_to_mono(tmp_path):
    samples, rate = read_audio(ANGRY_48K)
    path = _write(tmp_path / "stereo.wav", np.stack([samples, samples * 0.5], axis=1), rate, "FLOAT")
    np.testing.assert_allclose(read_audio(path)[0], samples * 0.75, atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.wav", "no such file"),
    (lambda d: _bytes(d / "empty.wav", b""), "expected a WAV, AIFF or FLAC file"),
    (lambda d: _bytes(d / "text.wav", b"hello, not audio\n"), "expected a WAV, AIFF or FLAC file"),
    (lambda d: _bytes(d / "header.wav", b"RIFF\x00\x00\x00\x00WAVE"), "not a readable audio file"),
    (lambda d: _write(d / "silent0.wav", np.zeros((0,), np.float32), 16000, "PCM_16"), "empty file"),
    (lambda d: _write(d / "nan.wav", np.array([0.1, np.nan, 0.2] * 1000, np.float32), 16000, "FLOAT"), "NaN/inf"),
    (lambda d: _write(d / "inf.wav", np.array([0.1, np.inf] * 1000, np.float32), 16000, "FLOAT"), "NaN/inf"),
    (lambda d: _write(d / "8k.wav", np.zeros(8000, np.float32), 8000, "PCM_16"), "at least 16000 Hz"),
])
def test_bad_files_raise_one_line_audio_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(AudioError, match=message) as info:
        list(file_blocks(path, 16000))
    assert "\n" not in str(info.value)
    if "8k" not in path.name:
        with pytest.raises(AudioError, match=message):
            load_audio(path, 16000)


def test_truncated_wav_reads_what_is_there(tmp_path):
    samples, rate = read_audio(ANGRY_48K)
    path = _write(tmp_path / "full.wav", samples, rate, "PCM_16")
    data = path.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    blocks = []
    with pytest.raises(TruncatedAudio, match=r"truncated: the WAV header declares"):
        for block in file_blocks(cut, 16000):  # every block there is, then the error
            blocks.append(block)
    total = sum(b.size for b in blocks)
    assert 0 < total < samples.size // 3


def test_clipping_is_a_warning_not_an_error(tmp_path, caplog):
    path = _write(tmp_path / "clipped.wav", np.clip(np.sin(np.arange(16000) / 5) * 2, -1, 1), 16000, "FLOAT")
    assert read_audio(path)[0].size == 16000
    assert "clipping" in caplog.text


# ------------------------------------------------------------------ issue 18 item 8: clipping, rate-limited


def _replay_stderr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ser_edge_command(), "replay", "--model", str(SHIPPED_MODEL), "--sink", "stdout", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_clipped_noise_gives_one_warning_then_counts_and_one_full_scale_sample_none(tmp_path):
    """Random noise far above full scale (a microphone with its gain too high; a bounded stand-in for
    ``cat /dev/urandom``): one clipping warning line, then counts of the further clipped blocks, which
    add up to every block (it used to be one line per block). The speech sample with one sample at
    full scale: no clipping line (a peak, not clipping); with CLIPPING_RUN in a row: one."""
    rate, block_frames = 16000, round(FILE_BLOCK_S * 16000)
    noise = np.clip(np.random.default_rng(18).normal(0, 4, rate * 12), -1, 1)
    raw = tmp_path / "noise.raw"
    raw.write_bytes((noise * 32767).astype("<i2").tobytes())
    n_blocks = -(-noise.size // block_frames)
    result = _replay_stderr(str(raw), "--raw-format", "s16le", "--rate", str(rate))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "WARNING" in line and "clipp" in line]
    assert len([line for line in lines if "clipping (" in line]) == 1, lines
    counts = [int(m.group(1)) for line in lines if (m := re.search(r"(\d+) more clipped blocks in the last", line))]
    assert counts and 1 + sum(counts) == n_blocks, lines

    speech, rate = soundfile.read(str(SAMPLE), dtype="int16")
    peak = int(np.argmax(np.abs(speech)))
    one = speech.copy()
    one[peak] = 32767
    run = speech.copy()
    run[peak : peak + CLIPPING_RUN] = 32767
    for name, data, expected in (("one-full-scale-sample.wav", one, 0), ("run.wav", run, 1)):
        path = tmp_path / name
        soundfile.write(str(path), data, rate, subtype="PCM_16")
        result = _replay_stderr(str(path))
        assert result.returncode == 0, result.stderr
        assert len([line for line in result.stderr.splitlines() if "WARNING" in line and "clipp" in line]) == expected, \
            result.stderr


def test_clipping_counts_come_at_most_once_per_interval(caplog):
    """ClippingMonitor with a clock that advances one second per block: 150 clipped blocks give the
    warning, a count after each CLIPPING_REPORT_INTERVAL_S, and the rest at flush(); nothing is lost."""
    now = [0.0]
    monitor = ClippingMonitor("test input", clock=lambda: now[0])
    clipped = np.ones(100, np.float32)
    blocks = 150
    with caplog.at_level("WARNING", logger="edge.audio.io"):
        for _ in range(blocks):
            monitor.check(clipped)
            now[0] += 1.0
        monitor.flush()
    lines = [r.getMessage() for r in caplog.records]
    counts = [int(re.search(r"(\d+) more clipped blocks", line).group(1)) for line in lines[1:]]
    assert "clipping (" in lines[0] and 1 + sum(counts) == blocks == monitor.clipped_blocks
    assert len(counts) == int(blocks // CLIPPING_REPORT_INTERVAL_S) + 1
    assert clipping_runs(np.array([0, 1, 1, 0, -1, -1, -1, 0.5], np.float32)) == 1


# ------------------------------------------------------------------ issue 10: rates, formats, memory


def _wav_claiming_rate(path, rate_hz: int):
    """A real 16 kHz WAV whose header's sample-rate field (bytes 24..27) says ``rate_hz``."""
    samples, _ = read_audio(ANGRY_48K)
    _write(path, samples[:16000], 16000, "PCM_16")
    data = bytearray(path.read_bytes())
    assert data[24:28] == (16000).to_bytes(4, "little")
    data[24:28] = rate_hz.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("rate_hz", [2**31 - 1, 1_000_000, 400_000, 4000])
def test_rates_outside_8_to_384_khz_are_refused_before_reading(tmp_path, rate_hz):
    path = _wav_claiming_rate(tmp_path / f"{rate_hz}.wav", rate_hz)
    with pytest.raises(AudioError, match=f"expected a sample rate of 8000..384000 Hz, got {rate_hz} Hz"):
        list(file_blocks(path, 16000))


def test_awkward_rates_resample_with_a_bounded_filter(tmp_path):
    from edge.audio.resample import MAX_RATIO_TERM

    assert rate_ratio(383999, 16000)[1] <= MAX_RATIO_TERM  # exact: 16000/383999, a 7.7M-tap filter
    assert rate_ratio(44100, 16000) == (160, 441) and rate_ratio(24414, 16000) == (8000, 12207)  # exact
    samples, _ = read_audio(ANGRY_48K)
    odd = scipy.signal.resample_poly(samples, 383999 // 1000, 48).astype(np.float32)  # ~8 x the rate
    path = _write(tmp_path / "odd.wav", odd, 383999, "FLOAT")
    resampler = StreamingResampler(383999, 16000)
    assert max(resampler.up, resampler.down) <= MAX_RATIO_TERM
    out = np.concatenate(list(file_blocks(path, 16000)))
    assert abs(out.size - odd.size * 16000 / 383999) <= 2  # the length of 16 kHz audio, to a sample or two


@pytest.mark.slow
@pytest.mark.parametrize("fmt, subtype, name", [("MP3", "MPEG_LAYER_III", "MP3"), ("OGG", "VORBIS", "Ogg")])
def test_mp3_and_ogg_are_refused_in_one_line_without_decoder_noise(tmp_path, fmt, subtype, name):
    samples, rate = read_audio(ANGRY_48K)
    path = tmp_path / f"speech.{fmt.lower()}"
    soundfile.write(str(path), samples, rate, format=fmt, subtype=subtype)
    with pytest.raises(AudioError, match=f"expected a WAV, AIFF or FLAC file, got {name}"):
        list(file_blocks(path, 16000))
    result = subprocess.run([sys.executable, "-m", "edge.cli", "replay", str(path), "--sink", "stdout",
                             "--model", str(SHIPPED_MODEL)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    ours = re.compile(r"^(\d{4}-\d\d-\d\d [\d:,]+ [A-Z]+ [\w.]+: |INFO: Created TensorFlow Lite)")
    assert [line for line in result.stderr.splitlines() if not ours.match(line)] == [], result.stderr
    assert f"expected a WAV, AIFF or FLAC file, got {name}" in result.stderr


def test_aiff_named_wav_is_read_like_the_wav(tmp_path):
    """Some corpora ship AIFF files named ``.wav`` (TESS's ``YAF_germ_angry.wav``): read by their first
    bytes, they give the same 16 kHz samples as the same audio in a WAV file."""
    samples, rate = read_audio(ANGRY_48K)
    wav = _write(tmp_path / "speech.wav", samples, rate, "PCM_16")
    aiff = tmp_path / "aiff-named.wav"
    soundfile.write(str(aiff), samples, rate, format="AIFF", subtype="PCM_16")
    assert aiff.read_bytes()[:4] == b"FORM"
    from_wav = np.concatenate(list(file_blocks(wav, 16000)))
    from_aiff = np.concatenate(list(file_blocks(aiff, 16000)))
    np.testing.assert_array_equal(from_aiff, from_wav)


# ------------------------------------------------------------------ issue 18 item 12: inputs that lie


def _sample_wav_bytes() -> bytes:
    return SAMPLE.read_bytes()


def _replay_input(path: Path | None, stdin: str) -> subprocess.CompletedProcess:
    """``ser-edge replay`` of ``path`` as a file argument (``stdin="file"``), on a pipe (``"pipe"``), as
    ``- < path`` (``"redirect"``), or ``- <&-`` (``"closed"``, standard input closed)."""
    replay = [*ser_edge_command(), "replay", "--model", str(SHIPPED_MODEL), "--sink", "stdout"]
    if stdin == "file":
        return subprocess.run([*replay, str(path)], capture_output=True, text=True, timeout=120, check=False)
    if stdin == "pipe":
        return subprocess.run([*replay, "-"], input=path.read_bytes(), capture_output=True, timeout=120,
                              check=False)
    if stdin == "redirect":
        with open(path, "rb") as handle:
            return subprocess.run([*replay, "-"], stdin=handle, capture_output=True, timeout=120, check=False)
    return subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", *replay, "-"], capture_output=True, text=True,
                          timeout=120, check=False)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _errors(result: subprocess.CompletedProcess) -> list[str]:
    """stderr lines that are not INFO log lines (nor LiteRT's banner)."""
    return [line for line in _text(result.stderr).splitlines()
            if " INFO " not in line and not line.startswith("INFO: Created TensorFlow Lite")]


@pytest.mark.parametrize("how", ["file", "pipe", "redirect"])
def test_a_truncated_wav_gives_the_events_of_what_is_there_then_one_line_and_status_1(tmp_path, how):
    """The speech sample cut to a third of its bytes (the header still declares all of it): the events
    are those of the audio that is there (as a proper WAV of those samples gives), then one line
    saying it is truncated and by how much, and status 1 (it was exit 0, silently short)."""
    data = _sample_wav_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 3])
    speech, rate = soundfile.read(str(SAMPLE), dtype="int16")
    there = tmp_path / "there.wav"
    soundfile.write(str(there), speech[: (len(data) // 3 - 44) // 2], rate, subtype="PCM_16")
    expected = _replay_input(there, "file")
    assert expected.returncode == 0 and expected.stdout.strip(), expected.stderr

    result = _replay_input(cut, how)
    assert result.returncode == 1, result.stderr
    errors = _errors(result)
    assert len(errors) == 1 and f"truncated: the WAV header declares {speech.size / rate:.2f} s of audio" in errors[0], errors

    def labels(out: str | bytes) -> list[tuple]:
        return [(e["label"], e["start_s"], e["end_s"]) for e in map(json.loads, _text(out).splitlines())]

    assert labels(result.stdout) == labels(expected.stdout)


@pytest.mark.parametrize("how", ["file", "pipe", "redirect"])
def test_a_wav_header_with_7_bits_per_sample_is_refused(tmp_path, how):
    """Bits per sample patched to 7 (byte 34 of the sample's canonical header): libsndfile read it as
    8-bit audio of twice the length, exit 0; now one line and status 1, no events."""
    data = bytearray(_sample_wav_bytes())
    assert data[34] == 16  # the sample's bits per sample, in the canonical 44-byte header
    data[34] = 7
    path = tmp_path / "bits7.wav"
    path.write_bytes(bytes(data))
    result = _replay_input(path, how)
    assert result.returncode == 1 and not _text(result.stdout).strip()
    errors = [line for line in _errors(result) if not line.endswith(("file skipped", "files skipped"))]
    assert len(errors) == 1 and "bits per sample in the WAV header, got 7" in errors[0], result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("how", ["pipe", "redirect"])
@pytest.mark.parametrize("fmt, subtype, name", [("MP3", "MPEG_LAYER_III", "MP3"), ("OGG", "VORBIS", "Ogg")])
def test_mp3_and_ogg_on_standard_input_are_refused_like_files(tmp_path, fmt, subtype, name, how):
    speech, rate = soundfile.read(str(SAMPLE), dtype="float32")
    path = tmp_path / f"speech.{fmt.lower()}"
    soundfile.write(str(path), speech, rate, format=fmt, subtype=subtype)
    result = _replay_input(path, how)
    assert result.returncode == 1 and not _text(result.stdout).strip()
    errors = [line for line in _errors(result) if not line.endswith(("file skipped", "files skipped"))]
    assert len(errors) == 1 and f"expected a WAV, AIFF or FLAC stream, got {name}" in errors[0], result.stderr


def test_a_closed_standard_input_is_one_line_not_a_traceback():
    result = _replay_input(None, "closed")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in _errors(result) if not line.endswith(("file skipped", "files skipped"))]
    assert len(errors) == 1 and "standard input: closed" in errors[0], result.stderr
