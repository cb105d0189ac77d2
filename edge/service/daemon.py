"""The daemon: wires audio source → resampler → pipeline → events → publisher.

Two drivers share everything after the audio source: :func:`run_microphone` (``ser-edge run``,
a sounddevice input stream whose callback only enqueues) and :func:`run_replay`
(``ser-edge replay``, audio files read block by block). Both stop cleanly on SIGTERM, SIGINT or
SIGHUP (there is no reload: a changed config takes a restart, and a hangup of the terminal or of a
``nohup``-less session is a stop): the open utterance is flushed, queued events are delivered for up
to :data:`FLUSH_TIMEOUT_S`, ``offline`` is published. ``ser-edge run`` then exits 0 also when the
broker is down, if the events it could not deliver stay in the durable outbox (the log says how
many); with an in-memory outbox they are lost, counted, and the status is 1. A second signal exits at
once (status 128 + signal number), saying how many unacknowledged events stay in the durable outbox,
or are lost with an in-memory one.

Under systemd's watchdog every wait of the microphone driver (backoff, reopen, reading, the final
flush) goes through :class:`edge.service.systemd.Watchdog`, so pings keep coming while the microphone is
missing or the broker is down.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge import __version__
from edge.audio.formats import RawFormat
from edge.audio.io import AudioError, TruncatedAudio
from edge.audio.io import blocks as input_blocks
from edge.audio.live import LiveSource, Supervisor, live_source
from edge.audio.resample import StreamingResampler
from edge.dsp.normalize import ADAPTATION_STATE_FILE, restore_adaptation, save_adaptation
from edge.events import EmotionEvent, EventFactory, utc_now_rfc3339
from edge.exitcodes import EXIT_FAILURE, EXIT_OK
from edge.model import INTERPRETER, EmotionModel, load_model
from edge.mood import REPUBLISH_STEP, MoodState, MoodTracker, mood_json
from edge.mqtt.homeassistant import HomeAssistantDiscovery
from edge.mqtt.publisher import MqttPublisher
from edge.mqtt.topics import EMOTION_QOS, mood_topic, stats_topic
from edge.pipeline import Pipeline
from edge.postprocess import Decision
from edge.service.stats import Stats
from edge.service.stats import to_json as stats_to_json
from edge.service.systemd import SystemdNotifier, Watchdog
from edge.settings import Settings
from edge.sinks import SINKS, EventSink, OutputClosed, StdoutSink, TeeSink
from edge.validate import plural

logger = logging.getLogger(__name__)

ADAPTATION_SAVE_EVERY = 20
"""The live daemon writes the adaptation state every this many utterances (and at shutdown)."""

FLUSH_TIMEOUT_S = 10.0
"""How long the daemon waits at the end for the broker to acknowledge every event."""

FLUSH_SLICE_S = 0.5
"""The final flush waits in slices of at most this, checking the stop flag and feeding the watchdog."""

READ_TIMEOUT_S = 0.5
"""Longest wait for one microphone block before the loop checks the stream and the stop flag."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""Signals that stop the daemon cleanly (SIGHUP too: there is nothing to reload)."""


class StopFlag:
    """Set by SIGTERM/SIGINT/SIGHUP (installed with :meth:`install`); the loops poll it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._stopping = False
        self.signals = 0
        self.pending_report: Callable[[], str] | None = None
        """Says what happens to the unacknowledged events when a second signal exits at once (set by
        the driver: :meth:`Session.unacknowledged_report`)."""

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        # Count first, log after: a second signal can run this handler inside the first one's logging.
        self.signals += 1
        first = self.signals == 1
        self._stopping = True
        # Event.set() takes the Event's internal lock, which the main thread may hold at this very moment
        # (the handler runs on top of it, e.g. inside Event.wait()): setting it here could deadlock the
        # process before anything is logged. Another thread sets it as soon as the main thread lets go.
        threading.Thread(target=self.event.set, name="stop-signal", daemon=True).start()
        name = signal.Signals(signum).name
        if not first:  # the user (or systemd) does not want to wait
            try:
                report = self.pending_report() if self.pending_report is not None else ""
            except Exception as exc:  # noqa: BLE001 - exiting anyway; say what could not be counted
                report = f"unacknowledged events not counted: {exc}"
            logger.warning("received %s again, exiting now%s", name, f" ({report})" if report else "")
            sys.stderr.flush()
            os._exit(128 + signum)
        logger.info("received %s, stopping (send it again to exit at once)", name)

    def __bool__(self) -> bool:
        return self._stopping or self.event.is_set()


REPLAY_DEVICE_SUFFIX = "-replay"
"""``replay`` without an explicit device id publishes as ``<host>-replay``, never as the live device."""


def replay_device_id(settings: Settings) -> tuple[str, bool]:
    """``(device_id, explicit)`` for ``replay``: the configured id (flag or config file) if any,
    else ``<host name>-replay`` so a replay never impersonates the daemon of the same host."""
    if settings.device_id:
        return settings.device_id, True
    return settings.resolved_device_id + REPLAY_DEVICE_SUFFIX, False


def make_sinks(settings: Settings, kind: str, device_id: str | None = None,
               announce: bool = True) -> tuple[EventSink, MqttPublisher | None]:
    """The event sink, not started, and the MQTT publisher inside it (``None`` without MQTT):
    ``"mqtt"`` -> the publisher, ``"stdout"`` -> :class:`edge.sinks.StdoutSink`, ``"both"`` -> a
    :class:`edge.sinks.TeeSink` of both. With ``mqtt.enabled = false`` in the config, MQTT is
    replaced by stdout.

    :param device_id: the events' device id (default: ``settings.resolved_device_id``).
    :param announce: publish the retained status (``online``/``offline``, last will).
    """
    if kind not in SINKS:
        raise ValueError(f"expected a sink in {SINKS}, got {kind!r}")
    if kind == "stdout" or not settings.mqtt.enabled:
        return StdoutSink(), None
    mqtt = MqttPublisher(settings.mqtt_settings(), device_id or settings.resolved_device_id, availability=announce)
    return (TeeSink(StdoutSink(), mqtt) if kind == "both" else mqtt), mqtt


SPEED_MIN_AUDIO_S = 60.0
"""Audio (seconds) below which the end-of-run line gives no real-time factor (:meth:`Session.speed_note`)."""


class Session:
    """Model, pipeline, event factory, sink and statistics: what both drivers share.

    The drivers call :meth:`feed` for every block (and :meth:`tick` while no audio arrives);
    every ``mqtt.stats_interval_s`` of wall-clock time a retained stats message
    (:mod:`edge.service.stats`) is published, and once more by :meth:`close`. With a model that has
    an arousal output and ``[mood] enabled``, every event updates the mood state (:mod:`edge.mood`),
    which relaxes in silence on the ticks (audio time) and goes out retained on ``.../mood``.
    """

    def __init__(self, settings: Settings, sink_kind: str, device_id: str | None = None,
                 announce: bool = True, persist_adaptation: bool = False, print_mood: bool = False) -> None:
        """:param device_id: the events' device id (default: ``settings.resolved_device_id``).
        :param announce: publish retained status, stats and Home Assistant discovery (a replay
            without an explicit device id does not).
        :param persist_adaptation: restore the adaptive normalisation from the state directory at
            start and keep it there (:mod:`edge.dsp.normalize`; the live daemon, not a replay).
        :param print_mood: also write each mood message as a JSON line on standard output (``replay --mood``)."""
        self.settings = settings
        device_id = device_id or settings.resolved_device_id
        self.model: EmotionModel = load_model(settings.model.path, num_threads=settings.model.num_threads)
        self.pipeline = Pipeline.for_model(self.model, settings.decision)
        self.adaptation_path = None
        if persist_adaptation and settings.state_dir is not None and self.pipeline.normalizer.adaptive:
            self.adaptation_path = settings.state_dir / ADAPTATION_STATE_FILE
            logger.info(restore_adaptation(self.adaptation_path, self.pipeline.normalizer,
                                           self.model.manifest.model_id))
        self.events = EventFactory(device_id, self.model.manifest)
        self.clock = self.events.clock
        """The capture clock: sources mark (stream seconds, wall time) anchors on it."""
        self.sink, self.mqtt = make_sinks(settings, sink_kind, device_id, announce)
        """The events go to :attr:`sink`; :attr:`mqtt` is the broker handle for stats and discovery
        (the publisher inside the sink), ``None`` without MQTT."""
        self.rate_hz = self.model.manifest.features.sample_rate_hz
        self.stats = Stats()
        self.stats_interval_s = settings.mqtt.stats_interval_s if settings.mqtt.enabled and announce else 0.0
        self.stats_topic = stats_topic(settings.mqtt.topic_prefix, device_id)
        self._next_stats_at = float("inf")
        self.mood: MoodTracker | None = None
        """The mood state (:mod:`edge.mood`); ``None`` when disabled or the model has no arousal."""
        if settings.mood.enabled and "arousal" in self.model.manifest.dimensions:
            self.mood = MoodTracker(settings.mood)
        elif settings.mood.enabled:
            logger.info("no mood state: model %s has no arousal output", self.model.manifest.model_id)
        self.mood_topic = mood_topic(settings.mqtt.topic_prefix, device_id)
        self._mood_retained = self.mood is not None and self.mqtt is not None and announce
        self._print_mood = print_mood and self.mood is not None
        self._mood_sent: MoodState | None = None
        self._mood_lock = threading.Lock()  # the daemon's loop and paho's connect hook both send it
        self.homeassistant: HomeAssistantDiscovery | None = None
        publisher = self.mqtt
        if publisher is not None and self._mood_retained:
            publisher.add_on_connected(self._resend_mood)
        if publisher is not None and self.stats_interval_s > 0:  # the source's state is known at once after
            publisher.add_on_connected(self.publish_stats)        # a connect, not one interval later
        if publisher is not None and announce:
            self.homeassistant = HomeAssistantDiscovery.for_settings(settings, device_id, self.model.manifest,
                                                                     __version__)
            self.homeassistant.attach(publisher)  # before start(): configs (or their removal) follow every connect

    @property
    def audio_s(self) -> float:
        """Seconds of audio fed so far."""
        return self.stats.audio_s

    @property
    def cpu_s(self) -> float:
        """CPU seconds spent processing it."""
        return self.stats.cpu_s

    def speed_note(self) -> str:
        """``", 310x real time (audio s per CPU s)"`` for the end-of-run line, or ``""`` below
        :data:`SPEED_MIN_AUDIO_S` of audio (or no CPU time counted), where the first blocks' one-off
        costs (the interpreter's first invocation, numpy's and the features' caches) dominate and the
        figure says nothing about the steady rate."""
        if self.audio_s < SPEED_MIN_AUDIO_S or self.cpu_s <= 0:
            return ""
        return f", {self.audio_s / self.cpu_s:.0f}x real time (audio s per CPU s)"

    def start(self) -> None:
        logger.info("ser-edge %s, model %s, interpreter %s, device id %s, session %s",
                    __version__, self.model.manifest.model_id, INTERPRETER, self.events.device_id,
                    self.events.session)
        self.stats.reset()
        if self.stats_interval_s > 0:
            self._next_stats_at = time.monotonic() + self.stats_interval_s
        self.sink.start()

    def feed(self, samples: np.ndarray) -> None:
        started = time.process_time()
        self._emit(self.pipeline.process(samples))
        self.stats.record_block(samples.size / self.rate_hz, time.process_time() - started)
        self.tick()

    def tick(self) -> None:
        """Publish the stats message if ``stats_interval_s`` has passed since the last one (wall clock);
        let the mood relax in silence (audio time), publishing it when its level changed or it moved
        by :data:`edge.mood.REPUBLISH_STEP`."""
        if self.mood is not None and self._mood_sent is not None:
            state = self.mood.decay(self.audio_s)
            if (state.level != self._mood_sent.level
                    or abs(state.arousal_ema - self._mood_sent.arousal_ema) >= REPUBLISH_STEP):
                self._send_mood(state)
        now = time.monotonic()
        if now >= self._next_stats_at:
            self._next_stats_at = now + self.stats_interval_s
            self.publish_stats()

    @property
    def dropped_events(self) -> int:
        """Events lost by the MQTT publisher (outbox overflow, in-memory outbox at close); 0 without MQTT."""
        return self.mqtt.dropped_events if self.mqtt is not None else 0

    @property
    def refused_events(self) -> int:
        """Events the broker refused (PUBACK reason >= 0x80); 0 without MQTT."""
        return self.mqtt.refused_events if self.mqtt is not None else 0

    @property
    def pending(self) -> int:
        """Events not yet acknowledged by the broker; 0 without MQTT."""
        return self.mqtt.pending if self.mqtt is not None else 0

    def unacknowledged_report(self) -> str:
        """What happens to the events not yet acknowledged if the process exits now: ``"N unacknowledged
        events stay in the durable outbox for the next start"``, or ``"... are lost (the outbox is in
        memory)"``; ``""`` without MQTT or with none pending."""
        if self.mqtt is None:
            return ""
        pending, state = self.mqtt.pending, self.mqtt.outbox_state
        if not pending:
            return "no unacknowledged events"
        if state == "durable":
            return f"{pending} unacknowledged events stay in the durable outbox for the next start"
        return f"{pending} unacknowledged events are lost (the outbox is {'in ' if state == 'memory' else ''}{state})"

    def stats_payload(self) -> dict:
        """The current stats message (:data:`edge.service.stats.STATS_FIELDS`)."""
        return self.stats.payload(
            events=self.events.seq, utterances=self.pipeline.utterances,
            short_utterances=self.pipeline.short_utterances, dropped_events=self.dropped_events,
            refused_events=self.refused_events, pending=self.pending, interpreter=INTERPRETER,
            model=self.model.manifest.model_id, version=__version__,
            outbox=self.mqtt.outbox_state if self.mqtt is not None else "none",
        )

    def set_source_state(self, state: str) -> None:
        """Record the audio source's state; a change is published in the stats message at once."""
        if state != self.stats.source_state:
            self.stats.source_state = state
            if self.stats_interval_s > 0:
                self.publish_stats()

    def publish_stats(self) -> None:
        """Publish the retained stats message now; skipped while the broker is unreachable (a stale
        snapshot queued during an outage is worth nothing, and paho's queue for it is unbounded)."""
        if self.mqtt is None:
            return
        if not self.mqtt.connected:
            logger.debug("broker unreachable; stats not published")
            return
        self.mqtt.publish_raw(self.stats_topic, stats_to_json(self.stats_payload()), retain=True, qos=EMOTION_QOS)

    def end_of_input(self) -> None:
        self._emit(self.pipeline.flush())

    def sink_alive(self) -> bool:
        """Whether the sink's worker threads run (``False`` once the MQTT sender thread or paho's network
        thread died)."""
        return self.mqtt is None or self.mqtt.alive

    def _emit(self, decisions: list[Decision]) -> None:
        for decision in decisions:  # an unsure decision is still an event (it says so); only the
            if not decision.publish:  # user's decision.confidence_threshold holds one back
                logger.info("utterance %.2f-%.2f s below the confidence threshold (%.2f), not published",
                            decision.start_s, decision.end_s, decision.confidence)
                continue
            if self.adaptation_path is not None and self.pipeline.utterances % ADAPTATION_SAVE_EVERY == 0:
                self.save_adaptation()
            event = self.events.make(decision)
            self.sink.publish(event)  # stored in the outbox (durable with a state directory) on return
            logger.info("event #%d %s %.2f%s [%.2f-%.2f s]", event.seq, event.label, event.confidence,
                        " (unsure)" if event.unsure else "", event.start_s, event.end_s)
            self._update_mood(event)

    def _update_mood(self, event: EmotionEvent) -> None:
        """Feed the event's arousal to the mood state and send it. The payload's values (rounded as
        subscribers see them) are used, so a subscriber recomputes the same average from the events."""
        if self.mood is None or event.arousal is None:
            return
        payload = event.to_dict()
        self._send_mood(self.mood.update(payload["arousal"], payload["end_s"]))

    def _send_mood(self, state: MoodState) -> None:
        """Publish ``state`` retained (skipped while the broker is unreachable: :meth:`_resend_mood`
        sends the latest on the next connect), print it with ``print_mood``, log a level change."""
        text = mood_json(state, self.events.device_id, self.mood.params.tau_s, utc_now_rfc3339())
        with self._mood_lock:  # so a reconnect never sends an older state after this one
            previous, self._mood_sent = self._mood_sent, state
            if self._mood_retained and self.mqtt.connected:
                self.mqtt.publish_raw(self.mood_topic, text, retain=True, qos=EMOTION_QOS)
        if self._print_mood:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        if previous is None or previous.level != state.level:
            logger.info("mood %s (arousal %.2f over %d utterances)", state.level, state.arousal_ema, state.utterances)

    def _resend_mood(self) -> None:
        """On every connect (paho's thread): the latest mood state, retained; before the first
        utterance the initial one (``neutral`` at rest, 0 utterances), so a restart does not leave a
        previous run's mood standing."""
        with self._mood_lock:
            state = self._mood_sent or self.mood.state
            text = mood_json(state, self.events.device_id, self.mood.params.tau_s, utc_now_rfc3339())
            self.mqtt.publish_raw(self.mood_topic, text, retain=True, qos=EMOTION_QOS)

    def save_adaptation(self) -> None:
        """Keep the adaptive normalisation's statistics in the state directory (a failure is logged once)."""
        try:
            save_adaptation(self.adaptation_path, self.pipeline.normalizer, self.model.manifest.model_id)
        except OSError as exc:
            logger.warning("cannot keep the adaptation state in %s: %s", self.adaptation_path, exc.strerror)
            self.adaptation_path = None

    def close(self, watchdog: Watchdog | None = None, stop: threading.Event | None = None,
              kept_is_delivered: bool = False) -> bool:
        """Deliver what is queued (up to :data:`FLUSH_TIMEOUT_S`, feeding ``watchdog`` meanwhile;
        cut short if ``stop`` is set during the wait, e.g. SIGTERM after the input ended), publish
        ``offline``, disconnect. Returns whether every event was acknowledged, none dropped and
        none refused by the broker; with ``kept_is_delivered`` (the daemon's stop), events left
        unacknowledged in a durable outbox count as kept, not lost (the publisher logs how many)."""
        if self.homeassistant is not None:
            self.homeassistant.cancel()
        if self.adaptation_path is not None:
            self.save_adaptation()
        delivered = self._flush(watchdog, stop)
        if self.stats_interval_s > 0:
            self.publish_stats()  # the last word; close() then waits for the PUBACK of "offline" after it
        if delivered:
            self.sink.close()
        else:  # the flush ran out: close() must not wait for the events a second time
            self.sink.close(timeout_s=0.0)
        logger.info("processed %.1f s of audio: %s, %s%s", self.audio_s, plural(self.pipeline.utterances, "utterance"),
                    plural(self.events.seq, "event"), self.speed_note())
        lost = self.dropped_events + self.refused_events
        if lost:
            logger.error("%s not delivered: %d dropped, %d denied by the broker (PUBACK reason >= 0x80)",
                         plural(lost, "event"), self.dropped_events, self.refused_events)
        kept = kept_is_delivered and self.mqtt is not None and self.mqtt.outbox_state == "durable"
        return (delivered or kept) and not lost

    def _flush(self, watchdog: Watchdog | None, stop: threading.Event | None) -> bool:
        """Wait for the broker's acknowledgements (:meth:`MqttPublisher.flush`) for :data:`FLUSH_TIMEOUT_S`
        in total, in slices of :data:`FLUSH_SLICE_S` that feed ``watchdog`` and end early when ``stop``
        becomes set (it was not at the start). Without MQTT, the sink's flush."""
        if self.mqtt is None:
            return self.sink.flush(FLUSH_TIMEOUT_S)
        mqtt = self.mqtt
        stopping_already = stop is not None and stop.is_set()  # before the log line tests wait for
        pending = mqtt.pending
        if pending:
            logger.info("waiting up to %g s for the broker to acknowledge %s", FLUSH_TIMEOUT_S, plural(pending, "event"))
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while True:
            if watchdog is not None:
                watchdog.feed()
            remaining_s = deadline - time.monotonic()
            if remaining_s <= FLUSH_SLICE_S:
                return mqtt.flush(max(remaining_s, 0.0), waited_s=FLUSH_TIMEOUT_S) and self.sink.flush(0.0)
            if mqtt.flush(FLUSH_SLICE_S, warn=False):
                return self.sink.flush(0.0)
            if stop is not None and stop.is_set() and not stopping_already:
                logger.warning("stopped while waiting for the broker: %s not acknowledged%s",
                               plural(mqtt.pending, "event"), " (kept in the outbox for the next start)"
                               if mqtt.outbox_state == "durable" else "")
                return False

def run_replay(settings: Settings, files: list[Path], sink_kind: str, realtime: bool, stop: StopFlag,
               raw: RawFormat | None = None, print_mood: bool = False) -> int:
    """``ser-edge replay``: exit 0 if every file was processed and every event acknowledged, else 1
    (a skipped file, a truncated one (its audio processed, then one line), an event dropped from a
    full outbox or refused by the broker, or one still unacknowledged at the end).

    Without an explicit device id the events go out as ``<host>-replay`` with no retained status,
    stats or discovery (:func:`replay_device_id`). ``start_time``/``end_time`` are the replay's
    start plus the audio offset (real wall-clock times only with ``--realtime``). A file ``-`` is
    standard input; ``raw`` reads every input as headerless PCM (:mod:`edge.audio.io`). With an
    explicit device id the mood state goes out retained too; ``print_mood`` prints it on stdout.

    Standard output closed by its reader (``--sink stdout | head -1``, EPIPE) ends the replay quietly
    (status 0); a write error on it (ENOSPC) raises :class:`edge.sinks.OutputError` after the clean
    close (``ser-edge`` prints it in one line, status 1).
    """
    device_id, explicit = replay_device_id(settings)
    session = Session(settings, sink_kind, device_id=device_id, announce=explicit, print_mood=print_mood)
    stop.pending_report = session.unacknowledged_report
    session.clock.mark(0.0, time.time())
    session.start()
    session.stats.source_state = "file"
    skipped = incomplete = 0
    wall_start = time.monotonic()
    try:
        for path in files:
            if stop:
                break
            logger.info("replaying %s", path)
            try:
                for block in input_blocks(path, session.rate_hz, raw):
                    session.feed(block)
                    if realtime:
                        ahead = session.audio_s - (time.monotonic() - wall_start)
                        if ahead > 0:
                            stop.event.wait(ahead)
                    if stop:
                        break
            except TruncatedAudio as exc:  # its audio was processed; the rest is missing
                incomplete += 1
                logger.error("%s", exc)
            except AudioError as exc:
                skipped += 1
                logger.error("skipped %s", exc)
            session.end_of_input()  # a file's end closes its last utterance
    except OutputClosed as exc:  # `... --sink stdout | head -1`: the reader has what it wanted
        logger.info("%s; stopping", exc)
    finally:
        delivered = session.close(stop=stop.event)
    if skipped:
        logger.error("%d of %s skipped", skipped, plural(len(files), "file"))
    if incomplete and len(files) > 1:
        logger.error("%d of %s incomplete (shorter than their header declares)", incomplete, plural(len(files), "file"))
    return EXIT_OK if delivered and not skipped and not incomplete else EXIT_FAILURE


class _MicrophoneReport:
    """How ``ser-edge run`` reports its live source's supervision (:class:`edge.audio.live.Supervisor`):
    log lines, systemd ``STATUS=``/``READY=1``, the stats message's ``source``, the resampler."""

    def __init__(self, session: Session, notifier: SystemdNotifier, watchdog: Watchdog, kind: str) -> None:
        self.session = session
        self.kind = kind
        self.notifier = notifier
        self.watchdog = watchdog
        self.ready = False
        self.resampler: StreamingResampler | None = None

    def _ready(self) -> None:
        if not self.ready:  # systemd arms the watchdog at READY=1; pings start after it
            self.notifier.ready()
            self.ready = True

    def opening(self) -> None:
        if self.ready:
            self.watchdog.feed(force=True)  # PortAudio's device scan may take a second

    def opened(self, source: LiveSource) -> None:
        session = self.session
        session.set_source_state("ok")
        if self.resampler is not None:
            session.feed(self.resampler.flush())  # the end of the previous stream's audio
        self.resampler = StreamingResampler(source.rate_hz, session.rate_hz)
        self.notifier.status(f"listening on {source.rate_hz} Hz input, model {session.model.manifest.model_id}")
        self._ready()

    def failed(self, what: str, error: Exception | None, retry_in_s: float) -> None:
        kind = self.kind
        if what == "lost":  # the source logged why (exited, stalled); the delay is the backoff's
            logger.warning("%s lost; reopening in %.1f s", kind, retry_in_s)
            self.notifier.status(f"{kind} lost, reopening")
            self.session.set_source_state("lost, reopening")
            return
        if what == "unavailable":
            logger.error("%s unavailable (%s); retrying in %.1f s", kind, error, retry_in_s)
        else:  # bad samples
            logger.error("%s; reopening in %.1f s", error, retry_in_s)
        self.notifier.status(f"{kind} unavailable: {error}")
        self.session.set_source_state(f"unavailable: {error}")
        if what == "unavailable":
            self._ready()  # the daemon is up; it keeps retrying the device

    def idle(self) -> None:
        self.session.tick()


def run_microphone(settings: Settings, stop: StopFlag, notifier: SystemdNotifier | None = None) -> int:
    """``ser-edge run``: until stopped. Exit 0 on a clean stop, also with events left unacknowledged
    in a durable outbox (they are sent after the next start); 1 if events were dropped or refused,
    or at once when the MQTT sender thread or paho's network thread died (the watchdog gets no ping
    from then on, and systemd's ``Restart=`` starts the daemon again).

    Sends ``READY=1`` after the first attempt to open the microphone, whether it worked or not (the
    daemon is up and keeps retrying the device), ``STATUS=`` lines on every change of the source,
    ``WATCHDOG=1`` through :class:`edge.service.systemd.Watchdog` from every wait, and ``STOPPING=1``
    first thing on the way out.

    The live source is the microphone, or ``audio.input_command`` (:func:`edge.audio.live.live_source`),
    kept open by :class:`edge.audio.live.Supervisor` (its exception policy and backoff:
    ``audio.reopen_min_s`` doubling up to ``audio.reopen_max_s``, back to the minimum after
    :data:`edge.audio.live.HEALTHY_AFTER_S` of healthy input; every reopen is logged with its delay). Any other exception propagates (a
    bug: systemd restarts the daemon). Each block's capture time anchors the events' ``start_time``.
    """
    notifier = notifier or SystemdNotifier()
    session = Session(settings, "mqtt", persist_adaptation=True)
    stop.pending_report = session.unacknowledged_report
    watchdog = Watchdog(notifier, healthy=session.sink_alive)  # no pings once the sender thread died
    session.start()
    mic = live_source(settings.audio, session.rate_hz)  # the microphone, or audio.input_command
    report = _MicrophoneReport(session, notifier, watchdog, mic.kind)
    supervisor = Supervisor(mic, report, settings.audio.reopen_min_s, settings.audio.reopen_max_s,
                            wait=lambda seconds: watchdog.wait(stop.event, seconds))
    read_timeout_s = READ_TIMEOUT_S if watchdog.period_s is None else min(READ_TIMEOUT_S, watchdog.period_s)
    input_s = 0.0  # seconds of input read so far: the capture clock's stream time
    sender_died = False
    try:
        while not stop:
            if not session.sink_alive():  # logged by the publisher; systemd restarts the daemon
                logger.error("exiting: an MQTT thread died (the sender, or paho's network loop)")
                sender_died = True
                break
            if report.ready:
                watchdog.feed()
            block = supervisor.read(read_timeout_s)
            session.stats.overflows = mic.overflows + mic.dropped_blocks
            if block is None or report.resampler is None:
                continue
            session.clock.mark(input_s, mic.captured_at)
            input_s += block.size / mic.rate_hz
            session.feed(report.resampler.process(block))
    finally:
        notifier.stopping()
        mic.close()
        if report.resampler is not None:
            for block in supervisor.drain():  # audio captured before the stop
                session.feed(report.resampler.process(block))
            session.feed(report.resampler.flush())
        session.end_of_input()
        if mic.overflows:
            logger.warning("%d input overflows", mic.overflows)
        delivered = session.close(watchdog, stop.event, kept_is_delivered=True)
    return EXIT_OK if delivered and not sender_died else EXIT_FAILURE
