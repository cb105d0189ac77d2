"""Daemon configuration: one TOML file (stdlib ``tomllib``) + command-line overrides, parsed once.

Every key is documented in ``systemd/ser-edge.toml``. The file is parsed into frozen dataclasses
and validated before anything starts; a problem raises :class:`ConfigError` with one line naming
the key (``mqtt.port: expected an integer, got 'abc'``), which the CLI turns into exit status 78
(EX_CONFIG, sysexits.h). Secrets never come from flags: the MQTT password comes from the
environment variable ``SER_EDGE_MQTT_PASSWORD`` or from the first line of ``mqtt.password_file``.

Validation is done once, here, for every command: each value has the type of its field, every
number is finite and inside the range listed in :data:`RANGES` (also written in the example
config), topic levels (device id, prefixes, client id) are non-empty, free of ``/ + # NUL``, do
not start with ``$`` and fit a topic (:data:`MAX_TOPIC_BYTES` in UTF-8 in all), and files are UTF-8.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from edge.audio.formats import MAX_RATE_HZ, MIN_RATE_HZ, RawFormat
from edge.dsp.vad import VadParams
from edge.exitcodes import EX_CONFIG  # noqa: F401 - re-exported: the exit status of a ConfigError
from edge.mood import MoodParams
from edge.mqtt.config import MAX_STATS_INTERVAL_S, MIN_STATS_INTERVAL_S, MqttSettings
from edge.postprocess import DecisionParams
from edge.validate import expect_tls_files, expect_topic_level

PASSWORD_ENV = "SER_EDGE_MQTT_PASSWORD"
DEFAULT_MODEL = ""
"""``model.path`` default: empty = the model shipped in the package (:func:`shipped_model`)."""
SHIPPED_MODELS_PACKAGE = "edge.models"
"""The package holding the shipped model and manifest (the repository's ``models/``, see pyproject.toml)."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_TOPIC_BYTES = 65535
"""MQTT's limit on a topic name (and a client id): a 16-bit length prefix (MQTT 5 sec. 1.5.4)."""
TOPIC_ROOM_BYTES = 256
"""Bytes kept free for the levels the daemon appends (``/emotion``, Home Assistant's ``/sensor/...``)."""
MAX_THREADS_PER_CORE = 4


def shipped_model() -> str:
    """Path of the one ``.tflite`` shipped in :data:`SHIPPED_MODELS_PACKAGE` (its ``.json`` beside it),
    whatever its name; ``""`` if there is none or more than one (then ``model.path`` must be set).

    In a source checkout or an editable install (where setuptools cannot map that data-only
    package) it is the repository's ``models/`` folder beside ``edge/``.
    """
    from importlib import resources

    try:
        folder = resources.files(SHIPPED_MODELS_PACKAGE)
        entries = list(folder.iterdir())
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, TypeError):
        entries = list((Path(__file__).resolve().parent.parent / "models").glob("*"))
    found = sorted(str(entry) for entry in entries if entry.name.endswith(".tflite"))
    return found[0] if len(found) == 1 else ""


class ConfigError(ValueError):
    """A configuration problem; the message is one line naming the key."""


@dataclass(frozen=True)
class ModelSettings:
    path: str = DEFAULT_MODEL
    """The .tflite (its .json manifest beside it); relative paths are relative to the working directory.
    Empty = the model shipped in the package (resolved by :func:`parse_settings`)."""
    num_threads: int = 1
    """Interpreter threads, 1..(cores x 4), or -1 = the interpreter decides; 1 leaves the other cores
    to the rest of the device."""


@dataclass(frozen=True)
class AudioSettings:
    device: str = ""
    """Input device: a name (substring, as ``ser-edge devices`` lists) or an index; empty = the default."""
    sample_rate_hz: int = 0
    """Rate to open the device at, 8000..384000 Hz; 0 = the model's rate if the device supports it,
    else its default rate."""
    block_ms: float = 100.0
    """Audio delivered per callback, (0, 1000] ms."""
    reopen_min_s: float = 1.0
    """First delay before reopening a failed device, (0, 3600] s; doubles up to ``reopen_max_s``."""
    reopen_max_s: float = 30.0
    input_command: str = ""
    """A command whose standard output is raw PCM, read instead of the microphone (``arecord -t raw``,
    ``parecord --raw``, ``pw-record -``); restarted with the same backoff. Empty = the microphone."""
    input_format: str = "s16le"
    """Sample format of ``input_command``'s output: s16le, s32le, f32le or u8 (rate: ``sample_rate_hz``,
    0 = the model's)."""
    channels: int = 1
    """Interleaved channels of ``input_command``'s output (averaged to mono)."""

    def __post_init__(self) -> None:
        if not self.reopen_max_s >= self.reopen_min_s:
            raise ValueError(f"reopen_max_s: expected >= reopen_min_s ({self.reopen_min_s}), got {self.reopen_max_s!r}")
        if self.input_command:
            RawFormat(self.input_format, self.sample_rate_hz or 16000, self.channels)  # ValueError if bad


@dataclass(frozen=True)
class HomeAssistantSettings:
    """The ``[homeassistant]`` table: MQTT discovery (https://www.home-assistant.io/integrations/mqtt/)."""

    enabled: bool = True
    """Publish retained discovery configs so Home Assistant creates the device's sensors by itself."""
    discovery_prefix: str = "homeassistant"
    """Home Assistant's discovery prefix; its birth message is expected on ``<discovery_prefix>/status``."""
    expire_after_s: int = 300
    """Seconds without an utterance after which the emotion sensors become unavailable; 0 = never."""

    def __post_init__(self) -> None:
        if self.expire_after_s < 0:
            raise ValueError(f"expire_after_s: expected >= 0 (0 = never), got {self.expire_after_s!r}")
        try:
            expect_topic_level(self.discovery_prefix, "discovery_prefix", levels=True)
        except ValueError as exc:
            raise ValueError(f"discovery_prefix: {exc}") from None

@dataclass(frozen=True)
class Settings:
    device_id: str = ""
    """Topic level naming this device; empty = the host name."""
    log_level: str = "INFO"
    state_directory: str = ""
    """Directory of the durable event outbox; empty = ``$STATE_DIRECTORY`` (systemd's
    ``StateDirectory=``), and with that unset too the outbox is in memory only."""
    model: ModelSettings = field(default_factory=ModelSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    """The ``[mqtt]`` table (without the password: :meth:`mqtt_settings` adds it)."""
    homeassistant: HomeAssistantSettings = field(default_factory=HomeAssistantSettings)
    decision: DecisionParams = field(default_factory=DecisionParams)
    mood: MoodParams = field(default_factory=MoodParams)
    """The ``[mood]`` table: the smoothed arousal published on ``<topic_prefix>/<device_id>/mood``."""

    @property
    def resolved_device_id(self) -> str:
        return self.device_id or socket.gethostname().split(".")[0]

    @property
    def state_dir(self) -> Path | None:
        """Where the durable outbox lives (see :attr:`state_directory`), or ``None`` (memory)."""
        return state_directory(self.state_directory)

    def check_files(self) -> None:
        """Raise :class:`ConfigError` naming the key if a file the settings point at is missing."""
        if not self.model.path:
            raise ConfigError(f"model.path: not set, and no single model is installed in {SHIPPED_MODELS_PACKAGE}")
        model = Path(self.model.path)
        for path in (model, model.with_suffix(".json")):
            if not path.is_file():
                raise ConfigError(f"model.path: no such file: {path}")
        self.mqtt_settings()
        state = self.state_dir
        if state is not None and self.mqtt.enabled:
            try:
                state.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"state_directory: cannot create {state}: {exc.strerror}") from None
            if not os.access(state, os.W_OK | os.X_OK):
                raise ConfigError(f"state_directory: {state} is not writable")

    def mqtt_settings(self, environ: typing.Mapping[str, str] | None = None) -> MqttSettings:
        """The broker connection, with the password from the environment or ``password_file``.

        Raises :class:`ConfigError` for an unreadable password file or an invalid combination.
        """
        environ = os.environ if environ is None else environ
        m = self.mqtt
        password = environ.get(PASSWORD_ENV) or None
        if m.password_file:
            password = _first_line(m.password_file)
        if password is not None and "\x00" in password:
            raise ConfigError("mqtt.password: expected no NUL character in the password")
        for key in ("tls_ca_file", "tls_certfile", "tls_keyfile"):
            value = getattr(m, key)
            if value and not Path(value).is_file():
                raise ConfigError(f"mqtt.{key}: no such file: {value}")
        try:
            expect_tls_files(m.tls_ca_file or None, m.tls_certfile or None, m.tls_keyfile or None)
        except ValueError as exc:
            raise ConfigError(f"mqtt: {exc}") from None
        try:
            return dataclasses.replace(m, password=password,
                                       state_dir=None if self.state_dir is None else str(self.state_dir))
        except ValueError as exc:
            raise ConfigError(f"mqtt: {exc}") from None

def state_directory(configured: str = "", environ: typing.Mapping[str, str] | None = None) -> Path | None:
    """The state directory (the outbox, the adaptation state, Home Assistant's discovery memory):
    ``configured`` if set, else ``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``; the first entry
    when it lists several, separated by ``:``), else ``None`` (memory only)."""
    if configured:
        return Path(configured)
    value = (os.environ if environ is None else environ).get("STATE_DIRECTORY", "")
    first = value.split(":", 1)[0]
    return Path(first) if first else None


def _first_line(path: str) -> str:
    """The first line of a UTF-8 text file without its line ending (``mqtt.password_file``)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"mqtt.password_file: cannot read {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"mqtt.password_file: expected UTF-8 text, got byte 0x{data[exc.start]:02x} "
                          f"at offset {exc.start}") from None
    line = text.splitlines()[0] if text else ""
    if not line:
        raise ConfigError(f"mqtt.password_file: expected the password on the first line of {path}, got an "
                          f"empty line")
    return line


def _cores() -> int:
    return os.cpu_count() or 1


# Documented ranges of every numeric key: (low, high, low is exclusive). NaN and inf never pass.
RANGES: dict[str, tuple[float, float, bool]] = {
    "audio.block_ms": (0.0, 1000.0, True),
    "audio.reopen_min_s": (0.0, 3600.0, True),
    "audio.reopen_max_s": (0.0, 3600.0, True),
    "audio.channels": (1, 32, False),
    **{f"mqtt.{name}": limits for name, limits in MqttSettings.RANGES.items()},
    "homeassistant.expire_after_s": (0, 604800, False),
    "vad.threshold_db": (0.0, 100.0, True),
    "vad.min_energy_dbfs": (-200.0, 0.0, False),
    "vad.onset_ms": (0.0, 10000.0, True),
    "vad.hangover_ms": (0.0, 10000.0, True),
    "vad.noise_floor_rise_s": (0.0, 3600.0, True),
    "vad.stationary_ms": (0.0, 10000.0, True),
    "vad.stationary_db": (0.0, 100.0, False),
    "decision.window_stride_s": (0.0, 60.0, True),
    "decision.min_utterance_s": (0.0, 60.0, False),
    "decision.max_utterance_s": (0.0, 3600.0, True),
    "decision.confidence_threshold": (0.0, 1.0, False),
    "mood.tau_s": (0.0, 86400.0, True),
    "mood.hold_s": (0.0, 86400.0, False),
    **{f"mood.{name}": (-1.0, 1.0, False)
       for name in ("rest_arousal", "calm_enter", "calm_leave", "agitated_leave", "agitated_enter")},
}
"""Every numeric key's range, beyond the special cases in :func:`_check_number`."""


def _check_number(key: str, value: object) -> None:
    """Raise :class:`ConfigError` for a non-finite number or one outside its documented range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    if key == "model.num_threads":
        high = _cores() * MAX_THREADS_PER_CORE
        if value != -1 and not 1 <= value <= high:
            raise ConfigError(f"{key}: expected 1..{high} (cores x {MAX_THREADS_PER_CORE}) or -1 (auto), got {value!r}")
    elif key == "audio.sample_rate_hz":
        if value != 0 and not MIN_RATE_HZ <= value <= MAX_RATE_HZ:
            raise ConfigError(f"{key}: expected 0 (auto) or {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz, got {value!r}")
    elif key == "mqtt.stats_interval_s":
        if value != 0 and not MIN_STATS_INTERVAL_S <= value <= MAX_STATS_INTERVAL_S:
            raise ConfigError(f"{key}: expected 0 (no statistics) or {MIN_STATS_INTERVAL_S:g}..{MAX_STATS_INTERVAL_S:g} s, "
                              f"got {value!r}")
    elif key in RANGES:
        low, high, exclusive = RANGES[key]
        if (value <= low if exclusive else value < low) or value > high:
            interval = f"{'(' if exclusive else '['}{low:g}, {high:g}]"
            raise ConfigError(f"{key}: expected a value in {interval}, got {value!r}")


def check_topic_level(key: str, value: str, levels: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is usable in a topic (:func:`edge.validate.expect_topic_level`:
    non-empty levels without ``+``, ``#`` or NUL; ``/`` only if ``levels``), does not start with ``$``
    (the broker's ``$SYS`` space) and has at most :data:`MAX_TOPIC_BYTES` - :data:`TOPIC_ROOM_BYTES`
    bytes of UTF-8."""
    try:
        expect_topic_level(value, key, levels)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    if value.startswith("$"):
        raise ConfigError(f"{key}: expected no leading '$' (reserved for the broker, e.g. $SYS), got {value!r}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigError(f"{key}: expected valid Unicode text, got {value!r}") from None
    if size > MAX_TOPIC_BYTES - TOPIC_ROOM_BYTES:
        raise ConfigError(f"{key}: expected at most {MAX_TOPIC_BYTES - TOPIC_ROOM_BYTES} bytes, got {size}")


def _check_topics(settings: Settings) -> None:
    """Topic levels one by one, and the longest topic they make together."""
    check_topic_level("device_id", settings.resolved_device_id)
    check_topic_level("mqtt.topic_prefix", settings.mqtt.topic_prefix, levels=True)
    check_topic_level("homeassistant.discovery_prefix", settings.homeassistant.discovery_prefix, levels=True)
    if settings.mqtt.client_id:
        check_topic_level("mqtt.client_id", settings.mqtt.client_id)
    device = len(settings.resolved_device_id.encode("utf-8"))
    longest = device + max(len(settings.mqtt.topic_prefix.encode("utf-8")),
                           len(settings.homeassistant.discovery_prefix.encode("utf-8")))
    if longest > MAX_TOPIC_BYTES - TOPIC_ROOM_BYTES:
        raise ConfigError(f"device_id: expected the topics it makes with the prefixes to fit "
                          f"{MAX_TOPIC_BYTES} bytes, got {longest + TOPIC_ROOM_BYTES}")


# [decision] holds DecisionParams' scalar fields; its vad field is the [vad] table.
_TABLES: dict[str, type] = {
    "model": ModelSettings, "audio": AudioSettings, "mqtt": MqttSettings,
    "homeassistant": HomeAssistantSettings, "decision": DecisionParams, "vad": VadParams,
    "mood": MoodParams,
}


def _coerce(key: str, value: object, annotation: object) -> object:
    """Check ``value`` against a dataclass field's type (int, float, str, bool); ints pass as floats."""
    expected = annotation if isinstance(annotation, type) else None
    if isinstance(annotation, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        expected = next(a for a in typing.get_args(annotation) if a is not type(None))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected in (int, float, str, bool) and (type(value) is not expected):
        raise ConfigError(f"{key}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, table: object, prefix: str, skip: tuple[str, ...] = ()) -> object:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}: expected a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - set(skip)
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(f"{prefix}.{k}", v, hints[k]) for k, v in table.items()}
    for k, v in kwargs.items():
        _check_number(f"{prefix}.{k}", v)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"{prefix}: {exc}") from None


MQTT_NOT_IN_FILE = ("password", "state_dir")
"""``MqttSettings`` fields never read from the ``[mqtt]`` table (a secret; ``state_directory``'s)."""


def _build_mqtt(table: object) -> MqttSettings:
    """The ``[mqtt]`` table as :class:`MqttSettings`; an empty string stands for ``None``."""
    if isinstance(table, dict):
        table = {k: (None if v == "" and k in MqttSettings.OPTIONAL_TEXT else v) for k, v in table.items()}
    return _build(MqttSettings, table, "mqtt", skip=MQTT_NOT_IN_FILE)


def _resolve_model(model: ModelSettings) -> ModelSettings:
    return model if model.path else dataclasses.replace(model, path=shipped_model())


def parse_settings(data: dict, overrides: dict | None = None) -> Settings:
    """Settings from a parsed TOML document plus overrides ``{"mqtt.host": "x", ...}`` (flags).

    Raises :class:`ConfigError` for an unknown table or key, a wrong type or a bad value.
    """
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        table, _, key = dotted.rpartition(".")
        (data.setdefault(table, {}) if table else data)[key] = value
    top_level = {"device_id": str, "log_level": str, "state_directory": str}
    unknown = sorted(set(data) - set(top_level) - set(_TABLES))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (known: {', '.join(sorted([*top_level, *_TABLES]))})")
    for key, kind in top_level.items():
        if key in data:
            _coerce(key, data[key], kind)
    level = str(data.get("log_level", "INFO")).upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log_level: expected one of {', '.join(LOG_LEVELS)}, got {data['log_level']!r}")
    vad = _build(VadParams, data.get("vad", {}), "vad")
    decision_table = data.get("decision", {})
    decision = _build(DecisionParams, decision_table, "decision", skip=("vad",))
    decision = dataclasses.replace(decision, vad=vad)
    settings = Settings(
        device_id=data.get("device_id", ""),
        log_level=level,
        state_directory=data.get("state_directory", ""),
        model=_resolve_model(_build(ModelSettings, data.get("model", {}), "model")),
        audio=_build(AudioSettings, data.get("audio", {}), "audio"),
        mqtt=_build_mqtt(data.get("mqtt", {})),
        homeassistant=_build(HomeAssistantSettings, data.get("homeassistant", {}), "homeassistant"),
        decision=decision,
        mood=_build(MoodParams, data.get("mood", {}), "mood"),
    )
    _check_topics(settings)
    settings.mqtt_settings(environ={})  # validate the connection settings now, not at connect time
    return settings


def load_settings(path: str | Path | None, overrides: dict | None = None) -> Settings:
    """Read ``path`` (TOML; None = defaults only) and apply ``overrides``. Raises :class:`ConfigError`."""
    data: dict = {}
    if path is not None:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: expected UTF-8 text, got byte 0x{exc.object[exc.start]:02x} at "
                              f"offset {exc.start}") from None
    return parse_settings(data, overrides)
