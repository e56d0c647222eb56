"""Block Kit builders: plain data in, ``slack_sdk.models.blocks`` out (their limits are checked).

slack_sdk does not check every limit (a context element's text, for one), so every text these
builders compose is cut to Slack's 3,000 characters here, never inside a mention, an escape or
a character as people see it (a flag, 👍🏽, an accent: ``grapheme_end``): a tally of hundreds
of voters names as many as fit and says how many more.

Every ``action_id`` the bot uses is defined here, once; listeners import them. Action values
carry the item id and the label as JSON, so nothing depends on a label fitting a button.

Its length (~580 lines) is one builder per message or view, with the fitting of texts into
Slack's limits they share; the review, labels and guidelines views are in their own modules.
"""

from __future__ import annotations

import functools
import json
import random
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    ExternalDataSelectElement,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.labelnames import grapheme_end, label_key
from bot.words import count, escape, name_mrkdwn, person

# -- action ids: "hitl.<where>.<what>", where q = a channel question, m = the labeling modal
LABEL_ACTION = re.compile(r"^hitl\.(q|m)\.label\.\d+$")
OTHER_ACTION = re.compile(r"^hitl\.(q|m)\.other$")
OTHER_EXTERNAL_ACTION = re.compile(r"^hitl\.(q|m)\.other_ext$")
SKIP_ACTION = re.compile(r"^hitl\.(q|m)\.skip$")
UNDO_ACTION = "hitl.undo"
START_LABELING_ACTION = "hitl.home.start"
GUIDELINES_ACTION = re.compile(r"^hitl\.(q|m)\.guidelines$")
MODAL_CALLBACK = "hitl.label_modal"

MAX_GUESS_BUTTONS = 5
MAX_STATIC_OPTIONS = 100
MAX_OPTION_GROUPS = 100  # a select's option_groups, each of up to MAX_STATIC_OPTIONS
# Slack refuses a view over 250 kB (``view_too_large``), measured here as slack_sdk sends it
# (JSON with non-ASCII escaped: the larger count), with room to spare.
VIEW_BUDGET = 240_000
SECTION_LIMIT = 3000
TEXT_LIMIT = 3000  # any text object: a section's text, a context element
TEXT_BUDGET = 2800  # room inside a section for the quote marks and the "cut" marker
FALLBACK_LIMIT = 300


@dataclass(frozen=True)
class Question:
    """What a question message shows; built from the database by the caller."""

    item_id: str
    text: str
    labels: Sequence[str]
    guesses: Sequence[tuple[str, float]] = ()  # the model's ranked top labels (empty: no model)
    model_version: int | None = None
    reason: str = "uncertain"
    status: str = "open"  # open, resolved, skipped
    votes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    skips: Sequence[str] = ()
    votes_needed: int = 1
    resolved_label: str | None = None
    show_votes: bool = False  # False: an open question shows how many answered, not what
    meta_line: str = ""  # the item's HITL_SHOW_META fields, drawn under an open question
    # An admin's decision (``hitl labels set``/``remove``, ``/hitl review``), however people
    # voted: who made it; ``confirmed``: the label it had kept; a set-aside item's
    # ``removed_label`` (None: it had none) and the ``removal_reason``.
    set_by: str | None = None
    confirmed: bool = False
    removed_label: str | None = None
    removal_reason: str = ""
    has_guidelines: bool = False  # a "Guidelines" button opens the labels' descriptions
    # "Other…" as the type-ahead (the options served by the bot) even for 100 labels or fewer:
    # Slack refused the label set's question as too long with them inline (``has_inline_other``)
    other_typeahead: bool = False


def clip(escaped: str, room: int) -> str:
    """The longest head of ``escaped`` mrkdwn within ``room`` characters that ends neither
    inside an ``&…;`` escape nor inside a character as a person sees it."""
    if len(escaped) <= room:
        return escaped
    head = escaped[: max(room, 0)]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]  # do not leave half of "&amp;"
    return escaped[: grapheme_end(escaped, len(head))]


def cut(text: str, budget: int = TEXT_BUDGET, *, quote: bool = False) -> str:
    """Escape ``text`` (as a quote, with ``quote``) and cut it to fit ``budget`` characters,
    never inside an entity nor a character (``clip``)."""
    escaped = escape(text)
    if quote:
        escaped = ">" + escaped.replace("\n", "\n>")
    if len(escaped) <= budget:
        return escaped
    marker = f"… _(cut: {len(text):,} characters in all)_"
    return clip(escaped, budget - len(marker)).rstrip() + marker


def fit(text: str, limit: int = TEXT_LIMIT) -> str:
    """Cut composed mrkdwn to ``limit`` characters with "…": at a line end when one is near,
    never inside a ``<…>`` mention or link, an ``&…;`` escape nor a character as a person
    sees it (``grapheme_end``). A code span or preformatted block the cut leaves open is
    closed after the "…", so the rest of the message is not shown as code, nor the span's
    label as plain text with a stray backtick; and so is the bold a label in bold (`` *`name`*
    ``, as tallies write it) was cut out of, else its ``*`` showed as it is."""
    if len(text) <= limit:
        return text
    kept = _fit_head(text, limit - 1)
    if _closers(kept):  # again, with room for the closers (at most ```, or `*)
        kept = _fit_head(text, limit - 1 - 3)
    return kept + "…" + _closers(kept)


def _closers(mrkdwn: str) -> str:
    """What closes the marks ``mrkdwn`` ends inside: its open code (``_open_code``), and the
    bold of a label in bold whose code span is open, or closed at the very end (its ``*``
    cut off): "`*", "*"."""
    code = _open_code(mrkdwn)
    if code == "```":
        return code
    line = mrkdwn[mrkdwn.rfind("\n") + 1 :]
    if code:  # the span opened at the line's last backtick
        opened = line.rfind("`")
    elif line.endswith("`") and not line.endswith("```"):  # a span closed at the cut
        opened = line.rfind("`", 0, len(line) - 1)
    else:
        return ""
    return code + ("*" if opened > 0 and line[opened - 1] == "*" else "")


def _open_code(mrkdwn: str) -> str:
    """What closes the code ``mrkdwn`` ends inside: "```" for a preformatted block, "`" for a
    code span (which ends at its line's end in Slack), "" when it ends in plain text."""
    if mrkdwn.count("```") % 2:
        return "```"
    last_line = mrkdwn[mrkdwn.rfind("\n") + 1 :].replace("```", "")
    return "`" if last_line.count("`") % 2 else ""


def _fit_head(text: str, room: int) -> str:
    """``fit``'s cut: the head of ``text`` within ``room`` characters, before "…"."""
    head = text[:room]
    for opener, closer in (("<", ">"), ("&", ";")):
        at = head.rfind(opener)
        if at != -1 and closer not in head[at:]:
            head = head[:at]
    line_end = head.rfind("\n")
    if line_end > (room + 1) // 2:
        head = head[:line_end]
    head = head.rstrip(" ,·(")
    for opener in (" *`", " *"):  # a label in bold opened with nothing of it after
        if head.endswith(opener):
            head = head[: 1 - len(opener)].rstrip(" ,·(")
    return text[: grapheme_end(text, len(head))]


def encode_value(item_id: str, label: str | None = None, decision: int | None = None) -> str:
    """A button's value: its item and label; an Undo's also the decision it undoes (``d``,
    the answer that made it: ``decision_of``)."""
    value: dict[str, object] = {"i": item_id, "l": label}
    if decision is not None:
        value["d"] = decision
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def decision_of(value: str | None) -> int | None:
    """The decision an Undo button's value was offered for (``encode_value``), or None (an
    offer made before the value said it, or a value not ours)."""
    try:
        data = json.loads(value or "")
    except (ValueError, TypeError):
        return None
    found = data.get("d") if isinstance(data, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def decode_value(value: str | None) -> tuple[str, str | None]:
    """(item_id, label) from a button value; raises ValueError for anything else."""
    data = json.loads(value or "")
    if not isinstance(data, dict) or not isinstance(data.get("i"), str):
        raise ValueError("not a slack-hitl action value")
    label = data.get("l")
    if label is not None and not isinstance(label, str):
        raise ValueError("label is not text")
    return data["i"], label


def block_id_for(item_id: str) -> str:
    return f"q:{item_id}"[:255]


def item_id_from_block(block_id: str | None) -> str | None:
    return block_id[2:] if block_id and block_id.startswith("q:") else None


def _percent(p: float) -> str:
    return f"{p * 100:.0f}%"


def _label(label: str) -> str:
    return f"*{name_mrkdwn(label)}*"


def _mentions(users: Sequence[str], shown: int | None = None) -> str:
    """Mentions of ``users``; past the first ``shown`` of them, how many more there are."""
    if shown is None or len(users) <= shown:
        return ", ".join(person(u) for u in users)
    if shown == 0:
        return f"{len(users)} people"
    head = ", ".join(person(u) for u in users[:shown])
    return f"{head} and {len(users) - shown} more"


def _fit_mentions(build: Callable[[int | None], str], most: int) -> str:
    """``build(shown)`` naming as many people per list as fit in a text object."""
    text = build(None)
    if len(text) <= TEXT_LIMIT:
        return text
    low, high = 0, most  # the largest `shown` that fits; the length grows with it
    while low < high:
        middle = (low + high + 1) // 2
        if len(build(middle)) <= TEXT_LIMIT:
            low = middle
        else:
            high = middle - 1
    return fit(build(low))


def guess_line(q: Question) -> str:
    if not q.guesses:
        return "No model yet: your answers train the first one."
    label, p = q.guesses[0]
    line = f"Model's guess: {_label(label)} ({_percent(p)})"
    if len(q.guesses) > 1:
        others = ", ".join(f"{name_mrkdwn(lb)} {_percent(pp)}" for lb, pp in q.guesses[1:3])
        line += f" · then {others}"
    return line


def tally_line(q: Question) -> str | None:
    if not q.votes and not q.skips:
        return None
    needed = q.votes_needed // 2 + 1
    decide = "decides" if needed == 1 else "decide"
    if q.votes_needed == 1 and not q.votes:  # only skips so far: one vote decides, shown then

        def first(shown: int | None) -> str:
            return f"Skipped by {_mentions(q.skips, shown)}; the first answer decides."

        return _fit_mentions(first, len(q.skips))
    if not q.show_votes:
        # Answers stay independent: no label and no voter until the item is decided.
        n_in = sum(len(us) for us in q.votes.values())
        # all the answers needed are in and none has a majority (a split): more are wanted
        answered = (
            ""
            if not n_in
            else f"{n_in} of {q.votes_needed} answers in"
            if n_in < q.votes_needed
            else f"{count(n_in, 'answer')} in, no majority yet"
        )

        def hidden(shown: int | None) -> str:
            parts = [answered] if answered else []
            if q.skips:
                parts.append(f"skipped by {_mentions(q.skips, shown)}")
            return (
                f"{' · '.join(parts)}. {count(needed, 'matching answer')} {decide}; "
                "answers show once it is decided."
            )

        return _fit_mentions(hidden, len(q.skips))

    def build(shown: int | None) -> str:
        parts = [f"{_label(lb)} {len(us)} ({_mentions(us, shown)})" for lb, us in q.votes.items()]
        if q.skips:
            parts.append(f"skipped by {_mentions(q.skips, shown)}")
        return f"Votes so far: {' · '.join(parts)}. {count(needed, 'matching vote')} {decide}."

    return _fit_mentions(build, max(len(q.skips), *(len(us) for us in q.votes.values()), 0))


def _reason_text(reason: str, version: int | None) -> str:
    why = {
        "uncertain": "the model is unsure",
        "audit": "random check of the model",
        "cold_start": "collecting first labels",
        "warm_up": "random pick while the model is young",
        "typical": "typical of a group no label covers yet",
    }.get(reason, reason)
    if not version:
        model = "no model"
    else:  # a negative version is a working model (a refresh on -version labels)
        model = f"model r{-version}" if version < 0 else f"model v{version}"
    return f"Why this one: {why} · {model}"


def _text(text: str) -> MarkdownTextObject:
    """A mrkdwn text object, cut to Slack's limit."""
    return MarkdownTextObject(text=fit(text))


def question_blocks(q: Question, prefix: str = "q") -> list[Block]:
    """The question message (or, with ``prefix="m"``, the body of the labeling modal)."""
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=cut(q.text, quote=True))),
    ]
    if q.status == "resolved" and q.resolved_label is not None:
        voters = q.votes.get(q.resolved_label, ())
        label = _label(q.resolved_label)
        if q.set_by:  # an admin's label (review, hitl labels set), whoever voted it
            how = "confirmed" if q.confirmed else "set"
            decided = f"✅ {label}, {how} by {person(q.set_by)}"
            if q.votes:  # the counts only: the admin's decision, not the voters', is in force
                tally = " · ".join(f"{_label(lb)} {len(us)}" for lb, us in q.votes.items())
                decided += f" (votes: {tally})"
        elif not voters:
            decided = f"✅ {label}"
        elif q.votes_needed > 1 or len(q.votes) > 1:
            tally = " · ".join(f"{_label(lb)} {len(us)}" for lb, us in q.votes.items())
            decided = _fit_mentions(
                lambda shown: f"✅ {label} by vote ({tally}: {_mentions(voters, shown)})",
                len(voters),
            )
        else:
            decided = _fit_mentions(
                lambda shown: f"✅ {label} by {_mentions(voters, shown)}", len(voters)
            )
        blocks.append(SectionBlock(text=_text(decided)))
        blocks.append(ContextBlock(elements=[_text(_outcome_context(q))]))
        return blocks
    if q.status == "skipped":
        if q.set_by:  # an admin took the label away (or set the open item aside)
            what = f"Label {_label(q.removed_label)} removed" if q.removed_label else "Set aside"
            skipped = f"⏭ {what} by {person(q.set_by)}"
            if q.removal_reason:
                skipped += f" ({escape(q.removal_reason)})"
        elif q.skips:  # set aside by skips: no one is asked again; an admin can still label it
            again = f"an admin can still label it: `/hitl review {escape(q.item_id)}`"
            skipped = _fit_mentions(
                lambda shown: (
                    f"⏭ Set aside after skips by {_mentions(q.skips, shown)}:"
                    f" no one will be asked again ({again})"
                ),
                len(q.skips),
            )
        else:
            skipped = "⏭ Set aside"
        blocks.append(SectionBlock(text=_text(skipped)))
        # what the model guessed while it was open; never "No model yet" (one may serve now)
        guessed = guess_line(q) if q.guesses else "The model had no guess yet."
        blocks.append(ContextBlock(elements=[_text(guessed)]))
        return blocks

    context = [_text(guess_line(q))]
    context.append(_text(_reason_text(q.reason, q.model_version)))
    tally = tally_line(q)
    if tally:
        context.append(_text(tally))
    if q.meta_line:
        context.append(_text(q.meta_line))
    blocks.append(ContextBlock(elements=context))
    blocks.append(
        ActionsBlock(block_id=block_id_for(q.item_id), elements=answer_elements(q, prefix))
    )
    return blocks


def _outcome_context(q: Question) -> str:
    if not q.guesses:
        return "The model had no guess yet."
    label, p = q.guesses[0]
    verdict = "right" if label == q.resolved_label else "wrong"
    return f"Model guessed {_label(label)} ({_percent(p)}): {verdict}."


def cold_start_buttons(item_id: str, labels: Sequence[str]) -> list[str]:
    """With no model, the labels that get a button: a sample drawn at random, seeded by the
    item (its redraws and the modal show the same ones), kept in the labels' order. Every
    label gets buttons on some items, so no label is answerable only through "Other…"."""
    if len(labels) <= MAX_GUESS_BUTTONS:
        return list(labels)
    picked = set(random.Random(f"hitl:{item_id}").sample(range(len(labels)), MAX_GUESS_BUTTONS))
    return [label for n, label in enumerate(labels) if n in picked]


def _buttoned(q: Question) -> list[str]:
    """The labels with a button: the top guesses, or with no model labels drawn per item."""
    shown = [label for label, _ in q.guesses if label in q.labels][:MAX_GUESS_BUTTONS]
    return shown or cold_start_buttons(q.item_id, q.labels)


def has_inline_other(q: Question) -> bool:
    """Whether ``q``'s "Other…" lists its labels in the message (a static select): most of the
    message for a large label set, and what ``other_typeahead`` leaves out."""
    if q.status != "open" or q.other_typeahead or len(q.labels) > MAX_STATIC_OPTIONS:
        return False
    return len(set(q.labels) - set(_buttoned(q))) > 0


def answer_elements(q: Question, prefix: str = "q") -> list[Any]:
    """Buttons for the top guesses (or, with no model, labels drawn per item), "Other…" and
    "Skip". "Other…" is a static select of the labels up to 100 of them, above (or with
    ``other_typeahead``) a type-ahead whose options the bot serves (``label_options``)."""
    shown = _buttoned(q)
    elements: list[Any] = [
        ButtonElement(
            text=label,
            action_id=f"hitl.{prefix}.label.{n}",
            value=encode_value(q.item_id, label),
            style="primary" if n == 0 and q.guesses else None,
        )
        for n, label in enumerate(shown)
    ]
    # A control reads otherwise when a label reads like it (a label "Skip" beside Skip: two
    # buttons alike that do opposite things), for every question of the label set alike.
    other, guidelines, skip = _control_texts(tuple(q.labels))
    rest = [label for label in q.labels if label not in shown]
    if rest:
        if len(q.labels) > MAX_STATIC_OPTIONS or q.other_typeahead:
            elements.append(
                ExternalDataSelectElement(
                    action_id=f"hitl.{prefix}.other_ext",
                    placeholder=f"{other} (type to search)",
                    min_query_length=0,
                )
            )
        elif other != "Other…":
            elements.append(
                StaticSelectElement(
                    action_id=f"hitl.{prefix}.other",
                    placeholder=other,
                    options=[Option(value=label, text=label) for label in q.labels],
                )
            )
        else:
            elements.append(_other_select(prefix, tuple(q.labels)))
    if q.has_guidelines:
        elements.append(
            ButtonElement(
                text=guidelines,
                action_id=f"hitl.{prefix}.guidelines",
                value=encode_value(q.item_id),
            )
        )
    elements.append(
        ButtonElement(text=skip, action_id=f"hitl.{prefix}.skip", value=encode_value(q.item_id))
    )
    return elements


# Each control's texts, the first one no label reads like ("Skip", "skip!", "SKIP…" read
# like Skip): "Skip" means "not me" (README).
_CONTROL_TEXTS = (
    ("Other…", "More labels…", "Pick another label…"),
    ("Guidelines", "Label guidelines", "Read the guidelines"),
    ("Skip", "Skip (not me)", "Pass (not me)"),
)


def _reads(text: str) -> str:
    """How ``text`` reads: ``label_key`` (case, character form, white space) without
    punctuation, symbols and spaces ("Skip…", "skip!" and "S K I P" read as "skip")."""
    return "".join(c for c in label_key(text) if c.isalnum())


@functools.lru_cache(maxsize=32)
def _control_texts(labels: tuple[str, ...]) -> tuple[str, str, str]:
    """The texts of "Other…", "Guidelines" and "Skip" on a question of ``labels``: each one's
    first text that no label reads like (``_reads``)."""
    read = {_reads(label) for label in labels}
    other, guidelines, skip = (
        next((text for text in texts if _reads(text) not in read), texts[-1])
        for texts in _CONTROL_TEXTS
    )
    return other, guidelines, skip


class _SharedSelect(StaticSelectElement):
    """A static select shown on many messages: validated and turned into a dict once.

    The "Other…" select is the same on every question with the same label set; with up to
    100 options it is most of a message's Block Kit, so every redraw would otherwise build
    and check it again. Its dict is shared and must not be changed by callers.
    """

    @functools.cached_property
    def _as_dict(self) -> dict:
        return super().to_dict()

    def to_dict(self, *args: Any) -> dict:
        return self._as_dict


@functools.lru_cache(maxsize=32)
def _other_select(prefix: str, labels: tuple[str, ...]) -> StaticSelectElement:
    return _SharedSelect(
        action_id=f"hitl.{prefix}.other",
        placeholder="Other…",
        options=[Option(value=label, text=label) for label in labels],
    )


def label_options(labels: Sequence[str], query: str, limit: int = MAX_STATIC_OPTIONS) -> list:
    """Options for the type-ahead "Other…" select, with case, accents and character form folded
    and ``_``, ``-`` and spaces alike: the labels that hold what was typed, or whose words
    start with the words typed, in any order ("exchange rate" and "rate exchange" find
    card_payment_wrong_exchange_rate, "devolucion" devolución_pendiente, "label 14" not
    "label 114"); best first: the label typed, the labels that start with it, those whose
    words start with the words typed, then the rest, each in label-set order."""
    typed = _searchable(query)
    words = typed.split()
    first = words[0] if words else ""  # in every label found (typed is the words, spaced)
    starts = [f" {word}" for word in words]  # a word of the label starts with it
    ranked: list[tuple[int, int, str]] = []
    names = _searchable_set(tuple(labels))
    for n, (label, (name, spaced)) in enumerate(zip(labels, names, strict=True)):
        if first not in name:
            continue
        if name == typed:
            rank = 0
        elif name.startswith(typed):
            rank = 1
        elif all(start in spaced for start in starts):
            rank = 2
        elif typed in name:
            rank = 3
        else:
            continue
        ranked.append((rank, n, label))
    ranked.sort()
    return [Option(value=lb, text=lb).to_dict() for _, _, lb in ranked[:limit]]


@functools.lru_cache(maxsize=4)
def _searchable_set(labels: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Each label as the type-ahead compares it, and so with a space before (its words, one
    space apart, each start after one): worked out once per label set (it changes rarely;
    every keystroke of everyone typing scans it, on the event loop)."""
    return tuple((name, f" {name}") for name in map(_searchable, labels))


def _searchable(text: str) -> str:
    """``text`` as the type-ahead compares it: ``label_key`` (case, character form), accents
    left out, and each run of ``_``, ``-``, ``.``, ``/`` and white space one space."""
    bare = unicodedata.normalize("NFKD", label_key(text))
    bare = "".join(c for c in bare if not unicodedata.combining(c))
    return " ".join(_WORD_BREAKS.sub(" ", bare).split())


_WORD_BREAKS = re.compile(r"[_\-./\s]+")


def _fallback(q: Question) -> str:
    """The item's text as a plain-text fallback shows it: one line, cut."""
    text = escape(q.text.replace("\n", " "))
    return clip(text, FALLBACK_LIMIT - 1) + "…" if len(text) > FALLBACK_LIMIT else text


def question_text(q: Question) -> str:
    """The plain-text fallback (notifications, screen readers): it says what the blocks say, a
    question decided or set aside (skips, an admin's remove) no longer asks."""
    text = _fallback(q)
    if q.status == "resolved":
        return f"Labeled {escape(str(q.resolved_label))}: {text}"
    if q.status == "skipped":
        return f"Set aside: {text}"
    return f"Which label fits? {text}"


def unanswered_for(age: timedelta) -> str:
    """How long a question stood unanswered, as its expired message says it: in days from a
    day on (whole days: "3 days"), in hours below."""
    hours = int(age.total_seconds() // 3600)
    return count(hours // 24, "day") if hours >= 24 else count(hours, "hour")


def expired_blocks(
    q: Question, age: timedelta, answers: int = 0, why: str | None = None
) -> list[Block]:
    """A question taken back after HITL_QUESTION_TTL: its text and a line saying so, without
    buttons (its item may be asked again, in a new message, when its turn comes). ``age``:
    how long it stood with no answer, or, with ``answers`` in (HITL_VOTES > 1), since the
    last of them (they still count). ``why`` (``posts.taken_back``) 'labels': taken back by a
    change of the label set (a gold question whose gold label was retired), said so, with no
    time and nothing that tells the gold label."""
    return [
        SectionBlock(text=MarkdownTextObject(text=cut(q.text, quote=True))),
        SectionBlock(
            text=_text(
                f"⌛ {_expired_line(q, age, answers, why)} (it may be asked again in a new"
                " message)."
            )
        ),
    ]


def _expired_line(q: Question, age: timedelta, answers: int, why: str | None = None) -> str:
    if why == "labels":
        return "The label set changed, so it was put back in the queue"
    if why == "restore":
        return (
            "The database was restored from a backup made before this question, so it was put"
            " back in the queue"
        )
    if not answers:
        return f"Unanswered for {unanswered_for(age)}, so it was put back in the queue"
    return (
        f"No new answer for {unanswered_for(age)} ({answers} of {q.votes_needed} answers in),"
        " so it was put back in the queue; the answers still count"
    )


def expired_text(q: Question, age: timedelta, answers: int = 0, why: str | None = None) -> str:
    """The plain-text fallback of an expired question."""
    if why == "labels":
        return f"The label set changed, put back in the queue: {_fallback(q)}"
    if why == "restore":
        return (
            "The database was restored from an earlier backup, put back in the queue:"
            f" {_fallback(q)}"
        )
    if not answers:
        return f"Unanswered for {unanswered_for(age)}, put back in the queue: {_fallback(q)}"
    return (
        f"No new answer for {unanswered_for(age)} ({answers} of {q.votes_needed} answers in),"
        f" put back in the queue: {_fallback(q)}"
    )


def undo_blocks(item_id: str, label: str, decision: int | None = None) -> list[Block]:
    return [
        SectionBlock(
            text=_text(f"Saved {_label(label)}. Changed your mind?"),
            accessory=ButtonElement(
                text="Undo", action_id=UNDO_ACTION, value=encode_value(item_id, label, decision)
            ),
        )
    ]


UNDO_WITHIN = "Undo within 10 minutes if you change your mind."


def modal_undo_block(item_id: str, label: str, decision: int | None = None) -> SectionBlock:
    """The labeling modal's offer to undo the person's last decision in it (the label it gave
    ``item_id``), with the channel's Undo button (``UNDO_ACTION``, ``undo_blocks``' value).
    Not the item's text: the window may serve it no longer (a private channel left since)."""
    return SectionBlock(
        text=_text(f"Saved {_label(label)} for the last item you decided. {UNDO_WITHIN}"),
        accessory=ButtonElement(
            text="Undo", action_id=UNDO_ACTION, value=encode_value(item_id, label, decision)
        ),
    )


def modal_view(
    q: Question | None, remaining: int, answered: int, undo: SectionBlock | None = None
) -> View:
    """The labeling modal: one item at a time, or a thank-you when the queue is empty; with
    ``undo`` (``modal_undo_block``) above it, after an answer that decided an item."""
    if q is None:
        blocks: list[Block] = [
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"🎉 Nothing left to label. You answered {answered:,} in this session."
                )
            )
        ]
    else:
        blocks = [
            ContextBlock(
                elements=[_text(f"{remaining:,} waiting · {answered:,} answered in this session")]
            ),
            *question_blocks(q, prefix="m"),
        ]
    if undo is not None:
        blocks = [undo, *blocks]
    return View(
        type="modal",
        callback_id=MODAL_CALLBACK,
        title="Label items",
        close="Done",
        private_metadata=json.dumps({"item": q.item_id if q else None, "answered": answered}),
        blocks=blocks,
    )


MAX_BLOCKS = 50  # in a message


def report_blocks(sections: Sequence[str]) -> list[Block]:
    """A report (``/hitl stats``) as one section block per part, each cut to Slack's limit."""
    return [SectionBlock(text=_text(section)) for section in sections[:MAX_BLOCKS]]


@dataclass(frozen=True)
class HomeStats:
    user_id: str
    your_all: tuple[int, int]  # all time: (labels, skips), the counts kept per person
    your_week: tuple[int, int]  # this week: (labels, skips)
    leaderboard: Sequence[tuple[str, int, int]]  # this week: (user, labels, skips), by labels
    model_line: str
    queue_waiting: int
    queue_open: int
    gold_line: str | None = None  # this person's accuracy on gold, when they answered some


def home_view(stats: HomeStats) -> View:
    board = (
        "\n".join(
            f"{n}. {_mentions([user])} — {count(labels, 'label')}"
            + (f" ({count(skips, 'skip')})" if skips else "")
            for n, (user, labels, skips) in enumerate(stats.leaderboard, 1)
        )
        or "No labels yet this week: be the first."
    )
    labels, skips = stats.your_week
    skipped = f" and skipped {skips:,}" if skips else ""
    return View(
        type="home",
        blocks=[
            HeaderBlock(text="slack-hitl"),
            SectionBlock(
                text=_text(
                    f"This week you labeled *{count(labels, 'item')}*{skipped};"
                    f" *{count(stats.your_all[0], 'item')}* of all time. Thank you!"
                ),
                accessory=ButtonElement(
                    text="Start labeling",
                    action_id=START_LABELING_ACTION,
                    style="primary",
                    value="start",
                ),
            ),
            SectionBlock(
                text=_text(
                    f"*Queue:* {stats.queue_waiting:,} waiting · {stats.queue_open:,} posted"
                    " and open"
                )
            ),
            *(
                [SectionBlock(text=_text(f"*Your accuracy on gold questions:* {stats.gold_line}"))]
                if stats.gold_line
                else []
            ),
            SectionBlock(text=_text(f"*Model:* {stats.model_line}")),
            DividerBlock(),
            SectionBlock(text=_text(f"*Leaderboard (this week, by labels)*\n{board}")),
        ],
    )
