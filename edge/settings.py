"""Daemon configuration: one TOML file (stdlib ``tomllib``) + command-line overrides, parsed once.

Every key is documented in ``systemd/ser-edge.toml``. The file is parsed into frozen dataclasses
and validated before anything starts; a problem raises :class:`ConfigError` with one line naming
the key (``mqtt.port: expected an integer, got 'abc'``), which the CLI turns into exit status 78
(EX_CONFIG, sysexits.h). Secrets never come from flags: the MQTT password comes from the
environment variable ``SER_EDGE_MQTT_PASSWORD`` or from ``mqtt.password_file``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from edge.pipeline import DecisionParams
from edge.publisher import MqttSettings
from edge.vad import VadParams

EX_CONFIG = 78
PASSWORD_ENV = "SER_EDGE_MQTT_PASSWORD"
DEFAULT_MODEL = ""
"""``model.path`` default: empty = the model shipped in the package (:func:`shipped_model`)."""
SHIPPED_MODELS_PACKAGE = "edge.models"
"""The package holding the shipped model and manifest (the repository's ``models/``, see pyproject.toml)."""


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
    """Interpreter threads; 1 leaves the other cores to the rest of the device."""


@dataclass(frozen=True)
class AudioSettings:
    device: str = ""
    """Input device: a name (substring, as ``ser-edge devices`` lists) or an index; empty = the default."""
    sample_rate_hz: int = 0
    """Rate to open the device at; 0 = the model's rate if the device supports it, else its default rate."""
    block_ms: float = 100.0
    """Audio delivered per callback."""
    reopen_min_s: float = 1.0
    """First delay before reopening a failed device; doubles up to ``reopen_max_s``."""
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
        if self.input_command:
            from edge.sources import RawFormat

            RawFormat(self.input_format, self.sample_rate_hz or 16000, self.channels)  # ValueError if bad


@dataclass(frozen=True)
class MqttFileSettings:
    """The ``[mqtt]`` table: :class:`edge.publisher.MqttSettings` plus switches that are not the connection's."""

    enabled: bool = True
    host: str = "localhost"
    port: int = 1883
    topic_prefix: str = "ser"
    client_id: str = ""
    keepalive_s: int = 60
    username: str = ""
    password_file: str = ""
    tls: bool = False
    tls_ca_file: str = ""
    tls_certfile: str = ""
    tls_keyfile: str = ""
    queue_size: int = 1000
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    stats_interval_s: float = 60.0
    """Wall-clock seconds between retained messages on ``<topic_prefix>/<device_id>/stats``; 0 = none."""

    def __post_init__(self) -> None:
        if not self.stats_interval_s >= 0:
            raise ValueError(f"stats_interval_s: expected >= 0 (0 = off), got {self.stats_interval_s!r}")


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
        prefix = self.discovery_prefix
        if not prefix or prefix.startswith("/") or prefix.endswith("/") or any(c in prefix for c in "+#\x00"):
            raise ValueError(f"discovery_prefix: expected a non-empty topic without leading/trailing '/', "
                             f"'+', '#' or NUL, got {prefix!r}")


@dataclass(frozen=True)
class Settings:
    device_id: str = ""
    """Topic level naming this device; empty = the host name."""
    log_level: str = "INFO"
    model: ModelSettings = field(default_factory=ModelSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    mqtt: MqttFileSettings = field(default_factory=MqttFileSettings)
    homeassistant: HomeAssistantSettings = field(default_factory=HomeAssistantSettings)
    decision: DecisionParams = field(default_factory=DecisionParams)

    @property
    def resolved_device_id(self) -> str:
        return self.device_id or socket.gethostname().split(".")[0]

    def check_files(self) -> None:
        """Raise :class:`ConfigError` naming the key if a file the settings point at is missing."""
        if not self.model.path:
            raise ConfigError(f"model.path: not set, and no single model is installed in {SHIPPED_MODELS_PACKAGE}")
        model = Path(self.model.path)
        for path in (model, model.with_suffix(".json")):
            if not path.is_file():
                raise ConfigError(f"model.path: no such file: {path}")
        self.mqtt_settings(environ={})

    def mqtt_settings(self, environ: typing.Mapping[str, str] | None = None) -> MqttSettings:
        """The broker connection, with the password from the environment or ``password_file``.

        Raises :class:`ConfigError` for an unreadable password file or an invalid combination.
        """
        environ = os.environ if environ is None else environ
        m = self.mqtt
        password = environ.get(PASSWORD_ENV) or None
        if m.password_file:
            try:
                password = Path(m.password_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"mqtt.password_file: cannot read {m.password_file}: {exc.strerror}") from None
        for key in ("tls_ca_file", "tls_certfile", "tls_keyfile"):
            value = getattr(m, key)
            if value and not Path(value).is_file():
                raise ConfigError(f"mqtt.{key}: no such file: {value}")
        try:
            return MqttSettings(
                host=m.host, port=m.port, topic_prefix=m.topic_prefix, client_id=m.client_id or None,
                keepalive_s=m.keepalive_s, username=m.username or None, password=password, tls=m.tls,
                tls_ca_file=m.tls_ca_file or None, tls_certfile=m.tls_certfile or None,
                tls_keyfile=m.tls_keyfile or None, queue_size=m.queue_size,
                reconnect_min_s=m.reconnect_min_s, reconnect_max_s=m.reconnect_max_s,
            )
        except ValueError as exc:
            raise ConfigError(f"mqtt: {exc}") from None


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# [decision] holds DecisionParams' scalar fields; its vad field is the [vad] table.
_TABLES: dict[str, type] = {
    "model": ModelSettings, "audio": AudioSettings, "mqtt": MqttFileSettings,
    "homeassistant": HomeAssistantSettings, "decision": DecisionParams, "vad": VadParams,
}


def _coerce(key: str, value: object, annotation: object) -> object:
    """Check ``value`` against a dataclass field's type (int, float, str, bool); ints pass as floats."""
    expected = annotation if isinstance(annotation, type) else None
    if isinstance(annotation, types.UnionType):
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
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"{prefix}: {exc}") from None


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
    top_level = {"device_id": str, "log_level": str}
    unknown = sorted(set(data) - set(top_level) - set(_TABLES))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (known: {', '.join(sorted([*top_level, *_TABLES]))})")
    for key, kind in top_level.items():
        if key in data:
            _coerce(key, data[key], kind)
    level = str(data.get("log_level", "INFO")).upper()
    if level not in _LOG_LEVELS:
        raise ConfigError(f"log_level: expected one of {', '.join(_LOG_LEVELS)}, got {data['log_level']!r}")
    vad = _build(VadParams, data.get("vad", {}), "vad")
    decision_table = data.get("decision", {})
    decision = _build(DecisionParams, decision_table, "decision", skip=("vad",))
    decision = dataclasses.replace(decision, vad=vad)
    settings = Settings(
        device_id=data.get("device_id", ""),
        log_level=level,
        model=_resolve_model(_build(ModelSettings, data.get("model", {}), "model")),
        audio=_build(AudioSettings, data.get("audio", {}), "audio"),
        mqtt=_build(MqttFileSettings, data.get("mqtt", {}), "mqtt"),
        homeassistant=_build(HomeAssistantSettings, data.get("homeassistant", {}), "homeassistant"),
        decision=decision,
    )
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
    return parse_settings(data, overrides)
