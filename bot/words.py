"""Counts in words, and names made safe to show, for every message a person reads (Slack, the
CLI)."""

from __future__ import annotations


def count(n: int, word: str, plural: str | None = None) -> str:
    """``1 item``, ``2 items``, ``1,500 items``: a number and its noun, in the right number."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def escape(text: str) -> str:
    """``text`` with Slack mrkdwn's control characters escaped (``&``, ``<``, ``>``), so an item's
    text or a label cannot ping, link or mention anyone. ``reports.plain`` undoes it for a
    terminal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
