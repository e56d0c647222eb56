"""Exceptions raised inside bot/; the edges (CLI, Slack, HTTP) turn them into words for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class HitlError(Exception):
    """Base class: the message is meant for a person and says what to do."""


class ConfigError(HitlError):
    """One or more settings are invalid; ``problems`` holds one line per bad value."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(HitlError):
    """The database cannot be used as it is (newer schema, unreadable file, ...)."""


class IngestError(HitlError):
    """A whole input file cannot be read (unreadable, unknown format, missing column)."""


# What Slack answers when it refuses the bot token itself (revoked, rotated, the app or its
# installer deactivated): no channel or message is at fault, and a fixed token ends it.
SLACK_TOKEN_REFUSED = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
# How often a refused token is tried again (posting, redrawing): an admin who fixes it expects
# the bot to work again within a minute.
SLACK_TOKEN_RETRY = 60.0


def slack_said(exc: BaseException, key: str = "error") -> Any:
    """A field of the JSON a Slack Web API call answered with its error (``SlackApiError``'s
    ``response``); None when the answer held none, or was not JSON at all: a proxy's error page
    while Slack is down, or a wrong path in SLACK_API_URL (slack_sdk then keeps the body as a
    string, and ``response.get`` raised AttributeError inside the handlers of the error)."""
    data = getattr(getattr(exc, "response", None), "data", None)
    return data.get(key) if isinstance(data, dict) else None


def without_folders(text: str, db: Path) -> str:
    """``text`` with the database's folder taken out of its path (``/srv/hitl/hitl.db`` →
    ``hitl.db``): what unauthenticated ``/healthz`` and members who are not admins are told.
    The server's file system layout is for the log and the admins."""
    for path in sorted({str(db.resolve()), str(db.absolute()), str(db)}, key=len, reverse=True):
        text = text.replace(path, db.name)
    for folder in sorted({str(db.resolve().parent), str(db.absolute().parent)}, key=len,
                         reverse=True):  # fmt: skip
        if folder not in ("", "/", "."):
            text = text.replace(folder + "/", "")
            text = text.replace(folder, Path(folder).name)  # "its folder /srv/hitl" → "hitl"
    return text
