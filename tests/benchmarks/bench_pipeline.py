"""Benchmark of the device pipeline (not a test: pytest does not collect it, and tests never time).

Builds ``--minutes`` of speech and silence at 16 kHz from the real RAVDESS clips in
``../shared/data/ravdess-mini`` (beside the repository): clips in a seeded random order, each
followed by 1-6 s of silence, with low-level Gaussian noise (``--noise-dbfs``) over everything,
written block by block to a temporary WAV outside the repository. Then measures:

(a) real-time factor (seconds of audio per CPU second, ``time.process_time``) of
    ``ser-edge replay FILE --sink stdout`` run in-process (``edge.service.daemon.run_replay``: decode,
    resampling, pipeline, JSON events), and of the pipeline alone (``Pipeline.process`` over
    ``edge.audio.file_blocks``, decode time counted separately);
(b) ``edge.features.mfcc`` against ``python_speech_features.mfcc`` on the same excerpt with the
    same parameters (40 filters, 40 coefficients, 512-point FFT, periodic Hamming window,
    pre-emphasis 0.97, lifter 22, energy in c0), and their largest absolute difference;
(c) latency of one int8 inference (``EmotionModel.predict`` on one window, 1 thread): mean, p95;
(d) the model file's size;
(e) resident memory: of ``ser-edge replay FILE --sink stdout`` in its own process (as the daemon runs:
    peak ``VmHWM``, the child's own high-water mark, and steady ``VmRSS`` sampled from /proc during the replay; the
    device budget is 60 MB on 16 kHz input), of the in-process replay of (a), and import by import
    (``VmRSS`` after each import in one fresh process: what each module adds; ``python -X importtime``
    gives time, not memory);
(f) time from starting ``ser-edge run`` to its ``READY=1`` on ``$NOTIFY_SOCKET`` (an AF_UNIX
    datagram socket bound here). With no microphone the daemon still sends READY=1 after its first
    device attempt; with one, after the device opens. MQTT points at a closed loopback port so no
    broker is touched.

Run from the repository root:  make bench  (or .venv/bin/python tests/benchmarks/bench_pipeline.py; 60 min of
audio by default, a replay of about 20 s of CPU; ``--minutes 5`` builds less)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # the checkout's edge/, also when the venv holds another install

from edge.audio.io import file_blocks  # noqa: E402
from edge.audio.resample import resample  # noqa: E402
from edge.dsp.features import FeatureParams, analysis_window, mfcc, mfcc_with_energy  # noqa: E402
from edge.model import INTERPRETER, load_model  # noqa: E402
from edge.pipeline import Pipeline  # noqa: E402
from edge.service.daemon import StopFlag, run_replay  # noqa: E402
from edge.settings import load_settings, shipped_model  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "ravdess-mini"
RATE_HZ = 16000
GAP_MIN_S, GAP_MAX_S = 1.0, 6.0
WRITE_BLOCK_S = 10.0
RSS_SAMPLE_S = 0.25


# ---------------------------------------------------------------------------------------- audio

def build_audio(path: Path, data_dir: Path, minutes: float, noise_dbfs: float, seed: int) -> tuple[float, int]:
    """Write ``minutes`` of clips + silence + noise to ``path`` (16 kHz mono 16-bit WAV).

    Returns (seconds written, clips used). Raises ``SystemExit`` if ``data_dir`` has no clips.
    """
    clips = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not clips:
        raise SystemExit(f"bench: expected WAV/FLAC clips under {data_dir}, found none (is ../shared beside the repo?)")
    rng = np.random.default_rng(seed)
    cache: dict[Path, np.ndarray] = {}
    noise_rms = 10 ** (noise_dbfs / 20)
    total = round(minutes * 60 * RATE_HZ)
    written = used = 0
    with soundfile.SoundFile(str(path), "w", samplerate=RATE_HZ, channels=1, subtype="PCM_16") as out:
        pending: list[np.ndarray] = []
        pending_n = 0
        while written + pending_n < total:
            clip_path = clips[rng.integers(len(clips))]
            if clip_path not in cache:
                samples, rate = soundfile.read(str(clip_path), dtype="float32", always_2d=True)
                samples = samples.mean(axis=1)
                cache[clip_path] = samples if rate == RATE_HZ else resample(samples, rate, RATE_HZ)
            gap = np.zeros(round(rng.uniform(GAP_MIN_S, GAP_MAX_S) * RATE_HZ), np.float32)
            pending += [cache[clip_path], gap]
            pending_n += cache[clip_path].size + gap.size
            used += 1
            if pending_n >= WRITE_BLOCK_S * RATE_HZ:
                written += _write_block(out, pending, total - written, noise_rms, rng)
                pending, pending_n = [], 0
        if pending:
            written += _write_block(out, pending, total - written, noise_rms, rng)
    return written / RATE_HZ, used


def _write_block(out, parts: list[np.ndarray], room: int, noise_rms: float, rng) -> int:
    block = np.concatenate(parts)[:room]
    block = block + rng.normal(0.0, noise_rms, block.size).astype(np.float32)
    out.write(np.clip(block, -1.0, 1.0))
    return block.size


# ------------------------------------------------------------------------------------------ RSS

def vm_rss_kib() -> int:
    """Resident set size now, in KiB (``VmRSS`` of /proc/self/status; 0 where there is no /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples ``VmRSS`` every ``RSS_SAMPLE_S`` in a thread while in its ``with`` block."""

    def __init__(self) -> None:
        self.samples_kib: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples_kib.append(vm_rss_kib())
            self._stop.wait(RSS_SAMPLE_S)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def steady_kib(self) -> int:
        """Median of the second half of the samples (after start-up)."""
        half = self.samples_kib[len(self.samples_kib) // 2:] or [0]
        return int(statistics.median(half))


# ------------------------------------------------------------------------------------- measures

@dataclass
class Row:
    what: str
    value: str
    note: str = ""


def bench_replay(wav: Path, model_path: str, audio_s: float) -> tuple[list[Row], RssSampler]:
    """(a) whole replay, in-process, events to /dev/null; (e) RSS during it."""
    settings = load_settings(None, {"model.path": model_path, "log_level": "WARNING"})
    rss_before = vm_rss_kib()
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), RssSampler() as rss:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        status = run_replay(settings, [wav], "stdout", False, StopFlag())
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    rows = [
        Row("replay RTF (whole: decode + pipeline + events)", f"{audio_s / cpu_s:,.0f}x",
            f"{audio_s:,.0f} s audio in {cpu_s:.2f} CPU s ({wall_s:.2f} s wall), exit {status}"),
        Row("RSS before replay (VmRSS)", f"{rss_before / 1024:.1f} MiB", "after imports and building the WAV"),
        Row("RSS steady during replay (VmRSS)", f"{rss.steady_kib / 1024:.1f} MiB",
            f"median of the second half of {len(rss.samples_kib)} samples, max {max(rss.samples_kib) / 1024:.1f} MiB"),
        Row("RSS peak so far (ru_maxrss)", f"{peak_kib / 1024:.1f} MiB", "process lifetime peak, measured before (b)"),
    ]
    return rows, rss


def bench_pipeline_only(wav: Path, model_path: str) -> list[Row]:
    """(a) the pipeline alone over ``file_blocks``; decode/resample CPU time counted apart."""
    model = load_model(model_path, num_threads=1)
    pipeline = Pipeline.for_model(model)
    rate = model.manifest.features.sample_rate_hz
    audio_s = decode_s = pipe_s = 0.0
    decisions = windows = 0
    blocks = file_blocks(wav, rate)
    while True:
        t0 = time.process_time()
        block = next(blocks, None)
        t1 = time.process_time()
        decode_s += t1 - t0
        if block is None:
            break
        made = pipeline.process(block)
        pipe_s += time.process_time() - t1
        decisions += len(made)
        windows += sum(d.windows for d in made)
        audio_s += block.size / rate
    t0 = time.process_time()
    made = pipeline.flush()
    pipe_s += time.process_time() - t0
    decisions += len(made)
    windows += sum(d.windows for d in made)
    return [
        Row("pipeline-only RTF (features + VAD + model)", f"{audio_s / pipe_s:,.0f}x",
            f"{pipe_s:.2f} CPU s; {decisions} utterances, {windows} model windows"),
        Row("file decode + resample RTF", f"{audio_s / max(decode_s, 1e-9):,.0f}x", f"{decode_s:.2f} CPU s"),
    ]


def bench_mfcc(wav: Path, seconds: float, repeats: int) -> list[Row]:
    """(b) edge.features.mfcc vs python_speech_features.mfcc on the first ``seconds`` of ``wav``."""
    import python_speech_features as psf
    import scipy.signal

    params = FeatureParams()
    signal_f32, rate = soundfile.read(str(wav), frames=round(seconds * RATE_HZ), dtype="float32")
    assert rate == params.sample_rate_hz, (rate, params.sample_rate_hz)
    signal_f64 = signal_f32.astype(np.float64)
    excerpt_s = signal_f32.size / rate

    def hamming(n: int) -> np.ndarray:  # the same periodic Hamming window as edge.features.analysis_window
        return scipy.signal.get_window(params.window, n, fftbins=True)

    assert np.allclose(hamming(params.frame_length), analysis_window(params.window, params.frame_length))

    def ours() -> np.ndarray:
        return mfcc(signal_f32, params)

    def theirs() -> np.ndarray:
        return psf.mfcc(signal_f64, samplerate=rate, winlen=params.window_ms / 1000, winstep=params.hop_ms / 1000,
                        numcep=params.n_mfcc, nfilt=params.n_mels, nfft=params.n_fft, lowfreq=params.low_hz,
                        highfreq=params.high_hz, preemph=params.preemphasis, ceplifter=params.lifter,
                        appendEnergy=params.append_energy, winfunc=hamming)

    def best_cpu_s(fn) -> tuple[float, np.ndarray]:
        times, out = [], None
        for _ in range(repeats):
            t0 = time.process_time()
            out = fn()
            times.append(time.process_time() - t0)
        return min(times), out

    ours_s, a = best_cpu_s(ours)
    theirs_s, b = best_cpu_s(theirs)
    n = min(a.shape[0], b.shape[0])  # python_speech_features zero-pads a last partial frame; edge does not
    diff = np.abs(a[:n].astype(np.float64) - b[:n])
    return [
        Row("MFCC edge.features.mfcc", f"{excerpt_s / ours_s:,.0f}x real time",
            f"{ours_s * 1000:.1f} CPU ms for {excerpt_s:.0f} s ({a.shape[0]} frames), best of {repeats}"),
        Row("MFCC python_speech_features.mfcc", f"{excerpt_s / theirs_s:,.0f}x real time",
            f"{theirs_s * 1000:.1f} CPU ms; edge is {theirs_s / ours_s:.1f}x faster"),
        Row("MFCC max |edge - psf|", f"{diff.max():.2e}",
            f"over {n} frames x {a.shape[1]} coefficients; max |c0..c39| {np.abs(b[:n]).max():.1f}"),
    ]


def bench_inference(model_path: str, wav: Path, runs: int) -> list[Row]:
    """(c) one window through ``EmotionModel.predict`` (normalise, quantise, invoke, dequantise)."""
    model = load_model(model_path, num_threads=1)
    features = model.manifest.features
    frames = model.manifest.input.frames
    samples, _ = soundfile.read(str(wav), frames=(frames + 100) * features.hop_length + features.frame_length,
                                dtype="float32")
    window = mfcc_with_energy(samples, features)[0][:frames]
    for _ in range(10):
        model.predict(window)
    latencies = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.predict(window)
        latencies.append(time.perf_counter() - t0)
    ms = np.array(latencies) * 1000
    return [Row("int8 inference, 1 thread (predict, 1 window)",
                f"mean {ms.mean():.3f} ms, p95 {np.percentile(ms, 95):.3f} ms",
                f"median {np.median(ms):.3f} ms, max {ms.max():.2f} ms over {runs} runs; "
                f"{frames}x{features.n_features} window, {INTERPRETER}")]


def bench_ready(model_path: str, runs: int, timeout_s: float) -> list[Row]:
    """(f) Popen of ``ser-edge run`` -> ``READY=1`` on our notify socket; then SIGTERM."""
    exe = Path(sys.executable).parent / "ser-edge"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "edge.cli"]
    with socket.socket() as probe:  # a loopback port nobody listens on: the daemon must not need a broker
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    command += ["run", "--model", str(Path(model_path).resolve()), "--mqtt-host", "127.0.0.1",
                "--mqtt-port", str(closed_port), "--device-id", "bench", "--log-level", "WARNING"]
    ready_s, stop_s, notes = [], [], []
    with tempfile.TemporaryDirectory(prefix="ser-bench-") as tmp:
        address = os.path.join(tmp, "notify.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(address)
            env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
            env["NOTIFY_SOCKET"] = address
            for _ in range(runs):
                started = time.perf_counter()
                proc = subprocess.Popen(command, env=env, cwd=tmp, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                got = None
                try:
                    deadline = started + timeout_s
                    while got is None and time.perf_counter() < deadline and proc.poll() is None:
                        sock.settimeout(max(0.01, min(0.5, deadline - time.perf_counter())))
                        try:
                            message = sock.recv(4096).decode()
                        except TimeoutError:
                            continue
                        if "READY=1" in message.splitlines():
                            got = time.perf_counter() - started
                finally:
                    t0 = time.perf_counter()
                    proc.send_signal(signal.SIGTERM)
                    try:
                        _, err = proc.communicate(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        _, err = proc.communicate()
                    stop_s.append(time.perf_counter() - t0)
                    while True:  # drain STATUS/STOPPING datagrams before the next run
                        sock.settimeout(0.05)
                        try:
                            sock.recv(4096)
                        except TimeoutError:
                            break
                if got is None:
                    last = (err or "").strip().splitlines()[-1:] or ["no output"]
                    return [Row("start -> READY=1 (ser-edge run)", "no READY=1",
                                f"exit {proc.returncode} within {timeout_s:.0f} s: {last[0][:100]}")]
                ready_s.append(got)
                notes.append(proc.returncode)
    return [
        Row("start -> READY=1 (ser-edge run)", f"median {statistics.median(ready_s):.2f} s",
            f"runs: {', '.join(f'{s:.2f}' for s in ready_s)} s (Popen to datagram, wall)"),
        Row("SIGTERM -> exit (ser-edge run)", f"median {statistics.median(stop_s):.2f} s",
            f"exit status {sorted(set(notes))}"),
    ]


RSS_IMPORTS = ("numpy", "soundfile", "paho.mqtt.client", "edge.settings", "edge.cli", "edge.model", "edge.pipeline",
               "edge.service.daemon")
"""The daemon's imports in the order it makes them, then (off the 16 kHz path) :data:`RSS_OFF_PATH`."""
RSS_OFF_PATH = ("scipy.signal", "sounddevice")
"""Imported only to resample (scipy.signal) or to open a microphone (sounddevice): measured for reference."""

_IMPORT_PROBE = """
import importlib, json, sys
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
rows = [("python", rss())]
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:  # e.g. PortAudio missing: say so, keep measuring
        rows.append((f"{name} ({type(exc).__name__})", rss()))
        continue
    rows.append((name, rss()))
print(json.dumps(rows))
"""


def bench_import_rss() -> list[Row]:
    """(e) VmRSS after each import of :data:`RSS_IMPORTS` + :data:`RSS_OFF_PATH`, in one fresh process."""
    done = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, *RSS_IMPORTS, *RSS_OFF_PATH], cwd=REPO_ROOT,
                          env=_child_env(), capture_output=True, text=True, timeout=120, check=True)
    measured = json.loads(done.stdout)
    rows, previous = [], 0
    for name, kib in measured:
        off = " (not on the 16 kHz path)" if name.split(" ")[0] in RSS_OFF_PATH else ""
        rows.append(Row(f"RSS after import {name}", f"{kib / 1024:.1f} MiB", f"+{(kib - previous) / 1024:.1f} MiB{off}"))
        previous = kib
    return rows


def _child_env() -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH (the venv may hold another install)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _proc_rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


_REPLAY_PROBE = """
import sys
from edge.cli import main
status = main(sys.argv[1:])
with open("/proc/self/status") as proc_status:
    print(next(line for line in proc_status if line.startswith("VmHWM:")).split()[1], file=sys.stderr)
sys.exit(status)
"""


def bench_replay_process(wav: Path, model_path: str, audio_s: float) -> list[Row]:
    """(e) ``ser-edge replay`` in its own process, events to /dev/null: peak and steady RSS.

    The peak is the child's own ``VmHWM`` (its high-water mark, read as it exits), not ``ru_maxrss``
    from ``wait4``: Linux carries ``ru_maxrss`` across ``execve`` from the process that forked, so a
    child of this (large) benchmark would report the benchmark's own peak.
    """
    command = [sys.executable, "-c", _REPLAY_PROBE, "replay", str(wav), "--model", model_path, "--sink", "stdout",
               "--log-level", "WARNING"]
    samples: list[int] = []
    with open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=_child_env(), stdin=subprocess.DEVNULL, stdout=devnull,
                                stderr=subprocess.PIPE, text=True)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(_proc_rss_kib(proc.pid))
                stop.wait(RSS_SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, err = proc.communicate()
        stop.set()
        sampler.join()
    last = err.strip().splitlines()[-1:] or ["?"]
    peak = f"{int(last[0]) / 1024:.1f} MiB" if last[0].isdigit() else f"? ({last[0][:60]})"
    samples = [s for s in samples if s]
    half = samples[len(samples) // 2:] or [0]
    return [
        Row("RSS peak, ser-edge replay process (VmHWM)", peak,
            f"{audio_s:,.0f} s of 16 kHz audio, exit {proc.returncode}; budget 60 MB"),
        Row("RSS steady, ser-edge replay process (VmRSS)", f"{statistics.median(half) / 1024:.1f} MiB",
            f"median of the second half of {len(samples)} samples every {RSS_SAMPLE_S:g} s"),
    ]


def print_table(title: str, rows: list[Row]) -> None:
    width = max(len(r.what) for r in rows)
    vwidth = max(len(r.value) for r in rows)
    print(f"\n{title}\n{'-' * len(title)}")
    for r in rows:
        print(f"{r.what:<{width}}  {r.value:>{vwidth}}  {r.note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring for what each figure means.")
    parser.add_argument("--minutes", type=float, default=60.0, help="audio to build and replay (default 60)")
    parser.add_argument("--model", default=shipped_model(),
                        help="model .tflite, manifest beside it (default: the shipped one, models/)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"folder of clips (default {DEFAULT_DATA})")
    parser.add_argument("--noise-dbfs", type=float, default=-60.0, help="RMS of the added noise (default -60 dBFS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mfcc-seconds", type=float, default=60.0, help="excerpt for the MFCC comparison (default 60)")
    parser.add_argument("--mfcc-repeats", type=int, default=3)
    parser.add_argument("--inference-runs", type=int, default=500)
    parser.add_argument("--ready-runs", type=int, default=3)
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for READY=1")
    parser.add_argument("--keep-wav", type=Path, help="also copy the built WAV here (outside the repo, please)")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes: expected > 0, got {args.minutes}")
    model = args.model or shipped_model()  # an empty --model would resolve to the working directory
    model_path = str(Path(model).resolve()) if model and Path(model).exists() else model
    if not model_path or not Path(model_path).is_file():
        parser.error(f"--model: no such file: {model or '(no model shipped)'} (train one with 'make model', or pass --model)")

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ser-bench-") as tmp:
        wav = Path(tmp) / "bench.wav"
        t0 = time.perf_counter()
        audio_s, clips = build_audio(wav, args.data, args.minutes, args.noise_dbfs, args.seed)
        print(f"built {audio_s / 60:.1f} min ({clips} clips from {args.data}, 1-6 s gaps, noise {args.noise_dbfs:.0f} dBFS) "
              f"in {time.perf_counter() - t0:.1f} s: {wav} ({wav.stat().st_size / 1e6:.0f} MB)", flush=True)
        if args.keep_wav:
            import shutil

            shutil.copyfile(wav, args.keep_wav)
        rows += bench_replay_process(wav, model_path, audio_s)
        replay_rows, _ = bench_replay(wav, model_path, audio_s)  # first, so ru_maxrss is the replay's peak
        rows += replay_rows
        rows += bench_pipeline_only(wav, model_path)
        rows += bench_mfcc(wav, args.mfcc_seconds, args.mfcc_repeats)
        rows += bench_inference(model_path, wav, args.inference_runs)
    size = Path(model_path).stat().st_size
    rows.append(Row("model file size", f"{size:,} B", f"{Path(model_path).name} ({size / 1024:.1f} KiB)"))
    rows += bench_ready(model_path, args.ready_runs, args.ready_timeout)
    rows += bench_import_rss()
    rows.append(Row("RSS peak, whole benchmark (ru_maxrss)",
                    f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB",
                    "includes python_speech_features' float64 frames"))
    print_table(f"ser-edge pipeline benchmark: {args.minutes:g} min, model {Path(model_path).name}, "
                f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
