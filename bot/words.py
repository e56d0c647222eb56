"""Counts in words, and names made safe to show, for every message a person reads (Slack, the
CLI)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

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


# What stands for a backtick in a label Slack shows in a code span (``code_text``): U+02CB
# MODIFIER LETTER GRAVE ACCENT, which reads as one and ends nothing.
BACKTICK_LOOKALIKE = "\u02cb"


def code_text(text: str) -> str:
    """``text`` to go inside a code span in Slack mrkdwn: escaped (``escape``: Slack reads
    ``&``, ``<`` and ``>`` as markup even there) and each backtick written as
    ``BACKTICK_LOOKALIKE`` ("ˋ"). Mrkdwn has no escape for a backtick inside code: a real one
    would end the span early and let the rest format the line (or, paired, open another)."""
    return escape(text).replace("`", BACKTICK_LOOKALIKE)


def name_mrkdwn(label: str) -> str:
    """A name people chose (a label) for Slack mrkdwn: always in a code span, the one way every
    Slack surface shows a label (questions, replies, `/hitl labels`, reports, review, quality,
    guidelines), so "*urgent*", "_x_", "~y~", "3*" or "<!here>" cannot format the line, link or
    ping. The text inside is ``code_text``'s: escaped, and a backtick in the name shown as
    "ˋ" (U+02CB), so the span ends where the name does; that one character is not copied
    as typed (mrkdwn can show a backtick in code no other way). Text built for both Slack and
    a terminal names labels with ``name`` instead."""
    return f"`{code_text(label)}`"


# A label in text built for Slack and a terminal alike (reports, `/hitl stats` and `hitl
# stats`): ``name`` shows it as ``name_mrkdwn`` does, or, built ``for_terminal``, as it is
# between these two marks, which ``reports.plain`` drops leaving what is between untouched (a
# label "3*" keeps its star, "_x_" its underscores, "a`b" its backtick). A label cannot hold
# them (control characters are refused).
NAME_OPEN, NAME_CLOSE = "\x02", "\x03"
_TERMINAL: ContextVar[bool] = ContextVar("words_for_terminal", default=False)


def name(label: str) -> str:
    """``label`` for text Slack and the terminal both show: for Slack, ``name_mrkdwn``;
    within ``for_terminal``, as it is (``marked``), for ``reports.plain`` to leave so."""
    label = label.replace(NAME_OPEN, "").replace(NAME_CLOSE, "")
    return marked(label) if _TERMINAL.get() else name_mrkdwn(label)


def marked(label: str) -> str:
    """``label`` between the marks ``name`` uses for a terminal (kept in data such as a
    class's note, which ``reports`` shows through ``name`` later)."""
    return f"{NAME_OPEN}{label.replace(NAME_OPEN, '').replace(NAME_CLOSE, '')}{NAME_CLOSE}"


@contextlib.contextmanager
def for_terminal() -> Iterator[None]:
    """Text built within shows labels as they are, for ``reports.plain`` (the CLI's output)."""
    token = _TERMINAL.set(True)
    try:
        yield
    finally:
        _TERMINAL.reset(token)


def person(user: str) -> str:
    """A Slack user ID as a mention; anyone else by name, escaped: ``cli:ana`` (from `hitl
    labels`) as ``ana``, a pseudonym of `hitl people anonymise` (``former-1``) as itself, not a
    mention Slack would draw broken."""
    return f"<@{user}>" if SLACK_USER.fullmatch(user) else escape(user.removeprefix("cli:"))
