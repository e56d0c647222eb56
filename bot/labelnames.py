"""What a label may be called: one spelling per label, text people can see.

A label is a button's text, an option, a CSV cell and a word in ``HITL_LABELS``. Two names
that differ only in case ("Billing", "billing") or in character form (fullwidth "ｂｕｇ",
"bug") would split one class in two behind buttons that look alike, so the second is refused
with the one to use (:func:`case_twin`); an invisible character (a zero-width space, a soft
hyphen, a byte-order mark) would make two labels that look the same, so it is refused
(:func:`label_problem`). No dependencies: ``bot.config`` checks ``HITL_LABELS`` with it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

MAX_LABEL = 75  # Slack's limit for a button's text
# Format characters a script needs between letters (Persian, Indic scripts, emoji sequences):
# ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER. Every other one is invisible in a button.
_JOINERS = {"\u200c", "\u200d"}


def label_problem(label: str) -> str | None:
    """What makes ``label`` (trimmed, NFC) unusable as a label, or None: 1 to 75 characters,
    no control character (a line break or a tab would split it, a bell would hide in it), no
    invisible character (two labels would look the same)."""
    if not label:
        return "is empty"
    if len(label) > MAX_LABEL:
        return f"is over {MAX_LABEL} characters (Slack's button limit)"
    if any(unicodedata.category(c) == "Cc" for c in label):
        return "has a control character (a line break, a tab, ...); labels are one line of text"
    hidden = next((c for c in label if unicodedata.category(c) == "Cf" and c not in _JOINERS), None)
    if hidden is not None:
        name = unicodedata.name(hidden, "a format character")
        return (
            f"has an invisible character (U+{ord(hidden):04X} {name}); labels are text people"
            " can see"
        )
    return None


def label_key(label: str) -> str:
    """What two spellings of one label share: case and character form folded (NFKC)."""
    return unicodedata.normalize("NFKC", label).casefold()


def case_twin(label: str, labels: Iterable[str]) -> str | None:
    """The label of ``labels`` that ``label`` differs from only in case or character form
    ("Billing" or "ｂｉｌｌｉｎｇ" for "billing"), or None: there is none, or ``label`` is
    one of ``labels`` itself."""
    labels = list(labels)
    if label in labels:
        return None
    key = label_key(label)
    return next((name for name in labels if label_key(name) == key), None)


def how_twins_differ(label: str, twin: str) -> str:
    """``only in case``, or ``only in character form (fullwidth, ...)``: for the refusal."""
    if label.casefold() == twin.casefold():
        return "only in case"
    return "only in character form (fullwidth, ligatures, ...)"
