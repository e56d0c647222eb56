"""Enterprise Grid orgs in HITL_ANSWER_TEAMS, and events no listener acts on.

An org ``E…`` in HITL_ANSWER_TEAMS (or its default, which holds ``auth.test``'s enterprise_id)
counted nobody: only ``user.team_id`` was compared. A Grid member's command (its
``enterprise_id``) and click (``team.enterprise_id`` of the clicker's own team) now count; a
click whose payload names the org but not as the clicker's (in a Slack Connect channel
``team`` is this app's workspace whoever clicks) does not, and the log says why without
claiming the org is not listed.

``app_uninstalled`` and ``tokens_revoked`` got Bolt's 404 (which Slack retries) and its
multi-line "[Suggestion]" code in the log; they get a 200 and one line saying what to do, and
events nothing here acts on get a 200 quietly. Requests go through the real endpoint, signed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from tests import signing
from tests.bot.harness import SECRET, Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

ORG = "E0ORG"
NOT_COUNTED = "not counted"


def grid(fake: FakeSlack) -> None:
    """A workspace-level install in an Enterprise Grid org: auth.test names the org."""
    auth_test = fake._handlers["auth.test"]
    fake._handlers["auth.test"] = lambda params: {**auth_test(params), "enterprise_id": ORG}


async def started(fake: FakeSlack, tmp_path: Path, **changes):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"text {n} refund") for n in range(3)])
    for user in ("W0SIB", "W0PART"):  # so that a note to them is delivered
        fake.add_user(user, user.lower())
    return start_bot(fake, make_settings(fake, tmp_path, max_open=1, **changes))


def from_team(payload: dict, user_id: str, team: str, *, origin: str, org: str) -> dict:
    """A click of ``user_id`` of ``team``; ``origin`` (of org ``org``) is the payload's
    ``team``, where Slack says the click came from."""
    payload["user"] = {"id": user_id, "username": "x", "name": "x", "team_id": team}
    payload["team"] = {"id": origin, "domain": "ws", "enterprise_id": org, "enterprise_name": "O"}
    payload["enterprise"] = {"id": org, "name": "O"}
    return payload


def answers(bot: Bot) -> list[tuple]:
    return [(a["user_id"], a["team_id"]) for a in bot.store.iter_answers()]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("bot")
    ]


async def test_a_command_of_a_workspace_of_the_apps_grid_org_counts_by_default(
    fake_slack: FakeSlack, tmp_path: Path
):
    grid(fake_slack)
    async for bot in await started(fake_slack, tmp_path):  # HITL_ANSWER_TEAMS unset
        fields = signing.command_fields("stats", "W0SIB")
        fields.update(team_id="T0SIBLING", enterprise_id=ORG, enterprise_name="Acme")
        response = await bot.post(*signing.signed_command(fields, SECRET))
        assert response.status == 200
        assert NOT_COUNTED not in await response.text()
        other = signing.command_fields("stats", "W0PART")  # another org's: still refused
        other.update(team_id="T0PARTNER", enterprise_id="E0OTHER")
        response = await bot.post(*signing.signed_command(other, SECRET))
        assert "your command was not counted" in await response.text()


async def test_a_click_of_a_member_of_a_listed_grid_org_is_stored(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in await started(fake_slack, tmp_path, answer_teams=("E0PARTNER",)):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        label = bot.first_label(message)
        click = bot.button_payload(message, "U0ANA", label)
        click = from_team(click, "W0PART", "T0PARTWS", origin="T0PARTWS", org="E0PARTNER")
        assert (await bot.action(click)).status == 200
        await bot.settled()
        assert answers(bot) == [("W0PART", "T0PARTWS")]
        assert bot.store.resolution("i0")["label"] == label


async def test_a_click_the_payload_does_not_tie_to_the_org_is_not_counted_and_the_log_says_why(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """In a Slack Connect channel of a Grid install, a partner's click names this app's
    workspace and org in ``team``/``enterprise``: that must not count them as members."""
    caplog.set_level(logging.INFO)
    grid(fake_slack)
    async for bot in await started(fake_slack, tmp_path, answer_teams=(ORG,)):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        click = bot.button_payload(message, "U0ANA", bot.first_label(message))
        click = from_team(click, "W0PART", "T0PARTNER", origin="T0HITL", org=ORG)
        assert (await bot.action(click)).status == 200
        await bot.settled()
        assert answers(bot) == [] and bot.store.resolution("i0") is None
        assert warnings(caplog) == [
            "a click from W0PART of team T0PARTNER was not counted: that team is not in"
            f" HITL_ANSWER_TEAMS ({ORG}, T0HITL); the request came through org {ORG}, which is,"
            " but Slack's payload does not say team T0PARTNER belongs to it (in a Slack Connect"
            " channel it names this app's org); if it does, add T0PARTNER to HITL_ANSWER_TEAMS"
        ]


async def test_app_uninstalled_and_tokens_revoked_get_200_and_one_line_each(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    async for bot in await started(fake_slack, tmp_path):
        uninstalled = signing.event_envelope({"type": "app_uninstalled", "event_ts": "1.1"})
        wrong = signing.signed_event(uninstalled, "not-the-secret")
        assert (await bot.post(*wrong)).status == 401  # refused unless Slack signed it
        unsigned = json.dumps(uninstalled).encode(), {"Content-Type": "application/json"}
        assert (await bot.post(*unsigned)).status == 401
        caplog.clear()
        assert (await bot.event(uninstalled)).status == 200
        revoked = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOT"]}}
        assert (
            await bot.event(signing.event_envelope({**revoked, "event_ts": "1.2"}))
        ).status == 200
        await bot.settled()
        said = warnings(caplog)
        assert [line.split(":")[0] for line in said] == [
            "Slack says this app was uninstalled from team T0HITL",
            "Slack says this app's bot token was revoked in team T0HITL",
        ]
        assert all("reinstall the app, set SLACK_BOT_TOKEN" in line for line in said)
        assert "Suggestion" not in caplog.text and "Unhandled request" not in caplog.text


async def test_events_nothing_acts_on_get_200_quietly(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    async for bot in await started(fake_slack, tmp_path):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        for event in (
            {"type": "member_left_channel", "user": "UBOT", "channel": CHANNEL},
            {"type": "channel_left", "channel": CHANNEL, "actor_id": "U0ADMIN"},
            {"type": "channel_rename", "channel": {"id": CHANNEL, "name": "l2", "created": 1}},
            {"type": "message", "channel": CHANNEL, "user": "U0ANA", "text": "billing?",
             "ts": "1700000001.3", "thread_ts": message["ts"], "channel_type": "channel"},
        ):  # fmt: skip
            response = await bot.event(signing.event_envelope({**event, "event_ts": "1.3"}))
            assert response.status == 200, event["type"]
        await bot.settled()
        assert warnings(caplog) == []
        assert "Suggestion" not in caplog.text and "Unhandled request" not in caplog.text


async def test_a_click_no_listener_takes_is_still_404_in_one_line(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    async for bot in await started(fake_slack, tmp_path):
        click = signing.block_actions_payload("U0ANA", "someone.elses.action", "x")
        assert (await bot.action(click)).status == 404
        assert warnings(caplog) == [
            "a Slack block_actions (someone.elses.action) that this app does not handle was"
            " answered 404"
        ]
        assert "Suggestion" not in caplog.text
