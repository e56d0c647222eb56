"""Upgrades of databases made by versions whose shipped migrations were edited or renamed later
(outside upgrade test, F1-F3), the rule that keeps it from happening again (a digest of what
each shipped migration runs), and a server stopped during a scoring call (F4).

The old databases are built here from SQL: each migration those versions shipped and nobody
changed since runs as it is now (``test_shipped_migrations_are_never_edited`` holds them to
it), the changed one runs in the form it had then (its statements as the old versions' own
databases, built by the tester from those commits, hold them), and rows are written as those
versions wrote them."""

from __future__ import annotations

import ast
import asyncio
import gc
import hashlib
import importlib
import inspect
import json
import sqlite3
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from bot.cli import cli
from bot.errors import StoreError
from bot.learning.scoring_worker import ScoringWorker
from bot.store import KNOWN_MIGRATIONS, LabelMark, Store, migrations
from tests.bot.test_learning import BILLING, BUG

SHIPPED = {m.name: m.fn for m in migrations._migrations}

# -- the old forms ------------------------------------------------------------------------------

_ITEM_COUNTS_FIRST = [  # the item counts of m008 before 71f0a37: VALUES, not a filtered SELECT
    "CREATE TABLE item_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    "INSERT INTO item_counts (status, n) SELECT status, count(*) FROM items GROUP BY status",
    "CREATE TRIGGER item_counts_insert AFTER INSERT ON items BEGIN INSERT INTO item_counts"
    " (status, n) VALUES (new.status, 1) ON CONFLICT(status) DO UPDATE SET n = n + (1); END",
    "CREATE TRIGGER item_counts_delete AFTER DELETE ON items BEGIN INSERT INTO item_counts"
    " (status, n) VALUES (old.status, -1) ON CONFLICT(status) DO UPDATE SET n = n + (-1); END",
    "CREATE TRIGGER item_counts_update AFTER UPDATE OF status ON items WHEN old.status IS NOT"
    " new.status BEGIN INSERT INTO item_counts (status, n) VALUES (old.status, -1) ON"
    " CONFLICT(status) DO UPDATE SET n = n + (-1); INSERT INTO item_counts (status, n) VALUES"
    " (new.status, 1) ON CONFLICT(status) DO UPDATE SET n = n + (1); END",
]


def _counted_by_triggers(table: str, column: str, counts: str) -> list[str]:
    """The counts table and triggers m008 made from 71f0a37 on (``_count_by_triggers``)."""

    def bump(row: str, delta: int) -> str:
        return (
            f"INSERT INTO {counts} ({column}, n) SELECT {row}.{column}, {delta}"
            f" WHERE {row}.{column} IS NOT NULL"
            f" ON CONFLICT({column}) DO UPDATE SET n = n + ({delta});"
        )

    return [
        f"CREATE TABLE {counts} ({column} TEXT PRIMARY KEY, n INTEGER NOT NULL)",
        f"INSERT INTO {counts} ({column}, n) SELECT {column}, count(*) FROM {table}"
        f" WHERE {column} IS NOT NULL GROUP BY {column}",
        f"CREATE TRIGGER {counts}_insert AFTER INSERT ON {table} BEGIN {bump('new', 1)} END",
        f"CREATE TRIGGER {counts}_delete AFTER DELETE ON {table} BEGIN {bump('old', -1)} END",
        f"CREATE TRIGGER {counts}_update AFTER UPDATE OF {column} ON {table}"
        f" WHEN old.{column} IS NOT new.{column} BEGIN {bump('old', -1)} {bump('new', 1)} END",
    ]


# m008 as each old version ran it: (the name it recorded, its statements)
M008_FORMS = {
    # b319983..3b3e0a3: named m008_item_counts (f32686b renamed it m008_flat_stats)
    "3b3e0a3": ("m008_item_counts", _ITEM_COUNTS_FIRST),
    # f32686b..b3bd564: an index answers_created (a6a6484 made it answers_by_people), no
    # label_counts (71f0a37 added it)
    "b3bd564": (
        "m008_flat_stats",
        [
            "CREATE INDEX answers_created ON answers(created_at)",
            "CREATE INDEX labels_votes ON labels(votes, agreement)",
            *_ITEM_COUNTS_FIRST,
        ],
    ),
    # 71f0a37..76803a3: label_counts, and still answers_created
    "76803a3": (
        "m008_flat_stats",
        [
            "CREATE INDEX answers_created ON answers(created_at)",
            "CREATE INDEX labels_votes ON labels(votes, agreement)",
            *_counted_by_triggers("items", "status", "item_counts"),
            *_counted_by_triggers("labels", "label", "label_counts"),
        ],
    ),
}

# m034 as f35450a..795e74e (the morning of 5 Dec) ran it: label_clock without ``start``
# (d0f9979 added it to the shipped migration)
_TICK = (
    "UPDATE label_clock SET n = n + 1;"
    " UPDATE labels SET seq = (SELECT n FROM label_clock) WHERE rowid = new.rowid;"
)
M034_FIRST_FORM = [
    "ALTER TABLE labels ADD COLUMN seq INTEGER",
    "CREATE TEMP TABLE label_order (rid INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
    "INSERT INTO label_order (rid, n)"
    " SELECT rowid, row_number() OVER (ORDER BY resolved_at, rowid) FROM labels",
    "UPDATE labels SET seq = o.n FROM label_order o WHERE o.rid = labels.rowid",
    "DROP TABLE label_order",
    "CREATE INDEX labels_seq ON labels(seq)",
    "CREATE TABLE label_clock (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)",
    "INSERT INTO label_clock (id, n) SELECT 1, count(*) FROM labels",
    f"CREATE TRIGGER label_clock_insert AFTER INSERT ON labels WHEN new.seq IS NULL"
    f" BEGIN {_TICK} END",
    f"CREATE TRIGGER label_clock_update AFTER UPDATE OF resolved_at ON labels BEGIN {_TICK} END",
]

# The migrations 3b3e0a3 recorded before its m008, and those 3ecbb44 recorded before its m034
BEFORE_M008 = [
    "m001_core",
    "m002_runs_deliveries",
    "m003_post_redraw",
    "m004_locks",
    "m005_label_decided_by",
    "m006_margin",
    "m007_label_index",
]
M009_TO_M033 = [
    "m009_lighter_inserts",
    "m010_answers_by_people_items",
    "m011_priority",
    "m013_label_history_reviews",
    "m014_label_set",
    "m015_gold",
    "m016_stopping",
    "m017_posts_behind",
    "m018_stop_changed",
    "m019_post_attempts",
    "m020_answered_by_user",
    "m021_late_answers",
    "m022_stop_accuracy",
    "m023_labeled_by_user",
    "m024_legacy_text_ids",
    "m025_label_set_restated",
    "m026_posts_expired",
    "m027_posts_expired_index",
    "m028_answers_team",
    "m029_stop_draws",
    "m030_deleted_items",
    "m031_delivery_receiver",
    "m032_anonymised_people",
    "m033_deliveries_item",
]
# what 177a4d3 applied after m034 (a morning database it upgraded: then retrain failed)
M035_TO_M041 = [
    "m035_answers_user",
    "m036_stop_checks_base",
    "m037_items_marked_gold",
    "m038_refresh_versions",
    "m039_status_threshold",
    "m040_posts_taken_back",
    "m041_split_draws",
]

Step = str | tuple[str, Sequence[str]] | Callable[[Database], None]


def old_database(path: Path, *steps: Step) -> None:
    """A database as an old version left it. A name runs that shipped migration as it is now,
    (name, statements) runs the form a migration had then; both record the name. A function
    writes rows."""
    db = Database(path)
    migrations.ensure_migrations_table(db)
    for step in steps:
        if callable(step):
            step(db)
            continue
        name, sql = (step, None) if isinstance(step, str) else step
        if sql is None:
            SHIPPED[name](db)
        else:
            for statement in sql:
                db.execute(statement)
        db[migrations.migrations_table].insert(
            {"migration_set": migrations.name, "name": name, "applied_at": "2026-11-24 10:00"}
        )
    db.conn.commit()
    db.close()


def at(minute: int) -> str:
    return f"2026-11-24T09:{minute:02d}:00.000+00:00"


WAITING = ["invoice crash", "refund after the crash", "error on my invoice"]


def tickets(db: Database) -> None:
    """What an old version stored: 12 labels (imported, and clicked by a teammate), 3 items
    waiting."""
    rows = [(f"b{n}", t, "billing") for n, t in enumerate(BILLING)]
    rows += [(f"g{n}", t, "bug") for n, t in enumerate(BUG)]
    for k, (item_id, text, label) in enumerate(rows):
        user, source = ("import", "import") if k % 2 else ("U0ALICE", "button")
        db.execute(
            "INSERT INTO items (id, text, meta, source, status, created_at, updated_at)"
            " VALUES (?, ?, '{\"team\": \"é\"}', 'import', 'resolved', ?, ?)",
            [item_id, text, at(k), at(k)],
        )
        db.execute(
            "INSERT INTO answers (item_id, user_id, label, source, created_at, dedupe_key)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [item_id, user, label, source, at(k), f"{item_id}:{user}:{label}"],
        )
        db.execute(
            "INSERT INTO labels (item_id, label, votes, agreement, annotators, resolved_at)"
            " VALUES (?, ?, 1, 1.0, ?, ?)",
            [item_id, label, json.dumps([user]), at(k)],
        )
    for n, text in enumerate(WAITING):
        db.execute(
            "INSERT INTO items (id, text, meta, source, status, created_at, updated_at)"
            " VALUES (?, ?, '{}', 'import', 'new', ?, ?)",
            [f"w{n}", text, at(20), at(20)],
        )


PRE_M034_NEWEST = at(11)  # the newest of the labels ``tickets`` writes


def pre_m034_run(db: Database) -> None:
    """A retrain run of a version from before m034: its watermark has no count of label
    writes (``seq``)."""
    detail = {
        "watermark": {"n_labels": 12, "newest": PRE_M034_NEWEST, "training_rules": 4},
        "status": "rejected",
        "reason": "kept v0",
    }
    db.execute(
        "INSERT INTO runs (kind, started_at, finished_at, status, triggered_by, detail)"
        " VALUES ('retrain', ?, ?, 'rejected', 'cli', ?)",
        [at(30), at(31), json.dumps(detail)],
    )


def run(db: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


def kept(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What an upgrade must keep, row by row."""
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(query).fetchall()
            for table, query in {
                "items": "SELECT id, text, meta, source, created_at FROM items ORDER BY id",
                "labels": "SELECT item_id, label, votes, agreement, annotators, resolved_at"
                " FROM labels ORDER BY item_id",
                "answers": "SELECT id, item_id, user_id, label, source, created_at FROM answers"
                " ORDER BY id",
                "runs": "SELECT id, kind, started_at, status, detail FROM runs ORDER BY id",
            }.items()
        }
    finally:
        conn.close()


def schema(path: Path) -> dict[tuple[str, str], str]:
    conn = sqlite3.connect(path)
    try:
        return {
            (kind, name): sql
            for kind, name, sql in conn.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            )
        }
    finally:
        conn.close()


def counts_hold(path: Path) -> None:
    """item_counts and label_counts say what items and labels hold."""
    conn = sqlite3.connect(path)
    try:
        for counts, table, column in (
            ("item_counts", "items", "status"),
            ("label_counts", "labels", "label"),
        ):
            held = conn.execute(f"SELECT {column}, n FROM {counts} WHERE n != 0 ORDER BY 1")
            real = conn.execute(
                f"SELECT {column}, count(*) FROM {table} GROUP BY {column} ORDER BY 1"
            )
            assert held.fetchall() == real.fetchall(), counts
    finally:
        conn.close()


def fresh_schema(tmp_path: Path) -> dict[tuple[str, str], str]:
    Store.open(tmp_path / "fresh.db").close()
    return schema(tmp_path / "fresh.db")


def upgraded_as_new(path: Path, tmp_path: Path, *, old_item_triggers: bool) -> None:
    """The upgraded database has what a new one has; with ``old_item_triggers``, the item
    count triggers m008 made before 71f0a37 stay in their form (VALUES instead of a SELECT
    that leaves out a NULL status: the same, items.status is NOT NULL)."""
    upgraded, fresh = schema(path), fresh_schema(tmp_path)
    assert upgraded.keys() == fresh.keys()
    differ = {key for key in fresh if upgraded[key] != fresh[key]}
    expected = (
        {("trigger", "item_counts_delete"), ("trigger", "item_counts_update")}
        if old_item_triggers
        else set()
    )
    assert differ == expected
    with Store.open(path) as store:
        assert sorted(store.schema_version()) == sorted(KNOWN_MIGRATIONS)


def an_unknown_name_is_still_refused(path: Path) -> None:
    """A name no version of this code gave a migration: written by a newer one, refused."""
    with Database(path) as db:
        db[migrations.migrations_table].insert(
            {"migration_set": migrations.name, "name": "m999_future", "applied_at": "2031"}
        )
    with pytest.raises(StoreError, match=r"written by a newer slack-hitl \(schema m999_future\)"):
        Store.open(path)


# -- F2, F3: m008 edited and renamed after it shipped ------------------------------------------


@pytest.mark.parametrize(
    ("version", "midway"),
    [
        ("3b3e0a3", False),  # recorded as m008_item_counts: refused as "newer" (F3)
        ("b3bd564", False),  # "no such index: answers_by_people" (F2)
        ("b3bd564", True),  # ... after m009 was saved: the next start went on from there
        ("76803a3", False),
        ("76803a3", True),
    ],
)
def test_a_database_that_ran_an_earlier_form_of_m008_is_upgraded(
    tmp_path: Path, version: str, midway: bool
):
    db = tmp_path / "hitl.db"
    old_database(
        db,
        *BEFORE_M008,
        tickets,
        M008_FORMS[version],
        *(["m009_lighter_inserts"] if midway else []),
    )
    before = kept(db)

    stats = run(db, "stats")
    assert stats.exit_code == 0, stats.output
    assert "3 waiting" in stats.stdout and "12 resolved" in stats.stdout
    retrained = run(db, "retrain")
    assert retrained.exit_code == 0, retrained.output
    assert retrained.stdout.startswith("Retrain v1: promoted"), retrained.stdout
    assert "Labels: 12 (12 new)" in retrained.stdout

    after = kept(db)
    assert {k: after[k] for k in ("items", "labels", "answers")} == {
        k: before[k] for k in ("items", "labels", "answers")
    }
    counts_hold(db)
    upgraded_as_new(db, tmp_path, old_item_triggers=version != "76803a3")
    rows = schema(db), kept(db)
    with Store.open(db):  # a second start applies nothing, changes nothing
        pass
    assert (schema(db), kept(db)) == rows
    with Database(db) as plain:
        names = [m.name for m in migrations.applied(plain)]
    assert "m008_item_counts" not in names and names.count("m008_flat_stats") == 1
    an_unknown_name_is_still_refused(db)


# -- F1: m034 gained label_clock.start after it shipped ----------------------------------------


def morning_database(path: Path, *after_m034: Step) -> None:
    """A database made before m034 (a retrain run from then), which the morning version of 5
    Dec then upgraded (m034 without ``start``) and used: ``after_m034``."""
    old_database(
        path,
        *BEFORE_M008,
        tickets,
        "m008_flat_stats",
        *M009_TO_M033,
        pre_m034_run,
        ("m034_label_seq", M034_FIRST_FORM),
        *after_m034,
    )


def exported_rows_imported(db: Database) -> None:
    """Two waiting items labelled by an import of an export's rows, which keep their (older)
    times: numbered at once, as an import numbers them."""
    (base,) = db.execute("SELECT n FROM label_clock").fetchone()
    for n, item_id in enumerate(("w0", "w1"), 1):
        db.execute("UPDATE items SET status = 'resolved' WHERE id = ?", [item_id])
        db.execute(
            "INSERT INTO labels (item_id, label, votes, agreement, annotators, resolved_at, seq)"
            " VALUES (?, 'billing', 1, 1.0, '[\"import\"]', ?, ?)",
            [item_id, at(5), base + n],
        )
    db.execute("UPDATE label_clock SET n = ?", [base + 2])


def clicked(db: Database) -> None:
    """w2 decided by a click, an hour after the labels from before."""
    db.execute("UPDATE items SET status = 'resolved' WHERE id = 'w2'")
    db.execute(
        "INSERT INTO labels (item_id, label, votes, agreement, annotators, resolved_at)"
        " VALUES ('w2', 'bug', 1, 1.0, '[\"U0BOB\"]', '2026-11-24T10:30:00.000+00:00')"
    )


def relabelled(db: Database) -> None:
    """b1's label set right later (`hitl labels set`)."""
    db.execute(
        "UPDATE labels SET label = 'bug', resolved_at = '2026-11-24T10:40:00.000+00:00'"
        " WHERE item_id = 'b1'"
    )


@pytest.mark.parametrize(
    ("since", "written_since", "start"),
    [
        ((), set(), 12),
        ((exported_rows_imported,), {"w0", "w1"}, 12),
        ((clicked, exported_rows_imported), {"w2", "w0", "w1"}, 13),
        ((relabelled, clicked), {"b1", "w2"}, 13),
        ((clicked, relabelled), {"w2", "b1"}, 14),  # in the order of their time: new by it
    ],
)
def test_label_clock_gets_the_count_of_labels_a_model_from_before_m034_read(
    tmp_path: Path, since: Sequence[Step], written_since: set[str], start: int
):
    """The count m034 began at was not kept by its first form. It is the count before the
    first label written since that is older than one before it (an export's rows), or, when
    none is, the count now: what a model from before m034 has not read is new to it, by its
    number or, when it kept to the order, by its time."""
    db = tmp_path / "hitl.db"
    morning_database(db, *since)
    with Store.open(db) as store:
        assert store.label_count_at_upgrade() == start
        read_before = LabelMark(seq=store.label_count_at_upgrade(), at=PRE_M034_NEWEST)
        assert store.labels_after(read_before) == written_since


@pytest.mark.parametrize("by_177a4d3", [False, True])
def test_a_database_the_morning_version_upgraded_retrains(tmp_path: Path, by_177a4d3: bool):
    """`hitl retrain` said "database error (no such column: start)", for good."""
    db = tmp_path / "hitl.db"
    # 177a4d3 applied m035..m041 to it: then every retrain failed
    morning_database(db, clicked, exported_rows_imported, *(M035_TO_M041 if by_177a4d3 else []))
    before = kept(db)

    retrained = run(db, "retrain")
    assert retrained.exit_code == 0, retrained.output
    assert retrained.stdout.startswith("Retrain v1: promoted"), retrained.stdout
    assert "Labels: 15 (15 new)" in retrained.stdout
    forced = run(db, "retrain", "--force")
    assert forced.exit_code == 0, forced.output

    after = kept(db)
    assert {k: after[k] for k in ("items", "labels", "answers")} == {
        k: before[k] for k in ("items", "labels", "answers")
    }
    assert after["runs"][: len(before["runs"])] == before["runs"]
    counts_hold(db)
    upgraded = schema(db)
    fresh = fresh_schema(tmp_path)
    assert upgraded.keys() == fresh.keys()
    assert {key for key in fresh if upgraded[key] != fresh[key]} == {("table", "label_clock")}
    assert "start INTEGER NOT NULL DEFAULT 0" in upgraded[("table", "label_clock")]
    with Store.open(db) as store:  # the count before the export's rows (the click: by time)
        assert store.label_count_at_upgrade() == 13


# -- the rule: a shipped migration is never edited or renamed ---------------------------------

# Each shipped migration's code as its syntax tree (``_canonical``), with the project's
# helpers and constants it uses, wherever they are defined: comments, docstrings and layout
# may change, what it does may not.
SHIPPED_DIGESTS = {
    "m001_core": "c6cbaa93f746e227",
    "m002_runs_deliveries": "cbcec79e66ad3752",
    "m003_post_redraw": "41f68b15acd568c7",
    "m004_locks": "cf9beda0bbfebf64",
    "m005_label_decided_by": "071cb6f1fbb8efd1",
    "m006_margin": "6419b638cb974e80",
    "m007_label_index": "7c1aad0c9f0ffe99",
    "m008_flat_stats": "aa0c08fe466bb267",
    "m009_lighter_inserts": "79d5961a2c4a6d06",
    "m043_m008_repair": "d34747c7cfecac52",
    "m010_answers_by_people_items": "a45886ee34b4de35",
    "m011_priority": "e741d867582e4562",
    "m013_label_history_reviews": "a87310ade8f22693",
    "m014_label_set": "fe329b5bbdbfb41f",
    "m015_gold": "16d73417bd197840",
    "m016_stopping": "db650bc92fcda0e1",
    "m017_posts_behind": "3f780a65e74bc201",
    "m018_stop_changed": "8e45b3a623677447",
    "m019_post_attempts": "c8dc0f23724e467b",
    "m020_answered_by_user": "25e86b648c4e9a07",
    "m021_late_answers": "36f149ff1132ce94",
    "m022_stop_accuracy": "0dd6ccf889a0ca00",
    "m023_labeled_by_user": "085a2ad625c5b61d",
    "m024_legacy_text_ids": "5ffa7a2640b30197",
    "m025_label_set_restated": "c626b3a68ab2e3ea",
    "m026_posts_expired": "7d4c8ab9460fc061",
    "m027_posts_expired_index": "d3391f72d2ffdf7d",
    "m028_answers_team": "c440bfb5c2a1cb38",
    "m029_stop_draws": "5fde8504bdb43e5e",
    "m030_deleted_items": "b8a7ee223217ce12",
    "m031_delivery_receiver": "64265bceed452bc8",
    "m032_anonymised_people": "896e32469df640c7",
    "m033_deliveries_item": "15cdc57ddb491887",
    "m034_label_seq": "542ba7e81e2508e4",
    "m035_answers_user": "3cad4eea08e524e1",
    "m036_stop_checks_base": "f6bbf74bec89cf47",
    "m037_items_marked_gold": "fe24aa9261053399",
    "m038_refresh_versions": "b731a5d145391784",
    "m039_status_threshold": "c32c8fcefcecd9b4",
    "m040_posts_taken_back": "657802c0fe0f4aae",
    "m041_split_draws": "fc79ad38937b9acc",
    "m042_label_clock_start": "49b5fcd9566a0b84",
    "m044_item_child_indexes": "813dce692ec3f3ad",
    "m045_delivery_notices": "fd17ae11c5910b64",
    "m046_delivery_keys": "ebbccd568a7cd2ce",
    "m047_delivery_restates": "887be881f458b06b",
    "m048_delivery_bodies": "c48ff1b4fd5fb073",
    "m049_items_status_label": "23239d2a6d9bbb32",
}


# Fields left out of the canonical form: ones a newer Python adds or fills (type parameters,
# an f-string's conversion flag written as -1 or None): what the code does is in the others.
SKIPPED_FIELDS = {"type_comment", "type_params", "kind", "ctx"}


def _canonical(node: Any) -> str:
    """``node`` (a syntax tree) as text that layout, comments and the Python version do not
    change: each node's type and its fields, empty ones left out (``ast.dump`` drops them from
    3.13 on and shows them before)."""
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            value = getattr(node, name, None)
            if name in SKIPPED_FIELDS or value is None or value == []:
                continue
            fields.append(f"{name}={_canonical(value)}")
        return f"{type(node).__name__}({', '.join(fields)})"
    if isinstance(node, list):
        return "[" + ", ".join(_canonical(item) for item in node) + "]"
    return repr(node)


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    is_doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant)
    return body[1:] if is_doc and isinstance(first.value.value, str) else body  # type: ignore[union-attr]


def _what_code_does(fn: Any, seen: set[int]) -> list[str]:
    """``fn``'s body, canonical (``_canonical``), docstring left out, and that of each
    function or constant of the project (``bot.*``) it names, once each, followed: a helper
    or a constant a migration uses is part of it, wherever it is defined."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    [defined] = tree.body
    body = _without_docstring(defined.body)  # type: ignore[attr-defined]
    found = [_canonical(body)]
    names = dict(fn.__globals__)
    nodes = list(ast.walk(ast.Module(body=body, type_ignores=[])))
    for node in nodes:  # imports inside it first: ``from bot.store.records import …``
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bot."):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                names[alias.asname or alias.name] = getattr(module, alias.name, None)
    for node in nodes:
        value: Any = None
        if isinstance(node, ast.Name):
            value = names.get(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = names.get(node.value.id)
            if inspect.ismodule(owner) and owner.__name__.startswith("bot."):
                value = getattr(owner, node.attr, None)
        if value is None or id(value) in seen:
            continue
        if isinstance(value, (str, int, float, tuple, frozenset)):
            seen.add(id(value))
            found.append(repr(value))
        elif inspect.isfunction(value) and value.__module__.startswith("bot."):
            seen.add(id(value))
            found += _what_code_does(value, seen)
    return found


def migration_digests() -> dict[str, str]:
    digests = {}
    for migration in migrations._migrations:
        text = "\n".join(_what_code_does(migration.fn, set()))
        digests[migration.name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return digests


def test_shipped_migrations_are_never_edited():
    now = migration_digests()
    changed = sorted(name for name, digest in SHIPPED_DIGESTS.items() if now.get(name) != digest)
    assert not changed, (
        f"shipped migrations changed or renamed: {', '.join(changed)}. A database that ran one"
        " keeps what it ran, so put it back as it was and add a new migration that repairs"
        " what is missing, only where it is missing (see the top of bot/store/migrations.py;"
        " a former name goes in FORMER_NAMES)"
    )
    from bot.store.migrations import FORMER_NAMES

    for former, name in FORMER_NAMES.items():
        assert former not in KNOWN_MIGRATIONS and name in KNOWN_MIGRATIONS


# -- F4: a server stopped while a scoring call waits -------------------------------------------


async def test_a_scoring_call_cancelled_while_it_waits_leaves_no_error_in_the_log():
    """SIGTERM during the start-up scoring pass logged "ERROR asyncio: _GatheringFuture
    exception was never retrieved ... CancelledError": the call, cancelled, cancelled the
    steps it waited for, and nobody read what that ended with."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        step = loop.create_future()  # the child's answer, not there yet
        call = asyncio.ensure_future(ScoringWorker()._gathered(None, [step], 3))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the call waits on its step
        assert not call.done()
        call.cancel()  # the server stops
        try:
            await call
        except asyncio.CancelledError:
            pass
        assert step.cancelled()
        for _ in range(3):  # the callbacks the cancellation scheduled
            await asyncio.sleep(0)
        del call, step
        gc.collect()
    finally:
        loop.set_exception_handler(handler)
    assert [c.get("message") for c in reported] == []


def test_a_backup_recording_m008s_former_name_restores_and_upgrades(tmp_path: Path):
    """`hitl restore` reads a backup's migrations under their current names, as a start does:
    one made by 3b3e0a3 (``m008_item_counts``) was refused as written by a newer slack-hitl."""
    backup = tmp_path / "backup.db"
    old_database(backup, *BEFORE_M008, tickets, M008_FORMS["3b3e0a3"])
    before = kept(backup)
    db = tmp_path / "hitl.db"
    restored = run(db, "restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert "newer" not in restored.output
    stats = run(db, "stats")
    assert stats.exit_code == 0, stats.output
    assert "3 waiting" in stats.stdout and "12 resolved" in stats.stdout
    after = kept(db)
    assert {k: after[k] for k in ("items", "labels", "answers")} == {
        k: before[k] for k in ("items", "labels", "answers")
    }
