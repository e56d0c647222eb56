"""Logging for the `hitl` command: levels from -v, and secrets kept out of every line.

Libraries log what they send (slack_sdk logs request headers at DEBUG, Bearer token included),
so every record passes through ``Redactor`` before it is written: Slack tokens, bearer tokens
and the configured secrets become ``***``.
"""

from __future__ import annotations

import logging
import re
import traceback

TOKEN = re.compile(r"\b(xox[a-z]|xapp)-[A-Za-z0-9-]+")
BEARER = re.compile(r"(Bearer\s+)[^\s'\",}]+", re.IGNORECASE)


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
        return BEARER.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True


REDACTOR = Redactor()


LIBRARIES = ("slack_sdk", "slack_bolt", "aiohttp", "asyncio", "apscheduler", "matplotlib")


def configure(verbosity: int) -> None:
    """Configure logging once, for the CLI: WARNING; -v INFO; -vv DEBUG for slack-hitl;
    -vvv DEBUG for the libraries too (their debug lines carry whole request bodies, item
    text included, so they stay quiet unless asked for). Secrets are always redacted."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(
            logging.DEBUG if verbosity >= 3 else max(level, logging.INFO)
        )
    for handler in logging.getLogger().handlers:
        if REDACTOR not in handler.filters:
            handler.addFilter(REDACTOR)
