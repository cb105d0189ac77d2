"""What audio the device accepts: the sample-rate range and the raw PCM formats (numpy only, so the
configuration can check them without loading libsndfile or PortAudio).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_RATE_HZ, MAX_RATE_HZ = 8000, 384000
"""Sample rates accepted from files and devices (the same range as ``audio.sample_rate_hz``)."""

RAW_FORMATS: dict[str, tuple[str, float, float]] = {
    "s16le": ("<i2", 32768.0, 0.0),
    "s32le": ("<i4", 2147483648.0, 0.0),
    "f32le": ("<f4", 1.0, 0.0),
    "u8": ("u1", 128.0, 128.0),
}
"""Raw sample format -> (numpy dtype, scale, offset): ``float = (int - offset) / scale``; names as
arecord's ``-f`` and ffmpeg's ``-f`` spell them (S16_LE / s16le)."""


def to_mono(block: np.ndarray) -> np.ndarray:
    """``(n,)`` or ``(n, channels)`` -> float32 ``(n,)``, the mean of the channels."""
    block = np.asarray(block, dtype=np.float32)
    return block if block.ndim == 1 else block.mean(axis=1, dtype=np.float32)


@dataclass(frozen=True)
class RawFormat:
    """Headerless PCM: ``sample_format`` (a key of :data:`RAW_FORMATS`), ``rate_hz``, ``channels``
    (interleaved). Raises ``ValueError("expected ..., got ...")`` when constructed with bad values."""

    sample_format: str = "s16le"
    rate_hz: int = 16000
    channels: int = 1

    def __post_init__(self) -> None:
        if self.sample_format not in RAW_FORMATS:
            raise ValueError(f"expected a raw format in {sorted(RAW_FORMATS)}, got {self.sample_format!r}")
        if isinstance(self.rate_hz, bool) or not isinstance(self.rate_hz, int) or not 1 <= self.rate_hz <= MAX_RATE_HZ:
            raise ValueError(f"expected a rate in 1..{MAX_RATE_HZ} Hz, got {self.rate_hz!r}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or not 1 <= self.channels <= 32:
            raise ValueError(f"expected 1..32 channels, got {self.channels!r}")

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (one sample of every channel)."""
        return np.dtype(RAW_FORMATS[self.sample_format][0]).itemsize * self.channels

    def decode(self, data: bytes) -> np.ndarray:
        """Whole frames of ``data`` -> mono float32 ``(frames,)`` in [-1, 1] (channels averaged)."""
        dtype, scale, offset = RAW_FORMATS[self.sample_format]
        usable = len(data) - len(data) % self.frame_bytes
        samples = np.frombuffer(data[:usable], dtype=dtype).astype(np.float32)
        if offset:
            samples -= offset
        samples /= scale
        return to_mono(samples.reshape(-1, self.channels))
