"""Settings: environment variables over an optional ``hitl.toml`` over defaults.

``load_settings`` reads and validates everything once and raises one ``ConfigError`` listing
every bad value, each with where it came from and what is allowed. Nothing reads settings at
import time; tests build ``Settings(...)`` directly.

Its length (~500 lines) is one ``Settings`` field per setting with its default, parsing and
the one-line message for a bad value, plus the ``[labels.NAME]`` guidelines table: every
setting reads in one place, as the README's settings table does. Splitting the guideline
parsing out is the next step if it grows.
"""

from __future__ import annotations

import codecs
import functools
import ipaddress
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from bot.errors import ConfigError
from bot.labelnames import MAX_LABEL, how_twins_differ, label_key, label_name, label_problem

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
CONFIG_FILE = "hitl.toml"


@dataclass(frozen=True)
class Guideline:
    """What a label means, for the people answering: ``[labels.NAME]`` in hitl.toml."""

    description: str = ""
    examples: tuple[str, ...] = ()


TYPICAL_AUTO = "auto"  # HITL_TYPICAL_UNTIL's one word: labels in proportion to the label set


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str = DEFAULT_SLACK_API_URL
    db: Path = Path("hitl.db")
    channel: str | None = None
    report_channel: str | None = None
    labels: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()
    answer_teams: tuple[str, ...] = ()  # (): the app's own workspace; ("*",): anyone
    api_token: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_allow: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 3000
    threshold: float = 0.8
    audit_rate: float = 0.1
    gold_rate: float = 0.05
    max_open: int = 5
    question_ttl: int = 72  # hours an unanswered question stays open; 0: for ever
    votes: int = 1
    show_votes: bool = False
    skips_to_discard: int = 2
    review_agreement: float = 0.6
    review_confidence: float = 0.95
    retrain_cron: str = "0 3 * * *"
    timezone: str = "UTC"
    pipeline: str | None = None  # None: model/'s default
    strategy: str = "margin"  # a name registered in model.selection.STRATEGIES
    keep_models: int = 5
    refresh_every: int = 25  # refit the working model after this many new labels; 0: off
    warm_up: int = 0  # model.selection.DEFAULT_WARM_UP: random picks below it; 0: off
    # TypiClust's picks below it (bot.learning.typical); 0: off; TYPICAL_AUTO: 8 labels a
    # label of the set, at most 150 (``bot.learning.typical.typical_until``)
    typical_until: int | str = TYPICAL_AUTO
    aggregation: str = "dawid_skene"  # how training reads multi-vote items (AGGREGATIONS)
    connect_retry: float = 1.0  # bot.slack.connect.RETRY_BASE: first wait to reach Slack at start
    routes: Mapping[str, str] = field(default_factory=dict)
    guidelines: Mapping[str, Guideline] = field(default_factory=dict)  # [labels.NAME] in toml
    show_meta: tuple[str, ...] = ()
    redact: tuple[str, ...] = ()  # kinds of personal data replaced as items arrive
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def models_dir(self) -> Path:
        """Model files live beside the database: ``<db>.models/``."""
        return self.db.with_name(self.db.name + ".models")

    @property
    def effective_report_channel(self) -> str | None:
        return self.report_channel or self.channel

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)


# -- parsers: value (str from env, or a TOML value) -> typed value, or ValueError(what's allowed)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    value = value.strip()
    if not value:
        raise ValueError("is empty; unset it or give a value")
    return value


MIN_API_TOKEN = 16
MAKE_A_TOKEN = '`python -c "import secrets; print(secrets.token_urlsafe(32))"`'


def api_token(value: Any) -> str:
    """HITL_API_TOKEN: long enough not to be guessed (a 1-character token fell in 17 tries) and
    sendable as it is in an ``Authorization: Bearer`` header (no space or control character)."""
    token = _text(value)
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise ValueError(
            f"has a space or a control character, which a Bearer header cannot carry; make a"
            f" token with {MAKE_A_TOKEN}"
        )
    if len(token) < MIN_API_TOKEN:
        raise ValueError(
            f"has {len(token)} character{'s' if len(token) != 1 else ''}, fewer than"
            f" {MIN_API_TOKEN}: a client could guess it; make a token with {MAKE_A_TOKEN}"
        )
    return token


def webhook_secret(value: Any) -> str:
    """HITL_WEBHOOK_SECRET: every delivery carries an HMAC of its body under it, so a short one
    falls to an offline search from a single delivery a receiver logged."""
    secret = _text(value)
    if len(secret) < MIN_API_TOKEN:
        raise ValueError(
            f"has {len(secret)} character{'s' if len(secret) != 1 else ''}, fewer than"
            f" {MIN_API_TOKEN}: one signed delivery is enough to guess it; make a secret with"
            f" {MAKE_A_TOKEN}"
        )
    return secret


def _digits(value: Any) -> Any:
    """A number written as text, as Python's ``int``/``float`` read it but in plain digits:
    they also take ``3_000`` and other scripts' digits (``٣٠٠٠``), which a setting is not
    written in (a TOML integer's ``3_000`` is read by the TOML parser, not here)."""
    if isinstance(value, str) and ("_" in value or not value.isascii()):
        raise ValueError
    return value


def _number(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            number = float(_digits(value))
        except (TypeError, ValueError):
            raise ValueError(f"is not a number; use a value between {low:g} and {high:g}") from None
        if not low <= number <= high:
            raise ValueError(f"is out of range; use a value between {low:g} and {high:g}")
        return number

    parse.bounds = (low, high)  # type: ignore[attr-defined]  # the README's table shows them
    return parse


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        try:
            if isinstance(value, float) or isinstance(value, bool):
                raise ValueError
            number = int(_digits(value))
        except (TypeError, ValueError):
            raise ValueError(f"is not a whole number; use one from {low} to {high}") from None
        if not low <= number <= high:
            raise ValueError(f"is out of range; use a whole number from {low} to {high}")
        return number

    parse.bounds = (low, high)  # type: ignore[attr-defined]
    return parse


def _integer_or_auto(low: int, high: int) -> Callable[[Any], int | str]:
    """``_integer``'s whole number, or the word TYPICAL_AUTO (any case)."""
    number = _integer(low, high)

    def parse(value: Any) -> int | str:
        if isinstance(value, str) and value.strip().lower() == TYPICAL_AUTO:
            return TYPICAL_AUTO
        try:
            return number(value)
        except ValueError as exc:
            raise ValueError(f"{exc}, or {TYPICAL_AUTO}") from None

    parse.bounds = (low, high)  # type: ignore[attr-defined]
    return parse


def _list(value: Any) -> tuple[str, ...]:
    written = isinstance(value, list | tuple)  # a list as such (hitl.toml, or "[...]" below)
    if isinstance(value, str):
        value = value.strip()
        written = value.startswith("[")
        if written:
            try:
                value = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                raise ValueError('is not a valid list; use "a,b,c" or ["a", "b"]') from None
        else:
            value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError('must be a list of text; use "a,b,c" or ["a", "b"]')
    if written and any(not v.strip() for v in value):
        # "a,,b" or a trailing comma is a slip the comma form forgives; a "" written in a
        # list is said, not dropped (["a", ""] was refused as naming one label)
        raise ValueError('lists an empty value (""); remove it')
    items = tuple(v.strip() for v in value if v.strip())
    seen: set[str] = set()
    for item in items:  # named, so that a long list says which to remove
        if item in seen:
            raise ValueError(f"lists {item[:30]!r} twice; keep one")
        seen.add(item)
    return items


def as_toml(value: Any) -> str:
    """A value read from hitl.toml as the file writes it, to quote it back in an error and in
    `hitl config`: ``true`` and ``["a", ""]``, not Python's ``True`` and ``['a', '']``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string reads alike
    if isinstance(value, list | tuple):
        return "[" + ", ".join(as_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(
            f"{json.dumps(str(k), ensure_ascii=False)} = {as_toml(v)}" for k, v in value.items()
        )
        return "{" + pairs + "}"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return repr(value)  # int, float (inf and nan as TOML writes them)


def _labels(value: Any) -> tuple[str, ...]:
    # One spelling per label, as imports and label changes store it (NFC): "Café" written
    # decomposed (a macOS editor, a copy-paste) is the label "Café" an import gives.
    labels = tuple(label_name(label) for label in _list(value))
    if len(set(labels)) != len(labels):
        raise ValueError("lists a label twice (in two Unicode spellings of one name)")
    if len(labels) == 1:
        raise ValueError("names one label; give at least two")
    long = [label for label in labels if len(label) > MAX_LABEL]
    if long:
        raise ValueError(f"has a label over 75 characters (Slack's limit): {long[0][:30]}…")
    for label in labels:
        if problem := label_problem(label):
            raise ValueError(f"has a label that {problem}: {label[:30]!r}")
    first: dict[str, str] = {}  # as `hitl labels add` refuses it: one class split in two
    for label in labels:
        twin = first.setdefault(label_key(label), label)
        if twin != label:
            differ = how_twins_differ(label, twin)
            raise ValueError(f"has {twin!r} and {label!r}, which differ {differ}; keep one")
    return labels


_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError("is not true or false; use true or false")


def _admins(value: Any) -> tuple[str, ...]:
    admins = _list(value)
    bad = [a for a in admins if not _USER_ID.match(a)]
    if bad:
        raise ValueError(
            f"has {bad[0]!r}, not a Slack user ID; use IDs like U0123ABCD "
            "(profile → ⋮ → Copy member ID)"
        )
    return admins


_TEAM_ID = re.compile(r"^[TE][A-Z0-9]{2,}$")  # a workspace (T…) or an Enterprise Grid org (E…)


def _answer_teams(value: Any) -> tuple[str, ...]:
    """HITL_ANSWER_TEAMS: the Slack teams whose members' clicks count, or ``*`` (anyone)."""
    teams = _list(value)
    if "*" in teams:
        if len(teams) > 1:
            raise ValueError("mixes * with team IDs; give * alone (anyone) or team IDs")
        return teams
    bad = [t for t in teams if not _TEAM_ID.match(t)]
    if bad:
        raise ValueError(
            f"has {bad[0]!r}, not a Slack team ID; use IDs like T0123ABCD (a workspace) or"
            " E0123ABCD (an Enterprise Grid org), or * for anyone"
        )
    return teams


_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)


def _destinations(value: Any) -> tuple[str, ...]:
    """Host names (lower-case, no trailing dot) and networks (CIDR; an address is a /32 or
    /128) that webhooks may reach though they are internal."""
    found = []
    for entry in _list(value):
        bare = entry.lower().rstrip(".").removeprefix("[").replace("]", "", 1)
        try:
            found.append(str(ipaddress.ip_network(bare, strict=False)))
            continue
        except ValueError:
            pass
        if "/" in bare or ":" in bare or not _HOST_NAME.match(bare):
            raise ValueError(
                f"has {entry!r}, neither a host name nor an IP address or CIDR; "
                "e.g. hooks.intranet, 10.0.0.0/8, ::1"
            )
        found.append(bare)
    return tuple(found)


def _url(value: Any) -> str:
    value = _text(value)
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("is not an http(s) URL; e.g. https://slack.com/api/")
    return value if value.endswith("/") else value + "/"


def _path(value: Any) -> Path:
    return Path(_text(value)).expanduser()


DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab's numbering: Sunday 0 (or 7)


def cron_trigger(expression: str, timezone: str | tzinfo) -> CronTrigger:
    """A crontab expression as APScheduler's trigger, with the day of the week read as cron
    reads it. APScheduler 3 numbers the days from Monday (0 = Monday, no 7): passed through,
    "1-5" ran Tuesday to Saturday and "0" on Mondays. The day field is handed over as day
    names, which both read alike."""

    fields = expression.split()
    if len(fields) == 5:
        if fields[2] != "*" and fields[4] != "*":  # cron: either matches; APScheduler: both
            raise ValueError(
                "both a day of the month and a day of the week: cron runs on either, "
                "APScheduler only on both; set one of them to *"
            )
        fields[4] = _crontab_days(fields[4])
    return _once_a_wall_clock_time().from_crontab(" ".join(fields), timezone=timezone)


@functools.cache
def _once_a_wall_clock_time() -> type[CronTrigger]:
    """APScheduler's CronTrigger that runs a set hour by the wall clock, as cron does: a time
    the clocks pass twice (as they go back: 01:30 in London on the last Sunday of October) at
    its first passing only (APScheduler ran it at both, so a nightly retrain ran twice that
    night), and a time the clocks skip (as they go forward: 02:30 in Berlin, 00:00 in Santiago)
    right after the jump, once (APScheduler moved one at midnight to the next day, so that
    night had no retrain). As in cron, an hour field starting with * (every hour, */2) still
    runs by the time that passes. A rule on the time alone, so it holds across a restart
    within the repeated hour too."""
    import copy

    from apscheduler.triggers.cron import CronTrigger

    class OnceAWallClockTime(CronTrigger):
        __slots__ = ()

        def get_next_fire_time(self, previous_fire_time, now):  # noqa: ANN001, ANN202
            hour = next(str(f) for f in self.fields if f.name == "hour")
            if hour.startswith("*"):
                return super().get_next_fire_time(previous_fire_time, now)
            start = now  # as APScheduler: after the last run, or from now if that is earlier
            if previous_fire_time is not None:
                after = previous_fire_time.astimezone(UTC) + _MICROSECOND
                start = after if now == previous_fire_time else min(now, after)
            # the same fields on a wall clock that never jumps (UTC), from what the clocks show
            wall = copy.copy(self)
            wall.timezone = UTC
            shown = start.astimezone(self.timezone).replace(tzinfo=UTC, fold=0)
            while (reading := CronTrigger.get_next_fire_time(wall, None, shown)) is not None:
                fire = _first_shown(reading.replace(tzinfo=self.timezone))
                if fire >= start:  # else the first passing of a repeated time was before
                    return fire
                shown = reading + _MICROSECOND
            return None

    return OnceAWallClockTime


_MICROSECOND = timedelta(microseconds=1)


def _first_shown(wall: datetime) -> datetime:
    """The moment the clocks first show ``wall``'s wall-clock time: its first passing when they
    show it twice, the moment they jump over it when they skip it."""
    first = wall.replace(fold=0)
    if first.astimezone(UTC).astimezone(wall.tzinfo).replace(tzinfo=None) == wall.replace(
        tzinfo=None
    ):
        return first
    # skipped: the jump is between reading it in the offset after (earlier) and before (later)
    before = int(wall.replace(fold=1).timestamp())  # the clocks still show less
    after = int(first.timestamp()) + 1  # they show more
    while after - before > 1:
        middle = (before + after) // 2
        shows = datetime.fromtimestamp(middle, wall.tzinfo).replace(tzinfo=None)
        before, after = (middle, after) if shows < wall.replace(tzinfo=None) else (before, middle)
    return datetime.fromtimestamp(after, wall.tzinfo)


def _crontab_days(field: str) -> str:
    """A crontab day-of-week field (``1-5``, ``0,6``, ``*/2``, ``mon-fri``, ``7``) as the list
    of day names it means, in cron's reading."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            first, last = (_crontab_day(end) for end in span.split("-", 1))
        else:
            first = _crontab_day(span)
            last = 7 if step else first  # "1/2": from Monday to the week's end
        if first > last or (step and not step.isdecimal()) or step == "0":
            raise ValueError(f"the day of the week {part!r} is not a range cron can read")
        days.update(day % 7 for day in range(first, last + 1, int(step or 1)))
    return ",".join(DAYS[day] for day in sorted(days))


def _crontab_day(token: str) -> int:
    if token.isdecimal() and int(token) <= 7:
        return int(token)
    name = token[:3].lower()
    if name in DAYS and token.lower() in (name, _DAY_NAMES[DAYS.index(name)]):
        return DAYS.index(name)
    raise ValueError(f"{token!r} is not a day of the week (0-7, Sunday being 0 or 7, or sun-sat)")


_DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


def _cron(value: Any) -> str:
    value = _text(value)
    try:
        trigger = cron_trigger(value, "UTC")
    except ValueError as exc:
        raise ValueError(
            f'is not a cron expression ({exc}); use five fields, e.g. "0 3 * * *" for 03:00 daily'
        ) from None
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise ValueError(
            "never comes (no such date, e.g. the 31st of February): the nightly retrain would "
            'never run; e.g. "0 3 * * *" for 03:00 daily'
        )
    return value


def _timezone(value: Any) -> str:
    value = _text(value)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            'is not a known time zone; use an IANA name like "Europe/Berlin"'
        ) from None
    return value


def _pipeline(value: Any) -> str:
    from model import PIPELINES

    value = _text(value)
    if value not in PIPELINES:
        raise ValueError(f"is not a known pipeline; use one of {', '.join(sorted(PIPELINES))}")
    return value


def _redact(value: Any) -> tuple[str, ...]:
    from bot.ingest.redact import ORDER

    kinds = _list(value)
    if unknown := [kind for kind in kinds if kind not in ORDER]:
        raise ValueError(f"names {unknown[0]!r}; use some of {', '.join(ORDER)}")
    return kinds


def _strategy(value: Any) -> str:
    from model.selection import STRATEGIES, strategy_names

    value = _text(value)
    if value not in STRATEGIES:
        raise ValueError(f"is not a known strategy; use one of {', '.join(strategy_names())}")
    return value


AGGREGATIONS = ("majority", "dawid_skene")


def _aggregation(value: Any) -> str:
    value = _text(value)
    if value not in AGGREGATIONS:
        raise ValueError(f"is not a known aggregation; use one of {', '.join(AGGREGATIONS)}")
    return value


def _routes(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in value.items()
    ):
        raise ValueError('must map labels to channel IDs, e.g. billing = "C0123ABCD"')
    routes: dict[str, str] = {}
    for key, channel in value.items():
        label = label_name(key)  # the label's one spelling (NFC), as HITL_LABELS's
        if label in routes:
            raise ValueError(f"names the label {label!r} twice (in two Unicode spellings)")
        routes[label] = channel.strip()
    return routes


def _guidelines(value: Any) -> tuple[dict[str, Guideline], list[str]]:
    """``[labels.NAME]`` tables: ``description = "..."`` and ``examples = ["...", ...]``; and
    every problem with them, one line each, the tables all read: a mistyped key in one table
    hides neither another table's problem nor (for `hitl serve`) a table naming no label in
    force. A table with a problem keeps its name (its good parts; the start is refused anyway)."""
    if not isinstance(value, dict):
        return {}, ["must be tables like [labels.billing] with description and examples"]
    found: dict[str, Guideline] = {}
    problems: list[str] = []
    for name, table in value.items():
        if not isinstance(table, dict):
            problems.append(f"[labels.{name}] must be a table with description and examples")
            table = {}
        unknown = sorted(set(table) - {"description", "examples"})
        if unknown:
            keys = ", ".join(repr(key) for key in unknown)
            problems.append(f"[labels.{name}] has {keys}; use description and examples")
        description = table.get("description", "")
        examples = table.get("examples", [])
        if not isinstance(description, str):
            problems.append(f"[labels.{name}] description must be text")
            description = ""
        if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            problems.append(f'[labels.{name}] examples must be a list of text, e.g. ["..."]')
            examples = []
        label = label_name(name)  # the label's one spelling (NFC), as HITL_LABELS's
        if label in found:
            problems.append(
                f"[labels.*] names the label {label!r} twice (in two Unicode spellings)"
            )
            continue
        found[label] = Guideline(description.strip(), tuple(e.strip() for e in examples))
    return found, problems


@dataclass(frozen=True)
class Spec:
    name: str  # Settings field
    env: str
    parse: Callable[[Any], Any]
    secret: bool = False
    help: str = ""

    @property
    def toml_key(self) -> str:
        return self.env.removeprefix("HITL_").lower()


SPECS: tuple[Spec, ...] = (
    Spec("slack_bot_token", "SLACK_BOT_TOKEN", _text, True, "bot token (xoxb-…), needed by serve"),
    Spec("slack_signing_secret", "SLACK_SIGNING_SECRET", _text, True, "signs Slack's requests"),
    Spec("slack_app_token", "SLACK_APP_TOKEN", _text, True, "xapp-… token: Socket Mode"),
    Spec("slack_api_url", "SLACK_API_URL", _url, False, "Slack Web API base URL"),
    Spec("db", "HITL_DB", _path, False, "SQLite file; models go to <db>.models/"),
    Spec("channel", "HITL_CHANNEL", _text, False, "channel ID the questions go to"),
    Spec("report_channel", "HITL_REPORT_CHANNEL", _text, False, "channel for reports"),
    Spec("labels", "HITL_LABELS", _labels, False, "the label set (default: imported labels)"),
    Spec("admins", "HITL_ADMINS", _admins, False, "user IDs allowed to retrain / roll back"),
    Spec(
        "answer_teams",
        "HITL_ANSWER_TEAMS",
        _answer_teams,
        False,
        "Slack team IDs whose members' answers count, or * (default: this workspace)",
    ),
    Spec("api_token", "HITL_API_TOKEN", api_token, True, "bearer token for /api/* (off without)"),
    Spec("webhook_secret", "HITL_WEBHOOK_SECRET", webhook_secret, True, "signs webhook deliveries"),
    Spec(
        "webhook_allow",
        "HITL_WEBHOOK_ALLOW",
        _destinations,
        False,
        "internal hosts or CIDRs webhooks may reach (default: public addresses only)",
    ),
    Spec("host", "HITL_HOST", _text, False, "HTTP server address"),
    Spec("port", "HITL_PORT", _integer(1, 65535), False, "HTTP server port"),
    Spec("threshold", "HITL_THRESHOLD", _number(0, 1), False, "below this confidence, ask people"),
    Spec("audit_rate", "HITL_AUDIT_RATE", _number(0, 1), False, "share of random (audit) posts"),
    Spec(
        "gold_rate",
        "HITL_GOLD_RATE",
        _number(0, 1),
        False,
        "share of posts, and of window items, that are gold questions (0: none)",
    ),
    Spec("max_open", "HITL_MAX_OPEN", _integer(1, 50), False, "unanswered posts per channel"),
    Spec(
        "question_ttl",
        "HITL_QUESTION_TTL",
        _integer(0, 8760),
        False,
        "hours a question stays unanswered before it is taken back and its item re-queued"
        " (0: never)",
    ),
    Spec("votes", "HITL_VOTES", _integer(1, 25), False, "answers needed to resolve an item"),
    Spec(
        "show_votes",
        "HITL_SHOW_VOTES",
        _boolean,
        False,
        "show earlier answers and voters on an open question",
    ),
    Spec(
        "skips_to_discard",
        "HITL_SKIPS_TO_DISCARD",
        _integer(1, 25),
        False,
        "different people who skip an item before it is set aside",
    ),
    Spec(
        "review_agreement",
        "HITL_REVIEW_AGREEMENT",
        _number(0, 1),
        False,
        "a decision with agreement below this goes to review (/hitl review)",
    ),
    Spec(
        "review_confidence",
        "HITL_REVIEW_CONFIDENCE",
        _number(0, 1),
        False,
        "a decision the model contradicts with this confidence goes to review",
    ),
    Spec("retrain_cron", "HITL_RETRAIN_CRON", _cron, False, "when to retrain (cron)"),
    Spec("timezone", "HITL_TIMEZONE", _timezone, False, "time zone of the cron schedule"),
    Spec("pipeline", "HITL_PIPELINE", _pipeline, False, "classifier pipeline for new models"),
    Spec(
        "strategy",
        "HITL_STRATEGY",
        _strategy,
        False,
        "how uncertainty orders the queue (model.selection.STRATEGIES)",
    ),
    Spec(
        "show_meta",
        "HITL_SHOW_META",
        _list,
        False,
        "fields of an item's meta shown under its question, e.g. channel,customer",
    ),
    Spec(
        "redact",
        "HITL_REDACT",
        _redact,
        False,
        "personal data replaced as items arrive, before they are stored: card, email, phone",
    ),
    Spec(
        "keep_models",
        "HITL_KEEP_MODELS",
        _integer(0, 1000),
        False,
        "model files kept besides the champion's (for rollback)",
    ),
    Spec(
        "refresh_every",
        "HITL_REFRESH_EVERY",
        _integer(0, 100_000),
        False,
        "refit the working model after this many new labels between retrains, or 1 % of the"
        " labels last fitted when more (0: off)",
    ),
    Spec(
        "warm_up",
        "HITL_WARM_UP",
        _integer(0, 1_000_000),
        False,
        "labels a model needs before its uncertainty picks the questions; below, every"
        " question is a random pick (0: uncertainty from the first model)",
    ),
    Spec(
        "typical_until",
        "HITL_TYPICAL_UNTIL",
        _integer_or_auto(0, 1_000),
        False,
        "labels a model needs before its uncertainty picks the questions after the warm-up;"
        " below, the questions are TypiClust's typical items of the clusters no label covers"
        " (auto: 8 a label of the set, at most 150; 0: off)",
    ),
    Spec(
        "aggregation",
        "HITL_AGGREGATION",
        _aggregation,
        False,
        "how training reads items with several votes: majority or dawid_skene (weighted)",
    ),
    Spec(
        "connect_retry",
        "HITL_CONNECT_RETRY",
        _number(0.01, 60),
        False,
        "seconds before the second attempt to reach Slack at start; doubles per attempt up to 60",
    ),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}
TOML_ONLY = {"routes": _routes}


def config_path(environ: Mapping[str, str]) -> Path | None:
    """``HITL_CONFIG`` if set, else ``./hitl.toml`` if it exists."""
    if environ.get("HITL_CONFIG"):
        return Path(environ["HITL_CONFIG"]).expanduser()
    default = Path(CONFIG_FILE)
    return default if default.exists() else None


def _refuse_untrusted(path: Path, status: os.stat_result) -> None:
    """Refuse a config file that a user other than this one (or root) owns, or that is group- or
    world-writable, as ssh does its own files and git a repository it does not own (its
    ``safe.directory``): whoever can write it chooses where the bot token goes (slack_api_url)
    and who the admins are. ``./hitl.toml`` is read from whatever folder a command runs in.
    Where files have no POSIX owner (Windows), there is nothing to check."""
    if not hasattr(os, "geteuid"):
        return
    if status.st_uid not in (os.geteuid(), 0):
        raise ConfigError(
            [
                f"{path} is owned by another user (uid {status.st_uid}), who could change the"
                " settings hitl takes from it (where the bot token is sent, the admins): if you"
                f" trust it, make it yours (`sudo chown {_user_name()} {path}`) or point"
                " HITL_CONFIG at a copy you own; else delete it"
            ]
        )
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            [
                f"{path} can be changed by other users (mode {stat.S_IMODE(status.st_mode):04o}),"
                " who could change the settings hitl takes from it (where the bot token is"
                f" sent, the admins): `chmod go-w {path}`"
            ]
        )


def _user_name() -> str:
    """This process's user name, for a ``chown`` to copy; its uid when it has none."""
    import pwd  # POSIX only, as the check that calls this

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _readable_secrets(path: Path, status: os.stat_result, section: Mapping[str, Any]) -> str:
    """What to warn about, as ssh does for a private key, when the config file holds a secret (a
    token, the signing secret) and other users may read it: whoever reads the bot token reads
    the question channel. "" when nothing is. A warning, not a refusal (a file readable by a
    trusted group is a choice); ``load_settings`` prints it on standard error when it takes the
    settings, which each command does once, so each command says it once (a config refused for
    a bad value says that instead)."""
    if not hasattr(os, "geteuid") or not status.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        return ""
    if not any(section.get(spec.toml_key) for spec in SPECS if spec.secret):
        return ""
    return (
        f"{path} holds secrets and is readable by other users"
        f" (mode {stat.S_IMODE(status.st_mode):04o}): `chmod 600 {path}`"
    )


def _toml_text(path: Path) -> tuple[str, os.stat_result]:
    """The text of a TOML file, which TOML says is UTF-8, and the file's status. A UTF-8
    byte-order mark (Notepad's "UTF-8 with BOM") is dropped; any other encoding is a ConfigError
    naming the first bad byte's line, not a UnicodeDecodeError from every command. A file someone
    else could have written is refused first (``_refuse_untrusted``)."""
    with open(path, "rb") as handle:
        status = os.fstat(handle.fileno())
        _refuse_untrusted(path, status)
        data = handle.read()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\0" in data:
        found = "it looks like UTF-16"
    else:
        try:
            return data.decode("utf-8-sig"), status
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            found = f"byte 0x{data[exc.start]:02x} on line {line}"
    raise ConfigError([f"{path} is not UTF-8 text ({found}); save it as UTF-8"])


# A channel ID as Slack gives it (the channel's details, at the bottom): not a name (#general,
# general), nor a link to it. The Web API takes a name for some calls and not others.
CHANNEL_ID = re.compile(r"[CG][A-Z0-9]+")


def channel_id_problems(settings: Settings) -> list[str]:
    """A line for each channel setting (HITL_CHANNEL, HITL_REPORT_CHANNEL, ``routes.LABEL``)
    that holds something other than a channel ID: a bad value, reported with the others, named
    where it came from as they are (a value from hitl.toml as the file's key: ``hitl.toml
    report_channel``)."""
    named = [
        (_named_where_set(settings, spec), getattr(settings, spec.name))
        for spec in SPECS
        if spec.name in ("channel", "report_channel")
    ]
    named += [(f"routes.{label}", channel) for label, channel in sorted(settings.routes.items())]
    return [
        f'{name}="{channel}" is not a channel ID; copy the ID from the channel\'s '
        "details (at the bottom), e.g. C0123ABCD"
        for name, channel in named
        if channel and not CHANNEL_ID.fullmatch(channel)
    ]


def _named_where_set(settings: Settings, spec: Spec) -> str:
    """How a bad value of ``spec`` is named, as ``read_settings`` names it: its variable
    (from the environment, or given in code), or the file and its key (from hitl.toml)."""
    source = settings.sources.get(spec.name, "env")
    return spec.env if source in ("env", "default") else f"{source} {spec.toml_key}"


@dataclass(frozen=True)
class Reading:
    """What ``read_settings`` found: the settings (a refused value left at its default), one
    line per problem, and each refused value as given (masked for a secret) with where it
    came from, by its variable name (``HITL_THRESHOLD``), for `hitl config` to show."""

    settings: Settings
    problems: list[str]
    refused: dict[str, tuple[str, str]]


def load_settings(
    environ: Mapping[str, str] | None = None, toml_path: Path | None = None
) -> Settings:
    """Read env vars (winning) and ``hitl.toml``; raise ConfigError listing every bad value."""
    reading = read_settings(environ, toml_path)
    if reading.problems:
        raise ConfigError(reading.problems)
    return reading.settings


def read_settings(
    environ: Mapping[str, str] | None = None, toml_path: Path | None = None
) -> Reading:
    """Read env vars (winning) and ``hitl.toml``, and find every bad value at once (a file that
    cannot be read at all is one of them: the environment's values are still checked)."""
    environ = os.environ if environ is None else environ
    toml_path = toml_path if toml_path is not None else config_path(environ)
    problems: list[str] = []
    refused: dict[str, tuple[str, str]] = {}
    from_file: dict[str, Any] = {}
    readable = ""  # the warning about secrets others can read, once the settings are taken
    document: dict[str, Any] | None = None
    if toml_path is not None:
        try:
            text, status = _toml_text(toml_path)
            parsed = tomllib.loads(text)
            if not isinstance(parsed.get("hitl", {}), dict):
                raise ConfigError([f"{toml_path}: [hitl] must be a table"])
            document = parsed
        except OSError as exc:
            problems.append(f"{toml_path}: cannot read it ({exc.strerror})")
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{toml_path}: not valid TOML ({exc})")
        except ConfigError as exc:
            problems.extend(exc.problems)
    if toml_path is not None and document is not None:
        section = document.get("hitl", {})
        readable = _readable_secrets(toml_path, status, section)
        known = {spec.toml_key: spec for spec in SPECS}
        for key, value in section.items():
            if key in known:
                from_file[known[key].name] = value
            elif key in TOML_ONLY:
                from_file[key] = value
            else:
                problems.append(
                    f"{toml_path}: unknown setting {key!r} in [hitl]; "
                    f"known: {', '.join([*known, *TOML_ONLY])}"
                )
        for key, value in document.items():  # a setting above [hitl], a misspelt table
            if key in ("hitl", "labels"):
                continue
            if isinstance(value, dict):
                near = "[labels.NAME]" if key.lower().startswith("label") else "[hitl]"
                problems.append(
                    f"{toml_path}: unknown table [{key}]; settings go in [hitl] (routes in"
                    f" [hitl.routes]) and label guidelines in [labels.NAME]: did you mean {near}?"
                )
            elif key in known or key in TOML_ONLY:
                problems.append(
                    f"{toml_path}: setting {key!r} is outside [hitl] (above the [hitl] line, or"
                    " without one): put it under [hitl]"
                )
            else:
                problems.append(
                    f"{toml_path}: unknown key {key!r} outside [hitl]; settings go under [hitl]"
                )
        if "labels" in document:  # [labels.NAME]: guidelines, beside [hitl]
            guidelines, bad = _guidelines(document["labels"])
            problems += [f"{toml_path} {line}" for line in bad]
            from_file["guidelines"] = guidelines

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in SPECS:
        if environ.get(spec.env, "").strip():
            raw, origin, label = environ[spec.env], "env", spec.env
        elif spec.name in from_file:
            raw, origin, label = (
                from_file[spec.name],
                str(toml_path),
                f"{toml_path} {spec.toml_key}",
            )
        else:
            continue
        try:
            values[spec.name] = spec.parse(raw)
            sources[spec.name] = origin
        except ValueError as exc:
            shown = raw if isinstance(raw, str) else as_toml(raw)
            shown = "***" if spec.secret else shown
            problems.append(f'{label}="{shown}" {exc}')
            refused[spec.env] = (shown, origin)
    for name, parse in TOML_ONLY.items():
        if name in from_file:
            try:
                values[name] = parse(from_file[name])
                sources[name] = str(toml_path)
            except ValueError as exc:
                problems.append(f"{toml_path} [hitl.{name}] {exc}")
    if "guidelines" in from_file:
        values["guidelines"] = from_file["guidelines"]
        sources["guidelines"] = str(toml_path)
    settings = Settings(**values, sources=sources)
    problems += channel_id_problems(settings)
    if readable and not problems:
        click.echo(f"Warning: {readable}", err=True)
    return Reading(settings, problems, refused)


def describe(settings: Settings) -> list[tuple[str, str, str, str]]:
    """Rows of (env var, effective value with secrets masked, source, help) for `hitl config`."""
    rows = []
    for spec in SPECS:
        value = getattr(settings, spec.name)
        if value is None or value == ():
            shown = "-"
        elif spec.secret:
            shown = mask(value)
        elif isinstance(value, tuple):
            shown = ",".join(value)
        elif isinstance(value, bool):  # as the variable is written (and README's table)
            shown = "true" if value else "false"
        elif isinstance(value, float):  # 1, not 1.0: as README's table and a person write it
            shown = f"{value:g}"
        else:
            shown = str(value)
        rows.append((spec.env, shown, settings.sources.get(spec.name, "default"), spec.help))
    for label, channel in sorted(settings.routes.items()):
        rows.append((f"routes.{label}", channel, settings.sources.get("routes", "default"), ""))
    return rows


def mask(secret: str) -> str:
    """Show only enough of a secret to recognise it: its prefix kind and last 4 characters."""
    if len(secret) <= 8:
        return "****"
    prefix = secret[:5] if re.match(r"^x[a-z]{3}-", secret) else ""
    return f"{prefix}****{secret[-4:]}"


__all__ = [
    "Settings",
    "Reading",
    "load_settings",
    "read_settings",
    "channel_id_problems",
    "describe",
    "mask",
    "SPECS",
    "config_path",
]
