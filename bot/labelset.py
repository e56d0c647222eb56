"""The label set in force: which labels questions offer, answers may use and training knows.

The stored label set once an admin has changed it (`hitl labels add|rename|merge|retire`,
`/hitl labels`): from the first change on, the database's set wins. Before that,
``HITL_LABELS`` when it is set, else every label people or imports have given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from bot.config import Settings
from bot.store import Store
from bot.words import count


def current_labels(settings: Settings, store: Store) -> list[str]:
    """The label set in force, in its order."""
    stored = store.stored_labels()
    if stored is not None:
        return stored
    return list(settings.labels) if settings.labels else store.label_set()


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


def resolve_label(settings: Settings, store: Store, label: str) -> str | None:
    """The label a click on ``label`` counts for: itself while it is in force, its successor
    after a rename or merge, None when it was retired (or never was one)."""
    labels = current_labels(settings, store)
    if label in labels:
        return label
    successor = store.label_aliases().get(label)
    return successor if successor in labels else None


def in_force(
    guesses: list[tuple[str, float]], aliases: dict[str, str], retired: set[str]
) -> list[tuple[str, float]]:
    """The model's guesses under the label set in force: a renamed or merged label shows as
    its successor (once, at its best guess), a retired one not at all."""
    kept: dict[str, float] = {}
    for label, p in guesses:
        label = aliases.get(label, label)
        if label not in retired and label not in kept:
            kept[label] = p
    return list(kept.items())


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
