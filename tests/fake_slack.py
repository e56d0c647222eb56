"""The fake Slack workspace for tests: a pytest plugin (fixture `fake_slack`) and a client helper.

Registered for tests/bot/ by tests/bot/conftest.py. The fake itself lives in bot/sandbox/webapi.py
so that `hitl demo` can serve the same workspace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox import FakeSlack

CHANNEL = "C0QUESTIONS"
CHANNEL_NAME = "labeling"
USERS = {"U0ANA": "ana", "U0RAJ": "raj", "U0ADMIN": "admin"}


def build_workspace() -> FakeSlack:
    """The workspace every test starts from: #labeling (the bot is in it) and three people."""
    fake = FakeSlack()
    fake.add_channel(CHANNEL, CHANNEL_NAME)
    for user_id, name in USERS.items():
        fake.add_user(user_id, name, is_admin=user_id == "U0ADMIN")
    return fake


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = build_workspace()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


def slack_client(fake: FakeSlack, **kwargs: Any) -> AsyncWebClient:
    """An AsyncWebClient with the bot token, pointed at `fake`."""
    return AsyncWebClient(token=fake.token, base_url=fake.base_url, **kwargs)
