"""The command line as a user meets it: --help with defaults, info, journal priorities, the shipped
model outside the repository, listen --device-id and --share against a real mosquitto."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import tomllib
import zipfile
from pathlib import Path

import paho.mqtt.publish as publish
import pytest
from helpers import ser_edge_command
from paths import RAVDESS_48K, SHIPPED_MODEL

from edge.cli import build_parser
from edge.events import SCORE_DECIMALS, EmotionEvent
from edge.manifest import load_manifest
from edge.mqtt.topics import emotion_topic

CLIPS = sorted(RAVDESS_48K.glob("*.wav"))
WAIT_S = 30.0
PROBE_WAIT_S = 0.5
"""Between probe events while waiting for subscribers whose SUBACK the test cannot see."""
COMMANDS = ("run", "replay", "listen", "devices", "info", "check-config", "try")


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*ser_edge_command(), *args], capture_output=True, text=True, timeout=120, check=False, **kwargs)


def _help(*args: str) -> str:
    """What ``ser-edge ARGS --help`` prints (in-process, through the public parser)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*args, "--help"])
    return out.getvalue()


def test_every_subcommand_has_a_description_and_every_option_its_default() -> None:
    listed = re.findall(r"^    ([a-z][a-z-]*)", _help().split("COMMAND\n", 1)[1].split("\n\n")[0], re.MULTILINE)
    assert set(listed) == set(COMMANDS)
    helps = {name: _help(name) for name in COMMANDS}
    for name, text in helps.items():
        description = text.split("\n\n")[1]  # usage, then the description
        assert len(description) > 40, name
        # one entry per option: "  --flag METAVAR  help ..." up to the next option or section
        for entry in re.split(r"\n(?=  -|\n)", text.split("options:", 1)[1]):
            signature = entry.strip().splitlines()[0].split("  ")[0] if entry.strip() else ""
            if not signature.startswith("-") or signature.startswith("-h"):
                continue
            takes_value = " " in signature.split(",")[-1].strip()  # "--model PATH", not "--realtime"
            if takes_value:
                assert "default" in " ".join(entry.split()), (name, signature)
    run_help = " ".join(helps["run"].split())
    assert "MQTT broker host; default: config's mqtt.host, else localhost" in run_help
    assert "else 1883" in run_help and "else INFO" in run_help and "installed with ser-edge" in run_help


@pytest.mark.parametrize("command", ["info", "try"])
@pytest.mark.parametrize("flag", ["--mqtt-host", "--mqtt-port", "--device-id"])
def test_commands_that_publish_nothing_take_no_broker_flags(command: str, flag: str) -> None:
    assert flag not in _help(command)
    with contextlib.redirect_stderr(io.StringIO()) as err, pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, flag, "1"])
    assert exited.value.code == 2 and f"unrecognized arguments: {flag} 1" in err.getvalue()


def test_check_config_takes_the_file_as_its_argument_not_config(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('device_id = "kitchen-pi"\n')
    assert "--config" not in _help("check-config")
    wrong = _run("check-config", "--config", str(config))
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [
        f"ser-edge check-config: the file is an argument, not --config: ser-edge check-config {config}"]
    right = _run("check-config", str(config), "--model", str(SHIPPED_MODEL))
    assert right.returncode == 0, right.stderr
    assert right.stdout.startswith("config OK: device_id=kitchen-pi,")


def test_listen_help_says_what_json_prints() -> None:
    text = " ".join(_help("listen").split())
    assert "only the events' JSON payloads as the devices published them" in text
    assert "availability changes go to standard error" in text


@pytest.mark.slow
def test_info_is_a_short_summary_and_json_is_the_whole_manifest() -> None:
    manifest = load_manifest(SHIPPED_MODEL)
    short = _run("info", "--model", str(SHIPPED_MODEL))
    assert short.returncode == 0, short.stderr
    lines = short.stdout.splitlines()
    assert len(lines) <= 10
    assert lines[0].startswith(f"model      {manifest.model_id}")
    assert ", ".join(manifest.labels) in short.stdout and "UA 0." in short.stdout and "int8" in short.stdout
    use = [line for line in lines if line.startswith("use ")]
    assert use == [f"use        {manifest.use_summary()}"] and "non-commercial" in use[0], lines
    if manifest.metrics.get("loco"):  # the threshold with the digits of the events' confidence
        assert f"unsure below {manifest.unsure_below:.{SCORE_DECIMALS}f}" in short.stdout
    full = _run("info", "--model", str(SHIPPED_MODEL), "--json")
    assert json.loads(full.stdout) == manifest.to_dict()


@pytest.mark.slow
def test_the_shipped_model_is_found_outside_the_repository(tmp_path: Path) -> None:
    """``pip install .`` installs the model, the demo and its audio as package data; from any directory,
    no --model. The build warns of nothing and leaves no ``build/`` or ``*.egg-info`` in the source tree."""
    repo = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # a copy, so the check of what the build leaves behind is exact
    shutil.copytree(repo, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                  ".*_cache", ".hypothesis", "data", "runs", "cache"))
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    wheel_dir = tmp_path / "wheel"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(wheel_dir), str(source)],
                           capture_output=True, text=True, timeout=300, check=False)
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip().splitlines()[-1:]}")
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before  # no build/, no *.egg-info
    wheel = next(wheel_dir.glob("ser_edge-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"edge/samples/demo.py", "edge/samples/speech-sample.wav", "edge/samples/crema-d/ATTRIBUTION.md"} <= names
    target = tmp_path / "site"
    wheel = next(wheel_dir.glob("ser_edge-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    assert sorted(p.name for p in (target / "edge" / "models").iterdir()) == sorted(
        [SHIPPED_MODEL.name, SHIPPED_MODEL.with_suffix(".json").name])
    env = {**os.environ, "PYTHONPATH": str(target)}
    sample = target / "edge" / "samples" / "speech-sample.wav"
    code = ("import sys, edge.cli, edge.settings; assert edge.cli.__file__.startswith(sys.argv[1]), edge.cli.__file__; "
            "print('shipped model:', edge.settings.shipped_model(), file=sys.stderr); sys.exit(edge.cli.main(sys.argv[2:]))")
    result = subprocess.run([sys.executable, "-c", code, str(target), "replay", str(sample), "--sink", "stdout"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    events = [EmotionEvent.from_json(line) for line in result.stdout.splitlines()]
    assert events and events[0].model == load_manifest(SHIPPED_MODEL).model_id
    assert f"shipped model: {target / 'edge' / 'models' / SHIPPED_MODEL.name}" in result.stderr


@pytest.mark.parametrize("machine, litert", [("x86_64", True), ("AMD64", True), ("aarch64", True), ("arm64", True),
                                             ("armv8l", False), ("armv7l", False), ("armv6l", False), ("i686", False)])
def test_the_interpreter_dependency_follows_the_machine(machine: str, litert: bool) -> None:
    """ai-edge-litert (no 32-bit wheels) is a dependency on 64-bit machines only. A 32-bit Raspberry Pi OS on a
    64-bit kernel installs under `setarch linux32`, where uname (platform_machine) says armv8l: no LiteRT there;
    its interpreter, tflite-runtime, comes with the legacy extra."""
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    environment = {"platform_machine": machine, "extra": ""}
    wanted = {r.name for r in map(Requirement, project["dependencies"]) if r.marker is None or r.marker.evaluate(environment)}
    assert ("ai-edge-litert" in wanted) == litert
    assert {"numpy", "scipy", "paho-mqtt", "soundfile"} <= wanted
    assert "tflite-runtime" in {Requirement(r).name for r in project["optional-dependencies"]["legacy"]}


def test_ser_train_without_the_training_extra_says_what_to_install(tmp_path: Path) -> None:
    """A device-only install has ser-train on PATH but not the train extra: one line, exit 1, no traceback.
    The extra's modules are made unimportable in the child (None in sys.modules), as on a device."""
    from trainer.cli import MISSING_EXTRA, TRAINING_MODULES

    code = ("import sys\nfor name in sys.argv[1].split(','): sys.modules[name] = None\n"
            "from trainer.cli import main\nsys.exit(main(sys.argv[2:]))")
    for command in (["evaluate", "--model", str(SHIPPED_MODEL), "--corpus", f"ravdess={tmp_path}"],
                    ["rescore", str(tmp_path)]):
        done = subprocess.run([sys.executable, "-c", code, ",".join(sorted(TRAINING_MODULES)), *command], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 1, (command, done.stderr)
        last = done.stderr.strip().splitlines()
        assert last[-1].startswith(MISSING_EXTRA) and "Traceback" not in done.stderr, (command, done.stderr)
    assert "ser-edge[train]" in MISSING_EXTRA
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "\ntrain = [" in pyproject  # the extra the message names exists


@pytest.mark.slow
def test_journal_priorities_when_stderr_is_the_journal(tmp_path: Path) -> None:
    """With $JOURNAL_STREAM naming stderr (as systemd sets it), every line starts with <N>."""
    log = tmp_path / "stderr"
    with open(log, "w") as handle:
        status = os.fstat(handle.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        subprocess.run([*ser_edge_command(), "replay", str(tmp_path / "missing.wav"), "--sink", "stdout",
                        "--model", str(SHIPPED_MODEL)], stderr=handle, stdout=subprocess.DEVNULL, env=env,
                       timeout=120, check=False)
    lines = [line for line in log.read_text().splitlines() if line.strip() and not line.startswith("INFO: Created")]
    assert lines and all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert any(line.startswith("<3>edge.service.daemon: skipped") for line in lines), lines
    assert any(line.startswith("<6>edge.service.daemon: ser-edge ") for line in lines), lines
    plain = _run("replay", str(tmp_path / "missing.wav"), "--sink", "stdout", "--model", str(SHIPPED_MODEL),
                 env={**os.environ, "JOURNAL_STREAM": "1:2"})  # another file: not the journal
    assert re.search(r"^\d{4}-\d\d-\d\d .* ERROR edge.service.daemon: skipped", plain.stderr, re.MULTILINE), plain.stderr


# ----------------------------------------------------------------------------------------- listen


class Listener:
    """``ser-edge listen --json`` as a subprocess; stdout lines collected by a thread."""

    def __init__(self, broker, *args: str) -> None:
        self.proc = subprocess.Popen([*ser_edge_command(), "listen", "--json", "--mqtt-host", broker.host, "--mqtt-port",
                                      str(broker.port), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[dict] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(json.loads(line))
                self._cond.notify_all()

    def events(self, device_id: str | None = None) -> list[dict]:
        with self._cond:
            return [e for e in self.lines if "seq" in e and (device_id is None or e["device_id"] == device_id)]

    def wait(self, predicate, timeout_s: float = WAIT_S) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout_s)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(WAIT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _probe(broker, device_id: str, seq: int, session: str = "probe0000000") -> None:
    labels = load_manifest(SHIPPED_MODEL).labels
    scores = {label: 1.0 / len(labels) for label in labels}
    event = EmotionEvent(schema=2, device_id=device_id, session=session, seq=seq, time="2026-11-21T14:03:07.120Z",
                         start_time="2026-11-21T14:03:03.050Z", end_time="2026-11-21T14:03:06.610Z", start_s=0.0,
                         end_s=1.0, label=labels[-1], confidence=1.0 / len(labels), unsure=True, scores=scores, arousal=None,
                         valence=None, model="probe@000000000000")
    publish.single(emotion_topic("ser", device_id), event.to_json(), qos=1, hostname=broker.host, port=broker.port)


def test_listen_device_id_filters(mosquitto) -> None:
    only_a = Listener(mosquitto, "--device-id", "a")
    everyone = Listener(mosquitto)
    try:
        seq = 0
        while not (everyone.events() and only_a.events()):  # probes until both are subscribed (SUBACK unseen)
            _probe(mosquitto, "b", seq)
            _probe(mosquitto, "a", seq)
            seq += 1
            assert seq < 200, "the listeners never subscribed"
            everyone.wait(lambda: bool(everyone.events() and only_a.events()), PROBE_WAIT_S)
        _probe(mosquitto, "a", 1000)
        assert only_a.wait(lambda: any(e["seq"] == 1000 for e in only_a.events()))
        assert {e["device_id"] for e in only_a.events()} == {"a"}
    finally:
        assert only_a.stop() == 0 and everyone.stop() == 0


@pytest.mark.slow
def test_two_consumers_of_one_share_group_split_the_events_none_lost(mosquitto) -> None:
    """``listen --share GROUP``: a real mosquitto gives each event of a replay to one consumer of the
    group; together they have every event exactly once."""
    first, second = Listener(mosquitto, "--share", "workers"), Listener(mosquitto, "--share", "workers")
    try:
        seq = 0  # probes until both consumers are subscribed (each has received one)
        while not (first.events("probe") and second.events("probe")):
            _probe(mosquitto, "probe", seq)
            seq += 1
            assert seq < 200, "the consumers never subscribed"
            first.wait(lambda: bool(first.events("probe") and second.events("probe")), PROBE_WAIT_S)
        replay = _run("replay", *map(str, CLIPS), "--sink", "both", "--device-id", "fleet-1", "--model",
                      str(SHIPPED_MODEL), "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port))
        assert replay.returncode == 0, replay.stderr
        produced = [json.loads(line)["seq"] for line in replay.stdout.splitlines()]
        assert len(produced) >= len(CLIPS)

        def union() -> list[int]:
            return sorted(e["seq"] for x in (first, second) for e in x.events("fleet-1"))

        first.wait(lambda: len(union()) >= len(produced))
        assert union() == sorted(produced)  # none lost, none twice
        assert first.events("fleet-1") and second.events("fleet-1")  # split between the two
    finally:
        assert first.stop() == 0 and second.stop() == 0
