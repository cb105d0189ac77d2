"""EmoSpeech, the Indian EmoSpeech Command dataset (Rakshak team 2019;
github.com/RakshakTeam/emospeech-dataset-v1, CC BY-NC-SA 4.0).

Short spoken commands ("bacho", "help", "go", ...) recorded on phones by about 108 users in real
places. Files ``<Place>/<keyword>-<environment>-<emotion>-<YYYYMMDDhhmmss>-<user hash>.wav``, split
on ``-`` into exactly five fields (the environment "glass break" holds a space, one timestamp ends
in " copy"); emotion calm, angry, fearful, happy (the native labels, RAVDESS's words) or ``None``.
No sad class.

Skipped, each logged with its reason:

* keyword ``background``: no speech (the app's background recordings, whatever emotion they carry);
* emotion ``None``: no emotion label;
* byte-identical copies: the release files some recordings twice (the same take under environment
  "safe" and "scream", a "copy" of a take). A copy with the same label is left out, the first by path
  kept; when the copies disagree on the label, all of them are left out, since the audio cannot be
  both.

Speakers are ``"emospeech:<first 12 hex digits of the user hash>"``. One hash,
:data:`UNKNOWN_USER_HASH` (SHA-224 of the empty string: the app's user name was empty), is the
app's "unknown user" and covers many people: its clips get the group id :data:`UNKNOWN_USER`, which
folds keep whole like a speaker but which is not one speaker. Gender is ``None`` (not in the release).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from trainer.corpora.base import Clip, SkipLog, audio_files, finish, require_folder
from trainer.labels import EMOSPEECH_EMOTIONS

UNKNOWN_USER_HASH = "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f"
#: The group id of :data:`UNKNOWN_USER_HASH`'s clips.
UNKNOWN_USER = "emospeech:unknown-user"
SPEAKER_HEX_DIGITS = 12
NO_SPEECH_KEYWORD = "background"
NO_LABEL = "None"


def parse_emospeech_name(name: str) -> tuple[str, str, str, str] | None:
    """``(keyword, environment, emotion, user hash)`` of ``bacho-safe-calm-20190709085906-d14a....wav``,
    or ``None`` if the stem does not split on ``-`` into five non-empty fields with a hexadecimal user
    hash (the emotion is not checked: see :data:`trainer.labels.EMOSPEECH_EMOTIONS`)."""
    stem, dot, suffix = name.rpartition(".")
    fields = stem.split("-") if dot and suffix.lower() in ("wav", "flac") else []
    if len(fields) != 5 or not all(fields):
        return None
    keyword, environment, emotion, _timestamp, user = fields
    try:
        int(user, 16)
    except ValueError:
        return None
    return keyword, environment, emotion, user.lower()


def speaker_id(user_hash: str) -> str:
    """The clip's speaker (or group, :data:`UNKNOWN_USER`) id for a user hash."""
    return UNKNOWN_USER if user_hash == UNKNOWN_USER_HASH else f"emospeech:{user_hash[:SPEAKER_HEX_DIGITS]}"


def _digest(path: Path) -> bytes:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).digest()


def drop_copies(clips: list[Clip], skipped: SkipLog) -> list[Clip]:
    """``clips`` without byte-identical copies (see the module docstring), each skip logged to
    ``skipped``; order kept. Only files that share their size with another are read."""
    by_size: dict[int, list[Clip]] = defaultdict(list)
    for clip in clips:
        by_size[clip.path.stat().st_size].append(clip)
    by_content: dict[bytes, list[Clip]] = defaultdict(list)
    for same_size in by_size.values():
        if len(same_size) > 1:
            for clip in same_size:
                by_content[_digest(clip.path)].append(clip)
    dropped: set[Path] = set()
    for copies in by_content.values():
        if len(copies) < 2:
            continue
        copies = sorted(copies, key=lambda c: str(c.path))
        if len({c.label for c in copies}) > 1:
            for clip in copies:
                skipped.skip("byte-identical copies with conflicting labels", clip.path)
                dropped.add(clip.path)
        else:
            for clip in copies[1:]:
                skipped.skip("byte-identical copy of another clip with the same label", clip.path)
                dropped.add(clip.path)
    return [c for c in clips if c.path not in dropped]


def load_emospeech(root: str | Path) -> list[Clip]:
    """The EmoSpeech clips under ``root`` (recursively) that hold labelled speech, sorted by path;
    labels calm, angry, fearful, happy; speakers ``"emospeech:<hash[:12]>"`` and the group
    :data:`UNKNOWN_USER`; gender ``None``. Other names, background recordings, unlabelled clips,
    unknown emotions and byte-identical copies are skipped with a logged reason (module docstring);
    raises :class:`CorpusError` if nothing usable is found."""
    kind = "emospeech"
    root = require_folder(kind, root)
    clips, skipped = [], SkipLog(kind)
    for path in audio_files(root):
        parsed = parse_emospeech_name(path.name)
        if parsed is None:
            skipped.skip("not <keyword>-<environment>-<emotion>-<timestamp>-<user hash>.wav", path)
            continue
        keyword, _environment, emotion, user = parsed
        if keyword.lower() == NO_SPEECH_KEYWORD:
            skipped.skip("keyword 'background': no speech", path)
            continue
        if emotion == NO_LABEL:
            skipped.skip("emotion 'None': no emotion label", path)
            continue
        if emotion not in EMOSPEECH_EMOTIONS:
            skipped.skip(f"unknown emotion {emotion!r} (expected {', '.join(EMOSPEECH_EMOTIONS)})", path)
            continue
        clips.append(Clip(path=path, label=emotion, speaker=speaker_id(user), corpus=kind))
    clips = drop_copies(clips, skipped)
    return finish(kind, clips, skipped, root, "<Place>/<keyword>-<environment>-<emotion>-<timestamp>-<user>.wav")
