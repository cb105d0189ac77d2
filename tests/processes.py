"""A command run as a subprocess whose stderr lines a thread collects, so a test waits on what it logs
(never on a sleep)."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path


class LoggedProcess:
    """``argv`` as a subprocess (stdout discarded); its stderr lines collected in :attr:`lines`.

    ``timeout_s``: the default wait of :meth:`wait_for_lines`, :meth:`wait`, :meth:`terminate` and :meth:`kill`.
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout_s: float = 60.0, stdin: int | None = None) -> None:
        """:param stdin: as :class:`subprocess.Popen`'s (``subprocess.PIPE``: write to ``proc.stdin``, bytes)."""
        self.timeout_s = timeout_s
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.decode("utf-8", errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_lines(self, pattern: str, count: int = 1, timeout_s: float | None = None) -> list[str]:
        """At least ``count`` stderr lines matching ``pattern`` (regex search), waiting up to ``timeout_s``
        or until stderr closes (the process ended); else AssertionError listing the log."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                remaining_s = deadline - time.monotonic()
                if len(found) >= count or remaining_s <= 0 or not self._reader.is_alive():
                    break
                self._cond.wait(remaining_s)
        assert len(found) >= count, (f"expected {count} lines matching {pattern!r} within {timeout_s} s "
                                     f"(exit status {self.proc.poll()}); stderr:\n{self.log()}")
        return found

    def wait(self, timeout_s: float | None = None) -> int:
        """The exit status, once stderr is read to its end."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        rc = self.proc.wait(timeout_s)
        self._reader.join(timeout_s)
        return rc

    def terminate(self, timeout_s: float | None = None) -> int:
        """SIGTERM, then the exit status (SIGKILL and AssertionError if it does not exit in time)."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.proc.args[0]} did not exit within {timeout_s} s of SIGTERM; "
                                 f"stderr:\n{self.log()}") from None
        finally:
            self._reader.join(timeout=5.0)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(self.timeout_s)

    def log(self) -> str:
        """The last 60 stderr lines."""
        with self._cond:
            return "\n".join(self.lines[-60:])
