"""A local stand-in for Slack: used by the test suite and by the demo workspace (`hitl demo`)."""

from bot.sandbox.webapi import Call, FakeSlack, SlackError

__all__ = ["Call", "FakeSlack", "SlackError"]
