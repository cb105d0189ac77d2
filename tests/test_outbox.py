"""The durable outbox (edge/outbox.py) on a real SQLite file: order, bound, survival, a damaged file."""

from __future__ import annotations

import logging

import pytest

from edge.mqtt.outbox import OUTBOX_FILE, Outbox, OutboxError
from edge.settings import state_directory


def test_rows_come_back_in_order_across_reopening(tmp_path):
    path = tmp_path / "state" / OUTBOX_FILE
    box = Outbox(path, capacity=10)
    assert box.durable and len(box) == 0 and box.oldest() is None
    for i in range(3):
        assert box.append(f"t/{i}", f"payload {i}".encode()) == 0
    first = box.oldest()
    assert first is not None and first[1:] == ("t/0", b"payload 0")
    assert box.remove(first[0]) and not box.remove(first[0])
    box.close()
    again = Outbox(path, capacity=10)  # the next start
    assert len(again) == 2 and again.oldest()[1:] == ("t/1", b"payload 1")
    again.close()


def test_overflow_drops_the_oldest_but_never_the_one_in_flight(tmp_path):
    box = Outbox(tmp_path / OUTBOX_FILE, capacity=3)
    for i in range(3):
        box.append("t", bytes([i]))
    in_flight = box.oldest()[0]  # being sent: the publisher passes it as `keep`
    assert box.append("t", b"\x03", keep=in_flight) == 1  # payload 1 goes, 0 (in flight) stays
    assert len(box) == 3
    assert box.oldest() == (in_flight, "t", b"\x00")
    box.remove(in_flight)
    assert box.oldest()[2] == b"\x02"
    box.close()


def test_a_damaged_file_is_set_aside_and_a_new_outbox_started(tmp_path, caplog):
    path = tmp_path / OUTBOX_FILE
    path.write_bytes(b"this is not an SQLite database, just what a bad SD card left" * 100)
    with caplog.at_level(logging.ERROR, logger="edge.mqtt.outbox"):
        box = Outbox(path, capacity=5)
    assert len(box) == 0 and box.append("t", b"x") == 0
    box.close()
    assert [p.name for p in tmp_path.glob(f"{OUTBOX_FILE}.corrupt-*")] and "is unreadable" in caplog.text


def test_an_unwritable_directory_is_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutboxError, match="cannot open the outbox") as info:
        Outbox(blocker / "sub" / OUTBOX_FILE, capacity=5)
    assert "\n" not in str(info.value)


def test_state_directory_from_config_or_systemd():
    assert str(state_directory("/x", {"STATE_DIRECTORY": "/y"})) == "/x"
    assert str(state_directory("", {"STATE_DIRECTORY": "/var/lib/ser-edge:/var/lib/other"})) == "/var/lib/ser-edge"
    assert state_directory("", {}) is None
