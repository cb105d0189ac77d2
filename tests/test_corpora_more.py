"""The five corpora of issue 17 (ASED, nEMO, EMOVO, EmoSpeech, CORAA-SER): each loader on its real
mini subset in ../shared/data (counts, labels, speakers and groups, skip reasons), corner cases made
from those real files, and, when ``SER_EDGE_DATA`` (or ``./data``) holds the full corpora, the full
counts checked against the corpora's md5 lists in ../shared/data (skipped when absent, also in CI)."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import pytest
import soundfile

from tests.paths import ASED_MINI, CORAA_SER_MINI, EMOSPEECH_MINI, EMOVO_MINI, FULL_DATA, NEMO_MINI, SHARED_DATA
from tests.test_corpora import require, wav
from trainer.corpora import (
    UNKNOWN_USER,
    Clip,
    CorpusError,
    load_ased,
    load_coraa_ser,
    load_corpus,
    load_emospeech,
    load_emovo,
    load_nemo,
    parse_emospeech_name,
)
from trainer.corpora.emospeech import UNKNOWN_USER_HASH
from trainer.labels import EMOTION4, EMOTION6, NATIVE, dimension_targets, map_label, scheme_labels, to_model_label

RAVDESS8 = NATIVE["ravdess"]


def mapped(clips, scheme: str) -> Counter:
    return Counter(map_label(c, scheme) for c in clips)


# --- ASED (Retta et al. 2023; ../shared/data/README.md) -------------------------------------------

def test_ased_real_files():
    clips = load_ased(require(ASED_MINI))
    assert len(clips) == 20 and {c.corpus for c in clips} == {"ased"}
    assert Counter(c.label for c in clips) == dict.fromkeys(NATIVE["ased"], 4)
    for c in clips:  # the folder 0K<Emotion> names the label; the speaker is the name's last field
        assert c.path.parent.name[2:].lower() == c.label
        assert c.speaker == f"ased:{c.path.stem.split('-')[-1]}"
    # gender code 01 female, 02 male: speaker 01's files carry 01, speaker 02's 02
    assert {(c.speaker, c.gender) for c in clips} == {("ased:01", "female"), ("ased:02", "male")}
    assert mapped(clips, "emotion4") == {"neutral": 4, "happy": 4, "sad": 4, "angry": 4, None: 4}  # no fearful
    assert mapped(clips, "emotion6") == {"neutral": 4, "fearful": 4, "happy": 4, "sad": 4, "angry": 4}
    assert [to_model_label(c, "native", RAVDESS8) for c in clips] == [c.label for c in clips]


def test_ased_stray_gender_code_and_skips(tmp_path, caplog):
    source = require(ASED_MINI)
    for path in sorted(source.rglob("*.wav")):
        target = tmp_path / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    happy = source / "03Happy" / "h3-01-01-01-01.wav"
    shutil.copy(happy, tmp_path / "03Happy" / "h3-07-01-02-01.wav")  # speaker 01 once with the male code
    shutil.copy(happy, tmp_path / "04Sad" / "S4-07-02-01-01.wav")  # the release's one capital S: sad
    shutil.copy(happy, tmp_path / "04Sad" / "a5-07-02-01-01.wav")  # angry letter in the Sad folder
    shutil.copy(happy, tmp_path / "04Sad" / "x4-07-02-01-01.wav")  # no such letter
    shutil.copy(happy, tmp_path / "04Sad" / "s4-07-02-03-01.wav")  # no such gender code
    shutil.copy(happy, tmp_path / "04Sad" / "notes.wav")
    with caplog.at_level(logging.WARNING):
        clips = load_ased(tmp_path)
    assert len(clips) == 22
    named = {c.path.name: c for c in clips}
    assert named["h3-07-01-02-01.wav"].speaker == "ased:01"  # the speaker field alone names the speaker
    assert {c.gender for c in clips if c.speaker == "ased:01"} == {"female"}  # what most of its files say
    assert named["S4-07-02-01-01.wav"].label == "sad"
    for reason in ("disagrees with its 0K<Emotion> folder", "unknown emotion letter 'x'", "unknown gender code '03'",
                   "not <e><n>-<session>-<sentence>-<gender>-<speaker>.wav"):
        assert reason in caplog.text


# --- nEMO (Christop 2024) -------------------------------------------------------------------------

def test_nemo_real_files():
    clips = load_nemo(require(NEMO_MINI))
    assert len(clips) == 12 and {c.corpus for c in clips} == {"nemo"}
    assert Counter(c.speaker for c in clips) == {"nemo:EB0": 6, "nemo:IC0": 6}
    assert Counter(c.label for c in clips) == dict.fromkeys(NATIVE["nemo"], 2)
    assert {c.gender for c in clips} == {None}
    for c in clips:
        assert c.path.stem.split("_")[1] == c.label
    # the native words map like SAVEE's (anger, happiness, sadness) and TESS's (fear)
    assert mapped(clips, "emotion4") == {"angry": 2, "happy": 2, "sad": 2, "neutral": 2, None: 4}
    assert mapped(clips, "emotion6") == {"angry": 2, "happy": 2, "sad": 2, "neutral": 2, "fearful": 2, None: 2}
    assert mapped(clips, "valence") == {"negative": 6, "positive": 4, "neutral": 2}
    assert sorted(to_model_label(c, "native", RAVDESS8) for c in clips) == sorted(
        ["angry", "fearful", "happy", "neutral", "sad", "surprised"] * 2)


def test_nemo_skips(tmp_path, caplog):
    wav(tmp_path / "samples" / "WR0_anger_7.wav")
    wav(tmp_path / "samples" / "WR0_boredom_7.wav")
    wav(tmp_path / "samples" / "WR0-anger-7.wav")
    with caplog.at_level(logging.WARNING):
        clips = load_corpus("nemo", tmp_path)
    assert [(c.label, c.speaker) for c in clips] == [("anger", "nemo:WR0")]
    assert "unknown emotion 'boredom'" in caplog.text and "not <SPK>_<emotion>_<n>.wav" in caplog.text


# --- EMOVO (Costantini et al. 2014) ----------------------------------------------------------------

def test_emovo_real_files():
    clips = load_emovo(require(EMOVO_MINI))
    assert [c.path.name.split("-")[0] for c in clips] == ["dis", "gio", "neu", "pau", "rab", "sor", "tri"]
    assert [c.label for c in clips] == ["disgust", "joy", "neutral", "fear", "anger", "surprise", "sadness"]
    assert {(c.speaker, c.gender, c.corpus) for c in clips} == {("emovo:f1", "female", "emovo")}
    assert [map_label(c, "emotion4") for c in clips] == [None, "happy", "neutral", None, "angry", None, "sad"]
    assert {map_label(c, "emotion6") for c in clips} - {None} == set(EMOTION6)  # all six; surprise excluded
    assert [map_label(c, "valence") for c in clips] == ["negative", "positive", "neutral", "negative", "negative",
                                                        "positive", "negative"]
    joy = clips[1]
    assert dimension_targets(joy) == dimension_targets(Clip(joy.path, "happy", "ravdess:01", "ravdess"))
    # 48 kHz stereo as released; the trainer's reader (the device's) averages the channels
    from edge.audio.io import load_audio

    info = soundfile.info(joy.path)
    assert (info.samplerate, info.channels) == (48000, 2)
    samples = load_audio(joy.path, 16000)
    assert samples.ndim == 1 and abs(samples.size - round(info.frames / 3)) <= 1


def test_emovo_skips(tmp_path, caplog):
    wav(tmp_path / "m2" / "rab-m2-l4.wav")
    wav(tmp_path / "m2" / "rab-m3-l4.wav")  # another actor's name in m2's folder
    wav(tmp_path / "m2" / "xyz-m2-l4.wav")
    wav(tmp_path / "m2" / "rab-x9-l4.wav")
    with caplog.at_level(logging.WARNING):
        clips = load_corpus("emovo", tmp_path)
    assert [(c.label, c.speaker, c.gender) for c in clips] == [("anger", "emovo:m2", "male")]
    for reason in ("disagrees with its speaker folder", "unknown emotion code 'xyz'", "not <emo>-<spk>-<sentence>.wav"):
        assert reason in caplog.text


# --- EmoSpeech (Rakshak team 2019) ----------------------------------------------------------------

def test_emospeech_real_files(caplog):
    root = require(EMOSPEECH_MINI)
    with caplog.at_level(logging.WARNING):
        clips = load_emospeech(root)
    files = sorted(root.rglob("*.wav"))
    background = [p for p in files if p.name.startswith("background-")]
    assert len(files) == 10 and len(background) == 1
    assert "skipped 1 file(s): keyword 'background': no speech" in caplog.text
    assert sorted(c.path for c in clips) == sorted(set(files) - set(background))
    assert Counter(c.label for c in clips) == {"calm": 3, "angry": 2, "fearful": 2, "happy": 2}
    # four users by their hash, and the app's unknown user as one group id
    users = {p.stem.split("-")[-1] for p in files if p not in background}
    assert UNKNOWN_USER_HASH in users
    assert {c.speaker for c in clips} == {UNKNOWN_USER} | {f"emospeech:{u[:12]}" for u in users - {UNKNOWN_USER_HASH}}
    assert [c.speaker for c in clips if c.path.stem.endswith(UNKNOWN_USER_HASH)] == [UNKNOWN_USER]
    assert {c.gender for c in clips} == {None}
    # calm is RAVDESS's calm: neutral in emotion4; no sad class; fearful excluded from emotion4
    assert mapped(clips, "emotion4") == {"neutral": 3, "angry": 2, "happy": 2, None: 2}
    assert mapped(clips, "valence") == {"neutral": 3, "negative": 4, "positive": 2}
    assert scheme_labels("emotion4", clips) == EMOTION4


def test_emospeech_names_and_copies(tmp_path, caplog):
    root = require(EMOSPEECH_MINI)
    angry, calm = (sorted(root.glob(f"webservice/bacho-safe-{e}-*.wav"))[0] for e in ("angry", "calm"))
    user = angry.stem.split("-")[-1]
    shutil.copy(angry, tmp_path / angry.name)
    shutil.copy(angry, tmp_path / f"bacho-scream-angry-1562996360436-{user}.wav")  # the same take, filed twice
    shutil.copy(calm, tmp_path / calm.name)
    shutil.copy(calm, tmp_path / calm.name.replace("-calm-", "-fearful-"))  # one take, two labels: unusable
    shutil.copy(calm, tmp_path / f"help-glass break-happy-1562998297504-{user}.wav")
    (tmp_path / f"help-glass break-happy-1562998297504-{user}.wav").write_bytes(
        (tmp_path / f"help-glass break-happy-1562998297504-{user}.wav").read_bytes()[:-2])  # not a copy any more
    shutil.copy(calm, tmp_path / f"unknown-safe-None-1562998297504-{user}.wav")
    shutil.copy(calm, tmp_path / f"help-safe-sad-1562998297504-{user}.wav")
    shutil.copy(calm, tmp_path / "help-safe-calm-1562998297504.wav")
    with caplog.at_level(logging.WARNING):
        clips = load_emospeech(tmp_path)
    assert sorted(c.path.name for c in clips) == sorted([angry.name, f"help-glass break-happy-1562998297504-{user}.wav"])
    assert parse_emospeech_name(f"help-glass break-happy-1562998297504-{user}.wav") == ("help", "glass break", "happy",
                                                                                       user)
    for reason in ("skipped 1 file(s): byte-identical copy of another clip with the same label",
                   "skipped 2 file(s): byte-identical copies with conflicting labels",
                   "emotion 'None': no emotion label", "unknown emotion 'sad'",
                   "not <keyword>-<environment>-<emotion>-<timestamp>-<user hash>.wav"):
        assert reason in caplog.text


# --- CORAA-SER (PROPOR 2022 shared task); the non-neutral label's training is another matter --------

def test_coraa_ser_real_files():
    clips = load_coraa_ser(require(CORAA_SER_MINI))
    assert len(clips) == 12 and {c.corpus for c in clips} == {"coraa-ser"}
    assert Counter((c.path.parent.name, c.label, c.gender) for c in clips) == {
        ("neutral", "neutral", None): 4, ("non-neutral-female", "non-neutral", "female"): 4,
        ("non-neutral-male", "non-neutral", "male"): 4}
    # the recording id groups one conversation's segments: it is the group id
    for c in clips:
        assert c.speaker == f"coraa-ser:{c.path.name.split('_segment')[0]}"
    assert Counter(c.speaker for c in clips) == {"coraa-ser:bfamcv01": 8, "coraa-ser:bfamcv02": 4}


def test_coraa_ser_skips(tmp_path, caplog):
    wav(tmp_path / "neutral" / "bpubmn06_segment12_neutral.wav")
    wav(tmp_path / "neutral" / "bpubmn06_segment13_non-neutral-male.wav")  # class disagrees with the folder
    wav(tmp_path / "happy" / "bpubmn06_segment14_happy.wav")
    wav(tmp_path / "neutral" / "bpubmn06-14.wav")
    with caplog.at_level(logging.WARNING):
        clips = load_corpus("coraa-ser", tmp_path)
    assert [(c.label, c.speaker) for c in clips] == [("neutral", "coraa-ser:bpubmn06")]
    for reason in ("disagrees with its class folder", "unknown class 'happy'", "not <recording>_segment<n>_<class>.wav"):
        assert reason in caplog.text


@pytest.mark.parametrize("kind", ["ased", "nemo", "emovo", "emospeech", "coraa-ser"])
def test_nothing_usable_is_one_line(tmp_path, kind):
    wav(tmp_path / "readme.wav")
    with pytest.raises(CorpusError, match=f"^{kind}: no usable clips .* 1 not ") as caught:
        load_corpus(kind, tmp_path)
    assert "\n" not in str(caught.value)


# --- the full corpora (../shared/tools/corpus-from-mirror into $SER_EDGE_DATA), against their md5 lists -

def full(kind: str) -> tuple[Path, list[tuple[str, str]]]:
    """The full corpus folder and its md5 list ``[(md5, relative path)]``; skips without the corpus."""
    root = FULL_DATA / kind
    if not root.is_dir():
        pytest.skip(f"no full {kind} corpus at {root} (set SER_EDGE_DATA)")
    lines = require(SHARED_DATA / f"{kind}.md5").read_text().splitlines()
    return root, [tuple(line.split("  ", 1)) for line in lines if line.strip()]


def relative(clips, root: Path) -> set[str]:
    return {c.path.relative_to(root).as_posix() for c in clips}


def test_full_ased():
    root, listed = full("ased")
    clips = load_ased(root)
    assert relative(clips, root) == {path for _, path in listed} and len(clips) == 2474
    assert len({c.speaker for c in clips}) == 65
    genders = {}
    for c in clips:
        genders.setdefault(c.speaker, set()).add(c.gender)
    assert all(len(g) == 1 for g in genders.values())  # one gender per speaker despite the stray codes
    codes = {}
    for _, path in listed:
        fields = Path(path).stem.split("-")
        codes.setdefault(fields[-1], set()).add(fields[-2])
    assert sum(len(c) > 1 for c in codes.values()) == 5  # the README's five stray files


def test_full_nemo():
    root, listed = full("nemo")
    clips = load_nemo(root)
    assert relative(clips, root) == {path for _, path in listed} and len(clips) == 4481
    assert len({c.speaker for c in clips}) == 9
    assert Counter(c.label for c in clips) == Counter(Path(p).stem.split("_")[1] for _, p in listed)


def test_full_emovo():
    root, listed = full("emovo")
    clips = load_emovo(root)
    assert relative(clips, root) == {path for _, path in listed} and len(clips) == 588
    assert Counter(c.speaker for c in clips) == {f"emovo:{s}": 98 for s in ("f1", "f2", "f3", "m1", "m2", "m3")}
    assert Counter(c.label for c in clips) == dict.fromkeys(NATIVE["emovo"], 84)


def test_full_emospeech(caplog):
    root, listed = full("emospeech")
    with caplog.at_level(logging.WARNING):
        clips = load_emospeech(root)
    assert len(listed) == 7741
    fields = {path: Path(path).stem.split("-") for _, path in listed}
    background = {p for p, f in fields.items() if f[0] == "background"}
    unlabelled = {p for p, f in fields.items() if f[2] == "None"} - background
    speech = [(md5, p) for md5, p in listed if p not in background | unlabelled]
    by_content = {}
    for md5, path in sorted(speech, key=lambda e: e[1]):
        by_content.setdefault(md5, []).append(path)
    kept, copies, conflicting = set(), 0, 0
    for paths in by_content.values():
        if len({fields[p][2] for p in paths}) > 1:
            conflicting += len(paths)
        else:
            kept.add(paths[0])
            copies += len(paths) - 1
    assert relative(clips, root) == kept
    assert (len(background), len(unlabelled), copies, conflicting, len(kept)) == (1116, 1, 85, 6, 6533)
    for count, reason in ((1116, "keyword 'background'"), (1, "emotion 'None'"), (85, "byte-identical copy of"),
                          (6, "byte-identical copies with conflicting")):
        assert f"skipped {count} file(s): {reason}" in caplog.text
    users = {fields[p][4] for p in kept}
    speakers = {c.speaker for c in clips}
    assert len(speakers) == len(users) == 107 and UNKNOWN_USER in speakers  # 106 users + the unknown-user group
    assert "sad" not in {c.label for c in clips}


def test_full_coraa_ser():
    root, listed = full("coraa-ser")
    clips = load_coraa_ser(root)
    assert relative(clips, root) == {path for _, path in listed} and len(clips) == 625
    assert len({c.speaker for c in clips}) == len({Path(p).name.split("_segment")[0] for _, p in listed}) == 84
    assert Counter(c.label for c in clips) == {"neutral": 491, "non-neutral": 134}


# --- licences: what a model trained on each corpus may be used for ---------------------------------

def test_licence_table_follows_the_data_readme():
    """Every corpus kind has a row; the ten corpora's licences agree with ../shared/data/README.md's
    table (CC BY-NC-* -> non-commercial, research use or none stated -> research only, ODbL -> any use
    with attribution), and the most restrictive term wins."""
    from trainer.corpora import CORPORA
    from trainer.corpora.licences import (
        ANY_USE,
        LICENCES,
        NON_COMMERCIAL,
        RESEARCH_ONLY,
        USE_ORDER,
        corpus_record,
        most_restrictive_use,
    )

    assert set(LICENCES) == set(CORPORA)
    readme = require(SHARED_DATA / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and ("-mini" in cells[0] or "-48k" in cells[0]):
            rows[cells[0].strip("`").split("-mini")[0].split("-48k")[0]] = cells[3]
    assert set(rows) == {"ravdess", "tess", "crema-d", "savee", "turev-db", "ased", "nemo", "emovo", "emospeech",
                         "coraa-ser"}
    for kind, stated in rows.items():
        expected = (NON_COMMERCIAL if "CC BY-NC" in stated else ANY_USE if "ODbL" in stated
                    else RESEARCH_ONLY if "research use" in stated or "no licence stated" in stated else None)
        record = corpus_record(kind)
        assert record["use"] == expected, kind
        assert set(record) == {"kind", "name", "language", "licence", "use"} and all(record.values())
        if stated.startswith("CC") or stated.startswith("ODbL"):
            assert record["licence"].split(" (")[0] == stated
    assert most_restrictive_use(["crema-d"]) == ANY_USE
    assert most_restrictive_use(["crema-d", "ravdess", "nemo"]) == NON_COMMERCIAL
    assert most_restrictive_use(rows) == RESEARCH_ONLY == USE_ORDER[2]
    assert most_restrictive_use(["csv", "crema-d"]) == ("unknown: check the licence of csv before any use; the other "
                                                        "corpora allow any use, with attribution")
    with pytest.raises(ValueError, match="expected at least one corpus kind"):
        most_restrictive_use([])
