"""`make demo`: what the model hears in real emotional speech it never trained on, right or wrong.

Part 1 replays the CREMA-D clips in ``crema-d/`` (two actors held out of the shipped model's
training, one sentence, one clip per emotion; see ``crema-d/ATTRIBUTION.md``) through the installed
``ser-edge replay --sink stdout``, in one run, as one device would hear them one after another (the
daemon's state, e.g. its VAD's noise floor or any adaptive normalisation, carries from clip to
clip, so the fixed order, actor by actor, neutral-happy-sad-angry, is part of the demo), and
prints per clip what it is (from its CREMA-D file name) and what the model heard (from the JSON
events), then how many it got right. Part 2 replays ``speech-sample.wav``, synthetic speech made
with espeak-ng (not a recording of emotions), and prints its events.

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
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


def replay(files: list[Path], args: argparse.Namespace) -> tuple[list[dict], int]:
    """Events (parsed JSON lines of stdout) of one ``ser-edge replay`` run over ``files``, and its exit status."""
    command = [ser_edge(), "replay", *map(str, files), "--sink", args.sink, "--log-level", "WARNING"]
    if args.model:
        command += ["--model", args.model]
    if args.mqtt_port:
        command += ["--mqtt-port", str(args.mqtt_port)]
    done = subprocess.run(command, capture_output=True, text=True)
    events = []
    for line in done.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
    return events, done.returncode


def crema_d_clips() -> list[Clip]:
    """The CREMA-D demo clips in name order, each with its span in the concatenated replay."""
    clips, offset = [], 0.0
    for path in sorted(CREMA_D.glob("*.flac")):
        actor, sentence, emotion, _level = path.stem.split("_")
        duration = soundfile.info(path).duration
        clips.append(Clip(path, actor, sentence, CREMA_D_EMOTIONS[emotion], offset, offset + duration))
        offset += duration
    return sorted(clips, key=lambda c: (c.actor, EMOTION_ORDER.index(c.acted)))


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
    print("actors 1001 and 1002 are held out of the shipped model's training; labels are the acted emotions\n")
    events, status = replay([c.path for c in clips], args)
    right, labels = 0, None
    for clip in clips:
        mine = [e for e in events if overlap(e, clip) > 0.5 * (e["end_s"] - e["start_s"])]
        what = f'{clip.actor} ({CREMA_D_SEX.get(clip.actor, "?")})'.ljust(14)
        what += f'"{CREMA_D_SENTENCES.get(clip.sentence, clip.sentence)}"'
        acted = f"acted: {clip.acted:<8}"
        if not mine:
            print(f"{what}  {acted} heard: nothing (no utterance found)  ✗")
            continue
        event = max(mine, key=lambda e: e["end_s"] - e["start_s"])
        labels = labels or list(event.get("scores", {}))
        ok = SAME_AS.get(event["label"], event["label"]) == clip.acted
        right += ok
        note = f"  ({len(mine)} utterances: the longest)" if len(mine) > 1 else ""
        print(f"{what}  {acted} heard: {heard_text(event)}  {'✓' if ok else '✗'}{note}")
    chance = f" (guessing among the model's {len(labels)} labels: 1 in {len(labels)})" if labels else ""
    calm = "; calm counts as neutral" if "calm" in (labels or []) else ""
    print(f"\n{right} of {len(clips)} right{chance}{calm}")
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
