"""Fixtures for tests/bot/: the fake Slack workspace from tests/fake_slack.py.

The fake is re-exported rather than listed in `pytest_plugins`: pytest 9 refuses
`pytest_plugins` in any conftest below the rootdir ("non-top-level conftest"), and the top-level
tests/conftest.py is not this module's to edit.
"""

from __future__ import annotations

from tests.fake_slack import fake_slack

__all__ = ["fake_slack"]
