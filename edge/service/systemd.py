"""systemd service notification (``sd_notify``) with the standard library only.

Under ``Type=notify`` systemd passes the path of a datagram socket in ``$NOTIFY_SOCKET``; the
service sends newline-separated ``KEY=VALUE`` assignments to it: ``READY=1`` once start-up is
done, ``STATUS=...`` for the line ``systemctl status`` shows, ``WATCHDOG=1`` as the keep-alive
ping under ``WatchdogSec=``, and ``STOPPING=1`` when shutting down. The protocol is described in
sd_notify(3) and the watchdog environment in sd_watchdog_enabled(3); this module follows
systemd 252 and does not implement the ``vsock:`` addresses added in later versions.

Outside systemd (``$NOTIFY_SOCKET`` unset) every call is a no-op, so the daemon can call the
notifier unconditionally.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

__all__ = ["SystemdNotifier", "Watchdog"]

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"

_US_PER_S = 1_000_000


class SystemdNotifier:
    """Send state changes to the service manager over ``$NOTIFY_SOCKET`` (sd_notify(3)).

    The socket address is read once, when the notifier is built. An address starting with ``@``
    names a socket in the Linux abstract namespace (the ``@`` becomes a NUL byte, as sd_notify(3)
    specifies); any other address must be an absolute filesystem path. With no address, or an
    address of another form, the notifier is disabled and every send is a no-op.

    Sending never raises: a failed send is logged once at debug level and then ignored, because
    a broken notification channel must not take the daemon down (systemd will notice the missing
    ``READY=1`` or ``WATCHDOG=1`` by itself and act on it).
    """

    def __init__(self, address: str | None = None) -> None:
        """Build a notifier for ``address``, or for ``$NOTIFY_SOCKET`` when ``address`` is None."""
        if address is None:
            address = os.environ.get(NOTIFY_SOCKET_ENV)
        self._address = _socket_address(address)
        self._failure_logged = False

    @property
    def enabled(self) -> bool:
        """True when a usable ``$NOTIFY_SOCKET`` address was found."""
        return self._address is not None

    def ready(self) -> bool:
        """Tell systemd start-up is finished (``READY=1``); ``Type=notify`` units wait for it."""
        return self.send("READY=1")

    def status(self, text: str) -> bool:
        """Set the free-form one-line status shown by ``systemctl status`` (``STATUS=text``).

        Newlines in ``text`` would start a new assignment, so they are replaced by spaces.
        """
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Ping the service watchdog (``WATCHDOG=1``); send at least every ``watchdog_interval_s()``."""
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        """Tell systemd the service is shutting down (``STOPPING=1``)."""
        return self.send("STOPPING=1")

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=value`` assignments in one datagram, e.g. ``notify(READY=1, STATUS="up")``.

        Values are converted with ``str()``; newlines in them are replaced by spaces so that one
        field cannot inject another. Returns what ``send`` returns.
        """
        lines = [f"{key}={str(value).replace(chr(10), ' ')}" for key, value in fields.items()]
        return self.send("\n".join(lines))

    def send(self, state: str) -> bool:
        """Send ``state`` verbatim (UTF-8) as one datagram to ``$NOTIFY_SOCKET``.

        Returns True when the datagram was sent, False when the notifier is disabled or the send
        failed. Never raises.
        """
        if self._address is None or not state:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(state.encode("utf-8"), self._address)
        except OSError as exc:
            if not self._failure_logged:
                self._failure_logged = True
                log.debug("sd_notify to %r failed (further failures not logged): %s", self._address, exc)
            return False
        return True

    @staticmethod
    def watchdog_interval_s() -> float | None:
        """Seconds between ``WATCHDOG=1`` pings, or None when the watchdog is not enabled for us.

        Follows sd_watchdog_enabled(3): the watchdog is enabled when ``$WATCHDOG_USEC`` holds a
        positive integer (microseconds) and ``$WATCHDOG_PID`` is unset or equal to this process's
        PID. sd_watchdog_enabled(3) recommends pinging at half the timeout, so half of
        ``$WATCHDOG_USEC`` is returned, in seconds. Malformed values give None (the C function
        returns -EINVAL there) and are logged at debug level.
        """
        usec_text = os.environ.get(WATCHDOG_USEC_ENV)
        if not usec_text:
            return None
        pid_text = os.environ.get(WATCHDOG_PID_ENV)
        if pid_text:
            try:
                pid = int(pid_text)
            except ValueError:
                log.debug("expected an integer PID in $%s, got %r", WATCHDOG_PID_ENV, pid_text)
                return None
            if pid != os.getpid():
                return None
        try:
            usec = int(usec_text)
        except ValueError:
            usec = 0
        if usec <= 0:
            log.debug("expected a positive integer in $%s, got %r", WATCHDOG_USEC_ENV, usec_text)
            return None
        return usec / _US_PER_S / 2


def _socket_address(address: str | None) -> str | bytes | None:
    """Turn a ``$NOTIFY_SOCKET`` value into an ``AF_UNIX`` address, or None if unusable."""
    if not address:
        return None
    if address.startswith("@"):
        # Abstract namespace: the leading NUL byte marks it (unix(7)).
        return b"\0" + address[1:].encode("utf-8")
    if address.startswith("/"):
        return address
    log.debug("expected an absolute path or @abstract name in $%s, got %r", NOTIFY_SOCKET_ENV, address)
    return None


class Watchdog:
    """Feeds systemd's watchdog (``WATCHDOG=1``) from every wait of the daemon.

    systemd kills a ``WatchdogSec=`` service whose pings are more than ``WatchdogSec`` apart;
    sd_watchdog_enabled(3) recommends pinging at half of that (:meth:`SystemdNotifier.watchdog_interval_s`).
    :meth:`feed` pings when a quarter of ``WatchdogSec`` has passed since the last ping, and
    :meth:`wait` never sleeps longer than that quarter in one go, so the gap between pings stays
    below ``WatchdogSec/2`` as long as no single step of work between two feeds (one audio block,
    one event) takes more than a quarter of ``WatchdogSec``, whatever the backoff settings.

    Without a watchdog (``$WATCHDOG_USEC`` unset) nothing is sent and :meth:`wait` is one plain wait.

    :param clock: monotonic seconds (injectable for tests of the schedule).
    :param healthy: ``healthy()`` is asked before every ping; while it is false no ping is sent (a
        worker thread died: systemd's watchdog then restarts the service if the daemon does not exit).
    """

    def __init__(self, notifier: SystemdNotifier, clock=None, healthy=None) -> None:
        import time

        self._notifier = notifier
        self._healthy = healthy
        self._clock = clock or time.monotonic
        half = notifier.watchdog_interval_s()  # WatchdogSec / 2
        self.period_s: float | None = half / 2 if half else None
        """Seconds between pings (``WatchdogSec/4``), or ``None`` without a watchdog."""
        self._last = float("-inf")

    def feed(self, force: bool = False) -> None:
        """Ping if :attr:`period_s` has passed since the last ping (the first call always pings), or
        with ``force`` (before a step that may take a while, such as opening a device)."""
        if self.period_s is None or (self._healthy is not None and not self._healthy()):
            return
        now = self._clock()
        if force or now - self._last >= self.period_s:
            self._notifier.watchdog()
            self._last = now

    def wait(self, event, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for ``event`` (a :class:`threading.Event`), feeding the
        watchdog on the way; returns whether the event is set."""
        deadline = self._clock() + max(0.0, timeout_s)
        while True:
            self.feed()
            remaining_s = deadline - self._clock()
            if remaining_s <= 0:
                return event.is_set()
            if event.wait(remaining_s if self.period_s is None else min(remaining_s, self.period_s)):
                return True


JOURNAL_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
"""Python log level -> syslog priority (sd-daemon(3): a ``<N>`` prefix on a line sets its priority)."""


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``: the journal reads the priority from the prefix and adds its own time stamp."""

    def format(self, record: logging.LogRecord) -> str:
        priority = JOURNAL_PRIORITIES.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def stderr_is_journal(environ=None) -> bool:
    """Whether stderr is connected to the systemd journal: ``$JOURNAL_STREAM`` (``device:inode``, set by
    systemd for a service's stdout/stderr) names the stderr file (systemd.exec(5))."""
    environ = os.environ if environ is None else environ
    value = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        status = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)
