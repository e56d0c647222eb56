"""Which item each labeling window shows, so that windows open at once share the work.

An item shown in someone's window is held for them ``HOLD`` (two minutes): while it is, other
windows are shown other items first, unless the item still needs more answers than the people
it is held for (``HITL_VOTES`` minus the votes in; a split, whose answers are all in, one more).
A hold ends when that person's window draws another item (an answer, a skip, an Undo, "nothing
left"), when the window closes (``view_closed``), or when ``HOLD`` has passed (a window left
open on an item, or closed without Slack telling us, costs the others that much at most). A
window with nothing else to show shows a held item all the same: an answer there may meet
"This one was already decided", which is better than "Nothing left" while items wait.

Holds live in the server's memory, one per person (a second window of the same person takes
the first's hold): a restart forgets them, and windows drawn before it may show the same item
until they move on. Nothing is written to the database per drawing; the next-item lookup
leaves the held items out by id (``Store.next_in_channels``' ``exclude``), on the same indexes.
Channel questions are not held: everyone in the channel sees a posted question.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from bot.runtime import Runtime

# How long an item shown in a window stays held for its person: long enough to read an item
# and answer it (most take seconds), short enough that a window left open (or closed without
# a view_closed reaching us) keeps an item from the others for a couple of minutes at most.
HOLD = timedelta(minutes=2)


class Holds:
    """The items held for people's windows now: per person, the item their window shows and
    until when; per item, for whom. Time is the runtime's clock (``Runtime.clock``)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.of_person: dict[str, tuple[str, datetime]] = {}
        self.of_item: dict[str, set[str]] = {}

    @classmethod
    def of(cls, rt: Runtime) -> Holds:
        """The runtime's (made at first use; reads ``rt.clock`` at each use)."""
        holds = _HOLDS.get(rt)
        if holds is None:
            ref = weakref.ref(rt)  # (a value holding its key would keep the runtime alive)

            def clock() -> datetime:
                held = ref()
                assert held is not None  # only ever read through the runtime
                return held.clock()

            holds = _HOLDS[rt] = cls(clock)
        return holds

    def hold(self, user_id: str, item_id: str | None) -> None:
        """``user_id``'s window shows ``item_id`` now (None: no item): held for ``HOLD``, in
        place of the item it showed before."""
        self.release(user_id)
        if item_id is not None:
            self.of_person[user_id] = (item_id, self.clock() + HOLD)
            self.of_item.setdefault(item_id, set()).add(user_id)

    def release(self, user_id: str, item_id: str | None = None) -> None:
        """``user_id``'s hold ends (only if it is on ``item_id``, when given: a window closed
        after another of theirs took the hold leaves that one)."""
        held = self.of_person.get(user_id)
        if held is None or (item_id is not None and held[0] != item_id):
            return
        del self.of_person[user_id]
        people = self.of_item.get(held[0])
        if people is not None:
            people.discard(user_id)
            if not people:
                del self.of_item[held[0]]

    def crowded(
        self,
        user_id: str,
        votes: int,
        votes_in: Callable[[Collection[str]], dict[str, int]],
    ) -> list[str]:
        """The items held for as many other people as they still need answers, which
        ``user_id``'s window should not be shown while others are left: ``votes``
        (HITL_VOTES) less the votes in (``votes_in``, read only for items held for fewer
        people than ``votes``), at least one (a split takes one more answer)."""
        self._expire()
        others = {
            item: len(people - {user_id})
            for item, people in self.of_item.items()
            if people - {user_id}
        }
        full = [item for item, n in others.items() if n >= votes]
        ask = [item for item, n in others.items() if n < votes]
        if ask:
            counted = votes_in(ask)
            full += [item for item in ask if others[item] >= max(votes - counted.get(item, 0), 1)]
        return sorted(full)

    def _expire(self) -> None:
        now = self.clock()
        for user_id, (item_id, until) in list(self.of_person.items()):
            if until <= now:
                self.release(user_id, item_id)


_HOLDS: weakref.WeakKeyDictionary[Runtime, Holds] = weakref.WeakKeyDictionary()
