"""Store defects found in review (reader5): what an Undo reads of the webhook deliveries, the
webhook's model label after a retire, and an auto item's status after its question is taken
back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.api.routes import api_status
from bot.store import Store
from tests.bot.test_store import R
from tests.query_plans import query_plans

HOOK = "https://producer.example/hook"


class Clock:
    """A store clock that moves a second a read (``t`` may be moved on by hand)."""

    def __init__(self) -> None:
        self.t = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> str:
        self.t += timedelta(seconds=1)
        return self.t.isoformat(timespec="milliseconds")


def with_callback(store: Store, item_id: str, text: str) -> None:
    store.add_items([R(item_id, text)], "import")
    store.db.execute("UPDATE items SET callback_url = ? WHERE id = ?", [HOOK, item_id])
    store.db.conn.commit()


def test_an_undo_and_the_webhook_read_an_items_deliveries_from_an_index():
    """An Undo (``_queue_taken_back``, in the write lock, on the event loop) and the webhook's
    ``_maybe_told`` read the item's own deliveries from ``deliveries_item`` (m033): without it
    they read every delivery ever made (82 ms an Undo at a million delivered rows)."""
    with Store.memory(clock=Clock()) as store:
        with_callback(store, "t1", "refund please")
        store.record_post("t1", "C1", "1.0", "uncertain", None, None, None)
        store.record_answer("t1", "U1", "billing", source="button", dedupe_key="k1")
        (first,) = store.deliveries("t1")
        store.finish_delivery(first["id"], "delivered")

        def undo_and_tell() -> None:
            assert store.undo_resolution("t1", "U1", "2000-01-01")
            store.webhook_payload("t1")

        seen: list[str] = []
        store.db.conn.set_trace_callback(seen.append)
        undo_and_tell()
        store.db.conn.set_trace_callback(None)
        plans = [
            (sql, [row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + sql)])
            for sql in dict.fromkeys(seen)
            if "deliveries" in sql and sql.lstrip().upper().startswith(("SELECT", "INSERT"))
        ]
        plans += [
            (sql, plan)
            for sql, plan in query_plans(store, lambda: store.deliveries("t1"))
            if "deliveries" in sql
        ]
        assert len(plans) >= 3  # the Undo's insert, _maybe_told, deliveries(item)
        for sql, plan in plans:
            assert not [line for line in plan if line.startswith("SCAN d")], (sql, plan)
            assert any("deliveries_item" in line for line in plan), (sql, plan)


def test_the_webhook_names_the_models_label_in_force_as_the_api_does():
    """``bug`` is retired after an item the model guessed ``bug`` was decided ``bug``; the
    admin's review decision ``billing`` sends the webhook. Its ``model_label`` is the label in
    force GET /api/items/{id} gives (``billing``), not the retired ``bug``; a rollback's old
    name shows as its successor."""
    from bot.api.routes import _prediction

    with Store.memory(clock=Clock()) as store:
        with_callback(store, "T-1", "app crashes on refund")
        ranked = [["bug", 0.6], ["billing", 0.3], ["other", 0.1]]
        store.set_predictions([("T-1", 1, "bug", 0.6, ranked, 0.7)], 0.8, "margin")
        store.record_post("T-1", "C1", "1.0", "uncertain", 1, "bug", 0.6)
        answer = store.record_answer("T-1", "U1", "bug", source="button", dedupe_key="k1")
        assert answer.status == "resolved"
        assert store.webhook_payload("T-1")["model_label"] == "bug"
        store.change_label_set(
            "retire", "bug", current=["billing", "bug", "other"], user_id="admin"
        )
        store.set_label("T-1", "billing", user_id="U-admin", action="review")
        webhook = store.webhook_payload("T-1")
        api = _prediction(store, store.get_item("T-1"))
        assert webhook["label"] == "billing"
        assert webhook["model_label"] == api["model_label"] == "billing", (webhook, api)
        store.change_label_set(
            "rename", "billing", "payments", current=["billing", "other"], user_id="admin"
        )
        assert store.webhook_payload("T-1")["model_label"] == "payments"


def confident(store: Store, item_id: str, confidence: float = 0.95) -> None:
    ranked = [["billing", confidence], ["bug", 1 - confidence]]
    store.set_predictions(
        [(item_id, 1, "billing", confidence, ranked, 1 - confidence)], 0.8, "margin"
    )


def test_an_auto_item_asked_as_an_audit_and_taken_back_is_the_models_again():
    """An ``auto`` item (the model is sure of it) asked as an audit, whose question expires
    (HITL_QUESTION_TTL) or moves out of the channels asked in, goes back to ``auto``: the API
    says auto again, not needs_review until another model scores it. An item below the
    threshold goes back to the queue."""
    clock = Clock()
    with Store.memory(clock=clock) as store:
        store.add_items([R("t1", "refund please"), R("t2", "refund me"), R("t3", "hm")], "import")
        confident(store, "t1")
        confident(store, "t2")
        confident(store, "t3", 0.6)
        assert [store.get_item(i)["status"] for i in ("t1", "t2", "t3")] == [
            "auto",
            "auto",
            "queued",
        ]
        store.record_post("t1", "C1", "1.0", "audit", 1, "billing", 0.95)
        store.record_post("t3", "C1", "3.0", "uncertain", 1, "billing", 0.6)
        clock.t += timedelta(hours=80)
        store.record_post("t2", "C-old", "2.0", "audit", 1, "billing", 0.95)
        assert {p["item_id"] for p in store.expire_posts(72, 10, 0.8)} == {"t1", "t3"}
        item = store.get_item("t1")
        assert (item["status"], api_status(item["status"])) == ("auto", "auto")
        assert store.get_item("t3")["status"] == "queued"
        assert [p["item_id"] for p in store.requeue_posts_outside(["C1"], 0.8)] == ["t2"]
        assert store.get_item("t2")["status"] == "auto"


async def test_the_dispatcher_gives_an_expired_audit_of_an_auto_item_back_to_the_model(
    fake_slack, tmp_path
):
    from tests.bot.harness import Item, make_settings, seed, seed_champion, start_bot
    from tests.fake_slack import CHANNEL

    db = tmp_path / "hitl.db"
    seed(db, [Item("t1", "I was charged twice, refund please")])
    seed_champion(db, ["I was charged twice", "refund", "app crashes", "error 500"],
                  ["billing", "billing", "bug", "bug"])  # fmt: skip
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), audit_rate=0.0, gold_rate=0.0
    )
    async for bot in start_bot(fake_slack, settings):
        assert bot.rt.model is not None
        ranked = [["billing", 0.95], ["bug", 0.05]]
        bot.store.set_predictions(
            [("t1", bot.rt.model.version, "billing", 0.95, ranked, 0.1)],
            bot.rt.settings.threshold,
            bot.rt.settings.strategy,
        )
        assert bot.store.get_item("t1")["status"] == "auto"
        bot.store.record_post("t1", CHANNEL, "1.0", "audit", 1, "billing", 0.95)
        then = datetime.fromisoformat(bot.store.now()) - timedelta(hours=80)
        with bot.store.db.conn:
            bot.store.db.execute(
                "UPDATE posts SET posted_at = ?", [then.isoformat(timespec="milliseconds")]
            )
        await bot.dispatcher.fill()  # the message's redraw is not waited for: it was never sent
        assert bot.store.db.execute("SELECT expired_at FROM posts").fetchone()[0] is not None
        assert bot.store.get_item("t1")["status"] == "auto"
