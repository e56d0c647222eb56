"""HITL_AGGREGATION: items resolve live by majority, and a retrain or refresh trains on the
labels the setting gives: majority's, or gold-seeded Dawid–Skene's. A fixed tally, clicked
through the real server, where the two disagree; `/hitl stats` shows admins the estimates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.learning.quality import estimate, training_rows
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot, Item, make_settings, start_bot
from tests.fake_slack import CHANNEL

A, B, C = "U0ANA", "U0RAJ", "U0MEI"  # Ana is careful; Raj and Mei make the same mistakes
GOLD = [("g1", "refund my card please", "billing"), ("g2", "charged twice in May", "billing"),
        ("g3", "the app crashes on start", "bug")]  # fmt: skip
ITEMS = [("t1", "invoice shows the wrong amount"), ("p1", "button does nothing"),
         ("p2", "login page is blank"), ("p3", "change my email address")]  # fmt: skip
VOTES = {  # item → each person's answer, in the order they click
    "g1": [(A, "billing"), (B, "bug"), (C, "bug")],
    "g2": [(A, "billing"), (B, "bug"), (C, "bug")],
    "g3": [(A, "bug"), (B, "bug")],
    "t1": [(A, "billing"), (B, "bug"), (C, "bug")],  # majority: bug; Dawid–Skene: billing
    "p1": [(A, "bug"), (B, "bug")],
    "p2": [(A, "bug"), (C, "bug")],
    "p3": [(A, "account"), (B, "account")],
}


async def click_the_tally(bot: Bot) -> None:
    """Post every item and click VOTES through signed requests."""
    for _ in range(3):  # a gold question takes a pick's place: the pick waits for the next round
        await bot.dispatcher.fill()
    assert {p["item_id"] for p in bot.store.open_posts()} == set(VOTES)
    for item, votes in VOTES.items():
        ts = bot.store.post_for_item(item)["ts"]
        for user, label in votes:
            message = bot.fake.message(CHANNEL, ts)
            assert (await bot.action(bot.select_payload(message, user, label))).status == 200
    await bot.settled()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_gold([Item(i, text, label) for i, text, label in GOLD])
        store.add_items([Item(i, text) for i, text in ITEMS], "import")
    return tmp_path / "hitl.db"


@pytest.mark.parametrize(("aggregation", "t1"), [("majority", "bug"), ("dawid_skene", "billing")])
async def test_training_labels_follow_the_aggregation_setting(
    fake_slack: FakeSlack, tmp_path: Path, db: Path, aggregation: str, t1: str
):
    settings = make_settings(
        fake_slack, tmp_path, votes=3, gold_rate=1.0, max_open=10, aggregation=aggregation
    )
    async for bot in start_bot(fake_slack, settings):
        await click_the_tally(bot)
        # live, items resolve by majority whatever the setting: the question closed as bug
        assert bot.store.resolution("t1")["label"] == "bug"
        assert bot.store.get_item("t1")["status"] == "resolved"

        # what a retrain trains on (its own read, on a connection of its own)
        with Store.open(db) as store:
            trained = {text: label for _, text, label, _ in training_rows(store, settings)}
        assert trained["invoice shows the wrong amount"] == t1
        assert "refund my card please" not in trained  # gold never trains
        assert trained["button does nothing"] == "bug"

        stats = json.loads(await (await bot.command("stats", "U0ADMIN")).text())["text"]
        if aggregation == "majority":
            assert "Estimated accuracy" not in stats
        else:
            head = (
                "*Estimated accuracy* (Dawid–Skene over 7 items with two or more answers, "
                "3 of them gold; training uses its labels):\n"
            )
            assert head in stats
            # Mei gave 4 answers, 3 wrong on gold or with Raj against Ana; Raj 6, 3 of them
            assert stats.split(head)[1].split("\n")[:3] == [
                f"<@{C}> 25% (4 answers)",
                f"<@{B}> 50% (6 answers)",
                f"<@{A}> 100% (7 answers)",
            ]
            mine = json.loads(await (await bot.command("stats", A)).text())["text"]
            assert "Estimated accuracy" not in mine  # admins only


def voted_db(tmp_path: Path) -> Path:
    """A database with GOLD, ITEMS and VOTES answered (each item asked of three people)."""
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_gold([Item(i, text, label) for i, text, label in GOLD])
        store.add_items([Item(i, text) for i, text in ITEMS], "import")
        for n, (item, votes) in enumerate(VOTES.items()):
            for k, (user, label) in enumerate(votes):
                store.record_answer(
                    item, user, label, source="test", dedupe_key=f"{n}:{k}", votes_needed=3
                )
    return db


def test_an_admins_decision_is_kept_over_the_weighted_labels(tmp_path: Path):
    settings = make_settings(FakeSlack(), tmp_path, votes=3, aggregation="dawid_skene")
    with Store.open(voted_db(tmp_path)) as store:
        assert {r[0]: r[2] for r in training_rows(store, settings)}["t1"] == "billing"
        store.set_label("t1", "account", user_id="cli:ana", reason="checked")
        assert {r[0]: r[2] for r in training_rows(store, settings)}["t1"] == "account"


@pytest.mark.parametrize("aggregation", ["majority", "dawid_skene"])
def test_a_three_way_split_waits_in_review_out_of_training_until_an_admin_decides(
    tmp_path: Path, aggregation: str
):
    """Under either setting a split item has no decided label, so training leaves it out
    (Dawid–Skene would give it Ana's label: it is not used) and it waits in review; the admin's
    decision is what it trains with."""
    settings = make_settings(FakeSlack(), tmp_path, votes=3, aggregation=aggregation)
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_gold([Item(i, text, label) for i, text, label in GOLD])
        store.add_items([Item(i, text) for i, text in [*ITEMS, ("s1", "refund after a crash")]],
                        "import")  # fmt: skip
        votes = {**VOTES, "s1": [(A, "billing"), (B, "bug"), (C, "account")]}
        for n, (item, given) in enumerate(votes.items()):
            for k, (user, label) in enumerate(given):
                store.record_answer(
                    item, user, label, source="test", dedupe_key=f"{n}:{k}", votes_needed=3
                )
        if aggregation == "dawid_skene":
            [weighted] = [r for r in estimate(store).aggregation.resolved if r.item == "s1"]
            assert weighted.label == "billing"  # what Dawid–Skene makes of it
        assert "s1" not in {r[0] for r in training_rows(store, settings)}
        pending = [(r["reason"], r["detail"]) for r in store.reviews_of("s1")]
        assert pending == [("split", "billing 1, bug 1, account 1")]
        store.set_label("s1", "bug", user_id="U0ADMIN", action="review")
        assert store.reviews_of("s1")[0]["decision"] == "bug"
        assert {r[0]: r[2] for r in training_rows(store, settings)}["s1"] == "bug"


# An outside tester's counted votes (HITL_VOTES=3, three gold items): on gold, Ana is wrong on
# g2 and Raj on g1 and g3, so Dawid–Skene trusts nobody's "billing" and, left to itself, gives
# "account" to items where nobody chose it (i1 and i7: two billing votes; i4, i5).
TESTER_GOLD = {"g1": "billing", "g2": "bug", "g3": "account"}
TESTER = {
    "i1": [(A, "billing"), (B, "billing")],
    "i2": [(A, "bug"), (B, "billing"), (C, "account"), ("U0CAL", "bug")],
    "i3": [(A, "bug"), (B, "bug")],
    "i4": [(B, "billing"), (C, "bug"), ("U0CAL", "bug")],
    "i5": [(A, "billing"), (C, "bug"), ("U0CAL", "billing")],
    "i7": [(A, "billing"), (B, "billing")],
    "g1": [(A, "billing"), (B, "bug"), (C, "billing")],
    "g2": [("U0CAL", "billing"), (A, "bug"), (B, "bug")],
    "g3": [(B, "account"), (C, "bug"), ("U0CAL", "bug")],
    "i10": [(A, "bug"), (B, "bug")],
}


def test_dawid_skene_trains_an_item_only_with_a_label_its_votes_gave(tmp_path: Path):
    settings = make_settings(FakeSlack(), tmp_path, votes=3, aggregation="dawid_skene")
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_gold([Item(i, f"gold {i}", label) for i, label in TESTER_GOLD.items()])
        store.add_items([Item(i, f"item {i}") for i in TESTER if i not in TESTER_GOLD], "import")
        for n, (item, votes) in enumerate(TESTER.items()):
            for k, (user, label) in enumerate(votes):
                store.record_answer(
                    item, user, label, source="test", dedupe_key=f"{n}:{k}", votes_needed=3
                )
        found = estimate(store)
        assert found is not None
        voted = {item: frozenset(label for _, label in votes) for item, votes in TESTER.items()}
        assert found.voted == voted
        alone = found.aggregation.label_of()  # the model left to itself
        assert [alone[i] for i in ("i1", "i4", "i5", "i7")] == ["account"] * 4
        decided = {i: store.resolution(i)["label"] for i in TESTER if i not in TESTER_GOLD}
        trained = {item: label for item, _, label, _ in training_rows(store, settings)}
        assert set(trained) == set(decided)  # gold never trains
        assert {i: label for i, label in trained.items() if label not in voted[i]} == {}
        # unanimous items keep the label everyone gave
        assert [trained[i] for i in ("i1", "i3", "i7", "i10")] == [
            "billing",
            "bug",
            "billing",
            "bug",
        ]


async def test_an_export_read_back_trains_on_its_decided_labels_not_dawid_skenes(
    fake_slack: FakeSlack, tmp_path: Path, db: Path
):
    """README (`hitl export`): answers read back from an export are history, not votes, so the
    new database trains each item on the label its votes decided, where the one it came from
    trained t1 on Dawid–Skene's. Found moving a team's labels to a new database; README now
    says so, this pins it."""
    settings = make_settings(fake_slack, tmp_path, votes=3, gold_rate=1.0, max_open=10)
    async for bot in start_bot(fake_slack, settings):
        await click_the_tally(bot)
    export, copy = tmp_path / "export.jsonl", tmp_path / "copy.db"
    for where, args in [
        (db, ["export", "-o", str(export)]),
        (copy, ["import", str(export), "-q"]),
        (copy, ["import", "--gold", str(export), "--label-column", "gold", "-q"]),
    ]:
        result = CliRunner().invoke(cli, ["--db", str(where), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    def trained(path: Path) -> dict[str, str]:
        with Store.open(path) as store:
            return {item: label for item, _, label, _ in training_rows(store, settings)}

    assert trained(db) == {"t1": "billing", "p1": "bug", "p2": "bug", "p3": "account"}
    assert trained(copy) == {**trained(db), "t1": "bug"}  # the label the export gives
