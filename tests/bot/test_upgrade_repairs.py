"""Upgrades of databases made by versions whose shipped migrations were edited or renamed later
(outside upgrade test, F1-F3), the rule that keeps it from happening again (a digest of what
each shipped migration runs), and a server stopped during a scoring call (F4).

The old databases are built here from SQL: each migration those versions shipped and nobody
changed since runs as it is now (``test_shipped_migrations_are_never_edited`` holds them to
it), the changed one runs in the form it had then (its statements as the old versions' own
databases, built by the tester from those commits, hold them), and rows are written as those
versions wrote them."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import importlib
import json
import sqlite3
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

# The strings and names in each shipped migration's code, with those of the helpers
# and constants of bot/store/migrations.py it uses: comments, docstrings and layout may
# change, what it does may not.
SHIPPED_DIGESTS = {
    "m001_core": "df27b7510f9a17f2",
    "m002_runs_deliveries": "f43b342175e75d34",
    "m003_post_redraw": "6429304a6201488a",
    "m004_locks": "73473f5ec3c79e23",
    "m005_label_decided_by": "2a5bb52809cd16fc",
    "m006_margin": "76cf9a4fc1a42df2",
    "m007_label_index": "3049947519345699",
    "m008_flat_stats": "9d5513eac22b13c8",
    "m009_lighter_inserts": "b99607ba918c67d3",
    "m043_m008_repair": "63e1458266482087",
    "m010_answers_by_people_items": "7319eb58df6885af",
    "m011_priority": "2d5cb208919515d8",
    "m013_label_history_reviews": "f8e68aefddd2809a",
    "m014_label_set": "91b3d9e0de0660e4",
    "m015_gold": "aac9f70d22e1d354",
    "m016_stopping": "be05499d9d0377f7",
    "m017_posts_behind": "1f0e406b8dad1789",
    "m018_stop_changed": "f399545848c22c4d",
    "m019_post_attempts": "40d1ff1c947bda95",
    "m020_answered_by_user": "6033fa6e05f1fb26",
    "m021_late_answers": "38ec51f2619134f1",
    "m022_stop_accuracy": "2b317da68334f207",
    "m023_labeled_by_user": "958a96de02278abc",
    "m024_legacy_text_ids": "aad949c1733e18a2",
    "m025_label_set_restated": "09d6202a06a4e057",
    "m026_posts_expired": "c46908770eaa78b9",
    "m027_posts_expired_index": "633b2a891785042e",
    "m028_answers_team": "918f7d730fe030e0",
    "m029_stop_draws": "3dd7edebe6ad7fb2",
    "m030_deleted_items": "a570e66b401e0e63",
    "m031_delivery_receiver": "05075ff405514748",
    "m032_anonymised_people": "2e38e3bbd91a9292",
    "m033_deliveries_item": "29d08102a2321788",
    "m034_label_seq": "4ce20d68f690a798",
    "m035_answers_user": "e4303a6ed438f818",
    "m036_stop_checks_base": "d8fabe3b43c82c6d",
    "m037_items_marked_gold": "d3f5fc7ef5d9c837",
    "m038_refresh_versions": "7eac8f516d207e40",
    "m039_status_threshold": "c90c2de68fe7cf65",
    "m040_posts_taken_back": "b84eaf6b23f4b115",
    "m041_split_draws": "cae52be131feb513",
    "m042_label_clock_start": "95ea59d606887043",
}


# the module (``bot.store.migrations`` is the Migrations object its package exports)
migrations_module = importlib.import_module("bot.store.migrations")


def _what_code_says(code: Any, doc: str | None, seen: set[str]) -> list[str]:
    """The strings and names in ``code`` (not its docstring), and, for each name that is one
    of bot.store.migrations' own string constants or functions, what that says, once each: a helper
    or a constant a migration uses counts as part of it. Read from the code, not from the
    SQL it runs: sqlite-utils writes the SQL of ``create`` and its reads of the schema, which
    a release of it may word otherwise."""
    found: list[str] = []
    for const in code.co_consts:  # strings only: Python 3.14 keeps small ints out of these
        if isinstance(const, str) and const != doc:
            found.append(const)
        elif isinstance(const, (tuple, frozenset)):
            found += sorted(item for item in const if isinstance(item, str))
        elif hasattr(const, "co_consts"):  # a function or comprehension inside it
            found += _what_code_says(const, None, seen)
    module = vars(migrations_module)
    for name in code.co_names:
        found.append(name)
        value = module.get(name)
        if name in seen or value is None:
            continue
        seen.add(name)
        if isinstance(value, str):
            found.append(f"{name}={value}")
        elif isinstance(value, (tuple, frozenset, list)):
            found += sorted(f"{name}:{item}" for item in value if isinstance(item, str))
        elif callable(value) and getattr(value, "__module__", None) == migrations_module.__name__:
            inner = getattr(value, "__code__", None)
            if inner is not None:
                found += _what_code_says(inner, value.__doc__, seen)
    return found


def migration_digests() -> dict[str, str]:
    digests = {}
    for migration in migrations._migrations:
        said = _what_code_says(migration.fn.__code__, migration.fn.__doc__, set())
        text = "\n".join(sorted(set(said)))  # a set: 3.12 inlines comprehensions
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
