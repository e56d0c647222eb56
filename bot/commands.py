"""`/hitl` subcommands and the App Home: each answers ephemerally, well within 3 seconds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
from slack_bolt.async_app import AsyncAck
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import blocks, loop, reports
from bot.config import Settings
from bot.dispatch import scope_fix
from bot.learning import run_rollback, start_retrain
from bot.modal import open_labeling_modal
from bot.runtime import Runtime
from bot.store import Store
from model import ModelError

logger = logging.getLogger(__name__)

HELP = """*slack-hitl* asks you about items the model is unsure of. Commands:
• `/hitl help` — this help
• `/hitl label` — label items one after another in a window
• `/hitl stats` — answers today and this week, and the state of the items
• `/hitl queue` — what waits, what is open in each channel, and any posting errors
• `/hitl leaderboard` — who answered most this week
• `/hitl accuracy` — how good the current model is
• `/hitl retrain` — retrain the model now (admins; `--force` promotes it even if not better)
• `/hitl rollback` `VERSION` — make an earlier model the champion again (admins; `--force` \
for one the gate rejected)"""

ADMIN_ONLY = {"retrain", "rollback"}
SUBCOMMANDS = ("help", "label", "stats", "queue", "leaderboard", "accuracy", "retrain", "rollback")


def _since(settings: Settings, now: datetime) -> tuple[str, str]:
    """Start of today and of this week (Monday), in HITL_TIMEZONE, as UTC ISO strings."""
    zone = ZoneInfo(settings.timezone)
    now = now.astimezone(zone)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = today - timedelta(days=today.weekday())
    return _iso(today), _iso(week)


def _iso(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).isoformat(timespec="milliseconds")


def stats_text(store: Store, settings: Settings, now: datetime) -> str:
    today, week = _since(settings, now)
    counts = store.count_items()
    by_today = store.answers_by_user(today)
    by_week = store.answers_by_user(week)
    lines = [
        f"*Answers today:* {sum(n for _, n in by_today)}"
        + (" (" + ", ".join(f"<@{u}> {n}" for u, n in by_today) + ")" if by_today else ""),
        f"*Answers this week:* {sum(n for _, n in by_week)}"
        + (" (" + ", ".join(f"<@{u}> {n}" for u, n in by_week) + ")" if by_week else ""),
        f"*Items:* {counts['new'] + counts['queued']} pending · {counts['posted']} posted · "
        f"{counts['resolved']} resolved · {counts['auto']} decided by the model · "
        f"{counts['skipped']} skipped",
    ]
    if settings.votes > 1:
        agreement, n = store.mean_agreement()
        lines.append(
            f"*Agreement:* {agreement:.0%} on {blocks.count(n, 'item')} decided by vote"
            if agreement is not None
            else "*Agreement:* no item decided by vote yet"
        )
    return "\n".join(lines)


def queue_text(rt: Runtime) -> str:
    waiting = rt.store.waiting_count()
    open_counts = rt.store.open_post_counts()
    channels = sorted({c for c in (rt.settings.channel, *rt.settings.routes.values()) if c})
    lines = [f"*Waiting:* {blocks.count(waiting, 'item')}"]
    for channel in channels:
        state = rt.channel_state(channel)
        line = f"<#{channel}>: {open_counts.get(channel, 0)} of {rt.settings.max_open} open"
        if state.broken:
            line += f" · ⛔ not posting: {state.broken}"
        elif state.last_error:
            line += f" · ⚠️ last error: {state.last_error} (retrying)"
        if state.missing_scope:
            line += f" · ⛔ cannot find lost posts: {scope_fix(state.missing_scope)}"
        lines.append(line)
    return "\n".join(lines)


def leaderboard_text(rt: Runtime) -> str:
    _, week = _since(rt.settings, rt.clock())
    week_board = rt.store.answers_by_user(week)[:10]
    all_board = rt.store.answers_by_user()[:10]
    if not all_board:
        return "No answers yet. `/hitl label` to be the first on the board!"
    medals = ["🥇", "🥈", "🥉"]

    def board(rows: list[tuple[str, int]]) -> str:
        return "\n".join(
            f"{medals[i] if i < 3 else f'{i + 1}.'} <@{user}> — {n}"
            for i, (user, n) in enumerate(rows)
        )

    return f"*This week*\n{board(week_board) or 'nobody yet'}\n\n*All time*\n{board(all_board)}"


def model_line(rt: Runtime) -> str:
    champion = rt.champion
    if champion is None:
        return "no model yet: answers train the first one"
    return f"v{champion.version}, trained on {champion.n_train:,} labels"


def home(rt: Runtime, user_id: str) -> View:
    _, week = _since(rt.settings, rt.clock())
    this_week = rt.store.answers_by_user(week)
    return blocks.home_view(
        blocks.HomeStats(
            user_id=user_id,
            your_answers=rt.store.answers_of(user_id),
            your_answers_week=rt.store.answers_of(user_id, week),
            leaderboard=this_week[:10],
            model_line=model_line(rt),
            queue_waiting=rt.store.waiting_count(),
            queue_open=sum(rt.store.open_post_counts().values()),
        )
    )


async def handle(rt: Runtime, ack: AsyncAck, command: dict, client: AsyncWebClient) -> None:
    words = (command.get("text") or "").strip().split()
    name = words[0].lower() if words else "help"
    args = words[1:]
    user_id = command.get("user_id", "")
    if name in ADMIN_ONLY and not rt.is_admin(user_id):
        logger.warning("refused /hitl %s for %s: not an admin", name, user_id)
        admins = ", ".join(f"<@{a}>" for a in rt.settings.admins) or "none are set (HITL_ADMINS)"
        await ack(text=f"Only admins can {name}. Admins: {admins}")
        return
    if name == "label":  # the modal serves the items of the channel it was run in
        await ack()
        trigger = command["trigger_id"]
        await open_labeling_modal(rt, client, trigger, user_id, command.get("channel_id"))
        return
    if name == "retrain":
        await ack(text=retrain_now(rt, user_id, force=bool({"--force", "force"} & set(args))))
        return
    if name == "rollback":
        await rollback_now(rt, ack, user_id, args, command.get("response_url"))
        return
    if name == "accuracy":
        report = reports.accuracy_report(rt.store, rt.registry, rt.clock()) if rt.registry else None
        await ack(text=reports.accuracy_text(report))
        if report is not None and len(report.trend) > 0:
            await attach_chart(client, report, user_id)
        return
    handler: Callable[[Runtime], str] | None = TEXT_COMMANDS.get(name)
    if handler is None:
        await ack(text=f"I don't know `{blocks.escape(name)}`.\n\n{HELP}")
        return
    await ack(text=handler(rt))


def retrain_now(rt: Runtime, user_id: str, *, force: bool) -> str:
    outcome = start_retrain(rt, f"<@{user_id}>", force=force)
    if outcome is not None:
        return reports.retrain_text(outcome)
    where = rt.settings.effective_report_channel
    forced = " (forced: it will be promoted even if not better)" if force else ""
    return f"Retraining started{forced}. I'll post the result in <#{where}> when it is done."


ROLLBACK_USAGE = (
    "Usage: `/hitl rollback VERSION [--force]`, e.g. `/hitl rollback 3` (see `hitl models`)."
)
SORRY = "Something went wrong on our side; it has been logged."


async def rollback_now(
    rt: Runtime, ack: AsyncAck, user_id: str, args: list[str], response_url: str | None
) -> None:
    """Check and take the lock at once, ack, then load the model file off the event loop
    (hundreds of MB: tens of seconds) and report by ``response_url``."""
    words = [a for a in args if a.lower() not in ("--force", "force")]
    force = len(words) != len(args)
    if len(words) != 1 or not words[0].lstrip("v").isdigit():
        await ack(text=ROLLBACK_USAGE)
        return
    version = int(words[0].lstrip("v"))
    assert rt.registry is not None
    try:
        plan = loop.begin_rollback(
            rt.store, rt.registry, version, triggered_by=f"<@{user_id}>", force=force
        )
    except (ModelError, loop.BusyError) as exc:
        await ack(text=f"Cannot roll back: {exc}")
        return
    warning = f"⚠️ {plan.warning}. Rolling back to it anyway (--force)… " if plan.warning else ""
    start = warning or f"Rolling back to v{version}… "
    await ack(text=f"{start}I'll tell you here when it is done.")
    try:
        done = await run_rollback(rt, plan)
    except ModelError as exc:
        logger.warning("rollback to v%d by %s failed: %r", version, user_id, exc.__cause__ or exc)
        await tell(response_url, f"Cannot roll back: {exc}")
        return
    except Exception:
        logger.exception("rollback to v%d by %s failed", version, user_id)
        await tell(response_url, SORRY)
        return
    text = f"Model v{version} is the champion again (rolled back by <@{user_id}>)."
    if plan.warning:
        what = "the gate had rejected it" if plan.was == "rejected" else "it was never promoted"
        text += f" ⚠️ Forced: {what} ({done.meta.scores()})."
    await tell(response_url, text)


async def tell(response_url: str | None, text: str) -> None:
    """An ephemeral reply to the person who ran the command, after its ack."""
    if not response_url:
        logger.warning("no response_url to report to: %s", text)
        return
    try:
        await AsyncWebhookClient(response_url, timeout=10).send(
            text=text, response_type="ephemeral"
        )
    except (SlackApiError, SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        logger.warning("could not answer by response_url: %s", type(exc).__name__)


async def attach_chart(
    client: AsyncWebClient, report: reports.AccuracyReport, user_id: str
) -> None:
    """Send the accuracy chart to the person who asked, in their direct messages with the bot
    (the text is their private reply; a file shared in the channel would be public). Slack
    has no private file in a channel, and an image block needs a public URL, which an app
    behind Socket Mode lacks. Needs files:write and im:write; without them the text is all."""
    if not user_id:
        return
    try:
        granted = await client.auth_test()
        scopes = (granted.headers.get("x-oauth-scopes") or granted.headers.get("X-OAuth-Scopes")
                  or "").split(",")  # fmt: skip
        if "files:write" not in scopes:
            return
        if "im:write" not in scopes:
            logger.warning("no accuracy chart sent: %s", scope_fix("im:write"))
            return
        opened = await client.conversations_open(users=user_id)
        png = await asyncio.to_thread(reports.chart_png, report)
        await client.files_upload_v2(
            channel=opened["channel"]["id"],
            content=png,
            filename=f"hitl-accuracy-v{report.version}.png",
            title=f"Model v{report.version}: accuracy by version and by labels",
            initial_comment=f"Your `/hitl accuracy` chart (model v{report.version})",
        )
    except (SlackApiError, SlackClientError) as exc:
        logger.warning("could not send the accuracy chart: %s", exc)


TEXT_COMMANDS: dict[str, Callable[[Runtime], str]] = {
    "help": lambda rt: HELP,
    "stats": lambda rt: stats_text(rt.store, rt.settings, rt.clock()),
    "queue": queue_text,
    "leaderboard": leaderboard_text,
}
