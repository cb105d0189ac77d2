"""trainer.acoustics on real speech from ../shared/data: reproducible, split-disjoint far-field
conditions; rooms whose measured RT60 and geometry are in range; noise at the drawn SNR; output
that a featurizer can take. Banks of 4 rooms keep it fast (a bank of n is the first n of 64)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pyroomacoustics as pra
import pytest
from helpers import skip_or_fail

from edge.audio.io import load_audio
from tests.paths import CREMA_D_MINI
from trainer import acoustics
from trainer.acoustics import (
    DISTANCE_RANGE_M,
    RT60_RANGE_S,
    SAMPLE_RATE_HZ,
    SNR_RANGE_DB,
    WALL_MARGIN_M,
    draw_condition,
    far_field,
    render,
    rir_bank,
)

BANK = 4
RATE = SAMPLE_RATE_HZ


def require(path: Path) -> Path:
    """``path`` if it exists; else skip, or fail under ``CI=true`` (CI has ../shared)."""
    if not path.exists():
        message = f"no test data at {path} (../shared/data beside the repository)"
        skip_or_fail(message)
    return path


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """CREMA-D 1001 (male), "Don't forget a jacket", neutral: 16 kHz float32."""
    return load_audio(require(CREMA_D_MINI) / "AudioWAV" / "1001_DFA_NEU_XX.wav", RATE)


@pytest.fixture(scope="module")
def babble() -> list[np.ndarray]:
    """Other speakers of the same corpus: actor 1002's clips of five other sentences."""
    folder = require(CREMA_D_MINI) / "AudioWAV"
    return [load_audio(folder / f"1002_{s}_NEU_XX.wav", RATE) for s in ("IEO", "IOM", "ITH", "ITS", "IWL")]


def key_with(split: str, noise: str, n_babble: int, device: bool = True) -> str:
    """The first key ``clip<i>`` whose condition draws ``noise`` (the draws are deterministic)."""
    return next(f"clip{i}" for i in range(1000)
                if draw_condition(split, f"clip{i}", n_babble, BANK, device).noise == noise)


def active_power(x: np.ndarray, frame: int = RATE // 50, range_db: float = 30.0) -> float:
    """Mean power of the 20 ms frames within 30 dB of the loudest (the module's documented SNR reference)."""
    n = len(x) // frame
    power = np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1)
    return float(np.mean(power[power >= power.max() * 10 ** (-range_db / 10)]))


def test_same_key_and_split_is_reproducible(speech, babble):
    for split in ("train", "eval"):
        first = far_field(speech, RATE, split, "1001_DFA_NEU_XX.wav", babble, bank_size=BANK)
        again = far_field(speech.copy(), RATE, split, "1001_DFA_NEU_XX.wav", babble, bank_size=BANK)
        assert np.array_equal(first, again)
        other = far_field(speech, RATE, split, "1001_DFA_HAP_XX.wav", babble, bank_size=BANK)
        assert not np.array_equal(first, other)  # another clip, another draw
    # the seed is zlib.crc32 of "<split>:<key>", the same in every process
    assert acoustics.clip_seed("eval", "a.wav") == zlib.crc32(b"eval:a.wav")


def test_train_and_eval_draw_from_disjoint_streams(speech, babble):
    train, evaluation = rir_bank("train", RATE, BANK), rir_bank("eval", RATE, BANK)
    train_rooms = {r.room_m for r in train}
    assert not train_rooms & {r.room_m for r in evaluation}
    assert all(not np.array_equal(a.rir[: len(b.rir)], b.rir[: len(a.rir)]) for a in train for b in evaluation)
    key = "1001_DFA_NEU_XX.wav"
    eval_out = far_field(speech, RATE, "eval", key, babble, bank_size=BANK)
    train_plain = far_field(speech, RATE, "train", key, babble, device_effects=False, bank_size=BANK)
    assert not np.allclose(eval_out, train_plain)
    assert draw_condition("eval", key, 5, BANK).noise_seed != draw_condition("train", key, 5, BANK).noise_seed


def test_device_effects_are_train_only_and_do_not_move_the_room(speech):
    for i in range(20):
        key = f"clip{i}"
        assert draw_condition("eval", key, 0, BANK, device_effects=True).device is None
        with_device = draw_condition("train", key, 0, BANK, device_effects=True)
        without = draw_condition("train", key, 0, BANK, device_effects=False)
        assert with_device.device is not None and without.device is None
        assert (with_device.room, with_device.noise, with_device.snr_db) == (without.room, without.noise, without.snr_db)
    eval_key = "clip3"
    assert np.array_equal(far_field(speech, RATE, "eval", eval_key, bank_size=BANK, device_effects=True),
                          far_field(speech, RATE, "eval", eval_key, bank_size=BANK, device_effects=False))


def test_bank_rooms_are_in_range_and_measured_rt60_matches():
    for split in ("train", "eval"):
        bank = rir_bank(split, RATE, BANK)
        assert len(bank) == BANK
        for room in bank:
            assert RT60_RANGE_S[0] <= room.rt60_s <= RT60_RANGE_S[1]
            measured = pra.experimental.measure_rt60(room.rir, fs=RATE, decay_db=30)  # T30, ISO 3382-1
            assert abs(measured / room.rt60_s - 1.0) <= 0.15, (split, room.rt60_s, measured)
            assert 0.9 * RT60_RANGE_S[0] <= measured <= 1.1 * RT60_RANGE_S[1]
            assert DISTANCE_RANGE_M[0] <= room.distance_m <= DISTANCE_RANGE_M[1]
            assert np.isclose(np.linalg.norm(np.subtract(room.talker_m, room.mic_m)), room.distance_m)
            for position in (room.mic_m, room.talker_m):
                assert all(WALL_MARGIN_M - 1e-9 <= position[k] <= room.room_m[k] - WALL_MARGIN_M + 1e-9 for k in range(3))
            assert 3.0 <= min(room.room_m[:2]) and max(room.room_m[:2]) <= 8.0 and 2.4 <= room.room_m[2] <= 3.5
            # the direct path comes first, at sample 40 (half the fractional-delay filter), with gain ~ 1 m / r
            direct = float(np.max(np.abs(room.rir[38:43])))
            assert 0.5 / room.distance_m <= direct <= 1.2 / room.distance_m
            assert np.max(np.abs(room.rir[:35])) < 0.1 * direct
            assert room.rir.dtype == np.float32 and np.all(np.isfinite(room.rir))


def test_a_small_bank_is_the_start_of_the_full_one():
    room = acoustics.simulate_room("eval", 1, RATE)
    assert np.array_equal(room.rir, rir_bank("eval", RATE, BANK)[1].rir)


@pytest.mark.parametrize("split", ["eval", "train"])
@pytest.mark.parametrize("noise", ["pink", "brown", "babble"])
def test_noise_is_at_the_drawn_snr(speech, babble, split, noise):
    key = key_with(split, noise, len(babble), device=False)
    condition = draw_condition(split, key, len(babble), BANK, device_effects=False)
    parts = render(speech, RATE, condition, babble, bank_size=BANK)
    assert SNR_RANGE_DB[0] <= condition.snr_db <= SNR_RANGE_DB[1]
    if noise == "babble":
        assert 3 <= len(condition.babble) <= 5 and len({i for i, _ in condition.babble}) == len(condition.babble)
    # what reaches the device is speech + noise, scaled as a whole by the peak ceiling
    mixed = parts.speech + parts.noise
    gain = float(np.dot(parts.output, mixed) / np.dot(mixed, mixed))
    assert 0 < gain <= 1.0 + 1e-6
    assert np.max(np.abs(parts.output - gain * mixed)) < 1e-4
    noise_in_output = parts.output / gain - parts.speech
    snr = 10 * np.log10(active_power(parts.speech) / np.mean(noise_in_output.astype(np.float64) ** 2))
    assert abs(snr - condition.snr_db) < 1.0, (noise, snr, condition.snr_db)


def test_few_babble_signals_are_all_used_and_conditions_describe_themselves(speech, babble):
    key = key_with("eval", "babble", 2)
    condition = draw_condition("eval", key, 2, BANK)
    assert sorted(i for i, _ in condition.babble) == [0, 1]
    assert far_field(speech, RATE, "eval", key, babble[:2], bank_size=BANK).shape == speech.shape
    assert "babble noise at" in condition.describe() and "(2 talkers)" in condition.describe()
    train = draw_condition("train", "clip0", 0, BANK)
    assert train.describe().startswith("train room") and "gain" in train.describe()


def test_output_is_finite_same_length_and_in_range(speech, babble):
    loud = np.clip(speech * 8.0, -1.0, 1.0)  # a clip at full scale
    short = speech[:400]  # 25 ms, shorter than most RIRs
    for split in ("train", "eval"):
        for i in range(12):
            for x in (speech, loud, short):
                y = far_field(x, RATE, split, f"clip{i}", babble, bank_size=BANK)
                assert y.dtype == np.float32 and y.shape == x.shape
                assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
                assert np.max(np.abs(y)) > 0.0
    assert far_field(np.zeros(0, np.float32), RATE, "eval", "empty", bank_size=BANK).shape == (0,)
    silent = far_field(np.zeros(RATE, np.float32), RATE, "eval", "silent", bank_size=BANK)
    assert not np.any(silent)  # no speech, no noise relative to it


def test_bad_input_is_refused(speech):
    with pytest.raises(ValueError, match="split: expected one of train, eval, got 'test'"):
        far_field(speech, RATE, "test", "k", bank_size=BANK)
    with pytest.raises(ValueError, match="expected 1-D float audio"):
        far_field(np.stack([speech, speech]), RATE, "eval", "k", bank_size=BANK)
    with pytest.raises(ValueError, match="expected finite samples"):
        far_field(np.array([0.1, np.nan], np.float32), RATE, "eval", "k", bank_size=BANK)


def test_bank_round_trips_through_the_disk_cache(tmp_path):
    bank = rir_bank("eval", RATE, BANK)
    path = tmp_path / "bank.npz"
    acoustics._save_bank(path, bank)
    loaded = acoustics._load_bank(path)
    assert [r.rir.tolist() for r in loaded] == [r.rir.tolist() for r in bank]
    assert [(r.rt60_s, r.distance_m, r.room_m) for r in loaded] == [(r.rt60_s, r.distance_m, r.room_m) for r in bank]


def test_noise_colours():
    rng = np.random.default_rng(0)
    freqs = np.fft.rfftfreq(RATE * 4, 1 / RATE)

    def octave_power_ratio(noise):  # power in 500-1000 Hz over power in 1-2 kHz
        power = np.abs(np.fft.rfft(noise)) ** 2
        return power[(freqs >= 500) & (freqs < 1000)].sum() / power[(freqs >= 1000) & (freqs < 2000)].sum()

    pink, brown = acoustics.pink_noise(RATE * 4, rng), acoustics.brown_noise(RATE * 4, rng)
    assert np.isclose(np.sqrt(np.mean(pink**2)), 1.0) and np.isclose(np.sqrt(np.mean(brown**2)), 1.0)
    assert 0.8 < octave_power_ratio(pink) < 1.25  # equal power per octave
    assert 1.6 < octave_power_ratio(brown) < 2.5  # 3 dB more per octave down


def test_two_processes_saving_one_room_bank_do_not_collide(tmp_path, monkeypatch):
    """Two LOCO workers of a fresh clone build the same room bank at once. Here a second process's
    whole save happens in between the first one's write and rename (its own process id): both saves
    succeed, one bank file is left with the bank's rooms, and no temporary file."""
    import itertools

    bank = rir_bank("train", RATE, 2)
    path = tmp_path / "rirs-train.npz"
    pids = itertools.count(101)
    monkeypatch.setattr(acoustics.os, "getpid", lambda: next(pids))
    real_savez = np.savez
    interleaved = []

    def savez(file, **arrays):
        real_savez(file, **arrays)
        if not interleaved:
            interleaved.append(file)
            acoustics._save_bank(path, bank)  # the other process writes and renames first

    monkeypatch.setattr(acoustics.np, "savez", savez)
    acoustics._save_bank(path, bank)
    assert interleaved and [p.name for p in tmp_path.iterdir()] == [path.name]
    loaded = acoustics._load_bank(path)
    assert len(loaded) == 2 and all(np.array_equal(a.rir, b.rir) for a, b in zip(loaded, bank, strict=True))
