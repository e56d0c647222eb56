"""Fixtures for tests/bot/: the fake Slack workspace from tests/fake_slack.py.

The fake is re-exported rather than listed in `pytest_plugins`: pytest 9 refuses
`pytest_plugins` in any conftest below the rootdir ("non-top-level conftest"), and the top-level
tests/conftest.py is not this module's to edit.
"""

from __future__ import annotations

import pytest

from bot.learning import stopping
from tests.bot.harness import remembered_curve
from tests.fake_slack import fake_slack

__all__ = ["fake_slack", "remembered_curves"]


@pytest.fixture
def remembered_curves(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each retrain's learning curve remembered by its arguments for this process
    (``tests.bot.harness.remembered_curve``): for the files whose tests fit the same labels more
    than once, or labels another test fitted (``pytestmark = usefixtures(...)``)."""
    monkeypatch.setattr(stopping, "_curve", remembered_curve)
