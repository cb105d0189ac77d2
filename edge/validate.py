"""One vocabulary for rejecting a value: ``ValueError("expected X, got Y")``, and one atomic write.

Every component that checks what it is given uses these helpers, so a bad value reads the same
wherever it is caught (Porcupine's ``frame_length`` check is the model). The messages name the
field when a ``name`` is given: ``expected port to be an integer in 1..65535, got 'abc'``. ``bool`` is
never accepted as a number (``True`` is an ``int`` to Python, not to a configuration file).

Topic levels are checked here once (:func:`expect_topic_level`): non-empty, no MQTT wildcard
(``+``, ``#``), no control character (NUL, tab, newline, DEL, any C0 or C1), and no ``/`` unless
several levels are allowed (a prefix). TLS files are loaded here once (:func:`expect_tls_files`).

Imports nothing but the standard library: ``edge.settings`` and the payload schema use it without
loading any runtime module.
"""

from __future__ import annotations

import math
import os
import ssl
from pathlib import Path

TOPIC_WILDCARDS = ("+", "#")
"""MQTT's wildcard characters: never inside a topic name (MQTT 5 sec. 4.7.1)."""


def is_control_character(c: str) -> bool:
    """Whether ``c`` is a Unicode control character: C0 (U+0000..U+001F), DEL (U+007F) or C1
    (U+0080..U+009F). MQTT 5 sec. 1.5.4 says topics and client ids should not hold them, and
    mosquitto drops the connection of a client whose topic does."""
    return ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F


def _subject(name: str | None) -> str:
    return f"{name} to be " if name else ""


def type_name(value: object) -> str:
    """``type(value).__name__``, for the "got" half of a message."""
    return type(value).__name__


def expect_int(value: object, name: str | None = None, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) within ``low..high`` (inclusive, either open).

    :raises ValueError: ``"expected {name} to be an integer in low..high, got {value!r}"``.
    """
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and (low is None or value >= low) and (high is None or value <= high):
        return value
    bounds = (f" in {low}..{high}" if low is not None and high is not None else
              f" >= {low}" if low is not None else f" <= {high}" if high is not None else "")
    raise ValueError(f"expected {_subject(name)}an integer{bounds}, got {value!r}")


def expect_float(value: object, name: str | None = None, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:
    """``value`` as a float if it is a finite ``int``/``float`` (not a ``bool``) within ``low``..``high``
    (``low`` excluded with ``low_open``).

    :raises ValueError: ``"expected {name} to be a finite number in (low, high], got {value!r}"``.
    """
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high):
        return float(value)
    if low is not None and high is not None:
        bounds = f" in {'(' if low_open else '['}{low:g}, {high:g}]"
    elif low is not None:
        bounds = f" {'>' if low_open else '>='} {low:g}"
    else:
        bounds = f" <= {high:g}" if high is not None else ""
    raise ValueError(f"expected {_subject(name)}a finite number{bounds}, got {value!r}")


def expect_str(value: object, name: str | None = None) -> str:
    """``value`` if it is a ``str``; :raises ValueError: ``"expected a string, got int 3"``."""
    if isinstance(value, str):
        return value
    raise ValueError(f"expected {_subject(name)}a string, got {type_name(value)} {value!r}")


def expect_topic_level(value: object, name: str, levels: bool = False) -> str:
    """``value`` if usable inside an MQTT topic: a non-empty string without ``+``, ``#`` or NUL, with no
    ``/`` at all (one level) or, with ``levels``, no empty level (no leading, trailing or double ``/``).

    :raises ValueError: ``"expected no '/' '#' in device_id, got 'a/#'"`` and the like.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty {name}, got {value!r}")
    bad = sorted({c for c in value if c in (*TOPIC_WILDCARDS, "\x00") or (c == "/" and not levels)})
    if bad:
        raise ValueError(f"expected no {' '.join(repr(c) for c in bad)} in {name}, got {value!r}")
    controls = sorted({c for c in value if is_control_character(c)})
    if controls:
        raise ValueError(f"expected no control character in {name}, got {value!r} "
                         f"({', '.join(f'U+{ord(c):04X}' for c in controls)})")
    if levels and any(not part for part in value.split("/")):
        raise ValueError(f"expected no empty level (leading, trailing or double '/') in {name}, got {value!r}")
    return value


def _no_passphrase() -> bytes:
    raise ValueError("encrypted")


def expect_tls_files(ca_file: str | None, certfile: str | None, keyfile: str | None) -> None:
    """Load the TLS files as the connection will (:class:`ssl.SSLContext`: ``load_verify_locations``,
    ``load_cert_chain``), so that a file that is not PEM, or a key that does not match its
    certificate, is one line at validation instead of an ``ssl.SSLError`` traceback at start.

    :raises ValueError: ``"expected tls_keyfile to hold the key of the certificate in C, got K (KEY_VALUES_MISMATCH)"``
        and the like, naming the key and the file.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(f"expected tls_ca_file to hold PEM CA certificates, got {ca_file} "
                             f"({getattr(exc, 'reason', None) or exc})") from None
    if certfile is None:
        return
    for name, path, marker in (("tls_certfile", certfile, "-----BEGIN CERTIFICATE-----"),
                               ("tls_keyfile", keyfile or certfile, "PRIVATE KEY-----")):
        try:
            text = Path(path).read_bytes().decode("ascii", errors="replace")
        except OSError as exc:
            raise ValueError(f"expected a readable {name}, got {path} ({exc.strerror})") from None
        if marker not in text:
            what = "a PEM certificate" if name == "tls_certfile" else "a PEM private key"
            raise ValueError(f"expected {name} to hold {what}, got {path} (no {marker.strip('-')} block)")
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_passphrase)
    except ValueError:
        raise ValueError(f"expected an unencrypted private key in tls_keyfile, got {keyfile or certfile} "
                         f"(protected by a passphrase)") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"expected tls_keyfile to hold the key of the certificate in {certfile}, got "
                             f"{keyfile or certfile} (another key: KEY_VALUES_MISMATCH)") from None
        raise ValueError(f"expected tls_certfile and tls_keyfile to hold a PEM certificate and its key, got "
                         f"{certfile} and {keyfile or certfile} ({exc.reason or exc})") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader (or a power cut) sees the old or the new content,
    never a part: a temporary file named per process beside it (two processes writing one file never
    share it), flushed and fsync'ed, then renamed over ``path`` (``os.replace``, atomic on POSIX).

    :raises OSError: if the directory is not writable or the disk is full (the temporary file is removed).
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``count`` and ``noun`` for a message: ``1 utterance``, ``0 utterances``, ``2 utterances``
    (``plural_form`` for nouns that do not take an ``s``)."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"
