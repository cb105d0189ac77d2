"""The daemon: wires audio source → resampler → pipeline → events → publisher.

Two drivers share everything after the audio source: :func:`run_microphone` (``ser-edge run``,
a sounddevice input stream whose callback only enqueues) and :func:`run_replay`
(``ser-edge replay``, audio files read block by block). Both stop cleanly on SIGTERM/SIGINT:
the open utterance is flushed, queued events are delivered, ``offline`` is published.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from pathlib import Path

import numpy as np

from edge import __version__
from edge.audio import AudioError, StreamingResampler, check_samples
from edge.events import EMOTION_QOS, EmotionEvent, EventFactory, stats_topic
from edge.homeassistant import HomeAssistantDiscovery
from edge.model import INTERPRETER, EmotionModel, load_model
from edge.notify import SystemdNotifier
from edge.pipeline import Decision, Pipeline
from edge.publisher import MqttPublisher, StdoutSink
from edge.settings import AudioSettings, Settings
from edge.sources import RawFormat, input_blocks, live_source
from edge.stats import Stats
from edge.stats import to_json as stats_to_json

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 10.0
"""How long replay waits at the end for the broker to acknowledge every event."""


class StopFlag:
    """Set by SIGTERM/SIGINT (installed with :meth:`install`); the loops poll it."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


class TeeSink:
    """Every call goes to each of ``sinks`` (``--sink both``: print and publish)."""

    def __init__(self, *sinks) -> None:
        self.sinks = sinks

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def publish(self, event: EmotionEvent) -> None:
        for sink in self.sinks:
            sink.publish(event)

    def publish_raw(self, topic: str, payload: str | bytes, retain: bool = False, qos: int = 1) -> None:
        for sink in self.sinks:
            sink.publish_raw(topic, payload, retain=retain, qos=qos)

    def flush(self, timeout_s: float) -> bool:
        return all([sink.flush(timeout_s) for sink in self.sinks])

    @property
    def connected(self) -> bool:
        return all(sink.connected for sink in self.sinks)

    @property
    def dropped_events(self) -> int:
        return max(sink.dropped_events for sink in self.sinks)

    @property
    def pending(self) -> int:
        return max(sink.pending for sink in self.sinks)

    def close(self, timeout_s: float = 5.0) -> None:
        for sink in self.sinks:
            sink.close(timeout_s)


SINKS = ("mqtt", "stdout", "both")


def mqtt_publisher_of(sink) -> MqttPublisher | None:
    """The :class:`MqttPublisher` in ``sink`` (itself or inside a :class:`TeeSink`), or ``None``."""
    if isinstance(sink, MqttPublisher):
        return sink
    return next((s for s in getattr(sink, "sinks", ()) if isinstance(s, MqttPublisher)), None)


REPLAY_DEVICE_SUFFIX = "-replay"
"""``replay`` without an explicit device id publishes as ``<host>-replay``, never as the live device."""


def replay_device_id(settings: Settings) -> tuple[str, bool]:
    """``(device_id, explicit)`` for ``replay``: the configured id (flag or config file) if any,
    else ``<host name>-replay`` so a replay never impersonates the daemon of the same host."""
    if settings.device_id:
        return settings.device_id, True
    return settings.resolved_device_id + REPLAY_DEVICE_SUFFIX, False


def make_sink(settings: Settings, kind: str, device_id: str | None = None, announce: bool = True):
    """A sink, not started: ``"mqtt"`` -> :class:`MqttPublisher`, ``"stdout"`` -> :class:`StdoutSink`,
    ``"both"`` -> both. With ``mqtt.enabled = false`` in the config, MQTT is replaced by stdout.

    :param device_id: the events' device id (default: ``settings.resolved_device_id``).
    :param announce: publish the retained status (``online``/``offline``, last will).
    """
    if kind not in SINKS:
        raise ValueError(f"expected a sink in {SINKS}, got {kind!r}")
    if kind == "stdout" or not settings.mqtt.enabled:
        return StdoutSink()
    mqtt = MqttPublisher(settings.mqtt_settings(), device_id or settings.resolved_device_id, availability=announce)
    return TeeSink(StdoutSink(), mqtt) if kind == "both" else mqtt


class Session:
    """Model, pipeline, event factory, sink and statistics: what both drivers share.

    The drivers call :meth:`feed` for every block (and :meth:`tick` while no audio arrives);
    every ``mqtt.stats_interval_s`` of wall-clock time a retained stats message
    (:mod:`edge.stats`) is published, and once more by :meth:`close`.
    """

    def __init__(self, settings: Settings, sink_kind: str, device_id: str | None = None,
                 announce: bool = True) -> None:
        """:param device_id: the events' device id (default: ``settings.resolved_device_id``).
        :param announce: publish retained status, stats and Home Assistant discovery (a replay
            without an explicit device id does not)."""
        self.settings = settings
        device_id = device_id or settings.resolved_device_id
        self.model: EmotionModel = load_model(settings.model.path, num_threads=settings.model.num_threads)
        self.pipeline = Pipeline.for_model(self.model, settings.decision)
        self.events = EventFactory(device_id, self.model.manifest)
        self.clock = self.events.clock
        """The capture clock: sources mark (stream seconds, wall time) anchors on it."""
        self.sink = make_sink(settings, sink_kind, device_id, announce)
        self.rate_hz = self.model.manifest.features.sample_rate_hz
        self.stats = Stats()
        self.stats_interval_s = settings.mqtt.stats_interval_s if settings.mqtt.enabled and announce else 0.0
        self.stats_topic = stats_topic(settings.mqtt.topic_prefix, device_id)
        self._next_stats_at = float("inf")
        self.homeassistant: HomeAssistantDiscovery | None = None
        publisher = mqtt_publisher_of(self.sink)
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
        """Publish the stats message if ``stats_interval_s`` has passed since the last one (wall clock)."""
        now = time.monotonic()
        if now >= self._next_stats_at:
            self._next_stats_at = now + self.stats_interval_s
            self.publish_stats()

    def stats_payload(self) -> dict:
        """The current stats message (:data:`edge.stats.STATS_FIELDS`)."""
        return self.stats.payload(
            events=self.events.seq, utterances=self.pipeline.utterances,
            short_utterances=self.pipeline.short_utterances, dropped_events=self.sink.dropped_events,
            pending=self.sink.pending, interpreter=INTERPRETER, model=self.model.manifest.model_id,
            version=__version__,
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
        if not self.sink.connected:
            logger.debug("broker unreachable; stats not published")
            return
        self.sink.publish_raw(self.stats_topic, stats_to_json(self.stats_payload()), retain=True, qos=EMOTION_QOS)

    def end_of_input(self) -> None:
        self._emit(self.pipeline.flush())

    def _emit(self, decisions: list[Decision]) -> None:
        for decision in decisions:  # an unsure decision is still an event (it says so); only the
            if not decision.publish:  # user's decision.confidence_threshold holds one back
                logger.info("utterance %.2f-%.2f s below the confidence threshold (%.2f), not published",
                            decision.start_s, decision.end_s, decision.confidence)
                continue
            event = self.events.make(decision)
            logger.info("event #%d %s %.2f%s [%.2f-%.2f s]", event.seq, event.label, event.confidence,
                        " (unsure)" if event.unsure else "", event.start_s, event.end_s)
            self.sink.publish(event)

    def close(self) -> bool:
        """Deliver what is queued, publish ``offline``, disconnect. Returns whether all was delivered."""
        if self.homeassistant is not None:
            self.homeassistant.cancel()
        delivered = self.sink.flush(FLUSH_TIMEOUT_S)
        if self.stats_interval_s > 0:
            self.publish_stats()  # the last word; close() then waits for the PUBACK of "offline" after it
        if delivered:
            self.sink.close()
        else:  # the flush ran out: close() must not wait for the events a second time
            self.sink.close(timeout_s=0.0)
        rtf = self.audio_s / self.cpu_s if self.cpu_s > 0 else float("inf")
        logger.info("processed %.1f s of audio: %d utterances, %d events, %.0fx real time (audio s per CPU s)",
                    self.audio_s, self.pipeline.utterances, self.events.seq, rtf)
        return delivered


def run_replay(settings: Settings, files: list[Path], sink_kind: str, realtime: bool, stop: StopFlag,
               raw: RawFormat | None = None) -> int:
    """``ser-edge replay``: exit 0 if every file was processed and every event acknowledged, else 1.

    Without an explicit device id the events go out as ``<host>-replay`` with no retained status,
    stats or discovery (:func:`replay_device_id`). ``start_time``/``end_time`` are the replay's
    start plus the audio offset (real wall-clock times only with ``--realtime``). A file ``-`` is
    standard input; ``raw`` reads every input as headerless PCM (:mod:`edge.sources`).
    """
    device_id, explicit = replay_device_id(settings)
    session = Session(settings, sink_kind, device_id=device_id, announce=explicit)
    session.clock.mark(0.0, time.time())
    session.start()
    session.stats.source_state = "file"
    skipped = 0
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
            except AudioError as exc:
                skipped += 1
                logger.error("skipped %s", exc)
            session.end_of_input()  # a file's end closes its last utterance
    finally:
        delivered = session.close()
    if skipped:
        logger.error("%d of %d files skipped", skipped, len(files))
    return 0 if delivered and not skipped else 1


class MicSource:
    """A sounddevice input stream whose callback only copies each block into a queue.

    The device is opened at ``sample_rate_hz`` if set, else at the model's rate if the device
    supports it, else at its default rate (most USB microphones: 44.1/48 kHz).
    """

    def __init__(self, audio: AudioSettings, model_rate_hz: int) -> None:
        import sounddevice  # PortAudio is loaded only when a microphone is used

        self.sd = sounddevice
        self.audio = audio
        self.model_rate_hz = model_rate_hz
        self.queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=200)
        self.overflows = 0
        self.dropped_blocks = 0
        self.stream = None
        self.rate_hz = 0
        self.last_block_at = 0.0
        self.blocks = 0
        self.captured_at = 0.0
        """Unix time of the first sample of the block :meth:`read` returned last (PortAudio's ADC time)."""

    def device(self) -> int | str | None:
        value = self.audio.device.strip()
        if not value:
            return None
        return int(value) if value.isdigit() else value

    def open(self) -> None:
        """Open and start the stream; raises ``sounddevice.PortAudioError``/``ValueError`` on failure.

        With ``sample_rate_hz = 0`` the device's default rate is used when it is at least the
        model's (our resample_poly then does the conversion, not ALSA's linear ``plug``
        resampler, which aliases); otherwise the model's rate if the device accepts it.
        """
        while not self.queue.empty():  # blocks of an earlier stream, maybe at another rate
            self.queue.get_nowait()
        device = self.device()
        rate = self.audio.sample_rate_hz
        if not rate:
            rate = int(self.sd.query_devices(device, "input")["default_samplerate"])
            if rate < self.model_rate_hz:
                self.sd.check_input_settings(device=device, channels=1, samplerate=self.model_rate_hz)
                rate = self.model_rate_hz
        self.rate_hz = int(rate)
        self.stream = self.sd.InputStream(
            device=device, channels=1, samplerate=self.rate_hz, dtype="float32",
            blocksize=max(1, round(self.audio.block_ms * self.rate_hz / 1000)), callback=self._callback,
        )
        self.blocks = 0
        self.last_block_at = time.monotonic()
        self.stream.start()
        info = self.sd.query_devices(self.stream.device, "input")
        logger.info("microphone %r open at %d Hz", info["name"], self.rate_hz)

    def _callback(self, indata, frames, time_info, status) -> None:  # audio thread: copy and return
        self.last_block_at = time.monotonic()
        self.blocks += 1
        if status.input_overflow:
            self.overflows += 1
        # wall time of the first sample: now minus how long ago PortAudio's ADC captured it (0 = unknown)
        adc_age_s = time_info.currentTime - time_info.inputBufferAdcTime if time_info.inputBufferAdcTime else 0.0
        if not 0.0 < adc_age_s < 10.0:
            adc_age_s = frames / self.rate_hz
        try:
            self.queue.put_nowait((indata[:, 0].copy(), time.time() - adc_age_s))
        except queue.Full:
            self.dropped_blocks += 1

    def read(self, timeout_s: float) -> np.ndarray | None:
        try:
            block, self.captured_at = self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        return block

    @property
    def stall_timeout_s(self) -> float:
        return max(2.0, 10 * self.audio.block_ms / 1000)

    @property
    def alive(self) -> bool:
        """Open, active, and delivering: a stream silent for ``stall_timeout_s`` (a hung USB mic) is dead."""
        if self.stream is None or not self.stream.active:
            return False
        if time.monotonic() - self.last_block_at > self.stall_timeout_s:
            logger.error("microphone stalled: no audio for %.1f s, reopening", self.stall_timeout_s)
            return False
        return True

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.stream.close(ignore_errors=True)
            finally:
                self.stream = None


def run_microphone(settings: Settings, stop: StopFlag, notifier: SystemdNotifier | None = None,
                   max_audio_s: float | None = None) -> int:
    """``ser-edge run``: until stopped (or ``max_audio_s`` of audio, for tests). Exit 0 on a clean stop."""
    notifier = notifier or SystemdNotifier()
    session = Session(settings, "mqtt")
    session.start()
    mic = live_source(settings.audio, session.rate_hz)  # the microphone, or audio.input_command
    kind = getattr(mic, "kind", "microphone")
    input_s = 0.0  # seconds of input read so far: the capture clock's stream time
    delay_s = settings.audio.reopen_min_s
    ready = False
    resampler = None
    last_watchdog = 0.0
    watchdog_s = notifier.watchdog_interval_s() or 5.0
    try:
        while not stop:
            now = time.monotonic()
            if now - last_watchdog >= watchdog_s / 2:
                notifier.watchdog()
                last_watchdog = now
            if not mic.alive:
                if mic.stream is not None:  # it was open and died: back off before reopening
                    mic.close()
                    notifier.status(f"{kind} lost, reopening")
                    stop.event.wait(delay_s)
                    delay_s = min(delay_s * 2, settings.audio.reopen_max_s)
                    if stop:
                        break
                try:
                    mic.open()
                    session.set_source_state("ok")
                    if resampler is not None:
                        session.feed(resampler.flush())  # the end of the previous stream's audio
                    resampler = StreamingResampler(mic.rate_hz, session.rate_hz)
                    notifier.status(f"listening on {mic.rate_hz} Hz input, model {session.model.manifest.model_id}")
                except Exception as exc:  # PortAudio reports a missing device in several ways
                    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    logger.error("%s unavailable (%s); retrying in %.1f s", kind, message, delay_s)
                    notifier.status(f"{kind} unavailable: {message}")
                    session.set_source_state(f"unavailable: {message}")
                    if not ready:
                        notifier.ready()  # the daemon is up; it keeps retrying the device
                        ready = True
                    stop.event.wait(delay_s)
                    delay_s = min(delay_s * 2, settings.audio.reopen_max_s)
                    continue
                if not ready:
                    notifier.ready()
                    ready = True
            block = mic.read(timeout_s=0.5)
            session.stats.overflows = mic.overflows + mic.dropped_blocks
            if block is None:
                session.tick()
                continue
            try:
                check_samples(block, kind)  # as for files: NaN/inf is refused, clipping is a warning
            except AudioError as exc:  # a source that sends NaN is broken: reopen it with backoff
                logger.error("%s; reopening in %.1f s", exc, delay_s)
                session.set_source_state(f"unavailable: {exc}")
                notifier.status(f"{kind} unavailable: {exc}")
                mic.close()
                stop.event.wait(delay_s)
                delay_s = min(delay_s * 2, settings.audio.reopen_max_s)
                continue
            if mic.blocks > 1:
                delay_s = settings.audio.reopen_min_s  # delivering again: the next failure starts the backoff anew
            session.clock.mark(input_s, mic.captured_at)
            input_s += block.size / mic.rate_hz
            session.feed(resampler.process(block))
            if max_audio_s is not None and session.audio_s >= max_audio_s:
                break
    finally:
        notifier.stopping()
        mic.close()
        if resampler is not None:
            while (block := mic.read(0)) is not None:  # audio captured before the stop
                session.feed(resampler.process(block))
            session.feed(resampler.flush())
        session.end_of_input()
        if mic.overflows:
            logger.warning("%d input overflows", mic.overflows)
        session.close()
    return 0
