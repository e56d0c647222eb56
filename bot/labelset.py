"""The label set in force: which labels questions offer, answers may use and training knows.

The stored label set once an admin has changed it (`hitl labels add|rename|merge|retire`,
`/hitl labels`): from the first change on, the database's set wins. Before that,
``HITL_LABELS`` when it is set, else every label people or imports have given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from bot.config import Settings
from bot.labelnames import label_key
from bot.store import Store
from bot.store.labelset import NotInForce as NotInForce
from bot.store.labelset import in_force as in_force  # the store's too (its predictions)
from bot.words import count


def current_labels(settings: Settings, store: Store) -> list[str]:
    """The label set in force, in its order."""
    stored = store.stored_labels()
    if stored is not None:
        return stored
    return list(settings.labels) if settings.labels else store.label_set()


def not_in_force(settings: Settings, store: Store) -> NotInForce:
    """The labels not in force, to leave out wherever a retired one is left out: training and
    its gold, the model's guesses (stored, shown in Slack, answered by the producer API). A
    retired label, and a label of decided items that the set in force never had (imported
    before ``HITL_LABELS`` named a narrower set): such items do not train, and no item is
    answered or decided with such a label (``Store.labels_not_in_force``; one small read, then
    a set lookup per label). Unlike a retired label's, its items do not go to review: nobody
    took the label away, and the set is only ``HITL_LABELS`` until someone changes it (see
    ``outside_line`` for what `hitl serve` and `hitl labels show` say)."""
    return store.labels_not_in_force(settings.labels)


def outside_line(settings: Settings, store: Store, most: int = 8) -> str | None:
    """One line naming the labels of decided items outside the label set in force (not
    retired: never in it), with how many items each, and the two ways to fix it; None when
    there is none. Read at start (`hitl serve`) and by `hitl labels show`: the per-label
    counts, one row per label."""
    outside = store.labels_outside(settings.labels)
    if not outside:
        return None
    stored = store.stored_labels() is not None
    named = ", ".join(f"{label} ({count(n, 'item')})" for label, n in outside[:most])
    if len(outside) > most:
        named += f", … ({len(outside)} labels in all)"
    first = outside[0][0]
    one = len(outside) == 1
    where = "the stored label set" if stored else "HITL_LABELS"
    add = f"`hitl labels add {first}`"
    if not stored:
        add = f"add {'it' if one else 'them'} to HITL_LABELS (or {add})"
    return (
        f"{count(len(outside), 'label')} of decided items {'is' if one else 'are'} not in the"
        f" label set in force ({where}): {named}; {'its' if one else 'their'} items do not"
        f" train and the model never answers with {'it' if one else 'them'}. To use"
        f" {'it' if one else 'them'}, {add}; to relabel {'it' if one else 'them'} into a label"
        f" in force, `hitl labels merge {first} INTO`"
    )


def twins_line(labels: list[str], store: Store) -> str | None:
    """One line naming the labels in force that differ only in case or character form (kept by
    an older version, which took both), with the `hitl labels merge` that makes them one (the
    one with fewer decided items into the other); None when there is none."""
    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(label_key(label), []).append(label)
    twins = [names for names in groups.values() if len(names) > 1]
    if not twins:
        return None
    merges = []
    for names in twins:
        by_items = sorted(names, key=lambda name: -store.labeled_with(name))  # stable: set order
        merges += [f"`hitl labels merge {name} {by_items[0]}`" for name in by_items[1:]]
    shown = "; ".join(" and ".join(names) for names in twins)
    return (
        f"labels in force that differ only in case or character form: {shown} (buttons that"
        f" look alike, one class split in two); make them one with {', '.join(merges)}"
    )


def label_set_warnings(settings: Settings, store: Store) -> list[str]:
    """What `hitl serve` says at start and `hitl labels show` under the set: labels of
    decided items outside the set in force, and case twins in force (``outside_line``,
    ``twins_line``)."""
    lines = [outside_line(settings, store), twins_line(current_labels(settings, store), store)]
    return [line for line in lines if line is not None]


def last_retired(store: Store) -> tuple[str, int]:
    """After a retire: the label it retired, as stored (in NFC when it came in another form),
    and how many items are decided with it: they left training and export, and wait in review
    until they get a label in force or the label is added back."""
    label = store.label_set_changes()[-1]["label"]
    return label, store.labeled_with(label)


def retired_note(label: str, n: int, *, slack: bool) -> str:
    """What a retire did to the items decided with ``label`` (``n``: ``last_retired``), for
    the CLI or Slack (mrkdwn, ``label`` escaped by the caller), with how to undo it."""
    if n == 0:
        shown = f"`{label}`" if slack else label
        return f"No item was labeled {shown}, so training and export keep every item."
    them, wait = ("it", "it waits") if n == 1 else ("them", "they wait")
    if slack:
        return (
            f"{count(n, 'item')} labeled `{label}` left training and export; {wait} in"
            f" `/hitl review` until given a label in force (`/hitl labels add {label}`"
            f" brings {them} back)."
        )
    return (
        f"{count(n, 'item')} labeled {label} left training and export; {wait} in /hitl review"
        f" (Slack) until given a label in force (or `hitl labels set ID LABEL`);"
        f" `hitl labels add {label}` brings {them} back."
    )


RESTATE_CHUNK = 500
"""Items one step of the restate pass reads (``Store.restate_predictions``), in one short
transaction that writes at most RESTATE_CHANGES of them: at a million items a step holds the
write lock (and, in the server, the event loop) a few milliseconds
(``benchmarks/label_change.py``)."""
RESTATE_CHANGES = 50  # as the scorer's WRITE_BATCH: ~0.1 ms a write at a million items


def restate_all(
    store: Store, threshold: float, progress: Callable[[int, int], None] | None = None
) -> int:
    """Put every stored prediction under the label set in force, a short transaction a step
    (``Store.restate_predictions``): what `hitl labels add|rename|merge|retire` runs after its
    change, so a database used without a server is right too (a running server's scorer does
    the same when it sees the change count move). ``progress(rowid, last rowid)`` after each
    step. Returns how many items changed."""
    end, count = store.last_rowid(), store.label_set_change_count()
    changed, at = 0, 0
    while True:
        n, last = store.restate_predictions(at, RESTATE_CHUNK, threshold, RESTATE_CHANGES)
        changed += n
        if last is None:
            break
        at = last
        if progress is not None:
            progress(min(at, end), end)
    store.mark_restated(count)
    if progress is not None:
        progress(end, end)
    return changed


def resolve_label(settings: Settings, store: Store, label: str) -> str | None:
    """The label a click on ``label`` counts for: itself while it is in force, its successor
    after a rename or merge, None when it was retired (or never was one)."""
    labels = current_labels(settings, store)
    if label in labels:
        return label
    successor = store.label_aliases().get(label)
    return successor if successor in labels else None


T = TypeVar("T")


def follow_renames(by_label: Mapping[str, T], aliases: Mapping[str, str]) -> dict[str, T]:
    """Settings keyed by label (``[hitl.routes]``, ``[labels.NAME]`` guidelines) after
    `hitl labels rename|merge`: what was set for the old name holds for its successor too (what
    the successor has itself wins), and still for the old name, which models trained before
    the change go on guessing."""
    out = dict(by_label)
    for label, value in by_label.items():
        out.setdefault(aliases.get(label, label), value)
    return out


def routes_in_force(settings: Settings, store: Store) -> dict[str, str]:
    """``HITL`` routes (label → channel) following renames and merges."""
    if not settings.routes:
        return {}
    return follow_renames(settings.routes, store.label_aliases())


def channel_for(routes: Mapping[str, str], settings: Settings, label: str | None) -> str | None:
    """The channel a question whose top guess is ``label`` goes to (``routes`` from
    ``routes_in_force``)."""
    return routes.get(label, settings.channel) if label is not None else settings.channel
