"""Guidelines: what each label means, on demand, and the item's chosen meta fields.

A label may carry a description and examples (``[labels.NAME]`` in hitl.toml); when any does,
questions get a "Guidelines" button that opens a modal listing the labels in force with theirs
(pushed on top of the labeling modal when clicked there): the labels that have one first, then
the names of the others, shortened to fit Slack's window (examples first) when it is too big.
``HITL_SHOW_META`` names the fields of an item's meta drawn under its question, in one context
line within Slack's limits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject, SectionBlock
from slack_sdk.models.views import View

from bot.config import Guideline
from bot.slack import blocks

GUIDELINES_CALLBACK = "hitl.guidelines"
MAX_BLOCKS = 100  # Slack's limit for a modal
MAX_EXAMPLES = 5
META_VALUE_LIMIT = 200


def meta_line(meta: Mapping[str, Any], fields: Sequence[str]) -> str:
    """``field: value · field: value`` for the ``fields`` the item has, each value escaped and
    cut, the whole within a context element's limit; empty when it has none of them. A value
    reads as the producer sent it (JSON): text as itself, ``true``/``false``, a number as
    JSON writes it, a list's items joined with ", ", an object as JSON (``{"name": "ACME"}``).
    Only the characters that can be shown are made: a big value is never written out whole."""
    room = META_VALUE_LIMIT + 1  # one more than shown: enough to know the value is cut

    def head(chunks: Iterable[str]) -> str:
        """The first ``room`` characters of the text ``chunks`` make, read no further."""
        kept, size = [], 0
        for chunk in chunks:
            kept.append(chunk[: room - size])
            size += len(kept[-1])
            if size >= room:
                break
        return "".join(kept)

    def as_json(value: Any) -> str:
        encoder = json.JSONEncoder(ensure_ascii=False, default=str)
        return head(encoder.iterencode(value))

    def listed(values: list[Any]) -> Iterator[str]:
        shown = (value for value in values if value != "")  # an empty text shows nothing
        for n, value in enumerate(shown):
            if n:
                yield ", "
            yield value if isinstance(value, str) else as_json(value)

    parts = []
    for name in fields:
        value = meta.get(name)
        if value is None or (isinstance(value, str | list | dict) and not value):
            continue
        if isinstance(value, str):
            text = head([value])
        elif isinstance(value, list):
            text = head(listed(value))
        else:
            text = as_json(value)
        if not text:  # a list of empty texts
            continue
        shown = blocks.escape(text.replace("\n", " "))
        if len(shown) > META_VALUE_LIMIT:  # never inside an escape nor a character
            shown = blocks.clip(shown, META_VALUE_LIMIT - 1) + "…"
        parts.append(f"{blocks.escape(name)}: {shown}")
    return blocks.fit(" · ".join(parts)) if parts else ""


async def guidelines_view_off_loop(
    labels: Sequence[str], guidelines: Mapping[str, Guideline]
) -> View:
    """``guidelines_view`` built in a worker thread: the cuts it tries grow with the labels and
    their descriptions (14-250 ms for 500-5,000 labels, about a second for thousands of long
    ones), time the event loop must not stop for (the click's trigger_id lasts 3 s, and other
    clicks wait). Pure: it reads copies of the labels and guidelines, never the store."""
    return await asyncio.to_thread(guidelines_view, list(labels), dict(guidelines))


def guidelines_view(labels: Sequence[str], guidelines: Mapping[str, Guideline]) -> View:
    """A modal with each label in force: those with a description or examples first, each with
    theirs, then the others (their names in a line or a few when they are many). Within
    Slack's 100 blocks and ``VIEW_BUDGET`` for the whole view: when it would not fit, examples
    are cut first (fewer, then none), then descriptions shortened, so every label's guideline
    can be read. When even the names are too many for one window (thousands, or long non-Latin
    ones), it lists as many as fit, the guidelines first, and says how many more there are."""
    guided = [label for label in labels if _has_guide(guidelines.get(label))]
    bare = [label for label in labels if not _has_guide(guidelines.get(label))]
    # escaped once, each cut only shortens them (``guidelines_view_off_loop``: in a thread)
    escaped = {label: _escaped(label, guidelines[label]) for label in guided}

    def whole(examples: int, chars: int | None) -> View | None:
        texts = _guidelines_texts(guided, bare, escaped, examples, chars)
        # the texts' size first (cheap: each cut is tried), then the view's
        if texts is None or sum(len(json.dumps(t)) + SECTION_COST for t in texts) > VIEW_BUDGET:
            return None
        view = _guidelines_modal(texts, shortened=(examples, chars) != CUTS[0])
        return view if len(json.dumps(view.to_dict()).encode()) <= VIEW_BUDGET else None

    if (view := _mildest(whole)) is not None:
        return view
    # the last resort: as many as fit in LIST_BUDGET and Slack's blocks, then "… and N more"
    names = [_part(blocks.name_mrkdwn(label)) for label in bare]
    room = MAX_BLOCKS - 2  # below the head line, above the "… and N more" line

    def listed(examples: int, chars: int | None) -> tuple[list[str], int, int] | None:
        entries = [_part(_entry(escaped[label], examples, chars)) for label in guided]
        packed = _pack_within(entries, "\n\n", "", room, LIST_BUDGET)
        return packed if packed[1] == len(guided) else None

    # the mildest cut that shows every guideline, else as many as the last cut shows
    packed = _mildest(listed)
    if packed is None:
        entries = [_part(_entry(escaped[label], *CUTS[-1])) for label in guided]
        packed = _pack_within(entries, "\n\n", "", room, LIST_BUDGET)
    texts, shown, used = packed
    if shown == len(guided):
        more, named, _ = _pack_within(names, ", ", NO_GUIDE, room - len(texts), LIST_BUDGET - used)
        texts, shown = texts + more, shown + named
    texts.append(f"… and {len(labels) - shown} more: `hitl labels show` lists them all")
    return _guidelines_modal(texts, shortened=True)


def _guidelines_modal(texts: Sequence[str], shortened: bool) -> View:
    head = "What each label means" + (" (shortened to fit in Slack)" if shortened else "")
    return View(
        type="modal",
        callback_id=GUIDELINES_CALLBACK,
        title="Guidelines",
        close="Close",
        blocks=[
            ContextBlock(elements=[MarkdownTextObject(text=head)]),
            *(SectionBlock(text=MarkdownTextObject(text=text)) for text in texts),
        ],
    )


VIEW_BUDGET = blocks.VIEW_BUDGET  # Slack's 250 kB for a view, with room to spare
# The sections' texts in the last resort, leaving room for the head line, the "… and N more"
# line and the view's own fields; and what a section costs besides its text.
LIST_BUDGET = VIEW_BUDGET - 2_000
SECTION_COST = 80
# How a window too big for Slack is cut, one step at a time: (examples per label, characters of
# a description, None for all of it).
CUTS = (
    (MAX_EXAMPLES, None),
    (3, None),
    (1, None),
    (0, None),
    (0, 1000),
    (0, 400),
    (0, 150),
    (0, 60),
    (0, 0),
)
NO_GUIDE = "*No description yet:* "
# Before the last cut (names only): the longest head of each description that fits, down to
# this many characters (found in a few tries: ``_mildest``).
SHORTEST_HEAD = 20

T = TypeVar("T")


def _mildest(attempt: Callable[[int, int | None], T | None]) -> T | None:
    """What ``attempt(examples, chars)`` gives at the mildest cut it succeeds with (None: it
    does not fit): the ``CUTS`` in turn, and before the last one (names only) the longest head
    of the descriptions from the cut before down to ``SHORTEST_HEAD`` characters, halving the
    range each try (a longer head never fits where a shorter one does not), so a window of
    many long descriptions keeps as much of each as fits, never names only while 20
    characters of each would fit. A few tries more, each as costly as a cut."""
    for n, (examples, chars) in enumerate(CUTS):
        if chars == 0 and n > 0 and CUTS[n - 1][0] == 0 and CUTS[n - 1][1]:
            low, high, best = SHORTEST_HEAD, CUTS[n - 1][1] - 1, None
            while low <= high:
                mid = (low + high) // 2
                got = attempt(0, mid)
                if got is None:
                    high = mid - 1
                else:
                    best, low = got, mid + 1
            if best is not None:
                return best
        if (got := attempt(examples, chars)) is not None:
            return got
    return None


def _has_guide(guide: Guideline | None) -> bool:
    return guide is not None and bool(guide.description or guide.examples)


def _guidelines_texts(
    guided: Sequence[str],
    bare: Sequence[str],
    escaped: Mapping[str, Escaped],
    examples: int,
    chars: int | None,
) -> list[str] | None:
    """The window's sections with at most ``examples`` examples and ``chars`` characters of
    description per label; None when they do not fit in Slack's blocks."""
    room = MAX_BLOCKS - 1  # below the head line
    entries = [_entry(escaped[label], examples, chars) for label in guided]
    # the labels with no guideline: one section each when there is room, else their names
    names = [f"*{blocks.name_mrkdwn(label)}*\n_no description yet_" for label in bare]
    if len(entries) + len(names) > room:
        names = _packed([blocks.name_mrkdwn(label) for label in bare], ", ", NO_GUIDE)
    if len(entries) > room - len(names):  # several labels to a section
        entries = _packed(entries, "\n\n")
    if len(entries) <= room - len(names):
        return entries + names
    return None  # thousands of labels: guidelines_view's last resort lists as many as fit


# A guided label's name (in a code span, ``name_mrkdwn``), description and examples (as many
# as are ever shown), escaped.
Escaped = tuple[str, str, tuple[str, ...]]


def _escaped(label: str, guide: Guideline) -> Escaped:
    examples = tuple(blocks.escape(example) for example in guide.examples[:MAX_EXAMPLES])
    return blocks.name_mrkdwn(label), blocks.escape(guide.description), examples


def _entry(escaped: Escaped, examples: int, chars: int | None) -> str:
    """A label's section: its name, its description cut to ``chars``, ``examples`` examples."""
    name, description, shown = escaped
    text = f"*{name}*"
    if chars is not None and len(description) > chars:
        description = blocks.clip(description, chars - 1) + "…" if chars > 1 else ""
    if description:
        text += f"\n{description}"
    for example in shown[:examples]:
        text += f"\n• _{example}_"
    return blocks.fit(text)


def _part(text: str) -> tuple[str, int]:
    """``text`` and its size in the JSON slack_sdk sends (non-ASCII escaped)."""
    return text, len(json.dumps(text)) - 2


def _pack_within(
    parts: Sequence[tuple[str, int]], sep: str, lead: str, sections: int, budget: int
) -> tuple[list[str], int, int]:
    """The first of ``parts`` (text, JSON size) joined with ``sep``, ``lead`` before the first,
    in at most ``sections`` texts of Slack's text limit costing at most ``budget`` (their JSON
    and ``SECTION_COST`` each): the texts, how many parts they hold, what they cost."""
    texts: list[str] = []
    text = ""
    used = 0
    for count, (part, size) in enumerate(parts):
        if text and len(text) + len(sep) + len(part) <= blocks.TEXT_LIMIT:
            cost, fresh = _part(sep)[1] + size, False
        else:  # a new section
            start = "" if texts or text else lead
            cost, fresh = SECTION_COST + _part(start)[1] + size, True
            if len(texts) + bool(text) >= sections:
                cost = budget + 1
        if used + cost > budget:
            return [*texts, text] if text else texts, count, used
        used += cost
        if fresh:
            if text:
                texts.append(text)
            text = ("" if texts else lead) + part
        else:
            text += sep + part
    return [*texts, text] if text else texts, len(parts), used


def _packed(parts: Sequence[str], sep: str, lead: str = "") -> list[str]:
    """``parts`` joined with ``sep`` into as few texts of Slack's text limit as hold them whole,
    ``lead`` before the first."""
    texts: list[str] = []
    text = lead
    for part in parts:
        if text not in ("", lead) and len(text) + len(sep) + len(part) > blocks.TEXT_LIMIT:
            texts.append(text)
            text = ""
        text += (sep if text not in ("", lead) else "") + part
    if text not in ("", lead):
        texts.append(text)
    return texts
