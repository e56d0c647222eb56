"""A local stand-in for Slack: used by the test suite and by the demo workspace (`hitl demo`).

``webapi`` is the fake Web API (Slack's half the bot calls), ``workspace`` plays the people
(signed payloads to the bot's ``/slack/events``), ``payloads`` builds those payloads and ``ui``
serves the browser page. It talks to the bot only over HTTP, so it imports nothing else of
``bot`` (checked by tests/test_layout.py); only the standard library, aiohttp and slack_sdk.
"""

from bot.sandbox.webapi import Call, FakeSlack, SlackError

__all__ = ["Call", "FakeSlack", "SlackError"]
