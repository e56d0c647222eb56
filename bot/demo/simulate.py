"""Simulated teammates and the demo's retrain cadence.

The teammates answer open questions with the data's true labels (wrong on purpose at
``error_rate``), clicking through the sandbox like a person would: each answer is a signed
``block_actions`` request to the bot's ``/slack/events``. With ``skip_unknown`` they click Skip
on a question whose true label they do not know (an item of a partly labeled ``--data`` file),
so that once enough of them did (HITL_SKIPS_TO_DISCARD) the bot sets it aside and posts another.
Every ``retrain_every`` new labels the real retrain job runs (``bot.learning.jobs.run_retrain``)
and the champion is scored on the held-out items, so the accuracy can be watched as it climbs.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.demo.data import DemoItem
from bot.learning.jobs import run_retrain
from bot.learning.typical import typical_until
from bot.runtime import Runtime
from bot.sandbox.workspace import Sandbox
from bot.slack.blocks import SKIP_ACTION, decode_value, item_id_from_block
from bot.slack.dispatch import Dispatcher
from bot.words import count

logger = logging.getLogger(__name__)

Echo = Callable[[str], None]

# Drive mode: dispatcher rounds tried for one question before giving up. A round posts an
# audit with probability HITL_AUDIT_RATE when nothing uncertain waits, so 40 / rate rounds all
# fail with probability about e^-40.
ROUNDS_PER_AUDIT = 40
MIN_ROUNDS = 100


@dataclass
class Score:
    """The champion's accuracy on the held-out items after some number of labels."""

    n_labels: int
    version: int | None
    accuracy: float | None
    n_items: int

    def summary(self) -> str:
        if self.version is None or self.accuracy is None:
            return "no model yet"
        accuracy = f"held-out accuracy {self.accuracy:.1%} ({count(self.n_items, 'item')})"
        return f"model v{self.version}, {accuracy}"

    def line(self) -> str:
        return f"after {count(self.n_labels, 'label')}: {self.summary()}"


async def score_champion(rt: Runtime, holdout: Sequence[DemoItem]) -> Score:
    n_labels = rt.store.count_labels()
    champion = rt.champion
    if champion is None or not holdout:
        return Score(n_labels, None, None, len(holdout))
    texts = [item.text for item in holdout]
    predicted = await asyncio.to_thread(champion.classifier.predict, texts)
    right = sum(p == item.label for p, item in zip(predicted, holdout, strict=True))
    return Score(n_labels, champion.version, right / len(holdout), len(holdout))


@dataclass
class Retrainer:
    """Runs the real retrain job each time ``every`` more labels have come in."""

    rt: Runtime
    holdout: Sequence[DemoItem]
    every: int
    echo: Echo
    scores: list[Score] = field(default_factory=list)
    _done_at: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self._done_at = self.rt.store.count_labels()

    def is_due(self) -> bool:
        return self.every > 0 and self.rt.store.count_labels() >= self._done_at + self.every

    async def maybe_retrain(self) -> Score | None:
        async with self._lock:
            if not self.is_due():
                return None
            n_labels = self.rt.store.count_labels()
            outcome = await run_retrain(self.rt, f"demo: every {count(self.every, 'label')}")
            self._done_at = n_labels
            score = await score_champion(self.rt, self.holdout)
            self.scores.append(score)
            logger.info("demo retrain: %s (%s)", outcome.status, outcome.reason)
            self.echo(f"Retrain {outcome.status}; {score.line()}")
            return score

    async def watch(self, changed: asyncio.Event) -> None:
        """Background task: retrain when due, checking after every change in the workspace."""
        while True:
            await changed.wait()
            changed.clear()
            try:
                await self.maybe_retrain()
            except Exception:  # noqa: BLE001 - the demo keeps running after a failed retrain
                logger.exception("demo retrain failed")


@dataclass
class Teammate:
    user_id: str
    name: str
    error_rate: float | None = None  # None: the simulator's


class Simulator:
    """Simulated teammates answering the questions in ``channel``.

    With ``dispatcher`` given, the simulator moves the queue itself (it waits for the bot's work
    after each answer, then fills the channel), so a run is the same every time for a seed.
    Without it, the bot's own background dispatcher posts and the simulator waits for it.

    A question whose item is not in ``truth`` is left to the people in the workspace, or, with
    ``skip_unknown`` (no person is there: drive mode), skipped by each teammate in turn.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        rt: Runtime,
        channel: str,
        teammates: Sequence[Teammate],
        truth: dict[str, str],
        labels: Sequence[str],
        *,
        error_rate: float = 0.1,
        seed: int = 0,
        dispatcher: Dispatcher | None = None,
        retrainer: Retrainer | None = None,
        pace: float = 0.0,
        skip_unknown: bool = False,
    ):
        self.sandbox = sandbox
        self.rt = rt
        self.channel = channel
        self.teammates = list(teammates)
        self.truth = truth
        self.labels = list(labels)
        self.error_rate = error_rate
        self.rng = random.Random(seed)
        self.dispatcher = dispatcher
        self.retrainer = retrainer
        self.pace = pace
        self.skip_unknown = skip_unknown
        self.answered: set[str] = set()
        self.skipped_by: dict[str, set[str]] = {}  # item id -> the teammates who skipped it
        self.n_answers = 0
        self.n_skips = 0

    def open_questions(self) -> list[tuple[dict, str]]:
        """Question messages with buttons whose item we know the truth of and did not answer;
        with ``skip_unknown``, also those we do not know and some teammate has not skipped."""
        found = []
        for message in self.sandbox.fake.stored_messages(self.channel):  # looked at, not kept
            for block in message.get("blocks") or []:
                item_id = item_id_from_block(block.get("block_id"))
                if block.get("type") != "actions" or not item_id:
                    continue
                if item_id in self.truth:
                    if item_id not in self.answered:
                        found.append((copy.deepcopy(message), item_id))
                elif self.skip_unknown and self._skippers(item_id):
                    found.append((copy.deepcopy(message), item_id))
        return found

    def _skippers(self, item_id: str) -> list[Teammate]:
        """The teammates who have not skipped ``item_id`` yet."""
        done = self.skipped_by.get(item_id, set())
        return [t for t in self.teammates if t.user_id not in done]

    async def next_question(self, timeout: float) -> tuple[dict, str] | None:  # noqa: ASYNC109
        if self.dispatcher is not None:
            return await self._drive(self.dispatcher)
        try:
            await self.sandbox.fake.wait_for(lambda: bool(self.open_questions()), timeout)
        except TimeoutError:
            return None
        return self.rng.choice(self.open_questions())

    async def _drive(self, dispatcher: Dispatcher) -> tuple[dict, str] | None:
        """Move the queue as the server's background dispatcher would, round after round,
        until a question we can answer is up; None when no round ever could post one.

        A round may post nothing although unlabeled items remain: once the model is sure of
        every item (all at or above HITL_THRESHOLD), only audit picks are left, and each round
        draws one with probability HITL_AUDIT_RATE. The server's dispatcher comes back at its
        next wake or tick; here the next round runs at once (the rounds use the dispatcher's
        seeded RNG, so a seed gives the same questions)."""
        rate = self.rt.settings.audit_rate
        rounds = max(MIN_ROUNDS, math.ceil(ROUNDS_PER_AUDIT / rate)) if rate > 0 else MIN_ROUNDS
        for round_ in range(rounds):
            await self.rt.background.drain()
            posted = await dispatcher.fill()
            await self.rt.background.drain()
            if posted or not round_:  # else no question is new: the channel is not read again
                found = self.open_questions()
                if found:
                    return self.rng.choice(found)
            if not self._may_post_later():
                return None
        logger.warning("no question posted in %d dispatcher rounds; the simulation stops", rounds)
        return None

    def _may_post_later(self) -> bool:
        """Whether another dispatcher round could post here: the channel has room and some
        unlabeled item is not posted yet (one only an audit could pick needs a model and an
        audit share: without a model, or with one younger than HITL_WARM_UP labels, every pick
        is random; below HITL_TYPICAL_UNTIL, TypiClust's picks may be items the model is sure
        of too)."""
        store, settings = self.rt.store, self.rt.settings
        if store.open_post_counts().get(self.channel, 0) >= settings.max_open:
            return False  # full of questions these teammates cannot answer (or already did)
        counts = store.count_items()
        if counts.get("new", 0) or counts.get("queued", 0):
            return True
        if not counts.get("auto", 0):
            return False  # every item is labeled, posted or set aside
        model = self.rt.model
        return (
            model is None
            or settings.audit_rate > 0
            or model.n_train < max(settings.warm_up, typical_until(settings, store))
        )

    def choose_label(self, item_id: str, teammate: Teammate | None = None) -> str:
        true = self.truth[item_id]
        error_rate = self.error_rate
        if teammate is not None and teammate.error_rate is not None:
            error_rate = teammate.error_rate
        if self.rng.random() < error_rate:
            return self.rng.choice([label for label in self.labels if label != true] or [true])
        return true

    async def answer(self, message: dict, item_id: str, teammate: Teammate, label: str) -> int:
        """Click ``label``'s button, or pick it in the "Other…" select; returns the HTTP status."""
        for block in _actions(message, item_id):
            for element in block.get("elements") or []:
                if element.get("type") == "button":
                    _, button_label = decode_value(element.get("value"))
                    if button_label == label:
                        return await self._click(message, block, element, None, teammate)
            for element in block.get("elements") or []:
                if element.get("type") in ("static_select", "external_select"):
                    return await self._click(message, block, element, label, teammate)
        raise LookupError(f"no way to answer {label!r} on item {item_id}")

    async def skip(self, message: dict, item_id: str, teammate: Teammate) -> int:
        """Click the question's Skip button; returns the HTTP status."""
        for block in _actions(message, item_id):
            for element in block.get("elements") or []:
                if element.get("type") == "button" and SKIP_ACTION.match(
                    element.get("action_id") or ""
                ):
                    return await self._click(message, block, element, None, teammate)
        raise LookupError(f"no Skip button on item {item_id}")

    async def _click(
        self, message: dict, block: dict, element: dict, value: str | None, teammate: Teammate
    ) -> int:
        reply = await self.sandbox.click(
            teammate.user_id,
            action_id=element["action_id"],
            block_id=block["block_id"],
            value=value,
            channel=self.channel,
            ts=message["ts"],
        )
        return reply.status

    async def run(self, answers: int | None = None, wait: float = 3600.0) -> int:
        """Answer until ``answers`` have been given (None: until nothing is left)."""
        while answers is None or self.n_answers < answers:
            found = await self.next_question(wait)
            if found is None:
                break
            message, item_id = found
            if item_id not in self.truth:  # only with skip_unknown: see open_questions
                await self._skip_by_someone(message, item_id)
                continue
            teammate = self.rng.choice(self.teammates)
            label = self.choose_label(item_id, teammate)
            status = await self.answer(message, item_id, teammate, label)
            self.answered.add(item_id)
            if status != 200:
                logger.warning("simulated answer on %s got HTTP %d", item_id, status)
                continue
            self.n_answers += 1
            if self.retrainer is not None:
                if self.dispatcher is not None:
                    await self.rt.background.drain()
                await self.retrainer.maybe_retrain()
            if self.pace:
                await asyncio.sleep(self.pace)  # a teammate's reading time, so people can watch
        return self.n_answers

    def n_set_aside(self) -> int:
        """Items the teammates skipped that the bot has set aside (status skipped)."""
        items = (self.rt.store.get_item(item_id) for item_id in self.skipped_by)
        return sum(1 for item in items if item is not None and item["status"] == "skipped")

    async def _skip_by_someone(self, message: dict, item_id: str) -> None:
        """One of the teammates who have not skipped the question yet clicks Skip ("not me"),
        as a person who does not know the answer would. The bot sets the item aside once
        HITL_SKIPS_TO_DISCARD people skipped it, which frees its place in the channel."""
        teammate = self.rng.choice(self._skippers(item_id))
        status = await self.skip(message, item_id, teammate)
        self.skipped_by.setdefault(item_id, set()).add(teammate.user_id)
        if status != 200:
            logger.warning("simulated skip on %s got HTTP %d", item_id, status)
            return
        self.n_skips += 1
        if self.dispatcher is not None:
            await self.rt.background.drain()
        if self.pace:
            await asyncio.sleep(self.pace)


def _actions(message: dict, item_id: str) -> list[dict]:
    """The question's actions blocks for ``item_id`` (its buttons and selects)."""
    return [
        block
        for block in message.get("blocks") or []
        if block.get("type") == "actions" and item_id_from_block(block.get("block_id")) == item_id
    ]
