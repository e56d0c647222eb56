"""Fixtures for the reliability tests: the fake Slack workspace."""

from tests.fake_slack import fake_slack

__all__ = ["fake_slack"]
