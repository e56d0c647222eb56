"""The producer's half of the real server, driven by a stateful property test: what a producer
is promised (README, "Producer API" and "Webhooks") checked after any sequence of its requests
mixed with what people do in Slack.

``ApiMachine`` starts ``init_app`` once per example with the API on (``start_api``), a model
whose numbers are fixed by a word of the text (``Keywords``: "refund" billing 0.9, "charged"
billing 0.99999, "close" billing 0.5, "crash" bug 0.85) at HITL_THRESHOLD=0.9, HITL_VOTES=1,
and a webhook receiver on loopback (allowed by HITL_WEBHOOK_ALLOW). Then, in any order: a
producer sends one of six ids with its text or another one (``/api/predict``, or a batch of
``/api/items`` that may repeat an id), with or without a callback_url, and deletes an item
(``DELETE /api/items/{id}``, or `hitl delete` on another connection); the dispatcher posts
questions; people click a label or Skip on one, and the "Saved" note's Undo; an admin renames
``billing``, merges ``account`` into ``bug``, retires ``bug`` or adds it back (`/hitl labels`);
time passes on the runtime's and the store's clock (past the Undo's ten minutes or not); the
webhooks due are delivered. The test keeps a small model of the promises: the human label of
each item (the clicked one, under the label set in force, gone with its Undo), the model's
label in force (the best of its classes after renames and merges, retired ones left out, not
spread), what was deleted, the callback_url each item has. After each step:

* ``GET /api/items/{id}`` of each id: 404 never sent, 410 deleted (never an old answer), else
  its first text, ``resolved`` with the human label in force when people decided it, else not
  resolved, no human label, and the model's label in force as its prediction;
* no row of a deleted item in any table, and no question of it in Slack once settled;
* ``/metrics``' ``hitl_items`` are the items table's counts (a decided item whose label is
  retired as ``label_retired``), and after a delete ``/healthz`` says the database is ok;
* each webhook names labels in force only, none comes for a deleted item after its deletion,
  none repeats the item's previous one, and once the due ones are delivered the last one of
  each item tells it as it is (its human label; ``skipped``; a label taken back as ``null``).

Each answer of ``/api/predict`` and ``/api/items`` is checked against the same model in its
step: an id stored with another text is refused (409, ``rejected``) and the stored text stays,
a deleted one is refused (410, ``rejected``), one sent again is a ``duplicate`` (never a second
item), a callback_url is registered only on an item that has none and is not decided.

Deterministic (``derandomize``; the clocks moved by the test; nothing sleeps): 15 examples of
12 steps. ``HITL_API_MACHINE_HUNT=N`` runs N random examples of 30 steps instead, to look for
defects (minutes; not for CI).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from bot.api.webhooks import deliver_due
from bot.eventloop import FastLaneEventLoop
from bot.runtime import Champion
from bot.slack import blocks
from bot.slack.blocks import UNDO_ACTION
from bot.store import Store
from tests import signing
from tests.bot.harness import LABELS, Bot, has_buttons, item_of
from tests.bot.test_api import AUTH, T0, start_api
from tests.bot.test_api_metrics import scrape
from tests.bot.test_label_set import redrawer_running
from tests.bot.test_redraw_converge import undo_offers
from tests.bot.test_retired_predictions import Keywords
from tests.bot.test_webhooks import BASE, LOOPBACK, Receiver, serve_receiver
from tests.fake_slack import CHANNEL, build_workspace
from tests.machines import end_machine, machine_settings, run_machine

THRESHOLD = 0.9
WORDS = ["refund", "crash", "close", "crash", "close", "charged"]  # the model's word per id
IDS = [f"T-{n}" for n in range(len(WORDS))]
PEOPLE = ["U0ANA", "U0RAJ"]
ID = st.integers(0, len(IDS) - 1)
STATUSES = ("new", "queued", "posted", "resolved", "auto", "skipped", "gold")
TABLES = ("items", "answers", "labels", "posts", "deliveries")
CHANGES = {  # `/hitl labels ...` and what it does to the model's names
    "rename": "labels rename billing invoices",
    "merge": "labels merge account bug",
    "retire": "labels retire bug",
    "add": "labels add bug",
}


def text_of(n: int, edited: bool = False) -> str:
    return f"{WORDS[n]} ticket {n}" + (" (edited)" if edited else "")


class ApiMachine(RuleBasedStateMachine):
    seen: Counter[str] = Counter()  # what the steps did, over the run (printed by the test)

    def __init__(self) -> None:
        super().__init__()
        self.loop = FastLaneEventLoop()
        self.tmp = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
        self.offset = timedelta()
        self.ticks = 0
        self.texts: dict[str, str] = {}  # id -> the text stored (the first sent)
        self.deleted: dict[str, int] = {}  # id -> webhooks received before its deletion
        self.callbacks: set[str] = set()  # ids whose callback_url is the receiver's
        # id -> (label as clicked, decision answer id, clicked at): the human label, votes=1
        self.decided: dict[str, tuple[str, int, timedelta]] = {}
        self.renamed: dict[str, str] = {}  # old -> new (a rename or a merge)
        self.retired: set[str] = set()
        self.told: dict[str, list[dict[str, Any]]] = {}  # id -> webhook bodies, in order
        self.bot: Bot = self.loop.run_until_complete(self._start())

    def now(self) -> datetime:
        """The runtime's and the store's clock: the minutes the test moved it, and a
        millisecond more at each reading (a real clock moves between two clicks: an Undo's
        answer is keyed by its millisecond)."""
        self.ticks += 1
        return T0 + self.offset + timedelta(milliseconds=self.ticks)

    async def _start(self) -> Bot:
        self.fake = build_workspace()
        await self.fake.start()
        for user in PEOPLE:
            self.fake.join_channel(CHANNEL, user)
        self.hooks = serve_receiver(["ok"])
        self.receiver: Receiver = await self.hooks.__anext__()
        champion = Champion(version=1, classifier=Keywords(), n_train=100)  # type: ignore[arg-type]
        self.agen = start_api(
            self.fake, self.tmp, champion=champion, threshold=THRESHOLD, votes=1, **LOOPBACK
        )
        bot = await self.agen.__anext__()
        bot.rt.clock = self.now
        bot.store.now = self.stamp
        # the redrawer's loop, as `hitl serve` runs it (it deletes a deleted item's questions
        # from Slack); only a wake draws (a delete's, or the test's after `hitl delete`)
        self.redrawing = redrawer_running(bot, 3600)
        await self.redrawing.__aenter__()
        return bot

    def stamp(self) -> str:
        return self.now().isoformat(timespec="milliseconds")

    def teardown(self) -> None:
        async def stop() -> None:
            await self.redrawing.__aexit__(None, None, None)
            await self.agen.aclose()
            await self.hooks.aclose()
            await self.fake.close()

        end_machine(self.loop, self.tmp, stop())

    def do(self, coro):
        return self.loop.run_until_complete(coro)

    def settle(self) -> None:
        """The server's work after a step done: the dispatcher woken by it posts (as in `hitl
        serve`, a new item, a decision, an Undo or a delete wakes it), Slack is redrawn (the
        timeout bounds only a failing example, which hypothesis runs many times shrinking it)."""

        async def go() -> None:
            self.seen["posted"] += await self.bot.dispatcher.fill()
            await self.bot.settled(10.0)

        self.do(go())

    # -- the model of the promises ----------------------------------------------------------

    def name(self, label: str) -> str:
        """``label`` as the label set in force calls it (after renames and merges)."""
        while label in self.renamed:
            label = self.renamed[label]
        return label

    def in_force(self) -> set[str]:
        return {self.name(label) for label in LABELS} - self.retired

    def human(self, item_id: str) -> str | None:
        """The human label a producer is told: the clicked one under its name now; none when
        retired (the item waits in review for a label in force)."""
        if item_id not in self.decided:
            return None
        label = self.name(self.decided[item_id][0])
        return None if label in self.retired else label

    def model_label(self, item_id: str) -> tuple[str, float]:
        """The model's label in force and its confidence: each class under its name now, a
        merged one at the higher of the two, a retired one left out (not spread)."""
        proba = Keywords.PROBA[WORDS[IDS.index(item_id)]]
        best: dict[str, float] = {}
        for label, p in zip(Keywords.classes, proba, strict=True):
            if (named := self.name(label)) not in self.retired:
                best[named] = max(best.get(named, 0.0), p)
        label = max(best, key=best.__getitem__)
        return label, best[label]

    def status_row(self, item_id: str) -> str | None:
        row = self.bot.store.db.execute("SELECT status FROM items WHERE id = ?", [item_id])
        found = row.fetchone()
        return found[0] if found else None

    def check_answer(self, item_id: str, answer: dict[str, Any]) -> None:
        """A prediction (``/api/predict``'s answer) as promised: the human label once people
        decided it, else the model's label in force."""
        model, confidence = self.model_label(item_id)
        human = self.human(item_id)
        assert answer["model_label"] == model, (item_id, answer, model)
        assert abs(answer["confidence"] - confidence) < 1e-9, (item_id, answer, confidence)
        if human is not None:
            assert (answer["status"], answer["label"]) == ("resolved", human), (item_id, answer)
        else:
            assert answer["status"] != "resolved", (item_id, answer)
            assert answer["label"] == model, (item_id, answer)

    def callback_expected(self, item_id: str, new: bool) -> bool:
        """A callback_url is taken by a new item, or one with none that is not decided (the
        one URL the machine sends, registered before, is the item's: ``registered`` again)."""
        return new or item_id in self.callbacks or self.human(item_id) is None

    # -- the producer ---------------------------------------------------------------------

    @initialize(callbacks=st.lists(st.booleans(), min_size=4, max_size=4))
    def some_items_sent(self, callbacks: list[bool]):
        """Four items sent in a batch (three unsure: asked in Slack), some with a callback."""
        self.add_items([(n, False, callback) for n, callback in enumerate(callbacks)])

    def body(self, n: int, edited: bool, callback: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"id": IDS[n], "text": text_of(n, edited)}
        if callback:
            body["callback_url"] = self.receiver.url
        return body

    @rule(n=ID, edited=st.booleans(), callback=st.booleans())
    def predict(self, n: int, edited: bool, callback: bool):
        item_id, body = IDS[n], self.body(n, edited, callback)
        before = self.n_items()
        response = self.do(self.bot.http.post("/api/predict", data=json.dumps(body), headers=AUTH))
        answer = self.do(response.json())
        new = item_id not in self.texts and item_id not in self.deleted
        if item_id in self.deleted:
            self.seen["predict deleted"] += 1
            assert response.status == 410, answer
        elif not new and body["text"] != self.texts[item_id]:
            self.seen["predict other text"] += 1
            assert response.status == 409, answer
            assert answer["field"] == "id", answer
        else:
            self.seen["predict new" if new else "predict again"] += 1
            assert response.status == 200, answer
            self.check_answer(item_id, answer)
            if callback:
                self.registered(item_id, answer, new)
            self.texts.setdefault(item_id, body["text"])
        assert self.n_items() == before + (response.status == 200 and new), "stored twice"
        self.settle()

    def registered(self, item_id: str, answer: dict[str, Any], new: bool) -> None:
        expected = self.callback_expected(item_id, new)
        said = answer.get("callback")
        assert said == ("registered" if expected else "not_registered"), (item_id, answer)
        if expected:
            self.callbacks.add(item_id)

    @rule(
        sent=st.lists(st.tuples(ID, st.booleans(), st.booleans()), min_size=1, max_size=4),
    )
    def add_items(self, sent: list[tuple[int, bool, bool]]):
        bodies = [self.body(n, edited, callback) for n, edited, callback in sent]
        before = self.n_items()
        response = self.do(
            self.bot.http.post("/api/items", data=json.dumps({"items": bodies}), headers=AUTH)
        )
        answer = self.do(response.json())
        assert response.status == 200, answer
        created = 0
        for index, (body, result) in enumerate(zip(bodies, answer["results"], strict=True)):
            item_id = body["id"]
            assert result["index"] == index, answer
            new = item_id not in self.texts and item_id not in self.deleted
            if item_id in self.deleted:
                self.seen["batch deleted"] += 1
                assert result["result"] == "rejected", (index, answer)
            elif not new and body["text"] != self.texts[item_id]:
                self.seen["batch other text"] += 1
                assert (result["result"], result["field"]) == ("rejected", f"items[{index}].id")
            else:
                self.seen["batch new" if new else "batch again"] += 1
                assert result["result"] == ("created" if new else "duplicate"), (index, answer)
                created += new
                if "callback_url" in body:
                    self.registered(item_id, result, new)
                self.texts.setdefault(item_id, body["text"])
        assert answer["created"] == created, answer
        assert self.n_items() == before + created, "an item stored twice"
        self.settle()

    @rule(n=ID, through_api=st.booleans())
    def delete(self, n: int, through_api: bool):
        item_id = IDS[n]
        if through_api:
            response = self.do(
                self.bot.http.delete(f"/api/items/{quote(item_id, safe='')}", headers=AUTH)
            )
            expected = 410 if item_id in self.deleted else 200 if item_id in self.texts else 404
            assert response.status == expected, self.do(response.text())
            self.seen[f"DELETE {expected}"] += 1
        elif item_id in self.texts and item_id not in self.deleted:
            self.seen["hitl delete"] += 1
            with Store.open(self.bot.rt.settings.db, self.stamp) as cli:
                cli.delete_items([item_id], user_id="cli:test", reason="erasure")
            self.bot.rt.redrawer.wake()  # as `hitl serve`'s background loop finds it
        if item_id in self.texts and item_id not in self.deleted:
            self.deleted[item_id] = len(self.told.get(item_id, []))
            self.decided.pop(item_id, None)
        self.settle()
        # the database is still there and storing (a delete is its heaviest write)
        response = self.do(self.bot.http.get("/healthz"))
        health = self.do(response.json())
        assert (response.status, health["db"]) == (200, "ok"), health

    def n_items(self) -> int:
        return self.bot.store.db.execute("SELECT count(*) FROM items").fetchone()[0]

    # -- people and admins ------------------------------------------------------------------

    @rule(k=st.integers(0, 4), user=st.sampled_from(PEOPLE), pick=st.sampled_from([0, 1, None]))
    def click(self, k: int, user: str, pick: int | None):
        messages = [m for m in self.bot.posted() if "metadata" in m and has_buttons(m)]
        if not messages:
            return
        message = messages[k % len(messages)]
        item_id = item_of(message)
        label = None
        if pick is not None:
            labels = [
                blocks.decode_value(e["value"])[1]
                for b in message["blocks"]
                for e in b.get("elements", []) or []
                if e.get("type") == "button" and ".label." in e["action_id"]
            ]
            label = labels[pick % len(labels)]
        payload = self.bot.button_payload(message, user, label)
        assert self.do(self.bot.action(payload)).status == 200
        self.settle()
        self.seen["skip" if label is None else "click"] += 1
        if label is not None and self.status_row(item_id) == "resolved":
            [answer] = self.bot.store.db.execute(
                "SELECT max(id) FROM answers WHERE item_id = ? AND user_id = ?", [item_id, user]
            ).fetchone()
            self.decided[item_id] = (label, answer, self.offset)

    @rule(k=st.integers(0, 5))
    def undo(self, k: int):
        offers = [
            (user, blocks.decode_value(value)[0], json.loads(value))
            for user, value in undo_offers(self.bot)
        ]
        offers = [o for o in offers if o[2].get("l") is not None]  # of a label, not a Skip
        if not offers:
            return
        user, item_id, value = offers[k % len(offers)]
        url = self.bot.fake.response_url(CHANNEL)
        ts = next(
            (m["ts"] for m in self.bot.posted() if "metadata" in m and item_of(m) == item_id),
            signing.MESSAGE_TS,
        )
        payload = signing.block_actions_payload(
            user, UNDO_ACTION, json.dumps(value), message_ts=ts, response_url=url
        )
        payload["actions"][0]["action_ts"] = self.bot.next_action_ts()
        assert self.do(self.bot.action(payload)).status == 200
        self.settle()
        decision = self.decided.get(item_id)
        in_time = decision is not None and self.offset - decision[2] < timedelta(minutes=10)
        self.seen[f"undo {'in time' if in_time else 'late or stale'}"] += 1
        if in_time and decision is not None and decision[1] == value.get("d"):
            del self.decided[item_id]

    @rule(change=st.sampled_from(sorted(CHANGES)))
    def change_labels(self, change: str):
        response = self.do(self.bot.command(CHANGES[change], "U0ADMIN"))
        assert response.status == 200
        text = self.do(response.text())
        self.settle()
        if "Done. Labels now:" not in text:
            self.seen[f"{change} refused"] += 1
            return
        self.seen[change] += 1
        if change == "rename":
            self.renamed["billing"] = "invoices"
        elif change == "merge":
            self.renamed["account"] = "bug"
        elif change == "retire":
            self.retired.add("bug")
        else:
            self.retired.discard("bug")

    @rule(minutes=st.sampled_from([4, 11]))  # no sum of them is the Undo's 10 minutes
    def time_passes(self, minutes: int):
        self.seen[f"{minutes} minutes pass"] += 1
        self.offset += timedelta(minutes=minutes)

    @rule()
    def webhooks_go(self):
        """Every delivery due now is sent (the receiver takes each), round after round."""
        start = len(self.receiver.received)
        for _ in range(20):
            if not self.do(deliver_due(self.bot.rt, now=self.now(), base=BASE)).attempted:
                break
        else:
            raise AssertionError("deliveries still due after 20 rounds")
        for received in self.receiver.received[start:]:
            body = json.loads(received.body)
            item_id = body["id"]
            self.seen["webhook"] += 1
            assert item_id not in self.deleted, f"a webhook of deleted {item_id}: {body}"
            for field in ("label", "model_label"):
                assert body[field] is None or body[field] in self.in_force(), (field, body)
            told = self.told.setdefault(item_id, [])
            assert not told or told[-1] != body, f"{item_id} told twice: {body}"
            told.append(body)
        for item_id in self.callbacks - set(self.deleted):
            last = (self.told.get(item_id) or [None])[-1]
            human = self.human(item_id)
            if human is not None:
                assert last is not None, f"{item_id} decided {human}, never told"
                assert (last["label"], last["status"]) == (human, "resolved"), (item_id, last)
            elif self.status_row(item_id) == "skipped":
                assert last is not None and (last["label"], last["status"]) == (None, "skipped")
            elif last is not None:
                assert last["label"] is None, f"{item_id} is not decided, told {last}"

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def every_item_answers_as_promised(self):
        for item_id in IDS:
            if item_id not in self.texts:
                continue  # never sent (a 404: ``delete``'s)
            response = self.do(
                self.bot.http.get(f"/api/items/{quote(item_id, safe='')}", headers=AUTH)
            )
            shown = self.do(response.json())
            if item_id in self.deleted:
                assert response.status == 410, (item_id, shown)
                continue
            assert response.status == 200, (item_id, shown)
            assert shown["text"] == self.texts[item_id], (item_id, shown)
            model, confidence = self.model_label(item_id)
            assert shown["prediction"]["label"] == model, (item_id, shown, model)
            assert abs(shown["prediction"]["confidence"] - confidence) < 1e-9, (item_id, shown)
            human = self.human(item_id)
            if human is not None:
                assert shown["status"] == "resolved", (item_id, shown)
                assert shown["human"]["label"] == human, (item_id, shown, human)
            else:
                assert shown["status"] != "resolved", (item_id, shown)
                assert shown["human"] is None, (item_id, shown)
            assert (shown["callback_url"] is not None) == (item_id in self.callbacks), shown

    @invariant()
    def nothing_deleted_is_kept(self):
        gone = sorted(self.deleted)
        for table in TABLES:
            column = "id" if table == "items" else "item_id"
            rows = self.bot.store.db.execute(
                f"SELECT count(*) FROM {table} WHERE {column} IN (SELECT value FROM json_each(?))",
                [json.dumps(gone)],
            ).fetchone()[0]
            assert rows == 0, f"{rows} row(s) of deleted items in {table}"
        shown = {item_of(m) for m in self.bot.posted() if "metadata" in m}
        assert not shown & set(gone), f"questions of deleted items in Slack: {shown & set(gone)}"

    @invariant()
    def metrics_are_the_store(self):
        db = self.bot.store.db
        counts = dict(db.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall())
        retired = db.execute(
            "SELECT count(*) FROM labels JOIN items ON items.id = labels.item_id WHERE"
            " items.status = 'resolved' AND labels.label IN (SELECT value FROM json_each(?))",
            [json.dumps(sorted(self.retired))],
        ).fetchone()[0]
        counts["resolved"] = counts.get("resolved", 0) - retired
        counts["label_retired"] = retired
        metrics = self.do(scrape(self.bot))
        said = {
            labels[0][1]: value
            for (name, labels), value in metrics.items()
            if name == "hitl_items" and value
        }
        assert said == {s: n for s, n in counts.items() if n}, (said, counts)
        assert (
            metrics[("hitl_answers", ())]
            == db.execute("SELECT count(*) FROM answers").fetchone()[0]
        )


# HITL_API_MACHINE_HUNT=N: N examples of 30 steps, random (to look for defects, not in CI)
MACHINE_SETTINGS = machine_settings(15, 12, hunt_env="HITL_API_MACHINE_HUNT", hunt_steps=30)


def test_a_producer_is_told_what_it_was_promised_after_any_sequence():
    run_machine(ApiMachine, MACHINE_SETTINGS)
