"""`/hitl labels`: admins see the label set and add, rename, merge or retire labels.

The change itself is the store's (``Store.change_label_set``, as `hitl labels` makes it); this
module reads the words of the command and words the answer. Open questions are redrawn with
the new buttons by the caller (``bot.slack.commands``), through the redrawer.
"""

from __future__ import annotations

from bot.errors import StoreError
from bot.labelnames import label_problem
from bot.labelset import current_labels
from bot.runtime import Runtime
from bot.slack import blocks

USAGE = (
    "Usage: `/hitl labels` shows the label set; `/hitl labels add LABEL`, "
    "`/hitl labels rename OLD NEW`, `/hitl labels merge OLD INTO`, `/hitl labels retire LABEL` "
    "change it."
)
ARITY = {"add": 1, "rename": 2, "merge": 2, "retire": 1}


def labels_reply(rt: Runtime, user_id: str, words: list[str]) -> tuple[str, bool]:
    """The answer to `/hitl labels WORDS`, and whether the label set changed."""
    labels = current_labels(rt.settings, rt.store)
    if not words:
        version = rt.store.label_set_version(labels)
        shown = ", ".join(f"`{blocks.escape(label)}`" for label in labels) or "none"
        return blocks.fit(f"*Labels* ({version}): {shown}\n{USAGE}"), False
    action, names = words[0].lower(), words[1:]
    if action not in ARITY or len(names) != ARITY[action]:
        return USAGE, False
    for name in names:
        if problem := label_problem(name):
            return f"Cannot {action}: the label `{blocks.escape(name[:40])}` {problem}.", False
    try:
        after = rt.store.change_label_set(
            action,
            names[0],
            names[1] if len(names) > 1 else None,
            current=labels,
            user_id=user_id,
            reason="/hitl labels",
        )
    except StoreError as exc:
        return f"Cannot {action}: {blocks.escape(str(exc))}", False
    shown = ", ".join(f"`{blocks.escape(label)}`" for label in after)
    return blocks.fit(f"Done. Labels now: {shown}. Open questions are redrawn."), True
