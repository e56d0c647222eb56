"""Agreement you can cite: `/hitl stats` (through the real server) and `hitl stats` show
kappa, alpha, Fleiss, per-label and per-person agreement equal to a hand computation."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.learning import quality
from bot.learning.scoring import scorer_of
from bot.learning.scoring_worker import ScoringWorker
from bot.sandbox import FakeSlack
from bot.slack.commands import WORKING
from bot.store import Store
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot, threads_calling

# Ana and Raj answer ten items (HITL_VOTES=2): both "billing" on i0-i4, both "bug" on i7-i9;
# on i5 Ana says billing and Raj bug, on i6 the reverse.
ANA = ["billing"] * 6 + ["bug"] * 4
RAJ = ["billing"] * 5 + ["bug", "billing"] + ["bug"] * 3


def answer_all(store: Store) -> None:
    for n, (ana, raj) in enumerate(zip(ANA, RAJ, strict=True)):
        for user, label in (("U0ANA", ana), ("U0RAJ", raj)):
            store.record_answer(
                f"i{n}", user, label, source="button", dedupe_key=f"{n}{user}", votes_needed=2
            )


# By hand. Observed agreement 8/10. Ana and Raj each say billing 6 times and bug 4 times, so
# chance agreement is .6*.6 + .4*.4 = .52, and Cohen's kappa = (.8 - .52) / (1 - .52) = .5833.
# Fleiss' kappa on two raters: the pooled shares are again .6 and .4, so it is .5833 too.
# Krippendorff's alpha: 20 pairable values (12 billing, 8 bug), 4 disagreeing ordered pairs:
# D_o = 4/20 = .2, D_e = 2*12*8 / (20*19) = .50526, alpha = 1 - .2/.50526 = .6042.
# Specific agreement: billing 2*5 / (2*5 + 2) = 83%, bug 2*3 / (2*3 + 2) = 75%.
# Each against the other (the majority of the others): 8 of 10, Wilson 95% CI 49%–94%.
EXPECTED = [
    "Agreement between people* (10 items with two or more answers, 2 people): "
    "Krippendorff's α 0.60 · Fleiss' κ 0.58 (10 items with 2 answers) · raw agreement 80%",
    "<@U0ANA> & <@U0RAJ>: κ 0.58 (10 items, 80% the same)",
    "*By label* (specific agreement): billing 83% · bug 75%",
    "<@U0ANA> 80% (8 of 10, 95% CI 49%–94%)",
    "<@U0RAJ> 80% (8 of 10, 95% CI 49%–94%)",
]
# Slack shows each label in a code span (the terminal as it is)
# /hitl stats' first blocks: the counts, a line each
COUNTS = ["*Answers today:*", "*Answers this week:*", "*Items:*", "*Votes for the winner:*"]
IN_SLACK = [line.replace("billing 83% · bug 75%", "`billing` 83% · `bug` 75%") for line in EXPECTED]


@pytest.fixture
async def voting_bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"item {n}") for n in range(10)])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, votes=2)):
        yield running


async def test_stats_in_slack_show_agreement_equal_to_a_hand_computation(voting_bot: Bot):
    bot = voting_bot
    answer_all(bot.store)
    response = await bot.command("stats", "U0RAJ")
    assert response.status == 200
    body = json.loads(await response.text())
    for line in IN_SLACK:
        assert line in body["text"], line
    sections = [b["text"]["text"] for b in body["blocks"]]
    assert all(b["type"] == "section" and len(b["text"]["text"]) <= 3000 for b in body["blocks"])
    # the counts' lines first, a block each; then the agreement's sections
    heads = [*COUNTS, "*Agreement between people*"]
    assert all(section.startswith(head) for section, head in zip(sections, heads, strict=False))
    assert sections[5] == (
        "*Cohen's κ by pair:*\n<@U0ANA> & <@U0RAJ>: κ 0.58 (10 items, 80% the same)"
    )


async def test_stats_in_the_cli_show_the_same_agreement(tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item(f"i{n}", f"item {n}") for n in range(10)])
    with Store.open(db) as store:
        answer_all(store)
    result = CliRunner().invoke(
        cli, ["--db", str(db), "stats"], env={"HITL_VOTES": "2"}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert (
        "Agreement between people (10 items with two or more answers, 2 people): "
        "Krippendorff's α 0.60 · Fleiss' κ 0.58 (10 items with 2 answers) · raw agreement 80%"
    ) in result.output.splitlines()
    assert "@U0ANA & @U0RAJ: κ 0.58 (10 items, 80% the same)" in result.output.splitlines()
    assert "By label (specific agreement): billing 83% · bug 75%" in result.output.splitlines()
    assert "@U0RAJ 80% (8 of 10, 95% CI 49%–94%)" in result.output.splitlines()


async def test_with_one_vote_per_item_stats_show_no_agreement(tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item("i0", "item 0")])
    result = CliRunner().invoke(cli, ["--db", str(db), "stats"], catch_exceptions=False)
    assert result.exit_code == 0 and "Agreement between people" not in result.output


async def test_signed_clicks_give_agreement_equal_to_the_hand_computation(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The same tally as ``answer_all``, clicked through signed requests on the posted
    questions (Ana first, then Raj), then `/hitl stats`."""
    from tests.fake_slack import CHANNEL

    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"item {n}") for n in range(10)])
    settings = make_settings(fake_slack, tmp_path, votes=2, max_open=10)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        for n, (ana, raj) in enumerate(zip(ANA, RAJ, strict=True)):
            ts = bot.store.post_for_item(f"i{n}")["ts"]
            for user, label in (("U0ANA", ana), ("U0RAJ", raj)):
                message = bot.fake.message(CHANNEL, ts)
                assert (await bot.action(bot.select_payload(message, user, label))).status == 200
        await bot.settled()
        body = json.loads(await (await bot.command("stats", "U0RAJ")).text())
        for line in IN_SLACK:
            assert line in body["text"], line


async def stats_reply(bot: Bot, user: str) -> tuple[str, list[str]]:
    """`/hitl stats`' reply to ``user``: the ack's, or the response_url's when it was read
    after ``ACK_WITHIN`` (a child's first call imports the report's modules)."""
    told = len(bot.fake.responses)
    response = await bot.command("stats", user)
    assert response.status == 200
    if response.content_type != "application/json":  # Bolt acks a bare text as plain text
        assert await response.text() == WORKING
        await bot.rt.background.drain(timeout=30)
        [body] = [r["payload"] for r in bot.fake.responses[told:]]
    else:
        body = json.loads(await response.text())
    return body["text"], [b["text"]["text"] for b in body["blocks"]]


async def test_under_hitl_serve_stats_are_measured_in_the_walks_child_with_the_same_reply(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`/hitl stats`' agreement and Dawid–Skene are numpy work that holds the GIL (in a worker
    thread it held the event loop 80–177 ms at a million items): where the server has the
    walks' scoring child (`hitl serve`, once a model warmed it), the whole read runs there, and
    this process measures nothing; the replies, a member's and an admin's, are those the
    worker thread gives."""
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"item {n}") for n in range(10)])
    settings = make_settings(fake_slack, tmp_path, votes=2, aggregation="dawid_skene")
    measured_here = threads_calling(monkeypatch, quality, "measure")
    async for bot in start_bot(fake_slack, settings):
        answer_all(bot.store)
        in_a_thread = [await stats_reply(bot, user) for user in ("U0RAJ", "U0ADMIN")]
        assert len(measured_here) == 2  # no child: in worker threads of this process
        assert threading.main_thread().name not in measured_here
        worker = scorer_of(bot.rt).walk_worker = ScoringWorker()
        try:
            assert await stats_reply(bot, "U0RAJ") == in_a_thread[0]  # not started: a thread
            assert len(measured_here) == 3
            worker.warm()  # as a model's arrival warms it (``jobs.warm_scoring``)
            in_the_child = [await stats_reply(bot, user) for user in ("U0RAJ", "U0ADMIN")]
        finally:
            worker.close()
        assert len(measured_here) == 3  # measured in the child alone
    assert in_the_child == in_a_thread
    member, admin = in_the_child
    assert all(line in member[0] for line in IN_SLACK)
    assert "*Estimated accuracy* (Dawid–Skene" in admin[0]
    assert "Estimated accuracy" not in member[0]
