"""Logging for the `hitl` command: levels from -v, secrets kept out of every line, and one
line per event.

Libraries log what they send (slack_sdk logs request headers at DEBUG, Bearer token included),
so every record passes through ``Redactor`` before it is written: Slack tokens, bearer tokens,
Socket Mode connection tickets and the configured secrets become ``***``. It also escapes
control characters in the message (a newline becomes ``\\n``, an ANSI escape ``\\x1b``), so an
item id or text that a producer sent cannot forge a log line or recolour the terminal; the
traceback of a logged exception keeps its lines.
"""

from __future__ import annotations

import logging
import re
import traceback

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
TOKEN = re.compile(r"\b(xox[a-z]|xapp)-[A-Za-z0-9-]+")
BEARER = re.compile(r"(Bearer\s+)[^\s'\",}]+", re.IGNORECASE)
# A Socket Mode connection ticket (``wss://…/link/?ticket=…``, apps.connections.open's answer,
# which slack_sdk logs at DEBUG): whoever has an unused one can open the app's connection.
TICKET = re.compile(r"([?&]ticket=)[^\s&'\"<>#]+", re.IGNORECASE)


def escape(text: str, keep: str = "") -> str:
    """``text`` with control characters (and Unicode line separators) written as escapes,
    except those in ``keep``."""

    def written(match: re.Match[str]) -> str:
        char = match.group()
        if char in keep:
            return char
        return NAMED.get(char) or (
            f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}"
        )

    return CONTROL.sub(written, text)


class Redactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, *secrets: str | None) -> None:
        self.secrets.update(s for s in secrets if s and len(s) >= 4)

    def redact(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        text = TOKEN.sub(lambda m: f"{m.group(1)}-***", text)
        text = TICKET.sub(r"\1***", text)
        return BEARER.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = escape(self.redact(record.getMessage()))
        record.args = None
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = escape(self.redact(text), keep="\n")
            record.exc_info = None
        return True


REDACTOR = Redactor()


# The loggers whose DEBUG lines wait for -vvv. ``bot.bolt`` is the logger Bolt is given
# (bot/slack/app.py): under ``bot`` by name, but Bolt's own, whose DEBUG lines carry the bodies
# of the responses it sends (a review modal's next item, its text included). ``bot.socket_mode``
# is the one slack_sdk's Socket Mode client is given (bot/slack/connect.py), whose DEBUG lines
# carry every envelope received, item text included (``slack_sdk`` covers its own loggers).
LIBRARIES = (
    "slack_sdk",
    "slack_bolt",
    "bot.bolt",
    "bot.socket_mode",
    "aiohttp",
    "asyncio",
    "apscheduler",
    "matplotlib",
)


def configure(verbosity: int) -> None:
    """Configure logging once, for the CLI: WARNING; -v INFO; -vv DEBUG for slack-hitl;
    -vvv DEBUG for the libraries (and the loggers ``bot.bolt`` and ``bot.socket_mode`` they
    are given) too (their debug lines carry whole request and response bodies, and every
    Socket Mode envelope, item text included, so they stay quiet unless asked for). Secrets
    are always redacted."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(
            logging.DEBUG if verbosity >= 3 else max(level, logging.INFO)
        )
    for handler in logging.getLogger().handlers:
        if REDACTOR not in handler.filters:
            handler.addFilter(REDACTOR)
