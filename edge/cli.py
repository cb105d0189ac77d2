"""``ser-edge``: the device-side command line.

Exit status (edge.exitcodes): 0 success; 1 a runtime failure (bad model, skipped file, an event
dropped, refused or undelivered); 2 bad usage; 78 (EX_CONFIG) a configuration problem; 128 + N
a second signal N during shutdown. Errors are one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge import __version__
from edge.audio.formats import RAW_FORMATS, RawFormat
from edge.exitcodes import EX_CONFIG, EX_USAGE, EXIT_FAILURE, EXIT_OK
from edge.mqtt.config import MqttSettings
from edge.settings import LOG_LEVELS, ConfigError, load_settings
from edge.sinks import SINKS, OutputClosed, OutputError, stdout_to_devnull

DESCRIPTION = """\
Speech emotion recognition at the edge. Listens to speech, runs an int8 TFLite model on MFCCs,
and publishes one event per utterance over MQTT (topic <prefix>/<device_id>/emotion, QoS 1,
availability on <prefix>/<device_id>/status). No audio leaves the device.
"""

EPILOG = """\
examples:
  ser-edge try                                      live tester: level, speech, label per utterance
  ser-edge replay speech.wav --sink stdout          print events for a file, no broker needed
  arecord -f S16_LE -r 16000 -t wav | ser-edge replay - --sink stdout
  ser-edge replay a.wav b.flac --mqtt-host broker   publish them to a broker
  ser-edge run --config /etc/ser-edge/ser-edge.toml the daemon (as systemd runs it)
  ser-edge run --input-command 'parecord --raw --format=s16le --rate=16000 --channels=1'
  ser-edge listen --mqtt-host broker                watch events from every device
  ser-edge devices                                  list microphones
  ser-edge check-config /etc/ser-edge/ser-edge.toml validate a config without starting
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows ``(default: X)`` for every option with a real default; options that override the config
    file (default ``None``) say their default in their own help text."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _sub(sub, name: str, help: str, description: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description, formatter_class=_HelpFormatter)


def _common(parser: argparse.ArgumentParser, device_id_help: str | None = None, mqtt: bool = True,
            config: bool = True) -> None:
    """The configuration flags; ``mqtt=False`` leaves out the broker and device id (commands that publish
    nothing), ``config=False`` the ``--config`` flag (check-config takes the file as its argument)."""
    group = parser.add_argument_group("configuration (flags override the config file)")
    if config:
        group.add_argument("--config", metavar="FILE", help="TOML config file (see systemd/ser-edge.toml); "
                           "default: none, built-in defaults")
    group.add_argument("--model", metavar="PATH", help="model .tflite (manifest .json beside it); "
                       "default: config's model.path, else the model installed with ser-edge")
    if mqtt:
        _mqtt_flags(group, device_id_help)
    group.add_argument("--log-level", choices=LOG_LEVELS,
                       help="log verbosity; default: config's log_level, else INFO")


def _mqtt_flags(group, device_id_help: str | None) -> None:
    group.add_argument("--mqtt-host", metavar="H", help=f"MQTT broker host; default: config's mqtt.host, "
                       f"else {MqttSettings.host}")
    group.add_argument("--mqtt-port", metavar="P", type=int, help=f"MQTT broker port; default: config's "
                       f"mqtt.port, else {MqttSettings.port}")
    group.add_argument("--device-id", metavar="ID", help=device_id_help or "topic level naming this device; "
                       "default: config's device_id, else the host name")


def _raw_flags(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group(f"raw PCM ({what})")
    group.add_argument("--raw-format", choices=sorted(RAW_FORMATS), help="sample format of headerless PCM "
                       "(arecord -f S16_LE = s16le); default: s16le when --rate/--channels are given")
    group.add_argument("--rate", type=int, metavar="HZ", help="sample rate of the raw PCM; default: the "
                       "model's (16000)")
    group.add_argument("--channels", type=int, metavar="N", help="interleaved channels of the raw PCM, "
                       "averaged to mono; default: 1")


class _VersionAction(argparse.Action):
    """``--version``: names the interpreter, so it imports :mod:`edge.model` only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from edge.model import INTERPRETER

        parser.exit(message=f"ser-edge {__version__} (interpreter: {INTERPRETER})\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ser-edge", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action=_VersionAction, help="show the version and the TFLite interpreter, and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _sub(sub, "run", "listen to the microphone (or a command) and publish events (the daemon)",
               "Read the microphone, or the raw PCM a command writes to its standard output, and publish "
               "an event per utterance. A source that fails, stalls or exits is reopened with backoff while "
               "the daemon stays up. Stops on SIGTERM/SIGINT/SIGHUP, publishing 'offline' first (exit 0, also when "
               "unacknowledged events stay in the durable outbox). Under systemd it sends READY=1 and watchdog pings.")
    _common(run)
    run.add_argument("--device", metavar="NAME|INDEX", help="input device (see 'ser-edge devices'); default: "
                     "config's audio.device, else the system's default input")
    run.add_argument("--input-command", metavar="CMD", help="read raw PCM from this command's standard output "
                     "instead of the microphone, e.g. 'arecord -D plughw:CARD=seeed2micvoicec -r 16000 -c 1 "
                     "-f S16_LE -t raw' or 'parecord --raw --format=s16le --rate=16000 --channels=1'; "
                     "default: config's audio.input_command (none)")
    _raw_flags(run, "of --input-command")

    replay = _sub(sub, "replay", "run the same pipeline over audio files or standard input",
                  "Feed WAV/AIFF/FLAC files (8..384 kHz and >= the model's rate, mono or stereo; MP3 and Ogg are "
                  "refused), '-' for a WAV/FLAC stream on standard input, or headerless PCM (--raw-format) through "
                  "the daemon's pipeline. At the end it flushes, waits for the broker's acknowledgements and exits "
                  "0; an input it cannot use is skipped with a logged reason, and that or an event dropped, "
                  "refused by the broker or left unacknowledged makes the exit status 1. Without an explicit device id "
                  "(--device-id or the config) it publishes as <host>-replay with no retained status, stats "
                  "or Home Assistant discovery, so it never speaks for a live device.")
    _common(replay, device_id_help="publish as this device (status and discovery too, like the daemon); default: "
            "config's device_id, else <host name>-replay with no status or discovery")
    replay.add_argument("files", nargs="+", type=Path, metavar="FILE", help="audio files; '-' = standard input")
    replay.add_argument("--realtime", action="store_true", help="pace the input at real time, like a microphone")
    replay.add_argument("--sink", choices=SINKS, default="mqtt",
                        help="publish to the broker, print JSON lines (no broker needed), or both")
    replay.add_argument("--mood", action="store_true", help="also print the mood state (smoothed arousal and "
                        "its level, as published on <prefix>/<device_id>/mood) as a JSON line after each event "
                        "and as it relaxes in silence; needs a model with arousal")
    _raw_flags(replay, "every FILE is headerless")

    listen = _sub(sub, "listen", "print events from all devices (an MQTT subscriber for people)",
                  "Subscribe to <prefix>/+/emotion and <prefix>/+/status and print one line per event "
                  "and per availability change ('kitchen-pi is online'). With --json, standard output holds "
                  "only the events' JSON payloads as the devices published them, one per line, and availability "
                  "changes go to standard error as log lines. Exits 1 when --timeout expires before --count "
                  "events or before the broker was ever reached. With --share GROUP, the events come through the MQTT shared "
                  "subscription $share/GROUP/<prefix>/+/emotion: consumers in one group split them.")
    _common(listen, device_id_help="only this device's events and status; default: every device")
    listen.add_argument("--json", action="store_true", help="print the events' JSON payloads only, one per line "
                        "(availability goes to standard error)")
    listen.add_argument("--count", type=int, metavar="N", help="exit after N events; default: never")
    listen.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds; default: never")
    listen.add_argument("--share", metavar="GROUP", help="join the shared subscription group GROUP; "
                        "default: none, every event")

    _sub(sub, "devices", "list audio input devices and their default rates",
         "List the PortAudio input devices (name, channels, default rate); use a name or index as "
         "[audio] device or --device.")

    info = _sub(sub, "info", "summarise the model: labels, metrics, features",
                "A short summary of the model and its manifest; --json prints the whole manifest.")
    _common(info, mqtt=False)
    info.add_argument("--json", action="store_true", help="print the whole manifest as JSON")

    check = _sub(sub, "check-config", "validate a config file without starting",
                 "Parse and validate the config (and the files it names) exactly as 'run' does; prints one "
                 "line and exits 0, or the problem and 78. The flags check it as 'run' with the same flags would run.")
    check.add_argument("file", nargs="?", metavar="FILE", help="the TOML file; default: built-in defaults")
    _common(check, config=False)
    check.add_argument("--config", dest="config_flag", metavar="FILE", help=argparse.SUPPRESS)  # an error, see main

    tester = _sub(sub, "try", "live tester for a microphone: level, speech, emotion per utterance",
                  "Listen to the microphone (or --input-command) and show, in the terminal, the input level, "
                  "whether speech is detected and, for every utterance, the label, its confidence and a bar per "
                  "score. With --prompts it asks for one emotion at a time and counts how often the model "
                  "agrees. Publishes nothing. Ctrl-C to stop.")
    _common(tester, mqtt=False)
    tester.add_argument("--device", metavar="NAME|INDEX", help="input device; default: config's audio.device, "
                        "else the system's default input")
    tester.add_argument("--input-command", metavar="CMD", help="read raw PCM from a command instead "
                        "(as for 'run'); default: config's audio.input_command (none)")
    tester.add_argument("--prompts", action="store_true", help="prompt for each of the model's emotions in turn "
                        "and count agreements")
    tester.add_argument("--utterances", type=int, metavar="N", help="stop after N utterances; default: never")
    _raw_flags(tester, "of --input-command")
    return parser


def _settings(args):
    overrides = {
        "model.path": getattr(args, "model", None),
        "mqtt.host": getattr(args, "mqtt_host", None),
        "mqtt.port": getattr(args, "mqtt_port", None),
        "device_id": getattr(args, "device_id", None),
        "log_level": getattr(args, "log_level", None),
        "audio.device": getattr(args, "device", None),
        "audio.input_command": getattr(args, "input_command", None),
    }
    if args.command in ("run", "try"):  # the raw flags describe the input command's output
        overrides.update({"audio.input_format": getattr(args, "raw_format", None),
                          "audio.sample_rate_hz": getattr(args, "rate", None),
                          "audio.channels": getattr(args, "channels", None)})
    if args.command == "listen":  # --device-id filters; it does not name this process
        overrides["device_id"] = None
    if args.command == "try" and args.log_level is None:  # the terminal is the tester's: warnings only
        overrides["log_level"] = "WARNING"
    config = getattr(args, "config", None) or getattr(args, "file", None)
    return load_settings(config, overrides)


def _setup_logging(level: str) -> None:
    from edge.service.systemd import JournalFormatter, stderr_is_journal

    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def _info(settings, as_json: bool) -> int:
    from edge.events import SCORE_DECIMALS  # events' confidence has as many decimals: compare what is printed
    from edge.manifest import load_manifest

    manifest = load_manifest(settings.model.path)
    if as_json:
        print(json.dumps(manifest.to_dict(), indent=2))
        return EXIT_OK
    metrics = manifest.metrics or {}
    int8 = metrics.get("int8", {}) if isinstance(metrics.get("int8"), dict) else {}
    floats = metrics.get("float", {}) if isinstance(metrics.get("float"), dict) else {}
    features = manifest.features
    training = manifest.training or {}

    corpus_names = [str(c.get("name", c)) if isinstance(c, dict) else str(c) for c in training.get("corpora", [])]

    def figure(values: dict, key: str, decimals: int = 3) -> str:
        value = values.get(key)
        return f"{value:.{decimals}f}" if isinstance(value, int | float) else "?"

    loco = metrics.get("loco") if isinstance(metrics.get("loco"), dict) else None
    if loco:  # leave-one-corpus-out: the mean over held-out corpora, clean and far-field
        clean = loco.get("clean", {}).get("int8", {}).get("mean", {})
        far = loco.get("far", {}).get("int8", {}).get("mean", {})
        cal = loco.get("calibration", {})
        metric_line = (f"metrics    held-out corpora (LOCO, int8): UA {figure(clean, 'ua')} clean, {figure(far, 'ua')} "
                       f"far-field; arousal CCC {figure(clean, 'arousal_ccc')}, valence AUC "
                       f"{figure(clean, 'valence_auc')}; unsure below {figure(cal, 'unsure_below', SCORE_DECIMALS)}")
    else:
        metric_line = (f"metrics    int8 UA {figure(int8, 'ua')} WA {figure(int8, 'wa')}; float UA {figure(floats, 'ua')} "
                       f"WA {figure(floats, 'wa')}" + (f"  ({str(training['protocol']).split(' (')[0]})"
                                                       if training.get("protocol") else ""))
    lines = [
        f"model      {manifest.model_id}  ({settings.model.path})",
        f"labels     {', '.join(manifest.labels)}  (scheme {manifest.label_scheme})",
        f"dimensions {', '.join(manifest.dimensions) or 'none'}",
        metric_line,
        f"features   {features.sample_rate_hz} Hz, {features.n_mfcc} MFCC{' + F0 and clarity' if features.pitch else ''}, "
        f"{features.window_ms:g} ms frames "
        f"every {features.hop_ms:g} ms; model window {manifest.input.window_s:g} s ({manifest.input.frames} frames)",
        f"training   corpora {', '.join(corpus_names) or '?'}, seed {training.get('seed', '?')}, "
        f"{training.get('date', '?')}",
        f"use        {manifest.use_summary()}",
        "(--json for the whole manifest)",
    ]
    print("\n".join(lines))
    return EXIT_OK


def _devices() -> int:
    try:
        import sounddevice
    except OSError as exc:
        print(f"ser-edge: cannot load PortAudio: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    inputs = [(i, d) for i, d in enumerate(sounddevice.query_devices()) if d["max_input_channels"] > 0]
    if not inputs:
        print("no audio input devices found", file=sys.stderr)
        return EXIT_FAILURE
    for index, device in inputs:
        print(f"{index:3d}  {device['name']}  ({device['max_input_channels']} ch, "
              f"default {device['default_samplerate']:.0f} Hz)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check-config" and args.config_flag is not None:
        parser.exit(EX_USAGE, f"ser-edge check-config: the file is an argument, not --config: "
                              f"ser-edge check-config {args.config_flag}\n")
    if args.command == "devices":
        return _devices()

    from edge.audio.io import AudioError
    from edge.manifest import ManifestError
    from edge.model import ModelError
    from edge.mqtt.outbox import OutboxError

    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"ser-edge: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    _setup_logging(settings.log_level)
    try:
        if args.command in ("check-config", "run", "replay", "info", "try"):
            settings.check_files()
        if args.command == "check-config":
            print(f"config OK: device_id={settings.resolved_device_id}, model={settings.model.path}, "
                  f"broker={settings.mqtt.host}:{settings.mqtt.port}")
            return EXIT_OK
        if args.command == "info":
            return _info(settings, args.json)
        if args.command == "listen":
            from edge.mqtt.listen import listen

            try:
                return listen(settings.mqtt_settings(), args.json, stop_after=args.count, timeout_s=args.timeout,
                              device_id=args.device_id, share=args.share)
            except ValueError as exc:
                print(f"ser-edge: {exc}", file=sys.stderr)
                return EX_USAGE
        if args.command == "try":
            from edge.service.tester import run_tester

            return run_tester(settings, prompts=args.prompts, utterances=args.utterances)

        from edge.service.daemon import StopFlag, run_microphone, run_replay

        stop = StopFlag()
        stop.install()
        if args.command == "replay":
            raw = None
            if args.raw_format or args.rate is not None or args.channels is not None:
                try:
                    raw = RawFormat(args.raw_format or "s16le", 16000 if args.rate is None else args.rate,
                                    1 if args.channels is None else args.channels)
                except ValueError as exc:
                    print(f"ser-edge: raw PCM: {exc}", file=sys.stderr)
                    return EX_USAGE
            return run_replay(settings, args.files, args.sink, args.realtime, stop, raw=raw, print_mood=args.mood)
        return run_microphone(settings, stop)
    except ConfigError as exc:
        print(f"ser-edge: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except (ManifestError, ModelError, AudioError, OutboxError) as exc:
        print(f"ser-edge: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OutputClosed:  # the reader of standard output went away (`| head -1`): nothing more to say
        stdout_to_devnull()
        return EXIT_OK
    except BrokenPipeError:  # the same, from a print() of info/listen/check-config
        stdout_to_devnull()
        return EXIT_OK
    except OutputError as exc:  # standard output cannot be written (ENOSPC): events were lost
        print(f"ser-edge: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
