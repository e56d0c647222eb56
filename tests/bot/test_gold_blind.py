"""A gold question's message does not tell it from the questions asked beside it. Its reason
line is drawn as theirs are: with a model, "random check of the model" for the share
HITL_AUDIT_RATE of gold items (fixed per item: sha256 of "hitl:gold-reason:<id>", its first 8
bytes over 2**64, below the rate) and "the model is unsure" for the others; while the model is
young (HITL_WARM_UP) the warm-up pick's line. Its guess is the model's that scores the queue, so
after a refresh it shows "model rN" as they do. Every line is the same on each redraw and after
a restart. Before, every gold question read "random check of the model", a line only the
audit share shares (with HITL_AUDIT_RATE=0, none), and the champion's "model vN"."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from string import ascii_lowercase

import pytest

from bot.learning.scoring import predict_texts
from bot.runtime import Champion
from bot.sandbox import FakeSlack
from bot.store import Store
from model import TextClassifier
from tests.bot.harness import Bot, Item, item_of, make_settings, seed, seed_champion, start_bot
from tests.bot.test_slack_bot import buttons

UNSURE = "the model is unsure"
CHECK = "random check of the model"
YOUNG = "random pick while the model is young"
WORDS = ["refund", "invoice", "crash", "blank", "login", "password"]
TRAIN_LABELS = {"refund": "billing", "invoice": "billing", "crash": "bug", "blank": "bug"}
TRAIN_LABELS |= {"login": "account", "password": "account"}


def expected_check(item_id: str, rate: float) -> bool:
    """The rule, computed here independently: whether a gold item reads "random check"."""
    digest = hashlib.sha256(f"hitl:gold-reason:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def world(tmp_path: Path, n_gold: int, n_items: int) -> None:
    """A champion (v1, trained on 60 labels) beside the database, ``n_items`` tickets it is
    unsure of (two labels' words each) and ``n_gold`` gold items g00, g01, ..."""
    rng = random.Random(5)
    db = tmp_path / "hitl.db"
    texts = [f"{w} {rng.choice(WORDS)} {n}" for n in range(10) for w in WORDS]
    seed_champion(db, texts, [TRAIN_LABELS[t.split()[0]] for t in texts])
    tail = ["".join(rng.choices(ascii_lowercase, k=16)) for _ in range(n_items)]
    pairs = [f"{WORDS[n % 6]} {WORDS[(n + 2) % 6]}" for n in range(n_items)]
    seed(db, [Item(f"t{n:02d}", f"{pairs[n]} ticket {tail[n]}") for n in range(n_items)])
    with Store.open(db) as store:
        store.add_gold(
            [
                Item(f"g{n:02d}", f"{WORDS[n % 6]} {WORDS[(n + 3) % 6]} checked {n}", "billing")
                for n in range(n_gold)
            ]
        )


def gold_world(fake_slack: FakeSlack, tmp_path: Path, n_gold: int, n_items: int, **changes):
    """``world`` and the settings these tests share: half the posts gold, no audit share, a
    threshold no guess reaches (every pick an uncertainty pick), no refresh; ``changes`` on
    top."""
    world(tmp_path, n_gold=n_gold, n_items=n_items)
    shared = {"gold_rate": 0.5, "audit_rate": 0.0, "threshold": 0.999, "refresh_every": 0}
    return make_settings(fake_slack, tmp_path, **{**shared, **changes})


def reason_line(message: dict) -> str:
    found = re.search(r"Why this one: ([^\"]*)", json.dumps(message["blocks"], ensure_ascii=False))
    assert found, json.dumps(message["blocks"])[:400]
    return found[1]


def lines(bot: Bot) -> dict[str, str]:
    """Each question's reason line, by its item."""
    return {item_of(m): reason_line(m) for m in bot.posted()}


def sure_of(bot: Bot, item_ids: list[str], threshold: float) -> set[str]:
    """The items whose guess by the model that asks is at or above ``threshold``."""
    texts = [bot.store.get_item(i)["text"] for i in item_ids]
    guessed = predict_texts(bot.rt.model.classifier, texts, bot.rt.settings.strategy)
    return {i for i, (_, p, _, _) in zip(item_ids, guessed, strict=True) if p >= threshold}


def shape(message: dict) -> tuple[int, str]:
    """What a question shows of the model: its guess buttons and its "Model's guess" line."""
    found = re.search(r"Model's guess: [^\"]*", json.dumps(message["blocks"], ensure_ascii=False))
    assert found, json.dumps(message["blocks"])[:400]
    return len(buttons(message)), found[0]


def guess_buttons(blocks: list[dict]) -> int:
    """The guess buttons among ``blocks`` (a message's or a modal's)."""
    return sum(
        e.get("type") == "button" and ".label." in e.get("action_id", "")
        for b in blocks
        for e in b.get("elements", [])
    )


async def test_with_no_audit_share_gold_reads_as_the_uncertainty_picks_beside_it(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_AUDIT_RATE=0: no ordinary question reads "random check", so no gold one does."""
    settings = gold_world(fake_slack, tmp_path, n_gold=20, n_items=40, max_open=30)
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 30
        shown = lines(bot)
        gold = {line for item, line in shown.items() if item.startswith("g")}
        others = {line for item, line in shown.items() if item.startswith("t")}
        n_gold = sum(item.startswith("g") for item in shown)
        assert 0 < n_gold < 30  # both kinds were asked (the harness's draws are fixed)
        assert {p["reason"] for p in bot.store.db["posts"].rows} == {"gold", "uncertain"}
        assert others == {f"{UNSURE} · model v1"}
        assert gold == others  # was "random check of the model · model v1" on every gold one
        # the rest of the message is drawn alike: as many guess buttons, "then" guesses shown
        shapes: dict[str, set[tuple[int, int]]] = {"g": set(), "t": set()}
        for m in bot.posted():
            shapes[item_of(m)[0]].add((len(buttons(m)), json.dumps(m["blocks"]).count("%")))
        assert shapes["g"] == shapes["t"]


async def test_the_share_of_gold_reading_random_check_is_the_audit_rate(
    fake_slack: FakeSlack, tmp_path: Path
):
    """60 gold questions at HITL_AUDIT_RATE=0.3: exactly those the rule picks read "random
    check" (19 of 60 for these ids), the others "the model is unsure"."""
    world(tmp_path, n_gold=60, n_items=70)
    rate = 0.3
    settings = make_settings(
        fake_slack, tmp_path, gold_rate=1.0, audit_rate=rate, threshold=0.999, max_open=60,
        refresh_every=0,
    )  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 60
        shown = lines(bot)
        assert sorted(shown) == [f"g{n:02d}" for n in range(60)]
        assert {p["reason"] for p in bot.store.db["posts"].rows} == {"gold"}  # scored as gold
        want = {i: f"{CHECK if expected_check(i, rate) else UNSURE} · model v1" for i in shown}
        assert shown == want
        checks = sum(line.startswith(CHECK) for line in shown.values())
        assert checks == sum(expected_check(f"g{n:02d}", rate) for n in range(60)) == 19


async def test_a_gold_question_the_model_is_sure_of_is_asked_only_in_the_audit_share(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_THRESHOLD=0.9: no uncertainty pick shows a guess at 90% or more, so a gold item
    whose guess is that sure is asked only when it is in the audit share (HITL_AUDIT_RATE=0.2,
    the rule's draw), reading "random check"; the others it is sure of are passed over and
    wait (it read "random check" for every sure one: 1fdc0ef)."""
    world(tmp_path, n_gold=40, n_items=150)
    rate, threshold = 0.2, 0.9
    settings = make_settings(
        fake_slack, tmp_path, gold_rate=1.0, audit_rate=rate, threshold=threshold, max_open=40,
        refresh_every=0,
    )  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 40
        posts = {p["item_id"]: p for p in bot.store.db["posts"].rows}
        gold = {i: p for i, p in posts.items() if p["reason"] == "gold"}
        sure = {i for i, p in gold.items() if p["confidence"] >= threshold}
        assert sure and all(expected_check(i, rate) for i in sure)  # asked as audits only
        assert any(not expected_check(i, rate) for i in set(gold) - sure)  # these read unsure
        passed = sure_of(bot, [f"g{n:02d}" for n in range(40)], threshold) - set(gold)
        assert passed and not any(expected_check(i, rate) for i in passed)
        assert {bot.store.get_item(i)["status"] for i in passed} == {"gold"}  # still waiting
        shown = lines(bot)
        want = {i: f"{CHECK if expected_check(i, rate) else UNSURE} · model v1" for i in gold}
        assert {i: shown[i] for i in gold} == want
        for message in bot.posted():  # as shown: no "unsure" line over a guess of 90% or more
            found = re.search(r"Model's guess: [^(]*\((\d+)%", json.dumps(message["blocks"]))
            assert found and (int(found[1]) <= 90 or reason_line(message).startswith(CHECK))


async def test_during_the_warm_up_gold_reads_as_the_warm_up_picks(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_WARM_UP=1000 and a champion trained on 60 labels: every pick is a warm-up pick,
    and every gold question reads as one (it read "random check of the model")."""
    settings = gold_world(
        fake_slack, tmp_path, n_gold=20, n_items=40, audit_rate=0.3, warm_up=1000, max_open=30
    )
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 30
        shown = lines(bot)
        assert {p["reason"] for p in bot.store.db["posts"].rows} == {"gold", "warm_up"}
        gold = {line for item, line in shown.items() if item.startswith("g")}
        others = {line for item, line in shown.items() if item.startswith("t")}
        assert others == {f"{YOUNG} · model v1"}
        assert gold == others


async def test_after_a_refresh_gold_shows_the_working_model_as_the_others_do(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A working model (a refresh on 30 labels, "model r30") scores the queue: the gold
    questions show its version and guess, not the champion's "model v1"."""
    settings = gold_world(fake_slack, tmp_path, n_gold=20, n_items=40, max_open=30)
    async for bot in start_bot(fake_slack, settings):
        texts = [f"{w} {w} {n}" for n in range(5) for w in WORDS]
        refit = TextClassifier().fit(texts, [TRAIN_LABELS[t.split()[0]] for t in texts])
        bot.rt.working = Champion(version=-30, classifier=refit, n_train=30, n_read=30)
        assert await bot.dispatcher.fill() == 30
        shown = lines(bot)
        assert 0 < sum(item.startswith("g") for item in shown) < 30
        assert set(shown.values()) == {f"{UNSURE} · model r30"}
        assert {p["model_version"] for p in bot.store.db["posts"].rows} == {-30}


async def test_a_gold_question_keeps_its_line_through_redraws_and_a_restart(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_VOTES=3: a click redraws each gold question; then a new server on the same
    database redraws them again after another click. Each line stays the rule's."""
    world(tmp_path, n_gold=12, n_items=20)
    rate = 0.5
    settings = make_settings(
        fake_slack, tmp_path, gold_rate=1.0, audit_rate=rate, threshold=0.999, max_open=12,
        refresh_every=0, votes=3,
    )  # fmt: skip
    want = {
        f"g{n:02d}": f"{CHECK if expected_check(f'g{n:02d}', rate) else UNSURE} · model v1"
        for n in range(12)
    }
    assert {CHECK, UNSURE} == {line.split(" · ")[0] for line in want.values()}
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 12
        assert lines(bot) == want
        for message in bot.posted():
            payload = bot.select_payload(message, "U0ANA", "billing")
            assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert len(fake_slack.calls_to("chat.update")) >= 12  # each was redrawn
        assert lines(bot) == want
    async for bot in start_bot(fake_slack, settings):  # a restart, on the same database
        updates = len(fake_slack.calls_to("chat.update"))
        for message in bot.posted():
            payload = bot.select_payload(message, "U0RAJ", "bug")
            assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert len(fake_slack.calls_to("chat.update")) >= updates + 12
        assert lines(bot) == want


async def test_a_gold_question_keeps_its_guesses_on_redraws_and_after_a_restart(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_VOTES=3: each answer redraws its question, and a new server on the same database
    redraws them again. A gold question keeps the guesses it was posted with (3 buttons and
    "then ..." guesses, as every ordinary question); it was down to its top guess alone (1
    button, no "then"): its ranking was not stored with its item. Storing it changes nothing
    else of the gold items: no prediction of theirs, gold counts and statuses as before."""
    settings = gold_world(fake_slack, tmp_path, n_gold=8, n_items=16, max_open=20, votes=3)
    async for bot in start_bot(fake_slack, settings):
        posted = await bot.dispatcher.fill()
        first = {item_of(m): shape(m) for m in bot.posted()}
        gold = sorted(i for i in first if i.startswith("g"))
        assert len(first) == posted and 0 < len(gold) < posted
        assert {n for n, _ in first.values()} == {3}  # the same shape for both kinds
        assert all(" · then " in line for _, line in first.values())
        for i in gold:  # the ranking is the item's; no prediction, no other column moved
            item = bot.store.get_item(i)
            assert [g[0] for g in item["ranked"]][:1] == [first[i][1].split("*")[1].strip("`")]
            assert (item["status"], item["confidence"], item["model_version"]) == (
                "posted", None, None
            )  # fmt: skip
            assert bot.store.is_gold(i)
        for message in bot.posted():
            payload = bot.select_payload(message, "U0ANA", "billing")
            assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert len(fake_slack.calls_to("chat.update")) >= posted  # each was redrawn
        assert {item_of(m): shape(m) for m in bot.posted()} == first
    async for bot in start_bot(fake_slack, settings):  # a restart, on the same database
        for message in bot.posted():
            payload = bot.select_payload(message, "U0RAJ", "bug")
            assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert {item_of(m): shape(m) for m in bot.posted()} == first


async def test_the_labeling_modal_shows_a_gold_question_as_its_message(
    fake_slack: FakeSlack, tmp_path: Path
):
    """`/hitl label` draws each open question in a modal: a gold question shows there the
    guess buttons its message shows, 3, as an ordinary question does (it showed 1)."""
    settings = gold_world(fake_slack, tmp_path, n_gold=6, n_items=10, max_open=12, votes=3)
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() > 0
        counts: dict[str, tuple[int, int]] = {}
        for message in bot.posted():
            item = item_of(message)
            assert (await bot.command("label", "U0NEW", trigger_id=f"t.{item}")).status == 200
            view = (await bot.fake.next_call("views.open")).reply["view"]
            assert json.loads(view["private_metadata"])["item"] == item
            counts[item] = (guess_buttons(message["blocks"]), guess_buttons(view["blocks"]))
            # answered in the channel, so that the next /hitl label shows the next question
            payload = bot.select_payload(message, "U0NEW", "billing")
            assert (await bot.action(payload)).status == 200
            await bot.settled()
        assert any(i.startswith("g") for i in counts) and any(i.startswith("t") for i in counts)
        assert set(counts.values()) == {(3, 3)}


async def test_with_no_audit_share_no_gold_question_the_model_is_sure_of_is_asked(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_AUDIT_RATE=0 at the default HITL_THRESHOLD (0.8): no ordinary question reads
    "random check" or shows a guess at 80% or more, and neither does a gold one. The gold items
    the model is sure of are passed over and wait, counted as waiting; a second round asks
    none of them either (6 of the 7 gold questions read "random check" with a sure guess)."""
    world(tmp_path, n_gold=20, n_items=40)
    settings = make_settings(
        fake_slack, tmp_path, gold_rate=0.5, audit_rate=0.0, max_open=30, refresh_every=0,
    )  # fmt: skip
    assert settings.threshold == 0.8
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() > 0
        shown = lines(bot)
        gold = sorted(i for i in shown if i.startswith("g"))
        assert gold
        assert set(shown.values()) == {f"{UNSURE} · model v1"}
        posts = list(bot.store.db["posts"].rows)
        assert all(p["confidence"] < 0.8 for p in posts)
        assert {p["reason"] for p in posts} == {"gold", "uncertain"}
        passed = sure_of(bot, [f"g{n:02d}" for n in range(20)], 0.8)
        assert passed and not passed & set(gold)
        assert {bot.store.get_item(i)["status"] for i in passed} == {"gold"}
        assert bot.store.count_items()["gold"] == 20 - len(gold)  # they still wait
        for message in bot.posted():  # answered: room for a second round
            for user in ("U0ANA", "U0RAJ"):
                payload = bot.select_payload(message, user, "billing")
                assert (await bot.action(payload)).status == 200
        await bot.settled()
        await bot.dispatcher.fill()
        asked = {p["item_id"] for p in bot.store.db["posts"].rows}
        assert not passed & asked
        assert {bot.store.get_item(i)["status"] for i in passed} == {"gold"}


def young_world(fake_slack: FakeSlack, tmp_path: Path):
    """20 gold and 40 ordinary items, HITL_WARM_UP=200, half the posts gold, 30 open."""
    return gold_world(
        fake_slack, tmp_path, n_gold=20, n_items=40, warm_up=200, max_open=30, votes=3
    )


def young_working_model() -> Champion:
    """A working model that read 210 labels and trained on 195 (15 audit answers held out)."""
    texts = [f"{w} {w} {n}" for n in range(5) for w in WORDS]
    refit = TextClassifier().fit(texts, [TRAIN_LABELS[t.split()[0]] for t in texts])
    return Champion(version=-210, classifier=refit, n_train=195, n_read=210)


async def test_the_warm_up_line_follows_the_working_models_training_count(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A working model that read 210 labels and trained on 195 (15 audit answers held out to
    gate it: version -210, n_train 195) with HITL_WARM_UP=200: every pick is a warm-up pick
    (``scoring.choose`` reads n_train), and every gold question reads as one, on its message
    and on its redraws (it read "the model is unsure": judged by the 210 labels read)."""
    settings = young_world(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings):
        bot.rt.working = young_working_model()
        assert await bot.dispatcher.fill() == 30
        shown = lines(bot)
        assert {p["reason"] for p in bot.store.db["posts"].rows} == {"gold", "warm_up"}
        assert 0 < sum(item.startswith("g") for item in shown) < 30
        assert set(shown.values()) == {f"{YOUNG} · model r210"}
        for message in bot.posted():
            payload = bot.select_payload(message, "U0ANA", "billing")
            assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert len(fake_slack.calls_to("chat.update")) >= 30  # each was redrawn
        assert lines(bot) == shown


def test_storing_a_gold_questions_ranking_changes_nothing_else(memory_store: Store):
    """The ranking a gold question is posted with is stored as its item's ``ranked`` (with the
    post attempt) and nothing else: the item still waits as gold (a refused post leaves it
    waiting), no prediction (label, confidence, version), no scoring walk reads it, the counts
    of items and of waiting ones are as before; an ordinary item's ranking is the scorer's."""
    store = memory_store
    store.add_gold([Item("g1", "refund please", "billing"), Item("g2", "login fails", "account")])
    store.add_items([Item("t1", "crash on start")], "import")
    store.set_predictions(
        [("t1", 1, "bug", 0.5, [["bug", 0.5], ["billing", 0.3]], 0.5)], 0.9, "margin"
    )
    counts, waiting = store.count_items(), store.waiting_count()
    ranked = [["billing", 0.6], ["account", 0.3], ["bug", 0.1]]
    assert store.begin_post_attempt("g1", "C1", "gold", 1, "billing", 0.6, gold_ranked=ranked)
    assert store.begin_post_attempt("t1", "C1", "uncertain", 1, "bug", 0.5, gold_ranked=ranked)
    g1, t1 = store.get_item("g1"), store.get_item("t1")
    assert g1["ranked"] == ranked
    assert (g1["status"], g1["model_version"], g1["predicted_label"], g1["confidence"]) == (
        "gold", None, None, None
    )  # fmt: skip
    assert t1["ranked"] == [["bug", 0.5], ["billing", 0.3]]  # the scorer's, untouched
    assert (store.count_items(), store.waiting_count()) == (counts, waiting)
    assert store.unscored_chunk(1, "margin", 0, 100)[0] == []  # no walk scores a gold item
    store.end_post_attempt("g1")  # Slack refused it: it waits as before
    assert [g["id"] for g in store.next_gold(5)] == ["g1", "g2"]
    assert (store.count_items(), store.waiting_count()) == (counts, waiting)


SURE_TEXT = "refund refund invoice refund please"  # the model guesses billing at 0.99


def marked_ticket(tmp_path: Path) -> str:
    """A ticket (T-0) that waited in the queue, scored by an earlier model unsure of it
    (billing 0.55, v1), then marked gold (``hitl import --gold`` of an export): the model that
    asks now is sure of it. Beside it, tickets t00.. that the model is unsure of."""
    world(tmp_path, n_gold=0, n_items=8)
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_items([Item("T-0", SURE_TEXT)], "api")
        store.set_predictions(
            [("T-0", 1, "billing", 0.55, [["billing", 0.55], ["bug", 0.45]], 0.9)], 0.8, "margin"
        )
        store.add_gold([Item("T-0", SURE_TEXT, "billing")])
        assert store.get_item("T-0")["status"] == "gold"
    return "T-0"


@pytest.mark.parametrize("gold_rate", [0.0, 1.0])
async def test_an_item_marked_gold_while_it_waited_is_asked_however_sure_the_model_is(
    fake_slack: FakeSlack, tmp_path: Path, gold_rate: float
):
    """README: an item marked gold while it waited is still asked, once (with HITL_GOLD_RATE=0
    in the pick's place). The model asking is sure of it (0.99, HITL_THRESHOLD 0.8, no audit
    share): it is asked all the same, its line "random check" (the only line true of a sure
    guess), and decided by the answers. It was passed over for good: status gold, never
    asked, never scored nor left to the model (the producer API said needs_review forever)."""
    item = marked_ticket(tmp_path)
    settings = make_settings(
        fake_slack, tmp_path, gold_rate=gold_rate, audit_rate=0.0, threshold=0.8, max_open=3,
        refresh_every=0, votes=2,
    )  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        assert sure_of(bot, [item], 0.95) == {item}
        assert await bot.dispatcher.fill() > 0
        shown = lines(bot)
        assert shown[item] == f"{CHECK} · model v1"
        assert {line for i, line in shown.items() if i != item} <= {f"{UNSURE} · model v1"}
        post = bot.store.post_for_item(item)
        assert (post["reason"], post["confidence"] >= 0.95) == ("gold", True)
        for user in ("U0ANA", "U0RAJ"):
            [message] = [m for m in bot.posted() if item_of(m) == item]
            payload = bot.select_payload(message, user, "billing")
            assert (await bot.action(payload)).status == 200
            await bot.settled()
            if user == "U0ANA":  # redrawn with one vote of two: the same line
                assert lines(bot)[item] == f"{CHECK} · model v1"
        assert bot.store.get_item(item)["status"] == "resolved"


async def test_gold_the_model_is_unsure_of_is_asked_behind_any_number_it_is_sure_of(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """1,010 gold items the model is sure of (0.98 or more) come first, then 40 it is unsure
    of; HITL_GOLD_RATE=1, no audit share. The sure ones are passed over, and the draws go on
    past them (``GoldScan``): the unsure ones are asked. Each gold text is guessed once under
    the one model (a passed-over item is read past, not guessed again), and no draw guesses
    more than GOLD_DEPTH texts. Before, each draw looked at the same first 1,000 (GOLD_DEPTH),
    guessing them all again, and no gold question was ever asked."""
    from bot.learning import scoring
    from bot.slack import dispatch

    world(tmp_path, n_gold=0, n_items=40)
    sure = [Item(f"gs{n:04d}", f"refund refund invoice refund {n}", "billing") for n in range(1010)]
    unsure = [Item(f"gu{n:03d}", f"refund crash login blank {n}", "billing") for n in range(40)]
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_gold(sure + unsure)
    guessed: list[list[str]] = []

    def counted(classifier, texts, strategy):  # type: ignore[no-untyped-def]
        guessed.append(list(texts))
        return predict_texts(classifier, texts, strategy)

    # the dispatcher's gold draw guesses through scoring.guesses_in_force
    monkeypatch.setattr(scoring, "predict_texts", counted)
    settings = make_settings(
        fake_slack, tmp_path, gold_rate=1.0, audit_rate=0.0, threshold=0.8, max_open=13,
        refresh_every=0,
    )  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        assert sure_of(bot, [i.id for i in sure], 0.9) == {i.id for i in sure}
        assert not sure_of(bot, [i.id for i in unsure], 0.8)
        assert await bot.dispatcher.fill() == 13
        asked = [item_of(m) for m in bot.posted()]
        gold = [i for i in asked if i.startswith("g")]
        assert len(gold) == 12 and all(i.startswith("gu") for i in gold)
        assert {lines(bot)[i] for i in gold} == {f"{UNSURE} · model v1"}
        assert {bot.store.get_item(i.id)["status"] for i in sure} == {"gold"}  # they wait
        assert max(len(texts) for texts in guessed) <= dispatch.GOLD_DEPTH
        times = [sum(t == i.text for texts in guessed for t in texts) for i in sure]
        assert max(times) == 1  # guessed 12 or 13 times each


async def test_a_working_models_warm_up_line_on_gold_survives_a_restart(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A working model that read 210 labels and trained on 195 (HITL_WARM_UP=200) asks warm-up
    picks, gold questions reading as them. A restart forgets the model (it lives in memory);
    each question redrawn then (a click) keeps its line, gold ones as the others: the
    model's warm-up is read from the questions it posted beside them (``posts.reason``).
    Before, only the gold ones changed to "the model is unsure": judged by the 210 read."""
    settings = young_world(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings):
        bot.rt.working = young_working_model()
        assert await bot.dispatcher.fill() == 30
        shown = lines(bot)
        assert 0 < sum(item.startswith("g") for item in shown) < 30
        assert set(shown.values()) == {f"{YOUNG} · model r210"}
    async for bot in start_bot(fake_slack, settings):  # a restart, on the same database
        updates = len(fake_slack.calls_to("chat.update"))
        for message in bot.posted():
            payload = bot.select_payload(message, "U0ANA", "billing")
            assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert len(fake_slack.calls_to("chat.update")) >= updates + 30  # each was redrawn
        assert lines(bot) == shown


async def test_a_marked_items_gold_question_changes_nothing_the_producer_api_says(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A producer's ticket scored by the champion (v1), then marked gold while it waited, is
    asked as a gold question with the working model's guess (r30). GET /api/items/{id} still
    reports the scorer's prediction as it was: label, confidence, ranking and model version
    together. Before, the gold question's ranking was written over the item's, and the API
    said the working model's label and confidence beside "model_version": 1."""
    from tests.bot.test_api import AUTH, TOKEN, post_json

    world(tmp_path, n_gold=0, n_items=4)
    settings = make_settings(
        fake_slack, tmp_path, api_token=TOKEN, gold_rate=1.0, audit_rate=0.0, threshold=0.999,
        max_open=5, refresh_every=0,
    )  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        text = "refund crash login blank invoice"
        body = {"items": [{"text": text, "id": "T-1"}]}
        assert (await post_json(bot, "/api/items", body)).status < 300
        before = await (await bot.http.get("/api/items/T-1", headers=AUTH)).json()
        assert before["prediction"]["model_version"] == 1
        bot.store.add_gold([Item("T-1", text, "billing")])  # `hitl import --gold` of an export
        texts = [f"{w} {w} {n}" for n in range(5) for w in WORDS]
        refit = TextClassifier().fit(texts, [TRAIN_LABELS[t.split()[0]] for t in texts])
        bot.rt.working = Champion(version=-30, classifier=refit, n_train=30, n_read=30)
        assert await bot.dispatcher.fill() > 0
        post = bot.store.post_for_item("T-1")
        assert (post["reason"], post["model_version"]) == ("gold", -30)
        ranked = before["prediction"]["ranked"]
        assert (post["predicted_label"], post["confidence"]) != (
            ranked[0]["label"], ranked[0]["probability"]
        )  # fmt: skip
        after = await (await bot.http.get("/api/items/T-1", headers=AUTH)).json()
        assert after["prediction"] == before["prediction"]


async def test_what_the_gold_draws_remember_stays_bounded_and_gold_is_still_asked(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """review3b, finding 2: ``GoldScan.judged`` (the gold items a draw guessed and did not
    ask) only grew, about 100 B per gold item, asked, decided and deleted ones too, for as long
    as the model stayed. It holds GOLD_JUDGED items at most (lowered here to 150, under the
    400 gold items the model is sure of): past it, it is emptied and the draws go on from
    their cursors, so the gold items the model is unsure of, behind the 400, are all asked.
    Before, it held the 400."""
    from bot.slack import dispatch

    monkeypatch.setattr(dispatch, "GOLD_JUDGED", 150, raising=False)
    world(tmp_path, n_gold=0, n_items=40)
    sure = [Item(f"gs{n:04d}", f"refund refund invoice refund {n}", "billing") for n in range(400)]
    unsure = [Item(f"gu{n:03d}", f"refund crash login blank {n}", "billing") for n in range(12)]
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_gold(sure + unsure)
    settings = make_settings(
        fake_slack, tmp_path, gold_rate=1.0, audit_rate=0.0, threshold=0.8, max_open=1,
        votes=1, refresh_every=0,
    )  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        assert sure_of(bot, [i.id for i in sure], 0.9) == {i.id for i in sure}
        assert not sure_of(bot, [i.id for i in unsure], 0.8)
        asked: list[str] = []
        for _ in range(14):  # one question at a time, answered: a draw each
            assert await bot.dispatcher.fill() == 1
            await bot.settled()
            judged = bot.dispatcher._gold.judged
            assert 0 < len(judged) <= 150
            assert set(judged) <= {i.id for i in sure}  # none asked
            [question] = [m for m in bot.posted() if item_of(m) not in asked]
            asked.append(item_of(question))
            payload = bot.button_payload(question, "U0ANA", bot.first_label(question))
            assert (await bot.action(payload)).ok
            await bot.settled()
        assert sorted(i for i in asked if i.startswith("g")) == [i.id for i in unsure]
        assert {bot.store.get_item(i.id)["status"] for i in sure} == {"gold"}  # they wait
