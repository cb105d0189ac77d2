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

A file that is not ours is set aside at open: not a readable SQLite database, a database with
other tables than the outbox's or an ``outbox`` table of other columns (another program's file, an
older schema), or one that fails ``PRAGMA quick_check`` (a damaged page, which ``COUNT(*)`` alone
does not notice). It is renamed to ``outbox.sqlite3.corrupt-<unix time>`` (with its ``-wal``/``-shm``
files), logged as one error, and a new outbox is started: the daemon keeps running instead of
failing at every start. A page found damaged later (a read or write raising SQLite's "database disk
image is malformed") is handled the same way; the rows of that file are counted in :attr:`Outbox.lost`.

A storage error (disk full, I/O error, the file or its directory deleted) never stops the queue:
the outbox **degrades** to memory. The rows still readable on disk are moved into an in-memory
queue bounded by the same ``capacity`` (the oldest dropped and counted on overflow, as on disk),
one ERROR line gives SQLite's own reason, and :attr:`Outbox.state` says ``"degraded: <reason>"``.
The disk is tried again at most every :data:`RETRY_S` seconds (on any call, or :meth:`Outbox.recover`):
once a transaction succeeds, the rows in memory are written back in their order (same ids) and one
INFO line says the outbox recovered. A deleted state directory is not created again (systemd's
``StateDirectory=`` makes it at the next start); until then the events live in memory only and
:meth:`Outbox.close` does not claim to keep them.

The WAL stays small: SQLite checkpoints it after :data:`WAL_AUTOCHECKPOINT_PAGES` pages
(``PRAGMA wal_autocheckpoint``; the default is 1000 pages, about 4 MB) and cuts the file back to
:data:`JOURNAL_SIZE_LIMIT_BYTES` when it is reused (``PRAGMA journal_size_limit``), and it is
truncated to 0 bytes whenever the queue becomes empty (``wal_checkpoint(TRUNCATE)``). With one
connection and events of a few kB, the ``-wal`` file stays below :data:`WAL_MAX_BYTES`; a reader in
another process holding a snapshot can hold a checkpoint back (https://www.sqlite.org/wal.html).

Bounded: at most ``capacity`` rows; :meth:`Outbox.append` on a full outbox deletes the oldest rows
first (except one being sent) and returns how many it deleted, for the caller to count and log.

Not thread-safe by itself: the caller serialises access (the publisher holds its lock around
every call); the connection is opened with ``check_same_thread=False`` for that reason.
"""

from __future__ import annotations

import collections
import logging
import os
import sqlite3
import time
from pathlib import Path

logger = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
"""File name of the database inside the state directory."""

BUSY_TIMEOUT_S = 5.0
"""How long a write waits for a lock held by another process (two daemons sharing the file)."""

RETRY_S = 5.0
"""A degraded outbox tries the disk again at most this often."""

WAL_AUTOCHECKPOINT_PAGES = 16
"""``PRAGMA wal_autocheckpoint``: a checkpoint after every this many WAL pages (64 kB at 4 kB pages)."""

JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024
"""``PRAGMA journal_size_limit``: the ``-wal`` file is cut back to this when SQLite reuses it."""

WAL_MAX_BYTES = 128 * 1024
"""The bound of the ``-wal`` file (one connection, events of a few kB): see the module docstring."""

_COLUMNS = [("id", "INTEGER"), ("topic", "TEXT"), ("payload", "BLOB")]
"""The ``outbox`` table's columns (name, declared type), as ``PRAGMA table_info`` lists them."""

_TABLES = {"outbox", "sqlite_sequence"}
"""The tables of an outbox database (``sqlite_sequence`` is SQLite's, for ``AUTOINCREMENT``)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
)
"""

_DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
"""SQLite's primary result codes of a damaged or foreign file (https://www.sqlite.org/rescode.html)."""


class OutboxError(RuntimeError):
    """The outbox database cannot be opened or written (a full disk, a read-only directory). One line."""


class NotAnOutbox(sqlite3.DatabaseError):
    """The file is an SQLite database but not an outbox, or fails ``PRAGMA quick_check``."""


def is_damage(error: sqlite3.Error) -> bool:
    """Whether ``error`` means the file is damaged or not ours (set it aside) rather than a storage
    error (disk full, I/O error: degrade to memory and retry)."""
    if isinstance(error, NotAnOutbox):
        return True
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return type(error) is sqlite3.DatabaseError
    return code & 0xFF in _DAMAGE_CODES


class Outbox:
    """A bounded, ordered, durable queue of ``(topic, payload)`` messages in SQLite (in memory while
    its storage fails, see the module docstring).

    :param path: the database file (created with its directory if missing), or ``None`` for memory.
    :param capacity: maximum number of rows (>= 1).
    :param retry_s: a degraded outbox tries the disk again at most this often.
    :raises OutboxError: if the directory cannot be created (a storage error opening the file
        starts the outbox degraded, in memory).
    """

    def __init__(self, path: str | Path | None, capacity: int, retry_s: float = RETRY_S) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"expected capacity >= 1, got {capacity!r}")
        self.capacity = capacity
        self.path = None if path is None else Path(path)
        self.retry_s = retry_s
        self._db: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self._count = 0
        self._last_id = 0  # the largest id given out: ids never go back, on disk or in memory
        self._memory: collections.deque[tuple[int, str, bytes]] = collections.deque()
        self._stranded = 0  # rows left on disk, unreadable when the outbox degraded
        self._unread = False  # the disk may hold rows that are not in memory (keep them at recovery)
        self._storage_error: str | None = None  # why the outbox is in memory; None: on disk
        self._retry_at = 0.0
        self._lost = 0
        self._closed = False
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open_or_set_aside("unreadable")
        except sqlite3.OperationalError as exc:  # a full disk or an I/O error at start: go on in memory
            if self.path is None:
                raise OutboxError(f"cannot open the outbox :memory:: {exc}") from None
            self._degrade(exc)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open the outbox {self.path or ':memory:'}: {exc}") from None

    def _open_or_set_aside(self, why: str) -> None:
        """Open the file; one that is damaged or not ours is set aside and a new one started."""
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if self.path is None or not is_damage(exc):
                raise
            self._set_aside(exc, why)
            self._open()

    def _open(self) -> None:
        db = sqlite3.connect(":memory:" if self.path is None else str(self.path),
                             timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:  # checked before anything is written: another program's file stays as it was
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables - _TABLES:
                raise NotAnOutbox(f"not an outbox database: it has the tables {sorted(tables - _TABLES)}")
            if "outbox" in tables:
                columns = [(row[1], row[2].upper()) for row in db.execute("PRAGMA table_info(outbox)")]
                if columns != _COLUMNS:
                    raise NotAnOutbox(f"not an outbox database: its outbox table has the columns {columns}")
            check = [row[0] for row in db.execute("PRAGMA quick_check")]
            if check != ["ok"]:
                raise NotAnOutbox(f"damaged: PRAGMA quick_check says {'; '.join(map(str, check[:3]))}")
            if self.path is not None:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")
                db.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
                db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
            db.execute(_SCHEMA)
            self._count = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            last = db.execute("SELECT MAX(seq) FROM sqlite_sequence WHERE name = 'outbox'").fetchone()[0]
            self._last_id = max(self._last_id, last or 0)
            self._identity = self._stat()
        except (sqlite3.Error, OSError) as exc:
            db.close()
            if isinstance(exc, OSError):  # the file vanished as it was opened: a storage error
                raise sqlite3.OperationalError(f"cannot stat {self.path}: {exc.strerror}") from None
            raise
        self._db = db

    def _stat(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        st = os.stat(self.path)
        return st.st_dev, st.st_ino

    def _check_file(self) -> None:
        """:raises sqlite3.OperationalError: if the file opened is no longer at ``path`` (deleted,
        its directory too): writes would go to a file nobody will read."""
        if self.path is None:
            return
        try:
            same = self._stat() == self._identity
        except OSError as exc:
            same, why = False, exc.strerror
        else:
            why = "replaced by another file"
        if not same:
            raise sqlite3.OperationalError(f"the file was deleted or moved ({why})")

    def _set_aside(self, error: sqlite3.Error, why: str) -> None:
        assert self.path is not None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.path}{suffix}")
            if part.exists():
                part.rename(f"{aside}{suffix}")
        logger.error("the outbox %s is %s (%s); moved to %s, starting an empty one", self.path, why, error, aside)

    # ------------------------------------------------------------------ state

    @property
    def durable(self) -> bool:
        """Whether the rows survive the process: a file, and not degraded to memory."""
        return self.path is not None and self._storage_error is None

    @property
    def degraded(self) -> bool:
        """Whether the rows are in memory because the storage failed (see :attr:`storage_error`)."""
        return self._storage_error is not None

    @property
    def storage_error(self) -> str | None:
        """SQLite's reason the outbox is degraded to memory, e.g. ``"database or disk is full"``."""
        return self._storage_error

    @property
    def state(self) -> str:
        """``"durable"``, ``"memory"`` (no file configured) or ``"degraded: <reason>"``."""
        if self._storage_error is not None:
            return f"degraded: {self._storage_error}"
        return "durable" if self.path is not None else "memory"

    @property
    def lost(self) -> int:
        """Rows lost with a file found damaged while running (set aside, its rows unreadable)."""
        return self._lost

    def __len__(self) -> int:
        return self._count

    # ------------------------------------------------------------------ the queue

    def append(self, topic: str, payload: bytes, keep: int | None = None) -> int:
        """Store a message (committed, and fsync'ed for a file, before returning; in memory while
        the storage fails).

        :param keep: id of a row that must not be deleted to make room (the one being sent).
        :returns: how many of the oldest rows were deleted to stay within ``capacity``.
        """
        self.recover()
        if self._db is not None:
            try:
                return self._append_on_disk(topic, payload, keep)
            except sqlite3.Error as exc:
                self._failed(exc)
            if self._db is not None:  # a damaged file was replaced by a new one
                try:
                    return self._append_on_disk(topic, payload, keep)
                except sqlite3.Error as exc:
                    self._degrade(exc)
        dropped = 0
        while len(self._memory) >= self.capacity:
            index = 1 if self._memory[0][0] == keep and len(self._memory) > 1 else 0
            del self._memory[index]
            dropped += 1
        self._last_id += 1
        self._memory.append((self._last_id, topic, payload))
        self._count += 1 - dropped
        return dropped

    def _append_on_disk(self, topic: str, payload: bytes, keep: int | None) -> int:
        assert self._db is not None
        self._check_file()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            dropped = 0
            excess = self._count + 1 - self.capacity
            if excess > 0:
                dropped = self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id IS NOT ? "
                    "ORDER BY id LIMIT ?)", (keep, excess)).rowcount
            row_id = self._db.execute("INSERT INTO outbox (topic, payload) VALUES (?, ?)",
                                      (topic, payload)).lastrowid
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._last_id = max(self._last_id, row_id or 0)
        self._count += 1 - dropped
        return dropped

    def _rollback(self) -> None:
        """Roll back an open transaction; never raises (SQLite may have rolled back by itself, and
        the error that got us here is the one to report)."""
        if self._db is not None and self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                logger.debug("rollback of the outbox failed: %s", exc)

    def oldest(self) -> tuple[int, str, bytes] | None:
        """The oldest row as ``(id, topic, payload)``, or ``None`` when empty."""
        self.recover()
        if self._db is not None:
            try:
                row = self._db.execute("SELECT id, topic, payload FROM outbox ORDER BY id LIMIT 1").fetchone()
                if row is None:
                    return None
                if not (isinstance(row[0], int) and isinstance(row[1], str) and isinstance(row[2], bytes)):
                    # a damaged page can read as NULLs where the schema forbids them
                    raise NotAnOutbox(f"damaged: row {row[0]!r} reads as {tuple(type(v).__name__ for v in row)}")
                return row[0], row[1], row[2]
            except sqlite3.Error as exc:
                self._failed(exc)
            if self._db is not None:  # a damaged file was replaced by a new one: empty
                return None
        return self._memory[0] if self._memory else None

    def remove(self, row_id: int) -> bool:
        """Delete the row ``row_id`` (acknowledged or refused); returns whether it was there."""
        if self._db is not None:
            try:
                self._check_file()
                removed = self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,)).rowcount
                self._count -= removed
                if removed and not self._count:
                    self._truncate_wal()
                return removed > 0
            except sqlite3.Error as exc:
                self._failed(exc)
            if self._db is not None:  # a damaged file was replaced by a new one: the row is gone
                return False
        if self._memory and self._memory[0][0] == row_id:
            self._memory.popleft()
        else:
            index = next((i for i, row in enumerate(self._memory) if row[0] == row_id), None)
            if index is None:
                return False
            del self._memory[index]
        self._count -= 1
        return True

    def _truncate_wal(self) -> None:
        assert self._db is not None
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # the next checkpoint will do
            logger.debug("checkpoint of the empty outbox failed: %s", exc)

    # ------------------------------------------------------------------ failures

    def _failed(self, error: sqlite3.Error) -> None:
        """A call on the file failed: set a damaged file aside (and start a new one), or degrade to
        memory for a storage error. ``self._db`` is the new file, or ``None`` when degraded."""
        if is_damage(error) and self.path is not None:
            self._close_db()
            lost, self._count = self._count, 0
            self._lost += lost
            try:
                self._set_aside(error, f"damaged ({lost} events in it lost)")
                self._open()
                return
            except (sqlite3.Error, OSError) as exc:
                error = exc if isinstance(exc, sqlite3.Error) else sqlite3.OperationalError(str(exc))
        self._degrade(error)

    def _degrade(self, error: sqlite3.Error) -> None:
        """Move the rows still readable into memory and go on there; one ERROR line."""
        rows: list[tuple[int, str, bytes]] = []
        if self._db is not None:
            self._rollback()
            try:
                rows = [(int(i), str(t), bytes(p)) for i, t, p in
                        self._db.execute("SELECT id, topic, payload FROM outbox ORDER BY id")]
            except sqlite3.Error as exc:
                logger.debug("cannot read the outbox's rows into memory: %s", exc)
                self._stranded, self._unread = self._count, True
        else:  # never opened: whatever the file holds stays there
            self._unread = True
        self._close_db()
        self._memory.extend(rows)
        self._count = self._stranded + len(self._memory)
        self._storage_error = str(error)
        self._retry_at = time.monotonic() + self.retry_s
        logger.error("cannot write the outbox %s: %s; keeping events in memory (at most %d, lost if the process "
                     "stops before the disk works again: retried every %g s)", self.path or ":memory:", error,
                     self.capacity, self.retry_s)

    def recover(self, force: bool = False) -> bool:
        """Try the disk again when degraded (at most every :attr:`retry_s` seconds unless ``force``):
        write the rows in memory back, in order, and go on on disk.

        :returns: whether the outbox is on disk (not degraded) after the call.
        """
        if self._storage_error is None:
            return True
        if not force and time.monotonic() < self._retry_at:
            return False
        self._retry_at = time.monotonic() + self.retry_s
        try:
            self._open_or_set_aside("unreadable")
            assert self._db is not None
            self._db.execute("BEGIN IMMEDIATE")
            if self._unread:  # after the rows on disk, with new ids (the one in flight may be sent twice)
                self._db.executemany("INSERT INTO outbox (topic, payload) VALUES (?, ?)",
                                     [row[1:] for row in self._memory])
            else:  # every row on disk is in memory too, maybe removed since: same rows, same ids
                self._db.execute("DELETE FROM outbox")
                self._db.executemany("INSERT INTO outbox (id, topic, payload) VALUES (?, ?, ?)", self._memory)
            self._db.execute("COMMIT")
            self._count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            self._rollback()
            self._close_db()
            logger.debug("the outbox %s is still not writable: %s", self.path, exc)
            return False
        moved = len(self._memory)
        self._memory.clear()
        self._stranded, self._unread = 0, False
        self._storage_error = None
        logger.info("the outbox %s recovered: writable again, %d events moved back from memory", self.path, moved)
        return True

    def _close_db(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error as exc:
                logger.debug("closing the outbox: %s", exc)
            self._db = None

    def close(self) -> None:
        """Close the database (idempotent); the rows stay in the file for the next start. A degraded
        outbox tries the disk once more first; :attr:`durable` then says whether the rows are kept."""
        if self._closed:
            return
        self._closed = True
        if self._db is not None:
            try:
                self._check_file()
            except sqlite3.Error as exc:
                self._degrade(exc)
        if self._storage_error is not None:
            self.recover(force=True)
        self._close_db()
