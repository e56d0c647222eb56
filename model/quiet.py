"""Known warnings left unshown in one thread, whatever the other threads do with theirs.

``warnings.catch_warnings()`` is process-global, not per thread (before Python 3.14's
context-aware warnings, off by default): entering it puts a copy of the process's filter list in
force and leaving it puts back the list it found. Two threads inside such blocks undo each
other: thread A enters, B enters and adds its "ignore", A leaves and puts back the list from
before B's "ignore" while B still fits, so B's warning is shown (a stray "OptimizeWarning:
Covariance …" on `hitl serve`'s stderr; an exception in the middle of a fit under pytest's
``filterwarnings = error``); and B, leaving last, puts back A's copy with A's "ignore" in it, for
the rest of the process. scikit-learn enters and leaves ``catch_warnings`` inside every fit too
(``type_of_target``, ``check_array``, each task of its ``Parallel``), so any thread fitting a
model swaps the list under the others.

:func:`quiet` leaves the list in force in place instead. For each ``(category, message)`` it
hides, one filter is put in front of the list, once, and stays: its message test matches only
in a thread that is inside ``quiet`` for that pair, so in every other thread the filter does
nothing, and the copy any ``catch_warnings`` takes of the list carries it along. Each entry
puts the filters back in front when something was put before them since (pytest's per-test
``error``, a later ``warnings.simplefilter``) or the list in force is another one. What this
cannot reach: a list another thread's ``catch_warnings`` saved before a filter was first put
in front (it is put into that thread's copy, which is dropped when that thread leaves); a
block that starts in that moment and outlasts that thread's block can show its warning.
A filter hides only its category with a message starting with its ``message`` (a regular
expression, case ignored, as ``warnings.filterwarnings`` reads it), never every warning.
scikit-learn's ``Parallel`` (the learning curve's) copies the filters into each task as plain
ones, by their pattern: while such a task runs, what its block hides is hidden in every thread,
as a ``catch_warnings`` of its own would; the task's own fits need them.

Better still is code that warns about nothing: the learning curve's fit calls scipy's
``least_squares``/``leastsq`` itself, not ``curve_fit``, whose one warning is about the
covariance the forecast does not use (``model.stopping._fit_from``).
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

Target = tuple[type[Warning], str]
"""A warning to hide: its category (subclasses too) and how its message starts (a regular
expression; ``""``: any message)."""

_lock = threading.Lock()
_filters_of: dict[Target, tuple] = {}  # one filter per target, for the life of the process
_ours: set[int] = set()  # their ids (the filters above are never freed, so never reused)
_here = threading.local()  # .depth: {target: how many quiet blocks of this thread hide it}


def _depth() -> dict[Target, int]:
    depth = getattr(_here, "depth", None)
    if depth is None:
        depth = _here.depth = {}
    return depth


class _InQuietThread:
    """A filter's message test (``warnings`` calls ``.match(text)``): the message starts with
    ``target``'s and the calling thread is inside :func:`quiet` for ``target``."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.pattern = target[1]  # scikit-learn's Parallel copies filters by their pattern
        self._regex = re.compile(target[1], re.IGNORECASE)

    def match(self, text: str) -> re.Match[str] | None:
        if _depth().get(self.target, 0) <= 0:
            return None
        return self._regex.match(text)

    def __repr__(self) -> str:
        return f"<message {self.pattern!r} in a thread inside model.quiet.quiet>"


def _filter(target: Target) -> tuple:
    found = _filters_of.get(target)
    if found is None:
        found = ("ignore", _InQuietThread(target), target[0], None, 0)
        _filters_of[target] = found
        _ours.add(id(found))
    return found


def _filters_in_force() -> list:
    current = getattr(warnings, "_get_filters", None)  # 3.14+: the list of this context
    return current() if current is not None else warnings.filters


def _put_in_front(wanted: list[tuple]) -> None:
    """Make ``wanted`` filters come before any filter not ours in the list in force. Nothing
    changes when they do already (every entry after the first, unless someone added a filter
    since). Our filters only ignore, and ``warnings`` caches no "ignore" in a module's
    ``__warningregistry__``, so no cache needs clearing."""
    filters = _filters_in_force()
    front: set[int] = set()
    for item in filters:
        if id(item) not in _ours:
            break
        front.add(id(item))
    if all(id(item) in front for item in wanted):
        return
    ids = {id(item) for item in wanted}
    filters[:] = [*wanted, *(item for item in filters if id(item) not in ids)]  # in place


@contextmanager
def quiet(*targets: Target) -> Iterator[None]:
    """Inside, warnings of ``targets`` raised in this thread are not shown (nor raised under an
    ``error`` filter); other threads' warnings and the filter list in force are as they were.
    Nests; safe in any number of threads at once."""
    with _lock:
        for target in targets:
            _filter(target)
        _put_in_front(list(_filters_of.values()))  # every block's: inert outside their blocks
    depth = _depth()
    for target in targets:
        depth[target] = depth.get(target, 0) + 1
    try:
        yield
    finally:
        for target in targets:
            depth[target] -= 1
