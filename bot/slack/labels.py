"""`/hitl labels`: admins see the label set and add, rename, merge or retire labels.

The change itself is the store's (``Store.change_label_set``, as `hitl labels` makes it); this
module reads the words of the command and words the answer. The caller (``bot.slack.commands``)
runs it in a worker thread on a connection of its own (a merge relabels every item of the label:
seconds at a million items) and redraws open questions with the new buttons.
"""

from __future__ import annotations

from bot.config import Settings
from bot.errors import StoreError
from bot.labelnames import label_problem
from bot.labelset import current_labels, retired_note
from bot.slack import blocks
from bot.store import Store

USAGE = (
    "Usage: `/hitl labels` shows the label set; `/hitl labels add LABEL`, "
    "`/hitl labels rename OLD NEW`, `/hitl labels merge OLD INTO`, `/hitl labels retire LABEL` "
    "change it."
)
FORMS = {
    "add": ("LABEL",),
    "rename": ("OLD", "NEW"),
    "merge": ("OLD", "INTO"),
    "retire": ("LABEL",),
}
# Room for the whole reply (Slack's text limit); a long label set is listed to fit, then
# MORE says how many were left out.
ROOM = blocks.TEXT_LIMIT
MORE = "… and {n} more (`hitl labels show` lists them all)"
ARITY = {action: len(form) for action, form in FORMS.items()}
# Words people try for a change the set makes another way.
HINTS = {
    "delete": "to take a label out of the set: `/hitl labels retire LABEL`",
    "remove": "to take a label out of the set: `/hitl labels retire LABEL`",
    "drop": "to take a label out of the set: `/hitl labels retire LABEL`",
    "new": "to add a label: `/hitl labels add LABEL`",
    "create": "to add a label: `/hitl labels add LABEL`",
    "move": "to give a label another name: `/hitl labels rename OLD NEW`",
    "show": "`/hitl labels` alone shows the label set",
    "list": "`/hitl labels` alone shows the label set",
}


def wrong_words(action: str, names: list[str]) -> str:
    """What is wrong with `/hitl labels ACTION NAMES` (an unknown change, or too few or too
    many labels for it), and the right form."""
    shown = f"`/hitl labels {blocks.escape(action[:40])}`"
    if action not in FORMS:
        hint = HINTS.get(action)
        return f"I don't know {shown}" + (f" ({hint})." if hint else f". {USAGE}")
    form = FORMS[action]
    if len(names) < len(form):
        wants = " and ".join(form)
        filled = " ".join([blocks.escape(n[:40]) for n in names] + list(form[len(names) :]))
        return f"`{action}` needs {wants}: `/hitl labels {action} {filled}`."
    one = "one label" if len(form) == 1 else f"{len(form)} labels"
    return (
        f"`{action}` takes {one} (`/hitl labels {action} {' '.join(form)}`), not"
        f" {len(names)}; a label is one word."
    )


def labels_reply(
    store: Store, settings: Settings, user_id: str, words: list[str]
) -> tuple[str, bool]:
    """The answer to `/hitl labels WORDS`, and whether the label set changed. Reads and
    writes ``store``: in a worker thread, on a connection of its own (``Store.apart``)."""
    labels = current_labels(settings, store)
    if not words:
        version = store.label_set_version(labels)
        head, tail = f"*Labels* ({version}): ", f"\n{USAGE}"
        return blocks.fit(head + listed(labels, ROOM - len(head) - len(tail)) + tail), False
    action, names = words[0].lower(), words[1:]
    if action not in ARITY or len(names) != ARITY[action]:
        return wrong_words(action, names), False
    for name in names:
        if problem := label_problem(name):
            return f"Cannot {action}: the label `{blocks.escape(name[:40])}` {problem}.", False
    try:
        after = store.change_label_set(
            action,
            names[0],
            names[1] if len(names) > 1 else None,
            current=labels,
            user_id=user_id,
            reason="/hitl labels",
            votes_needed=settings.votes,
        )
    except StoreError as exc:  # its message may list the whole set
        return blocks.fit(f"Cannot {action}: {blocks.escape(str(exc))}"), False
    # Worded from the change this call made (``ChangedSet``), never from the newest change
    # stored: another admin's, made in another thread meanwhile, may be that one.
    made = blocks.escape(after.made)  # as stored (NFC)
    if action == "retire":
        note = retired_note(made, after.labeled, slack=True, settings=settings) + after.gold_note(
            f"`{made}`"
        )
    else:  # the label made, said apart: a long list is cut before it
        note = {"add": "Added", "rename": "Renamed to", "merge": "Merged into"}[action]
        note = f"{note} `{made}`."
    head, tail = "Done. Labels now: ", f". {note} Open questions are redrawn."
    return blocks.fit(head + listed(after, ROOM - len(head) - len(tail)) + tail), True


def listed(labels: list[str], room: int) -> str:
    """``labels`` as `a`, `b`, ... in ``room`` characters: the whole entries that fit, then
    how many more and where to see them all, never a label cut in half."""
    entries = [f"`{blocks.escape(label)}`" for label in labels]
    shown = ", ".join(entries)
    if len(shown) <= room:
        return shown or "none"
    kept, used = [], 0
    for n, entry in enumerate(entries):
        more = MORE.format(n=len(entries) - n - 1)  # the words after this entry, if kept
        if used + len(entry) + len(", ") + len(more) > room:
            break
        kept.append(entry)
        used += len(entry) + len(", ")
    return ", ".join([*kept, MORE.format(n=len(entries) - len(kept))])
