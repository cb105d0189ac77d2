"""The durable outbox: messages written before they are published, removed when acknowledged.

One SQLite database (standard-library :mod:`sqlite3`, WAL journal) holds the messages not yet
acknowledged by the broker, as ``(id, topic, payload)`` rows; ``id`` grows with every append, so
``ORDER BY id`` is the order they were produced in. The payload is stored as the serialised bytes
(the event's JSON), so the outbox does not depend on the event schema.

Durability (``PRAGMA synchronous = FULL`` in WAL mode, see https://www.sqlite.org/pragma.html#pragma_synchronous
and https://www.sqlite.org/wal.html): every append and every removal is one transaction whose WAL
frames are fsync'ed before :meth:`Outbox.append` returns. So

* a crash of the process (SIGKILL, OOM kill, a segfault in a native library) loses nothing that
  :meth:`Outbox.append` returned for;
* a power cut loses nothing that was appended either, as long as the storage honours fsync (many
  cheap SD cards acknowledge writes they still hold in their cache: with such a card the last
  transactions may be lost, never the database's consistency). What a power cut always loses is
  the audio of the utterance being spoken (it is in memory, no event was made yet) and the removal
  of an event acknowledged in the last moment, which is then sent again (a duplicate, which
  subscribers drop by ``(device_id, session, seq)``).

With ``path=None`` the database is in memory: same behaviour, nothing survives the process.

A file that is not a readable SQLite database (a storage fault) is renamed to
``outbox.sqlite3.corrupt-<unix time>`` (with its ``-wal``/``-shm`` files), logged as an error, and a
new outbox is started: the daemon keeps running instead of failing at every start.

Bounded: at most ``capacity`` rows; :meth:`Outbox.append` on a full outbox deletes the oldest rows
first (except one being sent) and returns how many it deleted, for the caller to count and log.

Not thread-safe by itself: the caller serialises access (the publisher holds its lock around
every call); the connection is opened with ``check_same_thread=False`` for that reason.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

logger = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
"""File name of the database inside the state directory."""

BUSY_TIMEOUT_S = 5.0
"""How long a write waits for a lock held by another process (two daemons sharing the file)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
)
"""


class OutboxError(RuntimeError):
    """The outbox database cannot be opened or written (a full disk, a read-only directory). One line."""


class Outbox:
    """A bounded, ordered, durable queue of ``(topic, payload)`` messages in SQLite.

    :param path: the database file (created with its directory if missing), or ``None`` for memory.
    :param capacity: maximum number of rows (>= 1).
    :raises OutboxError: if the file cannot be created or is not an outbox database.
    """

    def __init__(self, path: str | Path | None, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"expected capacity >= 1, got {capacity!r}")
        self.capacity = capacity
        self.path = None if path is None else Path(path)
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._open()
            except sqlite3.DatabaseError as exc:  # not a database (or a damaged one): keep it aside
                if self.path is None or isinstance(exc, sqlite3.OperationalError):
                    raise
                self._set_aside(exc)
                self._open()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open the outbox {self.path or ':memory:'}: {exc}") from None

    def _open(self) -> None:
        self._db = sqlite3.connect(":memory:" if self.path is None else str(self.path),
                                   timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute(_SCHEMA)
            self._count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        except sqlite3.Error:
            self._db.close()
            raise

    def _set_aside(self, error: sqlite3.Error) -> None:
        assert self.path is not None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.path}{suffix}")
            if part.exists():
                part.rename(f"{aside}{suffix}")
        logger.error("the outbox %s is unreadable (%s); moved to %s, starting an empty one", self.path, error, aside)

    @property
    def durable(self) -> bool:
        """Whether the rows survive the process (a file, not memory)."""
        return self.path is not None

    def __len__(self) -> int:
        return self._count

    def append(self, topic: str, payload: bytes, keep: int | None = None) -> int:
        """Store a message (committed, and fsync'ed for a file, before returning).

        :param keep: id of a row that must not be deleted to make room (the one being sent).
        :returns: how many of the oldest rows were deleted to stay within ``capacity``.
        :raises OutboxError: if the database cannot be written (disk full, I/O error).
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                dropped = 0
                excess = self._count + 1 - self.capacity
                if excess > 0:
                    dropped = self._db.execute(
                        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id IS NOT ? "
                        "ORDER BY id LIMIT ?)", (keep, excess)).rowcount
                self._db.execute("INSERT INTO outbox (topic, payload) VALUES (?, ?)", (topic, payload))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write the outbox {self.path or ':memory:'}: {exc}") from None
        self._count += 1 - dropped
        return dropped

    def oldest(self) -> tuple[int, str, bytes] | None:
        """The oldest row as ``(id, topic, payload)``, or ``None`` when empty."""
        row = self._db.execute("SELECT id, topic, payload FROM outbox ORDER BY id LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]), bytes(row[2]))

    def remove(self, row_id: int) -> bool:
        """Delete the row ``row_id`` (acknowledged or refused); returns whether it was there.

        :raises OutboxError: if the database cannot be written.
        """
        try:
            removed = self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,)).rowcount
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write the outbox {self.path or ':memory:'}: {exc}") from None
        self._count -= removed
        return removed > 0

    def close(self) -> None:
        """Close the database (idempotent); the rows stay in the file for the next start."""
        try:
            self._db.close()
        except sqlite3.Error as exc:  # pragma: no cover - closing a healthy connection does not fail
            logger.warning("closing the outbox: %s", exc)
