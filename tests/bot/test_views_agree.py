"""Two views of one fact agree: what the producer API says of an open question's item, and
which model it names, against `/api/predict` and `/healthz`."""

from __future__ import annotations

import json
from pathlib import Path

from bot.config import Settings
from bot.learning import retrain
from bot.learning.jobs import follow_champion
from bot.sandbox import FakeSlack
from bot.store import Store
from tests import signing
from tests.bot.harness import Item, has_buttons, make_settings, seed, seed_champion, start_bot
from tests.fake_slack import CHANNEL

TOKEN = "api-token-for-views-agree-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

BILLING = ("refund my invoice", "charged twice on my card", "card payment failed")
BUG = ("app crashes on start", "error 500 when saving", "page shows an error")
LABELED = [Item(f"b{n}", text, "billing") for n, text in enumerate(BILLING)] + [
    Item(f"g{n}", text, "bug") for n, text in enumerate(BUG)
]
ASKED = Item("u1", "refund the invoice please, it crashes")


async def cli_retrain(settings: Settings) -> retrain.Outcome:
    """`hitl retrain --force`, as its own process does it: a connection of its own."""
    with Store.open(settings.db) as store:
        return await retrain.retrain(
            store, settings, retrain.registry_for(settings), champion=None,
            triggered_by="cli", force=True,
        )  # fmt: skip


async def test_an_open_questions_item_is_given_with_the_serving_models_prediction(
    fake_slack: FakeSlack, tmp_path: Path
):
    """u1 is asked in Slack with v1; `hitl retrain --force` promotes v2, which the server
    loads (what its champion watch does within a second). GET /api/items/u1 gave v1's
    prediction, however many promotions later, while /healthz said v2 answers and
    /api/predict for u1 scored it with v2 (and stored that, so GET changed after it). The
    question in Slack keeps the guess it was asked with."""
    db = tmp_path / "hitl.db"
    seed(db, [*LABELED, ASKED])
    seed_champion(db, BILLING + BUG, ["billing"] * 3 + ["bug"] * 3)
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), api_token=TOKEN, max_open=1
    )
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 1
        await bot.settled()
        [asked] = bot.posted()
        assert (await cli_retrain(settings)).version == 2
        assert await follow_champion(bot.rt)
        health = await (await bot.http.get("/healthz")).json()
        assert (health["champion"], health["asks"], health["answers"]) == (2, 2, 2)

        got = await (await bot.http.get("/api/items/u1", headers=AUTH)).json()
        assert got["status"] == "needs_review" and got["queue_status"] == "posted"
        assert got["prediction"]["model_version"] == 2  # was 1
        response = await bot.http.post(
            "/api/predict", json={"id": ASKED.id, "text": ASKED.text}, headers=AUTH
        )
        predicted = await response.json()
        assert predicted["model_version"] == 2
        assert (predicted["model_label"], predicted["confidence"]) == (
            got["prediction"]["label"],
            got["prediction"]["confidence"],
        )
        await bot.settled()
        [shown] = bot.posted()
        assert shown["blocks"] == asked["blocks"]  # the guess it was asked with
        assert bot.store.post_for_item("u1")["model_version"] == 1


async def test_slack_accuracy_says_a_cli_champion_is_not_served_until_loaded(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Between `hitl retrain` from the CLI promoting v2 and the server loading it (its
    champion watch, within a second; longer for a large file), `/hitl accuracy` reported
    "*Model v2*" and, in the same reply, "v1 … it asks and answers", as if v1 were still the
    champion, while `hitl accuracy` said v2 and `/healthz` v1. Now it says why they differ,
    and once the server has loaded v2 the note is gone and every view names v2."""
    db = tmp_path / "hitl.db"
    seed(db, [*LABELED, ASKED])
    seed_champion(db, BILLING + BUG, ["billing"] * 3 + ["bug"] * 3)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), api_token=TOKEN)
    async for bot in start_bot(fake_slack, settings):
        assert (await cli_retrain(settings)).version == 2
        health = await (await bot.http.get("/healthz")).json()
        assert (health["champion"], health["answers"]) == (1, 1)  # not loaded yet
        said = await (await bot.command("accuracy", "U0ANA")).text()
        assert said.startswith("*Model v2*")
        assert (
            "*Asking and answering now:* v1, trained on 6 labels; it asks and answers; v2 became"
            " the champion outside this server (`hitl retrain` or `hitl rollback`) and asks and"
            " answers once this server has loaded it (within seconds)"
        ) in said, said
        assert await follow_champion(bot.rt)  # what the champion watch does within a second
        health = await (await bot.http.get("/healthz")).json()
        assert (health["champion"], health["answers"]) == (2, 2)
        said = await (await bot.command("accuracy", "U0ANA")).text()
        assert said.startswith("*Model v2*")
        assert said.endswith(
            "*Asking and answering now:* v2, trained on 6 labels; it asks and answers"
        )


async def test_app_home_counts_the_questions_posted_as_hitl_stats_does(
    fake_slack: FakeSlack, tmp_path: Path
):
    """With HITL_VOTES=3, three different answers are a split: it waits in /hitl review, its
    buttons still take votes, and the next question is posted. The channel then shows two
    questions that take answers and `/hitl stats` says "2 posted", but App Home said "1 posted
    and open": it counted the questions holding a HITL_MAX_OPEN place (`/hitl queue`'s "1 of 1
    open"), which README gives `/hitl queue` and App Home never explained."""
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"text number {n}") for n in range(6)])
    settings = make_settings(
        fake_slack, tmp_path, votes=3, max_open=1, labels=("billing", "bug", "account")
    )
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 1
        await bot.settled()
        for user, label in (("U0ANA", "billing"), ("U0RAJ", "bug"), ("U0MEI", "account")):
            response = await bot.action(bot.button_payload(bot.posted()[0], user, label))
            assert response.status == 200
            await bot.settled()
        assert await bot.dispatcher.fill() == 1  # the split holds no place
        await bot.settled()
        assert [has_buttons(message) for message in bot.posted()] == [True, True]
        stats = (await (await bot.command("stats", "U0ANA")).json())["text"]
        assert "*Items:* 4 waiting · 2 posted · 0 resolved" in stats
        queue = await (await bot.command("queue", "U0ANA")).text()
        assert f"<#{CHANNEL}>: 1 of 1 open" in queue  # the places, as README says
        assert (await bot.event(signing.app_home_opened_event("U0ANA"))).status == 200
        await bot.fake.next_call("views.publish")
        home = json.dumps(bot.fake.home["U0ANA"], ensure_ascii=False)
        assert "*Queue:* 4 waiting · 2 posted and open" in home  # was 1
