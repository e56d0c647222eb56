"""The gold questions a labeling window mixes into each person's items, at HITL_GOLD_RATE.

The channel's gold questions come at HITL_GOLD_RATE of its posts (``Dispatcher._gold_instead``);
a window serves the posted questions, then the items waiting in the queue, so without this a
person who labels in the window met gold only when one was posted, and their accuracy on
gold (`/hitl stats`, App Home) thinned out the more they labeled there. Each person's window
items come in turns of ``gold_every`` (round(1 / HITL_GOLD_RATE)): after ``gold_every - 1``
other items, the next one is a gold question waiting to be asked (status gold) that the
person has not answered, when one is theirs to see; else the turn stays due, and the next
drawing looks again. HITL_GOLD_RATE=0: none.

A window's gold question is the channel's: the same item, asked once each by as many people
as it needs answers (HITL_VOTES; held for them as any item is, ``bot.slack.holds``), answered
with the same store call, so it is scored, counted and decided as a click in the channel is
(an answer that makes a majority decides it; with more votes to go it waits, for other windows
and for the channel). It looks like the waiting items beside it: guessed, as it is drawn, by
the model that scores the queue (in a worker thread, as the dispatcher guesses a gold question
it posts), routed by that guess as a waiting item is (a window is served its channels' items),
and never one the model is sure of (a guess at or above HITL_THRESHOLD): no waiting item the
window serves shows one (those wait for the channel's audit share). Before the first model,
it shows no guess, as the items not scored yet do.

The turns are counted in the server's memory, per person, as the holds are: the items they
answered in a window (labels and skips; not a click that was not stored, nor the same answer
again) since the last gold question they answered there. A window closed on a gold question
leaves the turn due: the next window shows one first. A restart counts from the start. Nothing is
written per drawing; the lookup reads the gold items (few) along their index, a page at a
time, each person's answer looked up by id, in a worker thread (``gold_for_window``).
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from bot import eventloop
from bot.errors import StoreError
from bot.labelset import channel_for, not_in_force, routes_in_force
from bot.learning.scoring import guesses_in_force
from bot.runtime import Runtime
from bot.store import Store

GOLD_PAGE = 100  # gold items read (and guessed, in a worker thread) per page
GOLD_DEPTH = 1_000  # gold items looked at, at most, for one drawing


def gold_every(rate: float) -> int | None:
    """One window item in how many is a gold question at HITL_GOLD_RATE ``rate`` (None: none)."""
    if rate <= 0:
        return None
    return max(1, round(1 / rate))


@dataclass(frozen=True)
class WindowGold:
    """A gold question for a window: its item, and the guess it shows (model version and
    ranked guesses; None and [] before the first model)."""

    item_id: str
    model_version: int | None
    ranked: list[Any]


class GoldTurns:
    """Per person: how many items they answered in a window since their last gold question
    (``GoldTurns.answered``)."""

    def __init__(self) -> None:
        self.of_person: dict[str, int] = {}

    @classmethod
    def of(cls, rt: Runtime) -> GoldTurns:
        """The runtime's (made at first use)."""
        turns = _TURNS.get(rt)
        if turns is None:
            turns = _TURNS[rt] = cls()
        return turns

    def due(self, user_id: str, every: int | None) -> bool:
        """Whether ``user_id``'s next window item is a gold question's turn."""
        return every is not None and self.of_person.get(user_id, 0) >= every - 1

    def answered(self, user_id: str, *, gold: bool) -> None:
        """``user_id`` answered an item in a window (a label or a skip): a gold question
        (``gold``) starts the count again; another counts one."""
        self.of_person[user_id] = 0 if gold else self.of_person.get(user_id, 0) + 1


_TURNS: weakref.WeakKeyDictionary[Runtime, GoldTurns] = weakref.WeakKeyDictionary()


def judge_for_window(
    classifier: Any,
    items: list[dict[str, Any]],
    *,
    strategy: str,
    aliases: dict[str, str],
    out: Any,
    routes: dict[str, str],
    settings: Any,
    channels: Collection[str],
) -> tuple[dict[str, Any], list[Any]] | None:
    """In a worker thread: guess ``items`` with ``classifier`` and return the first that goes
    to one of ``channels`` by its guess and whose guess is below HITL_THRESHOLD, with its
    ranked guesses (in force). Pure: no database, no event loop."""
    threshold = settings.threshold
    guesses = guesses_in_force(
        classifier,
        items,
        strategy=strategy,
        aliases=aliases,
        out=out,
        routes=routes,
        settings=settings,
    )
    for item, ranked, label, confidence, to in guesses:
        if to not in channels:
            continue
        if label is not None and threshold is not None and confidence >= threshold:
            continue  # no waiting item the window serves shows a guess this sure
        return item, ranked
    return None


async def gold_for_window(
    rt: Runtime,
    user_id: str,
    channels: Collection[str],
    exclude: Sequence[str] = (),
    *,
    item_id: str | None = None,
) -> WindowGold | None:
    """A gold question waiting to be asked for ``user_id``'s window on ``channels``: one they
    have not answered, not in ``exclude`` (the items other windows hold), routed to one of
    ``channels`` by the guess of the model that scores the queue (``rt.model``; before the
    first, the default channel's), below HITL_THRESHOLD; None when none is. ``item_id``: that
    item alone (the gold question an Undo reopened, a refused click's), if it is one.

    The pages are read and guessed in a worker thread, on a connection of its own
    (``Store.apart``): a page read steps past every gold item the person answered (35-47 ms
    past 10,000, on the event loop before). What it found is looked up again here by its key
    (``gold_page``'s ``item_id``): a question decided, deleted or answered by the person
    meanwhile is not shown (the turn stays due); the caller checks the holds. With no file to
    open again (a store in memory, a file lost or replaced) the pages are read here."""
    wanted = set(channels)
    if not wanted:
        return None
    store, settings = rt.store, rt.settings
    routes = routes_in_force(settings, store)
    model = rt.model
    out = not_in_force(settings, store) if model is not None else None
    aliases = store.label_aliases() if model is not None else {}

    def look(on: Store) -> WindowGold | None:
        def page(limit: int, after: Any = None) -> tuple[list[dict[str, Any]], Any]:
            return on.gold_page(
                limit,
                exclude,
                configured=settings.labels,
                after=after,
                unanswered_by=user_id,
                item_id=item_id,
            )

        items, after = page(GOLD_PAGE if model is not None else 1)
        if model is None:  # no guess: a gold question goes to the default channel
            if items and channel_for(routes, settings, None) in wanted:
                return WindowGold(items[0]["id"], None, [])
            return None
        looked = 0
        while items:
            found = judge_for_window(
                model.classifier,
                items,
                strategy=settings.strategy,
                aliases=aliases,
                out=out,
                routes=routes,
                settings=settings,
                channels=wanted,
            )
            if found is not None:
                return WindowGold(found[0]["id"], model.version, found[1])
            looked += len(items)
            if after is None or looked >= GOLD_DEPTH:
                return None
            items, after = page(min(GOLD_PAGE, GOLD_DEPTH - looked), after)
        return None

    def look_apart() -> WindowGold | None:
        with store.apart() as own:
            return look(own)

    try:
        gold = await eventloop.to_thread(look_apart)
    except StoreError:
        return look(store)
    if gold is None:
        return None
    again, _ = store.gold_page(  # by its key: still gold, still unanswered by the person
        1, configured=settings.labels, unanswered_by=user_id, item_id=gold.item_id
    )
    return gold if again else None
