"""The per-person lists of `hitl stats` and `/hitl stats` at team size (outside test "quality",
findings 2–4): the CLI names everyone, Slack the first 20 and says how many more and where to
see them; every list is worst first, so a cap hides the best people, not the careless
clickers; the Dawid–Skene figures are EM's fixed point; its header counts as gold only the
gold among the items it names."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.learning.quality import agreement_sections
from bot.sandbox import FakeSlack
from bot.store import Store
from model.aggregation import dawid_skene
from model.agreement import (
    AgreementReport,
    AnnotatorAgreement,
    OverallAgreement,
    PairKappa,
    Tally,
)
from tests.bot.harness import Item, make_settings, start_bot

GOOD = [f"U0G{n:02d}" for n in range(22)]  # 22 careful people, four answers each
CARELESS = ["U0C0", "U0C1", "U0C2"]  # three careless ones, three answers each: fewer


def team_answers() -> tuple[list[Item], list[Item], list[tuple[str, str, str]]]:
    """Items, gold items and answers (item, person, label; in the order given).

    The careful people agree pairwise (billing on a*, bug on b*): 4 of 4 with the others.
    Each careless person answers bug first on three billing items two careful people then
    answer billing (the careful ones' others tie there: not compared): 0 of 3. Gold: 11 gold
    items answered right by two careful people each; one each answered bug by a careless
    person, once (Dawid–Skene reads them; they are not among its items with two answers)."""
    items, gold, answers = [], [], []
    n = len(GOOD)
    for k, person in enumerate(GOOD):
        for suffix, other, label in (("a", GOOD[(k + 1) % n], "billing"),
                                     ("b", GOOD[(k + 2) % n], "bug")):  # fmt: skip
            items.append(Item(f"{suffix}{k}", f"item {suffix} {k}"))
            answers += [(f"{suffix}{k}", person, label), (f"{suffix}{k}", other, label)]
    for c, person in enumerate(CARELESS):
        for j in range(3):
            item = f"c{c}{j}"
            items.append(Item(item, f"careless item {c} {j}"))
            first, second = GOOD[(3 * c + j) % n], GOOD[(3 * c + j + 7) % n]
            answers += [(item, person, "bug"), (item, first, "billing"), (item, second, "billing")]
    for k in range(11):
        gold.append(Item(f"g{k}", f"gold item {k}", "billing"))
        answers += [(f"g{k}", GOOD[2 * k], "billing"), (f"g{k}", GOOD[2 * k + 1], "billing")]
    for c, person in enumerate(CARELESS):
        gold.append(Item(f"h{c}", f"gold answered once {c}", "billing"))
        answers.append((f"h{c}", person, "bug"))
    return items, gold, answers


def answered(db: Path, items: list, gold: list, answers: list, *, votes: int) -> Path:
    """``db`` with ``items``, ``gold`` and ``answers`` (item, user, label) under HITL_VOTES."""
    with Store.open(db) as store:
        store.add_gold(gold)
        store.add_items(items, "import")
        for n, (item, user, label) in enumerate(answers):
            store.record_answer(
                item, user, label, source="test", dedupe_key=f"a{n}", votes_needed=votes
            )
    return db


def team_db(db: Path) -> Path:
    return answered(db, *team_answers(), votes=3)


def section(text: str, head: str) -> list[str]:
    """The lines of the section whose first line starts with ``head``, that line first."""
    for part in text.split("\n\n"):
        if part.startswith(head):
            return part.splitlines()
    raise AssertionError(f"no section {head!r} in:\n{text}")


def named(lines: list[str]) -> list[str]:
    return [re.match(r"[@<@]*(U0\w+)", line)[1] for line in lines if re.match(r"[@<@]*U0", line)]


ENV = {"HITL_VOTES": "3", "HITL_AGGREGATION": "dawid_skene"}
HEADS = ("With the majority of the others:", "Accuracy on gold:", "Estimated accuracy")


def test_the_cli_lists_everyone_worst_first(tmp_path: Path):
    db = team_db(tmp_path / "hitl.db")
    result = CliRunner().invoke(cli, ["--db", str(db), "stats", "-q"], env=ENV)
    assert result.exit_code == 0, result.output
    assert "…and" not in result.output
    for head in HEADS:
        lines = section(result.output, head)
        people = named(lines[1:])
        assert sorted(people) == sorted(GOOD + CARELESS), (head, lines)
        assert len(people) == len(lines) - 1 == 25, lines  # everyone, once
        assert sorted(people[:3]) == CARELESS, lines  # the careless first
    majority = section(result.output, HEADS[0])
    assert majority[1:4] == [f"@{c} 0% (0 of 3, 95% CI 0%–56%)" for c in CARELESS]
    gold = section(result.output, HEADS[1])
    assert gold[1:4] == [f"@{c} 0% (0 of 1, 95% CI 0%–79%)" for c in CARELESS]
    # ties (every careful person 4 of 4) in a fixed order: by id
    assert named(majority[4:]) == sorted(GOOD)


def test_the_dawid_skene_header_counts_the_gold_among_its_items(tmp_path: Path):
    db = team_db(tmp_path / "hitl.db")
    result = CliRunner().invoke(cli, ["--db", str(db), "stats", "-q"], env=ENV)
    assert result.exit_code == 0, result.output
    # 44 + 9 items and 11 gold items have two or more answers; the 3 gold items answered once
    # are read (the careless people's gold answers) but are not among the 64
    assert section(result.output, "Estimated accuracy")[0] == (
        "Estimated accuracy (Dawid–Skene over 64 items with two or more answers, 11 of them"
        " gold; training uses its labels):"
    )


async def test_slack_shows_the_worst_twenty_and_says_where_the_rest_are(
    fake_slack: FakeSlack, tmp_path: Path
):
    team_db(tmp_path / "hitl.db")
    settings = make_settings(fake_slack, tmp_path, votes=3, aggregation="dawid_skene")
    async for bot in start_bot(fake_slack, settings):
        response = await bot.command("stats", "U0ADMIN")
        assert response.status == 200
        body = json.loads(await response.text())
    assert all(len(b["text"]["text"]) <= 3000 for b in body["blocks"])
    sections = [b["text"]["text"] for b in body["blocks"]]
    for head in HEADS:
        lines = next(s for s in sections if s.lstrip("*").startswith(head)).splitlines()
        assert len(named(lines[1:])) == 20, lines
        assert sorted(named(lines[1:4])) == CARELESS, lines  # the careless are never cut
        assert lines[-1] == "…and 5 more (`hitl stats` lists everyone)", lines


def small_team(seed: int) -> tuple[list[Item], list[Item], list[tuple[str, str, str]]]:
    """60 items, two of 12 people each (most right 90 % of the time, some 70 %, some 20 %),
    every sixth a gold item (tests/model/test_aggregation_converged.py's team)."""
    labels = ["account", "billing", "bug", "feature", "other"]
    rng = random.Random(seed)
    skill = {f"U0P{p:02d}": rng.choice([0.9, 0.9, 0.7, 0.2]) for p in range(12)}
    items, gold, answers = [], [], []
    for i in range(60):
        truth = rng.choice(labels)
        for user in rng.sample(sorted(skill), 2):
            given = truth if rng.random() < skill[user] else rng.choice(labels)
            answers.append((f"i{i}", user, given))
        (gold if i % 6 == 0 else items).append(
            Item(f"i{i}", f"item {i}", truth if i % 6 == 0 else None)
        )
    return items, gold, answers


def test_the_estimates_shown_are_ems_fixed_point(tmp_path: Path):
    """Training's call stops on the likelihood; the figures shown are where EM settles (plain
    EM run to its fixed point on the same answers), and differ here by up to 20 points."""
    items, gold, answers = small_team(0)
    db = answered(tmp_path / "hitl.db", items, gold, answers, votes=2)
    result = CliRunner().invoke(
        cli, ["--db", str(db), "stats", "-q"], env={**ENV, "HITL_VOTES": "2"}
    )
    assert result.exit_code == 0, result.output
    lines = section(result.output, "Estimated accuracy")
    assert "settled" not in lines[0], lines[0]
    shown = {
        m[1]: int(m[2]) for m in (re.match(r"@(U0\w+) (\d+)% ", line) for line in lines[1:]) if m
    }
    tally = Tally.from_votes(answers)
    truth = {g.id: g.label for g in gold}
    settled = dawid_skene(tally, gold=truth, gain_tol=0, max_iter=100_000)
    stopped = dawid_skene(tally, gold=truth)  # what was shown before
    assert settled.converged and sorted(shown) == sorted(tally.annotators)
    for person, pct in shown.items():
        assert abs(pct - 100 * settled.accuracy[person]) <= 0.5 + 1e-6, (person, pct)
    assert any(abs(pct - 100 * stopped.accuracy[p]) > 5 for p, pct in shown.items())


def test_estimates_em_did_not_settle_say_so(tmp_path: Path, monkeypatch):
    """Out of rounds (a database far larger than a team's), the header says the figures are
    not EM's fixed point rather than pass them off as it."""
    from bot.learning import quality

    items, gold, answers = small_team(0)
    db = answered(tmp_path / "hitl.db", items, gold, answers, votes=2)
    monkeypatch.setattr(quality, "SETTLE_ROUNDS", 3)
    result = CliRunner().invoke(
        cli, ["--db", str(db), "stats", "-q"], env={**ENV, "HITL_VOTES": "2"}
    )
    assert result.exit_code == 0, result.output
    assert section(result.output, "Estimated accuracy")[0] == (
        "Estimated accuracy (Dawid–Skene over 60 items with two or more answers, 10 of them"
        " gold; training uses its labels; EM stopped after 3 rounds before it settled, these"
        " figures may still move):"
    )


def test_stats_em_rounds_are_capped_by_their_work():
    """A round of EM costs about people × labels² + 2 × answers × labels, not answers alone
    (review1 finding 5: 300 people over 154 labels with 10,000 answers got all 500 rounds,
    35.7 s against training's 8.4 s): the rounds are what SETTLE_WORK pays for, at least
    SETTLE_MIN_ROUNDS (about training's), at most SETTLE_ROUNDS."""
    from bot.learning.quality import SETTLE_MIN_ROUNDS, SETTLE_ROUNDS, settle_rounds

    assert (SETTLE_MIN_ROUNDS, SETTLE_ROUNDS) == (100, 500)
    assert settle_rounds(30, 6, 456) == 500  # a team settles
    assert settle_rounds(100, 77, 10_000) == 468  # 592,900 + 1,540,000 a round
    # many people over many labels cost rounds with few answers: 7,114,800 + 308,000
    assert settle_rounds(300, 154, 1_000) == 134
    assert settle_rounds(300, 154, 10_000) == 100  # 10.2 million a round: the least
    assert settle_rounds(20, 154, 48_000) == 100  # 24,000 items × 2 answers: 15.3 million
    assert settle_rounds(10_000, 500, 10_000_000) == 100


def counted_calls(code) -> tuple[list[str], object]:
    """A profile function for threads started from now on that notes each call of ``code``
    (by the name of the function that made it): how many times the server ran it."""
    calls: list[str] = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is code:
            calls.append(frame.f_back.f_code.co_name)

    return calls, profile


async def test_a_non_admins_stats_run_no_dawid_skene(fake_slack: FakeSlack, tmp_path: Path):
    """/hitl stats shows a non-admin no Dawid–Skene estimates, so the server does not
    compute them for one (review1 finding 5: 28 s of a 28.6 s answer on a large team); an
    admin's still are."""
    import threading

    team_db(tmp_path / "hitl.db")
    settings = make_settings(fake_slack, tmp_path, votes=3, aggregation="dawid_skene")
    calls, profile = counted_calls(dawid_skene.__code__)
    threading.setprofile(profile)  # the worker threads that read the stats start after this
    try:
        async for bot in start_bot(fake_slack, settings):
            answered = {}
            for user in ("U0ADMIN", "U0G01"):
                before = len(calls)
                response = await bot.command("stats", user)
                assert response.status == 200
                text = "\n\n".join(
                    b["text"]["text"] for b in json.loads(await response.text())["blocks"]
                )
                answered[user] = (text, calls[before:])
    finally:
        threading.setprofile(None)
    admin, other = answered["U0ADMIN"], answered["U0G01"]
    assert "Estimated accuracy" in admin[0] and admin[1] == ["estimate"]  # seen, and counted
    assert "With the majority of the others" in other[0]
    assert "Estimated accuracy" not in other[0]
    assert other[1] == []  # no EM run for figures nobody is shown


def test_counts_past_a_thousand_have_a_separator_as_every_other_count():
    # "(1000 of 1200, …)", "…and 1215 more pairs", "…and 1001 more" beside "1,200 items"
    pairs = [PairKappa(f"U0A{n:04d}", "U0B", 10, 0.8, 0.6) for n in range(1225)]
    people = [
        AnnotatorAgreement(f"U0A{n:04d}", 1200, 1200, 1000, 0, 1000 / 1200, (0.81, 0.85), 0.6)
        for n in range(1021)
    ]
    overall = OverallAgreement(1200, 1021, 2400, 0.6, 1200, 0.6, 1200, 2, 0.8)
    report = AgreementReport(overall, pairs, [], people, min_shared=10)
    shown = "\n\n".join(agreement_sections(report))
    assert "…and 1,215 more pairs" in shown
    assert "<@U0A0000> 83% (1,000 of 1,200, 95% CI 81%–85%)" in shown
    assert shown.endswith("\n…and 1,001 more (`hitl stats` lists everyone)")
