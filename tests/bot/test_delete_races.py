"""A deletion (`hitl delete`, ``DELETE /api/items/{id}``) that comes while something else is
under way stays a deletion: a producer re-sending the ticket, an import, a retrain. Each race is
played in order by calling the real functions: the deletion lands between the other's look at
the deletions and its write."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.api.intake import Intake
from bot.api.routes import ApiItem
from bot.cli import cli
from bot.eventloop import FastLaneEventLoop
from bot.learning import retrain, stopping
from bot.sandbox import FakeSlack
from bot.store import Store
from model import ModelRegistry
from tests.bot.harness import Item, remembered_curve
from tests.bot.test_api import AUTH, start_api
from tests.bot.test_gate_gold import swapped_batch

# each retrain's learning curve remembered by its arguments (tests/bot/conftest.py): the
# retrains below fit the same labels more than once (v1's; v1's and a batch's), and no test
# here reads a curve's value
pytestmark = pytest.mark.usefixtures("remembered_curves")

CARD = "refund please, my card is 4111 1111 1111 1234"
WORD = "zebracornflake"  # in the deleted customer's tickets only


def api_item(item_id: str, text: str = CARD) -> ApiItem:
    return ApiItem(id=item_id, text=text, meta={}, callback_url=None)


# -- the producer API --


def test_the_store_does_not_take_back_an_item_deleted_after_the_callers_look(tmp_path: Path):
    with Store.open(tmp_path / "hitl.db") as store:
        assert store.add_api_items([api_item("X-1"), api_item("X-2", "other")]) == ["X-1", "X-2"]
        store.delete_items(["X-1"], user_id="api", reason="erasure")
        # the request looked before the delete; its write comes after
        assert store.add_api_items([api_item("X-1"), api_item("X-3", "new")]) == ["X-3"]
        assert store.get_item("X-1") is None
        assert store.deleted_item("X-1") is not None


@pytest.fixture
def delete_around_the_intake(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Make ``Intake.add`` delete ``plan["id"]`` before (``plan["when"] == "before"``) or after
    its write: a ``DELETE`` the event loop ran while ``/api/predict`` awaited the intake."""
    plan: dict[str, Any] = {}
    add = Intake.add

    async def add_with_a_delete(self: Intake, items: Any) -> set[str]:
        store = self.store()
        if plan.get("when") == "before":
            store.delete_items([plan["id"]], user_id="api", reason="erasure")
        created = await add(self, items)
        if plan.get("when") == "after":
            store.delete_items([plan["id"]], user_id="api", reason="erasure")
        return created

    monkeypatch.setattr(Intake, "add", add_with_a_delete)
    yield plan


@pytest.mark.parametrize("when", ["before", "after"])
async def test_predict_of_an_item_a_delete_erases_meanwhile_is_410_and_stores_nothing(
    fake_slack: FakeSlack, tmp_path: Path, delete_around_the_intake: dict[str, Any], when: str
):
    async for api in start_api(fake_slack, tmp_path):
        sent = await api.http.post(
            "/api/items", json={"items": [{"id": "X-7", "text": CARD}]}, headers=AUTH
        )
        assert sent.status == 200
        delete_around_the_intake.update(id="X-7", when=when)
        resent = await api.http.post("/api/predict", json={"id": "X-7", "text": CARD}, headers=AUTH)
        said = await resent.json()
        assert (resent.status, said.get("field")) == (410, "id"), said
        assert "was deleted" in said["error"] and "Traceback" not in json.dumps(said)
        assert api.store.get_item("X-7") is None
        assert api.store.deleted_item("X-7") is not None
        gone = await api.http.get("/api/items/X-7", headers=AUTH)
        assert gone.status == 410


async def test_items_deleted_by_another_process_between_the_check_and_the_insert_are_rejected(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``POST /api/items``: `hitl delete` (another process) commits between the request's look
    at the deletions and its insert."""
    add = Store.add_api_items

    def add_after_a_delete(self: Store, items: Any, source: str = "api", **kwargs: Any) -> Any:
        with Store.open(self.path) as other:
            other.delete_items(["X-1"], user_id="cli:dpo", reason="erasure")
        return add(self, items, source, **kwargs)

    async for api in start_api(fake_slack, tmp_path):
        sent = await api.http.post(
            "/api/items", json={"items": [{"id": "X-1", "text": CARD}]}, headers=AUTH
        )
        assert sent.status == 200
        monkeypatch.setattr(Store, "add_api_items", add_after_a_delete)
        items = [{"id": "X-1", "text": CARD, "callback_url": "https://example.com/hook"},
                 {"id": "X-2", "text": "new"}]  # fmt: skip
        batch = await api.http.post("/api/items", json={"items": items}, headers=AUTH)
        body = await batch.json()
        assert batch.status == 200, body
        assert [(r["id"], r["result"]) for r in body["results"]] == [
            ("X-1", "rejected"),
            ("X-2", "created"),
        ]
        assert body["results"][0]["field"] == "items[0].id"
        assert "was deleted at" in body["results"][0]["error"]
        assert "(hitl delete)" in body["results"][0]["error"]  # by the CLI's user, not "api"
        assert (body["created"], body["duplicates"], body["rejected"]) == (1, 0, 1)
        assert api.store.get_item("X-1") is None


# -- an import --


def test_an_import_does_not_store_again_an_item_deleted_while_it_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The first `hitl delete` on the database, made after the import began (so it found no
    deletion to look for) and before it stored the batch with the deleted id."""
    db = tmp_path / "hitl.db"
    rows = [{"id": f"T-{n}", "text": f"ticket number {n}"} for n in range(6)]
    path = tmp_path / "tickets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", str(db), "import", str(path)]).exit_code == 0
    add_items = Store.add_items
    deleted: list[str] = []

    def add_after_a_delete(self: Store, batch: Any, source: str, **kwargs: Any) -> Any:
        if not deleted:  # the delete of another process, committed just now
            with Store.open(db) as other:
                other.delete_items(["T-3"], user_id="cli:dpo", reason="erasure")
            deleted.append("T-3")
        return add_items(self, batch, source, **kwargs)

    monkeypatch.setattr(Store, "add_items", add_after_a_delete)
    again = runner.invoke(cli, ["--db", str(db), "import", str(path)])
    assert again.exit_code == 0, again.output
    assert deleted == ["T-3"]
    assert "imported 0" in again.output and "5 duplicates" in again.output, again.output
    assert "1 row skipped (deleted before with `hitl delete`)" in again.output, again.output
    with Store.open(db) as store:
        assert store.get_item("T-3") is None
        assert store.deleted_item("T-3") is not None


def test_add_items_leaves_out_a_deleted_id_and_its_repeats(tmp_path: Path):
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_items([Item("A", "first"), Item("B", "second")], "import")
        store.delete_items(["A"], user_id="cli", reason="erasure")
        done = store.add_items(
            [Item("A", "first", "billing"), Item("A", "first"), Item("C", "third"),
             Item("B", "second")],
            "import",
        )  # fmt: skip
        assert (done.imported, done.duplicates, done.labeled, done.conflicts) == (1, 1, 0, ())
        assert store.get_item("A") is None and store.get_item("C") is not None
        assert sum(store.count_items().values()) == 2


# -- a retrain --


def holding(root: Path, word: str) -> list[str]:
    """The model files in ``root`` whose content (unzipped) has ``word``."""
    found = []
    for path in sorted(root.glob("*.skops")):
        with zipfile.ZipFile(path) as archive:
            if any(word.encode() in archive.read(name) for name in archive.namelist()):
                found.append(path.name)
    return found


def with_a_customer(items: list[Item]) -> list[Item]:
    """``items`` and two tickets of one customer, whose words are their own (``WORD``)."""
    return [
        *items,
        Item("J-1", f"{WORD} billing0 billing1 charged twice", "billing"),
        Item("J-2", f"{WORD} bug0 bug1 the app crashes", "bug"),
    ]


async def test_a_first_model_trained_on_items_deleted_while_it_ran_is_not_kept(tmp_path: Path):
    first, _gold, _batch, settings, registry = swapped_batch(tmp_path)
    with Store.open(settings.db) as store:
        store.add_items(with_a_customer(first), "import")
        plan = retrain.begin(store, settings, registry, triggered_by="cli")
        assert isinstance(plan, retrain.Plan)
        store.delete_items(["J-1", "J-2"], user_id="cli:dpo", reason="erasure")  # while it fits
        outcome = await retrain.retrain(
            store, settings, registry, champion=None, triggered_by="cli", plan=plan
        )
        assert outcome.status == "failed", outcome.reason
        assert "2 items it trained on" in outcome.reason
        assert "deleted while it ran" in outcome.reason
        assert "run the retrain again" in outcome.reason
        assert registry.champion() is None
        assert holding(registry.root, WORD) == []
        [model] = store.models()
        assert model["status"] == "rejected" and "deleted while it ran" in model["reason"]
        # the next retrain trains without them and is kept
        again = await retrain.retrain(store, settings, registry, champion=None, triggered_by="cli")
        assert again.status == "promoted", again.reason
        assert holding(registry.root, WORD) == []


@pytest.fixture(scope="module")
def v1_made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A folder with ``swapped_batch``'s database holding its first labels and the champion
    trained on them, v1, and v1's version: made once for the tests below, which each go on
    from a copy of it (``after_v1``)."""
    folder = tmp_path_factory.mktemp("v1")
    first, _gold, _batch, settings, registry = swapped_batch(folder)

    async def train() -> retrain.Outcome:
        with Store.open(settings.db) as store:
            store.add_items(first, "import")
            return await retrain.retrain(
                store, settings, registry, champion=None, triggered_by="cli"
            )

    # its curve remembered too (``remembered_curves`` is a test's, set up after this one)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stopping, "_curve", remembered_curve)
        with asyncio.Runner(loop_factory=FastLaneEventLoop) as runner:
            v1 = runner.run(train())
    assert v1.status == "promoted"
    return folder, v1.version


def after_v1(v1_made: tuple[Path, int], tmp_path: Path) -> int:
    """``v1_made``'s database and models folder copied into ``tmp_path``; v1's version."""
    folder, version = v1_made
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    return version


async def test_a_delete_just_before_the_model_is_recorded_withdraws_it_and_the_champion_stays(
    tmp_path: Path, v1_made: tuple[Path, int]
):
    """The delete lands after the fit, before ``finish`` records the model (the look in its
    transaction finds it); the champion before it is the champion again."""
    v1 = after_v1(v1_made, tmp_path)
    _first, _gold, batch, settings, registry = swapped_batch(tmp_path)
    with Store.open(settings.db) as store:
        store.add_items(with_a_customer(batch[:8]), "import")
        plan = retrain.begin(store, settings, registry, triggered_by="cli", force=True)
        assert isinstance(plan, retrain.Plan)
        plan.stop = retrain.stopping.read_stop_plan(store)
        computed = retrain.compute(plan, registry, retrain.load_champion(registry))
        assert computed.outcome.status == "promoted"  # forced: the files say so, for now
        assert holding(registry.root, WORD) == [f"v{computed.meta.version}.skops"]
        store.delete_items(["J-2"], user_id="api", reason="erasure")
        outcome = retrain.finish(store, plan, computed, registry)
        assert outcome.status == "failed" and "1 item it trained on ('J-2')" in outcome.reason
        assert registry.champion().version == v1
        assert holding(registry.root, WORD) == []
        recorded = {m["version"]: m["status"] for m in store.models()}
        assert recorded == {v1: "champion", computed.meta.version: "rejected"}


async def promoted_then_erased(
    tmp_path: Path, v1_made: tuple[Path, int], **changes: Any
) -> tuple[Any, ...]:
    """v1, then a forced retrain's model v2 promoted in the registry (not recorded yet) and
    one item it trained on deleted: what ``finish`` meets when a delete lands in between.
    (v1 is ``v1_made``'s: no model before it to prune, so made with any ``keep_models``.)"""
    after_v1(v1_made, tmp_path)
    _first, _gold, batch, settings, registry = swapped_batch(tmp_path)
    settings = dataclasses.replace(settings, **changes)
    store = Store.open(settings.db)
    store.add_items(with_a_customer(batch[:8]), "import")
    plan = retrain.begin(store, settings, registry, triggered_by="cli", force=True)
    assert isinstance(plan, retrain.Plan)
    plan.stop = retrain.stopping.read_stop_plan(store)
    computed = retrain.compute(plan, registry, retrain.load_champion(registry))
    assert computed.meta is not None and computed.meta.status == "champion"
    store.delete_items(["J-2"], user_id="api", reason="erasure")
    return store, plan, computed, registry


async def test_with_keep_models_0_a_withdrawn_promotion_gives_the_champion_back(
    tmp_path: Path, v1_made: tuple[Path, int]
):
    """HITL_KEEP_MODELS=0: the retrain pruned the champion before it, so a withdraw left no
    champion in the folder or the database (code review). The prune waits until it is kept."""
    store, plan, computed, registry = await promoted_then_erased(tmp_path, v1_made, keep_models=0)
    with store:
        outcome = retrain.finish(store, plan, computed, registry)
        assert outcome.status == "failed"
        assert registry.champion().version == 1
        assert {m["version"]: m["status"] for m in store.models()} == {1: "champion", 2: "rejected"}
    assert retrain.load_champion(registry).version == 1  # its file is there


async def test_a_withdraw_killed_between_its_writes_serves_the_champion_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, v1_made: tuple[Path, int]
):
    """The champion before is made champion again with a promotion of its own: a kill before
    the withdrawn model is marked rejected leaves two champions, and readers took the one
    with the higher promotion count, the model trained on the erased item (code review)."""
    store, plan, computed, registry = await promoted_then_erased(tmp_path, v1_made)

    class Killed(BaseException):
        pass

    real = registry.set_status

    def killed_at_the_rejection(version: int, status: str, *args: Any, **kwargs: Any) -> Any:
        if status == "rejected":
            raise Killed
        return real(version, status, *args, **kwargs)

    monkeypatch.setattr(registry, "set_status", killed_at_the_rejection)
    with store, pytest.raises(Killed):
        retrain.withdraw(registry, plan, computed, {"J-2"})
    assert ModelRegistry(registry.root).champion().version == 1  # the next process's read


async def test_delete_requests_of_one_item_sent_at_once_answer_200_once_then_410(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Three DELETEs of the same id at once (a producer's retry after a timeout, two workers
    serving one erasure request): one deleted it, the others found it deleted while they read
    the models' metadata off the loop, and answered 500 with the store's "no item" (outside
    test of the producer API: 30 of 45). README: a DELETE sent again gets 410, taken as done."""
    ids = [f"D-{n}" for n in range(8)]
    async for api in start_api(fake_slack, tmp_path):
        items = [{"id": i, "text": f"{CARD} {i}"} for i in ids]
        assert (await api.http.post("/api/items", json={"items": items}, headers=AUTH)).ok
        sent = [api.http.delete(f"/api/items/{i}", headers=AUTH) for i in ids for _ in range(3)]
        replies = await asyncio.gather(*sent)
        statuses = [r.status for r in replies]
        assert sorted(statuses) == [200] * len(ids) + [410] * 2 * len(ids), statuses
        for reply in replies:
            said = await reply.json()
            assert reply.status == 200 or (said["field"] == "id" and "deleted" in said["error"])
        assert all(api.store.get_item(i) is None for i in ids)


@pytest.mark.parametrize("when", ["while the models are read", "just before the delete"])
async def test_an_item_hitl_delete_erases_during_a_delete_request_is_410(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
):
    """`hitl delete` (another process) commits while the request reads the models' metadata
    off the loop, or between its last look and its write transaction: 410, as for a DELETE
    sent after."""
    from bot.api import routes

    def delete_elsewhere() -> None:
        with Store.open(api.store.path) as other:
            other.delete_items(["X-1"], user_id="cli:dpo", reason="erasure")

    async for api in start_api(fake_slack, tmp_path):
        sent = await api.http.post(
            "/api/items", json={"items": [{"id": "X-1", "text": CARD}]}, headers=AUTH
        )
        assert sent.status == 200
        if when == "while the models are read":
            seqs = routes.model_label_seqs

            def read_models(models_dir: Any, seqs: Any = seqs) -> Any:
                delete_elsewhere()
                return seqs(models_dir)

            monkeypatch.setattr(routes, "model_label_seqs", read_models)
        else:
            synced_later = api.store.synced_later

            def write_after_another(synced_later: Any = synced_later) -> Any:
                delete_elsewhere()
                return synced_later()

            monkeypatch.setattr(api.store, "synced_later", write_after_another)
        reply = await api.http.delete("/api/items/X-1", headers=AUTH)
        said = await reply.json()
        assert (reply.status, said["field"]) == (410, "id"), said
        assert "was deleted" in said["error"]
        assert api.store.deleted_item("X-1") is not None
