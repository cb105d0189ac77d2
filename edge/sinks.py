"""Where events go: the :class:`EventSink` interface, the stdout sink and the tee.

A sink carries events and nothing else. The MQTT publisher (:class:`edge.mqtt.publisher.MqttPublisher`)
is one; whoever needs MQTT for more than events (statistics, Home Assistant discovery) is handed
the publisher explicitly (``edge.service.daemon.Session(mqtt=...)``), never finds it inside a sink.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from types import TracebackType
from typing import IO, Protocol, Self

from edge.events import EmotionEvent

logger = logging.getLogger(__name__)

SINKS = ("mqtt", "stdout", "both")
"""Names of the event sinks (``--sink``): see :func:`edge.service.daemon.make_sinks`."""


class OutputClosed(Exception):
    """The reader of standard output went away (EPIPE: ``ser-edge replay ... | head -1``): not an
    error; the run ends quietly, exit status 0."""


class OutputError(OSError):
    """Standard output cannot be written (e.g. ENOSPC on a full disk or ``/dev/full``): events are
    lost, the run stops with one line and exit status 1."""


def stdout_to_devnull() -> None:
    """Point file descriptor 1 at ``/dev/null``, so nothing more (Python's flush of ``sys.stdout`` at
    exit included) fails on a closed or full output: the Python documentation's "Note on SIGPIPE"
    (https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (a test's StringIO): nothing to point
        pass


class EventSink(Protocol):
    """Takes events. :class:`StdoutSink`, :class:`TeeSink` and ``MqttPublisher`` implement it."""

    def start(self) -> None:
        """Begin (connect in the background); never blocks on a broker."""

    def publish(self, event: EmotionEvent) -> None:
        """Take one event; on return it is written (stdout) or stored for delivery (MQTT outbox)."""

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for what was taken to be delivered; whether it all was."""

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is left within ``timeout_s`` (0: do not wait), then stop. Idempotent."""


class StartStopContext:
    """``with sink:`` starts it and closes it at the end (for any class with ``start()`` and ``close()``)."""

    def __enter__(self) -> Self:
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()  # type: ignore[attr-defined]


class StdoutSink(StartStopContext):
    """Writes each event as one line of compact JSON (``EmotionEvent.to_json()``) to a text stream.

    For running without a broker (``ser-edge run --stdout``) and for piping into ``jq``.
    Not thread-safe beyond what the stream offers; the daemon publishes from one thread.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        """:param stream: text stream to write to; ``None`` means ``sys.stdout`` at publish time."""
        self._stream = stream
        self._published = 0
        self.failed: str | None = None
        """Why the stream can no longer be written (``"closed by its reader"``, an OS error), or ``None``."""

    @property
    def _out(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stdout

    @property
    def published_events(self) -> int:
        """Events written so far."""
        return self._published

    def start(self) -> None:
        """No-op: a stream needs no connection."""

    def publish(self, event: EmotionEvent) -> None:
        """Write ``event.to_json()`` and a newline, then flush the stream.

        :raises OutputClosed: the reader went away (EPIPE); standard output now points at /dev/null.
        :raises OutputError: any other write error (e.g. ENOSPC), naming the event and the cause; the
            event is lost and standard output points at /dev/null.
        """
        if self.failed is not None:
            raise OutputClosed(self.failed) if self.failed == "closed by its reader" else OutputError(self.failed)
        self._write(event.to_json() + "\n", f"event #{event.seq}")
        self._published += 1

    def _write(self, text: str, what: str) -> None:
        out = self._out
        try:
            if text:
                out.write(text)
            out.flush()
        except BrokenPipeError:
            self._give_up("closed by its reader")
            raise OutputClosed(f"standard output closed by its reader after {self._published} events") from None
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            self._give_up(reason)
            raise OutputError(exc.errno or errno.EIO, f"cannot write {what} to standard output ({reason}); "
                              f"{self._published} events written before it") from None

    def _give_up(self, reason: str) -> None:
        self.failed = reason
        if self._stream is None or self._stream is sys.stdout:
            stdout_to_devnull()  # what is still buffered goes nowhere, quietly
        try:  # drop the buffered text: a later flush must not fail again
            self._out.flush()
        except (OSError, ValueError):
            pass

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Flush the stream; whether everything taken was written (writes are synchronous): ``True``
        also once the reader went away (nobody wants the rest), ``False`` after a write error."""
        if self.failed is None:
            try:
                self._write("", "the buffered events")
            except (OutputClosed, OutputError):
                pass
        return self.failed in (None, "closed by its reader")

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush the stream (it is not closed: it usually is ``sys.stdout``); never raises."""
        self.flush()


class TeeSink:
    """Every event goes to each of ``sinks`` (``--sink both``: print and publish)."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def publish(self, event: EmotionEvent) -> None:
        """Every sink gets ``event``; a sink whose reader went away (:class:`OutputClosed`) is left out
        from then on (one INFO line), and :class:`OutputClosed` is raised only when none is left."""
        closed = error = None
        for sink in self.sinks:
            try:
                sink.publish(event)
            except OutputClosed as exc:
                closed = exc
            except OutputError as exc:  # the other sinks still get the event; then the run stops
                error = exc
        if error is not None:
            raise error
        if closed is not None:
            self.sinks = tuple(s for s in self.sinks if getattr(s, "failed", None) is None)
            if not self.sinks:
                raise closed
            logger.info("%s; the events go on to the other sink", closed)

    def flush(self, timeout_s: float) -> bool:
        return all([sink.flush(timeout_s) for sink in self.sinks])

    def close(self, timeout_s: float = 5.0) -> None:
        for sink in self.sinks:
            sink.close(timeout_s)
