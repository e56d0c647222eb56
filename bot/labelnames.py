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
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in label):  # U+2028, U+2029
        return "has a control character (a line break, a tab, ...); labels are one line of text"
    if not _BLANK.sub("", _IGNORABLE.sub("", label)):
        return "has no visible character (only blank ones); labels are text people can see"
    if hidden := invisible_character(label):
        return f"{hidden}; labels are text people can see"
    return None


def invisible_character(text: str) -> str | None:
    """Why ``text`` may not name a label or an item: its first format character (a zero-width
    space, a right-to-left override, a byte-order mark: two names would look the same, or one
    would show reversed), the joiners emoji and scripts need left alone, as in "has an
    invisible character (U+200B ZERO WIDTH SPACE)"; None when it has none."""
    hidden = next((c for c in text if unicodedata.category(c) == "Cf" and c not in _JOINERS), None)
    if hidden is None:
        return None
    name = unicodedata.name(hidden, "a format character")
    return f"has an invisible character (U+{ord(hidden):04X} {name})"


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


# Format characters that draw a glyph (Unicode's Prepended_Concatenation_Mark: the Arabic
# number sign, ۝ ARABIC END OF AYAH, the Syriac abbreviation mark, the Kaithi number signs).
_SHOWN_FORMAT = frozenset(
    "\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd"
)


def shows_nothing(text: str) -> bool:
    """Whether ``text`` draws nothing a person could read: only white space, blank characters
    (a Braille blank, Hangul fillers) and invisible ones (a zero-width space, a byte-order
    mark, a soft hyphen, a word joiner, variation selectors; not the format characters that
    draw a glyph, as ۝). An item's text of only these is as empty as blanks (the producer API
    and `hitl import` refuse it). Reads no further than the first character that shows."""
    return not any(
        char in _SHOWN_FORMAT
        or not (
            char.isspace()
            or unicodedata.category(char) == "Cf"
            or _BLANK.match(char)
            or _IGNORABLE.match(char)
        )
        for char in text
    )


_ZWJ = "\u200d"
_SPACING_VOWELS = frozenset("\u0e33\u0eb3")  # Thai and Lao "am": they follow their consonant


def _joins_previous(char: str) -> bool:
    """A code point that belongs to the character before it: a combining mark (Thai and Lao
    vowel signs and tone marks among them), a variation selector, a skin tone, a tag, the
    vowel or final consonant of a decomposed (NFD) Hangul syllable."""
    code = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or char in _SPACING_VOWELS
        or char == _ZWJ
        or 0xFE00 <= code <= 0xFE0F
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
        or 0x1160 <= code <= 0x11FF  # Hangul jamo vowels and final consonants
        or 0xD7B0 <= code <= 0xD7FB
    )


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF  # a flag is two of these


def grapheme_end(text: str, at: int) -> int:
    """The cut position ``at`` moved left to the nearest boundary between characters as a
    person sees them, so a cut keeps no half of one: not before a combining mark, a variation
    selector, a skin tone or a tag, not on either side of a zero-width joiner (👨‍👩‍👧), not
    between the two halves of a flag."""
    at = max(0, min(at, len(text)))
    while 0 < at < len(text):
        if _joins_previous(text[at]) or text[at - 1] == _ZWJ:
            at -= 1
            continue
        run = 0  # regional indicators pair up from the start of their run
        while run < at and _regional(text[at - 1 - run]):
            run += 1
        if run % 2 and _regional(text[at]):
            at -= 1
            continue
        break
    return at


def quoted(name: str, limit: int = 0) -> str:
    """``name`` (a label, an item id) for a one-line message, in double quotes and as written:
    the joiners Persian and emoji sequences need (درخواست‌ها, 👨‍👩‍👧), any script, a backslash
    as itself. Only what a label may not hold, as it would break the line, hide or reorder
    the message, is shown as its escape: a line break (``\\n``), a tab, another control
    character, a zero-width space (``\\u200b``), a right-to-left override, half of an
    undecodable byte. With ``limit``, cut to that many characters with "…", never after a
    zero-width joiner nor before a mark that belongs to the character before it
    (``grapheme_end``)."""
    if limit and len(name) > limit:
        at = grapheme_end(name, limit - 1)
        name = name[: at or limit - 1] + "…"  # one long character (only hostile input): cut it
    shown = "".join(
        char.encode("unicode_escape").decode() if _hidden(char) else char for char in name
    )
    return f'"{shown}"'


def _hidden(char: str) -> bool:
    kind = unicodedata.category(char)
    if kind == "Cf":
        return char not in _JOINERS and char not in _SHOWN_FORMAT
    return kind in ("Cc", "Cs", "Zl", "Zp")


def label_name(raw: str) -> str:
    """A label name as stored and compared: trimmed, in one Unicode spelling (NFC: "café"
    typed as e + a combining accent is "café"). Width and other compatibility forms are kept
    (a fullwidth "ｂｕｇ" stays itself, and is refused as a twin of "bug" by ``case_twin``)."""
    return unicodedata.normalize("NFC", raw.strip())


def label_key(label: str) -> str:
    """What two spellings of one label share: case and character form folded (NFKC), the
    characters that show as nothing left out, each run of white space one space ("card  payment"
    typed with two spaces reads as "card payment"), and the dot of i in any case (Turkish
    "İade", "ıade", "IADE" and "iade" are one label: ``casefold`` alone makes "İ" an i with a
    combining dot above, and leaves the dotless "ı" a letter of its own)."""
    folded = _IGNORABLE.sub("", unicodedata.normalize("NFKC", label)).casefold()
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", _undotted(folded)))


# A run of white space (spaces, a no-break or an em space, ...): it shows as one gap.
_SPACES = re.compile(r"\s+")


# Soft-dotted letters (their dot goes when an accent sits on them) and the dotless forms that
# are the same letter in another case or script convention.
_SOFT_DOTTED = {"i", "j"}
_DOTLESS = str.maketrans({"\u0131": "i", "\u0237": "j"})  # ı, ȷ


def _undotted(text: str, *, dotless: bool = True) -> str:
    """``text`` in NFD with a combining dot above (U+0307) on an i or j left out (the dot the
    letter has anyway: "İ" lower-cased, Lithuanian "i̇̀"), and with ``dotless`` "ı"/"ȷ" as i/j.
    A dot above another accent (ccc 230) is kept: it is not the letter's own."""
    kept: list[str] = []
    base = ""  # the last letter, while only marks below or through it follow
    for char in unicodedata.normalize("NFD", text.translate(_DOTLESS) if dotless else text):
        ccc = unicodedata.combining(char)
        if char == "\u0307" and base in _SOFT_DOTTED:
            continue
        if ccc == 0:
            base = char
        elif ccc == 230:
            base = ""
        kept.append(char)
    return "".join(kept)


def _same_but(label: str, twin: str, *, dotless: bool) -> bool:
    """Whether the two differ only in case (with ``dotless``, or in "ı" for "i"): "Billing"
    and "billing", Turkish "İade" and "iade", "STRASSE" and "straße"; not a ligature or a
    fullwidth letter ("ﬁ" for "fi", which casefold() folds too)."""
    if _undotted(label.lower(), dotless=dotless) == _undotted(twin.lower(), dotless=dotless):
        return True
    nfkc = unicodedata.normalize
    return (
        nfkc("NFKC", label) == label
        and nfkc("NFKC", twin) == twin
        and _undotted(label.casefold(), dotless=dotless)
        == _undotted(twin.casefold(), dotless=dotless)
    )


def case_twin(label: str, labels: Iterable[str]) -> str | None:
    """The label of ``labels`` that ``label`` differs from only in case or character form
    ("Billing" or "ｂｉｌｌｉｎｇ" for "billing"), or None: there is none, or ``label`` is
    one of ``labels`` itself."""
    labels = list(labels)
    if label in labels:
        return None
    key = label_key(label)
    return next((name for name in labels if label_key(name) == key), None)


def only_twin(label: str, labels: Iterable[str]) -> str | None:
    """The label of ``labels`` that ``label`` is a twin of (``case_twin``'s rule: it differs
    only in case, character form, white space or characters that show as nothing) when exactly
    one is; None when none is, when several are (an older version stored both spellings: which
    is meant is for the person to say), or when ``label`` is one of ``labels`` itself. What a
    name typed for a label of the set ("card payment" typed with a plain space for the label
    imported with a no-break space) is taken as."""
    labels = list(labels)
    if label in labels:
        return None
    key = label_key(label)
    found = [name for name in labels if label_key(name) == key]
    return found[0] if len(found) == 1 else None


def looks_the_same(label: str, twin: str) -> bool:
    """Whether the two differ only in white space, in characters that show as nothing (a
    no-break space for a space, two spaces for one, a variation selector) or in Unicode
    spelling ("café" as e + a combining accent): what a person reads and types is the same, so
    advice to type the other could not be followed. Not a joiner (ZWJ, ZWNJ): it changes what
    is drawn (👩‍💻 is one glyph, 👩💻 two; Persian می‌خواهم is not میخواهم), nor case."""
    nfc = unicodedata.normalize
    return nfc("NFC", _spaced(label)) == nfc("NFC", _spaced(twin))


def taken_as(typed: str, stored: str) -> str:
    """The line that says a typed name was taken as the label of the set it is a twin of
    (``only_twin``), naming the label as stored."""
    return (
        f"{quoted(typed)} is taken as the label {quoted(stored)} of the set: they differ"
        f" {how_twins_differ(typed, stored)}"
    )


def _spaced(text: str) -> str:
    """``text`` with each run of white space (and the characters that show as nothing) one
    plain space: how it reads. The joiners are kept: they change how it is drawn."""
    return _SPACES.sub(" ", _UNSEEN.sub("", text))


# The default-ignorable characters that draw nothing and change nothing drawn around them:
# ``_IGNORABLE`` without the joiners.
_UNSEEN = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u3164\ufe00-\ufe0f"
    "\uffa0\U000e0100-\U000e01ef]"
)


def how_twins_differ(label: str, twin: str) -> str:
    """``only in case``, or ``only in character form (fullwidth, ...)``: for the refusal."""
    if _same_but(label, twin, dotless=False):
        return "only in case"
    if _same_but(label, twin, dotless=True):
        return "only in case or in the dot of an i (ı, i, İ, I)"
    if _UNSEEN.sub("", label).lower() == _UNSEEN.sub("", twin).lower():
        return "only in characters that show as nothing (a variation selector, ...)"
    if _IGNORABLE.sub("", label).lower() == _IGNORABLE.sub("", twin).lower():
        return (
            "only in characters that show as nothing themselves (a joiner, ZWJ or ZWNJ, which"
            " can change how the characters around it are drawn)"
        )
    if _spaced(label) == _spaced(twin):
        return "only in white space (two spaces for one, a no-break space, ...)"
    if _same_but(_spaced(label), _spaced(twin), dotless=True):
        return "only in case and white space (two spaces for one, a no-break space, ...)"
    return "only in character form (fullwidth, ligatures, ...)"
