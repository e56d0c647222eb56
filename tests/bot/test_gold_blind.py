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


def reason_line(message: dict) -> str:
    found = re.search(r"Why this one: ([^\"]*)", json.dumps(message["blocks"], ensure_ascii=False))
    assert found, json.dumps(message["blocks"])[:400]
    return found[1]


def lines(bot: Bot) -> dict[str, str]:
    """Each question's reason line, by its item."""
    return {item_of(m): reason_line(m) for m in bot.posted()}


async def test_with_no_audit_share_gold_reads_as_the_uncertainty_picks_beside_it(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_AUDIT_RATE=0: no ordinary question reads "random check", so no gold one does."""
    world(tmp_path, n_gold=20, n_items=40)
    settings = make_settings(
        fake_slack, tmp_path, gold_rate=0.5, audit_rate=0.0, threshold=0.999, max_open=30,
        refresh_every=0,
    )  # fmt: skip
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


async def test_a_gold_question_the_model_is_sure_of_reads_as_an_audit(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_THRESHOLD=0.9: no uncertainty pick shows a guess at 90% or more, so a gold
    question whose guess is that sure reads "random check" (as an audit of it would); the
    others follow the rule at HITL_AUDIT_RATE=0.2."""
    world(tmp_path, n_gold=40, n_items=150)
    rate, threshold = 0.2, 0.9
    settings = make_settings(
        fake_slack, tmp_path, gold_rate=1.0, audit_rate=rate, threshold=threshold, max_open=40,
        refresh_every=0,
    )  # fmt: skip
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 40
        posts = {p["item_id"]: p for p in bot.store.db["posts"].rows}
        assert {p["reason"] for p in posts.values()} == {"gold"}
        sure = {i for i, p in posts.items() if p["confidence"] >= threshold}
        assert any(not expected_check(i, rate) for i in sure)  # the threshold decides these
        assert any(not expected_check(i, rate) for i in set(posts) - sure)  # and these read unsure
        want = {
            i: f"{CHECK if i in sure or expected_check(i, rate) else UNSURE} · model v1"
            for i in posts
        }
        assert lines(bot) == want
        above = 0
        for message in bot.posted():  # as shown: no "unsure" line over a guess above 90%
            shown = re.search(r"Model's guess: [^(]*\((\d+)%", json.dumps(message["blocks"]))
            assert shown and (int(shown[1]) <= 90 or reason_line(message).startswith(CHECK))
            above += int(shown[1]) > 90
        assert above > 0


async def test_during_the_warm_up_gold_reads_as_the_warm_up_picks(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_WARM_UP=1000 and a champion trained on 60 labels: every pick is a warm-up pick,
    and every gold question reads as one (it read "random check of the model")."""
    world(tmp_path, n_gold=20, n_items=40)
    settings = make_settings(
        fake_slack, tmp_path, gold_rate=0.5, audit_rate=0.3, warm_up=1000, threshold=0.999,
        max_open=30, refresh_every=0,
    )  # fmt: skip
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
    world(tmp_path, n_gold=20, n_items=40)
    settings = make_settings(
        fake_slack, tmp_path, gold_rate=0.5, audit_rate=0.0, threshold=0.999, max_open=30,
        refresh_every=0,
    )  # fmt: skip
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
