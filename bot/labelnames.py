"""What a label may be called: one spelling per label, text people can see.

A label is a button's text, an option, a CSV cell and a word in ``HITL_LABELS``. Two names
that differ only in case ("Billing", "billing") or in character form (fullwidth "ｂｕｇ",
"bug") would split one class in two behind buttons that look alike, so the second is refused
with the one to use (:func:`case_twin`); an invisible character (a zero-width space, a soft
hyphen, a byte-order mark) would make two labels that look the same, so it is refused
(:func:`label_problem`). No dependencies: ``bot.config`` checks ``HITL_LABELS`` with it.
"""

from __future__ import annotations

import re
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
    if not _BLANK.sub("", _IGNORABLE.sub("", label)):
        return "has no visible character (only blank ones); labels are text people can see"
    if hidden is not None:
        name = unicodedata.name(hidden, "a format character")
        return (
            f"has an invisible character (U+{ord(hidden):04X} {name}); labels are text people"
            " can see"
        )
    return None


# Unicode's default-ignorable code points that are not format characters (those are refused):
# a combining grapheme joiner, Hangul fillers, Mongolian and other variation selectors, which
# show as nothing. VS16 after an emoji (❤️) is a spelling some labels need, so they are kept,
# but two labels that differ only by them are one label (``label_key`` leaves them out).
_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u200c\u200d\u3164\ufe00-\ufe0f"
    "\uffa0\U000e0100-\U000e01ef]"
)
# Characters that draw nothing (blank, beside the spaces): a label of only these is invisible.
_BLANK = re.compile("[\\s\u2800\u3164\u115f\u1160\uffa0]")


def label_key(label: str) -> str:
    """What two spellings of one label share: case and character form folded (NFKC), the
    characters that show as nothing left out."""
    return _IGNORABLE.sub("", unicodedata.normalize("NFKC", label)).casefold()


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
    if label.lower() == twin.lower():  # not casefold(): it also folds ligatures ("ﬁ")
        return "only in case"
    if _IGNORABLE.sub("", label).lower() == _IGNORABLE.sub("", twin).lower():
        return "only in characters that show as nothing (a joiner, a variation selector)"
    return "only in character form (fullwidth, ligatures, ...)"
