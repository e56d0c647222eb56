"""The model's lifecycle through the real server, driven by a stateful property test: what the
server machine (tests/bot/test_server_machine.py) does not drive, the models that ask and answer.

``LearningMachine`` starts ``init_app`` once per example (a fake Slack; 18 imported labels of
three, 14 items to ask; HITL_REFRESH_EVERY=3; every item asked, HITL_THRESHOLD=1; fits in a
worker the test can hold at its start, ``HeldFits``, which fits in a thread as the product's
own thread fit does), from no model or from v1 fitted on the imported labels, after three
answers (a refresh) or none, and then, in any order: people
answer questions (signed clicks; every third label or so makes a refresh of the working model
due), an admin retrains (`/hitl retrain`, forced or not) or the nightly job runs, an admin
changes the label set (`/hitl labels rename/merge/retire/add`), also while a fit is under way
(the fit held after it read its labels, the change made, the fit let go), rolls back to an
earlier champion or (`--force`) to a rejected one (`/hitl rollback`), time passes on the
runtime's clock, a producer asks `/api/predict`, someone opens App Home or asks `/hitl
accuracy`. After each step, once the
server has settled and no fit runs:

* `/healthz` and `/metrics` name the same champion, working model and model that asks and
  answers, the champion is the one the database and the models folder name, and the model
  that asks and answers is the working model when there is one, else the champion;
* no model the gate rejected is the champion unless an admin rolled back to it; a promotion
  or a rollback ends the working model (the new champion asks and answers), a rejected
  retrain leaves it in place;
* never two fits at once (a refresh beside a refresh or a retrain);
* each promoted version's report reached the report channel once;
* each question posted since the last step comes from the model that asks (a question posted
  after a refresh is the refreshed model's);

and in the steps that read them: `/api/predict` answers with the model `/healthz` names, and
its label, model label and ranked labels are labels of the set in force (never a label retired
or renamed or merged away); App Home and `/hitl accuracy` name the model `/healthz` names.

Deterministic (``derandomize``; the runtime's clock moved by the test; a held fit is let go by
the test, nothing sleeps): 8 examples of 8 steps, ~7 s of CPU (a retrain saves and loads its
model file; every other example starts from a model). ``HITL_LEARN_MACHINE_HUNT=N`` runs N random
examples of 20 steps instead, to look for defects (minutes; not for CI).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from bot.eventloop import FastLaneEventLoop
from bot.labelset import current_labels
from bot.learning import retrain
from bot.learning.jobs import REPORT_EVENT, Trainer, scheduled_retrain
from bot.slack.blocks import decode_value
from tests import signing
from tests.bot.harness import (
    Bot,
    Item,
    has_buttons,
    item_of,
    make_settings,
    seed,
    seed_champion,
    start_bot,
)
from tests.fake_slack import CHANNEL, build_workspace
from tests.machines import end_machine, machine_settings, run_machine

# each retrain's learning curve remembered by its arguments (tests/bot/conftest.py)
pytestmark = pytest.mark.usefixtures("remembered_curves")

TOKEN = "learning-machine-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADMIN = "U0ADMIN"
WORDS = {
    "billing": ["refund", "invoice", "payment", "charged", "card", "receipt"],
    "bug": ["crash", "error", "freeze", "broken", "blank", "timeout"],
    "how_to": ["how", "where", "guide", "setup", "export", "configure"],
}
LABELED = [
    Item(f"L{label}{n}", f"{word} ticket {n} {label[:3]}", label)
    for label, words in WORDS.items()
    for n, word in enumerate(words)
]
TO_ASK = [
    Item(f"u{n}", f"{WORDS[label][n % 6]} please {n}")
    for n, label in enumerate(["billing", "bug", "how_to"] * 5)
][:14]
TEXTS = st.sampled_from(["refund my card", "the app crashes", "how do I export", "hello"])


MADE: dict[bool, Path] = {}


def made(first: bool) -> Path:
    """A folder with the database (the imported labels, the items to ask) and, when ``first``,
    v1 in its models folder, fitted on the imported labels (no retrain made it: no report);
    made once per process (a fit and a model file's save), copied by each example."""
    if first not in MADE:
        folder = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
        seed(folder / "hitl.db", LABELED + TO_ASK)
        if first:
            seed_champion(folder / "hitl.db", [i.text for i in LABELED], [i.label for i in LABELED])
        MADE[first] = folder
    return MADE[first]


class HeldFits:
    """The fit worker of a server, as ``Trainer.worker`` (`hitl serve` fits in a child): fits
    in a thread (``retrain.compute``, ``retrain.compute_refresh``, as with no worker), and
    while ``held`` each fit waits at its start, its labels read, until the test lets it go."""

    closed = False

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0
        self.arrived = asyncio.Event()

    def hold(self) -> None:
        self.gate.clear()
        self.arrived.clear()

    def release(self) -> None:
        self.gate.set()

    async def _held(self) -> None:
        self.waiting += 1
        self.arrived.set()
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1

    async def run(self, plan, registry, champion):  # noqa: ANN001, ANN201
        await self._held()
        return await asyncio.to_thread(retrain.compute, plan, registry, champion)

    async def refresh(self, plan, champion):  # noqa: ANN001, ANN201
        await self._held()
        return await asyncio.to_thread(retrain.compute_refresh, plan, champion)

    def child_pids(self) -> list[int]:
        return []

    def close(self) -> None:
        self.closed = True


def named_model(text: str) -> int | None | str:
    """The version a surface's words name as the model that asks and answers (a refresh's
    negative), None for no model; the text itself when it names none of them."""
    if found := re.search(r"\br(\d+) asks and answers", text):
        return -int(found[1])
    if found := re.search(r"\bv(\d+), trained on [\d,]+ labels; it asks and answers", text):
        return int(found[1])
    if "no model yet" in text:
        return None
    return text


class LearningMachine(RuleBasedStateMachine):
    seen: Counter[str] = Counter()  # what the steps did, over the run (printed by the test)

    def __init__(self) -> None:
        super().__init__()
        self.loop = FastLaneEventLoop()
        self.tmp = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
        self.base = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
        self.offset = timedelta()
        self.rolled_back_to: set[int] = set()  # versions an admin made champion again
        self.forced_to: set[int] = set()  # champions no retrain promoted
        self.names = 0  # fresh label names made (a name renamed away is never given again)
        self.posts_seen = 0  # question posts checked so far
        self.agen = None

    async def _start(self) -> Bot:
        self.fake = build_workspace()
        await self.fake.start()
        self.fake.join_channel(CHANNEL, "U0ANA")
        shutil.copytree(made(self.first), self.tmp, dirs_exist_ok=True)
        if self.first:
            self.forced_to.add(1)
        conf = make_settings(
            self.fake,
            self.tmp,
            labels=tuple(WORDS),
            max_open=1,
            audit_rate=0.0,
            threshold=1.0,  # every item waits for people: the queue is all questions
            api_token=TOKEN,
            refresh_every=3,
        )
        self.agen = start_bot(self.fake, conf)
        bot = await self.agen.__anext__()
        bot.rt.clock = lambda: self.base + self.offset
        Trainer.of(bot.rt).worker = HeldFits()
        return bot

    def teardown(self) -> None:
        async def stop() -> None:
            if self.agen is None:
                return
            self.worker.release()
            await self.agen.aclose()
            await self.fake.close()

        end_machine(self.loop, self.tmp, stop())

    def do(self, coro):  # noqa: ANN001, ANN201
        return self.loop.run_until_complete(coro)

    # -- helpers -------------------------------------------------------------------------

    @property
    def trainer(self) -> Trainer:
        return Trainer.of(self.bot.rt)

    def labels(self) -> list[str]:
        return current_labels(self.bot.rt.settings, self.bot.store)

    async def fits_done(self) -> None:
        """The held fits let go, the retrain and the refreshes under way ended."""
        self.worker.release()
        trainer = self.trainer
        for _ in range(4):  # a retrain's end wakes a refresh, a refresh's end may start another
            if trainer.task is not None:
                await asyncio.wait([trainer.task], timeout=120)
            await trainer.settled()
            await self.bot.settled()
        assert trainer.task is None or trainer.task.done()

    async def say(self, text: str, user: str = ADMIN) -> str:
        """``/hitl text``: what the person was told (the ack, and any reply after it)."""
        before = len(self.fake.responses)
        response = await self.bot.command(text, user=user)
        assert response.status == 200, f"/hitl {text}: {response.status}"
        said = [await response.text()]
        await self.bot.settled()
        said += [json.dumps(r["payload"]) for r in self.fake.responses[before:]]
        return "\n".join(said)

    def open_question(self) -> dict | None:
        posted = {
            row[0]
            for row in self.bot.store.db.execute("SELECT id FROM items WHERE status = 'posted'")
        }
        for message in reversed(self.bot.posted()):
            if has_buttons(message) and item_of(message) in posted:
                return message
        return None

    async def answer_one(self, pick: int) -> bool:
        await self.bot.dispatcher.fill()
        await self.bot.settled()
        self.asked_by_the_model_that_asks()
        message = self.open_question()
        if message is None:
            return False
        shown = [
            decode_value(element["value"])[1]
            for block in message["blocks"]
            for element in block.get("elements", [])
            if element.get("type") == "button" and ".label." in element["action_id"]
        ]
        label = shown[pick % len(shown)]
        response = await self.bot.action(self.bot.button_payload(message, "U0ANA", label))
        assert response.status == 200
        await self.bot.settled()
        return True

    def asked_by_the_model_that_asks(self) -> None:
        """Each question posted since the last look comes from the model that asks now."""
        model = self.bot.rt.model
        rows = self.bot.store.db.execute(
            "SELECT rowid, model_version FROM posts WHERE rowid > ? ORDER BY rowid",
            [self.posts_seen],
        ).fetchall()
        for rowid, version in rows:
            assert version == (model.version if model else None), (rowid, version, model)
            self.posts_seen = rowid

    def registry(self):  # noqa: ANN201
        return retrain.registry_for(self.bot.rt.settings)

    async def health(self) -> dict:
        response = await self.bot.http.get("/healthz")
        return await response.json()

    async def metric_roles(self) -> dict[str, int | None]:
        response = await self.bot.http.get("/metrics", headers=AUTH)
        text = await response.text()
        roles: dict[str, int | None] = dict.fromkeys(("champion", "working", "asks", "answers"))
        for role, value in re.findall(r'^hitl_model_version\{role="(\w+)"\} (\S+)$', text, re.M):
            roles[role] = int(float(value))
        return roles

    # -- rules ---------------------------------------------------------------------------

    @initialize(first=st.booleans(), answered=st.sampled_from([3, 0]))
    def start(self, first: bool, answered: int):
        """From no model, or (``first``) from v1, fitted on the imported labels (no retrain
        made it: it has no report); then ``answered`` questions answered (3: a refresh)."""
        self.first = first
        self.bot: Bot = self.do(self._start())
        self.worker: HeldFits = Trainer.of(self.bot.rt).worker
        self.seen["start with a model" if first else "start with none"] += 1
        if answered:
            self.answer(answered, 0)

    @rule(n=st.sampled_from([3, 1]), pick=st.integers(0, 2))  # 3: a refresh due
    def answer(self, n: int, pick: int):
        async def go() -> None:
            for _ in range(n):
                if not await self.answer_one(pick):
                    self.seen["no question left"] += 1
                    break
                self.seen["answer"] += 1
                await self.fits_done()

        self.do(go())

    @rule(force=st.booleans(), nightly=st.booleans())
    def retrain(self, force: bool, nightly: bool):
        rt = self.bot.rt
        champion, working = rt.champion, rt.working

        async def go() -> None:
            if nightly:
                await scheduled_retrain(rt)
            else:
                await self.say("retrain --force" if force else "retrain")
            await self.fits_done()

        self.do(go())
        if rt.champion is not champion:  # promoted: it asks and answers, the working model ends
            assert rt.working is None, (rt.champion.version, rt.working.version)
        elif working is not None:  # rejected (or nothing new): the working model stays
            assert rt.working is not None
        self.seen["nightly retrain" if nightly else f"retrain force={force}"] += 1

    @rule(op=st.sampled_from(["rename", "merge", "retire", "add"]), which=st.integers(0, 5))
    def change_labels(self, op: str, which: int):
        self.do(self.change(op, which))

    @rule(
        fit=st.sampled_from(["retrain", "refresh"]),
        op=st.sampled_from(["rename", "merge", "retire", "add"]),
        which=st.integers(0, 5),
    )
    def change_labels_during_a_fit(self, fit: str, op: str, which: int):
        """A fit held once it read its labels; the label set changed; the fit let go."""

        async def go() -> None:
            self.worker.hold()
            if fit == "retrain":
                await self.say("retrain --force")
                task = self.trainer.task
                if task is not None and not task.done():  # its labels read, the fit next
                    arrived = asyncio.ensure_future(self.worker.arrived.wait())
                    await asyncio.wait([arrived, task], return_when=asyncio.FIRST_COMPLETED)
                    arrived.cancel()
            else:
                for _ in range(4):
                    if self.worker.arrived.is_set() or not await self.answer_one(which):
                        break
            if not self.worker.arrived.is_set():
                self.seen[f"no {fit} to hold"] += 1
                await self.fits_done()
                return
            assert self.worker.waiting == 1
            self.seen[f"{op} during a {fit}"] += 1
            await self.change(op, which)
            await self.fits_done()

        self.do(go())

    async def change(self, op: str, which: int) -> None:
        labels = self.labels()
        label = labels[which % len(labels)]
        if op in ("merge", "retire") and len(labels) <= 2:
            op = "add"
        if op == "rename":
            self.names += 1
            new = f"topic{self.names}"
            said = await self.say(f"labels rename {label} {new}")
            expected = sorted([*(x for x in labels if x != label), new])
        elif op == "merge":
            into = labels[(which + 1) % len(labels)]
            said = await self.say(f"labels merge {label} {into}")
            expected = sorted(x for x in labels if x != label)
        elif op == "retire":
            said = await self.say(f"labels retire {label}")
            expected = sorted(x for x in labels if x != label)
        else:
            self.names += 1
            new = f"topic{self.names}"
            said = await self.say(f"labels add {new}")
            expected = sorted([*labels, new])
        assert sorted(self.labels()) == expected, said
        self.seen[f"labels {op}"] += 1

    @rule(which=st.integers(0, 5))
    def roll_back(self, which: int):
        """To an earlier champion, or (``--force``) to a version the gate rejected."""
        champion = self.bot.rt.champion
        earlier = [
            v
            for v in self.registry().versions()
            if v.status in ("retired", "rejected")
            and (champion is None or v.version != champion.version)
        ]
        if not earlier:
            self.seen["no rollback to make"] += 1
            return
        chosen = earlier[which % len(earlier)]
        force = " --force" if chosen.status == "rejected" else ""
        said = self.do(self.say(f"rollback {chosen.version}{force}"))
        assert f"Model v{chosen.version} is the champion again" in said, said
        assert self.bot.rt.champion.version == chosen.version
        assert self.bot.rt.working is None  # the rolled-back-to champion asks and answers
        self.rolled_back_to.add(chosen.version)
        if chosen.status == "rejected":
            self.forced_to.add(chosen.version)
        self.seen[f"rollback to a {chosen.status} version"] += 1

    @rule(hours=st.sampled_from([1, 9, 24]))
    def time_passes(self, hours: int):
        self.offset += timedelta(hours=hours)
        self.seen["time passes"] += 1

    @rule(text=TEXTS)
    def producer_asks(self, text: str):
        async def go() -> None:
            self.names += 1
            response = await self.bot.http.post(
                "/api/predict", json={"id": f"p{self.names}", "text": text}, headers=AUTH
            )
            body = await response.json()
            assert response.status == 200, body
            await self.bot.settled()
            health = await self.health()
            assert body["model_version"] == health["answers"], (body, health)
            in_force = set(self.labels())
            named = {body["label"], body.get("model_label")} - {None}
            named |= {r["label"] for r in body.get("ranked") or []}
            assert named <= in_force, f"{named - in_force} not in force {in_force}: {body}"

        self.do(go())
        self.seen["predict"] += 1

    @rule()
    def surfaces_name_the_model(self):
        async def go() -> None:
            health = await self.health()
            assert (await self.bot.event(signing.app_home_opened_event("U0ANA"))).status == 200
            await self.bot.settled()
            home = json.dumps(self.fake.home["U0ANA"])
            assert named_model(home) == health["asks"], (health, home[:2000])
            said = await self.say("accuracy")
            assert named_model(said) == health["asks"], (health, said[:2000])

        self.do(go())
        self.seen["surfaces"] += 1

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def every_surface_names_the_same_models(self):
        rt = self.bot.rt
        health = self.do(self.health())
        roles = {k: health[k] for k in ("champion", "working", "asks", "answers")}
        assert roles == rt.model_roles() == self.do(self.metric_roles()), roles
        model = rt.working or rt.champion
        assert roles["asks"] == roles["answers"] == (model.version if model else None)
        assert roles["working"] is None or roles["working"] < 0
        assert rt.store.champion_version() == roles["champion"]
        named = self.registry().champion()
        assert (named.version if named else None) == roles["champion"]

    @invariant()
    def a_rejected_model_never_answers(self):
        champion = self.bot.rt.champion
        if champion is None:
            return
        status = {v.version: v.status for v in self.registry().versions()}
        rejected = {v for v, s in status.items() if s == "rejected"} - self.rolled_back_to
        assert champion.version not in rejected

    @invariant()
    def never_two_fits_at_once(self):
        assert self.trainer.most_fits_at_once <= 1
        assert self.worker.waiting == 0

    @invariant()
    def each_promotion_is_reported_once(self):
        reports = [
            m.get("text", "") + json.dumps(m.get("blocks", []))
            for m in self.fake.messages(self.bot.rt.settings.effective_report_channel)
            if (m.get("metadata") or {}).get("event_type") == REPORT_EVENT
        ]
        promoted = [
            v.version
            for v in self.registry().versions()
            if any(h.get("status") == "champion" for h in v.history) or v.status == "champion"
        ]
        for version in promoted:
            named = re.compile(rf"\bv{version}: promoted\b")
            told = [r for r in reports if named.search(r)]
            # a version made champion by a rollback (to a rejected one) has no promotion
            # report, nor the first model, when an example starts from one
            once = told == [] if version in self.forced_to else len(told) == 1
            assert once, (version, reports)


# HITL_LEARN_MACHINE_HUNT=N: N examples of 20 steps, random (to look for defects, not in CI);
# read at import, as the suite's conftest takes HITL_* out of each test's environment
MACHINE_SETTINGS = machine_settings(8, 8, hunt_env="HITL_LEARN_MACHINE_HUNT", hunt_steps=20)


def test_the_learning_loop_keeps_its_promises():
    run_machine(LearningMachine, MACHINE_SETTINGS)
