"""Soak: an hour of speech and silence through the whole daemon, as fast as it goes, while the broker restarts.

Not a test (tests never assert on timings or memory): run it by hand and read the table::

    .venv/bin/python tests/benchmarks/soak.py --minutes 60 --restarts 5

What it does:

1. Builds ``--minutes`` of audio from the RAVDESS-mini clips (16 kHz FLAC, shuffled with ``--seed``)
   separated by 0.5-4 s of faint noise (-70 dBFS) into a temporary 16 kHz WAV, written block by block.
2. Starts mosquitto on a free loopback port (``tests/mqtt_helpers.MosquittoBroker``, persistence on)
   and a subscriber with a persistent session (clean_session=False, fixed client id) on the
   device's emotion topic.
3. Feeds the WAV through :class:`edge.service.daemon.Session` exactly as ``ser-edge replay`` does (no real-time
   pacing), publishing over MQTT. At ``--restarts`` evenly spaced points of the audio a thread stops
   the broker (SIGTERM; ``--kill`` for SIGKILL with autosave), keeps it down ``--down-s`` seconds and
   starts it again, while processing goes on.
4. Records this process's RSS (``VmRSS`` of /proc/self/status) at start (model loaded, connected),
   every ``--rss-every-min`` minutes of audio, and at the end; counts events produced (the daemon's
   ``seq``) against events received by the subscriber (deduplicated by ``seq``; delivery is at least
   once) and prints a table.

The subscriber lives in the same process, so its few hundred bytes per event are in the RSS too.
Exit status 0 if every produced event was received, else 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))

from mqtt_helpers import MosquittoBroker, Subscriber, find_mosquitto  # noqa: E402
from paths import SHIPPED_MODEL, ravdess_mini_clips  # noqa: E402

from edge.audio.io import file_blocks  # noqa: E402
from edge.events import EmotionEvent  # noqa: E402
from edge.mqtt.topics import emotion_topic  # noqa: E402
from edge.service.daemon import Session  # noqa: E402
from edge.settings import parse_settings  # noqa: E402

SAMPLE_RATE_HZ = 16000
"""Rate of the RAVDESS-mini clips and of the soak WAV."""
NOISE_DBFS = -70.0
GAP_S = (0.5, 4.0)
DEVICE_ID = "soak"
RECEIVE_TIMEOUT_S = 60.0


def rss_mb() -> float:
    """Resident set size of this process in MiB, from ``VmRSS`` in /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def build_wav(path: Path, minutes: float, seed: int) -> tuple[float, int]:
    """Write ``minutes`` of clips and noise gaps to ``path`` (16 kHz mono PCM_16); returns (seconds, clips)."""
    clips = ravdess_mini_clips()
    if not clips:
        raise SystemExit("no RAVDESS-mini clips found (see tests/paths.py)")
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    noise_rms = 10 ** (NOISE_DBFS / 20) / np.sqrt(2)  # dBFS relative to a full-scale sine
    target = round(minutes * 60 * SAMPLE_RATE_HZ)
    written = n_clips = 0
    order: list[Path] = []
    with sf.SoundFile(path, "w", samplerate=SAMPLE_RATE_HZ, channels=1, subtype="PCM_16") as out:
        while written < target:
            if not order:
                order = rng.sample(clips, len(clips))
            speech, rate = sf.read(order.pop(), dtype="float32")
            if rate != SAMPLE_RATE_HZ:
                raise SystemExit(f"expected {SAMPLE_RATE_HZ} Hz clips, got {rate} Hz")
            gap = (noise.standard_normal(round(rng.uniform(*GAP_S) * SAMPLE_RATE_HZ)) * noise_rms).astype(np.float32)
            for part in (speech, gap):
                part = part[: target - written]
                out.write(part)
                written += part.size
            n_clips += 1
    return written / SAMPLE_RATE_HZ, n_clips


class Restarter:
    """Stops the broker, keeps it down ``down_s`` and starts it again, in a thread (processing goes on)."""

    def __init__(self, broker: MosquittoBroker, down_s: float, kill: bool) -> None:
        self.broker, self.down_s, self.kill = broker, down_s, kill
        self.thread: threading.Thread | None = None
        self.done = 0

    def trigger(self) -> None:
        self.wait()
        self.thread = threading.Thread(target=self._restart, daemon=True)
        self.thread.start()

    def _restart(self) -> None:
        (self.broker.kill if self.kill else self.broker.stop)()
        time.sleep(self.down_s)
        self.broker.start()
        self.done += 1

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of audio (default 60)")
    parser.add_argument("--restarts", type=int, default=5, help="broker restarts during the run (default 5)")
    parser.add_argument("--down-s", type=float, default=0.5, help="seconds the broker stays down per restart")
    parser.add_argument("--kill", action="store_true", help="SIGKILL the broker (persistence autosaved) "
                                                            "instead of SIGTERM")
    parser.add_argument("--rss-every-min", type=float, default=5.0, help="RSS sample every this many audio minutes")
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL, help="model .tflite (manifest beside it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.restarts < 0 or args.down_s < 0 or args.rss_every_min <= 0:
        parser.error("expected --minutes > 0, --restarts >= 0, --down-s >= 0, --rss-every-min > 0")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mqtt_helpers").setLevel(logging.CRITICAL)  # the subscriber's reconnect noise
    binary = find_mosquitto()
    if binary is None:
        parser.error("mosquitto not found (apt-get install mosquitto)")

    with tempfile.TemporaryDirectory(prefix="ser-edge-soak-") as tmp:
        tmpdir = Path(tmp)
        wav = tmpdir / "soak.wav"
        started = time.monotonic()
        audio_total_s, n_clips = build_wav(wav, args.minutes, args.seed)
        print(f"built {audio_total_s / 60:.1f} min of audio ({n_clips} clips with gaps) in "
              f"{time.monotonic() - started:.1f} s; model {args.model}")

        (tmpdir / "broker").mkdir()
        broker = MosquittoBroker(binary, tmpdir / "broker", persistence=True, autosave=args.kill)
        broker.start()
        topic = emotion_topic("ser", DEVICE_ID)
        subscriber = Subscriber(broker.host, broker.port, topic, client_id="soak-subscriber", clean_session=False)
        settings = parse_settings({
            "device_id": DEVICE_ID, "log_level": args.log_level, "model": {"path": str(args.model)},
            "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                     "queue_size": 100_000, "stats_interval_s": 5.0},
        })
        restarter = Restarter(broker, args.down_s, args.kill)
        restart_at = [audio_total_s * (k + 1) / (args.restarts + 1) for k in range(args.restarts)]
        rows: list[tuple[str, float, float, float, int, int]] = []
        try:
            session = Session(settings, "mqtt")
            session.start()
            deadline = time.monotonic() + 10
            while not session.sink.connected and time.monotonic() < deadline:
                time.sleep(0.01)
            wall_start = time.monotonic()

            def sample(what: str) -> None:
                rows.append((what, session.audio_s / 60, time.monotonic() - wall_start, rss_mb(),
                             session.events.seq, session.sink.pending))

            sample("start")
            next_rss_s = args.rss_every_min * 60
            for block in file_blocks(wav, session.rate_hz):
                session.feed(block)
                if restart_at and session.audio_s >= restart_at[0]:
                    restart_at.pop(0)
                    restarter.trigger()
                if session.audio_s >= next_rss_s:
                    sample("periodic")
                    next_rss_s += args.rss_every_min * 60
            session.end_of_input()
            restarter.wait()
            sample("end of audio")
            delivered = session.close()
            sample("closed")
            produced = session.events.seq
            deadline = time.monotonic() + RECEIVE_TIMEOUT_S
            while time.monotonic() < deadline:
                if len({EmotionEvent.from_json(m.payload).seq for m in subscriber.messages()}) >= produced:
                    break
                time.sleep(0.1)
            seqs = [EmotionEvent.from_json(m.payload).seq for m in subscriber.messages()]
            stats = session.stats_payload()
        finally:
            restarter.wait()
            subscriber.close()
            broker.stop()

    unique = list(dict.fromkeys(seqs))
    missing = sorted(set(range(produced)) - set(unique))
    in_order = unique == sorted(unique)
    print()
    print(f"{'sample':<14}{'audio min':>10}{'wall s':>9}{'RSS MiB':>10}{'events':>9}{'pending':>9}")
    for what, audio_min, wall_s, rss, events, pending in rows:
        print(f"{what:<14}{audio_min:>10.1f}{wall_s:>9.1f}{rss:>10.1f}{events:>9d}{pending:>9d}")
    wall_s = rows[-2][2]
    print()
    print(f"audio {audio_total_s / 60:.1f} min in {wall_s:.1f} s wall ({audio_total_s / wall_s:.0f}x real time), "
          f"CPU {stats['processing_ms_per_s_mean']} ms per audio s (mean, last window), "
          f"p95 {stats['processing_ms_per_s_p95']}")
    print(f"broker restarts: {restarter.done} ({'SIGKILL' if args.kill else 'SIGTERM'}, {args.down_s} s down each)")
    print(f"events produced {produced}, received {len(unique)} unique ({len(seqs) - len(unique)} duplicates), "
          f"missing {len(missing)}{' ' + str(missing[:20]) if missing else ''}, first arrivals in seq order: "
          f"{in_order}; publisher dropped {stats['dropped_events']}, all acknowledged at close: {delivered}")
    print(f"RSS start {rows[0][3]:.1f} MiB -> end {rows[-1][3]:.1f} MiB ({rows[-1][3] - rows[0][3]:+.1f} MiB)")
    print("final stats:", json.dumps(stats))
    return 0 if not missing and in_order else 1


if __name__ == "__main__":
    sys.exit(main())
