"""Where events go: the :class:`EventSink` interface, the stdout sink and the tee.

A sink carries events and nothing else. The MQTT publisher (:class:`edge.mqtt.publisher.MqttPublisher`)
is one; whoever needs MQTT for more than events (statistics, Home Assistant discovery) is handed
the publisher explicitly (``edge.service.daemon.Session(mqtt=...)``), never finds it inside a sink.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import IO, Protocol, Self

from edge.events import EmotionEvent

SINKS = ("mqtt", "stdout", "both")
"""Names of the event sinks (``--sink``): see :func:`edge.service.daemon.make_sinks`."""


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

        :raises OSError: if the stream cannot be written (e.g. a closed pipe).
        """
        out = self._out
        out.write(event.to_json() + "\n")
        out.flush()
        self._published += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Flush the stream; returns ``True`` (writes are synchronous)."""
        self._out.flush()
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush the stream (it is not closed: it usually is ``sys.stdout``)."""
        self._out.flush()


class TeeSink:
    """Every event goes to each of ``sinks`` (``--sink both``: print and publish)."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def publish(self, event: EmotionEvent) -> None:
        for sink in self.sinks:
            sink.publish(event)

    def flush(self, timeout_s: float) -> bool:
        return all([sink.flush(timeout_s) for sink in self.sinks])

    def close(self, timeout_s: float = 5.0) -> None:
        for sink in self.sinks:
            sink.close(timeout_s)
