"""`make demo`: what the model hears in real emotional speech it never trained on, right or wrong.

Part 1 plays the 24 CREMA-D clips in ``crema-d/`` (two actors held out of the shipped model's
training, three sentences, one clip per emotion each; the rule is in ``crema-d/ATTRIBUTION.md``)
as ONE stream, the clips joined by :data:`SILENCE_S` pauses the way a device hears a
conversation (pauses of noise at the recordings' own noise floor, not digital silence), through
the installed ``ser-edge replay - --sink stdout`` (the stream as WAV on its standard input: the daemon's own pipeline, its VAD finding the utterances, its adaptive
normalisation carried from one to the next, so the fixed order, actor by actor, sentence by
sentence, neutral-happy-sad-angry, is part of the demo). It prints per utterance what was acted
(from the CREMA-D file name) and what was heard (from the JSON events), then a tally: right of
total, the unweighted accuracy (UA: the mean of the four emotions' recalls, the field's headline
figure) and the chance level, and one line on what ``unsure``, arousal and valence mean. Part 2
replays ``speech-sample.wav``, synthetic speech made with espeak-ng (not a recording of emotions),
and prints its events.

Only the ``ser-edge`` command and its JSON events are used: the model's label names come from the
events, nothing here knows the model. Fields that newer event schemas add (``unsure``, ``arousal``,
``valence``) are printed when present and never required. A clip in which the daemon found several
utterances is judged by the one with the most speech (the longest), and the line says so; a clip
with none is shown as not heard (wrong).

Usage: ``python edge/samples/demo.py [--model PATH] [--sink stdout|both] [--mqtt-port N]`` in a clone, or
``python -m edge.samples.demo ...`` where the package is installed (the wheel carries the demo and its audio).
Exit status: 0 when every replay ran, 1 otherwise (not whether the model was right).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

HERE = Path(__file__).resolve().parent
CREMA_D = HERE / "crema-d"
SYNTHETIC = HERE / "speech-sample.wav"

#: CREMA-D's emotion codes (github.com/CheyneyComputerScience/CREMA-D README) -> the label words
#: the models use.
CREMA_D_EMOTIONS = {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry", "DIS": "disgust",
                    "FEA": "fearful"}
#: CREMA-D's sentence codes -> what is said (its README).
CREMA_D_SENTENCES = {
    "DFA": "Don't forget a jacket", "IEO": "It's eleven o'clock", "IOM": "I'm on my way to the meeting",
    "ITH": "I think I have a doctor's appointment", "ITS": "I think I've seen this before",
    "IWL": "I would like a new alarm clock", "IWW": "I wonder what this is about",
    "MTI": "Maybe tomorrow it will be cold", "TAI": "The airplane is almost full",
    "TIE": "That is exactly what happened", "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
#: Sex of the demo's actors (CREMA-D's VideoDemographics.csv).
CREMA_D_SEX = {"1001": "male", "1002": "female"}
#: Clips are shown per actor in this emotion order.
EMOTION_ORDER = ("neutral", "happy", "sad", "angry", "disgust", "fearful")
#: What speech-sample.wav says, in order, and how the Makefile's `sample` target asks espeak-ng to say it.
SYNTHETIC_SENTENCES = (
    ("Good morning. It is a lovely day today.", "calm, mid pitch"),
    ("Wow, we won! This is amazing!", "fast, high pitch, loud"),
    ("I miss them so much.", "slow, low pitch, quiet"),
    ("Stop that right now!", "fast, loud"),
)
#: Pause between two clips of the stream, seconds: a pause between two turns, longer than the VAD's
#: hangover (400 ms), so each clip is its own utterance.
SILENCE_S = 1.0
#: The pauses are not digital silence (no microphone delivers zeros, and their MFCC lie far outside
#: anything the model was trained on) but white noise at the recordings' own noise floor: the median
#: over the clips of the 10th percentile of their 25 ms frames' RMS (about -48.5 dBFS for CREMA-D),
#: so the stream sounds like one room. Seeded: the demo is the same every time.
NOISE_FRAME_S = 0.025
NOISE_PERCENTILE = 10
NOISE_SEED = 0
#: What the extra fields of an event mean, printed under the tally.
MEANING = ("unsure: the confidence is below the model's calibrated threshold, so treat the label as a guess; "
           "arousal: -1 calm .. +1 excited (the output that holds up best on voices the model never heard); "
           "valence: -1 unpleasant .. +1 pleasant")
#: Labels that count as the same emotion when judging: RAVDESS-style models say ``calm``, which
#: the 4-emotion scheme counts as neutral.
SAME_AS = {"calm": "neutral"}


@dataclass(frozen=True)
class Clip:
    path: Path
    actor: str
    sentence: str
    acted: str
    start_s: float
    end_s: float


def ser_edge() -> str:
    """The ``ser-edge`` command of this Python's environment (the venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "ser-edge"
    found = str(beside) if beside.exists() else shutil.which("ser-edge")
    if found is None:
        sys.exit("demo: no ser-edge command (install the project: make venv)")
    return found


def replay(files: list[Path | str], args: argparse.Namespace, stdin: bytes | None = None) -> tuple[list[dict], int]:
    """Events (parsed JSON lines of stdout) of one ``ser-edge replay`` run over ``files`` (``"-"``:
    ``stdin``, a WAV stream), and its exit status."""
    command = [ser_edge(), "replay", *map(str, files), "--sink", args.sink, "--log-level", "WARNING"]
    if args.model:
        command += ["--model", args.model]
    if args.mqtt_port:
        command += ["--mqtt-port", str(args.mqtt_port)]
    done = subprocess.run(command, capture_output=True, input=stdin)
    events = []
    for line in done.stdout.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode("utf-8", errors="replace"))
    return [e for e in events if "label" in e], done.returncode


def crema_d_clips() -> list[Clip]:
    """The CREMA-D demo clips in play order (actor, sentence, :data:`EMOTION_ORDER`), each with its
    span in seconds in the stream of :func:`crema_d_stream`."""
    order = []
    for path in CREMA_D.glob("*.flac"):
        actor, sentence, emotion, _level = path.stem.split("_")
        order.append((actor, sentence, EMOTION_ORDER.index(CREMA_D_EMOTIONS[emotion]), path))
    clips, offset = [], 0.0
    for actor, sentence, emotion, path in sorted(order):
        duration = soundfile.info(path).duration
        clips.append(Clip(path, actor, sentence, EMOTION_ORDER[emotion], offset, offset + duration))
        offset += duration + SILENCE_S
    return clips


def noise_floor_rms(signals: list[np.ndarray], rate_hz: int) -> float:
    """The recordings' noise floor, full scale = 1: the median over ``signals`` (1-D float) of the
    :data:`NOISE_PERCENTILE` th percentile of their :data:`NOISE_FRAME_S` frames' RMS."""
    frame = round(NOISE_FRAME_S * rate_hz)
    floors = []
    for x in signals:
        frames = x[: len(x) // frame * frame].reshape(-1, frame)
        floors.append(np.percentile(np.sqrt((frames ** 2).mean(axis=1)), NOISE_PERCENTILE))
    return float(np.median(floors))


def crema_d_stream(clips: list[Clip]) -> bytes:
    """The clips as one 16-bit WAV stream at their rate, :data:`SILENCE_S` pauses of noise at their
    own noise floor (:func:`noise_floor_rms`) between two; each clip starts at its ``start_s``.
    Raises ``ValueError`` if the clips' rates differ."""
    rates = {soundfile.info(c.path).samplerate for c in clips}
    if len(rates) != 1:
        raise ValueError(f"expected the demo clips at one sample rate, got {sorted(rates)}")
    rate = rates.pop()
    signals = [soundfile.read(clip.path, dtype="float32")[0] for clip in clips]
    noise_rms = noise_floor_rms(signals, rate)
    rng = np.random.default_rng(NOISE_SEED)
    pieces, length = [], 0
    for clip, signal in zip(clips, signals, strict=True):
        gap = round(clip.start_s * rate) - length  # the pause up to the clip's start
        if gap > 0:
            pieces.append(rng.normal(0.0, noise_rms, gap).astype(np.float32))
            length += gap
        pieces.append(signal)
        length += len(signal)
    out = io.BytesIO()
    soundfile.write(out, np.clip(np.concatenate(pieces), -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    return out.getvalue()


def overlap(event: dict, clip: Clip) -> float:
    return max(0.0, min(event["end_s"], clip.end_s) - max(event["start_s"], clip.start_s))


def heard_text(event: dict) -> str:
    text = f"{event['label']} {event['confidence']:.2f}"
    if event.get("unsure") is True:
        text += " (unsure)"
    for field in ("arousal", "valence"):
        if isinstance(event.get(field), int | float):
            text += f"  {field} {event[field]:+.2f}"
    return text


def crema_d_part(args: argparse.Namespace) -> int:
    clips = crema_d_clips()
    if not clips:
        print(f"no CREMA-D clips in {CREMA_D}")
        return 1
    print("Real emotional speech the model never trained on: CREMA-D (Cao et al. 2014, ODbL/DbCL; "
          "see edge/samples/crema-d/ATTRIBUTION.md)")
    print(f"actors 1001 and 1002 are held out of the shipped model's training; labels are the acted emotions; "
          f"{len(clips)} clips played as one stream, {SILENCE_S:g} s pauses of room-level noise between them\n")
    events, status = replay(["-"], args, stdin=crema_d_stream(clips))
    labels = None
    hits: dict[str, list[bool]] = {}
    for clip in clips:
        mine = [e for e in events if overlap(e, clip) > 0.5 * (e["end_s"] - e["start_s"])]
        what = f'{clip.start_s:6.1f} s  {clip.actor} ({CREMA_D_SEX.get(clip.actor, "?")})'.ljust(25)
        what += f'{CREMA_D_SENTENCES.get(clip.sentence, clip.sentence)[:38]:<38}'
        acted = f"acted: {clip.acted:<8}"
        if not mine:
            hits.setdefault(clip.acted, []).append(False)
            print(f"{what}  {acted} heard: nothing (no utterance found)  ✗")
            continue
        event = max(mine, key=lambda e: e["end_s"] - e["start_s"])
        labels = labels or list(event.get("scores", {}))
        ok = SAME_AS.get(event["label"], event["label"]) == clip.acted
        hits.setdefault(clip.acted, []).append(ok)
        note = f"  ({len(mine)} utterances: the longest)" if len(mine) > 1 else ""
        print(f"{what}  {acted} heard: {heard_text(event)}  {'✓' if ok else '✗'}{note}")
    right = sum(sum(h) for h in hits.values())
    recalls = {acted: sum(h) / len(h) for acted, h in hits.items()}
    ua = sum(recalls.values()) / len(recalls)
    per_emotion = ", ".join(f"{acted} {sum(hits[acted])}/{len(hits[acted])}" for acted in EMOTION_ORDER if acted in hits)
    calm = "; calm counts as neutral" if "calm" in (labels or []) else ""
    print(f"\n{right} of {len(clips)} right ({per_emotion}); UA {ua:.2f} over the {len(recalls)} acted emotions, "
          f"chance {1 / len(recalls):.0%} (guessing 1 in {len(recalls)}){calm}")
    print(MEANING)
    return status


def synthetic_part(args: argparse.Namespace) -> int:
    print(f"\nSynthetic speech, not a recording of emotions: {SYNTHETIC.name}, four sentences spoken by the "
          "espeak-ng synthesiser with different pitch, rate and volume settings")
    events, status = replay([SYNTHETIC], args)
    said = SYNTHETIC_SENTENCES if len(events) == len(SYNTHETIC_SENTENCES) else [("", "")] * len(events)
    for event, (sentence, delivery) in zip(events, said, strict=True):
        what = f'"{sentence}" ({delivery})' if sentence else ""
        print(f"  {event['start_s']:5.2f}-{event['end_s']:5.2f} s  {what:<58} heard: {heard_text(event)}")
    if not events:
        print("  no utterance found")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model .tflite (default: ser-edge's)")
    parser.add_argument("--sink", choices=["stdout", "both"], default="stdout",
                        help="stdout: print only; both: also publish to the broker")
    parser.add_argument("--mqtt-port", type=int, help="broker port (with --sink both)")
    args = parser.parse_args(argv)
    status = crema_d_part(args)
    status = synthetic_part(args) or status
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
