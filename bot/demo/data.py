"""The demo data set: short support messages made from templates and vocabulary written for
slack-hitl (nothing is downloaded), seeded and deterministic; and a user's own file, in any
format `hitl import` reads.

True labels never reach the database: ``split`` keeps them in a ``DemoData`` in memory, for the
simulated teammates and for scoring the champion on held-out items.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import HitlError
from bot.ingest import Row, RowError, item_id_for_text, read_items, twin_label, why_no_rows
from bot.labelnames import label_key
from bot.words import count

LABELS = ("billing", "bug", "account", "how_to", "feature_request", "praise")
DEFAULT_SIZE = 600
HOLDOUT_SHARE = 0.2
MAX_ERRORS_SHOWN = 50  # as `hitl import`: the rest are counted

# {slots} are filled from VOCAB; each label mixes plain and awkward phrasings so the model has
# something to learn and the first versions get some wrong.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged twice for my {month} invoice",
        "Why is my {plan} plan {amount} this month? It used to be cheaper",
        "Please refund the {plan} subscription, I cancelled on {day}",
        "The receipt for order {order} shows the wrong VAT number",
        "Can I pay by bank transfer instead of card for the {plan} plan?",
        "My card was declined but the money still left my account",
        "How do I get an invoice with our company address on it?",
        "You billed {amount} for {seats} seats but we only have {few} people",
        "Downgrade us to the {plan} plan from next month, please",
        "There is a charge of {amount} I don't recognise from {day}",
        "Our annual renewal went through even though we asked to cancel",
        "Do you offer a discount for nonprofits or students?",
    ),
    "bug": (
        "The app crashes when I open {screen} on {platform}",
        "{screen} is blank on {browser} since this morning",
        "Exporting to {format} gives an empty file",
        "I get error {code} when I save a {thing}",
        "The {thing} list doesn't load, it just spins forever",
        "Notifications arrive twice on {platform}",
        "Search returns nothing for {thing}s created {day}",
        "The {integration} sync stopped working after the update",
        "Dark mode makes the text in {screen} unreadable",
        "Uploading a {format} over 10 MB fails with error {code}",
        "Dates show in the wrong timezone on {screen}",
        "the page freezes when I drag a {thing} on {browser}",
    ),
    "account": (
        "Please delete my account and all my data",
        "I can't log in, the password reset email never arrives",
        "How do I change the email address on my account?",
        "Add {name} as an admin on our workspace",
        "My account was locked after too many attempts",
        "Remove {name} from our team, they left the company",
        "Two-factor codes from my phone are not accepted",
        "Can I merge my two accounts into one?",
        "I want to transfer ownership of the workspace to {name}",
        "Change my username, there is a typo in it",
        "I signed up with Google but now want a password login",
        "Someone else seems to be logged into my account",
    ),
    "how_to": (
        "How do I export a report of all {thing}s?",
        "Where are the notification settings?",
        "Is there a way to share a {thing} with someone outside the team?",
        "How can I connect {integration}?",
        "What's the keyboard shortcut to create a {thing}?",
        "How do I set up a recurring {thing}?",
        "Can you explain how permissions work for guests?",
        "Where do I find the API key?",
        "How do I import {thing}s from a {format} file?",
        "Is it possible to archive old {thing}s instead of deleting them?",
        "How do I change the language of the interface?",
        "what's the best way to organise {thing}s by project?",
    ),
    "feature_request": (
        "It would be great to have a {format} export",
        "Please add an integration with {integration}",
        "Could you add dark mode to {screen}?",
        "We'd love recurring {thing}s every {period}",
        "Can you support more than {seats} seats on the {plan} plan?",
        "A mobile app for {platform} would help our field team",
        "Feature idea: bulk edit for {thing}s",
        "Let us customise the colours of {screen}",
        "Would you consider an offline mode?",
        "Please make it possible to pin {thing}s to the top",
        "I wish I could schedule reports to go out every {period}",
        "Any plans for SSO with {integration}?",
    ),
    "praise": (
        "Just wanted to say the new {screen} is lovely, thanks!",
        "Your support team solved my problem in minutes, amazing",
        "Love the {integration} integration, it saves us hours",
        "Great update, {screen} is so much faster now",
        "Thank you {name} for the quick help yesterday!",
        "Best {thing} tool we've used, keep it up",
        "The {format} export works perfectly now, thank you",
        "Kudos on the {platform} app, it's really smooth",
        "Our whole team is happy with the {plan} plan",
        "Thanks for listening to feedback, the {thing} view is perfect",
    ),
}

VOCAB: dict[str, tuple[str, ...]] = {
    "month": ("January", "February", "March", "April", "May", "June", "September", "October"),
    "plan": ("Starter", "Team", "Business", "Pro", "Enterprise"),
    "amount": ("$49", "$120", "$19.99", "€89", "£240", "$1,200"),
    "day": ("Monday", "yesterday", "the 3rd", "last week", "Friday", "the 15th"),
    "order": ("#10293", "#88412", "#55001", "#30917", "#71234"),
    "seats": ("25", "50", "10", "100"),
    "few": ("12", "30", "4", "7"),
    "screen": ("the dashboard", "settings", "the calendar", "the reports page", "the inbox"),
    "platform": ("Android", "iOS", "Windows", "macOS", "the iPad"),
    "browser": ("Safari", "Firefox", "Chrome", "Edge"),
    "format": ("CSV", "PDF", "Excel", "JSON"),
    "code": ("500", "403", "E1024", "timeout", "413"),
    "thing": ("task", "project", "invoice", "report", "contact", "ticket", "note"),
    "integration": ("Slack", "Google Drive", "Salesforce", "Jira", "Zapier", "Outlook"),
    "name": ("Priya", "Tom", "Aisha", "Marco", "Lena", "Kenji"),
    "period": ("week", "month", "Monday", "quarter"),
}

OPENERS = ("", "", "", "Hi, ", "Hello team, ", "Hey! ", "Quick question: ", "Urgent: ")
CLOSERS = ("", "", "", " Thanks!", " Thank you.", " Any help appreciated.", " Cheers")


@dataclass(frozen=True)
class DemoItem:
    id: str
    text: str
    label: str | None = None  # the true label: for the simulated teammates and scoring only
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoData:
    """Items to import (no labels), held-out items to score the champion on, and the truth."""

    pool: list[DemoItem]
    holdout: list[DemoItem]
    labels: tuple[str, ...]
    truth: dict[str, str]

    def unlabeled(self) -> list[DemoItem]:
        """What goes into the database: the pool without its labels."""
        return [DemoItem(item.id, item.text, None, item.meta) for item in self.pool]


def _fill(template: str, rng: random.Random) -> str:
    slots = {name: rng.choice(words) for name, words in VOCAB.items()}
    return template.format(**slots)


def generate(n: int = DEFAULT_SIZE, seed: int = 0) -> list[DemoItem]:
    """``n`` support messages spread over ``LABELS``, the same for the same ``seed``."""
    rng = random.Random(seed)
    items: list[DemoItem] = []
    seen: set[str] = set()
    attempts = 0
    while len(items) < n and attempts < n * 50:
        attempts += 1
        label = LABELS[len(items) % len(LABELS)]
        text = _fill(rng.choice(TEMPLATES[label]), rng)
        text = rng.choice(OPENERS) + text + rng.choice(CLOSERS)
        if rng.random() < 0.15:
            text = text.lower()
        if text in seen:
            continue
        seen.add(text)
        channel = rng.choice(("email", "chat", "web form"))
        items.append(DemoItem(f"demo-{len(items) + 1:04d}", text, label, {"channel": channel}))
    rng.shuffle(items)
    return items


def split(
    items: Sequence[DemoItem], holdout_share: float = HOLDOUT_SHARE, seed: int = 0
) -> DemoData:
    """Hold out a share of the labeled items for evaluation; the rest is the pool to label."""
    labeled = [item for item in items if item.label]
    order = list(range(len(labeled)))
    random.Random(seed + 1).shuffle(order)
    n_holdout = int(round(len(labeled) * holdout_share))
    held = {labeled[i].id for i in order[:n_holdout]}
    holdout = [item for item in labeled if item.id in held]
    pool = [item for item in items if item.id not in held]
    labels = tuple(sorted({item.label for item in items if item.label}))
    truth = {item.id: item.label for item in pool if item.label}
    return DemoData(pool=pool, holdout=holdout, labels=labels, truth=truth)


def demo_data(n: int = DEFAULT_SIZE, seed: int = 0) -> DemoData:
    data = split(generate(n, seed), seed=seed)
    return DemoData(data.pool, data.holdout, LABELS, data.truth)


@dataclass(frozen=True)
class Columns:
    """The fields of a user's file (`hitl demo --text-column ...`, as `hitl import` names them)."""

    text: str = "text"
    id: str | None = None
    label: str | None = None


def read_data(
    path: Path,
    seed: int = 0,
    report: Callable[[str], None] = print,
    fmt: str | None = None,
    columns: Columns | None = None,
) -> DemoData:
    """A user's file, read as `hitl import` reads it (``bot.ingest.read_items``: CSV, TSV,
    JSONL or plain text by the extension, with ``text`` and, optionally, ``id`` and ``label``,
    or the fields ``columns`` names).

    A bad row is reported through ``report`` (its line and why) and skipped, then one summary
    line; a file that cannot be read at all raises ``IngestError``. Labels are kept for the
    simulated teammates and the held-out score, never imported.
    """
    items: list[DemoItem] = []
    lines: dict[str, int] = {}  # id -> the line it was first read on
    spellings: dict[str, str] = {}  # label_key -> the label's spelling, its first row's
    n_read = n_rejected = 0
    columns = columns or Columns()
    for row in read_items(
        path,
        fmt,
        text_column=columns.text,
        id_column=columns.id,
        label_column=columns.label,
    ):
        n_read += 1
        if not isinstance(row, RowError) and row.id in lines:
            row = RowError(row.line, _repeated(row, lines[row.id]))
        if not isinstance(row, RowError) and row.label is not None:
            # one spelling a label, the first read, as `hitl import` keeps (open labels)
            spelled = spellings.setdefault(label_key(row.label), row.label)
            if spelled != row.label:
                row = RowError(row.line, twin_label(row.label, spelled))
        if isinstance(row, RowError):
            n_rejected += 1
            if n_rejected <= MAX_ERRORS_SHOWN:
                report(row.message(path))
            continue
        lines[row.id] = row.line
        items.append(DemoItem(row.id, row.text, row.label, row.meta))
    if n_rejected:
        if n_rejected > MAX_ERRORS_SHOWN:
            report(f"... and {count(n_rejected - MAX_ERRORS_SHOWN, 'more rejected row')}")
        report(
            f"{path.name}: read {count(n_read, 'row')}, using {len(items):,}, "
            f"{n_rejected:,} rejected"
        )
    if not n_read:  # as `hitl import` refuses it, before a word about labels
        raise HitlError(f"{path}: no rows to use ({why_no_rows(path, fmt, None)})")
    if not items:
        raise HitlError(f"every row of {path} was rejected: nothing to use (see the lines above)")
    data = split(items, seed=seed)
    if len(data.labels) < 2:
        raise HitlError(
            f'{path}: the demo needs at least two labels in a "label" field (found '
            f"{len(data.labels)}); the labels drive the simulated teammates and the label set"
        )
    return data


def _repeated(row: Row, first: int) -> str:
    """Why ``row``, whose id was read on line ``first``, is skipped: a row without an id has
    the hash of its text as its id (``item_id_for_text``), which the file never showed."""
    if row.id == item_id_for_text(row.text):
        return f"the same text was read on line {first} already"
    return f'id "{row.id}" was read on line {first} already'


def read_jsonl(path: Path, seed: int = 0) -> DemoData:
    """The name ``bot.demo`` exports; any format ``read_data`` reads."""
    return read_data(path, seed)
