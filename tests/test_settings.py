"""Configuration: the documented example parses, typos and wrong types give one line and exit 78."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paths import REPO, SHIPPED_MODEL

from edge.settings import ConfigError, load_settings, parse_settings

EXAMPLE = REPO / "systemd" / "ser-edge.toml"


def test_example_config_documents_every_key_with_its_default():
    data = tomllib.loads(EXAMPLE.read_text())
    parsed = parse_settings(data)
    defaults = parse_settings({"model": {"path": data["model"]["path"]}})
    assert parsed == defaults  # the example shows the defaults
    documented = {f"{table}.{key}" for table, values in data.items() if isinstance(values, dict) for key in values}
    tables = {"model": parsed.model, "audio": parsed.audio, "mqtt": parsed.mqtt, "homeassistant": parsed.homeassistant,
              "decision": parsed.decision, "vad": parsed.decision.vad, "mood": parsed.mood}
    not_in_file = {"mqtt.password", "mqtt.state_dir", "decision.vad"}  # a secret, state_directory's, the [vad] table
    expected = {f"{table}.{f.name}" for table, value in tables.items() for f in dataclasses.fields(value)} - not_in_file
    assert expected - documented == set()  # every key is in the example (the [decision] keys too)
    assert documented - expected == set()  # and nothing else
    for key in expected - {"model.path"}:  # each with its default value ("" = the shipped model: resolved)
        table, name = key.split(".")
        default = getattr(tables[table], name)
        assert data[table][name] == ("" if default is None else default), key


def test_flags_override_the_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[mqtt]\nhost = "from-file"\nport = 1884\n')
    s = load_settings(config, {"mqtt.host": "from-flag", "mqtt.port": None})
    assert (s.mqtt.host, s.mqtt.port) == ("from-flag", 1884)


def test_password_comes_from_environment_or_file(tmp_path):
    s = parse_settings({"mqtt": {"username": "u"}})
    assert s.mqtt_settings({"SER_EDGE_MQTT_PASSWORD": "secret"}).password == "secret"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    s = parse_settings({"mqtt": {"username": "u", "password_file": str(secret)}})
    assert s.mqtt_settings({}).password == "from-file"
    with pytest.raises(ConfigError, match="unknown key"):
        parse_settings({"mqtt": {"password": "never in the file"}})


@pytest.mark.parametrize("text, message", [
    ("[mqtt]\nprot = 1883\n", "mqtt.prot: unknown key"),
    ("[mqtt]\nport = \"1883\"\n", "mqtt.port: expected int, got str"),
    ("[mqtt]\nport = 70000\n", r"mqtt.port: expected a value in \[1, 65535\]"),
    ("[vad]\nhangover_ms = -1\n", r"vad.hangover_ms: expected a value in \(0, 10000\]"),
    ("[decision]\nconfidence_threshold = 2\n", r"decision.confidence_threshold: expected a value in \[0, 1\]"),
    ("[mqtt]\ntls_ca_file = \"/nonexistent/ca.pem\"\n", "mqtt.tls_ca_file: no such file"),
    ("[mqtt]\npassword_file = \"/nonexistent/pw\"\n", "mqtt.password_file: cannot read"),
    ("[modle]\npath = \"x\"\n", "modle: unknown key"),
    ("log_level = \"LOUD\"\n", "log_level: expected one of"),
    ("device_id = 5\n", "device_id: expected str"),
    ("[audio]\nblock_ms = true\n", "audio.block_ms: expected float, got bool"),
    ("mqtt = 3\n", "mqtt: expected a table"),
    ("[mqtt\n", "invalid TOML"),
    ("[mqtt]\nstats_interval_s = -1\n", r"mqtt.stats_interval_s: expected 0 \(no statistics\) or 1..86400 s"),
    ("[homeassistant]\ndiscovery_prefix = \"ha/#\"\n", "homeassistant: discovery_prefix: expected"),
    ("[homeassistant]\nenabled = \"yes\"\n", "homeassistant.enabled: expected bool"),
    # issue 10: each of these passed check-config and then broke the daemon (or gave a traceback)
    ("[mqtt]\nkeepalive_s = 70000\n", r"mqtt.keepalive_s: expected a value in \[1, 65535\]"),
    ("device_id = \"" + "x" * 70000 + "\"\n", "device_id: expected at most 65279 bytes"),
    ("[mqtt]\ntopic_prefix = \"" + "p" * 65500 + "\"\n", "expected at most 65279 bytes|to fit"),
    ("device_id = \"a/b\"\n", "device_id: expected no '/'"),
    ("device_id = \"a+\"\n", "device_id: expected no '\\+'"),
    ("device_id = \"a#\"\n", "device_id: expected no '#'"),
    ("device_id = \"a\\u0000b\"\n", "device_id: expected no"),
    ("[mqtt]\ntopic_prefix = \"$SYS\"\n", "mqtt.topic_prefix: expected no leading '\\$'"),
    ("[mqtt]\nclient_id = \"c#\"\n", "mqtt.client_id: expected no '#'"),
    ("[vad]\nthreshold_db = nan\n", "vad.threshold_db: expected a finite number, got nan"),
    ("[vad]\nmin_energy_dbfs = -inf\n", "vad.min_energy_dbfs: expected a finite number"),
    ("[decision]\nwindow_stride_s = inf\n", "decision.window_stride_s: expected a finite number"),
    ("[decision]\nmin_utterance_s = nan\n", "decision.min_utterance_s: expected a finite number"),
    ("[audio]\nreopen_min_s = 0\n", r"audio.reopen_min_s: expected a value in \(0, 3600\]"),
    ("[audio]\nreopen_min_s = nan\n", "audio.reopen_min_s: expected a finite number"),
    ("[audio]\nreopen_min_s = 40.0\n", "reopen_max_s: expected >= reopen_min_s"),
    ("[audio]\nblock_ms = -5.0\n", r"audio.block_ms: expected a value in \(0, 1000\]"),
    ("[audio]\nsample_rate_hz = -16000\n", "audio.sample_rate_hz: expected 0 \\(auto\\) or 8000..384000"),
    ("[model]\nnum_threads = 100000\n", "model.num_threads: expected 1.."),
    ("[mqtt]\nreconnect_min_s = nan\n", "mqtt.reconnect_min_s: expected a finite number"),
    ("[mqtt]\nprotocol = \"3\"\n", "mqtt: expected protocol in"),
    # issue 18 item 5: these passed check-config and then broke the daemon
    ("device_id = \"kitchen\\tpi\"\n", r"device_id: expected no control character.*\(U\+0009\)"),
    ("device_id = \"kitchen\\npi\"\n", r"device_id: expected no control character.*\(U\+000A\)"),
    ("device_id = \"kitchen\\u007fpi\"\n", r"device_id: expected no control character.*\(U\+007F\)"),
    ("device_id = \"kitchen\\u0085pi\"\n", r"device_id: expected no control character.*\(U\+0085\)"),
    ("[mqtt]\ntopic_prefix = \"ser\\u001b\"\n", r"expected no control character in topic prefix"),
    ("[mqtt]\nclient_id = \"a\\rb\"\n", r"mqtt.client_id: expected no control character"),
    ("[homeassistant]\ndiscovery_prefix = \"ha\\u0001\"\n", r"discovery_prefix: expected no control character"),
    ("[mqtt]\nstats_interval_s = 1e-9\n", r"mqtt.stats_interval_s: expected 0 \(no statistics\) or 1..86400 s, got 1e-09"),
    ("[mqtt]\nstats_interval_s = 0.5\n", r"mqtt.stats_interval_s: expected 0 \(no statistics\) or 1..86400 s"),
])
def test_config_errors_are_one_line_exit_78(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(config)
    assert "\n" not in str(info.value)
    result = subprocess.run([sys.executable, "-m", "edge.cli", "check-config", str(config), "--model",
                             str(SHIPPED_MODEL)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 78
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def _check_config(config) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", "check-config", str(config), "--model",
                           str(SHIPPED_MODEL)], capture_output=True, text=True, timeout=120, check=False)


def test_non_utf8_config_and_password_files_are_one_line_exit_78(tmp_path):
    config = tmp_path / "latin1.toml"
    config.write_bytes('device_id = "küche"\n'.encode("latin-1"))
    result = _check_config(config)
    assert result.returncode == 78 and "expected UTF-8 text" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    secret = tmp_path / "pw"
    secret.write_bytes(b"p\xe4ss\n")
    config = tmp_path / "pw.toml"
    config.write_text(f'[mqtt]\nusername = "u"\npassword_file = "{secret}"\n')
    result = _check_config(config)
    assert result.returncode == 78 and "mqtt.password_file: expected UTF-8 text" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_password_file_sends_its_first_line_only(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("first line\nsecond line\n")
    s = parse_settings({"mqtt": {"username": "u", "password_file": str(secret)}})
    assert s.mqtt_settings({}).password == "first line"
    secret.write_text("\nafter an empty line\n")
    with pytest.raises(ConfigError, match="mqtt.password_file: expected the password on the first line"):
        parse_settings({"mqtt": {"username": "u", "password_file": str(secret)}})


def test_every_command_uses_the_same_validation(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[mqtt]\nkeepalive_s = 70000\n")
    for argv in (["replay", "x.wav", "--config", str(config)], ["run", "--config", str(config)],
                 ["listen", "--config", str(config)], ["info", "--config", str(config)]):
        result = subprocess.run([sys.executable, "-m", "edge.cli", *argv], capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 78, argv
        assert result.stderr.count("\n") == 1 and "mqtt.keepalive_s" in result.stderr, argv


def test_check_config_accepts_the_example_with_a_real_model():
    result = subprocess.run([sys.executable, "-m", "edge.cli", "check-config", str(EXAMPLE), "--model",
                             str(SHIPPED_MODEL)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout


def test_missing_model_is_a_config_error():
    result = subprocess.run([sys.executable, "-m", "edge.cli", "check-config", str(EXAMPLE), "--model",
                             "/nonexistent/model.tflite"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 78
    assert "model.path: no such file" in result.stderr


_values = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=8), st.booleans(),
                    st.lists(st.integers(), max_size=2))
_keys = st.sampled_from(["host", "port", "threshold_db", "hangover_ms", "block_ms", "device", "path",
                         "queue_size", "window_stride_s", "min_utterance_s", "tls", "nonsense"])
_tables = st.sampled_from(["mqtt", "vad", "audio", "model", "decision", "other"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_tables, st.dictionaries(_keys, _values, max_size=4), max_size=4))
def test_fuzz_config_parser_raises_only_config_error(data):
    try:
        parse_settings(data)
    except ConfigError as exc:
        assert "\n" not in str(exc)


RUNTIME_MODULES = ("paho", "ai_edge_litert", "tflite_runtime", "tensorflow", "sounddevice")
"""The MQTT client, the TFLite interpreters and PortAudio: what a command loads only when it runs."""


@pytest.mark.parametrize("module", ["edge.settings", "edge.cli"])
def test_parsing_the_configuration_loads_no_runtime_module(module):
    """``check-config`` (and every command's flag parsing) must work, and fast, without the MQTT client,
    the interpreter or PortAudio: a fresh interpreter imports the module and lists what got loaded."""
    code = (f"import json, sys, {module}; from edge.settings import parse_settings; parse_settings({{}}); "
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert module in json.loads(done.stdout)
    assert loaded.isdisjoint(RUNTIME_MODULES), sorted(loaded & set(RUNTIME_MODULES))
