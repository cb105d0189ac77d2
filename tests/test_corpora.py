"""Corpus loaders and label schemes: every loader on its real subset in ../shared/data (RAVDESS,
CREMA-D, TESS, SAVEE, TurEV-DB), tiny synthetic WAVs laid out as each corpus's documentation
describes for the corner cases; the silent-clip check on real audio. Under ``CI=true`` missing test
data fails the test instead of skipping it."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers import skip_or_fail

from tests.paths import (
    CREMA_D_MINI,
    CREMA_D_SILENT_CLIP,
    RAVDESS_48K,
    RAVDESS_MINI,
    REPO,
    SAVEE_MINI,
    TESS_MINI,
    TUREV_DB_MINI,
)
from trainer.corpora import (
    CORPORA,
    DEMO_SPEAKERS,
    SILENCE_PEAK_DBFS,
    Clip,
    CorpusError,
    is_silent,
    load_corpus,
    load_crema_d,
    load_crema_d_perceived,
    load_csv,
    load_dusha,
    load_ravdess,
    load_ravdess_song,
    load_savee,
    load_tess,
    load_turev_db,
    parse_ravdess_name,
    silence_reason,
)
from trainer.labels import (
    EMOTION4,
    EMOTION6,
    NATIVE,
    SCHEMES,
    LabelSchemeError,
    apply_scheme,
    map_label,
    scheme_labels,
    to_model_label,
)

RAVDESS8 = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def require(path: Path) -> Path:
    """``path`` if it exists; else skip the test, or fail it under ``CI=true`` (CI has ../shared)."""
    if not path.exists():
        message = f"no test data at {path} (../shared/data beside the repository)"
        skip_or_fail(message)
    return path


def wav(path, seconds: float = 0.05, rate: int = 16000):
    """A tiny synthetic WAV (low noise) at ``path``, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, (np.random.default_rng(0).normal(0, 0.01, int(seconds * rate))).astype(np.float32), rate)
    return path


# --- RAVDESS (Livingstone & Russo 2018; ../shared/data/README.md) ---------------------------------

def test_ravdess_real_files_speech_only():
    clips = load_ravdess(require(RAVDESS_MINI))
    assert len(clips) == 120 and {c.corpus for c in clips} == {"ravdess"}
    assert {c.speaker: c.gender for c in clips} == {"ravdess:01": "male", "ravdess:02": "female"}
    # per actor: neutral 2 statements x 2 repetitions at normal only; the other 7 emotions at both
    assert Counter(c.label for c in clips) == {label: 8 if label == "neutral" else 16 for label in RAVDESS8}
    assert Counter(c.intensity for c in clips) == {"normal": 2 * (4 + 28), "strong": 2 * 28}
    assert {c.intensity for c in clips if c.label == "neutral"} == {"normal"}
    for c in clips:  # intensity is the fourth field of the name
        assert c.intensity == {"01": "normal", "02": "strong"}[c.path.name.split("-")[3]]
    originals = load_ravdess(require(RAVDESS_48K))
    assert [c.label for c in originals] == RAVDESS8  # one per emotion, sorted by code
    assert [c.intensity for c in originals] == ["normal"] + ["strong"] * 7
    assert {c.speaker for c in originals} == {"ravdess:03"}


def test_ravdess_song_is_channel_02(tmp_path):
    # Song release: Audio_Song_Actors_01-24/Actor_XX/03-02-EE-II-SS-RR-AA.wav, emotions 01..06 only.
    wav(tmp_path / "Actor_01" / "03-02-06-01-01-01-01.wav")
    wav(tmp_path / "Actor_02" / "03-02-01-01-02-02-02.wav")
    wav(tmp_path / "Actor_02" / "03-01-05-01-02-02-02.wav")  # speech: not song
    wav(tmp_path / "Actor_02" / "03-02-08-01-02-02-02.wav")  # no surprise in song: skipped
    song = load_ravdess_song(tmp_path)
    assert [(c.label, c.speaker, c.corpus) for c in song] == [
        ("fearful", "ravdess:01", "ravdess-song"), ("neutral", "ravdess:02", "ravdess-song")]
    assert parse_ravdess_name("03-02-06-01-01-01-01.wav", channel="02") == ("fearful", "01")
    assert [c.label for c in load_ravdess(tmp_path)] == ["angry"]
    # speech + song share one native set (song's is a subset)
    assert scheme_labels("native", song + load_ravdess(tmp_path)) == tuple(RAVDESS8)


def test_ravdess_unknown_emotion_code_is_skipped_and_logged(tmp_path, caplog):
    wav(tmp_path / "03-01-09-01-01-01-01.wav")
    wav(tmp_path / "03-01-01-01-01-01-01.wav")
    with caplog.at_level(logging.WARNING):
        clips = load_ravdess(tmp_path)
    assert [c.label for c in clips] == ["neutral"]
    assert "unknown RAVDESS emotion code" in caplog.text


# --- TESS (Dupuis & Pichora-Fuller 2010; ../shared/data/README.md) --------------------------------

def test_tess_real_files():
    clips = load_tess(require(TESS_MINI))
    assert len(clips) == 14
    assert {c.speaker for c in clips} == {"tess:OAF", "tess:YAF"} and {c.gender for c in clips} == {"female"}
    assert Counter(c.label for c in clips) == {label: 2 for label in NATIVE["tess"]}
    assert {c.intensity for c in clips} == {None}
    surprise = [c for c in clips if c.path.name == "OAF_back_ps.wav"]
    assert surprise[0].label == "pleasant_surprise"
    assert to_model_label(surprise[0], "native", tuple(RAVDESS8)) == "surprised"


def test_tess_misnamed_file_belongs_to_oaf(tmp_path, caplog):
    wav(tmp_path / "OAF_neutral" / "OA_bite_neutral.wav")
    wav(tmp_path / "YAF_pleasant_surprise" / "YAF_back_ps.wav")
    wav(tmp_path / "YAF_sad" / "YAF_back_angry.wav")  # suffix disagrees with the folder: skipped
    wav(tmp_path / "YAF_bored" / "YAF_back_bored.wav")  # no such TESS emotion: skipped
    with caplog.at_level(logging.WARNING):
        clips = load_tess(tmp_path)
    assert [(c.label, c.speaker) for c in clips] == [("neutral", "tess:OAF"), ("pleasant_surprise", "tess:YAF")]
    assert "skipped 2 file(s)" in caplog.text


# --- CREMA-D (github.com/CheyneyComputerScience/CREMA-D README: AudioWAV/, VideoDemographics.csv,
#     processedResults/tabulatedVotes.csv) --------------------------------------------------------

def crema_fixture(root):
    for name in ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TIE_SAD_LO", "1091_MTI_NEU_XX", "1002_DFA_XYZ_XX"):
        wav(root / "AudioWAV" / f"{name}.wav")
    wav(root / "AudioWAV" / "0999_DFA_ANG_XX.wav")  # actor out of range: skipped
    (root / "VideoDemographics.csv").write_text("ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
                                                "1002,21,Female,Caucasian,Not Hispanic\n")
    (root / "processedResults").mkdir()
    # mode 1 (voice) rows are 100001.., mode 2 (face) 200001..: only voice votes count
    (root / "processedResults" / "tabulatedVotes.csv").write_text(
        ",A,D,F,H,N,S,fileName,numResponses,agreement,emoVote\n"
        "100001,1,0,0,0,8,0,1001_DFA_ANG_XX,9,0.89,N\n"
        "100002,0,0,0,5,4,0,1001_IEO_HAP_HI,9,0.56,H\n"
        "100003,0,0,0,0,4,4,1002_TIE_SAD_LO,8,0.5,N:S\n"
        "200001,9,0,0,0,0,0,1001_DFA_ANG_XX,9,1.0,A\n")


def test_crema_d_real_files():
    clips = load_crema_d(require(CREMA_D_MINI))
    assert len(clips) == 163 and {c.corpus for c in clips} == {"crema-d"}
    # per actor: 11 sentences x 6 emotions at XX + IEO (neutral XX, 5 emotions x LO/MD/HI) = 82;
    # actor 1002 has no TIE neutral clip in the release
    assert Counter(c.speaker for c in clips) == {"crema-d:1001": 82, "crema-d:1002": 81}
    assert Counter(c.label for c in clips) == {"neutral": 23, "happy": 28, "sad": 28, "angry": 28, "fearful": 28,
                                               "disgust": 28}
    assert {c.gender for c in clips} == {None}  # the subset has no VideoDemographics.csv
    by_level = Counter(c.intensity for c in clips)
    assert by_level == {None: 133, "low": 10, "medium": 10, "high": 10}
    for c in clips:
        level = c.path.stem.split("_")[3]
        assert c.intensity == {"LO": "low", "MD": "medium", "HI": "high", "XX": None}[level]
        assert (c.intensity is not None) == (c.path.stem.split("_")[1] == "IEO" and c.label != "neutral")
    named = {c.path.name: c for c in clips}
    assert named["1001_DFA_ANG_XX.wav"].label == "angry" and named["1001_DFA_ANG_XX.wav"].intensity is None
    assert named["1002_IEO_HAP_LO.wav"].intensity == "low" and named["1002_IEO_HAP_LO.wav"].speaker == "crema-d:1002"


def test_crema_d_acted_and_gender(tmp_path, caplog):
    crema_fixture(tmp_path)
    with caplog.at_level(logging.WARNING):
        clips = load_crema_d(tmp_path)
    assert [(c.path.stem, c.label, c.speaker, c.gender, c.intensity) for c in clips] == [
        ("1001_DFA_ANG_XX", "angry", "crema-d:1001", "male", None),
        ("1001_IEO_HAP_HI", "happy", "crema-d:1001", "male", "high"),
        ("1002_TIE_SAD_LO", "sad", "crema-d:1002", "female", "low"),
        ("1091_MTI_NEU_XX", "neutral", "crema-d:1091", None, None),  # not in the demographics: unknown
    ]
    assert "unknown emotion code XYZ" in caplog.text and "not a CREMA-D name" in caplog.text
    assert [map_label(c, "gender_emotion") for c in clips] == ["male_angry", "male_happy", "female_sad", None]


def test_crema_d_perceived_votes(tmp_path):
    crema_fixture(tmp_path)
    clips = load_crema_d_perceived(tmp_path)
    # the voice-only vote, not the face vote; the tied N:S clip and the unvoted ones are skipped
    assert [(c.path.stem, c.label) for c in clips] == [("1001_DFA_ANG_XX", "neutral"), ("1001_IEO_HAP_HI", "happy")]


# --- SAVEE (kahlan.eps.surrey.ac.uk/savee: AudioData/DC/a01.wav; flattened copies DC_a01.wav) ------

def test_savee_real_files():
    clips = load_savee(require(SAVEE_MINI))
    assert [c.path.name for c in clips] == ["a01.wav", "d01.wav", "f01.wav", "h01.wav", "n01.wav", "n02.wav",
                                            "sa01.wav", "su01.wav"]
    assert Counter(c.label for c in clips) == {label: 2 if label == "neutral" else 1 for label in NATIVE["savee"]}
    assert {(c.speaker, c.gender, c.intensity) for c in clips} == {("savee:DC", "male", None)}
    assert [map_label(c, "emotion4") for c in clips] == ["angry", None, None, "happy", "neutral", "neutral", "sad",
                                                         None]


def test_savee_both_layouts(tmp_path, caplog):
    wav(tmp_path / "AudioData" / "DC" / "a01.wav")
    wav(tmp_path / "AudioData" / "KL" / "sa15.wav")
    wav(tmp_path / "flat" / "JE_su02.wav")
    wav(tmp_path / "flat" / "JK_x01.wav")  # unknown code
    wav(tmp_path / "flat" / "ZZ_a01.wav")  # unknown speaker
    with caplog.at_level(logging.WARNING):
        clips = load_savee(tmp_path)
    assert sorted((c.speaker, c.label) for c in clips) == [
        ("savee:DC", "anger"), ("savee:JE", "surprise"), ("savee:KL", "sadness")]
    assert {c.gender for c in clips} == {"male"}
    assert "unknown emotion code 'x'" in caplog.text
    assert [map_label(c, "emotion6") for c in sorted(clips, key=lambda c: c.speaker)] == ["angry", None, "sad"]


# --- TurEV-DB (Canpolat, Ormanoglu & Zeyrek 2020; ../shared/data/README.md) -----------------------

def test_turev_db_real_files():
    clips = load_turev_db(require(TUREV_DB_MINI))
    assert len(clips) == 8 and {c.corpus for c in clips} == {"turev-db"}
    assert {(c.speaker, c.gender, c.intensity) for c in clips} == {("turev-db:1234", None, None)}
    assert Counter(c.label for c in clips) == {"angry": 2, "sad": 2, "happy": 2, "calm": 2}
    for c in clips:  # the folder of the release names the same emotion as the code
        assert c.path.parent.name.lower() == c.label
    assert scheme_labels("native", clips) == NATIVE["turev-db"] == ("angry", "sad", "happy", "calm")
    assert sorted(map_label(c, "emotion4") for c in clips) == sorted(["angry", "sad", "happy", "neutral"] * 2)
    assert {map_label(c, "emotion6") for c in clips if c.label == "calm"} == {"neutral"}
    assert {map_label(c, "valence") for c in clips if c.label == "calm"} == {"neutral"}
    # its native labels are a subset of RAVDESS's: a native RAVDESS model can score it
    assert [to_model_label(c, "native", tuple(RAVDESS8)) for c in clips] == [c.label for c in clips]


def test_turev_db_codes_and_folders(tmp_path, caplog):
    wav(tmp_path / "Angry" / "1157_kz_acik.wav")
    wav(tmp_path / "Calm" / "7895_sk_kemik_iki.wav")  # an underscore inside the word is kept in the word
    wav(tmp_path / "Sad" / "1157_mt_acik.wav")  # happy code in the Sad folder: skipped
    wav(tmp_path / "Sad" / "1157_xx_acik.wav")  # unknown code
    wav(tmp_path / "Sad" / "notes.wav")  # not a TurEV-DB name
    wav(tmp_path / "flat" / "1984_hl_pihti.wav")  # a flattened copy: the code decides
    with caplog.at_level(logging.WARNING):
        clips = load_corpus("turev-db", tmp_path)
    assert [(c.label, c.speaker) for c in clips] == [("angry", "turev-db:1157"), ("calm", "turev-db:7895"),
                                                     ("sad", "turev-db:1984")]
    assert "disagrees with its Angry/Sad/Happy/Calm folder" in caplog.text
    assert "unknown emotion code 'xx'" in caplog.text and "not <speaker>_<code>_<word>.wav" in caplog.text


# --- silent clips (CREMA-D's 1076_MTI_SAD_XX.wav is digital silence) ------------------------------

def test_is_silent_on_real_audio():
    # the quietest real clip of each subset is speech, far above the threshold
    for folder in (RAVDESS_MINI, CREMA_D_MINI, TESS_MINI, SAVEE_MINI, TUREV_DB_MINI):
        paths = sorted(p for p in require(folder).rglob("*") if p.suffix in (".wav", ".flac"))
        quietest = min((soundfile.read(p, dtype="float32")[0] for p in paths), key=lambda x: np.abs(x).max())
        assert not is_silent(quietest) and silence_reason(quietest) is None
    real, _ = soundfile.read(require(TUREV_DB_MINI) / "Calm" / "1234_sk_acik.wav", dtype="int16")
    assert not is_silent(real)  # integer PCM is read against its own full scale
    assert not is_silent(real.astype(np.float32) / 32768.0)
    # the same speech 70 dB down peaks below -60 dBFS: no usable speech left
    quiet = real.astype(np.float32) / 32768.0 * 10 ** (-70 / 20)
    assert is_silent(quiet) and "dBFS below -60 dBFS" in silence_reason(quiet)
    assert not is_silent(quiet, threshold_dbfs=-80.0)
    assert SILENCE_PEAK_DBFS == -60.0


def test_is_silent_on_the_silent_crema_d_clip(tmp_path):
    silent = CREMA_D_SILENT_CLIP
    if not silent.is_file():  # no full corpus (CI): the same thing made here, 2.57 s of 16-bit zeros
        silent = tmp_path / "1076_MTI_SAD_XX.wav"
        soundfile.write(silent, np.zeros(41108, dtype=np.int16), 16000, subtype="PCM_16")
    samples, rate = soundfile.read(silent, dtype="float32")
    assert rate == 16000 and samples.size == 41108
    assert is_silent(samples) and silence_reason(samples) == "digital silence (every sample is zero)"
    assert is_silent(np.zeros(0, dtype=np.float32))
    assert is_silent(np.zeros((100, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="expected finite audio samples"):
        is_silent(np.array([0.1, np.nan], dtype=np.float32))


# --- the demo's CREMA-D clips (edge/samples/crema-d): the fixed rule, lossless copies ------------

def test_demo_clips_follow_the_rule_and_match_the_release():
    folder = REPO / "edge" / "samples" / "crema-d"
    # ATTRIBUTION.md's rule: two actors x the first three sentences recorded once per emotion (level
    # XX; IEO, recorded at three intensities, is left out) x four emotions
    sentences = ("DFA", "IOM", "ITH")
    expected = [f"{actor}_{sentence}_{emotion}_XX.flac" for actor in ("1001", "1002") for sentence in sentences
                for emotion in ("ANG", "HAP", "NEU", "SAD")]
    assert sorted(p.name for p in folder.glob("*.flac")) == expected and len(expected) == 24
    all_codes = sorted({p.name.split("_")[1] for p in (require(CREMA_D_MINI) / "AudioWAV").glob("1001_*.wav")})
    assert sentences == tuple(code for code in all_codes if code != "IEO")[:3]
    attribution = (folder / "ATTRIBUTION.md").read_text()
    assert all(f"`{name}`" in attribution for name in expected)
    clips = load_crema_d(folder)
    assert [(c.speaker, c.label) for c in clips] == [(f"crema-d:{a}", e) for a in ("1001", "1002") for _ in sentences
                                                     for e in ("angry", "happy", "neutral", "sad")]
    assert {c.speaker for c in clips} == DEMO_SPEAKERS  # what the shipped model's training must leave out
    for name in expected:
        info = soundfile.info(folder / name)
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", 16000, 1)
        original = require(CREMA_D_MINI) / "AudioWAV" / name.replace(".flac", ".wav")
        assert np.array_equal(soundfile.read(folder / name, dtype="int16")[0],
                              soundfile.read(original, dtype="int16")[0])


# --- Dusha (github.com/salute-developers/golos dusha/README.md, data_processing/utils/aggregation.py) -

def test_dusha_raw_manifest_majority_vote(tmp_path):
    # crowd_train/raw_crowd_train.jsonl: one row per annotation, audio_path relative to the manifest
    root = tmp_path / "crowd_train"
    for name in ("a", "b", "c", "d"):
        wav(root / "wavs" / f"{name}.wav")
    rows = [
        {"hash_id": "a", "audio_path": "wavs/a.wav", "annotator_emo": "angry", "golden_emo": "", "source_id": "s1"},
        {"hash_id": "a", "audio_path": "wavs/a.wav", "annotator_emo": "angry", "golden_emo": "", "source_id": "s1"},
        {"hash_id": "a", "audio_path": "wavs/a.wav", "annotator_emo": "neutral", "golden_emo": "", "source_id": "s1"},
        {"hash_id": "b", "audio_path": "wavs/b.wav", "annotator_emo": "positive", "golden_emo": "", "source_id": "s2"},
        {"hash_id": "c", "audio_path": "wavs/c.wav", "annotator_emo": "sad", "golden_emo": "", "source_id": "s2"},
        {"hash_id": "c", "audio_path": "wavs/c.wav", "annotator_emo": "other", "golden_emo": "", "source_id": "s2"},
        {"hash_id": "d", "audio_path": "wavs/d.wav", "annotator_emo": "sad", "golden_emo": "sad", "source_id": "s3"},
        {"hash_id": "e", "audio_path": "wavs/e.wav", "annotator_emo": "bored", "golden_emo": "", "source_id": "s3"},
    ]
    (root / "raw_crowd_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    clips = load_dusha(root)
    assert [(c.path.name, c.label, c.speaker) for c in clips] == [("a.wav", "angry", "dusha:s1"),
                                                                  ("b.wav", "positive", "dusha:s2")]
    assert [map_label(c, "emotion4") for c in clips] == ["angry", "happy"]
    assert scheme_labels("emotion4", clips) == EMOTION4


def test_dusha_aggregated_tsv(tmp_path):
    # processed_dataset_090/aggregated_dataset/crowd_train.tsv: header says wav_path, paths ../../crowd_train/...
    wav(tmp_path / "crowd_train" / "wavs" / "x.wav")
    wav(tmp_path / "crowd_train" / "wavs" / "y.wav")
    agg = tmp_path / "processed_dataset_090" / "aggregated_dataset"
    agg.mkdir(parents=True)
    header = "hash_id\twav_path\tduration\temotion\tgolden_emo\tspeaker_text\tspeaker_emo\tsource_id\n"
    (agg / "crowd_train.tsv").write_text(header + "x\t../../crowd_train/wavs/x.wav\t2.1\tother\t\tt\tneutral\tq\n"
                                         "y\t../../crowd_train/wavs/y.wav\t2.1\tsad\t\tt\tsad\tq\n")
    clips = load_dusha(agg / "crowd_train.tsv")
    assert [(c.label, c.speaker) for c in clips] == [("other", "dusha:q"), ("sad", "dusha:q")]
    mapped, labels, excluded = apply_scheme(clips, "emotion4")
    assert [c.label for c in mapped] == ["sad"] and excluded == {"dusha:other": 1}


def test_dusha_bad_manifest(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"file": "x.wav"}) + "\n")
    with pytest.raises(CorpusError, match="expected columns audio_path"):
        load_dusha(tmp_path / "m.jsonl")
    with pytest.raises(CorpusError, match="no .jsonl or .tsv manifest"):
        (tmp_path / "empty").mkdir()
        load_dusha(tmp_path / "empty")


# --- generic CSV --------------------------------------------------------------------------------

def test_csv_corpus(tmp_path):
    wav(tmp_path / "audio" / "one.wav")
    wav(tmp_path / "audio" / "two.wav")
    (tmp_path / "list.csv").write_text("path,label,speaker\naudio/one.wav,angry,s1\naudio/two.wav,sad,s2\n"
                                       "audio/missing.wav,sad,s2\n")
    clips = load_corpus("csv", tmp_path / "list.csv")
    assert [(c.label, c.speaker) for c in clips] == [("angry", "csv:list:s1"), ("sad", "csv:list:s2")]
    (tmp_path / "bad.csv").write_text("file,emotion\n")
    with pytest.raises(CorpusError, match="expected a header with path,label"):
        load_csv(tmp_path / "bad.csv")


@pytest.mark.parametrize("kind", sorted(CORPORA))
def test_every_kind_reports_nothing_usable_in_one_line(tmp_path, kind):
    target = tmp_path / "empty.csv" if kind == "csv" else tmp_path
    if kind == "csv":
        target.write_text("path,label\n")
    with pytest.raises(CorpusError) as caught:
        load_corpus(kind, target)
    assert "\n" not in str(caught.value) and kind.split("-perceived")[0] in str(caught.value)


# --- label schemes ------------------------------------------------------------------------------

def clip(label, corpus="ravdess", gender=None):
    return Clip(path=None, label=label, speaker=f"{corpus}:x", corpus=corpus, gender=gender)


def test_schemes_map_the_shared_emotions():
    assert map_label(clip("calm"), "emotion6") == "neutral"
    assert map_label(clip("surprised"), "emotion6") is None
    assert map_label(clip("fear", "tess"), "emotion6") == "fearful"
    assert map_label(clip("happiness", "savee"), "emotion4") == "happy"
    assert map_label(clip("disgust"), "emotion4") is None
    assert map_label(clip("pleasant_surprise", "tess"), "valence") == "positive"
    assert map_label(clip("calm"), "valence") == "neutral"
    assert map_label(clip("anger", "savee"), "valence") == "negative"
    assert map_label(clip("angry", gender="female"), "gender_emotion") == "female_angry"
    assert map_label(clip("angry"), "gender_emotion") is None
    assert SCHEMES["emotion6"] == EMOTION6
    for kind in ("ravdess", "crema-d", "tess", "savee"):  # emotion6 is what these four share
        assert {map_label(clip(x, kind), "emotion6") for x in NATIVE[kind]} - {None} == set(EMOTION6)
    for kind in ("ravdess", "crema-d", "tess", "savee", "turev-db"):  # emotion4 is what all five share
        assert {map_label(clip(x, kind), "emotion4") for x in NATIVE[kind]} - {None} == set(EMOTION4)


def test_native_needs_one_label_set():
    assert scheme_labels("native", [clip("sad"), clip("angry")]) == tuple(RAVDESS8)
    assert scheme_labels("native", [clip("sad", "csv"), clip("angry", "csv")]) == ("angry", "sad")
    with pytest.raises(LabelSchemeError, match="different native labels: choose a common scheme"):
        scheme_labels("native", [clip("sad"), clip("fear", "tess")])
    with pytest.raises(LabelSchemeError, match="unknown label scheme"):
        scheme_labels("arousal", [clip("sad")])
