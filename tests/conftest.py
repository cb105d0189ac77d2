"""Shared fixtures: a real mosquitto broker on a free loopback port, MQTT subscribers, and the fake
microphone (:mod:`microphone`). Shared functions are in :mod:`helpers`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `import mqtt_helpers` also when tests/ is a package

from helpers import IN_CI, needs_shared_data, skip_or_fail  # noqa: E402, F401 - IN_CI: re-exported for older imports
from microphone import alsa_mic, clip_48k, model_path  # noqa: E402, F401 - fixtures of the fake microphone
from mqtt_helpers import BrokerTls, MosquittoBroker, Subscriber, find_mosquitto  # noqa: E402
from paths import SHARED_DATA  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``shared_data`` every test that reads ../shared/data (helpers.needs_shared_data)."""
    for item in items:
        if needs_shared_data(item):
            item.add_marker("shared_data")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A ``shared_data`` test without the folder: skipped with the reason, or failed under CI=true."""
    if item.get_closest_marker("shared_data") and not SHARED_DATA.is_dir():
        skip_or_fail(f"needs the shared test audio in {SHARED_DATA} (the shared folder beside the repository)")


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """Factory ``make(persistence=False, start=True, autosave=False, tls=None, password_file=None,
    acl_file=None, extra_config=()) -> MosquittoBroker`` (see :class:`mqtt_helpers.MosquittoBroker`); every broker is stopped at teardown.

    Skips the test if the mosquitto binary is absent (fails it under ``CI=true``).
    """
    binary = find_mosquitto()
    if binary is None:
        skip_or_fail("mosquitto binary not found (apt-get install mosquitto); MQTT tests need a real broker")
    brokers: list[MosquittoBroker] = []

    def make(persistence: bool = False, start: bool = True, autosave: bool = False,
             tls: BrokerTls | None = None, password_file: Path | None = None,
             acl_file: Path | None = None, extra_config: tuple[str, ...] = ()) -> MosquittoBroker:
        workdir = tmp_path / f"mosquitto{len(brokers)}"
        workdir.mkdir()
        broker = MosquittoBroker(binary, workdir, persistence=persistence, autosave=autosave, tls=tls,
                                 password_file=password_file, acl_file=acl_file,
                                 extra_config=extra_config)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """A running mosquitto (anonymous, no persistence) with ``.host``, ``.port``, ``.stop()``, ``.start()``."""
    return mosquitto_factory()


@pytest.fixture
def mqtt_subscriber() -> Iterator[Callable[..., Subscriber]]:
    """Factory ``make(host, port, topics, **kwargs) -> Subscriber``; all are closed at teardown."""
    subscribers: list[Subscriber] = []

    def make(host: str, port: int, topics: list[str] | str, **kwargs: object) -> Subscriber:
        subscriber = Subscriber(host, port, topics, **kwargs)  # type: ignore[arg-type]
        subscribers.append(subscriber)
        return subscriber

    yield make
    for subscriber in subscribers:
        subscriber.close()
