"""The real server, driven by a stateful property test through signed requests: what the store
machines (tests/bot/test_store_counts.py, test_store_flows.py) cannot see, the Slack layer
above the store, checked across its surfaces after every step.

``ServerMachine`` starts ``init_app`` once per example (a fake Slack, a few items, two gold
questions, HITL_VOTES=1, HITL_GOLD_RATE=1/3 so the window mixes gold in within a few items),
from the start or after three answers in a window (a gold question among them), and then, in
any order: people click a label or Skip on a channel question (on its drawing
now or on the first one Slack showed, once, as Slack resends it, or twice, a double click),
open the labeling window, answer or skip there, click the window's Undo or a channel "Saved"
note's Undo, close the window (``view_closed``); an admin renames a label or retires one
(`/hitl labels`); time passes on the runtime's clock (past the two-minute hold, past the
Undo's ten minutes); the dispatcher fills. After each step, once the server has settled:

* every request was acked (200) and a click stored one answer of the clicker's at most, none
  for a resend or a double click's second;
* each question message's last drawing is what the product's builder draws for its item now
  (a decided question as drawn at the last label change, while its item is unchanged: a
  rename redraws the open questions only, by design);
* a window drawn in the step shows an item that is the person's to answer, or "Nothing left"
  only when no item is theirs; and not an item another open window holds (its hold alive)
  while another item was theirs (HITL_VOTES=1: a held item needs nobody else), but for the
  item the person's own Undo reopened, shown to them again by design;
* each open window's "answered in this session" is the person's answers counted since it
  opened: the items they answered in the window, less those their own Undo took back since;
* `/hitl stats` (an admin's, signed) says the answers of today and this week by person, the
  items by state and each person's accuracy on gold as recomputed here from the base rows.

Deterministic (``derandomize``; the runtime's clock moved by the test; nothing sleeps): 16
examples of 14 steps, ~4 s of CPU. ``HITL_MACHINE_HUNT=N`` runs N random examples of 25 steps
instead, to look for defects (minutes; not for CI): that is how the Undo defect
(tests/bot/test_undo_offer_once.py) was found.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from bot.eventloop import FastLaneEventLoop
from bot.learning.reports import labels_and_skips, period_starts
from bot.slack import blocks
from bot.slack.blocks import UNDO_ACTION, person
from bot.slack.holds import HOLD
from bot.store import Store
from tests import signing
from tests.bot.harness import (
    Bot,
    Item,
    has_buttons,
    item_of,
    make_settings,
    open_window,
    seed,
    start_bot,
    window_item,
)
from tests.bot.test_gold import gold_rows
from tests.bot.test_redraw_converge import expected, shown, undo_offers
from tests.fake_slack import CHANNEL, build_workspace
from tests.machines import end_machine, machine_settings, run_machine

PEOPLE = ["U0ANA", "U0RAJ", "U0LEE"]
PERSON = st.sampled_from(PEOPLE)
PICK = st.sampled_from([0, 1, None])  # the first or second label button, or Skip
AGAIN = st.sampled_from([None, None, "resend", "double"])
ITEMS = [Item(f"i{n}", f"ticket {n} about an invoice or a crash") for n in range(4)]
GOLD = [("g0", "charged twice for one order", "billing"), ("g1", "the app crashes", "bug")]
WAITING = ("new", "queued", "gold")
SERVED = ("new", "queued", "posted")  # what a window serves besides its gold turns
COUNTED = "source != 'import' AND late = 0"


class ServerMachine(RuleBasedStateMachine):
    seen: Counter[str] = Counter()  # what the steps did, over the run (printed by the test)

    def __init__(self) -> None:
        super().__init__()
        self.loop = FastLaneEventLoop()
        self.tmp = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
        self.base = datetime.now(UTC)
        self.offset = timedelta()
        self.windows: dict[str, dict] = {}  # person -> view id, answers id at open, drawn at
        self.drawings: dict[str, dict] = {}  # message ts -> its first drawing
        self.renamed: dict[str, str] = {}  # old -> new
        self.retired: set[str] = set()
        self.drawn_now: set[str] = set()  # the people whose window was drawn in this step
        # each decided question's drawing after the last label change, and its answers then
        self.at_change: dict[str, tuple] = {}
        # the item a person's window Undo reopened in this step: shown to them again even if
        # another window holds it (theirs to answer again, ``Store.next_in_channels``' first)
        self.undone: dict[str, str] = {}
        self.bot: Bot = self.loop.run_until_complete(self._start())

    async def _start(self) -> Bot:
        self.fake = build_workspace()
        await self.fake.start()
        for user in PEOPLE:
            if user not in ("U0ANA", "U0RAJ"):
                self.fake.add_user(user, user.lower())
            self.fake.join_channel(CHANNEL, user)
        db = self.tmp / "hitl.db"
        with Store.open(db) as store:
            gold_rows(store, GOLD)
        seed(db, ITEMS)
        conf = make_settings(self.fake, self.tmp, max_open=2, gold_rate=1 / 3, votes=1)
        self.agen = start_bot(self.fake, conf)
        bot = await self.agen.__anext__()
        bot.rt.clock = lambda: self.base + self.offset
        await bot.dispatcher.fill()
        await self._settle(bot)
        return bot

    def teardown(self) -> None:
        async def stop() -> None:
            await self.agen.aclose()
            await self.fake.close()

        end_machine(self.loop, self.tmp, stop())

    def do(self, coro):
        return self.loop.run_until_complete(coro)

    async def _settle(self, bot: Bot | None = None) -> None:
        bot = bot or self.bot
        await bot.settled()
        for message in bot.posted():
            self.drawings.setdefault(message["ts"], message)

    # -- helpers -------------------------------------------------------------------------

    def answers(self, user: str) -> int:
        return self.bot.store.db.execute(
            "SELECT count(*) FROM answers WHERE user_id = ?", [user]
        ).fetchone()[0]

    async def send(self, payload: dict, again: str | None) -> None:
        """One click (``again``: sent again as it was, or a second click with its own
        action_ts); acked each time, one answer of the clicker's stored at most (an Undo
        also gives back those who answered the decided item their answer from before it:
        ``Store._reopen_answers``)."""
        user = payload["user"]["id"]
        before = self.answers(user)
        assert (await self.bot.action(payload)).status == 200
        if again == "resend":
            assert (await self.bot.action(payload)).status == 200
        elif again == "double":
            twice = json.loads(json.dumps(payload))
            twice["actions"][0]["action_ts"] = self.bot.next_action_ts()
            assert (await self.bot.action(twice)).status == 200
        await self._settle()
        assert self.answers(user) - before <= 1, "one click stored more than one answer"

    def view_of(self, user: str) -> dict | None:
        window = self.windows.get(user)
        return self.bot.fake.views[window["id"]] if window else None

    def buttons_of(self, drawn: dict) -> list[tuple[dict, dict]]:
        return [
            (b, e)
            for b in drawn["blocks"]
            for e in (b.get("elements") or [])
            if e.get("type") == "button"
        ]

    async def in_window(self, user: str, button: dict, again: str | None = None) -> None:
        view = self.view_of(user)
        payload = signing.block_actions_payload(
            user, button["action_id"], button["value"], view=view
        )
        payload["actions"][0]["action_ts"] = self.bot.next_action_ts()
        await self.send(payload, again)

    def marked(self, user: str, before: str | None) -> None:
        """Notes when ``user``'s window was drawn anew (its hash changed)."""
        view = self.view_of(user)
        if view is not None and view["hash"] != before:
            self.windows[user]["at"] = self.bot.rt.clock()
            self.drawn_now.add(user)

    # -- rules ---------------------------------------------------------------------------

    @initialize(warm=st.booleans())
    def start_from(self, warm: bool):
        """From the start, or (``warm``) after Ana answered three items in a window: at
        HITL_GOLD_RATE=1/3 the third is a gold question (so a short run has one scored)."""
        if warm:
            for _ in range(3):
                self.answer_in_window("U0ANA", 0, None, then_undo=False)

    @rule(k=st.integers(0, 3), user=PERSON, pick=PICK, old=st.booleans(), again=AGAIN)
    def click_in_channel(self, k: int, user: str, pick: int | None, old: bool, again):
        messages = [m for m in self.bot.posted() if "metadata" in m]
        if not messages:
            return
        message = messages[k % len(messages)]
        drawn = self.drawings.get(message["ts"], message) if old else message
        if not has_buttons(drawn):
            return
        if pick is None:
            label = None
        else:
            labels = [
                blocks.decode_value(e["value"])[1]
                for _, e in self.buttons_of(drawn)
                if ".label." in e["action_id"]
            ]
            label = labels[pick % len(labels)]
        payload = self.bot.button_payload(drawn, user, label)
        self.seen[f"channel click{' old' if drawn is not message else ''} {again}"] += 1
        self.do(self.send(payload, again))

    @rule(user=PERSON)
    def open_a_window(self, user: str):
        """``user`` runs `/hitl label` (a window open already is closed first: Done)."""
        if user in self.windows:
            self.close_a_window(user)

        async def go() -> None:
            before = self.answers_id()
            view_id = await open_window(self.bot, user)
            await self._settle()
            self.windows[user] = {"id": view_id, "from": before, "at": self.bot.rt.clock()}
            self.drawn_now.add(user)

        self.do(go())

    def answers_id(self) -> int:
        return self.bot.store.db.execute("SELECT coalesce(max(id), 0) FROM answers").fetchone()[0]

    @rule(user=PERSON, pick=PICK, again=AGAIN, then_undo=st.booleans())
    def answer_in_window(self, user: str, pick: int | None, again, then_undo: bool):
        if user not in self.windows:
            self.open_a_window(user)
        view = self.view_of(user)
        if view is None or window_item(self.bot, self.windows[user]["id"]) is None:
            return
        found = [
            e
            for _, e in self.buttons_of(view)
            if (".label." in e["action_id"]) == (pick is not None)
            and (pick is not None or e["action_id"].endswith(".skip"))
        ]
        if not found:
            return
        button = found[pick % len(found)] if pick is not None else found[0]
        before = view["hash"]
        self.seen[f"window {'skip' if pick is None else 'label'} {again}"] += 1
        self.do(self.in_window(user, button, again))
        self.marked(user, before)
        if then_undo:
            self.undo_in_window(user, again=False)

    @rule(user=PERSON, again=st.booleans())
    def undo_in_window(self, user: str, again: bool):
        view = self.view_of(user)
        if view is None:
            return
        offered = [
            b["accessory"]
            for b in view["blocks"]
            if (b.get("accessory") or {}).get("action_id") == UNDO_ACTION
        ]
        if not offered:
            return
        before = view["hash"]
        self.seen["window undo"] += 1
        self.undone[user] = blocks.decode_value(offered[0]["value"])[0]
        self.do(self.in_window(user, offered[0], "double" if again else None))
        self.marked(user, before)

    @rule(k=st.integers(0, 5))
    def undo_in_channel(self, k: int):
        offers = undo_offers(self.bot)
        if not offers:
            return
        user, value = offers[k % len(offers)]
        item = blocks.decode_value(value)[0]
        ts = next(
            (m["ts"] for m in self.bot.posted() if "metadata" in m and item_of(m) == item),
            signing.MESSAGE_TS,
        )
        url = self.bot.fake.response_url(CHANNEL)  # the note's (ephemeral), not the question's
        payload = signing.block_actions_payload(
            user, UNDO_ACTION, value, message_ts=ts, response_url=url
        )
        payload["actions"][0]["action_ts"] = self.bot.next_action_ts()
        self.seen["channel undo"] += 1
        self.do(self.send(payload, None))

    @rule(user=PERSON)
    def close_a_window(self, user: str):
        window = self.windows.pop(user, None)
        if window is None:
            return
        self.seen["window closed"] += 1
        view = self.bot.fake.views.pop(window["id"])  # Slack no longer shows it
        payload = signing.view_closed_payload(user, view)

        async def go() -> None:
            assert (await self.bot.action(payload)).status == 200
            await self._settle()

        self.do(go())

    @rule(action=st.sampled_from(["rename", "retire"]))
    def change_labels(self, action: str):
        if action == "rename" and "billing" not in self.renamed:
            self.seen["rename"] += 1
            text, self.renamed["billing"] = "labels rename billing invoices", "invoices"
        elif action == "retire" and "praise" not in self.retired:
            text = "labels retire praise"
            self.retired.add("praise")
            self.seen["retire"] += 1
        else:
            return

        async def go() -> None:
            assert (await self.bot.command(text, "U0ADMIN")).status == 200
            await self._settle()
            self.at_change = {
                m["ts"]: (m["text"], shown(m), self.answers_on(item_of(m)))
                for m in self.bot.posted()
                if "metadata" in m and not has_buttons(m)
            }

        self.do(go())

    @rule(minutes=st.sampled_from([1, 3, 11]))
    def time_passes(self, minutes: int):
        self.seen[f"{minutes} minutes pass"] += 1
        self.offset += timedelta(minutes=minutes)

    @rule()
    def dispatcher_fills(self):
        async def go() -> None:
            self.seen["filled"] += bool(await self.bot.dispatcher.fill())
            await self._settle()

        self.do(go())

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def every_message_shows_its_item_now(self):
        """As the builder draws it now; a decided question as it was drawn at the last label
        change while nothing changed its item since (a rename redraws the open questions
        only: a decided one is history, ``bot.store.labelset``)."""
        for message in self.bot.posted():
            if "metadata" not in message:
                continue
            now = (message["text"], shown(message))
            if now != expected(self.bot, item_of(message)):
                kept = self.at_change.get(message["ts"])
                assert kept == (*now, self.answers_on(item_of(message))), item_of(message)

    def answers_on(self, item: str) -> int:
        """The answers counted on ``item`` (an answer on a decided item is history: its
        message is not redrawn for it)."""
        return self.bot.store.db.execute(
            f"SELECT count(*) FROM answers WHERE item_id = ? AND {COUNTED}", [item]
        ).fetchone()[0]

    def latest(self, user: str) -> dict[str, tuple[str, str | None]]:
        """The person's latest counted answer per item: (source, label)."""
        rows = self.bot.store.db.execute(
            "SELECT item_id, source, label FROM answers WHERE id IN (SELECT max(id) FROM"
            f" answers WHERE user_id = ? AND {COUNTED} GROUP BY item_id)",
            [user],
        )
        return {item: (source, label) for item, source, label in rows}

    def theirs(self, user: str, status: dict[str, str]) -> set[str]:
        """The items a window may serve ``user`` besides gold turns: waiting or asked, not
        answered by them (an Undo gives it back)."""
        answered = {i for i, (source, _) in self.latest(user).items() if source != "undo"}
        return {i for i, s in status.items() if s in SERVED and i not in answered}

    @invariant()
    def every_window_drawn_shows_what_is_theirs(self):
        drawn, self.drawn_now = self.drawn_now, set()
        undone, self.undone = self.undone, {}
        status = dict(self.bot.store.db.execute("SELECT id, status FROM items").fetchall())
        now = self.bot.rt.clock()
        for user in drawn:
            window = self.windows.get(user)
            if window is None:
                continue
            item = window_item(self.bot, window["id"])
            theirs = self.theirs(user, status)
            self.seen["window gold" if status.get(item) == "gold" else f"window on {item}"] += 1
            if item is None:
                assert not theirs, f"{user}'s window says nothing is left, with {theirs} theirs"
                continue
            gold = status.get(item) == "gold"
            assert item in theirs or gold, f"{user}'s window shows {item} ({status.get(item)})"
            held = {
                window_item(self.bot, other["id"])
                for who, other in self.windows.items()
                if who != user and other["at"] + HOLD > now
            }
            if item in held and item != undone.get(user):
                self.seen["window on a held item"] += 1
                left = theirs - held
                assert not left, f"{user}'s window shows {item}, held for another, with {left}"

    @invariant()
    def every_window_counts_its_session(self):
        for user, window in self.windows.items():
            drawn = json.dumps(self.bot.fake.views[window["id"]]["blocks"])
            [said] = re.findall(r"([\d,]+) answered in this session", drawn) or re.findall(
                r"You answered ([\d,]+) in this session", drawn
            )
            # per item, the person's answers since the window opened, in order: one given in
            # the window counts, their own Undo takes it back, one in the channel leaves it
            counted: set[str] = set()
            for item, source, key in self.bot.store.db.execute(
                "SELECT item_id, source, dedupe_key FROM answers WHERE user_id = ? AND id > ?"
                f" AND {COUNTED} ORDER BY id",
                [user, window["from"]],
            ):
                if source == "modal":
                    counted.add(item)
                elif source == "undo" and key.startswith("undo:"):
                    counted.discard(item)
            assert int(said.replace(",", "")) == len(counted), (user, said, sorted(counted))

    @invariant()
    def stats_are_the_base_rows(self):
        now = self.bot.rt.clock()
        text = self.do(self._stats())
        today, week = period_starts(self.bot.rt.settings, now)
        for period, since in (("today", today), ("this week", week)):
            assert self.answers_line(period, since) in text, (period, text)
        db = self.bot.store.db
        counts = dict(db.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall())
        retired_decided = db.execute(
            "SELECT count(*) FROM labels WHERE label IN (SELECT value FROM json_each(?))",
            [json.dumps(sorted(self.retired))],
        ).fetchone()[0]
        waiting = sum(counts.get(s, 0) for s in WAITING)
        found = re.search(
            r"\*Items:\* ([\d,]+) waiting.*? · ([\d,]+) posted · ([\d,]+) resolved"
            r"(?: · ([\d,]+) waiting in /hitl review[^·]*)? · ([\d,]+) decided by the model"
            r" · ([\d,]+) skipped",
            text,
        )
        assert found, text
        said = [int((g or "0").replace(",", "")) for g in found.groups()]
        assert said == [
            waiting,
            counts.get("posted", 0),
            counts.get("resolved", 0) - retired_decided,
            retired_decided,
            counts.get("auto", 0),
            counts.get("skipped", 0),
        ], text
        self.seen["gold scored"] += bool(self.gold_scores())
        assert self.gold_scores() == {
            m[0]: (int(m[1]), int(m[2]))
            for m in re.findall(r"<@(\w+)> \d+% \((\d+) of (\d+),", text.split("on gold")[-1])
        } or ("on gold" not in text and not self.gold_scores()), text

    async def _stats(self) -> str:
        response = await self.bot.command("stats", "U0ADMIN")
        assert response.status == 200
        return json.loads(await response.text())["text"]

    def answers_line(self, period: str, since: str) -> str:
        """The line `/hitl stats` should show, recomputed from the answers: each person's
        latest answer per item in the period, not undone since."""
        period_rows = self.bot.store.db.execute(
            "SELECT DISTINCT user_id, item_id FROM answers WHERE source NOT IN ('import', 'undo')"
            " AND late = 0 AND created_at >= ?",
            [since],
        ).fetchall()
        in_period = set(period_rows)
        per: dict[str, list[int]] = {}
        for user, item, label in self.bot.store.db.execute(
            "SELECT user_id, item_id, label FROM answers WHERE id IN (SELECT max(id) FROM"
            f" answers WHERE {COUNTED} AND source != 'undo' AND created_at >= ?"
            " GROUP BY item_id, user_id)",
            [since],
        ):
            latest = self.latest(user).get(item)
            if (user, item) not in in_period or latest is None or latest[0] == "undo":
                continue
            per.setdefault(user, [0, 0])[label is None] += 1
        labels = sum(n for n, _ in per.values())
        skips = sum(s for _, s in per.values())
        if not labels + skips:
            return f"*Answers {period}:* 0"
        people = ", ".join(
            f"{person(u)} {labels_and_skips(n, s, ' + ')}"
            for u, (n, s) in sorted(per.items(), key=lambda p: (-p[1][0], p[0]))
        )
        return (
            f"*Answers {period}:* {labels + skips:,} ({labels_and_skips(labels, skips)}): {people}"
        )

    def gold_scores(self) -> dict[str, tuple[int, int]]:
        """Per person: (right, answered) on the gold questions whose gold label is in force,
        their latest counted label on each, a renamed label under its new name."""
        gold = {i: self.renamed.get(g, g) for i, _, g in GOLD if g not in self.retired}
        scores: dict[str, list[int]] = {}
        for user in PEOPLE:
            for item, (source, label) in self.latest(user).items():
                if item in gold and source != "undo" and label is not None:
                    score = scores.setdefault(user, [0, 0])
                    score[0] += self.renamed.get(label, label) == gold[item]
                    score[1] += 1
        return {u: (r, n) for u, (r, n) in scores.items()}


# HITL_MACHINE_HUNT=N: N examples of 25 steps, random (to look for defects, not in CI)
MACHINE_SETTINGS = machine_settings(16, 14, hunt_env="HITL_MACHINE_HUNT", hunt_steps=25)


def test_the_server_s_surfaces_agree_with_the_store_after_any_sequence():
    run_machine(ServerMachine, MACHINE_SETTINGS)
