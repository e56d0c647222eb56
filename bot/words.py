"""Counts in words, and names made safe to show, for every message a person reads (Slack, the
CLI)."""

from __future__ import annotations

import re
from collections.abc import Sequence

SLACK_USER = re.compile(r"[UW][A-Z0-9]+")  # a user ID, as in a mention


def count(n: int, word: str, plural: str | None = None) -> str:
    """``1 item``, ``2 items``, ``1,500 items``: a number and its noun, in the right number."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def first_few(items: Sequence[str], most: int = 5) -> str:
    """The first ``most`` of ``items``, comma-separated, with " …" when there are more: the
    items a one-line message names."""
    return ", ".join(items[:most]) + (" …" if len(items) > most else "")


def escape(text: str) -> str:
    """``text`` with Slack mrkdwn's control characters escaped (``&``, ``<``, ``>``), so an item's
    text or a label cannot ping, link or mention anyone. ``reports.plain`` undoes it for a
    terminal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# What Slack mrkdwn formats with: *bold*, _italic_, ~strike~, `code`.
MRKDWN_MARKS = frozenset("*_~`")


def name_mrkdwn(name: str) -> str:
    """A name people chose (a label) for Slack mrkdwn, shown and copied as written: escaped
    (``escape``) and, when it holds a character mrkdwn formats with (a star rating "3*",
    "*bold*_x_", "how_to"), in a code span, as `/hitl labels` lists labels, where Slack
    formats nothing (mrkdwn has no backslash escape, and a joiner put between the marks would
    be copied with the name). A mark inside a word ("how_to") formats nothing in Slack: such a
    name stays as it is. A code span cannot hold a backtick: a name with one is only escaped.
    ``reports.plain`` leaves a name ``reports.name`` marked as it is."""
    shown = escape(name)
    if "`" in name or not _MARK_AT_EDGE.search(name):
        return shown
    return f"`{shown}`"


# A formatting mark with no letter or digit on one side (the start or end of the name counts):
# where mrkdwn may open or close a format.
_MARK_AT_EDGE = re.compile(r"(?:^|(?<=[\W_]))[*_~]|[*_~](?=[\W_]|$)")


def person(user: str) -> str:
    """A Slack user ID as a mention; anyone else by name, escaped: ``cli:ana`` (from `hitl
    labels`) as ``ana``, a pseudonym of `hitl people anonymise` (``former-1``) as itself, not a
    mention Slack would draw broken."""
    return f"<@{user}>" if SLACK_USER.fullmatch(user) else escape(user.removeprefix("cli:"))
