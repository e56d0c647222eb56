"""Who may answer: members of the app's own workspace by default (HITL_ANSWER_TEAMS).

In a Slack Connect channel, a member of another organisation clicked a question's button: the
answer was stored like a teammate's, decided the item and trained the next model, and two such
Skips set the team's item aside for good; nothing recorded the clicker's team. Now a click of
a team that does not count is acknowledged, not stored, and the clicker told so in one line;
the server logs it once per team. Every answer keeps the clicker's team (``answers.team_id``).
Requests go through the real endpoint, signed, with the payloads Slack sends."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlite_utils import Database

from bot.config import load_settings
from bot.errors import ConfigError
from bot.sandbox import FakeSlack
from bot.slack import blocks
from bot.store import KNOWN_MIGRATIONS, Store, migrations
from tests import signing
from tests.bot.harness import SECRET, Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

OWN = "T0HITL"  # the fake workspace's team, as its auth.test says
EXT = "T0EXTERNAL"
TEXTS = ["I was charged twice", "The app crashes on start", "Please delete my account"]


def external(payload: dict, user_id: str = "W0EXTERN", team: str | None = EXT) -> dict:
    """The click as Slack sends it for a member of another organisation in a Slack Connect
    channel: ``user.team_id`` and ``team`` are the clicker's own organisation."""
    payload["user"] = {"id": user_id, "username": "ext", "name": "ext", "team_id": team}
    payload["team"] = {"id": team, "domain": "partner"}
    payload["channel"]["is_ext_shared_channel"] = True
    if team is None:
        del payload["user"]["team_id"]
    return payload


async def started(fake: FakeSlack, tmp_path: Path, **changes):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", t) for n, t in enumerate(TEXTS)])
    for user in ("W0EXTERN", "W0EXT1", "W0EXT2"):  # so that a note to them is delivered
        fake.add_user(user, user.lower())
    return start_bot(fake, make_settings(fake, tmp_path, max_open=1, **changes))


def status(bot: Bot, item_id: str) -> str:
    return bot.store.get_item(item_id)["status"]


def answers(bot: Bot) -> list[tuple]:
    return [(a["user_id"], a["label"], a["team_id"]) for a in bot.store.iter_answers()]


def said_to(fake: FakeSlack, user: str) -> list[str]:
    return [e["text"] for e in fake.ephemerals if e["user"] == user]


NOTE = (
    "Only members of this workspace answer these questions, so your click was not counted"
    " (an admin can let other teams answer with HITL_ANSWER_TEAMS)."
)


async def test_a_click_of_another_organisation_is_not_stored_and_the_item_stays_open(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in await started(fake_slack, tmp_path):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        label = bot.first_label(message)
        response = await bot.action(external(bot.button_payload(message, "U0ANA", label)))
        assert response.status == 200
        await bot.settled()
        assert bot.store.resolution("i0") is None
        assert status(bot, "i0") == "posted"
        assert answers(bot) == []
        assert said_to(fake_slack, "W0EXTERN") == [NOTE]


async def test_two_skips_of_another_organisation_leave_the_item_asked(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in await started(fake_slack, tmp_path):  # HITL_SKIPS_TO_DISCARD=2
        await bot.dispatcher.fill()
        [message] = bot.posted()
        for who in ("W0EXT1", "W0EXT2"):
            response = await bot.action(external(bot.button_payload(message, "U0ANA", None), who))
            assert response.status == 200
        await bot.settled()
        assert status(bot, "i0") == "posted"
        assert answers(bot) == []


async def test_other_select_and_undo_of_another_organisation_are_not_stored(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in await started(fake_slack, tmp_path):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        await bot.action(external(bot.select_payload(message, "U0ANA", "bug")))
        assert bot.store.resolution("i0") is None and answers(bot) == []
        await bot.action(bot.button_payload(message, "U0ANA", bot.first_label(message)))
        await bot.settled()
        decided = bot.store.resolution("i0")
        assert decided is not None
        undo = signing.block_actions_payload(
            "U0ANA",
            "hitl.undo",
            blocks.encode_value("i0", decided["label"]),
            response_url=fake_slack.response_url(CHANNEL),
        )
        await bot.action(external(undo))
        await bot.settled()
        assert bot.store.resolution("i0") == decided  # not undone
        assert [a[0] for a in answers(bot)] == ["U0ANA"]
        assert said_to(fake_slack, "W0EXTERN") == [NOTE, NOTE]


@pytest.mark.parametrize("teams", ["", EXT])
async def test_a_teammates_answer_keeps_their_team(
    fake_slack: FakeSlack, tmp_path: Path, teams: str
):
    """With HITL_ANSWER_TEAMS naming a partner alone, the team's own clicks still count: the
    setting adds teams (an outside test found it replaced the workspace's own)."""
    answer_teams = load_settings({"HITL_ANSWER_TEAMS": teams} if teams else {}, None).answer_teams
    async for bot in await started(fake_slack, tmp_path, answer_teams=answer_teams):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        label = bot.first_label(message)
        await bot.action(bot.button_payload(message, "U0ANA", label))
        await bot.settled()
        assert answers(bot) == [("U0ANA", label, OWN)]
        assert bot.store.resolution("i0")["label"] == label


@pytest.mark.parametrize(
    ("teams", "clicker"), [("*", EXT), (f"{EXT},{OWN}", EXT), (f"E0ORG,{OWN}", "E0ORG")]
)
async def test_hitl_answer_teams_lets_another_team_answer(
    fake_slack: FakeSlack, tmp_path: Path, teams: str, clicker: str
):
    """A partner workspace (T…), or an Enterprise Grid org (E…: some Grid payloads carry the
    org's ID as the person's team; an outside re-test found E… refused)."""
    answer_teams = load_settings({"HITL_ANSWER_TEAMS": teams}, None).answer_teams
    async for bot in await started(fake_slack, tmp_path, answer_teams=answer_teams):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        label = bot.first_label(message)
        await bot.action(external(bot.button_payload(message, "U0ANA", label), team=clicker))
        await bot.settled()
        assert bot.store.resolution("i0")["label"] == label
        assert answers(bot) == [("W0EXTERN", label, clicker)]
        assert said_to(fake_slack, "W0EXTERN") != [NOTE]


async def test_an_org_wide_enterprise_install_counts_anyone_by_default(
    fake_slack: FakeSlack, tmp_path: Path
):
    auth_test = fake_slack._handlers["auth.test"]
    fake_slack._handlers["auth.test"] = lambda params: {
        **auth_test(params),
        "enterprise_id": "E0ORG",
        "is_enterprise_install": True,
    }
    async for bot in await started(fake_slack, tmp_path):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        label = bot.first_label(message)
        await bot.action(external(bot.button_payload(message, "U0ANA", label), team="T0OTHERWS"))
        await bot.settled()
        assert answers(bot) == [("W0EXTERN", label, "T0OTHERWS")]
        assert bot.store.resolution("i0")["label"] == label


async def test_a_payload_without_the_users_team_counts(fake_slack: FakeSlack, tmp_path: Path):
    async for bot in await started(fake_slack, tmp_path):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        label = bot.first_label(message)
        await bot.action(external(bot.button_payload(message, "U0ANA", label), team=None))
        await bot.settled()
        assert answers(bot) == [("W0EXTERN", label, None)]
        assert bot.store.resolution("i0")["label"] == label


async def test_the_log_says_it_once_per_team_not_once_per_click(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    async for bot in await started(fake_slack, tmp_path, votes=3):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        label = bot.first_label(message)
        for who in ("W0EXT1", "W0EXT2"):
            await bot.action(external(bot.button_payload(message, "U0ANA", label), who))
        await bot.settled()
        said = [r.getMessage() for r in caplog.records if "HITL_ANSWER_TEAMS" in r.getMessage()]
        assert said == [
            f"a click from W0EXT1 of team {EXT} was not counted: only HITL_ANSWER_TEAMS"
            f" ({OWN}: this workspace, by default) answer; set HITL_ANSWER_TEAMS to count them"
        ]
        assert said_to(fake_slack, "W0EXT1") == said_to(fake_slack, "W0EXT2") == [NOTE]


async def test_commands_and_start_labeling_of_another_team_are_refused_not_an_admins(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot in await started(fake_slack, tmp_path):
        for text in ("stats", "label"):
            fields = signing.command_fields(text, "W0EXTERN")
            fields["team_id"] = EXT
            response = await bot.post(*signing.signed_command(fields, SECRET))
            assert response.status == 200
            assert "your command was not counted" in await response.text()
        home = signing.block_actions_payload(
            "W0EXTERN", blocks.START_LABELING_ACTION, "start", view={"id": "VH", "type": "home"}
        )
        home["user"]["team_id"] = EXT
        assert (await bot.action(home)).status == 200
        await bot.settled()
        assert NOTE in str(fake_slack.home["W0EXTERN"])  # said on the Home
        assert fake_slack.calls_to("views.open") == []  # no labeling window opened
        fields = signing.command_fields("stats", "U0ADMIN")  # HITL_ADMINS: whatever the team
        fields["team_id"] = EXT
        response = await bot.post(*signing.signed_command(fields, SECRET))
        assert "not counted" not in await response.text()


def test_a_malformed_hitl_answer_teams_is_one_line(tmp_path: Path):
    for value, problem in [
        (
            "U0ANA",
            "has 'U0ANA', not a Slack team ID; use IDs like T0123ABCD (a workspace) or"
            " E0123ABCD (an Enterprise Grid org), or * for anyone",
        ),
        ("*,T0HITL", "mixes * with team IDs; give * alone (anyone) or team IDs"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_settings({"HITL_ANSWER_TEAMS": value}, None)
        assert caught.value.problems == [f'HITL_ANSWER_TEAMS="{value}" {problem}']
    assert load_settings({"HITL_ANSWER_TEAMS": "T0A, T0B"}, None).answer_teams == ("T0A", "T0B")
    assert load_settings({}, None).answer_teams == ()


def test_an_older_database_gets_the_answers_team_column(tmp_path: Path):
    db_path = tmp_path / "hitl.db"
    old = Database(db_path)
    migrations.apply(old, stop_before="m028_answers_team")
    old["items"].insert(
        {"id": "a", "text": "t", "source": "import", "status": "posted",
         "created_at": "t", "updated_at": "t"}
    )  # fmt: skip
    old["answers"].insert(
        {"item_id": "a", "user_id": "U0OLD", "label": "bug", "source": "button",
         "created_at": "t", "dedupe_key": "k0"}
    )  # fmt: skip
    old.conn.commit()
    old.conn.close()
    with Store.open(db_path) as store:
        assert store.schema_version() == list(KNOWN_MIGRATIONS)
        assert "m028_answers_team" in store.schema_version()
        store.record_answer("a", "U0NEW", "bug", source="button", dedupe_key="k1", team_id=OWN)
        assert [(a["user_id"], a["team_id"]) for a in store.iter_answers()] == [
            ("U0OLD", None),
            ("U0NEW", OWN),
        ]
