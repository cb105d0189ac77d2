"""Audio input that has an end: files, standard input and raw PCM, as mono float32 blocks at the
model's sample rate, read by one block reader (:func:`blocks`) and checked by one rate check
(:func:`check_rate`, :func:`check_min_rate`).

Accepted input: sample rates of :data:`MIN_RATE_HZ`..:data:`MAX_RATE_HZ` (8 to 384 kHz); files in
WAV (RIFF, RF64, Wave64), AIFF or FLAC only, recognised by their first bytes before libsndfile sees
them. MP3 and Ogg (Vorbis/Opus) are refused: the model was trained on lossless audio, and
libsndfile's MP3 decoder (libmpg123) writes its own complaints to the terminal. Memory does not grow
with the rate or the file: files are read in :data:`FILE_BLOCK_S` blocks and resampled as a stream
(:class:`edge.audio.resample.StreamingResampler`).

* ``ser-edge replay -``: a WAV or FLAC stream on standard input (``arecord -t wav | ser-edge replay -``).
  A WAV stream is read as it arrives (libsndfile's pipe mode; arecord's "unknown length" header is
  fine); other formats from a pipe (FLAC needs to seek) are spooled to a temporary file first, so
  they are read when the stream ends. A regular file redirected to standard input is read directly.
* Nothing silently wrong: a WAV whose header gives bits per sample libsndfile would misread (7, say)
  is refused (:func:`wav_declared_frames`); a WAV file or stream shorter than its header declares is
  read to its end and then reported (:class:`TruncatedAudio`); MP3 and Ogg are refused on standard
  input as in files; a closed standard input (``<&-``) is one line, not a traceback.
* Raw PCM (no header), from a file or standard input: :class:`RawFormat` (``--raw-format s16le
  --rate 16000 --channels 1``), read block by block with numpy; also the format of an input
  command's output (:class:`edge.audio.live.CommandSource`).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from edge.audio.formats import MAX_RATE_HZ, MIN_RATE_HZ, RawFormat, to_mono
from edge.audio.resample import StreamingResampler, resample

if TYPE_CHECKING:
    import soundfile


def _soundfile():
    """soundfile (libsndfile through cffi), imported on first use: the daemon reading a microphone or an input
    command never decodes a file, and the import costs ~3 MB of resident memory on the device."""
    import soundfile

    return soundfile

logger = logging.getLogger(__name__)
clipping_logger = logging.getLogger(f"{__name__}.clipping")
"""Where :class:`ClippingMonitor` reports (a child of this module's logger): batch readers that count
clipping themselves (the trainer) silence this one logger."""

CLIPPING_LEVEL = 0.999
"""Samples at or above this magnitude (fraction of full scale) are at full scale."""
CLIPPING_RUN = 3
"""Clipping is a run of at least this many consecutive samples at :data:`CLIPPING_LEVEL`: the
waveform flattened against the limit. One such sample is a loud peak, not clipping. Three is the
default "start threshold" of Audacity's Analyze > Find Clipping (contiguous clipped samples before a
run counts), https://manual.audacityteam.org/man/find_clipping.html."""
CLIPPING_REPORT_INTERVAL_S = 60.0
"""After the first clipping warning of a source, further clipped blocks are counted and reported in
one line at most once per this many seconds."""


FILE_BLOCK_S = 0.5
"""Files are read in blocks of this much audio, so memory stays flat for hour-long recordings."""

FILE_MAGIC = {b"RIFF": "WAV", b"RIFX": "WAV", b"RF64": "WAV (RF64)", b"riff": "Wave64", b"fLaC": "FLAC",
              b"FORM": "AIFF"}
"""First four bytes of the accepted file formats (AIFF/AIFC: an IFF ``FORM``; some corpora ship AIFF
files named ``.wav``, e.g. TESS's ``YAF_germ_angry.wav``)."""
REFUSED_MAGIC = {b"OggS": "Ogg", b"ID3": "MP3", b"\xff\xfb": "MP3", b"\xff\xf3": "MP3", b"\xff\xf2": "MP3"}
"""Leading bytes of formats named in the refusal (anything else is "not WAV, AIFF or FLAC")."""


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, wrong rate, non-finite samples. One line."""


class TruncatedAudio(AudioError):
    """A WAV file or stream shorter than its header declares: the audio that is there was read (and
    yielded), then this is raised; ``replay`` reports the file as incomplete (exit status 1)."""


class MicUnavailable(AudioError):
    """The microphone cannot be opened: no such device, busy, unplugged, unsupported settings.

    Only these errors make the daemon retry the device; any other exception is a bug (a crash
    that systemd restarts), not a reason to wait for a microphone."""


def check_rate(rate_hz: int, source: str) -> None:
    """Raise :class:`AudioError` unless ``rate_hz`` is within :data:`MIN_RATE_HZ`..:data:`MAX_RATE_HZ`."""
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise AudioError(f"{source}: expected a sample rate of {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz, got {rate_hz} Hz")



def clipping_runs(samples: np.ndarray) -> int:
    """The number of clipping runs in ``samples`` (float ``(n,)`` in [-1, 1]): runs of at least
    :data:`CLIPPING_RUN` consecutive samples with ``|x| >= CLIPPING_LEVEL``."""
    at_limit = np.abs(samples) >= CLIPPING_LEVEL
    if np.count_nonzero(at_limit) < CLIPPING_RUN:
        return 0
    edges = np.diff(np.concatenate(([0], at_limit.astype(np.int8), [0])))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return int(np.count_nonzero(lengths >= CLIPPING_RUN))


class ClippingMonitor:
    """Rate-limited clipping warnings for one source: the first clipped block (one with a
    :func:`clipping_runs` run) gives one WARNING line; later clipped blocks are counted and reported as
    ``"<source>: N more clipped blocks in the last S s"`` at most once per ``interval_s``
    (:data:`CLIPPING_REPORT_INTERVAL_S`), and by :meth:`flush` (the end of the input).

    :param clock: monotonic seconds (the interval's time base).
    """

    def __init__(self, source: str, interval_s: float = CLIPPING_REPORT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.interval_s = interval_s
        self._clock = clock
        self.clipped_blocks = 0
        """Clipped blocks seen in total."""
        self._unreported = 0
        self._since = 0.0  # clock time of the last line

    def check(self, samples: np.ndarray) -> bool:
        """Count ``samples`` (one block) if it clips, logging as described; whether it clips."""
        runs = clipping_runs(samples)
        if runs:
            self.clipped_blocks += 1
            if self.clipped_blocks == 1:
                self._since = self._clock()
                clipping_logger.warning("%s: clipping (%d runs of >= %d samples at full scale in a block of %d); emotion "
                               "scores may suffer: lower the input gain (further clipped blocks are counted, "
                               "one line a minute at most)", self.source, runs, CLIPPING_RUN, samples.size)
                return True
            self._unreported += 1
        if self._unreported and self._clock() - self._since >= self.interval_s:
            self.flush()
        return bool(runs)

    def flush(self) -> None:
        """Log the clipped blocks not reported yet (if any) now."""
        if self._unreported:
            now = self._clock()
            clipping_logger.warning("%s: %d more clipped blocks in the last %.0f s", self.source, self._unreported,
                           now - self._since)
            self._unreported, self._since = 0, now


def check_samples(samples: np.ndarray, source: str, clipping: ClippingMonitor | None = None) -> None:
    """Raise :class:`AudioError` for NaN/inf samples; report clipping (a warning, not an error) to
    ``clipping``, the source's :class:`ClippingMonitor` (default: a new one, i.e. one line per call)."""
    if not np.all(np.isfinite(samples)):
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise AudioError(f"{source}: expected finite samples, got {bad} NaN/inf")
    (clipping if clipping is not None else ClippingMonitor(source)).check(samples)


def _refuse_unknown(head: bytes, name: str, what: str) -> str:
    """The accepted format named by ``head`` (:data:`FILE_MAGIC`), else :class:`AudioError` naming a
    refused one (MP3, Ogg) when known; ``what`` is ``"file"`` or ``"stream"``."""
    if head[:4] in FILE_MAGIC:
        return FILE_MAGIC[head[:4]]
    known = next((name for magic, name in REFUSED_MAGIC.items() if head.startswith(magic)), None)
    hint = (" (MP3 and Ogg are not supported: convert with e.g. sox or ffmpeg)" if known else
            "; for headerless PCM give --raw-format, --rate and --channels" if what == "stream" else "")
    raise AudioError(f"{name}: expected a WAV, AIFF or FLAC {what}, got {known or 'another format'}{hint}")


def sniff_format(path: Path) -> str:
    """The format of a file from its first bytes (:data:`FILE_MAGIC`), before libsndfile opens it.

    :raises AudioError: for a file that is not WAV, AIFF or FLAC (named when known: MP3, Ogg).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror})") from None
    return _refuse_unknown(head, str(path), "file")


WAV_HEADER_BYTES = 1 << 16
"""How far into a RIFF WAV its ``fmt `` and ``data`` chunk headers are looked for."""
WAV_UNKNOWN_SIZE = 0x7FFFF000
"""A ``data`` size at or above this (0x7fffffff, 0xffffffff: ``arecord`` to a pipe) or 0 means
"unknown length", not a length."""
WAV_PCM_BITS = {1: (8, 16, 24, 32), 3: (32, 64), 0xFFFE: (8, 16, 24, 32, 64)}
"""WAVE format tag -> bits per sample libsndfile decodes correctly (PCM, IEEE float, extensible)."""


def _riff_chunks(head: bytes) -> Iterator[tuple[bytes, int, int]]:
    """``(chunk id, size, offset of its body)`` of the RIFF WAVE chunks whose headers lie in ``head``."""
    offset = 12
    while offset + 8 <= len(head):
        chunk_id, size = head[offset:offset + 4], struct.unpack_from("<I", head, offset + 4)[0]
        yield chunk_id, size, offset + 8
        if chunk_id == b"data":
            return
        offset += 8 + size + (size & 1)


def wav_declared_frames(head: bytes, name: str) -> int | None:
    """Check the ``fmt `` chunk of a RIFF WAV from its first bytes, and the frames its ``data`` chunk
    declares (``None``: not a little-endian RIFF WAV, or an unknown length, :data:`WAV_UNKNOWN_SIZE`).

    :raises AudioError: for bits per sample libsndfile would misread (a header with 7 bits is read
        as 8-bit audio of twice the length, silently wrong): PCM takes 8/16/24/32, float 32/64
        (:data:`WAV_PCM_BITS`), and a block alignment that is not channels x bytes per sample.
    """
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    block_align = 0
    for chunk_id, size, body in _riff_chunks(head):
        if chunk_id == b"fmt " and body + 16 <= len(head):
            tag, channels, _, _, block_align, bits = struct.unpack_from("<HHIIHH", head, body)
            allowed = WAV_PCM_BITS.get(tag)
            if allowed is not None and bits not in allowed:
                raise AudioError(f"{name}: expected {'/'.join(map(str, allowed))} bits per sample in the WAV "
                                 f"header, got {bits}: a damaged or non-standard header")
            if allowed is not None and channels and block_align != channels * ((bits + 7) // 8):
                raise AudioError(f"{name}: the WAV header's block alignment ({block_align} bytes) does not "
                                 f"match {channels} channels of {bits} bits: a damaged header")
        elif chunk_id == b"data":
            if not block_align or size == 0 or size >= WAV_UNKNOWN_SIZE:
                return None
            return size // block_align
    return None


def open_audio(path: str | Path) -> soundfile.SoundFile:
    """Open a WAV, AIFF or FLAC file with soundfile at a sample rate in 8..384 kHz.

    :raises AudioError: if missing, not WAV/AIFF/FLAC, unreadable, empty, or at a refused rate.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    sniff_format(path)
    _file_declared_frames(path)  # refuses a WAV header libsndfile would misread
    sf = _soundfile()
    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({str(exc).splitlines()[0]})") from None
    if handle.frames == 0:
        handle.close()
        raise AudioError(f"{path}: expected audio samples, got an empty file")
    try:
        check_rate(handle.samplerate, str(path))
    except AudioError:
        handle.close()
        raise
    return handle


def _file_declared_frames(path: Path) -> int | None:
    """:func:`wav_declared_frames` of a file (``None`` when unreadable: :func:`open_audio` says so)."""
    try:
        with open(path, "rb") as handle:
            return wav_declared_frames(handle.read(WAV_HEADER_BYTES), str(path))
    except OSError:
        return None


def _read_block(handle: soundfile.SoundFile, frames: int, name: str,
                clipping: ClippingMonitor | None = None) -> np.ndarray:
    sf = _soundfile()  # imported already: the handle is one of its SoundFiles
    try:
        block = handle.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{name}: truncated or corrupt audio ({exc})") from None
    samples = to_mono(block)
    check_samples(samples, name, clipping)
    return samples


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a whole file as mono float32 in [-1, 1] (channels averaged) and its rate in Hz.

    Raises :class:`AudioError` for a missing, unreadable, empty or non-finite file.
    """
    with open_audio(path) as handle:
        return _read_block(handle, -1, str(path)), int(handle.samplerate)


def check_min_rate(rate_hz: int, target_rate_hz: int, source: str) -> None:
    """Raise :class:`AudioError` for input below the model's rate: upsampling cannot put back the band
    the model listens to (an 8 kHz telephone recording has nothing above 4 kHz)."""
    if rate_hz < target_rate_hz:
        raise AudioError(
            f"{source}: expected a sample rate of at least {target_rate_hz} Hz, got {rate_hz} Hz "
            f"(it lacks the band above {rate_hz // 2} Hz that the model uses)"
        )


def _soundfile_blocks(handle: soundfile.SoundFile, target_rate_hz: int, name: str,
                      block_s: float = FILE_BLOCK_S, declared_frames: int | None = None) -> Iterator[np.ndarray]:
    """The one block reader of libsndfile input (files, standard input): ``block_s`` seconds at a time,
    mono, checked, resampled to ``target_rate_hz``; the last block is the resampler's flush. Closes
    ``handle``.

    :param declared_frames: the frames the WAV header declares (:func:`wav_declared_frames`); fewer
        on reading means a truncated file or stream: every block there is is yielded, then
        :class:`AudioError` says how much was missing (nothing silently short).
    """
    with handle:
        check_rate(handle.samplerate, name)
        check_min_rate(handle.samplerate, target_rate_hz, name)
        resampler = StreamingResampler(handle.samplerate, target_rate_hz)
        frames = max(1, round(block_s * handle.samplerate))
        clipping = ClippingMonitor(name)
        read = 0
        try:
            while True:
                samples = _read_block(handle, frames, name, clipping)
                if samples.size == 0:
                    break
                read += samples.size
                yield resampler.process(samples)
        finally:
            clipping.flush()
        yield resampler.flush()
        if declared_frames is not None and read < declared_frames:
            rate = handle.samplerate
            raise TruncatedAudio(f"{name}: truncated: the WAV header declares {declared_frames / rate:.2f} s of audio, "
                             f"got {read / rate:.2f} s (the events of the audio that is there were made)")


def file_blocks(path: str | Path, target_rate_hz: int, block_s: float = FILE_BLOCK_S) -> Iterator[np.ndarray]:
    """Mono float32 blocks of a file resampled to ``target_rate_hz`` (the last from the resampler's flush).

    Reads ``block_s`` seconds at a time, so memory stays bounded. Raises :class:`AudioError` as
    :func:`load_audio` does, possibly after yielding some blocks (a truncated file).
    """
    handle = open_audio(path)
    yield from _soundfile_blocks(handle, target_rate_hz, str(path), block_s, _file_declared_frames(Path(path)))


def load_audio(path: str | Path, target_rate_hz: int) -> np.ndarray:
    """:func:`read_audio`, resampled to ``target_rate_hz``; float32 ``(n,)``.

    :raises AudioError: as :func:`read_audio`, and for a file below ``target_rate_hz``
        (:func:`check_min_rate`).
    """
    samples, rate = read_audio(path)
    check_min_rate(rate, target_rate_hz, str(path))
    return resample(samples, rate, target_rate_hz)


STDIN = "-"
"""The file name that means standard input."""

STREAM_MAGIC = (b"RIFF", b"RF64")
"""WAV headers libsndfile can read from a pipe as the audio arrives."""


def _read_exactly(stream: BinaryIO, nbytes: int) -> bytes:
    """Up to ``nbytes`` bytes: fewer only at the end of the stream (a pipe returns short reads)."""
    chunks, remaining = [], nbytes
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def raw_blocks(stream: BinaryIO, raw: RawFormat, target_rate_hz: int, name: str,
               block_s: float = FILE_BLOCK_S) -> Iterator[np.ndarray]:
    """Mono float32 blocks of headerless PCM from ``stream``, resampled to ``target_rate_hz``.

    :raises AudioError: for a rate below ``target_rate_hz`` or non-finite samples (``f32le``),
        naming ``name``; a trailing partial frame is ignored.
    """
    check_min_rate(raw.rate_hz, target_rate_hz, name)
    resampler = StreamingResampler(raw.rate_hz, target_rate_hz)
    nbytes = max(1, round(block_s * raw.rate_hz)) * raw.frame_bytes
    clipping = ClippingMonitor(name)
    try:
        while data := _read_exactly(stream, nbytes):
            samples = raw.decode(data)
            check_samples(samples, name, clipping)
            yield resampler.process(samples)
    finally:
        clipping.flush()
    yield resampler.flush()


def _relay(head: bytes, source: BinaryIO) -> int:
    """A pipe's read end that yields ``head`` then the rest of ``source`` (a thread copies), so
    libsndfile can read a stream whose first bytes were already taken to recognise it."""
    read_fd, write_fd = os.pipe()

    def copy() -> None:
        try:
            with os.fdopen(write_fd, "wb") as out:
                out.write(head)
                while chunk := source.read1(1 << 16) if hasattr(source, "read1") else source.read(1 << 16):
                    out.write(chunk)
        except (BrokenPipeError, OSError):  # the reader stopped (a stop signal, a bad stream)
            pass

    threading.Thread(target=copy, name="stdin-relay", daemon=True).start()
    return read_fd


def _read_wav_header(stream: BinaryIO, head: bytes) -> bytes:
    """``head`` (a RIFF stream's first 12 bytes) plus the bytes up to and including the ``data``
    chunk's header (at most :data:`WAV_HEADER_BYTES`), read from ``stream``: what
    :func:`wav_declared_frames` needs; they are relayed to libsndfile with the rest."""
    if head[:4] != b"RIFF":
        return head
    while len(head) < WAV_HEADER_BYTES:
        more = _read_exactly(stream, 8)
        head += more
        if len(more) < 8 or more[:4] == b"data":
            break
        size = struct.unpack_from("<I", more, 4)[0]
        if len(head) + size > WAV_HEADER_BYTES:
            break
        body = _read_exactly(stream, size + (size & 1))
        head += body
        if len(body) < size:
            break
    return head


def _stdin() -> BinaryIO:
    """``sys.stdin.buffer``; :class:`AudioError` when standard input is closed (``<&-``)."""
    if sys.stdin is None or not hasattr(sys.stdin, "buffer"):
        raise AudioError("standard input: closed (nothing to read); give a file, or pipe audio in: "
                         "arecord -t wav | ser-edge replay -")
    return sys.stdin.buffer


def stdin_blocks(target_rate_hz: int, stream: BinaryIO | None = None,
                 name: str = "standard input") -> Iterator[np.ndarray]:
    """Mono float32 blocks of a WAV/FLAC (any format libsndfile reads) on standard input, or on
    another stream (a FIFO, a character device).

    :param stream: the binary stream (default ``sys.stdin.buffer``).
    :raises AudioError: for an empty or unreadable stream, or as :func:`file_blocks`.
    """
    stream = stream if stream is not None else _stdin()
    try:
        regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        regular = False
    if regular:  # `< file.flac`: seekable, libsndfile reads it like a file
        sf = _soundfile()
        try:
            head = os.pread(stream.fileno(), WAV_HEADER_BYTES, 0)
        except OSError as exc:
            raise AudioError(f"{name}: cannot read ({exc.strerror})") from None
        if not head:
            raise AudioError(f"{name}: expected a WAV, AIFF or FLAC stream, got nothing")
        _refuse_unknown(head, name, "stream")
        declared = wav_declared_frames(head, name)
        try:
            handle = sf.SoundFile(stream.fileno(), closefd=False)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{name}: not a readable audio stream ({str(exc).splitlines()[0]})") from None
        yield from _soundfile_blocks(handle, target_rate_hz, name, declared_frames=declared)
        return
    head = _read_exactly(stream, 12)
    if not head:
        raise AudioError(f"{name}: expected a WAV, AIFF or FLAC stream, got nothing")
    _refuse_unknown(head, name, "stream")  # MP3/Ogg refused as files are, before libsndfile decodes them
    if head[:4] in STREAM_MAGIC:
        head = _read_wav_header(stream, head)
        declared = wav_declared_frames(head, name)
        fd = _relay(head, stream)
        sf = _soundfile()
        try:
            handle = sf.SoundFile(fd, closefd=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            os.close(fd)
            raise AudioError(f"{name}: not a readable WAV stream ({str(exc).splitlines()[0]})") from None
        yield from _soundfile_blocks(handle, target_rate_hz, name, declared_frames=declared)
        return
    with tempfile.TemporaryFile(prefix="ser-edge-stdin-") as spool:  # FLAC & co. need to seek
        spool.write(head)
        shutil.copyfileobj(stream, spool, 1 << 16)
        spool.seek(0)
        sf = _soundfile()
        try:
            handle = sf.SoundFile(spool)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{name}: expected a WAV or FLAC stream ({str(exc).splitlines()[0]}); "
                             f"for headerless PCM give --raw-format, --rate and --channels") from None
        yield from _soundfile_blocks(handle, target_rate_hz, name)


RAW_SUFFIXES = (".raw", ".pcm")


def blocks(source: str | Path, target_rate_hz: int, raw: RawFormat | None = None) -> Iterator[np.ndarray]:
    """The one block reader: mono float32 blocks at ``target_rate_hz`` of one input: ``"-"`` (standard input) or a path; raw PCM when ``raw`` is given.

    :raises AudioError: one line, e.g. for a headerless ``.raw``/``.pcm`` file without ``raw``.
    """
    if raw is not None:
        if str(source) == STDIN:
            yield from raw_blocks(_stdin(), raw, target_rate_hz, "standard input")
            return
        path = Path(source)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, the generator may stop early
        except OSError as exc:
            raise AudioError(f"{path}: {exc.strerror.lower() if exc.strerror else exc}") from None
        with handle:
            yield from raw_blocks(handle, raw, target_rate_hz, str(path))
        return
    if str(source) == STDIN:
        yield from stdin_blocks(target_rate_hz)
        return
    path = Path(source)
    if path.suffix.lower() in RAW_SUFFIXES:
        raise AudioError(f"{source}: headerless PCM: give its format, e.g. --raw-format s16le --rate 16000 "
                         f"--channels 1")
    if path.exists() and not path.is_file():  # a FIFO, /dev/stdin on a pipe: a stream, not a file
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise AudioError(f"{path}: {exc.strerror or exc}") from None
        with handle:
            yield from stdin_blocks(target_rate_hz, handle, str(path))
        return
    yield from file_blocks(source, target_rate_hz)
