"""The SQLite store: schema, migrations and every query. The only package that speaks SQL.

One ``Store`` wraps one sqlite-utils ``Database`` (one connection, bound to the thread that
opened it). Every change that touches more than one row runs in one transaction, so it is
committed whole or not at all. ``Store`` is put together from one class per concern:
``core`` (opening, migrating, items, labels, runs), ``queue`` (scoring, posting, answering),
``labels`` (changing decided labels, with their history), ``labelset`` (adding, renaming,
merging and retiring labels), ``reviews`` (the review queue),
``models`` (training data, the retrain lock, model versions), ``views`` (stats, the next item
to label), ``producer`` (items added over the producer API, the webhook outbox) and
``stopping`` (the stop set and each model update's check, for when to stop); the schema
is in ``migrations``; ``records`` holds what it hands out, ``memory`` asks SQLite how much
memory it holds, ``problems`` turns SQLite's errors into one line for a person.

May import ``bot.errors`` and the standard library, sqlite-utils and sqlite3; nothing else of
``bot`` (it is the ground floor: checked by tests/test_layout.py).
"""

from bot.store.core import IMPORT_USER, ITEM_STATUSES, Checkpointer, Store, utc_now
from bot.store.migrations import KNOWN_MIGRATIONS, migrations
from bot.store.problems import (
    DatabaseError,
    DatabaseRefused,
    cwd_gone,
    damage_seen,
    database_problem,
    path_problem,
)
from bot.store.records import (
    AddResult,
    AnswerResult,
    LabelMark,
    LabelSetMoved,
    NewItem,
    Tally,
)
from bot.store.reviews import REVIEW_REASONS, ReviewRules

__all__ = [
    "cwd_gone",
    "damage_seen",
    "path_problem",
    "IMPORT_USER",
    "ITEM_STATUSES",
    "KNOWN_MIGRATIONS",
    "AddResult",
    "Checkpointer",
    "DatabaseError",
    "DatabaseRefused",
    "AnswerResult",
    "LabelMark",
    "LabelSetMoved",
    "NewItem",
    "REVIEW_REASONS",
    "ReviewRules",
    "Store",
    "Tally",
    "database_problem",
    "migrations",
    "utc_now",
]
