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
from edge.exitcodes import EX_CONFIG, EXIT_FAILURE, EXIT_OK

DESCRIPTION = """\
Speech emotion recognition at the edge. Listens to speech, runs an int8 TFLite model on MFCCs,
and publishes one event per utterance over MQTT (topic <prefix>/<device_id>/emotion, QoS 1,
availability on <prefix>/<device_id>/status). No audio leaves the device.
"""

EPILOG = """\
examples:
  ser-edge replay speech.wav --sink stdout          print events for a file, no broker needed
  ser-edge replay a.wav b.flac --mqtt-host broker   publish them to a broker
  ser-edge run --config /etc/ser-edge/ser-edge.toml the daemon (as systemd runs it)
  ser-edge listen --mqtt-host broker                watch events from every device
  ser-edge devices                                  list microphones
  ser-edge check-config /etc/ser-edge/ser-edge.toml validate a config without starting
"""


def _common(parser: argparse.ArgumentParser) -> None:
    from edge.settings import LOG_LEVELS

    group = parser.add_argument_group("configuration (flags override the config file)")
    group.add_argument("--config", metavar="FILE", help="TOML config file (see systemd/ser-edge.toml)")
    group.add_argument("--model", metavar="PATH", help="model .tflite (manifest .json beside it)")
    group.add_argument("--mqtt-host", metavar="H", help="MQTT broker host")
    group.add_argument("--mqtt-port", metavar="P", type=int, help="MQTT broker port")
    group.add_argument("--device-id", metavar="ID", help="topic level naming this device (default: host name)")
    group.add_argument("--log-level", choices=LOG_LEVELS, help="log verbosity")


def build_parser() -> argparse.ArgumentParser:
    from edge.model import INTERPRETER
    from edge.publisher import SINKS

    parser = argparse.ArgumentParser(prog="ser-edge", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ser-edge {__version__} (interpreter: {INTERPRETER})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="listen to the microphone and publish events (the daemon)",
                         description="Read the microphone, publish an event per utterance. Stops on SIGTERM/SIGINT, "
                                     "publishing 'offline' first. Under systemd it sends READY=1 and watchdog pings.")
    _common(run)
    run.add_argument("--device", metavar="NAME|INDEX", help="input device (see 'ser-edge devices')")

    replay = sub.add_parser("replay", help="run the same pipeline over audio files",
                            description="Feed WAV/FLAC files (8..384 kHz and >= the model's rate, mono or stereo; "
                                        "MP3 and Ogg are refused) through the daemon's pipeline. At the end it "
                                        "flushes, waits for the broker's acknowledgements and exits 0; a file it "
                                        "cannot use is skipped with a logged reason, and an event dropped, refused "
                                        "by the broker or left unacknowledged also makes the exit status 1.")
    _common(replay)
    replay.add_argument("files", nargs="+", type=Path, metavar="FILE")
    replay.add_argument("--realtime", action="store_true", help="pace the input at real time, like a microphone")
    replay.add_argument("--sink", choices=SINKS, default="mqtt",
                        help="publish to the broker (default), print JSON lines (no broker needed), or both")

    listen = sub.add_parser("listen", help="print events from all devices (an MQTT subscriber for people)")
    _common(listen)
    listen.add_argument("--json", action="store_true", help="print raw JSON payloads")
    listen.add_argument("--count", type=int, metavar="N", help="exit after N events")
    listen.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds")

    sub.add_parser("devices", help="list audio input devices and their default rates")

    info = sub.add_parser("info", help="show a model's manifest: labels, features, metrics")
    _common(info)

    check = sub.add_parser("check-config", help="validate a config file without starting")
    check.add_argument("file", nargs="?", metavar="FILE")
    _common(check)
    return parser


def _settings(args):
    from edge.settings import load_settings

    overrides = {
        "model.path": getattr(args, "model", None),
        "mqtt.host": getattr(args, "mqtt_host", None),
        "mqtt.port": getattr(args, "mqtt_port", None),
        "device_id": getattr(args, "device_id", None),
        "log_level": getattr(args, "log_level", None),
        "audio.device": getattr(args, "device", None),
    }
    config = getattr(args, "config", None) or getattr(args, "file", None)
    return load_settings(config, overrides)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
    args = build_parser().parse_args(argv)
    if args.command == "devices":
        return _devices()

    from edge.audio import AudioError
    from edge.manifest import ManifestError
    from edge.model import ModelError
    from edge.outbox import OutboxError
    from edge.settings import ConfigError

    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"ser-edge: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    _setup_logging(settings.log_level)
    try:
        if args.command in ("check-config", "run", "replay", "info"):
            settings.check_files()
        if args.command == "check-config":
            print(f"config OK: device_id={settings.resolved_device_id}, model={settings.model.path}, "
                  f"broker={settings.mqtt.host}:{settings.mqtt.port}")
            return EXIT_OK
        if args.command == "info":
            from edge.manifest import load_manifest

            manifest = load_manifest(settings.model.path)
            print(json.dumps({k: v for k, v in manifest.to_dict().items() if k != "features"}, indent=2))
            return EXIT_OK
        if args.command == "listen":
            from edge.publisher import listen

            return listen(settings.mqtt_settings(), args.json, stop_after=args.count, timeout_s=args.timeout)

        from edge.daemon import StopFlag, run_microphone, run_replay

        stop = StopFlag()
        stop.install()
        if args.command == "replay":
            return run_replay(settings, args.files, args.sink, args.realtime, stop)
        return run_microphone(settings, stop)
    except ConfigError as exc:
        print(f"ser-edge: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except (ManifestError, ModelError, AudioError, OutboxError) as exc:
        print(f"ser-edge: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
