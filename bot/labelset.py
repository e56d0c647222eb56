"""The label set in force: which labels questions offer, answers may use and training knows.

The stored label set once an admin has changed it (`hitl labels add|rename|merge|retire`,
`/hitl labels`): from the first change on, the database's set wins. Before that,
``HITL_LABELS`` when it is set, else every label people or imports have given.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from bot.config import Settings
from bot.labelnames import label_key
from bot.store import Store
from bot.store.labelset import NotInForce as NotInForce
from bot.store.labelset import in_force as in_force  # the store's too (its predictions)
from bot.words import code_text, count, escape


def current_labels(settings: Settings, store: Store) -> list[str]:
    """The label set in force, in its order."""
    stored = store.stored_labels()
    if stored is not None:
        return stored
    return list(settings.labels) if settings.labels else store.label_set()


def model_guesses(
    store: Store,
    item: Mapping[str, Any],
    configured: Sequence[str] = (),
    out: NotInForce | None = None,
) -> tuple[str | None, float | None, list[dict[str, Any]]]:
    """The model's label, its confidence and ranked guesses for ``item`` (as ``get_item``
    reads it) under the label set in force now, from its stored guesses (``ranked``): a model
    trained before a rename or merge guesses the old name, which nobody must see; a retired
    label is left out (``in_force``), and so is a label the set never had (``configured``:
    HITL_LABELS; ``not_in_force``). The confidence is the label's own probability, as the
    questions show it (not renormalised over the labels in force; a merged label stands for
    its successor at the best of the two): never a retired label's. Read now, not as stored:
    the stored label is the best in force when it was scored (a label added back since is its
    best guess again). None while the item has no prediction. ``out``:
    ``store.labels_not_in_force(configured)``, when read already. The producer API and the
    /hitl review window show the same guess."""
    if item["confidence"] is None:
        return None, None, []
    guesses = item["ranked"] or (
        [(item["predicted_label"], item["confidence"])] if item["predicted_label"] else []
    )
    out = store.labels_not_in_force(configured) if out is None else out
    ranked = in_force(guesses, store.label_aliases(), out)
    label, confidence = ranked[0] if ranked else (None, 0.0)
    return label, confidence, [{"label": name, "probability": p} for name, p in ranked]


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
    """One line naming the labels in force that differ only in case, character form or white
    space (kept by an older version, which took both), with the `hitl labels merge` that makes
    them one (the one with fewer decided items into the other); None when there is none. A
    name with white space is quoted, as a shell needs it."""
    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(label_key(label), []).append(label)
    twins = [names for names in groups.values() if len(names) > 1]
    if not twins:
        return None
    merges = []
    for names in twins:
        by_items = sorted(names, key=lambda name: -store.labeled_with(name))  # stable: set order
        merges += [
            f"`hitl labels merge {shlex.join([name, by_items[0]])}`" for name in by_items[1:]
        ]
    shown = "; ".join(" and ".join(map(shlex.quote, names)) for names in twins)
    return (
        f"labels in force that differ only in case, character form or white space: {shown}"
        f" (buttons that look alike, one class split in two); make them one with"
        f" {', '.join(merges)}"
    )


def label_set_warnings(settings: Settings, store: Store) -> list[str]:
    """What `hitl serve` says at start and `hitl labels show` under the set: labels of
    decided items outside the set in force, case twins in force, HITL_LABELS not in force
    (``outside_line``, ``twins_line``, ``configured_labels_line``), and a route or guideline
    for a retired label (``retired_in_config``)."""
    lines = [
        outside_line(settings, store),
        twins_line(current_labels(settings, store), store),
        configured_labels_line(settings, store),
        *retired_in_config(settings, store),
    ]
    return [line for line in lines if line is not None]


def configured_labels_line(settings: Settings, store: Store) -> str | None:
    """One line when HITL_LABELS (the environment's or hitl.toml's) is set but is not the
    stored set in force (the set was changed with `hitl labels`, and the stored set wins):
    the labels it names that the stored set lacks, with `hitl labels add` for each one never
    in it, and briefly the others (renamed, retired, added since); None when it agrees (in any
    order), is unset, or nothing was changed. What `hitl serve` says at start and `hitl
    labels show` under the set: a label added to HITL_LABELS after a change was never offered,
    without a word."""
    stored = store.stored_labels()
    if stored is None or not settings.labels:
        return None
    configured = list(settings.labels)
    if set(configured) == set(stored):
        return None
    in_stored, in_configured = set(stored), set(configured)
    aliases, retired = store.label_aliases(), store.retired_labels()
    never, others, explained = [], [], set()
    for label in configured:
        if label in in_stored:
            continue
        if label in retired:
            others.append(f"{label} was retired")
        elif label in aliases:
            successor = aliases[label]
            explained.add(successor)
            gone = " (retired)" if successor in retired else ""
            others.append(f"{label} is now {successor}{gone}")
        else:
            never.append(label)
    added = [label for label in stored if label not in in_configured and label not in explained]
    if added:
        others.append(f"the stored set also has {', '.join(added[:MOST])}")
    parts = []
    if never:
        adds = ", ".join(f"`hitl labels add {label}`" for label in never[:MOST])
        shown = ", ".join(never[:MOST]) + (", …" if len(never) > MOST else "")
        verb, it = ("is", "it") if len(never) == 1 else ("are", "them")
        parts.append(f"{shown} {verb} not in it, so no question offers {it} ({adds})")
    parts += others[:MOST]
    source = settings.sources.get("labels", "env")
    where = "HITL_LABELS" if source == "env" else f"HITL_LABELS (labels in {source})"
    return (
        f"{where} is not in force: the label set was changed with hitl labels, and the stored"
        f" set ({', '.join(stored[:12])}{', …' if len(stored) > 12 else ''}) wins; "
        + "; ".join(parts)
        + ". Make HITL_LABELS the stored set, or unset it, to stop this warning"
    )


MOST = 8  # labels one warning line names


def config_places(settings: Settings, label: str) -> list[str]:
    """Where the settings in force name ``label``: its route (``[hitl.routes]``) and its
    guidelines (``[labels.LABEL]``), as hitl.toml writes them."""
    places = ["[hitl.routes]"] if label in settings.routes else []
    return places + ([f"[labels.{label}]"] if label in settings.guidelines else [])


def config_file(settings: Settings) -> str:
    """The file routes and guidelines came from (hitl.toml, by its path when known)."""
    return settings.sources.get("routes") or settings.sources.get("guidelines") or "hitl.toml"


def retired_in_config(settings: Settings, store: Store) -> list[str]:
    """A line for each retired label a route or guideline of the settings still names (who
    retired it and when, the fix), also under an old name: a route set for `location` follows
    its rename to `place` (``follow_renames``), so retiring `place` leaves it unused too.
    Harmless, so `hitl serve` starts and ignores them (no
    question is predicted a retired label): `/hitl labels retire` by an admin who cannot edit
    hitl.toml took the bot down at its next restart. A name neither in force, an old name
    nor retired stays a refusal (``bot.server.label_set_lines``: a typo)."""
    named = {*settings.routes, *settings.guidelines}
    if not named:
        return []
    aliases, retired = store.label_aliases(), store.retired_labels()
    named_as = {key: aliases.get(key, key) for key in named}  # key → the label it is for now
    hit = sorted(key for key, label in named_as.items() if label in retired)
    if not hit:
        return []
    last = {c["label"]: c for c in store.label_set_changes() if c["action"] == "retire"}
    lines = []
    for key in hit:
        label = named_as[key]
        places = " and ".join(config_places(settings, key))
        change = last.get(label)
        at = str(change["created_at"])[:16].replace("T", " ") + " UTC" if change else ""
        when = f" by {change['user_id']} on {at}" if change else ""
        now = f" (now {label})" if key != label else ""
        lines.append(
            f"{config_file(settings)} names {key!r}{now} in {places}, but {label} was"
            f" retired{when}: unused while it is retired (no question is predicted {label})."
            f" Remove it from {places}, or `hitl labels add {label}` to use it again"
        )
    return lines


def retired_note(
    label: str,
    n: int,
    *,
    slack: bool,
    settings: Settings | None = None,
    aliases: Mapping[str, str] | None = None,
) -> str:
    """What a retire did to the items decided with ``label`` (``n``: ``ChangedSet.labeled``), for
    the CLI or Slack (mrkdwn, ``label`` as ``code_text`` by the caller: it goes in code
    spans), with how to undo it; with the ``settings`` in force, one more sentence when they
    route ``label`` or give it guidelines, also under an old name of it in ``aliases``
    (``retired_config_note``)."""
    note = _items_note(label, n, slack=slack)
    said = (
        retired_config_note(settings, label, slack=slack, aliases=aliases)
        if settings is not None
        else None
    )
    return f"{note} {said}" if said else note


def retired_config_note(
    settings: Settings, label: str, *, slack: bool, aliases: Mapping[str, str] | None = None
) -> str | None:
    """The sentence a retire adds when the settings in force still route the retired label or
    give it guidelines (``label`` as ``retired_note`` has it: ``code_text`` for Slack), with the
    fix; None when they name it nowhere. A key that is an old name of the label (``aliases``,
    old → the label it counts for now) names it too: its route and guidelines followed the
    rename or merge (``follow_renames``). Not refused: `hitl serve` starts and warns of it
    (``retired_in_config``)."""
    aliases = aliases or {}
    shown = code_text if slack else str
    keys = sorted(
        k
        for k in {*settings.routes, *settings.guidelines}
        if shown(k) == label or (k in aliases and shown(aliases[k]) == label)
    )
    if not keys:
        return None
    if slack:
        places = " and ".join(
            f"`{escape(place)}`"
            + ("" if shown(k) == label or place != "[hitl.routes]" else f" (as `{code_text(k)}`)")
            for k in keys
            for place in config_places(settings, k)
        )
        return (
            f"`hitl.toml` still names `{label}` in {places}: unused while retired; the bot"
            f" warns of it at each start until it is removed there (by whoever runs the bot),"
            f" or `/hitl labels add {label}` brings the label back."
        )
    places = " and ".join(
        place + ("" if k == label or place != "[hitl.routes]" else f" (as {k})")
        for k in keys
        for place in config_places(settings, k)
    )
    return (
        f"{config_file(settings)} still names {label} in {places}: unused while retired;"
        f" `hitl serve` warns of it at each start until you remove it there, or `hitl labels"
        f" add {label}` brings the label back."
    )


def _items_note(label: str, n: int, *, slack: bool) -> str:
    """``retired_note``'s first part: the items decided with ``label``."""
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
