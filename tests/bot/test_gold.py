"""Gold questions: imported as gold (not as training labels), mixed into the questions at
HITL_GOLD_RATE looking like any other, scored per person, shown to admins in `/hitl stats` and
to each person in their own App Home; a gold item never trains (the model would learn the
answer and its guess would give it away)."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy.stats import binomtest

from bot.cli import cli
from bot.runtime import Champion
from bot.sandbox import FakeSlack
from bot.store import Store
from model import TextClassifier
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_audit_share import INTERVAL, one_round
from tests.bot.test_slack_bot import buttons, tally_texts
from tests.fake_slack import CHANNEL


def gold_rows(store: Store, rows: list[tuple[str, str, str]]) -> None:
    store.add_gold([Item(i, text, label) for i, text, label in rows])


def run_cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False, prog_name="hitl")


def test_import_gold_stores_gold_items_and_no_training_label_from_people(tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item("T-1", "charged twice", "billing"), Item("T-2", "it crashes")])
    path = tmp_path / "gold.csv"
    path.write_text(
        "id,text,label\nG-1,refund my card,billing\nG-2,app is blank,\nT-2,it crashes,bug\n"
        "G-1,refund my card,billing\n"
    )
    result = run_cli("--db", str(db), "import", "--gold", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "gold.csv line 3: a gold row needs a label, row skipped",
        "gold.csv: read 4 rows, 1 new gold item, 1 stored item marked gold, 1 already gold, "
        "1 rejected",
    ]
    with Store.open(db) as store:
        assert store.get_item("G-1")["status"] == "gold"
        assert store.gold_labels() == {"G-1": "billing", "T-2": "bug"}
        assert store.count_labels() == 1  # T-1's seed label only; gold is not a label
        # what retrain reads: no gold item (T-2 was stored, then made gold)
        assert sorted((r[0], r[2]) for r in store.training_data()) == [("T-1", "billing")]
        assert store.pool() == [] or all(r["id"] != "G-1" for r in store.pool())


def test_import_gold_help_says_what_it_does():
    result = run_cli("import", "--help")
    assert "--gold" in result.output and "HITL_GOLD_RATE" in result.output


@pytest.mark.parametrize("gold_rate", [0.2])
async def test_gold_is_mixed_into_the_questions_at_the_set_rate(
    fake_slack: FakeSlack, tmp_path: Path, gold_rate: float
):
    """Each question is answered by a signed click as soon as it is posted."""
    posts = 120
    seed(tmp_path / "hitl.db", [Item(f"t{n}", f"ticket number {n}") for n in range(posts + 20)])
    with Store.open(tmp_path / "hitl.db") as store:
        gold_rows(store, [(f"g{n}", f"checked ticket {n}", "billing") for n in range(posts)])
    # no refresh of the working model midway: the picks stay random (cold start)
    settings = make_settings(fake_slack, tmp_path, gold_rate=gold_rate, max_open=5, refresh_every=0)
    async for bot in start_bot(fake_slack, settings):
        bot.dispatcher.post_interval = INTERVAL
        bot.dispatcher.rng = random.Random(20)
        for _ in range(posts):
            assert await one_round(bot) == 1
            [post] = bot.store.open_posts()
            message = bot.fake.message(CHANNEL, post["ts"])
            assert (await bot.action(bot.select_payload(message, "U0MEI", "bug"))).status == 200
        await bot.settled()
        assert bot.store.count_answers() == posts
        reasons = [p["reason"] for p in bot.store.db["posts"].rows]
        assert len(reasons) == posts and set(reasons) == {"gold", "cold_start"}
        assert binomtest(reasons.count("gold"), posts, gold_rate).pvalue >= 0.01
        # every gold answer was scored: "bug" misses each gold label (billing), so to review
        missed = bot.store.db.execute("SELECT count(*) FROM reviews WHERE reason = 'gold_miss'")
        assert missed.fetchone()[0] == reasons.count("gold")
        # a gold question looks like any other: the same reason line, no tell in its metadata
        calls = bot.fake.calls_to("chat.postMessage")
        by_item = {c.params["metadata"]["event_payload"]["item_id"]: c.params for c in calls}
        gold_call = next(c for i, c in by_item.items() if i.startswith("g"))
        other_call = next(c for i, c in by_item.items() if i.startswith("t"))
        assert gold_call["metadata"].keys() == other_call["metadata"].keys()
        assert gold_call["metadata"]["event_payload"].keys() == {"item_id"}
        assert tally_texts(gold_call) == tally_texts(other_call)
        assert "gold" not in json.dumps(gold_call["blocks"]).lower()


@pytest.fixture
async def gold_bot(fake_slack: FakeSlack, tmp_path: Path):
    with Store.open(tmp_path / "hitl.db") as store:
        gold_rows(store, [("g1", "please refund the double charge", "billing")])
    seed(tmp_path / "hitl.db", [Item("i1", "the app crashes on start")])
    settings = make_settings(fake_slack, tmp_path, gold_rate=1.0, votes=3, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        yield bot


async def test_clicks_on_a_gold_question_are_scored_per_person(gold_bot: Bot):
    bot = gold_bot
    await bot.dispatcher.fill()
    [message] = bot.posted()
    assert bot.store.post_for_item("g1")["reason"] == "gold"
    assert "billing" in buttons(message) and "bug" in buttons(message)
    # Raj and the admin get it wrong (and decide it, wrongly); Ana, right, came first
    for user, label in (("U0ANA", "billing"), ("U0RAJ", "bug"), ("U0ADMIN", "bug")):
        assert (await bot.action(bot.button_payload(message, user, label))).status == 200
    assert bot.store.resolution("g1")["label"] == "bug"
    await bot.settled()

    admin = json.loads(await (await bot.command("stats", "U0ADMIN")).text())["text"]
    assert "*Accuracy on gold:*\n<@U0ADMIN> 0% (0 of 1, 95% CI 0%–79%)\n" in admin
    assert "<@U0RAJ> 0% (0 of 1, 95% CI 0%–79%)\n<@U0ANA> 100% (1 of 1, 95% CI 21%–100%)" in admin
    mine = json.loads(await (await bot.command("stats", "U0RAJ")).text())["text"]
    assert "Accuracy on gold" not in mine  # people see only their own, in App Home
    cli_stats = run_cli("--db", str(bot.rt.settings.db), "stats").stdout.splitlines()
    at = cli_stats.index("Accuracy on gold:")
    assert cli_stats[at + 1 : at + 4] == [
        "@U0ADMIN 0% (0 of 1, 95% CI 0%–79%)",
        "@U0RAJ 0% (0 of 1, 95% CI 0%–79%)",
        "@U0ANA 100% (1 of 1, 95% CI 21%–100%)",
    ]

    assert (await bot.event(signing.app_home_opened_event("U0RAJ"))).status == 200
    await bot.settled()  # the home is published after the ack
    home = json.dumps(bot.fake.home["U0RAJ"], ensure_ascii=False)
    assert "*Your accuracy on gold questions:* 0% (0 of 1, 95% CI 0%–79%)" in home
    assert "100%" not in home and "U0ADMIN" not in home.split("Leaderboard")[0]
    assert (await bot.event(signing.app_home_opened_event("U0ANA"))).status == 200
    await bot.settled()
    home = json.dumps(bot.fake.home["U0ANA"], ensure_ascii=False)
    assert "*Your accuracy on gold questions:* 100% (1 of 1, 95% CI 21%–100%)" in home

    # neither the wrong decision nor the gold label trains: the model never learns gold
    assert [r for r in bot.store.training_data() if r[0] == "g1"] == []


async def test_without_gold_or_at_rate_zero_no_gold_is_posted(
    fake_slack: FakeSlack, tmp_path: Path
):
    with Store.open(tmp_path / "hitl.db") as store:
        gold_rows(store, [("g1", "please refund the double charge", "billing")])
    seed(tmp_path / "hitl.db", [Item("i1", "the app crashes on start")])
    settings = make_settings(fake_slack, tmp_path, gold_rate=0.0, max_open=2)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        assert [p["item_id"] for p in bot.store.open_posts()] == ["i1"]
        assert CHANNEL in bot.store.open_post_counts()


async def test_a_gold_miss_sends_the_item_to_review_and_a_right_answer_does_not(gold_bot: Bot):
    bot = gold_bot
    await bot.dispatcher.fill()
    [message] = bot.posted()
    assert (await bot.action(bot.button_payload(message, "U0ANA", "billing"))).status == 200
    await bot.settled()
    assert bot.store.next_review() is None  # a right answer on gold: nothing to review

    assert (await bot.action(bot.button_payload(message, "U0RAJ", "bug"))).status == 200
    await bot.settled()
    assert bot.store.next_review() == {
        "item_id": "g1",
        "reasons": [("gold_miss", "<@U0RAJ> bug; gold: billing")],
    }
    assert (await bot.command("review", "U0ADMIN")).status == 200
    view = (await bot.fake.next_call("views.open")).reply["view"]
    assert "*Why:* a gold answer missed (<@U0RAJ> bug; gold: billing)" in json.dumps(view)


async def test_a_gold_miss_by_someone_anonymised_since_shows_their_pseudonym(gold_bot: Bot):
    """`hitl people anonymise` writes the pseudonym into the miss's detail (``<@former-1>``):
    the *Why* line shows it as the *Votes* line does, not as an escaped ``<@former-1>``."""
    bot = gold_bot
    await bot.dispatcher.fill()
    [message] = bot.posted()
    assert (await bot.action(bot.button_payload(message, "U0RAJ", "bug"))).status == 200
    await bot.settled()
    result = run_cli("--db", str(bot.rt.settings.db), "people", "anonymise", "U0RAJ")
    assert result.exit_code == 0, result.output
    assert (await bot.command("review", "U0ADMIN")).status == 200
    view = json.dumps((await bot.fake.next_call("views.open")).reply["view"])
    assert "*Why:* a gold answer missed (former-1 bug; gold: billing)" in view
    assert "*Votes:* `bug`: former-1" in view and "&lt;@" not in view

    # a later miss rewrites the detail with both: the pseudonym, and a mention of Mei
    assert (await bot.action(bot.button_payload(message, "U0MEI", "account"))).status == 200
    assert (await bot.command("review", "U0ADMIN")).status == 200
    view = json.dumps((await bot.fake.next_call("views.open")).params["view"])
    assert "missed (former-1 bug, <@U0MEI> account; gold: billing)" in view


async def test_the_gold_miss_review_names_every_miss_as_the_answers_stand(gold_bot: Bot):
    """Two people answering at once both miss: the review names both, not only the first
    stored; one who changes their answer to the gold label is no miss, and with nobody
    missing the review goes."""
    bot = gold_bot
    await bot.dispatcher.fill()
    [message] = bot.posted()
    clicks = [
        bot.button_payload(message, "U0RAJ", "bug"),
        bot.button_payload(message, "U0MEI", "account"),
    ]
    replies = await asyncio.gather(*(bot.action(click) for click in clicks))
    assert [reply.status for reply in replies] == [200, 200]
    await bot.settled()
    [(reason, detail)] = bot.store.next_review()["reasons"]
    assert reason == "gold_miss" and detail.endswith("; gold: billing")
    assert sorted(detail.removesuffix("; gold: billing").split(", ")) == [
        "<@U0MEI> account",
        "<@U0RAJ> bug",
    ]

    [message] = bot.posted()
    assert (await bot.action(bot.button_payload(message, "U0MEI", "billing"))).status == 200
    await bot.settled()
    assert bot.store.next_review()["reasons"] == [("gold_miss", "<@U0RAJ> bug; gold: billing")]
    [message] = bot.posted()
    assert (await bot.action(bot.button_payload(message, "U0RAJ", "billing"))).status == 200
    await bot.settled()
    assert bot.store.next_review() is None


async def test_a_gold_miss_taken_back_with_undo_leaves_review(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Raj's wrong answer decides a gold question (HITL_VOTES=1) and sends it to review; he
    clicks Undo. His answer no longer counts (his gold accuracy has no answer), yet the review
    kept naming his miss: /hitl review asked an admin about an answer nobody gave any more."""
    from tests.bot.test_undo_flows import click_undo

    with Store.open(tmp_path / "hitl.db") as store:
        gold_rows(store, [("g1", "please refund the double charge", "billing")])
    seed(tmp_path / "hitl.db", [Item("i1", "the app crashes on start")])
    settings = make_settings(fake_slack, tmp_path, gold_rate=1.0, votes=1, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        [message] = bot.posted()
        assert (await bot.action(bot.button_payload(message, "U0RAJ", "bug"))).status == 200
        await bot.settled()
        assert bot.store.next_review()["reasons"] == [("gold_miss", "<@U0RAJ> bug; gold: billing")]

        assert (await click_undo(bot, "U0RAJ", message)).startswith("Undone: `bug`")
        await bot.settled()
        assert bot.store.next_review() is None
        assert bot.store.pending_review_count() == 0
        admin = json.loads(await (await bot.command("stats", "U0ADMIN")).text())["text"]
        assert "*Accuracy on gold:* nobody has answered a gold question yet" in admin
        assert buttons(bot.fake.message(CHANNEL, message["ts"]))  # asked again

        # a miss given again is in review again
        assert (await bot.action(bot.button_payload(message, "U0RAJ", "bug"))).status == 200
        await bot.settled()
        assert bot.store.next_review()["reasons"] == [("gold_miss", "<@U0RAJ> bug; gold: billing")]


async def test_a_gold_label_a_later_import_corrects_scores_the_answers_again_in_review(
    gold_bot: Bot, tmp_path: Path
):
    """A miss scored against a gold label a later `--gold` import replaced is no miss any more:
    the review it opened goes, and the answers are scored against the new label."""
    bot = gold_bot
    await bot.dispatcher.fill()
    [message] = bot.posted()
    assert (await bot.action(bot.button_payload(message, "U0RAJ", "bug"))).status == 200
    await bot.settled()
    assert bot.store.next_review() == {
        "item_id": "g1",
        "reasons": [("gold_miss", "<@U0RAJ> bug; gold: billing")],
    }
    path = tmp_path / "corrected.csv"
    path.write_text("id,text,label\ng1,please refund the double charge,bug\n")
    result = run_cli("--db", str(bot.rt.settings.db), "import", "--gold", str(path))
    assert result.exit_code == 0, result.output
    assert bot.store.next_review() is None  # Raj's bug is the gold label now

    # Ana's billing misses the new gold label: to review, saying so
    assert (await bot.action(bot.button_payload(message, "U0ANA", "billing"))).status == 200
    await bot.settled()
    assert bot.store.next_review() == {
        "item_id": "g1",
        "reasons": [("gold_miss", "<@U0ANA> billing; gold: bug")],
    }


async def label_change(bot: Bot, text: str) -> None:
    response = await bot.command(text, "U0ADMIN")
    assert response.status == 200
    assert "Done. Labels now: " in await response.text()
    await bot.settled()


async def review_view(bot: Bot, n: int = 1) -> str:
    assert (await bot.command("review", "U0ADMIN", trigger_id=f"trig.{n}")).status == 200
    return json.dumps((await bot.fake.next_call("views.open")).reply["view"])


async def test_a_gold_miss_in_review_names_its_labels_as_renamed_since(gold_bot: Bot):
    """The *Why* line of a miss names the labels in force, as the *Votes* line does: a rename
    of the gold label or of the missed one after the miss went to review shows the new name,
    and a merge that makes the missed answer the gold label leaves nothing to review."""
    bot = gold_bot
    await bot.dispatcher.fill()
    [message] = bot.posted()
    assert (await bot.action(bot.button_payload(message, "U0RAJ", "bug"))).status == 200
    assert (await bot.action(bot.button_payload(message, "U0MEI", "account"))).status == 200
    await bot.settled()
    await label_change(bot, "labels rename billing payments")
    await label_change(bot, "labels rename bug defect")
    view = await review_view(bot)
    assert "*Why:* a gold answer missed (<@U0RAJ> defect, <@U0MEI> account; gold: payments)" in (
        view
    )
    assert "billing" not in view and "`bug`" not in view and " bug" not in view

    await label_change(bot, "labels merge account payments")  # Mei's answer is gold now
    assert bot.store.next_review()["reasons"] == [("gold_miss", "<@U0RAJ> defect; gold: payments")]
    await label_change(bot, "labels merge defect payments")
    assert bot.store.next_review() is None  # nobody's answer misses the gold label


async def test_a_gold_miss_leaves_review_while_its_gold_label_is_retired(gold_bot: Bot):
    """Answers on a gold question whose gold label is retired are not scored: its miss is not
    in `/hitl review` while the label is retired, and is back once `hitl labels add` brings
    the label (and the scores) back."""
    bot = gold_bot
    await bot.dispatcher.fill()
    [message] = bot.posted()
    assert (await bot.action(bot.button_payload(message, "U0RAJ", "bug"))).status == 200
    await bot.settled()
    assert bot.store.pending_review_count() == 1
    await label_change(bot, "labels retire billing")
    assert bot.store.pending_review_count() == 0
    assert bot.store.next_review() is None
    assert "gold answer missed" not in await review_view(bot)

    await label_change(bot, "labels add billing")
    assert bot.store.next_review() == {
        "item_id": "g1",
        "reasons": [("gold_miss", "<@U0RAJ> bug; gold: billing")],
    }
    view = await review_view(bot, 2)
    assert "*Why:* a gold answer missed (<@U0RAJ> bug; gold: billing)" in view


async def test_a_gold_question_slack_refuses_is_set_aside_not_drawn_again(gold_bot: Bot):
    bot = gold_bot
    bot.fake.fail("chat.postMessage", "invalid_blocks", times=3)
    for _ in range(3):  # the gold question takes i1's place each round, and is refused
        assert await bot.dispatcher.fill() == 0
    assert bot.store.get_item("g1")["status"] == "skipped"
    assert bot.store.next_gold(5) == []
    assert await bot.dispatcher.fill() == 1  # the round after: the item it stood in for
    calls = bot.fake.calls_to("chat.postMessage")
    assert [c.params["metadata"]["event_payload"]["item_id"] for c in calls] == ["g1"] * 3 + ["i1"]
    # still gold: its answers would be scored, and it does not train
    assert bot.store.gold_labels() == {"g1": "billing"}
    assert [r for r in bot.store.training_data() if r[0] == "g1"] == []


async def test_an_export_names_a_gold_items_gold_label_and_reads_back_without_it_in_meta(
    gold_bot: Bot, tmp_path: Path
):
    bot = gold_bot
    await bot.dispatcher.fill()
    [message] = bot.posted()
    for user in ("U0RAJ", "U0ADMIN"):  # decided wrongly: bug; training uses billing
        assert (await bot.action(bot.button_payload(message, user, "bug"))).status == 200
    await bot.settled()
    db = str(tmp_path / "hitl.db")
    for fmt in ("jsonl", "csv"):
        out = run_cli("--db", db, "export", "--format", fmt, "--output", str(tmp_path / f"e.{fmt}"))
        assert out.exit_code == 0, out.output
    [row] = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert (row["id"], row["label"], row["gold"]) == ("g1", "bug", "billing")
    for fmt in ("jsonl", "csv"):
        again = tmp_path / f"again-{fmt}.db"
        assert run_cli("--db", str(again), "import", str(tmp_path / f"e.{fmt}")).exit_code == 0
        with Store.open(again) as store:
            assert store.get_item("g1")["meta"] == {}  # the gold column is not the item's meta
    # the gold label read back as gold: hitl import --gold with --label-column gold
    gold_again = tmp_path / "gold-again.db"
    marked = run_cli("--db", str(gold_again), "import", "--gold", str(tmp_path / "e.jsonl"),
                     "--label-column", "gold")  # fmt: skip
    assert marked.exit_code == 0, marked.output
    with Store.open(gold_again) as store:
        assert store.gold_labels() == {"g1": "billing"}


def test_marking_a_stored_item_gold_sends_its_earlier_miss_to_review(tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item("T-1", "refund my card"), Item("T-2", "app is blank")])
    with Store.open(db) as store:
        for n, (item, user, label) in enumerate(
            [("T-1", "U0ANA", "billing"), ("T-1", "U0RAJ", "bug"), ("T-2", "U0ANA", "bug")]
        ):
            store.record_answer(
                item, user, label, source="button", dedupe_key=f"k{n}", votes_needed=3
            )
    path = tmp_path / "gold.csv"
    path.write_text("id,text,label\nT-1,refund my card,billing\nT-2,app is blank,bug\n")
    assert run_cli("--db", str(db), "import", "--gold", str(path)).exit_code == 0
    with Store.open(db) as store:
        assert store.next_review() == {
            "item_id": "T-1",
            "reasons": [("gold_miss", "<@U0RAJ> bug; gold: billing")],
        }
        assert store.reviews_of("T-2") == []  # answered right


def test_a_gold_label_hitl_labels_set_corrects_scores_the_answers_again_in_review(
    tmp_path: Path,
):
    """As a `--gold` import's correction: a miss of the old gold label goes, a miss of the new
    one goes to review (it was closed as decided, and a new miss was never scored)."""
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        gold_rows(store, [("G1", "refund my card", "billing"), ("G2", "app is blank", "bug")])
        # G1 still open, G2 decided by its one vote (votes_needed 1)
        for n, (item, user, label, votes) in enumerate(
            [("G1", "U0ANA", "billing", 3), ("G2", "U0RAJ", "how_to", 1)]
        ):
            store.record_answer(
                item, user, label, source="button", dedupe_key=f"k{n}", votes_needed=votes
            )
        assert store.current_label("G2") == "how_to"
        assert [r["reason"] for r in store.reviews_of("G2")] == ["gold_miss"]
    assert run_cli("--db", str(db), "labels", "set", "G1", "account").exit_code == 0
    assert run_cli("--db", str(db), "labels", "set", "G2", "account").exit_code == 0
    with Store.open(db) as store:
        assert [(r["reason"], r["detail"], r["decided_at"]) for r in store.reviews_of("G1")] == [
            ("gold_miss", "<@U0ANA> billing; gold: account", None)
        ]
        assert [(r["reason"], r["detail"], r["decided_at"]) for r in store.reviews_of("G2")] == [
            ("gold_miss", "<@U0RAJ> how_to; gold: account", None)
        ]
    assert run_cli("--db", str(db), "labels", "set", "G1", "billing").exit_code == 0
    with Store.open(db) as store:
        assert store.reviews_of("G1") == []  # Ana's billing is the gold label again


def test_setting_the_label_of_a_gold_item_not_asked_yet_keeps_it_waiting_as_gold(tmp_path: Path):
    # `hitl labels set G1 bug` changed the gold label but resolved the item: it was never asked.
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        gold_rows(store, [("G1", "app is blank", "billing"), ("G2", "refund me", "billing")])
    result = run_cli("--db", str(db), "labels", "set", "G1", "bug", "--reason", "a slip")
    assert result.output == "G1: billing → bug\n"
    assert run_cli("--db", str(db), "labels", "set", "G2", "billing").output == (
        "G2: already billing, nothing changed\n"
    )
    with Store.open(db) as store:
        assert [store.get_item(i)["status"] for i in ("G1", "G2")] == ["gold", "gold"]
        assert store.gold_labels() == {"G1": "bug", "G2": "billing"}
        assert [g["id"] for g in store.next_gold(5)] == ["G1", "G2"]  # both still to be asked
        assert store.count_labels() == 0  # a gold label is no decided label
        [change] = store.label_history("G1")
        assert (change["old_label"], change["new_label"], change["reason"]) == (
            "billing",
            "bug",
            "a slip",
        )


class ThreadNoting(TextClassifier):
    """The real classifier, noting the thread each prediction runs on."""

    threads: list[int]

    def predict_proba(self, texts):  # noqa: ANN001, ANN201
        self.threads.append(threading.get_ident())
        return super().predict_proba(texts)


async def test_a_gold_question_gets_the_models_guess_computed_off_the_event_loop(
    fake_slack: FakeSlack, tmp_path: Path
):
    with Store.open(tmp_path / "hitl.db") as store:
        gold_rows(store, [("g1", "please refund the double charge", "billing")])
    seed(tmp_path / "hitl.db", [Item("i1", "the app crashes on start")])
    settings = make_settings(fake_slack, tmp_path, gold_rate=1.0, max_open=1, threshold=0.999)
    classifier = ThreadNoting().fit(
        ["refund my money", "card charged twice", "app crashes", "screen is blank"],
        ["billing", "billing", "bug", "bug"],
    )
    classifier.threads = []
    async for bot in start_bot(fake_slack, settings):
        bot.rt.champion = Champion(version=1, classifier=classifier, n_train=4)
        assert await bot.dispatcher.fill() == 1
        assert bot.store.post_for_item("g1")["reason"] == "gold"
        [post] = bot.fake.calls_to("chat.postMessage")
        assert "Model's guess: *`billing`*" in json.dumps(post.params["blocks"])  # as any question
        assert classifier.threads and threading.get_ident() not in classifier.threads


def test_a_gold_label_corrected_reaches_the_next_retrain(tmp_path: Path):
    from tests.bot.test_cli_loop import labeled_file

    db = tmp_path / "hitl.db"
    assert run_cli("--db", str(db), "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    gold = tmp_path / "gold.csv"
    gold.write_text("id,text,label\nab0,refund my invoice,bug\n")  # a slip: ab0 is billing
    assert run_cli("--db", str(db), "import", "--gold", str(gold)).exit_code == 0
    assert run_cli("--db", str(db), "retrain").stdout.startswith("Retrain v1: promoted")
    gold.write_text("id,text,label\nab0,refund my invoice,billing\n")
    assert run_cli("--db", str(db), "import", "--gold", str(gold)).stdout.endswith(
        "1 stored item marked gold, 0 already gold, 0 rejected\n"
    )
    again = run_cli("--db", str(db), "retrain").stdout
    assert again.startswith("Retrain v2: "), again  # not "nothing new"
    with Store.open(db) as store:
        assert store.gold_labels() == {"ab0": "billing"}  # answers are scored against this
        assert [r for r in store.training_data() if r[0] == "ab0"] == []  # gold never trains


async def test_a_gold_answer_given_after_a_rename_is_scored_right(gold_bot: Bot):
    # The gold label billing is renamed payments; a click on payments is right, in
    # /hitl stats and in App Home alike (both said 0 of 1), and the gold label follows.
    bot = gold_bot
    await bot.dispatcher.fill()
    [message] = bot.posted()
    assert (await bot.command("labels rename billing payments", "U0ADMIN")).status == 200
    await bot.settled()
    [message] = bot.posted()  # redrawn with the new name
    assert (await bot.action(bot.button_payload(message, "U0ANA", "payments"))).status == 200
    await bot.settled()
    assert bot.store.gold_labels() == {"g1": "payments"}
    stats = await (await bot.command("stats", "U0ADMIN")).text()
    assert "<@U0ANA> 100% (1 of 1" in stats, stats
    assert (await bot.event(signing.app_home_opened_event("U0ANA"))).status == 200
    await bot.settled()
    home = json.dumps(bot.fake.home["U0ANA"], ensure_ascii=False)
    assert "*Your accuracy on gold questions:* 100% (1 of 1" in home
