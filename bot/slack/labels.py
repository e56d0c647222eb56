"""`/hitl labels`: admins see the label set and add, rename, merge or retire labels.

The change itself is the store's (``Store.change_label_set``, as `hitl labels` makes it); this
module reads the words of the command (a label with spaces in quotes, ``label_words``) and
words the answer. The caller (``bot.slack.commands``) runs it in a worker thread on a
connection of its own (a merge relabels every item of the label: seconds at a million items)
and redraws open questions with the new buttons.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from bot.config import Settings
from bot.errors import StoreError
from bot.labelnames import label_key, label_problem, looks_the_same
from bot.labelset import current_labels, retired_note
from bot.slack import blocks
from bot.store import Store
from bot.words import code_text

USAGE = (
    "Usage: `/hitl labels` shows the label set; `/hitl labels add LABEL`, "
    "`/hitl labels rename OLD NEW`, `/hitl labels merge OLD INTO`, `/hitl labels retire LABEL` "
    'change it (a label with spaces in quotes: `"card arrival"`).'
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


def wrong_words(
    action: str,
    names: list[str],
    labels: Sequence[str] = (),
    meant: Sequence[list[str]] = (),
    *,
    quoted: bool = False,
) -> str:
    """What is wrong with `/hitl labels ACTION NAMES` (an unknown change, or too few or too
    many labels for it), and the right form: with too many words, how to quote a label with
    spaces (``meant``: the ways the words split into labels the change can take)."""
    shown = f"`/hitl labels {blocks.fit(blocks.escape(action), 40)}`"  # whole characters, "…"
    if action not in FORMS:
        hint = HINTS.get(action)
        return f"I don't know {shown}" + (f" ({hint})." if hint else f". {USAGE}")
    form = FORMS[action]
    if len(names) < len(form):
        wants = " and ".join(form)
        filled = " ".join([_quoted(n) for n in names] + list(form[len(names) :]))  # as typed
        return f"`{action}` needs {wants}: `/hitl labels {action} {filled}`."
    one = "one label" if len(form) == 1 else f"{len(form)} labels"
    wrong = f"`{action}` takes {one} (`/hitl labels {action} {' '.join(form)}`), not {len(names)}"
    spaced = any(len(label.split()) > 1 for label in labels)
    if action in NAMED_ONLY and not spaced and not quoted:  # true of every label in the set
        return f"{wrong}; a label is one word."
    if not meant and len(form) == 1 and not MUST_EXIST[action] and not quoted:
        meant = [[" ".join(names)]]  # `add card arrival`: a new label with spaces
    elif not meant:  # never a label the words do not name (`retire billing account`: two)
        meant = [["LABEL WITH SPACES"]] if len(form) == 1 else [["OLD LABEL", "NEW LABEL"]]
    forms = [f"`/hitl labels {action} {' '.join(_quoted(n) for n in split)}`" for split in meant]
    if len(forms) == 1:
        return f"{wrong}. A label with spaces goes in quotes: {forms[0]}."
    return f"{wrong}. Which labels did you mean? Put a label with spaces in quotes: " + (
        " or ".join(forms[:3]) + "."
    )


def _quoted(name: str) -> str:
    shown = blocks.fit(code_text(name), 80)  # in a command's code span; cut with "…"
    return f'"{shown}"' if len(name.split()) > 1 else shown


# The changes whose every label must be in the set already, and which of a change's labels must.
NAMED_ONLY = ("merge", "retire")
MUST_EXIST = {"add": (), "rename": (0,), "merge": (0, 1), "retire": (0,)}
# Quotes around a label with spaces: straight ones, and the typographic ones Slack's clients
# may type instead ("smart quotes"), each with the marks that close it.
QUOTES = {'"': '"”“', "“": '”“"', "„": '“”"', "”": '”"'}


class Words(list[str]):
    """The words of `/hitl labels …`, a label in quotes one word (``label_words``); ``raw``
    the words as split on white space, ``quoted`` whether any quote was read as one, ``gaps``
    the white space as typed between each word and the next (a no-break space, two spaces)."""

    raw: list[str]
    quoted: bool
    gaps: list[str]


def label_words(text: str) -> Words:
    """``text`` split into words on white space, except that a word starting with a quote
    (``"`` or Slack's typographic ones) runs to the closing quote before a space or the end,
    quotes left out: `merge "card arrival" billing` is 3 words. A quote never closed is a
    character of its word, as before quotes were read."""
    words = Words()
    words.raw, words.quoted, words.gaps = text.split(), False, []
    i, n = 0, len(text)
    last = None  # where the word before ended
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        closes = QUOTES.get(text[i])
        end = next(
            (
                k
                for k in range(i + 1, n)
                if closes and text[k] in closes and (k + 1 == n or text[k + 1].isspace())
            ),
            None,
        )
        if last is not None:
            words.gaps.append(text[last:i])
        if end is not None:
            words.append(text[i + 1 : end].strip())
            words.quoted = True
            i = last = end + 1
            continue
        j = i
        while j < n and not text[j].isspace():
            j += 1
        words.append(text[i:j])
        i = last = j
    return words


def _names(
    action: str,
    names: list[str],
    raw: list[str],
    quoted: bool,
    labels: list[str],
    gaps: Sequence[str] | None = None,
):
    """The labels `/hitl labels ACTION …` names: its words, a label in quotes one of them; the
    words as typed when only they name labels in the set (a label with a quote in it); words
    unquoted that split one way only into the labels of the set the change takes (and a new
    name of one word: `rename card arrival delivery`). Else what is wrong (``wrong_words``).
    Words unquoted are joined with a space, or with the white space typed between them
    (``gaps``, ``Words.gaps``) where that is a label of the set as it is: a label stored with
    a no-break space, pasted, is that label, not a look-alike the store takes for it."""
    arity = ARITY[action]
    twins: dict[str, list[str]] | None = None  # the labels of the set of each ``label_key``

    def known(name: str) -> bool:
        """A label of the set, or the twin of exactly one that looks the same (``only_twin``,
        ``looks_the_same``: the store takes "card payment" typed with a plain space for the
        label stored with a no-break space; "Maße" typed for "Masse" is another word, which
        the store refuses, naming the label)."""
        nonlocal twins
        if name in labels or (name := unicodedata.normalize("NFC", name)) in labels:
            return True
        if twins is None:  # once per command, not per way the words split
            twins = {}
            for label in labels:
                twins.setdefault(label_key(label), []).append(label)
        found = twins.get(label_key(name), [])
        return len(found) == 1 and looks_the_same(name, found[0])

    def fits(split: list[str]) -> bool:
        return len(split) == arity and all(known(split[i]) for i in MUST_EXIST[action])

    if fits(names):
        return names
    if raw != names and fits(raw):
        return raw
    if len(names) <= arity:
        return names if len(names) == arity else wrong_words(action, names)
    if gaps is None or len(gaps) != len(names) - 1:
        gaps = [" "] * (len(names) - 1)

    def joined(start: int, end: int) -> str:  # names[start:end], one label
        plain = " ".join(names[start:end])
        typed = names[start] + "".join(gaps[k] + names[k + 1] for k in range(start, end - 1))
        exact = typed in labels or unicodedata.normalize("NFC", typed) in labels
        return typed if exact else plain

    def splits(start: int, parts: int) -> list[list[str]]:
        """Every way to cut names[start:] into ``parts`` runs, in order, each ``joined``."""
        if parts == 1:
            return [[joined(start, len(names))]]
        return [
            [joined(start, cut), *rest]
            for cut in range(start + 1, len(names) - parts + 2)
            for rest in splits(cut, parts - 1)
        ]

    meant = [] if quoted or len(names) > 40 else [s for s in splits(0, arity) if fits(s)]
    new = [i for i in range(arity) if i not in MUST_EXIST[action]]  # a name the change makes
    if len(meant) == 1 and all(len(meant[0][i].split()) == 1 for i in new):
        return meant[0]  # words unquoted make a label of the set, never a new one
    return wrong_words(action, names, labels, meant, quoted=quoted)


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
    action, names = words[0].lower(), list(words[1:])
    if action not in ARITY:
        return wrong_words(action, names), False
    raw = getattr(words, "raw", list(words))[1:]
    gaps = getattr(words, "gaps", None)
    gaps = gaps[1:] if gaps is not None else None  # between the names (after the action's)
    named = _names(action, names, raw, getattr(words, "quoted", False), labels, gaps)
    if isinstance(named, str):
        return named, False
    names = named
    for name in names:
        if problem := label_problem(name):
            shown = blocks.fit(code_text(name), 40)  # whole characters, "…" when cut
            return f"Cannot {action}: the label `{shown}` {problem}.", False
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
    made = code_text(after.made)  # as stored (NFC), for the code spans it is put in
    if action == "retire":
        aliases = store.label_aliases()  # a route set under an old name of it is named too
        note = retired_note(
            made, after.labeled, slack=True, settings=settings, aliases=aliases
        ) + after.gold_note(f"`{made}`")
    else:  # the label made, said apart: a long list is cut before it
        note = {"add": "Added", "rename": "Renamed to", "merge": "Merged into"}[action]
        note = f"{note} `{made}`."
    # a name typed for the label of the set it is a twin of: the label, as stored
    taken = "".join(f" {blocks.escape(line)}." for line in after.taken_notes())
    head, tail = "Done. Labels now: ", f".{taken} {note} Open questions are redrawn."
    return blocks.fit(head + listed(after, ROOM - len(head) - len(tail)) + tail), True


def listed(labels: list[str], room: int) -> str:
    """``labels`` as `a`, `b`, ... in ``room`` characters: the whole entries that fit, then
    how many more and where to see them all, never a label cut in half."""
    entries = [blocks.name_mrkdwn(label) for label in labels]
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
