"""Label schemes and per-corpus label maps: the one place where emotion names are spelled.

Every corpus loader gives a clip its corpus's *native* label, in the corpus's own words
(TESS ``pleasant_surprise``, SAVEE ``happiness``, CREMA-D ``ANG`` spelled ``angry``, Dusha
``positive``, TurEV-DB ``sk`` (sakin) spelled ``calm``, EMOVO ``gio`` (gioia) spelled ``joy``, nEMO
``anger``, EmoSpeech ``calm``, CORAA-SER ``non-neutral``). :data:`CANONICAL` translates each
native label to one shared emotion vocabulary (RAVDESS's words, plus Dusha's ``positive`` and
``other``), and each scheme maps that vocabulary to its own labels:

``native``
    The corpus's own labels, unchanged; needs all corpora to share one native label set (or
    subsets of it, as RAVDESS song's six emotions of RAVDESS speech's eight).
``emotion6``
    neutral, happy, sad, angry, fearful, disgust: the emotions RAVDESS, CREMA-D, TESS and SAVEE
    share (EMOVO too; ASED and nEMO have no disgust). RAVDESS, TurEV-DB and EmoSpeech ``calm``
    merge into ``neutral``; ``surprised`` clips are excluded; Dusha ``positive`` is taken as
    ``happy`` and ``other`` is excluded.
``emotion4``
    neutral, happy, sad, angry: Dusha's set (``positive`` -> ``happy``, ``other`` excluded);
    calm -> neutral; fearful, disgust and surprised clips are excluded.
``valence``
    negative, neutral, positive. angry, sad, fearful, disgust -> negative; neutral, calm ->
    neutral; happy, surprised and Dusha's positive -> positive; Dusha's other is excluded.
    Surprise is ambiguous in valence (it can be pleasant or not); RAVDESS and SAVEE do not say
    which, TESS's is explicitly *pleasant* surprise. We follow TESS and call it positive.
``gender_emotion``
    ``female_<emotion6>`` then ``male_<emotion6>`` (12 labels), the emotion6 label prefixed with
    the speaker's gender from the corpus metadata (RAVDESS odd actor = male, TESS female, SAVEE
    male, CREMA-D from ``VideoDemographics.csv``). Clips of unknown gender are excluded.

The model's output order is the order of the scheme's tuple; the manifest records it (labels and
``label_scheme``), and the device reads labels from the manifest only.

Partial labels: a native label in :data:`PARTIAL_LABELS` names a *set* of emotions, not one (CORAA-SER's
``non-neutral``: its annotators said only that a clip is not neutral). Under every scheme it stands for
the scheme's classes other than the ones neutral and calm map to (:func:`allowed_labels`): emotion4
happy, sad, angry; emotion6 those and fearful, disgust; valence negative, positive. The clip keeps its
native label through :func:`apply_scheme`, and training gives it a partial-label loss: minus the log of
the summed probability of its allowed classes (``trainer.net.PartialLabelLoss``), evidence against
neutral and for nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

#: RAVDESS emotion code (third field of ``03-01-EE-II-SS-RR-AA``) -> label
#: (Livingstone & Russo 2018, PLoS ONE 13(5): e0196391).
RAVDESS_EMOTIONS: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}

#: CREMA-D emotion code (third field of ``1001_DFA_ANG_XX``) -> label (Cao et al. 2014, IEEE Trans.
#: Affective Computing 5(4); github.com/CheyneyComputerScience/CREMA-D README).
CREMA_D_EMOTIONS: dict[str, str] = {
    "NEU": "neutral",
    "HAP": "happy",
    "SAD": "sad",
    "ANG": "angry",
    "FEA": "fearful",
    "DIS": "disgust",
}

#: TESS folder/file suffix -> label (Dupuis & Pichora-Fuller 2010); file names end ``_ps`` for
#: pleasant surprise while the folders say ``pleasant_surprise``.
TESS_EMOTIONS: dict[str, str] = {
    "neutral": "neutral",
    "happy": "happy",
    "sad": "sad",
    "angry": "angry",
    "fear": "fear",
    "disgust": "disgust",
    "pleasant_surprise": "pleasant_surprise",
    "ps": "pleasant_surprise",
}

#: SAVEE file prefix -> label (Haq & Jackson 2009; kahlan.eps.surrey.ac.uk/savee: a anger,
#: d disgust, f fear, h happiness, n neutral, sa sadness, su surprise).
SAVEE_EMOTIONS: dict[str, str] = {
    "n": "neutral",
    "h": "happiness",
    "sa": "sadness",
    "a": "anger",
    "f": "fear",
    "d": "disgust",
    "su": "surprise",
}

#: TurEV-DB file-name code (second field of ``1234_kz_acik``) -> label (Canpolat, Ormanoglu & Zeyrek
#: 2020, SLTU-CCURL; github.com/Xeonen/TurEV-DB): kz kizgin, hl huzunlu, mt mutlu, sk sakin.
#: ``calm`` is RAVDESS's word, so emotion4/emotion6 merge it into neutral like RAVDESS's calm.
TUREV_DB_EMOTIONS: dict[str, str] = {
    "kz": "angry",
    "hl": "sad",
    "mt": "happy",
    "sk": "calm",
}

#: Dusha's aggregated ``emotion`` / per-annotator ``annotator_emo`` values (salute-developers/golos
#: ``dusha/README.md`` and ``dusha/data_processing/utils/aggregation.py``).
DUSHA_EMOTIONS: tuple[str, ...] = ("neutral", "angry", "positive", "sad", "other")

#: ASED file-name letter (``n1-01-01-01-01``) -> label: its folders' words, 01Neutral, 02Fearful, 03Happy,
#: 04Sad, 05Angry (Retta et al. 2023, ACM TALLIP; github.com/wgwangang/ASED_V1). RAVDESS's words already.
ASED_EMOTIONS: dict[str, str] = {
    "n": "neutral",
    "f": "fearful",
    "h": "happy",
    "s": "sad",
    "a": "angry",
}

#: nEMO's emotion field (``EB0_anger_1``), as spelled (Christop 2024, LREC-COLING; github.com/amu-cai/nEMO).
NEMO_EMOTIONS: tuple[str, ...] = ("neutral", "anger", "fear", "happiness", "sadness", "surprised")

#: EMOVO's Italian code (``dis-f1-b1``) -> the English word of its paper (Costantini et al. 2014, LREC):
#: disgusto, gioia (joy), neutrale, paura (fear), rabbia (anger), sorpresa, tristezza (sadness).
EMOVO_EMOTIONS: dict[str, str] = {
    "neu": "neutral",
    "gio": "joy",
    "tri": "sadness",
    "rab": "anger",
    "pau": "fear",
    "dis": "disgust",
    "sor": "surprise",
}

#: EmoSpeech's emotion field (``bacho-safe-calm-...``): RAVDESS's words; no sad class (Rakshak team 2019,
#: github.com/RakshakTeam/emospeech-dataset-v1). Its ``None`` (no label) is not a label.
EMOSPEECH_EMOTIONS: tuple[str, ...] = ("calm", "happy", "angry", "fearful")

#: Native label order per corpus kind (``csv`` has none: its labels are sorted).
NATIVE: dict[str, tuple[str, ...]] = {
    "ravdess": tuple(RAVDESS_EMOTIONS.values()),
    "ravdess-song": ("neutral", "calm", "happy", "sad", "angry", "fearful"),  # the song release has no disgust/surprise
    "crema-d": tuple(CREMA_D_EMOTIONS.values()),
    "tess": ("neutral", "happy", "sad", "angry", "fear", "disgust", "pleasant_surprise"),
    "savee": tuple(SAVEE_EMOTIONS.values()),
    "dusha": DUSHA_EMOTIONS,
    "turev-db": tuple(TUREV_DB_EMOTIONS.values()),
    "ased": tuple(ASED_EMOTIONS.values()),
    "nemo": NEMO_EMOTIONS,
    "emovo": tuple(EMOVO_EMOTIONS.values()),
    "emospeech": EMOSPEECH_EMOTIONS,
    "coraa-ser": ("neutral", "non-neutral"),  # CORAA-SER: annotators said only whether a segment is neutral
}

#: Native label -> the shared emotion vocabulary (RAVDESS's words + Dusha's positive/other).
#: Labels not listed (RAVDESS's, CREMA-D's, most of TESS's) are already in it.
CANONICAL: dict[str, str] = {
    "fear": "fearful",
    "pleasant_surprise": "surprised",
    "happiness": "happy",
    "sadness": "sad",
    "anger": "angry",
    "surprise": "surprised",
    "disgusted": "disgust",
    "fearful": "fearful",
    "joy": "happy",  # EMOVO's gioia
}

NEUTRAL = "neutral"
NON_NEUTRAL = "non-neutral"
"""A partial label (CORAA-SER's natural speech): evidence against ``neutral`` and for no emotion in
particular. No scheme maps it to a class; evaluation leaves it out of UA and the confusion matrix and
counts it in the natural-neutral figures (:func:`trainer.metrics.natural_neutral`)."""

EMOTION6 = ("neutral", "happy", "sad", "angry", "fearful", "disgust")
EMOTION4 = ("neutral", "happy", "sad", "angry")
VALENCE = ("negative", "neutral", "positive")
GENDERS = ("female", "male")

#: canonical emotion -> scheme label; emotions not listed are excluded from that scheme.
_SCHEME_MAPS: dict[str, dict[str, str]] = {
    "emotion6": {"neutral": "neutral", "calm": "neutral", "happy": "happy", "positive": "happy", "sad": "sad",
                 "angry": "angry", "fearful": "fearful", "disgust": "disgust"},
    "emotion4": {"neutral": "neutral", "calm": "neutral", "happy": "happy", "positive": "happy", "sad": "sad",
                 "angry": "angry"},
    "valence": {"angry": "negative", "sad": "negative", "fearful": "negative", "disgust": "negative",
                "neutral": "neutral", "calm": "neutral", "happy": "positive", "surprised": "positive",
                "positive": "positive"},
}

#: Label schemes: name -> labels in model output order (``native`` is RAVDESS's; see :func:`scheme_labels`).
SCHEMES: dict[str, tuple[str, ...]] = {
    "native": NATIVE["ravdess"],
    "emotion6": EMOTION6,
    "emotion4": EMOTION4,
    "valence": VALENCE,
    "gender_emotion": tuple(f"{g}_{e}" for g in GENDERS for e in EMOTION6),
}


class LabelSchemeError(ValueError):
    """An unknown scheme, or corpora that cannot share the requested one. One-line message."""


def canonical(label: str) -> str:
    """A native label in the shared emotion vocabulary (``pleasant_surprise`` -> ``surprised``)."""
    return CANONICAL.get(label, label)


def map_label(clip, scheme: str) -> str | None:
    """The ``scheme`` label of ``clip`` (a :class:`trainer.corpora.Clip`), or ``None`` if the
    scheme excludes it. ``native`` returns the clip's label unchanged. Raises
    :class:`LabelSchemeError` for an unknown scheme."""
    if scheme == "native":
        return clip.label
    if scheme not in SCHEMES:
        raise LabelSchemeError(f"unknown label scheme: expected one of {', '.join(SCHEMES)}, got {scheme!r}")
    emotion = canonical(clip.label)
    if scheme == "gender_emotion":
        base = _SCHEME_MAPS["emotion6"].get(emotion)
        gender = getattr(clip, "gender", None)
        return f"{gender}_{base}" if base is not None and gender in GENDERS else None
    return _SCHEME_MAPS[scheme].get(emotion)


def scheme_labels(scheme: str, clips: Iterable) -> tuple[str, ...]:
    """The ordered labels of ``scheme`` for ``clips`` (their corpora decide ``native``).

    ``native``: the corpus's full native order from :data:`NATIVE` (sorted labels for ``csv``); every corpus's native label
    set must be contained in the widest one (RAVDESS speech + song is fine), otherwise :class:`LabelSchemeError` asks for a common scheme. Other
    schemes: their fixed tuple from :data:`SCHEMES`.
    """
    if scheme != "native":
        if scheme not in SCHEMES:
            raise LabelSchemeError(f"unknown label scheme: expected one of {', '.join(SCHEMES)}, got {scheme!r}")
        return SCHEMES[scheme]
    per_corpus: dict[str, set[str]] = {}
    for clip in clips:
        if not is_partial(clip):  # a partial label is not a class of its own
            per_corpus.setdefault(clip.corpus, set()).add(clip.label)
    if not per_corpus:
        raise LabelSchemeError("no clips to take native labels from")
    orders = {}
    for corpus, seen in per_corpus.items():
        order = tuple(label for label in NATIVE.get(corpus, ()) if label not in PARTIAL_LABELS)
        orders[corpus] = order + tuple(sorted(seen - set(order))) if order else tuple(sorted(seen))
    widest = max(orders.values(), key=len)
    if not all(set(o) <= set(widest) for o in orders.values()):
        names = ", ".join(sorted(orders))
        raise LabelSchemeError(f"corpora {names} have different native labels: choose a common scheme with "
                               f"--labels {'|'.join(s for s in SCHEMES if s != 'native')}")
    return widest


def apply_scheme(clips: list, scheme: str) -> tuple[list, tuple[str, ...], dict[str, int]]:
    """``(mapped_clips, labels, excluded)``: clips relabelled to ``scheme`` (excluded ones dropped; a partial
    label, :data:`PARTIAL_LABELS`, is kept as it is when the scheme has classes for it),
    the scheme's ordered labels, and how many clips each native label lost, ``{"corpus:label": n}``.
    Raises :class:`LabelSchemeError` (see :func:`scheme_labels`) or if no clip is left."""
    import dataclasses

    labels = scheme_labels(scheme, clips)
    mapped, excluded = [], {}
    for clip in clips:
        if is_partial(clip):  # keeps its native label; training reads its classes from allowed_labels
            if allowed_labels(clip, scheme, labels) is not None:
                mapped.append(clip)
                continue
            label = None
        else:
            label = map_label(clip, scheme)
        if label is None:
            key = f"{clip.corpus}:{clip.label}"
            excluded[key] = excluded.get(key, 0) + 1
        else:
            mapped.append(clip if label == clip.label else dataclasses.replace(clip, label=label))
    if not mapped:
        raise LabelSchemeError(f"label scheme {scheme}: no clip left (excluded: {excluded})")
    return mapped, labels, excluded


#: Native labels that name a set of emotions (a partial label) -> the canonical emotions they exclude.
#: CORAA-SER (Brazilian Portuguese, natural speech) is labelled only neutral / non-neutral; its loader
#: gives the non-neutral clips (both of its ``non-neutral-female`` / ``-male`` folders) this label.
PARTIAL_LABELS: dict[str, frozenset[str]] = {NON_NEUTRAL: frozenset({"neutral", "calm"})}

#: The shared emotion vocabulary a partial label's allowed classes are drawn from (RAVDESS's words and
#: Dusha's ``positive``; Dusha's ``other`` is not an emotion anyone could be said to express).
VOCABULARY = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "positive")


def is_partial(clip) -> bool:
    """Whether ``clip``'s label names a set of emotions (:data:`PARTIAL_LABELS`), not one."""
    return clip.label in PARTIAL_LABELS


def allowed_labels(clip, scheme: str, model_labels: tuple[str, ...]) -> tuple[str, ...] | None:
    """The model labels ``clip`` may be, in model order; ``None`` if none.

    An ordinary clip: one label, its own if the model has it (a clip already relabelled by
    :func:`apply_scheme`), else :func:`to_model_label`'s. A partial label (:data:`PARTIAL_LABELS`): every
    model label that an emotion of :data:`VOCABULARY` outside the excluded ones maps to under ``scheme``,
    less those the excluded emotions map to (``non-neutral`` under emotion4: happy, sad, angry; under
    valence: negative, positive; under gender_emotion: the clip's gender's non-neutral labels, ``None``
    without a gender).
    """
    import dataclasses

    excluded = PARTIAL_LABELS.get(clip.label)
    if excluded is None:
        label = clip.label if clip.label in model_labels else to_model_label(clip, scheme, model_labels)
        return None if label is None else (label,)

    def as_label(emotion: str) -> str | None:
        return to_model_label(dataclasses.replace(clip, label=emotion), scheme, model_labels)

    ruled_out = {as_label(e) for e in excluded}
    possible = {as_label(e) for e in VOCABULARY if e not in excluded} - ruled_out - {None}
    allowed = tuple(label for label in model_labels if label in possible)
    return allowed or None


def to_model_label(clip, scheme: str, model_labels: tuple[str, ...]) -> str | None:
    """The label of ``clip`` in a model's label space, or ``None`` if the model cannot say it.

    ``scheme`` is the model's ``label_scheme`` (from its manifest). For ``native`` models the
    clip's own label is used if the model has it, else its canonical name (TESS
    ``pleasant_surprise`` -> ``surprised``, ``fear`` -> ``fearful``; SAVEE ``anger`` -> ``angry``),
    so a RAVDESS-native model can be scored on other corpora's shared emotions. Other schemes go
    through :func:`map_label`.
    """
    if scheme == "native":
        for label in (clip.label, canonical(clip.label)):
            if label in model_labels:
                return label
        return None
    label = map_label(clip, scheme)
    return label if label in model_labels else None


#: Positions of the emotion categories in Russell's circumplex as ``(arousal, valence)``, each in
#: [-1, 1]: the angles of Russell (1980), "A circumplex model of affect", J. Personality and Social
#: Psychology 39(6):1161-1178, Fig. 2 (pleased/happy ~ 10 deg, excited/surprised ~ 50 deg, angry
#: ~ 100 deg, afraid ~ 115 deg, distressed/disgust ~ 150 deg, sad ~ 210 deg, calm ~ 300 deg, with
#: valence the horizontal and arousal the vertical axis), on the unit circle for the full-intensity
#: expression; neutral at the origin. (Rounded to 0.1; the same quadrants as the circumplex
#: coordinates used for acted corpora by e.g. Schuller et al. 2009.)
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "calm": (-0.6, 0.4),
    "happy": (0.5, 0.8),
    "positive": (0.4, 0.8),
    "surprised": (0.7, 0.4),
    "angry": (0.8, -0.6),
    "fearful": (0.8, -0.5),
    "disgust": (0.4, -0.8),
    "sad": (-0.6, -0.7),
}

#: How far from neutral an expression sits, by the corpora's intensity labels: RAVDESS normal/strong,
#: CREMA-D LO/MD/HI (a scale, our choice: the corpora give levels, not coordinates); unknown 0.85.
INTENSITY_SCALE: dict[str | None, float] = {
    "low": 0.6, "medium": 0.8, "normal": 0.8, "high": 1.0, "strong": 1.0, None: 0.85,
}


def dimension_targets(clip) -> tuple[float, float] | None:
    """``(arousal, valence)`` target of a clip: its emotion's :data:`CIRCUMPLEX` position scaled by its
    intensity (:data:`INTENSITY_SCALE`, the clip's ``intensity`` attribute if it has one); None for an
    emotion without a position (Dusha's ``other``)."""
    position = CIRCUMPLEX.get(canonical(clip.label))
    if position is None:
        return None
    scale = INTENSITY_SCALE.get(getattr(clip, "intensity", None), INTENSITY_SCALE[None])
    return position[0] * scale, position[1] * scale
