"""Helpers shared by the tests (one copy each): waiting on a condition, the ``ser-edge`` command, a model
copy with other feature parameters."""

from __future__ import annotations

import ast
import functools
import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge.events import SCHEMA_VERSION, EmotionEvent
from edge.mqtt.config import MqttSettings

WAIT_POLL_S = 0.02
"""How often :func:`wait_until` asks again."""


def wait_until(predicate: Callable[[], object], timeout_s: float = 20.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` has passed; its last value as a bool. For
    conditions nothing notifies us of (a log line, a counter); never a substitute for a timing assertion."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(WAIT_POLL_S)
    return bool(predicate())


def ser_edge_command() -> list[str]:
    """The installed ``ser-edge`` beside this Python, else ``python -m edge.cli``."""
    installed = shutil.which("ser-edge", path=str(Path(sys.executable).parent))
    return [installed] if installed else [sys.executable, "-m", "edge.cli"]


IN_CI = os.environ.get("CI", "").lower() == "true"
"""Under CI (``CI=true``, as .ci/run sets) a missing broker, data folder or tool fails the test
instead of skipping it: a green CI run must mean the tests ran."""


def skip_or_fail(reason: str) -> None:
    """``pytest.skip(reason)`` on a developer machine, ``pytest.fail(reason)`` under ``CI=true``."""
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Parse a systemd unit into {section: {key: [values in file order]}}.

    Like configparser with strict=False and interpolation off, but keeps every value of a key
    that is repeated (systemd appends or resets on repeats, e.g. SystemCallFilter=).
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"expected a [Section] before {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"expected KEY=VALUE, got {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# ------------------------------------------------------------------ events, MQTT settings, sd_notify

MQTT_TEST_PREFIX = "sertest"
"""The topic prefix of the publisher tests' settings."""

DESIGN_SCORES = {"neutral": 0.03, "calm": 0.01, "happy": 0.08, "sad": 0.02, "angry": 0.71,
                 "fearful": 0.05, "disgust": 0.07, "surprised": 0.03}


def make_event(seq: int, device_id: str = "test-pi", **changes: object) -> EmotionEvent:
    fields: dict[str, object] = dict(
        schema=SCHEMA_VERSION, device_id=device_id, session="5f0c2a9be41d", seq=seq,
        time="2026-11-21T14:03:07.120Z", start_time="2026-11-21T14:03:03.050Z", end_time="2026-11-21T14:03:06.610Z",
        start_s=812.34 + seq, end_s=815.9 + seq, label="angry", confidence=0.71, unsure=False,
        scores=dict(DESIGN_SCORES), arousal=None, valence=None, model="ravdess8-conv1d@3f9a1c2b7d10")
    fields.update(changes)
    return EmotionEvent(**fields)  # type: ignore[arg-type]


def settings_for(broker, **changes: object) -> MqttSettings:
    values: dict[str, object] = dict(host=broker.host, port=broker.port, topic_prefix=MQTT_TEST_PREFIX,
                                     reconnect_min_s=0.1, reconnect_max_s=0.5)
    values.update(changes)
    return MqttSettings(**values)  # type: ignore[arg-type]


class NotifySocket:
    """A datagram socket standing in for systemd's ``$NOTIFY_SOCKET``; records (monotonic s, text)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.datagrams: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._cond:
                self.datagrams.append((time.monotonic(), data.decode()))
                self._cond.notify_all()

    def wait_for(self, text: str, count: int = 1, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while sum(d.startswith(text) for _, d in self.datagrams) < count:
                remaining_s = deadline - time.monotonic()
                assert remaining_s > 0, f"expected {count} x {text!r}, got {[d for _, d in self.datagrams]}"
                self._cond.wait(remaining_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.sock.close()




def model_with_features(model: Path, folder: Path, **changes: object) -> Path:
    """A copy of ``model`` (``NAME.tflite`` and its ``NAME.json``) in ``folder``, its manifest's ``features``
    updated with ``changes`` (the .tflite, and so its sha256, untouched). Returns the copy's .tflite path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / model.with_suffix(".tflite").name
    shutil.copyfile(model.with_suffix(".tflite"), target)
    manifest = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    manifest["features"].update(changes)
    target.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target


# ------------------------------------------------------------------ flush-to-zero (32-bit Raspberry Pi OS)

FTZ_RTOL = 1e-5
FTZ_ATOL = 1e-5
"""How far streaming and batch features may differ when the CPU flushes subnormals to zero: a float32 result
below 1.2e-38 becoming 0 in one path and not in the other (their operations are grouped differently) moves a
feature, whose values are O(1..100), by float32 rounding at most; 1e-5 covers it with a margin."""


def subnormals_flushed() -> bool:
    """Whether float32 arithmetic flushes subnormal results to zero in this thread now (FTZ/DAZ): the armv7l
    tflite-runtime wheel turns it on for the whole process when it loads."""
    return float(np.float32(1e-38) * np.float32(1e-3)) == 0.0


def assert_streaming_equals_batch(streamed: np.ndarray, batch: np.ndarray) -> None:
    """Bit-identical where the CPU keeps subnormals (IEEE 754, the x86-64 and aarch64 wheels); within
    :data:`FTZ_RTOL`/:data:`FTZ_ATOL` where they are flushed to zero (the armv7l tflite-runtime)."""
    if subnormals_flushed():
        np.testing.assert_allclose(streamed, batch, rtol=FTZ_RTOL, atol=FTZ_ATOL)
    else:
        np.testing.assert_array_equal(streamed, batch)


# ------------------------------------------------------------------ tests that read ../shared/data

SHARED_DATA_ROOTS = ("SHARED_DATA", "RAVDESS_MINI", "RAVDESS_48K", "TESS_MINI", "CREMA_D_MINI", "SAVEE_MINI",
                     "TUREV_DB_MINI", "ravdess_mini_clips")
"""The names :mod:`paths` gives the shared data folder (``../shared/data`` beside the repository) by."""


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


@functools.cache
def shared_data_names(module_path: str) -> frozenset[str]:
    """Module-level names of a test module that lead to ../shared/data: the :data:`SHARED_DATA_ROOTS` it
    uses, and, to a fixed point, every top-level assignment, function or fixture whose code (decorators
    included, so ``parametrize`` over clips counts) uses one of them. Read from the source (:mod:`ast`), so
    it also works when the folder is absent and ``CLIPS = sorted(RAVDESS_48K.glob(...))`` is empty."""
    tree = ast.parse(Path(module_path).read_text())
    definitions: list[tuple[set[str], set[str]]] = []  # (names defined, names used)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            definitions.append(({node.name}, _names_in(node)))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            definitions.append((set().union(*(_names_in(t) for t in targets)), _names_in(node.value or node)))
    found = set(SHARED_DATA_ROOTS)
    changed = True
    while changed:
        changed = False
        for defined, used in definitions:
            if used & found and not defined <= found:
                found |= defined
                changed = True
    return frozenset(found)


def needs_shared_data(item: pytest.Item) -> bool:
    """Whether a collected test reads ../shared/data: its function (with decorators) or one of its fixtures
    is among its module's :func:`shared_data_names`."""
    function = getattr(item, "function", None)
    module = getattr(item, "module", None)
    if function is None or module is None or not getattr(module, "__file__", None):
        return False
    names = shared_data_names(module.__file__)
    return function.__name__ in names or bool(set(getattr(item, "fixturenames", ())) & names)
