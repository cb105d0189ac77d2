"""``ser-edge try``: a live tester for people setting up a microphone.

It reads the daemon's live source (the microphone, or ``audio.input_command``) through the same
resampler and :class:`edge.pipeline.Pipeline` as ``run``, publishes nothing, and writes to the
terminal:

* a status line, refreshed about 5 times a second: the input level (RMS in dBFS of the last
  block, as a bar from -70 to 0 dBFS, and its peak) and whether the VAD hears speech;
* for each utterance: its number, length, the label and confidence (``unsure`` when the model
  says so), one bar per score in the manifest's order, and arousal/valence when the model has them;
* with ``--prompts``: before each utterance a prompt naming one of the model's labels in turn
  ("say something angry"), after it whether the model agreed, and the running agreement count.

On a terminal the status line is redrawn in place (carriage return + ANSI "erase line"); into a
pipe or file only the utterance blocks are written. Stops on Ctrl-C/SIGTERM or after ``utterances``
utterances, printing the agreement summary; exit status 0.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import IO

import numpy as np

from edge.audio.live import LiveSource, Supervisor, live_source
from edge.audio.resample import StreamingResampler
from edge.exitcodes import EXIT_OK
from edge.model import load_model
from edge.pipeline import Pipeline
from edge.postprocess import Decision
from edge.settings import Settings
from edge.validate import plural

logger = logging.getLogger(__name__)

BAR_WIDTH = 30
"""Characters of a full score bar (probability 1) and of the level meter."""
LEVEL_FLOOR_DBFS = -70.0
"""The level meter's left end."""
STATUS_INTERVAL_S = 0.2
"""Wall-clock seconds between redraws of the status line."""
ERASE_LINE = "\r\x1b[2K"


def level_dbfs(samples: np.ndarray) -> tuple[float, float]:
    """``(rms_dbfs, peak_dbfs)`` of float samples in [-1, 1]; 0 dBFS = full scale (a full-scale
    square wave has RMS 0 dBFS); silence gives ``-inf``."""
    if samples.size == 0:
        return -math.inf, -math.inf
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    peak = float(np.max(np.abs(samples)))
    return (20 * math.log10(rms) if rms > 0 else -math.inf, 20 * math.log10(peak) if peak > 0 else -math.inf)


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A bar of ``width`` characters, ``fraction`` in [0, 1] of it filled ('#') and the rest '.'."""
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "#" * filled + "." * (width - filled)


def status_line(rms_dbfs: float, peak_dbfs: float, speech: bool) -> str:
    """``level [#####.....] -32 dBFS (peak -12)  speech`` (or ``silence``, or ``CLIPPING``)."""
    fraction = 0.0 if not math.isfinite(rms_dbfs) else (rms_dbfs - LEVEL_FLOOR_DBFS) / -LEVEL_FLOOR_DBFS
    rms = f"{rms_dbfs:4.0f}" if math.isfinite(rms_dbfs) else "-inf"
    peak = f"{peak_dbfs:.0f}" if math.isfinite(peak_dbfs) else "-inf"
    clipping = "  CLIPPING" if peak_dbfs >= -0.01 else ""
    return f"level [{bar(fraction)}] {rms} dBFS (peak {peak}){clipping}  {'speech' if speech else 'silence'}"


def utterance_block(number: int, decision: Decision, labels: tuple[str, ...]) -> list[str]:
    """The lines shown for one utterance: a header, one bar per label, arousal/valence if any."""
    top = labels[decision.top]
    unsure = "  (unsure)" if decision.unsure else ""
    lines = [f"utterance {number}: {decision.end_s - decision.start_s:.1f} s  ->  {top} {decision.confidence:.2f}{unsure}"]
    width = max(len(label) for label in labels)
    for label, score in zip(labels, decision.scores, strict=True):
        marker = " <" if label == top else ""
        lines.append(f"  {label:<{width}} {bar(float(score))} {float(score):.2f}{marker}")
    for name, value in (("arousal", decision.arousal), ("valence", decision.valence)):
        if value is not None:
            lines.append(f"  {name:<{width}} {bar((value + 1) / 2)} {value:+.2f}")
    return lines


class Tester:
    """The terminal side: feed it blocks (:meth:`feed`), it writes to ``out``."""

    def __init__(self, pipeline: Pipeline, labels: tuple[str, ...], out: IO[str], prompts: bool = False) -> None:
        self.pipeline = pipeline
        self.labels = labels
        self.out = out
        self.interactive = bool(getattr(out, "isatty", lambda: False)())
        self.prompts = prompts
        self.utterances = 0
        self.agreed = 0
        self._status_at = 0.0
        self._status_shown = False

    def prompt(self) -> str:
        return f'prompt {self.utterances + 1}: say something "{self.labels[self.utterances % len(self.labels)]}"'

    def write_lines(self, lines: list[str]) -> None:
        if self._status_shown:
            self.out.write(ERASE_LINE)
            self._status_shown = False
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    def feed(self, samples: np.ndarray, block: np.ndarray) -> list[Decision]:
        """Process ``samples`` (model rate); ``block`` is the raw input block for the level meter."""
        decisions = self.pipeline.process(samples)
        for decision in decisions:
            self.show(decision)
        now = time.monotonic()
        if self.interactive and now - self._status_at >= STATUS_INTERVAL_S:
            self._status_at = now
            self.out.write(ERASE_LINE + status_line(*level_dbfs(block), self.pipeline.vad.in_speech))
            self.out.flush()
            self._status_shown = True
        return decisions

    def show(self, decision: Decision) -> None:
        """Write the utterance block (and, with prompts, the verdict and the next prompt)."""
        self.utterances += 1
        lines = utterance_block(self.utterances, decision, self.labels)
        if self.prompts:
            wanted = self.labels[(self.utterances - 1) % len(self.labels)]
            heard = self.labels[decision.top]
            self.agreed += heard == wanted
            lines.append(f"  asked for {wanted}, heard {heard}: {'agree' if heard == wanted else 'disagree'}"
                         f"  (agreement {self.agreed}/{self.utterances})")
            lines.append(self.prompt())
        self.write_lines(lines)

    def summary(self) -> str:
        if self.prompts and self.utterances:
            return (f"{plural(self.utterances, 'utterance')}; the model agreed with the prompt {plural(self.agreed, 'time')} "
                    f"({100 * self.agreed / self.utterances:.0f} %)")
        return plural(self.utterances, "utterance")


class _SourceReport:
    """How ``ser-edge try`` reports the supervision of its live source: a line each, and the resampler."""

    def __init__(self, tester: Tester, model_rate_hz: int, kind: str) -> None:
        self.tester = tester
        self.kind = kind
        self.model_rate_hz = model_rate_hz
        self.resampler: StreamingResampler | None = None

    def opening(self) -> None:
        pass

    def opened(self, source: LiveSource) -> None:
        self.resampler = StreamingResampler(source.rate_hz, self.model_rate_hz)
        self.tester.write_lines([f"{source.kind} open at {source.rate_hz} Hz"])

    def failed(self, what: str, error: Exception | None, retry_in_s: float) -> None:
        kind = self.kind
        if what == "lost":
            line = f"{kind} lost; reopening in {retry_in_s:g} s"
        elif what == "unavailable":
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            line = f"{kind} unavailable ({message}); retrying in {retry_in_s:g} s"
        else:
            line = f"{error}; reopening in {retry_in_s:g} s"
        self.tester.write_lines([line])

    def idle(self) -> None:
        pass


def run_tester(settings: Settings, prompts: bool = False, utterances: int | None = None,
               out: IO[str] | None = None) -> int:
    """``ser-edge try``: until Ctrl-C/SIGTERM or ``utterances`` utterances; exit status 0.

    The live source is supervised as by the daemon (:class:`edge.audio.live.Supervisor`, the same
    exception policy and backoff)."""
    from edge.service.daemon import StopFlag

    out = out if out is not None else sys.stdout
    stop = StopFlag()
    stop.install()
    model = load_model(settings.model.path, num_threads=settings.model.num_threads)
    rate_hz = model.manifest.features.sample_rate_hz
    tester = Tester(Pipeline.for_model(model, settings.decision), model.manifest.labels, out, prompts)
    source = live_source(settings.audio, rate_hz)
    report = _SourceReport(tester, rate_hz, source.kind)
    supervisor = Supervisor(source, report, settings.audio.reopen_min_s, settings.audio.reopen_max_s,
                            wait=stop.event.wait)
    tester.write_lines([f"ser-edge try: model {model.manifest.model_id}; speak, Ctrl-C to stop"]
                       + ([tester.prompt()] if prompts else []))
    try:
        while not stop and (utterances is None or tester.utterances < utterances):
            block = supervisor.read(timeout_s=0.5)
            if block is None or report.resampler is None:
                continue
            tester.feed(report.resampler.process(block), block)
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
        for decision in tester.pipeline.flush():
            if utterances is None or tester.utterances < utterances:
                tester.show(decision)
        tester.write_lines([tester.summary()])
    return EXIT_OK
