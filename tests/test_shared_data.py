"""The tests that read ../shared/data are found from their source (helpers.shared_data_names), so conftest
can skip them with a reason when the folder is absent, or fail them under CI=true (issue 19)."""

from __future__ import annotations

from pathlib import Path

from helpers import shared_data_names

MODULE = '''
import pytest
from paths import RAVDESS_48K, SAMPLE

CLIPS = sorted(RAVDESS_48K.glob("*.wav"))
FIRST = CLIPS[:1]
OWN = SAMPLE


@pytest.fixture
def speech():
    return FIRST[0]


def _helper():
    return OWN


@pytest.mark.parametrize("clip", CLIPS)
def test_each_clip(clip):
    pass


def test_through_the_fixture(speech):
    pass


def test_own_sample():
    _helper()
'''


def test_names_that_lead_to_the_shared_data_are_found(tmp_path: Path) -> None:
    module = tmp_path / "test_example.py"
    module.write_text(MODULE)
    names = shared_data_names(str(module))
    assert {"CLIPS", "FIRST", "speech", "test_each_clip"} <= names
    assert not {"OWN", "_helper", "test_own_sample", "test_through_the_fixture"} & names  # the fixture is enough


def test_real_modules_are_classified() -> None:
    names = shared_data_names(str(Path(__file__).with_name("test_vad.py")))
    assert "test_the_stationarity_check_leaves_real_speech_alone" in names  # reads ravdess-mini
    assert "test_the_sample_gives_its_four_sentences" not in names  # edge/samples only
