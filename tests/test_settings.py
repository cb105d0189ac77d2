"""Configuration: the documented example parses, typos and wrong types give one line and exit 78."""

from __future__ import annotations

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
    for table in ("model", "audio", "mqtt", "homeassistant", "vad"):
        for key in getattr(parsed, table if table != "vad" else "decision").__dataclass_fields__:
            if table == "vad":
                continue
            assert f"{table}.{key}" in documented or (table == "mqtt" and key == "password"), key
    for key in parsed.decision.vad.__dataclass_fields__:
        assert f"vad.{key}" in documented


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
    ("[mqtt]\nport = 70000\n", "mqtt: expected port in 1..65535"),
    ("[vad]\nhangover_ms = -1\n", "vad.hangover_ms: expected > 0"),
    ("[decision]\nconfidence_threshold = 2\n", "confidence_threshold: expected 0..1"),
    ("[mqtt]\ntls_ca_file = \"/nonexistent/ca.pem\"\n", "mqtt.tls_ca_file: no such file"),
    ("[mqtt]\npassword_file = \"/nonexistent/pw\"\n", "mqtt.password_file: cannot read"),
    ("[modle]\npath = \"x\"\n", "modle: unknown key"),
    ("log_level = \"LOUD\"\n", "log_level: expected one of"),
    ("device_id = 5\n", "device_id: expected str"),
    ("[audio]\nblock_ms = true\n", "audio.block_ms: expected float, got bool"),
    ("mqtt = 3\n", "mqtt: expected a table"),
    ("[mqtt\n", "invalid TOML"),
    ("[mqtt]\nstats_interval_s = -1\n", "mqtt: stats_interval_s: expected >= 0"),
    ("[homeassistant]\ndiscovery_prefix = \"ha/#\"\n", "homeassistant: discovery_prefix: expected"),
    ("[homeassistant]\nenabled = \"yes\"\n", "homeassistant.enabled: expected bool"),
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
