"""The mood state: a smoothed arousal over utterances and a level ``calm`` / ``neutral`` / ``agitated``.

Arousal ranks excited over calm speech far better than the emotion labels generalise (issue 17:
an AUC near 0.8 on natural speech where 4-class UA is near 0.4), so automations get a slow,
stable summary of it: the retained ``{prefix}/{device_id}/mood`` (:mod:`edge.mqtt.topics`).

**Smoothing.** An exponential moving average over utterances, for irregularly spaced samples (the
EMA of an unevenly spaced time series whose time-dependent weight is ``exp(-dt / tau)``, as in
Eckner, "Algorithms for unevenly spaced time series: moving averages and other rolling
operators", with each value standing for the interval since the previous one): an utterance
with arousal ``a`` ending at ``t`` (seconds of audio) moves the average by
``alpha = 1 - exp(-dt / tau_s)`` of the way to ``a``, where ``dt`` is the time since the previous
utterance's end. The evidence of an utterance thus fades with time constant
``tau_s`` whatever the spacing: 30 s (default) weighs the last half-minute of talk; with an
utterance every 3 s, one utterance moves it by 10 %. The first utterance sets it (``alpha = 1``).

**Silence.** When no utterance ended for more than ``hold_s`` (a pause in a conversation is not
silence), the average relaxes toward ``rest_arousal`` with the same time constant:
``ema(t) = rest + (ema_u - rest) * exp(-(t - t_u - hold_s) / tau_s)``, computed from the last
utterance (``t_u``, ``ema_u``), so it does not depend on how often :meth:`MoodTracker.decay` is called.

**Level, with hysteresis.** ``calm`` is entered at ``ema <= calm_enter`` and left above
``calm_leave``; ``agitated`` is entered at ``ema >= agitated_enter`` and left below
``agitated_leave``; otherwise ``neutral``. A value inside a band (between an enter and its leave
threshold) never changes the level, so an average hovering at a threshold does not flap.
``rest_arousal`` lies inside ``neutral``, so silence ends in ``neutral``.

**Thresholds, from held-out data** (defaults of :class:`MoodParams`). The shipped model
(``emotion4-conv1d@de4950545d8c``) scored every clip of CREMA-D actors 1001 and 1002 (held out of
its training; ``../shared/data/crema-d-mini/AudioWAV``, 163 clips, in name order as one device hears
them: one :class:`edge.pipeline.Pipeline`, its adaptation carried, i.e. ``ser-edge replay
../shared/data/crema-d-mini/AudioWAV/*.wav --sink stdout``), arousal per utterance:

======================  ===========  ======  ======  ======  ======  ======
acted                   utterances   P10     P25     P50     P75     P90
======================  ===========  ======  ======  ======  ======  ======
low: neutral, sad       51           -0.383  -0.309  -0.141  0.078   0.133
high: angry, happy      56           0.262   0.318   0.484   0.581   0.695
======================  ===========  ======  ======  ======  ======  ======

(ROC AUC of arousal, high vs low: 0.959.) The rule, fixed before choosing: ``calm_enter`` = P75 of
low (three quarters of calm utterances are at or below it) = 0.08; ``agitated_enter`` = P25 of
high (three quarters of excited utterances are at or above it) = 0.32; ``rest_arousal`` = the
midpoint of the two medians, (-0.141 + 0.484) / 2 = 0.17; each leave threshold halfway between
its enter threshold and the rest: ``calm_leave`` = 0.12, ``agitated_leave`` = 0.24 (rounded to
0.01). Another model or another room may need others: they are ``[mood]`` in the config.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

MOOD_SCHEMA_VERSION = 1
"""Version of the mood payload (:func:`mood_payload`)."""

CALM, NEUTRAL, AGITATED = "calm", "neutral", "agitated"
LEVELS = (CALM, NEUTRAL, AGITATED)
"""The mood levels, from low to high arousal."""

MOOD_FIELDS = ("schema", "device_id", "time", "time_s", "arousal_ema", "level", "tau_s", "utterances")
"""Payload fields of the mood message, in the order they are serialised."""

MOOD_DECIMALS = 4
"""``arousal_ema`` is rounded to 4 decimals in the payload (as the events' arousal)."""

REPUBLISH_STEP = 0.02
"""While the average relaxes in silence, a new mood message goes out when it moved by at least this
since the last one (or the level changed), not on every tick."""


@dataclass(frozen=True)
class MoodParams:
    """The ``[mood]`` table: smoothing and level thresholds (arousal in [-1, 1], times in seconds of audio).

    The defaults are derived from held-out data in this module's docstring.
    :raises ValueError: ``"expected ..., got ..."`` unless ``tau_s > 0``, ``hold_s >= 0`` and
        ``-1 <= calm_enter < calm_leave < rest_arousal < agitated_leave < agitated_enter <= 1``.
    """

    enabled: bool = True
    """Publish the mood state (only when the model has an arousal output; silently off otherwise)."""
    tau_s: float = 30.0
    """Time constant of the average, seconds: an utterance's weight fades by 1/e in this time."""
    hold_s: float = 10.0
    """Seconds without an utterance after which the average starts relaxing toward ``rest_arousal``."""
    rest_arousal: float = 0.17
    calm_enter: float = 0.08
    calm_leave: float = 0.12
    agitated_leave: float = 0.24
    agitated_enter: float = 0.32

    def __post_init__(self) -> None:
        if not self.tau_s > 0:
            raise ValueError(f"tau_s: expected > 0, got {self.tau_s!r}")
        if not self.hold_s >= 0:
            raise ValueError(f"hold_s: expected >= 0, got {self.hold_s!r}")
        order = (self.calm_enter, self.calm_leave, self.rest_arousal, self.agitated_leave, self.agitated_enter)
        if not (-1.0 <= order[0] and all(a < b for a, b in itertools.pairwise(order)) and order[-1] <= 1.0):
            raise ValueError("expected -1 <= calm_enter < calm_leave < rest_arousal < agitated_leave < "
                             f"agitated_enter <= 1, got {' < '.join(f'{v:g}' for v in order)}")


def next_level(level: str, ema: float, params: MoodParams) -> str:
    """The level after the average becomes ``ema``, coming from ``level`` (hysteresis).

    :raises ValueError: if ``level`` is not one of :data:`LEVELS`.
    """
    if level not in LEVELS:
        raise ValueError(f"expected a level in {LEVELS}, got {level!r}")
    if ema >= params.agitated_enter or (level == AGITATED and ema >= params.agitated_leave):
        return AGITATED
    if ema <= params.calm_enter or (level == CALM and ema <= params.calm_leave):
        return CALM
    return NEUTRAL


@dataclass(frozen=True)
class MoodState:
    """The mood at ``time_s`` (seconds of audio since the stream start)."""

    arousal_ema: float
    """The smoothed arousal in [-1, 1] (``rest_arousal`` before the first utterance)."""
    level: str
    """One of :data:`LEVELS`."""
    utterances: int
    """Utterances averaged so far (since the start of the process)."""
    time_s: float


class MoodTracker:
    """The EMA, its silence decay and the level of the module docstring; driven by audio time.

    :meth:`update` for each utterance's arousal, :meth:`decay` on the daemon's ticks. Not thread-safe
    (the daemon calls it from its one loop).
    """

    def __init__(self, params: MoodParams | None = None) -> None:
        self.params = params or MoodParams()
        self.reset()

    def reset(self) -> None:
        """Back to the start: the average at ``rest_arousal``, ``neutral``, no utterance."""
        self._ema_u = self.params.rest_arousal  # the average right after the last utterance
        self._t_u: float | None = None  # end of the last utterance, seconds of audio
        self._level = NEUTRAL
        self._utterances = 0
        self.state = MoodState(self.params.rest_arousal, NEUTRAL, 0, 0.0)

    def value_at(self, time_s: float) -> float:
        """The average at ``time_s`` (>= the last utterance's end), the silence decay applied."""
        p = self.params
        if self._t_u is None:
            return self._ema_u
        silence_s = time_s - self._t_u - p.hold_s
        if silence_s <= 0:
            return self._ema_u
        return p.rest_arousal + (self._ema_u - p.rest_arousal) * math.exp(-silence_s / p.tau_s)

    def update(self, arousal: float, time_s: float) -> MoodState:
        """An utterance with ``arousal`` (in [-1, 1]) ended at ``time_s`` (seconds of audio).

        :raises ValueError: for an arousal outside [-1, 1] or NaN, or ``time_s`` before the previous utterance.
        """
        if not -1.0 <= arousal <= 1.0:
            raise ValueError(f"expected arousal in [-1, 1], got {arousal!r}")
        if self._t_u is not None and time_s < self._t_u:
            raise ValueError(f"expected time_s >= the previous utterance's {self._t_u}, got {time_s!r}")
        if self._t_u is None:
            alpha = 1.0
        else:
            alpha = 1.0 - math.exp(-(time_s - self._t_u) / self.params.tau_s)
        before = self.value_at(time_s)
        self._ema_u = before + alpha * (arousal - before)
        self._t_u = time_s
        self._utterances += 1
        return self._set(self._ema_u, time_s)

    def decay(self, time_s: float) -> MoodState:
        """The state at ``time_s`` with the silence decay applied (a tick); the level follows."""
        if self._t_u is not None and time_s < self._t_u:
            return self.state
        return self._set(self.value_at(time_s), time_s)

    def _set(self, ema: float, time_s: float) -> MoodState:
        self._level = next_level(self._level, ema, self.params)
        self.state = MoodState(ema, self._level, self._utterances, time_s)
        return self.state


def mood_payload(state: MoodState, device_id: str, tau_s: float, time: str) -> dict:
    """The mood message as a dict in :data:`MOOD_FIELDS` order::

        {"schema":1,"device_id":"kitchen-pi","time":"2026-11-21T14:03:07.120Z","time_s":815.9,
         "arousal_ema":0.4123,"level":"agitated","tau_s":30.0,"utterances":12}

    ``time``: wall-clock time the state was computed, RFC 3339 UTC with milliseconds; ``time_s``:
    the same moment in seconds of audio since the stream start (the events' ``end_s`` scale);
    ``arousal_ema``: the smoothed arousal in [-1, 1]; ``level``: calm, neutral or agitated;
    ``tau_s``: the time constant; ``utterances``: how many were averaged since the process started.
    """
    return {
        "schema": MOOD_SCHEMA_VERSION,
        "device_id": device_id,
        "time": time,
        "time_s": round(state.time_s, 3),
        "arousal_ema": round(state.arousal_ema, MOOD_DECIMALS),
        "level": state.level,
        "tau_s": tau_s,
        "utterances": state.utterances,
    }


def mood_json(state: MoodState, device_id: str, tau_s: float, time: str) -> str:
    """:func:`mood_payload` as compact JSON (no spaces), like the events."""
    return json.dumps(mood_payload(state, device_id, tau_s, time), separators=(",", ":"), allow_nan=False)
