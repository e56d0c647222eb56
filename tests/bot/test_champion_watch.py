"""A champion made by another process (`hitl retrain` or `hitl rollback` from the CLI) reaches a
running server: the champion watch asks the database every second, the first model's scoring
children start while it loads (not with the first request), and a server with no model loads
the champion the database names before it answers, so `/api/predict` and `/healthz` agree."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.config import Settings
from bot.learning import retrain
from bot.learning.jobs import CHAMPION_CHECK_SECONDS, ChampionHolder
from bot.learning.scoring import scorer_of
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot

TOKEN = "api-token-for-champion-watch-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
README = Path(__file__).resolve().parents[2] / "README.md"

BILLING = ("refund my invoice", "charged twice on my card", "card payment failed")
BUG = ("app crashes on start", "error 500 when saving", "page shows an error")
LABELED = [Item(f"b{n}", text, "billing") for n, text in enumerate(BILLING)] + [
    Item(f"g{n}", text, "bug") for n, text in enumerate(BUG)
]
WAITING = [Item("u1", "refund the invoice please"), Item("u2", "crash error on login")]


def bot_settings(fake_slack: FakeSlack, tmp_path: Path) -> Settings:
    seed(tmp_path / "hitl.db", LABELED + WAITING)
    return make_settings(fake_slack, tmp_path, labels=("billing", "bug"), api_token=TOKEN)


async def promote_elsewhere(settings: Settings) -> None:
    """What `hitl retrain` does in its own process: a first champion, through a connection and
    a registry of its own, and the waiting items scored with it."""
    with Store.open(settings.db) as store:
        registry = retrain.registry_for(settings)
        outcome = await retrain.retrain(
            store, settings, registry, champion=None, triggered_by="cli"
        )
    assert outcome.promoted and outcome.version == 1


async def predict(bot: Bot, body: dict) -> dict:
    response = await bot.http.post("/api/predict", json=body, headers=AUTH)
    assert response.status == 200
    return await response.json()


def test_the_champion_watch_asks_every_second_as_the_readme_says():
    assert CHAMPION_CHECK_SECONDS == 1.0
    readme = " ".join(README.read_text(encoding="utf-8").split())
    assert "asks the database every second which version is the champion" in readme
    assert "serves the new champion within 10 seconds" not in readme
    # and `hitl rollback --help` says what README says (it said "within 10 seconds")
    helped = CliRunner().invoke(cli, ["rollback", "--help"], terminal_width=200).output
    assert "notices the new champion within a second" in " ".join(helped.split()), helped


async def test_a_first_champion_from_the_cli_starts_the_scoring_children_as_it_loads(
    fake_slack: FakeSlack, tmp_path: Path
):
    settings = bot_settings(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings, background=True):  # as `hitl serve`
        scorer = scorer_of(bot.rt)
        workers = (scorer.worker, scorer.walk_worker)
        assert bot.rt.champion is None
        assert [worker._executor for worker in workers] == [None, None]  # no model: no child
        await promote_elsewhere(settings)
        watch = ChampionHolder.of(bot.rt).watch
        assert watch is not None and watch.every == CHAMPION_CHECK_SECONDS
        await watch.check_now()  # what happens on its own within a second
        assert bot.rt.champion.version == 1
        started = [worker._executor for worker in workers]
        assert [len(e._processes) if e else 0 for e in started] == [1, 1]  # warm, before a request
        answer = await predict(bot, {"text": "refund my card please"})
        assert (answer["model_version"], answer["model_label"]) == (1, "billing")
        assert scorer.worker._executor is started[0] and scorer.worker.calls == 1


async def test_a_server_with_no_model_answers_a_known_item_only_with_a_model_it_has_loaded(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The CLI's retrain scores the waiting items with v1. The server (no champion watch runs
    here) answered u1 from that stored v1 prediction while /healthz said it had no model."""
    settings = bot_settings(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings):
        await promote_elsewhere(settings)
        assert bot.store.get_item("u1")["model_version"] == 1  # scored by the CLI
        assert bot.rt.champion is None
        known = await predict(bot, {"id": "u1", "text": "refund the invoice please"})
        assert known["model_version"] == 1
        health = await (await bot.http.get("/healthz")).json()
        assert (health["champion"], health["answers"]) == (1, 1)
        new = await predict(bot, {"text": "the app crashes on start"})
        assert (new["model_version"], new["model_label"]) == (1, "bug")
