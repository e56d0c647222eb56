"""What an outside test of real-install payloads found (workspaces report, F1–F4), through the
real server: signed requests, the fake Slack Web API.

F1: the same Slack app installed in another workspace sends its events to the same Request URL,
signed with the same secret; its ``app_uninstalled`` or ``tokens_revoked`` made this server log
an ERROR that its own token no longer works. F2: a label renamed while a `/hitl review` window
was open was taken for someone deciding the item (the admin's pick dropped), and the old name
picked in the window was refused, where a click counts it for its successor. F3: a label shaped
like a mention became a live mention in the window's *Why* line. F4: an item deleted (`hitl
delete`) while its Undo or review window was on screen was said to be "too late to undo", or
given a CLI hint, instead of what a click on it says."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.blocks import UNDO_ACTION
from bot.slack.redraw import Redrawer
from bot.slack.review import DECISION_ACTION, DECISION_BLOCK, REVIEW_CALLBACK
from tests import signing
from tests.bot.harness import Bot, Item, item_of, make_settings, seed, start_bot
from tests.bot.test_label_drift import gold_and_tickets
from tests.bot.test_slack_bot import buttons
from tests.fake_slack import CHANNEL

REMOVED = "I can't find that item any more; it may have been removed."
TOKEN_GONE = ("no longer works", "was revoked")


def bot_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno >= level and r.name.startswith("bot")
    ]


def from_install(event: dict, team: str | None, user: str, org: str | None = None) -> dict:
    """``event`` in an envelope of the installation of this app in ``team`` (org ``org``),
    whose bot user is ``user``."""
    envelope = signing.event_envelope(event)
    envelope["team_id"] = team
    envelope["authorizations"][0].update(
        team_id=team, user_id=user, enterprise_id=org, is_enterprise_install=team is None
    )
    if org:
        envelope["enterprise_id"] = org
    return envelope


# F1 ---------------------------------------------------------------------------------------


async def test_another_installations_uninstall_or_revoked_token_is_not_said_of_this_one(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    seed(tmp_path / "hitl.db", [Item("a", "charged twice"), Item("b", "app crashes")])
    caplog.set_level(logging.DEBUG)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        await bot.dispatcher.fill()
        staging = [
            from_install({"type": "app_uninstalled", "event_ts": "1.1"}, "T0STAGING", "U0STG"),
            from_install(
                {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["U0STG"]}},
                "T0STAGING",
                "U0STG",
            ),
            # this team's envelope, but the token revoked is another bot user's
            signing.event_envelope(
                {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["U0OTHERBOT"]}}
            ),
        ]
        caplog.clear()
        for envelope in staging:
            assert (await bot.event(envelope)).status == 200
        await bot.settled()
        assert bot_lines(caplog, logging.WARNING) == []
        said = bot_lines(caplog, logging.INFO)
        assert [line for line in said if "another installation" in line] == [
            "Slack says this app was uninstalled from team T0STAGING, bot user U0STG, another"
            " installation of it: this server's (team T0HITL, bot user UBOT) is not affected",
            "Slack says the bot token of another installation of this app was revoked (team"
            " T0STAGING, bot user U0STG): this server's (team T0HITL, bot user UBOT) is not"
            " affected",
            "Slack says the bot token of another installation of this app was revoked (team"
            " T0HITL, bot user U0OTHERBOT): this server's (team T0HITL, bot user UBOT) is not"
            " affected",
        ]
        # its token still works: an answer frees the place and the next question is posted
        [message] = bot.posted()
        await bot.action(bot.button_payload(message, "U0ANA", bot.first_label(message)))
        await bot.settled()
        await bot.dispatcher.fill()
        assert len(bot.posted()) == 2

        # this server's own installation: still the one error line each
        caplog.clear()
        own = [
            signing.event_envelope({"type": "app_uninstalled", "event_ts": "1.2"}),
            signing.event_envelope(
                {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["U0OTHERBOT", "UBOT"]}}
            ),
        ]
        for envelope in own:
            assert (await bot.event(envelope)).status == 200
        await bot.settled()
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert [r.getMessage().split(":")[0] for r in errors] == [
            "Slack says this app was uninstalled from team T0HITL",
            "Slack says this app's bot token was revoked in team T0HITL",
        ]


async def test_an_org_wide_install_hears_of_its_own_uninstall_from_any_workspace_of_its_org(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """An org-wide Enterprise Grid install: one bot user in every workspace of the org; its
    events name the org and that bot user, with a workspace of the org or none as the team."""
    auth_test = fake_slack._handlers["auth.test"]
    fake_slack._handlers["auth.test"] = lambda params: {
        **auth_test(params),
        "enterprise_id": "E0ORG",
        "is_enterprise_install": True,
    }
    seed(tmp_path / "hitl.db", [Item("a", "charged twice")])
    caplog.set_level(logging.DEBUG)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        caplog.clear()
        other_org = from_install({"type": "app_uninstalled"}, None, "U0ELSE", org="E0ELSE")
        assert (await bot.event(other_org)).status == 200
        await bot.settled()
        assert bot_lines(caplog, logging.WARNING) == []
        ours = from_install({"type": "app_uninstalled"}, None, "UBOT", org="E0ORG")
        ours["team_id"] = "T0SIBLING"  # the workspace of the org the event came through
        assert (await bot.event(ours)).status == 200
        await bot.settled()
        [error] = bot_lines(caplog, logging.WARNING)
        assert error.startswith("Slack says this app was uninstalled from team T0SIBLING")


# F2 ---------------------------------------------------------------------------------------


def last_view(bot: Bot) -> dict:
    view = bot.fake.calls_to("views.open")[-1].params["view"]
    return json.loads(view) if isinstance(view, str) else view


def pick(view: dict, value: str, user: str = "U0ADMIN") -> dict:
    """A submission of the review window ``view`` with ``value`` picked (as Slack sends what
    the window offered when it was drawn)."""
    values = {DECISION_BLOCK: {DECISION_ACTION: signing.selected_option_value(value)}}
    return signing.view_submission_payload(
        REVIEW_CALLBACK, values, user_id=user, private_metadata=view["private_metadata"]
    )


async def submitted(bot: Bot, payload: dict) -> dict:
    response = await bot.action(payload)
    assert response.status == 200
    return json.loads(await response.text() or "{}")


def shown(answer: dict) -> str:
    return json.dumps((answer.get("view") or {}).get("blocks", []))


async def test_a_rename_while_the_review_window_is_open_is_no_decision_and_an_old_name_counts(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(
        tmp_path / "hitl.db",
        [Item("s", "charged twice and it crashes"), Item("l1", "imported one", label="bug")],
    )
    settings = make_settings(fake_slack, tmp_path, max_open=1, votes=2)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        assert item_of(message) == "s" and {"bug", "billing"} <= set(buttons(message))
        for user, label in (("U0ANA", "bug"), ("U0RAJ", "billing")):  # a split: in review
            await bot.action(bot.button_payload(message, user, label))
        await bot.settled()
        assert bot.store.next_review()["item_id"] == "s"

        await bot.command("review l1", "U0ADMIN", trigger_id="t.l1")  # a labeled item
        await bot.settled()
        labeled = last_view(bot)
        await bot.command("review", "U0ADMIN", trigger_id="t.s")  # the split
        await bot.settled()
        split = last_view(bot)
        assert json.loads(split["private_metadata"])["item"] == "s"

        renamed = await bot.command("labels rename bug defect", "U0ADMIN", trigger_id="t.r")
        assert renamed.status == 200
        await bot.settled()
        assert bot.store.current_label("l1") == "defect"

        # the rename is nobody's decision: the admin's pick on the labeled item is saved
        answer = await submitted(bot, pick(labeled, "label:account"))
        assert answer["response_action"] == "update"
        assert "meanwhile" not in shown(answer) and "not saved" not in shown(answer)
        assert bot.store.current_label("l1") == "account"
        assert [(c["new_label"], c["action"]) for c in bot.store.label_history("l1")] == [
            ("defect", "rename"),
            ("account", "review"),
        ]

        # `bug`, still offered in the window drawn before, counts for `defect`
        answer = await submitted(bot, pick(split, "label:bug"))
        assert answer.get("response_action") == "update", answer
        assert bot.store.resolution("s")["label"] == "defect"
        assert bot.store.label_history("s")[-1]["new_label"] == "defect"


# F3 ---------------------------------------------------------------------------------------


def facts(view: dict) -> tuple[str, str]:
    """The review window's *Why* and *Votes* lines (a block each)."""
    texts = [b["text"]["text"] for b in view["blocks"] if b.get("type") == "section"]
    [why] = [t for t in texts if t.startswith("*Why:*")]
    [votes] = [t for t in texts if t.startswith("*Votes:*")]
    return why, votes


async def test_a_label_shaped_like_a_mention_stays_text_on_the_why_line_of_a_split(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("a", "charged twice")])
    settings = make_settings(
        fake_slack, tmp_path, max_open=1, votes=2, labels=("<@U0RAJ>", "bug", "billing")
    )
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        await bot.action(bot.button_payload(message, "U0ANA", "<@U0RAJ>"))
        await bot.action(bot.button_payload(message, "U0RAJ", "bug"))
        await bot.settled()
        await bot.command("review", "U0ADMIN")
        await bot.settled()
        why, votes = facts(last_view(bot))
        assert why == "*Why:* split vote (&lt;@U0RAJ&gt; 1, bug 1)"
        assert votes == "*Votes:* `&lt;@U0RAJ&gt;`: <@U0ANA> · `bug`: <@U0RAJ>"


async def test_a_gold_miss_names_who_answered_and_a_label_shaped_like_a_mention_stays_text(
    fake_slack: FakeSlack, tmp_path: Path
):
    gold_and_tickets(tmp_path / "hitl.db", [Item("i1", "the app crashes on start")])
    settings = make_settings(
        fake_slack,
        tmp_path,
        gold_rate=1.0,
        votes=3,
        max_open=1,
        labels=("<@U0RAJ>", "billing", "bug"),
    )
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        assert item_of(message) == "g1"
        await bot.action(bot.button_payload(message, "U0ANA", "<@U0RAJ>"))  # a miss
        await bot.settled()
        await bot.command("review", "U0ADMIN")
        await bot.settled()
        why, _ = facts(last_view(bot))
        assert why == "*Why:* a gold answer missed (<@U0ANA> &lt;@U0RAJ&gt;; gold: billing)"


# F4 ---------------------------------------------------------------------------------------


async def test_an_undo_or_a_review_decision_on_a_deleted_item_says_it_was_removed(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(
        tmp_path / "hitl.db",
        [Item("a", "charged twice"), Item("b", "app crashes"), Item("c", "hello")],
    )
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=2)):
        await bot.dispatcher.fill()
        questions = {item_of(m): m for m in bot.posted()}
        asked = questions["a"]
        await bot.action(bot.button_payload(asked, "U0ANA", bot.first_label(asked)))
        await bot.settled()
        [note] = [
            c.params
            for c in bot.fake.calls_to("chat.postEphemeral")
            if "Undo" in str(c.params.get("blocks"))
        ]
        drawn = note["blocks"] if isinstance(note["blocks"], list) else json.loads(note["blocks"])
        undo = drawn[0]["accessory"]
        assert undo["action_id"] == UNDO_ACTION
        await bot.command("review b", "U0ADMIN", trigger_id="t.b")
        await bot.settled()
        window = last_view(bot)
        bot.store.flag_review("c", "split", "bug 1, billing 1")  # next in review

        bot.store.delete_items(["a", "b"], user_id="cli:ops", reason="erasure request")
        await Redrawer.of(bot.rt).soon()  # the pass that erases their messages
        await bot.settled()

        click = bot.button_payload(asked, "U0RAJ", bot.first_label(asked))
        await bot.action(click)
        await bot.settled()
        assert bot.fake.ephemerals[-1]["text"] == REMOVED  # held before: what the others say

        payload = signing.block_actions_payload(
            "U0ANA",
            UNDO_ACTION,
            undo["value"],
            message_ts=asked["ts"],
            response_url=bot.fake.response_url(CHANNEL),
        )
        assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert bot.fake.responses[-1]["payload"]["text"] == REMOVED

        answer = await submitted(bot, pick(window, "label:bug"))
        assert answer["response_action"] == "update"  # on to the next item, told why
        assert f":warning: {REMOVED} Your decision on it was not saved." in shown(answer)
        assert json.loads(answer["view"]["private_metadata"])["item"] == "c"
        assert "hitl export" not in json.dumps(answer)
        assert bot.store.get_item("b") is None and bot.store.resolution("c") is None
