"""Helpers shared by the tests (one copy each): waiting on a condition, the ``ser-edge`` command."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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
