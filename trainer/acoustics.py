"""Acoustic conditions: how a clip sounds across a room to a far-field device, for augmentation
(split ``"train"``) and for the far-field evaluation (split ``"eval"``). The one module that owns
rooms, noise and microphone effects; :func:`far_field` is its entry point.

Chain (one clip): dry speech -> room impulse response (talker to device) -> + noise at a drawn SNR
-> [train only, ``device_effects``: microphone band-limit, spectral tilt, gain, occasional clipping]
-> peak ceiling -> float32 in [-1, 1], same length and rate as the input.

Reproducible and split-disjoint draws
    Every draw comes from a numpy ``Generator`` seeded with ``zlib.crc32`` (never Python's
    ``hash()``, which is salted per process): per clip from ``"<split>:<key>"`` (``key`` e.g. the
    clip's file name), per bank room from ``"rir-bank:<split>"`` and the room's index. The
    ``train`` and ``eval`` splits therefore draw from disjoint streams: they use different banks of
    simulated rooms (built from different seeds) and different noise realisations, and the same
    clip gets a different room and noise in each split. The draws do not depend on the device-
    effects flag (they are made either way), so switching it does not move a clip's room or noise.

Rooms (pyroomacoustics ``ShoeBox``, Scheibler, Bezzam & Dokmanic 2018, ICASSP,
"Pyroomacoustics: a Python package for audio room simulation and array processing algorithms";
docs: pyroomacoustics.readthedocs.io, "Room Simulation")
    * RT60 uniform in :data:`RT60_RANGE_S` 0.2-0.9 s: the issue's range, from a furnished living
      room (~0.3-0.5 s) to a bare kitchen or hall; Google Home's room simulator drew reverberation
      times in a similar range (Kim et al. 2017, Interspeech, "Generation of large-scale simulated
      utterances in virtual rooms to train deep-neural networks for far-field speech recognition
      in Google Home").
    * Dimensions uniform in :data:`ROOM_LENGTH_RANGE_M` (3-8 m, both floor sides) and
      :data:`ROOM_HEIGHT_RANGE_M` (2.4-3.5 m): domestic rooms and small offices.
    * The device (microphone) at a height in :data:`MIC_HEIGHT_RANGE_M` (0.7-1.5 m: a table,
      counter or shelf), the talker's mouth in :data:`TALKER_HEIGHT_RANGE_M` (1.1-1.8 m: seated to
      standing), talker-device distance uniform in :data:`DISTANCE_RANGE_M` (0.5-4 m, the issue's
      range), both at least :data:`WALL_MARGIN_M` from every wall. A draw that does not fit
      (the distance too long for the room) is redrawn whole, so the smallest rooms host the nearer
      talkers.
    * Simulator: the hybrid image-source (order 3) + ray-tracing model with air absorption, the
      combination pyroomacoustics recommends for realistic late reverberation (its docs' "hybrid
      simulator"; its example ``room_shoebox_3d_rt.py`` shows the image-source model alone
      needs orders in the hundreds to reach the tail). Wall absorption from
      ``pra.inverse_sabine(rt60, dims)``; since Sabine's formula is only an approximation, the RIR's
      T30 (``pra.experimental.measure_rt60(decay_db=30)``, ISO 3382-1's 30 dB extrapolation) is
      measured and the design RT60 corrected up to :data:`RT60_CALIBRATION_STEPS` times until it is
      within :data:`RT60_TOLERANCE` (10 %) of the drawn value. The ray tracer's C++ random
      generator is seeded per room (``pra.random.seed``), so a bank is reproducible.
    * Level: the RIR is scaled so that its direct path has gain :data:`REFERENCE_DISTANCE_M` / r
      (1 at 1 m; the inverse-distance law: a talker at 4 m arrives 12 dB lower than at 1 m), the
      direct path's gain being measured on the same geometry simulated without reflections
      (pyroomacoustics 0.10 gives it 1/r); every reflection keeps its physical level relative to
      it, so the direct-to-reverberant ratio and the level drop with distance are both physical. The corpora were recorded close to the talker, so
      the dry clip stands for the talker heard at 1 m. The RIR starts half a fractional-delay filter
      (40 samples, 2.5 ms) before the direct path: the propagation delay is removed and the output
      stays aligned with the input. Its length is trimmed to the input's.
    * Banks: :data:`RIR_BANK_SIZE` (64) rooms per split, simulated once per process and cached
      (:func:`rir_bank`, ``functools.lru_cache``; optionally on disk as ``.npz`` under
      ``cache/rirs/``, :data:`DEFAULT_RIR_CACHE_DIR`). A bank of ``n`` rooms is the first ``n`` of
      any larger bank of the same split (each room has its own seed). Each clip draws one room.

Noise (added to the reverberant speech)
    * SNR uniform in :data:`SNR_RANGE_DB` (0-20 dB, the issue's range), relative to the reverberant
      speech's *active* power: the mean power of its 20 ms frames within :data:`ACTIVE_RANGE_DB`
      (30 dB) of the loudest frame, a simplified ITU-T P.56 active speech level, so the leading and
      trailing silence of acted-corpus clips does not count as speech. Noise power is its mean over
      the whole clip.
    * Kind drawn uniformly from pink (1/f power), brown (1/f^2) and babble; without ``babble``
      signals from pink and brown only. Coloured noise is shaped in the frequency domain and flat
      below :data:`NOISE_FLOOR_HZ` (20 Hz), so its power sits in the audio band.
    * Babble (the other talkers of a room): the sum of :data:`BABBLE_TALKERS` (3-5) of the given
      signals, other speakers of the same corpus (the caller chooses them; the clip's own speaker
      must not be among them), each at equal active power from a random offset (looped when shorter
      than the clip), convolved with a second room of the bank (they talk in the room too).

Device effects (split ``"train"`` only, ``device_effects=True``; never in ``"eval"``)
    * Band-limiting with probability :data:`BANDLIMIT_PROBABILITY` (0.5): 4th-order Butterworth
      high-pass at :data:`HIGHPASS_RANGE_HZ` (100-300 Hz: the low cut of small loudspeaker-device
      microphones and of telephone-band channels, ITU-T G.712's 300 Hz) and low-pass at
      :data:`LOWPASS_RANGE_HZ` (3.4-8 kHz: from narrowband telephony's 3.4 kHz to the full 16 kHz
      wideband; none when the draw is within 5 % of Nyquist). ``scipy.signal.butter`` +
      ``sosfilt``, causal like a device's filters.
    * Spectral tilt with probability :data:`TILT_PROBABILITY` (0.5): a gain of
      :data:`TILT_RANGE_DB_PER_OCTAVE` (+-1.5 dB per octave, pivoting at 1 kHz; +-9 dB across
      the 125 Hz-8 kHz band), the spread of MEMS and electret microphone responses in small
      enclosures.
    * Gain uniform in :data:`GAIN_RANGE_DB` (+-10 dB): microphone sensitivity and talker effort.
    * Clipping with probability :data:`CLIP_PROBABILITY` (0.1) at a level of
      :data:`CLIP_LEVEL_RANGE` (0.3-0.8) times the peak: an overloaded input stage. About 550
      CREMA-D clips touch full scale, so clipping exists in the training corpora too; the model
      must not take it for an emotion.
    Ko et al. 2017 (ICASSP, "A study on data augmentation of reverberant speech for robust speech
    recognition") found simulated RIRs with additive noise nearly as useful as real RIRs for
    far-field robustness, which is why this module simulates rather than records rooms.

Peak ceiling: if the result would exceed :data:`PEAK_CEILING_DBFS` (-1 dBFS), it is scaled down as a
whole (a device's gain staging does not clip a talker across a room); hard clipping happens only
as the drawn train-split device effect. The output is then clipped to [-1, 1] (a no-op but for
rounding).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
SPLITS = ("train", "eval")

# --- rooms ------------------------------------------------------------------------------------
RIR_BANK_SIZE = 64
RT60_RANGE_S = (0.2, 0.9)
ROOM_LENGTH_RANGE_M = (3.0, 8.0)
ROOM_HEIGHT_RANGE_M = (2.4, 3.5)
MIC_HEIGHT_RANGE_M = (0.7, 1.5)
TALKER_HEIGHT_RANGE_M = (1.1, 1.8)
DISTANCE_RANGE_M = (0.5, 4.0)
WALL_MARGIN_M = 0.3
REFERENCE_DISTANCE_M = 1.0
#: Image-source order of the hybrid simulator (pyroomacoustics' recommended hybrid uses 3).
ISM_ORDER = 3
RT60_TOLERANCE = 0.10
RT60_CALIBRATION_STEPS = 3
#: The T30 measurement of ISO 3382-1: the decay from -5 to -35 dB, extrapolated to 60 dB.
RT60_DECAY_DB = 30
DEFAULT_RIR_CACHE_DIR = Path("cache/rirs")

# --- noise ------------------------------------------------------------------------------------
SNR_RANGE_DB = (0.0, 20.0)
NOISE_KINDS = ("pink", "brown", "babble")
BABBLE_TALKERS = (3, 5)
NOISE_FLOOR_HZ = 20.0
ACTIVE_FRAME_MS = 20.0
ACTIVE_RANGE_DB = 30.0

# --- device effects (train only) ----------------------------------------------------------------
BANDLIMIT_PROBABILITY = 0.5
HIGHPASS_RANGE_HZ = (100.0, 300.0)
LOWPASS_RANGE_HZ = (3400.0, 8000.0)
FILTER_ORDER = 4
TILT_PROBABILITY = 0.5
TILT_RANGE_DB_PER_OCTAVE = (-1.5, 1.5)
TILT_PIVOT_HZ = 1000.0
GAIN_RANGE_DB = (-10.0, 10.0)
CLIP_PROBABILITY = 0.1
CLIP_LEVEL_RANGE = (0.3, 0.8)

PEAK_CEILING_DBFS = -1.0


# --- seeds ------------------------------------------------------------------------------------

def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    return split


def clip_seed(split: str, key: str) -> int:
    """The seed of one clip's draws: ``zlib.crc32`` of ``"<split>:<key>"`` (stable across processes)."""
    return zlib.crc32(f"{_check_split(split)}:{key}".encode())


def bank_seed(split: str) -> int:
    """The seed of a split's room bank: ``zlib.crc32`` of ``"rir-bank:<split>"``; room ``i`` uses ``[seed, i]``."""
    return zlib.crc32(f"rir-bank:{_check_split(split)}".encode())


def fingerprint() -> str:
    """A short hash of this module's source and the pyroomacoustics version: put it in any cache key
    of augmented or far-field features, so a changed condition is never served from a stale cache."""
    import pyroomacoustics

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(pyroomacoustics.__version__.encode())
    return digest.hexdigest()[:16]


# --- rooms ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoomImpulse:
    """One simulated room of a bank. ``rir``: float32 ``(n,)`` at ``sample_rate_hz``, direct path
    first (at sample 40) with gain ``REFERENCE_DISTANCE_M / distance_m``. ``rt60_s``: the drawn
    reverberation time; ``rt60_measured_s``: the RIR's measured T30 (s). Positions in metres,
    ``(x, y, z)`` from a corner of the room ``room_m`` (length, width, height)."""

    rir: np.ndarray
    sample_rate_hz: int
    rt60_s: float
    rt60_measured_s: float
    room_m: tuple[float, float, float]
    mic_m: tuple[float, float, float]
    talker_m: tuple[float, float, float]
    distance_m: float
    absorption: float


def _draw_geometry(rng: np.random.Generator) -> tuple[tuple, tuple, tuple, float]:
    """``(room, mic, talker, distance)`` by rejection sampling (see the module docstring)."""
    for _ in range(10_000):
        room = (rng.uniform(*ROOM_LENGTH_RANGE_M), rng.uniform(*ROOM_LENGTH_RANGE_M), rng.uniform(*ROOM_HEIGHT_RANGE_M))
        mic = (rng.uniform(WALL_MARGIN_M, room[0] - WALL_MARGIN_M), rng.uniform(WALL_MARGIN_M, room[1] - WALL_MARGIN_M),
               rng.uniform(*MIC_HEIGHT_RANGE_M))
        distance = rng.uniform(*DISTANCE_RANGE_M)
        talker_z = rng.uniform(*TALKER_HEIGHT_RANGE_M)
        azimuth = rng.uniform(0.0, 2.0 * math.pi)
        dz = talker_z - mic[2]
        if distance <= abs(dz):
            continue
        horizontal = math.sqrt(distance**2 - dz**2)
        talker = (mic[0] + horizontal * math.cos(azimuth), mic[1] + horizontal * math.sin(azimuth), talker_z)
        if all(WALL_MARGIN_M <= talker[k] <= room[k] - WALL_MARGIN_M for k in range(3)):
            return room, mic, talker, distance
    raise RuntimeError("no room geometry fits the ranges (check ROOM_*_RANGE_M and DISTANCE_RANGE_M)")


def _simulate(room_m: tuple, mic_m: tuple, talker_m: tuple, rt60_design_s: float | None, sample_rate_hz: int,
              libroom_seed: int) -> tuple[np.ndarray, float]:
    """Raw pyroomacoustics RIR (hybrid ISM + ray tracing) and the wall absorption used; with
    ``rt60_design_s=None`` the direct path alone (image-source order 0, no ray tracing)."""
    import pyroomacoustics as pra

    pra.random.seed(numpy=libroom_seed, libroom=libroom_seed)
    if rt60_design_s is None:
        absorption = 1.0
        room = pra.ShoeBox(list(room_m), fs=sample_rate_hz, max_order=0, air_absorption=True)
    else:
        absorption, _ = pra.inverse_sabine(rt60_design_s, list(room_m))
        room = pra.ShoeBox(list(room_m), fs=sample_rate_hz, materials=pra.Material(absorption), max_order=ISM_ORDER,
                           ray_tracing=True, air_absorption=True)
    room.add_source(list(talker_m))
    room.add_microphone(list(mic_m))
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float64), float(absorption)


def measure_rt60(rir: np.ndarray, sample_rate_hz: int) -> float:
    """T30 of ``rir`` in seconds (``pyroomacoustics.experimental.measure_rt60`` with ``decay_db=30``)."""
    import pyroomacoustics as pra

    return float(pra.experimental.measure_rt60(rir, fs=sample_rate_hz, decay_db=RT60_DECAY_DB))


def simulate_room(split: str, index: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> RoomImpulse:
    """Room ``index`` of ``split``'s bank (seeded by ``[bank_seed(split), index]``); deterministic.
    Takes about 0.2-0.6 s (more when the RT60 needs correcting). See the module docstring."""
    import pyroomacoustics as pra

    rng = np.random.default_rng([bank_seed(split), index])
    rt60 = float(rng.uniform(*RT60_RANGE_S))
    room_m, mic_m, talker_m, distance = _draw_geometry(rng)
    libroom_seed = int(rng.integers(2**63))
    design, best = rt60, None
    for _ in range(1 + RT60_CALIBRATION_STEPS):
        try:
            raw, absorption = _simulate(room_m, mic_m, talker_m, design, sample_rate_hz, libroom_seed)
        except ValueError:  # inverse_sabine: the room cannot be that dry; keep the closest so far
            break
        measured = measure_rt60(raw, sample_rate_hz)
        if best is None or abs(measured - rt60) < abs(best[1] - rt60):
            best = (raw, measured, absorption)
        if abs(measured / rt60 - 1.0) <= RT60_TOLERANCE:
            break
        design *= rt60 / measured
    raw, measured, absorption = best
    half_filter = pra.constants.get("frac_delay_length") // 2
    direct = round(distance / pra.constants.get("c") * sample_rate_hz) + half_filter
    onset = max(0, direct - half_filter)
    # The direct path's own gain, from the same geometry simulated without reflections: the sum of
    # its fractional-delay filter (unit DC gain) is its amplitude, whatever pyroomacoustics' convention.
    alone, _ = _simulate(room_m, mic_m, talker_m, None, sample_rate_hz, libroom_seed)
    direct_gain = float(np.sum(alone[onset: direct + half_filter + 1]))
    rir = raw[onset:] * (REFERENCE_DISTANCE_M / distance / direct_gain)
    energy = np.cumsum(rir[::-1] ** 2)[::-1]  # trim the tail below -100 dB of the total energy
    end = int(np.searchsorted(-energy, -energy[0] * 1e-10)) if energy.size else 0
    rir = rir[: max(end, direct - onset + half_filter + 1)]
    return RoomImpulse(rir=rir.astype(np.float32), sample_rate_hz=sample_rate_hz, rt60_s=rt60,
                       rt60_measured_s=measured, room_m=tuple(room_m), mic_m=tuple(mic_m), talker_m=tuple(talker_m),
                       distance_m=float(distance), absorption=absorption)


def _bank_file(cache_dir: Path, split: str, sample_rate_hz: int, size: int) -> Path:
    return Path(cache_dir) / f"rirs-{split}-{sample_rate_hz}hz-{size}-{fingerprint()}.npz"


def _save_bank(path: Path, bank: tuple[RoomImpulse, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(r.rir) for r in bank])
    padded = np.zeros((len(bank), int(lengths.max())), dtype=np.float32)
    for i, room in enumerate(bank):
        padded[i, : len(room.rir)] = room.rir
    meta = np.array([[r.rt60_s, r.rt60_measured_s, *r.room_m, *r.mic_m, *r.talker_m, r.distance_m, r.absorption]
                     for r in bank])
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # two processes building one bank never share it
    np.savez(tmp, rirs=padded, lengths=lengths, meta=meta, sample_rate_hz=bank[0].sample_rate_hz)
    tmp.replace(path)


def _load_bank(path: Path) -> tuple[RoomImpulse, ...]:
    with np.load(path) as data:
        rate = int(data["sample_rate_hz"])
        return tuple(
            RoomImpulse(rir=data["rirs"][i, :n].copy(), sample_rate_hz=rate, rt60_s=float(m[0]),
                        rt60_measured_s=float(m[1]), room_m=tuple(map(float, m[2:5])), mic_m=tuple(map(float, m[5:8])),
                        talker_m=tuple(map(float, m[8:11])), distance_m=float(m[11]), absorption=float(m[12]))
            for i, (n, m) in enumerate(zip(data["lengths"], data["meta"], strict=True)))


@functools.cache  # functools.lru_cache without a size limit: one bank per (split, rate, size, dir)
def _cached_bank(split: str, sample_rate_hz: int, size: int, cache_dir: str | None) -> tuple[RoomImpulse, ...]:
    path = _bank_file(Path(cache_dir), split, sample_rate_hz, size) if cache_dir else None
    if path is not None and path.is_file():
        try:
            return _load_bank(path)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("RIR bank %s unreadable (%s): simulating it again", path, exc)
    start = time.perf_counter()
    bank = tuple(simulate_room(split, i, sample_rate_hz) for i in range(size))
    logger.info("simulated %d %s rooms at %d Hz in %.1f s", size, split, sample_rate_hz, time.perf_counter() - start)
    if path is not None:
        _save_bank(path, bank)
    return bank


def rir_bank(split: str, sample_rate_hz: int = SAMPLE_RATE_HZ, size: int = RIR_BANK_SIZE,
             cache_dir: str | Path | None = None) -> tuple[RoomImpulse, ...]:
    """The ``size`` simulated rooms of ``split`` (``"train"`` or ``"eval"``) at ``sample_rate_hz``.

    Simulated once per process (``functools.lru_cache``); with ``cache_dir`` (e.g.
    :data:`DEFAULT_RIR_CACHE_DIR`) also stored there as ``.npz``, keyed by split, rate, size and
    :func:`fingerprint`, and read back by later processes. Raises :class:`ValueError` for an
    unknown split or a size below 2 (babble needs a second room).
    """
    _check_split(split)
    if size < 2:
        raise ValueError(f"size: expected at least 2 rooms, got {size}")
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz: expected a positive rate, got {sample_rate_hz}")
    return _cached_bank(split, int(sample_rate_hz), int(size), str(cache_dir) if cache_dir is not None else None)


# --- noise ------------------------------------------------------------------------------------

def colored_noise(n: int, exponent: float, rng: np.random.Generator, sample_rate_hz: int = SAMPLE_RATE_HZ,
                  floor_hz: float = NOISE_FLOOR_HZ) -> np.ndarray:
    """``n`` samples of noise whose power falls as ``1/f**exponent`` (0 white, 1 pink, 2 brown), flat
    below ``floor_hz``, DC removed: white Gaussian noise shaped in the frequency domain. float64
    ``(n,)``, unit RMS (all zeros for ``n`` < 2)."""
    if n < 2:
        return np.zeros(max(n, 0))
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    spectrum[0] = 0.0
    spectrum[1:] /= np.maximum(freqs[1:], floor_hz) ** (exponent / 2.0)
    noise = np.fft.irfft(spectrum, n)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def pink_noise(n: int, rng: np.random.Generator, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Pink (1/f power) noise, unit RMS, float64 ``(n,)`` (:func:`colored_noise`; a copy of
    ``trainer.featurize.pink_noise`` with the 20 Hz floor added)."""
    return colored_noise(n, 1.0, rng, sample_rate_hz)


def brown_noise(n: int, rng: np.random.Generator, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Brown (1/f^2 power) noise, unit RMS, float64 ``(n,)`` (:func:`colored_noise`)."""
    return colored_noise(n, 2.0, rng, sample_rate_hz)


def active_power(samples: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> float:
    """Mean power of the :data:`ACTIVE_FRAME_MS` frames of ``samples`` within :data:`ACTIVE_RANGE_DB`
    of the loudest one (a simplified ITU-T P.56 active level); the plain mean power for clips
    shorter than a frame; 0.0 for silence. ``samples``: 1-D, full scale 1.0."""
    x = np.asarray(samples, dtype=np.float64)
    frame = max(1, round(ACTIVE_FRAME_MS * sample_rate_hz / 1000.0))
    n = len(x) // frame
    if n == 0:
        return float(np.mean(x**2)) if x.size else 0.0
    power = np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)
    loudest = float(power.max())
    if loudest <= 0.0:
        return 0.0
    return float(np.mean(power[power >= loudest * 10.0 ** (-ACTIVE_RANGE_DB / 10.0)]))


# --- one clip's draw --------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceDraw:
    """Train-split microphone effects of one clip; ``None`` fields are effects not drawn."""

    highpass_hz: float | None
    lowpass_hz: float | None
    tilt_db_per_octave: float | None
    gain_db: float
    clip_level: float | None  # fraction of the peak where the signal is clipped


@dataclass(frozen=True)
class Condition:
    """The acoustic condition drawn for one clip (:func:`draw_condition`). ``room``: index into the
    split's bank; ``babble_room``: the second room for babble; ``babble``: indices into the babble
    signals with their start offsets as fractions of each signal; ``device``: ``None`` in eval or
    without device effects."""

    split: str
    key: str
    room: int
    noise: str
    snr_db: float
    noise_seed: int
    babble_room: int
    babble: tuple[tuple[int, float], ...]
    device: DeviceDraw | None

    def describe(self) -> str:
        text = f"{self.split} room {self.room}, {self.noise} noise at {self.snr_db:.1f} dB SNR"
        if self.babble:
            text += f" ({len(self.babble)} talkers)"
        if self.device is not None:
            d = self.device
            text += f", gain {d.gain_db:+.1f} dB"
            text += f", band {d.highpass_hz:.0f}-{d.lowpass_hz or 0:.0f} Hz" if d.highpass_hz else ""
            text += f", tilt {d.tilt_db_per_octave:+.2f} dB/oct" if d.tilt_db_per_octave is not None else ""
            text += f", clipped at {d.clip_level:.2f} of peak" if d.clip_level is not None else ""
        return text


def draw_condition(split: str, key: str, n_babble: int = 0, bank_size: int = RIR_BANK_SIZE,
                   device_effects: bool = True, sample_rate_hz: int = SAMPLE_RATE_HZ) -> Condition:
    """The condition of clip ``key`` in ``split``, deterministic (seed :func:`clip_seed`).
    ``n_babble``: how many babble signals are on offer (0: pink/brown only). ``device_effects``
    applies to the train split only. Every draw is made whatever the flags, in a fixed order, so
    the room and noise of a clip do not depend on them."""
    rng = np.random.default_rng(clip_seed(split, key))
    room = int(rng.integers(bank_size))
    babble_room = (room + 1 + int(rng.integers(bank_size - 1))) % bank_size
    kind_draw = float(rng.uniform())
    snr_db = float(rng.uniform(*SNR_RANGE_DB))
    noise_seed = int(rng.integers(2**63))
    talkers = int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))
    order = rng.permutation(max(n_babble, 1))
    offsets = rng.uniform(size=BABBLE_TALKERS[1])
    device = DeviceDraw(
        highpass_hz=float(rng.uniform(*HIGHPASS_RANGE_HZ)), lowpass_hz=float(rng.uniform(*LOWPASS_RANGE_HZ)),
        tilt_db_per_octave=float(rng.uniform(*TILT_RANGE_DB_PER_OCTAVE)), gain_db=float(rng.uniform(*GAIN_RANGE_DB)),
        clip_level=float(rng.uniform(*CLIP_LEVEL_RANGE)))
    bandlimit, tilt, clip = rng.uniform(size=3)
    kinds = NOISE_KINDS if n_babble > 0 else tuple(k for k in NOISE_KINDS if k != "babble")
    noise = kinds[min(int(kind_draw * len(kinds)), len(kinds) - 1)]
    babble = ()
    if noise == "babble":
        chosen = [int(i) for i in order[: min(talkers, n_babble)]]
        babble = tuple((i, float(offsets[k])) for k, i in enumerate(chosen))
    if split == "train" and device_effects:
        nyquist = sample_rate_hz / 2.0
        device = DeviceDraw(
            highpass_hz=device.highpass_hz if bandlimit < BANDLIMIT_PROBABILITY else None,
            lowpass_hz=device.lowpass_hz if bandlimit < BANDLIMIT_PROBABILITY and device.lowpass_hz < 0.95 * nyquist
            else None,
            tilt_db_per_octave=device.tilt_db_per_octave if tilt < TILT_PROBABILITY else None,
            gain_db=device.gain_db,
            clip_level=device.clip_level if clip < CLIP_PROBABILITY else None)
    else:
        device = None
    return Condition(split=split, key=key, room=room, noise=noise, snr_db=snr_db, noise_seed=noise_seed,
                     babble_room=babble_room, babble=babble, device=device)


# --- rendering --------------------------------------------------------------------------------

@dataclass(frozen=True)
class FarField:
    """:func:`render`'s result. ``output``: the device's signal (float32, as :func:`far_field`).
    ``speech``: the reverberant speech and ``noise``: the noise at the drawn SNR, both float64 and
    before the device effects and the peak ceiling (``speech + noise`` is what reaches the device)."""

    output: np.ndarray
    speech: np.ndarray
    noise: np.ndarray
    condition: Condition
    room: RoomImpulse


def _convolve(samples: np.ndarray, rir: np.ndarray) -> np.ndarray:
    return signal.fftconvolve(samples, rir.astype(np.float64))[: len(samples)]


def _babble(condition: Condition, babble: list[np.ndarray], n: int, sample_rate_hz: int) -> np.ndarray:
    total = np.zeros(n)
    for index, offset in condition.babble:
        talker = np.asarray(babble[index], dtype=np.float64)
        power = active_power(talker, sample_rate_hz)
        if talker.size == 0 or power <= 0.0:
            continue
        start = int(offset * len(talker))
        reps = -(-(start + n) // len(talker))
        total += np.tile(talker, reps)[start: start + n] / math.sqrt(power)
    return total


def _tilt(samples: np.ndarray, db_per_octave: float, sample_rate_hz: int) -> np.ndarray:
    spectrum = np.fft.rfft(samples)
    freqs = np.clip(np.fft.rfftfreq(len(samples), 1.0 / sample_rate_hz), 50.0, None)
    spectrum *= 10.0 ** (db_per_octave * np.log2(freqs / TILT_PIVOT_HZ) / 20.0)
    return np.fft.irfft(spectrum, len(samples))


def _device(samples: np.ndarray, device: DeviceDraw, sample_rate_hz: int) -> np.ndarray:
    y = samples
    if device.highpass_hz is not None:
        y = signal.sosfilt(signal.butter(FILTER_ORDER, device.highpass_hz, "highpass", fs=sample_rate_hz,
                                         output="sos"), y)
    if device.lowpass_hz is not None:
        y = signal.sosfilt(signal.butter(FILTER_ORDER, device.lowpass_hz, "lowpass", fs=sample_rate_hz,
                                         output="sos"), y)
    if device.tilt_db_per_octave is not None and len(y) > 1:
        y = _tilt(y, device.tilt_db_per_octave, sample_rate_hz)
    y = y * 10.0 ** (device.gain_db / 20.0)
    y = _ceiling(y)
    if device.clip_level is not None:
        level = device.clip_level * float(np.max(np.abs(y), initial=0.0))
        y = np.clip(y, -level, level)
    return y


def _ceiling(samples: np.ndarray) -> np.ndarray:
    ceiling = 10.0 ** (PEAK_CEILING_DBFS / 20.0)
    peak = float(np.max(np.abs(samples), initial=0.0))
    return samples * (ceiling / peak) if peak > ceiling else samples


def _check_samples(samples: np.ndarray, what: str = "samples") -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what}: expected 1-D float audio, got shape {x.shape} dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: expected finite samples, got NaN or infinity")
    return x.astype(np.float64)


def render(samples: np.ndarray, sample_rate_hz: int, condition: Condition, babble: list[np.ndarray] | None = None,
           bank_size: int = RIR_BANK_SIZE, rir_cache_dir: str | Path | None = None) -> FarField:
    """``samples`` under ``condition`` (see :func:`far_field`, which draws it); the parts too."""
    x = _check_samples(samples)
    bank = rir_bank(condition.split, sample_rate_hz, bank_size, rir_cache_dir)
    room = bank[condition.room]
    speech = _convolve(x, room.rir)
    n = len(speech)
    rng = np.random.default_rng(condition.noise_seed)
    if condition.noise == "babble":
        noise = _convolve(_babble(condition, babble or [], n, sample_rate_hz), bank[condition.babble_room].rir)
    elif condition.noise == "brown":
        noise = brown_noise(n, rng, sample_rate_hz)
    else:
        noise = pink_noise(n, rng, sample_rate_hz)
    speech_power, noise_power = active_power(speech, sample_rate_hz), float(np.mean(noise**2)) if n else 0.0
    if speech_power > 0.0 and noise_power > 0.0:
        noise = noise * math.sqrt(speech_power / 10.0 ** (condition.snr_db / 10.0) / noise_power)
    else:
        noise = np.zeros(n)
    mixed = speech + noise
    if condition.device is not None:
        mixed = _device(mixed, condition.device, sample_rate_hz)
    output = np.clip(_ceiling(mixed), -1.0, 1.0).astype(np.float32)
    return FarField(output=output, speech=speech, noise=noise, condition=condition, room=room)


def far_field(samples: np.ndarray, sample_rate_hz: int, split: str, key: str,
              babble: list[np.ndarray] | None = None, device_effects: bool = True, bank_size: int = RIR_BANK_SIZE,
              rir_cache_dir: str | Path | None = None) -> np.ndarray:
    """``samples`` as a far-field device hears them in a simulated room with noise.

    ``samples``: float 1-D, full scale [-1, 1], at ``sample_rate_hz`` (the bank is simulated at that
    rate; :data:`SAMPLE_RATE_HZ` is the device's). ``split``: ``"train"`` (augmentation) or
    ``"eval"`` (far-field evaluation): disjoint room banks and noise streams. ``key``: names the
    clip (e.g. its file name); the same ``(split, key)`` always gives the same condition.
    ``babble``: other speakers' clips of the same corpus (1-D float, same rate), from which babble
    noise is made; ``None``/empty: pink or brown noise only. ``device_effects``: the train split's
    microphone effects (ignored, i.e. always off, for ``"eval"``). ``bank_size``: rooms per bank
    (a smaller one for tests). ``rir_cache_dir``: where banks are kept on disk (``None``: memory only).

    Returns float32, same length as ``samples``, within [-1, 1]. Raises :class:`ValueError` for an
    unknown split, or samples that are not 1-D finite floats ("expected ..., got ...").
    See the module docstring for every range and its source.
    """
    _check_split(split)
    condition = draw_condition(split, key, len(babble or []), bank_size, device_effects, sample_rate_hz)
    return render(samples, sample_rate_hz, condition, babble, bank_size, rir_cache_dir).output
