"""Fixtures for tests/bot/: the fake Slack workspace from tests/fake_slack.py.

The fake is re-exported rather than listed in `pytest_plugins`: pytest 9 refuses
`pytest_plugins` in any conftest below the rootdir ("non-top-level conftest"), and the top-level
tests/conftest.py is not this module's to edit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.learning import stopping
from bot.slack import commands
from tests.bot.harness import LogLines, remembered_curve
from tests.fake_slack import fake_slack
from tests.processes import copy_database

__all__ = [
    "fake_slack",
    "remembered_curves",
    "replies_reach_a_fake",
    "two_models",
    "two_models_made",
]

UNREACHED = "could not answer by response_url: ClientConnector"


@pytest.fixture(autouse=True)
def replies_reach_a_fake() -> Iterator[LogLines]:
    """Fails a test in which the product sent a reply by response_url to an address nothing
    answers (``signing.RESPONSE_URL``, a payload built without the harness's ``Bot``): that
    reply was lost, and the test could not see what the person was told. Point the payload at
    the fake (``response_url=fake.response_url(channel)``), or send it through ``Bot``. A test
    of such a reply asks for this fixture and clears its ``records`` once it has read them."""
    lines = LogLines()
    commands.logger.addHandler(lines)
    try:
        yield lines
    finally:
        commands.logger.removeHandler(lines)
    lost = lines.said(UNREACHED)
    if lost:
        pytest.fail(
            f"a reply by response_url went to an address no fake Slack serves: {lost}; "
            "build the payload with response_url=fake.response_url(channel) or post it "
            "through tests.bot.harness.Bot",
            pytrace=False,
        )


@pytest.fixture
def remembered_curves(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each retrain's learning curve remembered by its arguments for this process
    (``tests.bot.harness.remembered_curve``): for the files whose tests fit the same labels more
    than once, or labels another test fitted (``pytestmark = usefixtures(...)``)."""
    monkeypatch.setattr(stopping, "_curve", remembered_curve)


@pytest.fixture(scope="module")
def two_models_made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database whose champion is v2, v1 retired (files of both kept), made by the CLI once
    for a module's tests (``test_models_folder.make_two_models``)."""
    from tests.bot.test_models_folder import make_two_models

    return make_two_models(tmp_path_factory.mktemp("two-models"))


@pytest.fixture
def two_models(two_models_made: Path, tmp_path: Path) -> Path:
    """``two_models_made``'s database and models folder, a copy of each test's own."""
    return copy_database(two_models_made, tmp_path)
