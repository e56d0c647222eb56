"""The schema: numbered migrations, recorded by name in the database."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass

from sqlite_utils import Database, Migrations

# -- schema ---------------------------------------------------------------------------------
#
# Migrations are applied in order and recorded by name in ``_sqlite_migrations``. Never edit
# one that has shipped: add the next number. A database that records a name this code does
# not know was written by a newer slack-hitl, and is refused.
#
# The rule, which the upgrade defects of 24 Nov and 5 Dec broke: a shipped migration is never
# edited or renamed. A database that ran it keeps what it ran (an edit never reaches it; a
# renamed one looks newer and is refused). A repair is a new migration that adds what is
# missing, only where it is missing (m042: label_clock.start; m043, placed before m010 which
# needs it: m008's later form), and a former name goes in FORMER_NAMES.
# tests/bot/test_upgrade_repairs.py keeps a digest of what each shipped migration runs
# (SHIPPED_DIGESTS: add a new one's there) and fails when one changes.

migrations = Migrations("hitl")


@migrations(name="m001_core")
def m001_core(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE items (
            id TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            source TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'new',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            model_version INTEGER,
            predicted_label TEXT,
            confidence REAL,
            ranked TEXT,
            callback_url TEXT
        )"""
    )
    db.execute(
        """
        CREATE TABLE answers (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            user_id TEXT NOT NULL,
            label TEXT,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            dedupe_key TEXT NOT NULL UNIQUE
        )"""
    )
    db.execute("CREATE INDEX answers_item ON answers(item_id, user_id)")
    db.execute(
        """
        CREATE TABLE labels (
            item_id TEXT PRIMARY KEY REFERENCES items(id),
            label TEXT NOT NULL,
            votes INTEGER NOT NULL,
            agreement REAL NOT NULL,
            annotators TEXT NOT NULL DEFAULT '[]',
            resolved_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE posts (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            channel TEXT NOT NULL,
            ts TEXT NOT NULL,
            reason TEXT NOT NULL,
            model_version INTEGER,
            predicted_label TEXT,
            confidence REAL,
            posted_at TEXT NOT NULL,
            closed_at TEXT,
            UNIQUE (channel, ts)
        )"""
    )
    db.execute("CREATE INDEX posts_item ON posts(item_id)")
    db.execute(
        """
        CREATE TABLE models (
            version INTEGER PRIMARY KEY,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            n_train INTEGER NOT NULL,
            label_set TEXT NOT NULL,
            metrics TEXT NOT NULL DEFAULT '{}',
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            reason TEXT
        )"""
    )
    db.execute(
        "CREATE UNIQUE INDEX models_one_champion ON models(status) WHERE status = 'champion'"
    )


@migrations(name="m002_runs_deliveries")
def m002_runs_deliveries(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            triggered_by TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute("CREATE INDEX runs_kind ON runs(kind, started_at)")
    db.execute(
        """
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            url TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            last_error TEXT,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at)")
    db.execute("CREATE INDEX items_status_confidence ON items(status, confidence)")


@migrations(name="m003_post_redraw")
def m003_post_redraw(db: Database) -> None:
    # A post's Slack message is a view of the database: every change bumps redraw_seq and the
    # redrawer updates the message until drawn_seq catches up, so failed updates are retried.
    db.execute("ALTER TABLE posts ADD COLUMN redraw_seq INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE posts ADD COLUMN drawn_seq INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX posts_open ON posts(channel, closed_at)")


@migrations(name="m004_locks")
def m004_locks(db: Database) -> None:
    # One retrain at a time across processes; a crashed holder's lock expires.
    db.execute(
        """
        CREATE TABLE locks (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            acquired_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )"""
    )


@migrations(name="m005_label_decided_by")
def m005_label_decided_by(db: Database) -> None:
    # The last answer that counted when the item was decided: later answers are history,
    # and the message shows the tally that decided it.
    db.execute("ALTER TABLE labels ADD COLUMN decided_by INTEGER")


@migrations(name="m006_margin")
def m006_margin(db: Database) -> None:
    # The gap between the model's two best guesses: the queue's order ("most uncertain first")
    # read from an index, so picking the next question does not scan every item.
    db.execute("ALTER TABLE items ADD COLUMN margin REAL")
    db.execute(
        "UPDATE items SET margin = json_extract(ranked, '$[0][1]')"
        " - coalesce(json_extract(ranked, '$[1][1]'), 0) WHERE ranked IS NOT NULL"
    )
    db.execute("CREATE INDEX items_status_margin ON items(status, margin)")


@migrations(name="m007_label_index")
def m007_label_index(db: Database) -> None:
    db.execute("CREATE INDEX labels_label ON labels(label)")


@migrations(name="m008_flat_stats")
def m008_flat_stats(db: Database) -> None:
    # What every click, /hitl stats, /hitl queue, the modal and /metrics read must not grow
    # with the rows stored. People's answers since a time (today, this week) come from a
    # partial index on their time that leaves out imported rows (a big import is not read on
    # every /hitl stats); the mean agreement reads only labels decided by votes.
    db.execute(
        "CREATE INDEX answers_by_people ON answers(created_at, user_id, source)"
        " WHERE source NOT IN ('import', 'undo')"
    )
    db.execute("CREATE INDEX labels_votes ON labels(votes, agreement)")
    # Items per status and resolved items per label, kept by triggers in the same transaction
    # as the change: a handful of rows to read instead of every item or label.
    _count_by_triggers(db, "items", "status", "item_counts")
    _count_by_triggers(db, "labels", "label", "label_counts")


def _count_by_triggers(db: Database, table: str, column: str, counts: str) -> None:
    """``counts(column, n)``: rows of ``table`` per value of ``column``, kept by triggers."""
    db.execute(f"CREATE TABLE {counts} ({column} TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    db.execute(
        f"INSERT INTO {counts} ({column}, n) SELECT {column}, count(*) FROM {table}"
        f" WHERE {column} IS NOT NULL GROUP BY {column}"
    )

    def bump(row: str, delta: int) -> str:
        return (
            f"INSERT INTO {counts} ({column}, n) SELECT {row}.{column}, {delta}"
            f" WHERE {row}.{column} IS NOT NULL"
            f" ON CONFLICT({column}) DO UPDATE SET n = n + ({delta});"
        )

    for event, row, delta in (("INSERT", "new", 1), ("DELETE", "old", -1)):
        db.execute(
            f"CREATE TRIGGER {counts}_{event.lower()} AFTER {event} ON {table}"
            f" BEGIN {bump(row, delta)} END"
        )
    db.execute(
        f"CREATE TRIGGER {counts}_update AFTER UPDATE OF {column} ON {table}"
        f" WHEN old.{column} IS NOT new.{column} BEGIN {bump('old', -1)} {bump('new', 1)} END"
    )


@migrations(name="m009_lighter_inserts")
def m009_lighter_inserts(db: Database) -> None:
    # The per-row trigger cost a fifth of an import's writing time (an upsert into item_counts
    # for every row). New items are counted per batch instead, in the same transaction, by the
    # two places that insert them: Store.add_items and Store.add_api_items (via
    # bot.store.records.count_new_items). Status changes and deletes keep their triggers.
    db.execute("DROP TRIGGER item_counts_insert")
    # Every query that read (status, confidence) reads (status, margin) now: one index less
    # to keep on every insert and every re-scoring.
    db.execute("DROP INDEX items_status_confidence")


@migrations(name="m043_m008_repair")
def m043_m008_repair(db: Database) -> None:
    # A repair, added after m042 but placed here: m010 drops the index it needs. m008 changed
    # after it shipped (24 Nov: f32686b renamed it, 71f0a37 and a6a6484 edited it). A database
    # that ran an earlier form (recorded as m008_item_counts, see FORMER_NAMES, or as
    # m008_flat_stats) has item_counts but may lack the index on votes, label_counts and its
    # triggers, and answers_by_people (where answers_created stood in for it): each is made as
    # m008 makes it now, only where it is missing. Anywhere else (a new database, or one past
    # m010, which ran m008 as it is) this changes nothing.
    db.execute(
        "CREATE INDEX IF NOT EXISTS answers_by_people ON answers(created_at, user_id, source)"
        " WHERE source NOT IN ('import', 'undo')"
    )
    db.execute("DROP INDEX IF EXISTS answers_created")
    db.execute("CREATE INDEX IF NOT EXISTS labels_votes ON labels(votes, agreement)")
    has_counts = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'label_counts'"
    ).fetchone()
    if has_counts is None:
        _count_by_triggers(db, "labels", "label", "label_counts")


@migrations(name="m010_answers_by_people_items")
def m010_answers_by_people_items(db: Database) -> None:
    # A person's answers count once per item (a double click or a change of mind is history,
    # not a second answer): the partial index gains item_id, so counting distinct (item, user)
    # since a time still reads only the index.
    db.execute("DROP INDEX answers_by_people")
    db.execute(
        "CREATE INDEX answers_by_people ON answers(created_at, user_id, item_id, source)"
        " WHERE source NOT IN ('import', 'undo')"
    )


# Unlabeled items, read in rowid order from an index that holds nothing else: the scorer walks
# them in bounded chunks (``Store.unscored_chunk``). The key is the partial index's own
# condition (always true inside it), so that the rowid after it orders the walk.
UNLABELED = "status IN ('new', 'queued', 'auto')"


@migrations(name="m011_priority")
def m011_priority(db: Database) -> None:
    # The queue's order is a generic priority (larger = ask sooner) that model.selection
    # computes from the full probabilities under the configured strategy (HITL_STRATEGY), and
    # ``strategy`` records which one, so a change of strategy re-scores the items. Items
    # scored before keep their order: their margin becomes the margin strategy's priority
    # (1 - margin, exact, since the margin needs only the two best guesses). The margin
    # column stays (dropping a column needs SQLite 3.35) but nothing reads or writes it now.
    db.execute("ALTER TABLE items ADD COLUMN priority REAL")
    db.execute("ALTER TABLE items ADD COLUMN strategy TEXT")
    db.execute(
        "UPDATE items SET priority = 1.0 - margin, strategy = 'margin' WHERE margin IS NOT NULL"
    )
    db.execute("DROP INDEX items_status_margin")
    db.execute("CREATE INDEX items_status_priority ON items(status, priority DESC)")
    db.execute(f"CREATE INDEX items_unlabeled ON items(({UNLABELED})) WHERE {UNLABELED}")


@migrations(name="m013_label_history_reviews")
def m013_label_history_reviews(db: Database) -> None:
    # A label can be changed or removed after it was decided (a bad import, a review): the
    # labels table holds the current label, and label_history every change to it (who, when,
    # old, new, why). Answers are never rewritten: they keep what people clicked.
    db.execute(
        """
        CREATE TABLE label_history (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            old_label TEXT,
            new_label TEXT,
            action TEXT NOT NULL,
            user_id TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX label_history_item ON label_history(item_id, id)")
    # The review queue: items people should look at again (a split vote, low agreement, a
    # confident model saying otherwise, a gold miss), one row per item and reason, pending
    # until an admin decides (decision: a label, 'removed' or 'skipped') or the votes do.
    db.execute(
        """
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            reason TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            decided_at TEXT,
            decided_by TEXT,
            decision TEXT
        )"""
    )
    db.execute(
        "CREATE UNIQUE INDEX reviews_pending ON reviews(item_id, reason) WHERE decided_at IS NULL"
    )
    db.execute("CREATE INDEX reviews_open ON reviews(decided_at, id)")


@migrations(name="m014_label_set")
def m014_label_set(db: Database) -> None:
    # A label set that can change: once an admin adds, renames, merges or retires a label,
    # the stored set (active labels, in order) is the one in force, over HITL_LABELS and the
    # imported labels. A renamed or merged label maps to its successor (label_aliases), so a
    # click on an old button and an old answer count for the new label; every change is a row
    # of label_set_changes, whose count is the label set's version.
    db.execute(
        """
        CREATE TABLE label_set (
            name TEXT PRIMARY KEY,
            position INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'active'
        )"""
    )
    db.execute("CREATE TABLE label_aliases (old TEXT PRIMARY KEY, new TEXT NOT NULL)")
    db.execute(
        """
        CREATE TABLE label_set_changes (
            id INTEGER PRIMARY KEY,
            action TEXT NOT NULL,
            label TEXT NOT NULL,
            new_label TEXT,
            user_id TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        )"""
    )


@migrations(name="m015_gold")
def m015_gold(db: Database) -> None:
    # Gold: items whose right label is known, to score people's answers against. An item
    # imported as gold waits with status 'gold' until the dispatcher mixes it into the
    # questions (HITL_GOLD_RATE); an item already stored can be marked gold. Training reads
    # the gold label for these items, once, never the answers people gave them.
    db.execute(
        """
        CREATE TABLE gold (
            item_id TEXT PRIMARY KEY REFERENCES items(id),
            label TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )


@migrations(name="m016_stopping")
def m016_stopping(db: Database) -> None:
    # When to stop: a fixed sample of items (the stop set, drawn once, redrawn only while it is
    # small and the items have doubled: ``draw`` counts the draws), and each model update's
    # check: Cohen's kappa between its predictions on the stop set and the update before's,
    # and its learning-curve extrapolation. Only the newest check keeps its predictions.
    db.execute(
        """
        CREATE TABLE stop_set (
            position INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            draw INTEGER NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE stop_checks (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            model_version INTEGER,
            n_train INTEGER NOT NULL,
            draw INTEGER NOT NULL,
            n_stop INTEGER NOT NULL,
            kappa REAL,
            predictions TEXT,
            extrapolation TEXT
        )"""
    )


@migrations(name="m017_posts_behind")
def m017_posts_behind(db: Database) -> None:
    # The posts whose Slack message is behind the database, read on every redraw pass (each
    # click asks for one, on the event loop): a partial index holds only those, so the pass
    # no longer reads every post ever made.
    db.execute("CREATE INDEX posts_behind ON posts(id) WHERE redraw_seq > drawn_seq")


@migrations(name="m018_stop_changed")
def m018_stop_changed(db: Database) -> None:
    # The stopping signal compares a model with the one at least 100 labels older: each check
    # stores the share of the stop set predicted otherwise (``changed``) and the labels between
    # the two (``span``); the checks within that span keep their predictions. ``kappa`` (with
    # the update just before) is no longer written and stays on older checks.
    db.execute("ALTER TABLE stop_checks ADD COLUMN changed REAL")
    db.execute("ALTER TABLE stop_checks ADD COLUMN span INTEGER")


@migrations(name="m019_post_attempts")
def m019_post_attempts(db: Database) -> None:
    # A question being posted: written before chat.postMessage, removed when Slack's answer
    # says what happened. A row left behind (the answer was lost, or the server died during
    # the call) means the message may be in the channel: the dispatcher, this one or the next
    # after a restart, looks for it in the channel's history before posting the item again.
    db.execute(
        """
        CREATE TABLE post_attempts (
            item_id TEXT PRIMARY KEY REFERENCES items(id),
            channel TEXT NOT NULL,
            reason TEXT NOT NULL,
            model_version INTEGER,
            predicted_label TEXT,
            confidence REAL,
            attempted_at TEXT NOT NULL
        )"""
    )


@migrations(name="m020_answered_by_user")
def m020_answered_by_user(db: Database) -> None:
    # The items each person answered (imports and undos left out; an item once however often
    # they clicked it), kept by a trigger as answers arrive: the all-time leaderboard and each
    # person's App Home read a row per person, not every answer ever given (seconds, on the
    # event loop, at a million answers). Answers are never deleted, so there is no other
    # trigger to keep.
    db.execute("CREATE TABLE answered_by_user (user_id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    db.execute(
        "INSERT INTO answered_by_user (user_id, n) SELECT user_id, count(DISTINCT item_id)"
        " FROM answers WHERE source NOT IN ('import', 'undo') GROUP BY user_id"
    )
    db.execute(
        """
        CREATE TRIGGER answered_by_user_insert AFTER INSERT ON answers
        WHEN new.source NOT IN ('import', 'undo') AND NOT EXISTS (
            SELECT 1 FROM answers a WHERE a.item_id = new.item_id AND a.user_id = new.user_id
            AND a.id != new.id AND a.source NOT IN ('import', 'undo'))
        BEGIN
            INSERT INTO answered_by_user (user_id, n) VALUES (new.user_id, 1)
            ON CONFLICT(user_id) DO UPDATE SET n = n + 1;
        END"""
    )


# An answer that counts (a vote, a skip, an undo): not imported, and given while its item was
# open. A click on a decided or set-aside item is kept as history (``answers.late``) and its
# sender is told it was not counted: no vote, no gold score, no answer in anyone's count.
COUNTED = "source != 'import' AND late = 0"


@migrations(name="m021_late_answers")
def m021_late_answers(db: Database) -> None:
    # ``late``: the answer came while its item was decided or set aside (``record_answer``
    # found it closed), so it is history and counts nowhere. Before this column the vote
    # queries cut answers off only at ``labels.decided_by``, which an item set aside by skips,
    # one whose label an admin removed, or one an admin decided before anyone voted does not
    # have. Answers stored before are marked by what is known of them: after the answer that
    # decided the item, else after the item's last closing (its last post closed, or the
    # first decision in label_history for an item never posted).
    db.execute("ALTER TABLE answers ADD COLUMN late INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "UPDATE answers SET late = 1 WHERE source != 'import' AND id > ("
        "SELECT l.decided_by FROM labels l WHERE l.item_id = answers.item_id)"
    )
    db.execute("CREATE TEMP TABLE m021_closed (item_id TEXT PRIMARY KEY, at TEXT NOT NULL)")
    db.execute(
        "INSERT INTO m021_closed SELECT i.id, coalesce((SELECT p.closed_at FROM posts p"
        " WHERE p.item_id = i.id ORDER BY p.id DESC LIMIT 1), (SELECT min(h.created_at)"
        " FROM label_history h WHERE h.item_id = i.id AND h.action NOT IN ('rename', 'merge')))"
        " AS at FROM items i LEFT JOIN labels l ON l.item_id = i.id"
        " WHERE i.status IN ('resolved', 'skipped') AND l.decided_by IS NULL AND at IS NOT NULL"
    )
    db.execute(
        "UPDATE answers SET late = 1 WHERE source != 'import' AND created_at > ("
        "SELECT c.at FROM m021_closed c WHERE c.item_id = answers.item_id)"
    )
    db.execute("DROP TABLE m021_closed")
    # Each person's counted answers per item, their latest last: what the agreement, the gold
    # scores and Dawid-Skene read (``Store.iter_votes``), from the index alone.
    db.execute(f"CREATE INDEX answers_counted ON answers(item_id, user_id) WHERE {COUNTED}")
    # The answers of a period (today, this week) leave late answers out, from their index; an
    # answer taken back with Undo is found in the small index of undo rows. (``late`` is a
    # column too: SQLite reads a column the query names from the table otherwise.)
    db.execute("DROP INDEX answers_by_people")
    db.execute(
        "CREATE INDEX answers_by_people ON answers(created_at, user_id, item_id, source, late)"
        " WHERE source NOT IN ('import', 'undo') AND late = 0"
    )
    db.execute("CREATE INDEX answers_undo ON answers(item_id, user_id) WHERE source = 'undo'")
    # The items each person answered: those whose latest counted answer is not an undo (an
    # undone answer is no answer; a late one never was). Kept by two triggers: a counted answer
    # after none (or after an undo) adds the item, an undo after an answer takes it away.
    db.execute("DROP TRIGGER answered_by_user_insert")
    db.execute("DELETE FROM answered_by_user")
    db.execute(
        "INSERT INTO answered_by_user (user_id, n) SELECT user_id, count(*) FROM answers"
        f" WHERE id IN (SELECT max(id) FROM answers WHERE {COUNTED} GROUP BY item_id, user_id)"
        " AND source != 'undo' GROUP BY user_id"
    )
    before = (
        "(SELECT a.source FROM answers a WHERE a.item_id = new.item_id"
        " AND a.user_id = new.user_id AND a.id < new.id AND a.source != 'import'"
        " AND a.late = 0 ORDER BY a.id DESC LIMIT 1)"
    )
    db.execute(
        f"""
        CREATE TRIGGER answered_by_user_insert AFTER INSERT ON answers
        WHEN new.source NOT IN ('import', 'undo') AND new.late = 0
            AND coalesce({before}, 'undo') = 'undo'
        BEGIN
            INSERT INTO answered_by_user (user_id, n) VALUES (new.user_id, 1)
            ON CONFLICT(user_id) DO UPDATE SET n = n + 1;
        END"""
    )
    db.execute(
        f"""
        CREATE TRIGGER answered_by_user_undo AFTER INSERT ON answers
        WHEN new.source = 'undo' AND new.late = 0 AND coalesce({before}, 'undo') != 'undo'
        BEGIN
            UPDATE answered_by_user SET n = n - 1 WHERE user_id = new.user_id;
        END"""
    )


@migrations(name="m022_stop_accuracy")
def m022_stop_accuracy(db: Database) -> None:
    # Each check's accuracy now (``model.stopping.AccuracyNow.as_dict``, JSON): the model's
    # confidence on the stop set's unlabeled items, mapped to accuracy by the answered questions.
    db.execute("ALTER TABLE stop_checks ADD COLUMN accuracy TEXT")


@migrations(name="m023_labeled_by_user")
def m023_labeled_by_user(db: Database) -> None:
    # Of the items each person answered (``answered_by_user.n``), those whose latest counted
    # answer is a label, not a skip: the all-time leaderboard ranks by them, so skipping does
    # not climb it. Kept beside m021's triggers, as they keep ``n``; each is an upsert, so that
    # the order SQLite fires the triggers of one insert in does not matter.
    db.execute("ALTER TABLE answered_by_user ADD COLUMN labeled INTEGER NOT NULL DEFAULT 0")
    # one pass over the answers (a count per person read in a correlated subquery would read
    # them once a person)
    db.execute(
        "CREATE TEMP TABLE labeled_now AS SELECT user_id, count(*) AS n FROM answers"
        f" WHERE id IN (SELECT max(id) FROM answers WHERE {COUNTED} GROUP BY item_id, user_id)"
        " AND source != 'undo' AND label IS NOT NULL GROUP BY user_id"
    )
    db.execute(
        "UPDATE answered_by_user SET labeled = coalesce((SELECT n FROM labeled_now"
        " WHERE labeled_now.user_id = answered_by_user.user_id), 0)"
    )
    db.execute("DROP TABLE labeled_now")
    # 1 when this person's latest counted answer to the item before this one was a label (not
    # a skip, not an undo), 0 when a skip or an undo, NULL when none
    was_label = (
        "(SELECT a.label IS NOT NULL AND a.source != 'undo' FROM answers a"
        " WHERE a.item_id = new.item_id AND a.user_id = new.user_id AND a.id < new.id"
        " AND a.source != 'import' AND a.late = 0 ORDER BY a.id DESC LIMIT 1)"
    )
    db.execute(
        f"""
        CREATE TRIGGER labeled_by_user_answer AFTER INSERT ON answers
        WHEN new.source NOT IN ('import', 'undo') AND new.late = 0
        BEGIN
            INSERT INTO answered_by_user (user_id, n, labeled)
            VALUES (new.user_id, 0, (new.label IS NOT NULL) - coalesce({was_label}, 0))
            ON CONFLICT(user_id) DO UPDATE SET labeled = labeled + excluded.labeled;
        END"""
    )
    db.execute(
        f"""
        CREATE TRIGGER labeled_by_user_undo AFTER INSERT ON answers
        WHEN new.source = 'undo' AND new.late = 0
        BEGIN
            UPDATE answered_by_user SET labeled = labeled - coalesce({was_label}, 0)
            WHERE user_id = new.user_id;
        END"""
    )


@migrations(name="m024_legacy_text_ids")
def m024_legacy_text_ids(db: Database) -> None:
    # An item sent without an id is named by a hash of its text's one form (NFC, \n line
    # breaks: ``canonical_text``); before, of its text as it came. The items stored that way
    # whose text was not in its one form (decomposed, \r\n) are listed here, once, so that the
    # text coming back finds them (``bot.ingest.with_stored_ids``); a database made since
    # has none, and skips that lookup.
    import hashlib

    from bot.store.records import canonical_text

    db.execute("CREATE TABLE legacy_text_ids (id TEXT PRIMARY KEY)")
    found = []
    rows = db.execute("SELECT id, text FROM items WHERE length(id) = 17 AND id LIKE 't%'")
    for item_id, text in rows:
        if text.isascii() and "\r" not in text:
            continue  # in its one form: its id is the same either way
        raw = "t" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        if item_id == raw and canonical_text(text) != text:
            found.append((item_id,))
    db.conn.executemany("INSERT INTO legacy_text_ids (id) VALUES (?)", found)


@migrations(name="m025_label_set_restated")
def m025_label_set_restated(db: Database) -> None:
    # Which label set changes the stored predictions have been put under
    # (``Store.mark_restated``): a server starting on a database whose changes all were needs
    # no pass over every item (``bot.learning.scoring.Scorer.restate_due``). Changes made
    # before this are not marked: the first pass after the upgrade marks them.
    db.execute("ALTER TABLE label_set_changes ADD COLUMN restated INTEGER NOT NULL DEFAULT 0")


@migrations(name="m026_posts_expired")
def m026_posts_expired(db: Database) -> None:
    # A question left unanswered for HITL_QUESTION_TTL hours is taken back: its post is closed
    # with ``expired_at`` (its message says so) and its item goes back to the queue. Each
    # dispatcher round reads the oldest open posts from this partial index (only the open
    # posts, by age), so the look costs the same at any number of posts ever made.
    db.execute("ALTER TABLE posts ADD COLUMN expired_at TEXT")
    db.execute("CREATE INDEX posts_open_age ON posts(posted_at) WHERE closed_at IS NULL")


@migrations(name="m027_posts_expired_index")
def m027_posts_expired_index(db: Database) -> None:
    # `/hitl queue` says per channel how many questions were taken back unanswered in the last
    # week (``Store.expired_counts``), on the event loop: read from this partial index of the
    # expired posts alone, not a scan of every post ever made.
    db.execute("CREATE INDEX posts_expired ON posts(expired_at) WHERE expired_at IS NOT NULL")


@migrations(name="m028_answers_team")
def m028_answers_team(db: Database) -> None:
    # The Slack team of the person who answered (the payload's ``user.team_id``), so answers
    # from another organisation (a Slack Connect channel, HITL_ANSWER_TEAMS) can be told apart
    # afterwards; NULL for answers stored before, imported ones, and payloads without one.
    db.execute("ALTER TABLE answers ADD COLUMN team_id TEXT")


@migrations(name="m029_stop_draws")
def m029_stop_draws(db: Database) -> None:
    # When each stop set was drawn and the newest item then (its rowid): the items without a
    # label that arrived after it are not in the sample the models are compared on, and once
    # they are a quarter of those waiting (a new kind of ticket) the set is drawn again. A
    # draw made before has no row; its newest item is read from the set itself.
    db.execute(
        "CREATE TABLE stop_draws (draw INTEGER PRIMARY KEY, drawn_at TEXT NOT NULL,"
        " last_rowid INTEGER NOT NULL)"
    )


@migrations(name="m030_deleted_items")
def m030_deleted_items(db: Database) -> None:
    # `hitl delete` (an erasure request, a ticket with a card number pasted in) removes an item
    # and everything about it; what stays is that it was deleted, by whom, when and why
    # (``deleted_items``: its id, no text), and the Slack messages that showed it, until the
    # server has deleted them (``erased_posts``: channel and ts only).
    db.execute(
        "CREATE TABLE deleted_items (item_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"
        " reason TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE erased_posts (id INTEGER PRIMARY KEY, channel TEXT NOT NULL,"
        " ts TEXT NOT NULL, erased_at TEXT NOT NULL, UNIQUE (channel, ts))"
    )


# Who receives a webhook sent to the URL in column {url}, as ``claim_due_deliveries`` shares a
# round among receivers: for an http(s) URL its host and port in lower case (what
# ``urlsplit(url).netloc.rpartition("@")[2].lower()`` says: the text after "//" up to the first
# "/", "?" or "#", without the tabs and line breaks urlsplit drops and without the user and
# password before an "@"; SQLite's lower() folds ASCII only), for anything else the URL
# itself. One expression, formatted with the column, for every INSERT INTO deliveries and for
# m050 (tests/bot/test_delivery_receiver.py holds it to urlsplit). ``RECEIVER_SQL`` is the
# form m031 shipped with (the user and password kept): a database that ran m031 ran it.
_URL_REST = "substr({url}, instr({url}, '//') + 2)"
_NETLOC = (
    f"substr({_URL_REST}, 1, min(instr({_URL_REST} || '/', '/'), instr({_URL_REST} || '?', '?'),"
    f" instr({_URL_REST} || '#', '#')) - 1)"
)
RECEIVER_SQL = (
    "(CASE WHEN lower(substr({url}, 1, 7)) = 'http://' OR lower(substr({url}, 1, 8)) = 'https://'"
    f" THEN lower(replace(replace(replace({_NETLOC}, char(9), ''), char(10), ''), char(13), ''))"
    " ELSE {url} END)"
)
_CLEAN_NETLOC = f"replace(replace(replace({_NETLOC}, char(9), ''), char(10), ''), char(13), '')"
# The netloc after its last "@" (``rpartition("@")[2]``): its user and password are no part of
# who receives. ``rtrim`` takes off everything after the last "@", leaving the part to drop.
_HOST_PORT = (
    f"replace({_CLEAN_NETLOC}, rtrim({_CLEAN_NETLOC}, replace({_CLEAN_NETLOC}, '@', '')), '')"
)
DELIVERY_RECEIVER_SQL = (
    "(CASE WHEN lower(substr({url}, 1, 7)) = 'http://' OR lower(substr({url}, 1, 8)) = 'https://'"
    f" THEN lower({_HOST_PORT})"
    " ELSE {url} END)"
)


@migrations(name="m031_delivery_receiver")
def m031_delivery_receiver(db: Database) -> None:
    # Each round of webhook deliveries takes at most a few to one receiver, oldest first: with
    # the receiver stored and indexed it reads the few oldest due of each receiver that has
    # deliveries pending, at the same cost whatever one receiver's backlog. Only the pending
    # rows are filled (the others are not claimed); NULL is not known, and the claim fills it
    # for a pending row written without it (by a process that does not know the column).
    db.execute("ALTER TABLE deliveries ADD COLUMN receiver TEXT")
    db.execute(
        f"UPDATE deliveries SET receiver = {RECEIVER_SQL.format(url='url')}"
        " WHERE status = 'pending'"
    )
    db.execute(
        "CREATE INDEX deliveries_receiver_due ON deliveries(status, receiver, next_attempt_at, id)"
    )


@migrations(name="m032_anonymised_people")
def m032_anonymised_people(db: Database) -> None:
    # `hitl people anonymise` replaces a person's user id everywhere with a pseudonym
    # (``former-1``): what stays is that it happened, under which pseudonym, by whom and when;
    # never the id it replaced (``bot.store.people``).
    db.execute(
        "CREATE TABLE anonymised_people (id INTEGER PRIMARY KEY, pseudonym TEXT NOT NULL,"
        " done_by TEXT NOT NULL, created_at TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX anonymised_people_pseudonym ON anonymised_people(pseudonym)")


@migrations(name="m033_deliveries_item")
def m033_deliveries_item(db: Database) -> None:
    # An Undo and `hitl labels remove` (``_queue_taken_back``, in the write lock; an Undo on
    # the event loop), the webhook's ``_maybe_told`` and an item's deletion look for the
    # item's deliveries: without an index that read every delivery ever made (never pruned:
    # 82 ms at a million delivered rows).
    db.execute("CREATE INDEX deliveries_item ON deliveries(item_id)")


@migrations(name="m034_label_seq")
def m034_label_seq(db: Database) -> None:
    # The order labels were written in, whatever the clock says: ``label_clock.n`` counts
    # every write of a label's ``resolved_at`` (a decision, a relabel, a confirmation; not a
    # rename or merge, which keep the date) and ``labels.seq`` is the count at the label's
    # last write. A model records the count its training read (``label_seq``), so "given
    # since the champion" and "anything new?" stay right when the wall clock steps back (a
    # clock that ran ahead, fixed: labels written after it looked older than the champion's
    # newest, and "0 new" refitted the champion with them for its gate). Labels written before
    # are numbered in the order of their time. An insert that numbers its labels itself (an
    # import's, many at once) writes the count once.
    db.execute("ALTER TABLE labels ADD COLUMN seq INTEGER")
    db.execute("CREATE TEMP TABLE label_order (rid INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    db.execute(
        "INSERT INTO label_order (rid, n)"
        " SELECT rowid, row_number() OVER (ORDER BY resolved_at, rowid) FROM labels"
    )
    db.execute("UPDATE labels SET seq = o.n FROM label_order o WHERE o.rid = labels.rowid")
    db.execute("DROP TABLE label_order")
    db.execute("CREATE INDEX labels_seq ON labels(seq)")
    # ``start``: the count here, so a model (or a run's watermark) from before, which knows no
    # count, has read at most the labels numbered so far: any written since is new to it
    db.execute(
        "CREATE TABLE label_clock (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL,"
        " start INTEGER NOT NULL)"
    )
    db.execute("INSERT INTO label_clock (id, n, start) SELECT 1, count(*), count(*) FROM labels")
    tick = (
        "UPDATE label_clock SET n = n + 1;"
        " UPDATE labels SET seq = (SELECT n FROM label_clock) WHERE rowid = new.rowid;"
    )
    db.execute(
        "CREATE TRIGGER label_clock_insert AFTER INSERT ON labels WHEN new.seq IS NULL"
        f" BEGIN {tick} END"
    )
    db.execute(
        f"CREATE TRIGGER label_clock_update AFTER UPDATE OF resolved_at ON labels BEGIN {tick} END"
    )


@migrations(name="m035_answers_user")
def m035_answers_user(db: Database) -> None:
    # The items each person answered, by person (imports left out): App Home's "Start
    # labeling" asks, once per routed channel, whether the person has answered a question there
    # (``Store.has_answered_in``). Read from the person's answers, each item's posts in the
    # channel found from the item's index alone (the channel added to it); without them that
    # walked every post of the channel for someone who never answered there (252 ms at 240k
    # posts, on the event loop), whatever few answers they gave.
    db.execute("CREATE INDEX answers_user ON answers(user_id, item_id) WHERE source != 'import'")
    db.execute("DROP INDEX posts_item")
    db.execute("CREATE INDEX posts_item ON posts(item_id, channel)")


@migrations(name="m036_stop_checks_base")
def m036_stop_checks_base(db: Database) -> None:
    # Whose a refresh's check is, by identity rather than by time: the champion version it was
    # refreshed from (``base_version``; NULL: none), the newest run that made a champion when
    # it was recorded (``base_run``, a runs id; 0: none) and whether the refresh was dropped
    # because the champion changed while it fitted (``dropped``). The model served now counts
    # a refresh's check when all three match it (``Store._served``); comparing times instead
    # counted a refresh of v2 that a rollback to v1 dropped as v1's, and a clock step
    # misordered them. Checks from before keep NULL and the rule by time.
    db.execute("ALTER TABLE stop_checks ADD COLUMN base_version INTEGER")
    db.execute("ALTER TABLE stop_checks ADD COLUMN base_run INTEGER")
    db.execute("ALTER TABLE stop_checks ADD COLUMN dropped INTEGER")
    # And whether the check measured a learning curve (``curve`` 1), so that one whose
    # forecast was refused (a step, a range of zero width: ``extrapolation`` NULL) reads as
    # "no forecast" for its model, not as "not measured" with an older forecast shown instead.
    # NULL before: a NULL extrapolation then reads as not measured, as it did.
    db.execute("ALTER TABLE stop_checks ADD COLUMN curve INTEGER")


@migrations(name="m037_items_marked_gold")
def m037_items_marked_gold(db: Database) -> None:
    # The stored items marked gold while they waited (status gold, not imported as gold), in
    # the order they are drawn: with HITL_GOLD_RATE=0 the dispatcher looks for one at each
    # post, on the event loop (``Store.next_gold(marked=True)``), and without this read past
    # every gold item imported as new to find none (41 ms at 200k).
    db.execute(
        "CREATE INDEX items_marked_gold ON items(priority DESC)"
        " WHERE status = 'gold' AND source != 'gold'"
    )


@migrations(name="m038_refresh_versions")
def m038_refresh_versions(db: Database) -> None:
    # The versions the refreshes of the working model took (minus the labels read, or the next
    # number below not taken), with a digest of what each was fitted on (``digest``: the
    # pipeline, the label set, the texts and labels in order): the scorer skips an item stored
    # under the same version, so a restarted server's refresh of other labels must not take an
    # earlier server's version (its scores would claim to be the new model's). A refit of the
    # same labels is the same model, and keeps its version (``retrain.begin_refresh``).
    db.execute(
        "CREATE TABLE refresh_versions (version INTEGER PRIMARY KEY, digest TEXT NOT NULL,"
        " taken_at TEXT NOT NULL)"
    )


@migrations(name="m039_status_threshold")
def m039_status_threshold(db: Database) -> None:
    # The HITL_THRESHOLD the waiting items' auto/queued statuses were made under, one row:
    # the server's threshold pass at start (``Scorer.restate``: a read of every waiting item,
    # 0.6 s at a million) runs only when it is not the threshold in force. ``done`` 0: a pass
    # toward ``threshold`` is under way (or was stopped midway); ``threshold`` NULL: a status
    # was written under another threshold since (``Store._statuses_made_under``). No row (a
    # database from before): the first start runs the pass once, and records it.
    db.execute(
        "CREATE TABLE status_threshold (id INTEGER PRIMARY KEY CHECK (id = 1), threshold REAL,"
        " done INTEGER NOT NULL DEFAULT 0)"
    )


@migrations(name="m040_posts_taken_back")
def m040_posts_taken_back(db: Database) -> None:
    # Why a question was taken back (``Store._take_back_all``), on its post: 'expired'
    # (HITL_QUESTION_TTL, its message gone), 'labels' (a retire left no right button: its
    # expired message says the label set changed), 'moved' (out of a channel no longer asked
    # in, an Undo of a late decision, a message never shown); NULL: never taken back. At
    # start ``decide_answered`` reads the items taken back while they held answers from its
    # index, whatever the cause (the expired ones only, before). The expired posts of before
    # are marked 'expired'; one taken back otherwise before this is not known.
    db.execute("ALTER TABLE posts ADD COLUMN taken_back TEXT")
    db.execute("UPDATE posts SET taken_back = 'expired' WHERE expired_at IS NOT NULL")
    db.execute("CREATE INDEX posts_taken_back ON posts(item_id) WHERE taken_back IS NOT NULL")


@migrations(name="m041_split_draws")
def m041_split_draws(db: Database) -> None:
    # The HITL_VOTES the pending splits' messages were all drawn under, one row: the server's
    # start redraws every split (the review backlog, with no bound, at chat.update's pace)
    # only when it is not the HITL_VOTES in force (``Redrawer.redraw_open``). ``done`` 0: the
    # start's draws toward ``votes`` are under way (or were stopped midway). No row (a
    # database from before): the first start draws them once, and records it.
    db.execute(
        "CREATE TABLE split_draws (id INTEGER PRIMARY KEY CHECK (id = 1), votes INTEGER,"
        " done INTEGER NOT NULL DEFAULT 0)"
    )


@migrations(name="m042_label_clock_start")
def m042_label_clock_start(db: Database) -> None:
    # A repair: m034 gained label_clock.start after it shipped (d0f9979). A database that ran
    # its first form (f35450a..795e74e, 5 Dec) has no start, and every read of it failed (hitl
    # retrain, the refresh: "no such column: start"). Added only where it is missing. Its
    # value, the count m034 began at, was not kept there: m034 numbered the labels of then in
    # the order of their time and each write since took the next number, so in the order of
    # their numbers the labels keep to the order of their time up to the first one written
    # since whose time is older than that of a label numbered before it (an export's rows
    # imported, a clock set back): start is the number before that one, or the count now when
    # there is none. Labels written since that keep to the order are no older than any label
    # numbered before them, so they are new to a model from before m034 by their time
    # (``LabelMark.after``), and the others by their number.
    columns = {row[1] for row in db.execute("PRAGMA table_info(label_clock)")}
    if "start" in columns:
        return
    db.execute("ALTER TABLE label_clock ADD COLUMN start INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "UPDATE label_clock SET start = coalesce((SELECT min(seq) - 1 FROM"
        " (SELECT seq, resolved_at, max(resolved_at) OVER (ORDER BY seq"
        " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before"
        " FROM labels WHERE seq IS NOT NULL) WHERE resolved_at < before), n)"
    )


@migrations(name="m044_item_child_indexes")
def m044_item_child_indexes(db: Database) -> None:
    # An index on every column that references items(id) and had none SQLite's foreign-key
    # check can use (a partial index is not used for it): with foreign keys on, deleting an
    # item (``delete_items``, the erasure) looks for rows that still name it in each table
    # that references items, and without an index read all of the table, once per item. The
    # reviews (one a retired label's item: ``reviews_pending`` is partial) made `hitl delete`
    # of 5,000 items hold the write lock 10-16 s at 40k reviews, ~60 s for 20,000 at 61k, and
    # every click on the running server failed meanwhile; the stop set (2,000 rows) had none
    # either. IF NOT EXISTS: added only where missing.
    db.execute("CREATE INDEX IF NOT EXISTS reviews_item ON reviews(item_id)")
    db.execute("CREATE INDEX IF NOT EXISTS stop_set_item ON stop_set(item_id)")


@migrations(name="m045_delivery_notices")
def m045_delivery_notices(db: Database) -> None:
    # A notice that an item's wait for people ended without a label (``Store._queue_settled``:
    # auto, skipped) is ``notice`` 1, every other delivery (a person's label, a label taken
    # back) 0. The claim takes the due deliveries of people's labels first, then the notices
    # (``claim_due_deliveries``): a threshold pass that queues 100k notices no longer holds
    # each label's webhook behind them (24 min at a receiver answering in 50 ms). Each class
    # is read from its own index range, oldest first, and by receiver.
    db.execute("ALTER TABLE deliveries ADD COLUMN notice INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "CREATE INDEX deliveries_notice_due ON deliveries(status, notice, next_attempt_at, id)"
    )
    db.execute(
        "CREATE INDEX deliveries_receiver_notice_due"
        " ON deliveries(status, receiver, notice, next_attempt_at, id)"
    )


# A new delivery's ``key`` (m046): 128 random bits as 32 hex digits, drawn per row by SQLite,
# so the INSERT … SELECTs that queue many deliveries at once give each its own.
DELIVERY_KEY_SQL = "lower(hex(randomblob(16)))"


@migrations(name="m046_delivery_keys")
def m046_delivery_keys(db: Database) -> None:
    # What a webhook's X-HITL-Delivery header says, which receivers dedupe on. It was the
    # row's id, and ids are handed out again: deliveries.id has no AUTOINCREMENT, so deleting
    # an item (its deliveries with it) that held the newest id gave that id to the next
    # delivery, and a restored backup numbers from its own highest id. Each delivery written
    # from now on gets a random key (DELIVERY_KEY_SQL, where it is inserted), never reused by
    # a delete or a restore. The rows there that went out keep the id they went out with, as
    # text, so a pending one's retries carry the header its first attempts carried; one never
    # tried gets a random key (its id may already have gone out as another delivery's header).
    db.execute("ALTER TABLE deliveries ADD COLUMN key TEXT")
    db.execute(
        "UPDATE deliveries SET key = CASE WHEN attempts > 0 THEN CAST(id AS TEXT)"
        f" ELSE {DELIVERY_KEY_SQL} END"
    )
    db.execute("CREATE UNIQUE INDEX deliveries_key ON deliveries(key)")


@migrations(name="m047_delivery_restates")
def m047_delivery_restates(db: Database) -> None:
    # A delivery `hitl restore` queues to restate an item (``bot.store.restore._restate_sql``)
    # stands for an earlier webhook that may have told its producer something the restored
    # database does not say. ``restates`` is that webhook's key ('' when it is not known: an
    # item kept by --undelete); NULL for every other delivery. A webhook payload may then say
    # "label": null before the row's first attempt (``Store._maybe_told``), and a second
    # restore carries it over (``_told_since``). Such a row was written with attempts 1 before:
    # its first send was logged "attempt 2", it waited 20 s for its first retry and it got 11
    # sends of 12. Those still waiting unsent (their note says so) get attempts 0 back. The
    # column is added without a rewrite; the update reads the pending rows only (deliveries_due).
    db.execute("ALTER TABLE deliveries ADD COLUMN restates TEXT")
    db.execute(
        "UPDATE deliveries SET attempts = 0, restates = '' WHERE status = 'pending'"
        " AND attempts = 1 AND last_error = 'queued by hitl restore, not sent yet'"
    )


@migrations(name="m048_delivery_bodies")
def m048_delivery_bodies(db: Database) -> None:
    # What a delivery's first attempt sent, the exact bytes (``bot.api.webhooks``): each retry
    # sends them again, so one X-HITL-Delivery key carries one body. A retry read the item
    # again as it went: a label's webhook that failed once, retried after an Undo, carried the
    # take-back the next delivery told as well. NULL until the first attempt (a delivery not
    # sent yet tells the item as it is when it first goes); a row attempted before this
    # migration gets the body of its next attempt. A BLOB: what the receiver got, never text a
    # person's id could be rewritten in; it goes with the item when the item is deleted.
    db.execute("ALTER TABLE deliveries ADD COLUMN body BLOB")


@migrations(name="m049_items_status_label")
def m049_items_status_label(db: Database) -> None:
    # The scored items by status and predicted label, each label's in the order they are
    # drawn (a partial index: a term ``predicted_label = ?`` implies its WHERE): the
    # labeling window of a routed channel (``Store.next_in_channels``) reads the head of each
    # label routed there, where it read the status index past every item routed elsewhere, on
    # the event loop (a channel with nothing waiting: every waiting item, 0.3 s at 100k).
    db.execute(
        "CREATE INDEX items_status_label ON items(status, predicted_label, priority DESC)"
        " WHERE predicted_label IS NOT NULL"
    )


@migrations(name="m050_delivery_receiver_hosts")
def m050_delivery_receiver_hosts(db: Database) -> None:
    # A webhook's receiver is its URL's host and port, not the user and password before them
    # (``DELIVERY_RECEIVER_SQL``): m031 and the writes before this kept them, so URLs to one
    # host with other credentials were each a receiver of their own, 4 sends at a time each.
    # Only the pending rows are claimed by receiver, and only those with an "@" differ.
    db.execute(
        f"UPDATE deliveries SET receiver = {DELIVERY_RECEIVER_SQL.format(url='url')}"
        " WHERE status = 'pending' AND instr(receiver, '@') > 0"
    )


KNOWN_MIGRATIONS = tuple(m.name for m in migrations._migrations)

# The names shipped migrations had before they were renamed, and the name each has now. A
# database that records a former name ran that migration in its form then (m043 adds what
# m008's first form lacked): it is upgraded, not refused as written by a newer slack-hitl.
FORMER_NAMES = {"m008_item_counts": "m008_flat_stats"}


def recorded_names(db: Database) -> list[str]:
    """The migrations ``db`` records as applied, oldest first, as recorded (none without a
    migrations table): what sqlite-utils' ``Migrations.applied`` reads, in one query, without
    the table listing and the row object per migration it makes (every ``Store.open`` read
    them twice: a twentieth of the CPU the test suite's own processes spent)."""
    table = migrations.migrations_table
    found = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    if db.execute(found, [table]).fetchone() is None:
        return []
    rows = db.execute(
        f"SELECT name FROM [{table}] WHERE migration_set = ? ORDER BY rowid", [migrations.name]
    )
    return [name for (name,) in rows]


def applied_names(db: Database) -> list[str]:
    """The migrations ``db`` records as applied, oldest first, each by its current name."""
    return [FORMER_NAMES.get(name, name) for name in recorded_names(db)]


def rename_former(db: Database) -> None:
    """Record the migrations ``db`` applied under a former name by their current name, in the
    caller's transaction, so that ``migrations.pending`` does not run them again."""
    for former, name in FORMER_NAMES.items():
        db.execute(
            f"UPDATE {migrations.migrations_table} SET name = ?"
            " WHERE migration_set = ? AND name = ?",
            [name, migrations.name, former],
        )


# -- a new database -------------------------------------------------------------------------
#
# A new database ends with what every migration leaves in an empty one. Applying them one after
# another (tables made, altered, rebuilt; triggers dropped and made again) took 20-30 ms a file;
# the schema they leave, replayed, takes a few. It is built once a process, by applying the
# migrations themselves to an in-memory database, so it is never a second copy of the schema
# to keep in step (tests/bot/test_new_database.py compares it with a file upgraded one
# migration at a time, as an older database is). A migration must give every database the same
# (no random key, no time of its own in a starting row): the result is kept for the process.

_TEMPLATE: NewDatabase | None = None
_TEMPLATE_LOCK = threading.Lock()
# What goes in after the rows (a trigger made before them would fire on the template's rows
# again), in the order each may need the one before.
_AFTER_ROWS = ("index", "view", "trigger")


@dataclass(frozen=True)
class NewDatabase:
    """What all the migrations leave in an empty database: the tables' CREATE statements, the
    rows some of them start with, then the indexes, views and triggers."""

    tables: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...], tuple[tuple[object, ...], ...]], ...]
    after_rows: tuple[str, ...]


def new_database() -> NewDatabase:
    global _TEMPLATE
    with _TEMPLATE_LOCK:
        if _TEMPLATE is None:
            _TEMPLATE = _read_template()
        return _TEMPLATE


def _read_template() -> NewDatabase:
    conn = sqlite3.connect(":memory:")
    try:
        db = Database(conn)
        # as ``Store.migrate`` runs them on a new or an older file: in a transaction (each
        # migration must run in one: a VACUUM would fail there, so here too), foreign keys on
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        migrations.ensure_migrations_table(db)
        for migration in migrations._migrations:  # noqa: SLF001 - sqlite-utils' own list
            migration.fn(db)
        conn.execute("COMMIT")
        # (the migrations table and its index are made as they would be for an older file)
        schema = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
            " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND tbl_name != ? ORDER BY rowid",
            [migrations.migrations_table],
        ).fetchall()
        rows = []
        for name in [name for kind, name, _ in schema if kind == "table"]:
            cursor = conn.execute(f"SELECT * FROM [{name}]")
            found = tuple(cursor.fetchall())
            if found:
                columns = tuple(column[0] for column in cursor.description)
                rows.append((name, columns, found))
        return NewDatabase(
            tables=tuple(sql for kind, _, sql in schema if kind == "table"),
            rows=tuple(rows),
            after_rows=tuple(
                sql for order in _AFTER_ROWS for kind, _, sql in schema if kind == order
            ),
        )
    finally:
        conn.close()


def create_new(db: Database, applied_at: str) -> None:
    """Give the empty database ``db`` (its migrations table made, nothing applied) what all
    the migrations leave, and record each as applied, in the caller's transaction."""
    made = new_database()
    for sql in made.tables:
        db.execute(sql)
    for table, columns, rows in made.rows:
        names = ", ".join(f"[{column}]" for column in columns)
        marks = ", ".join("?" for _ in columns)
        db.conn.executemany(f"INSERT INTO [{table}] ({names}) VALUES ({marks})", rows)
    for sql in made.after_rows:
        db.execute(sql)
    db.conn.executemany(
        f"INSERT INTO {migrations.migrations_table} (migration_set, name, applied_at)"
        " VALUES (?, ?, ?)",
        [(migrations.name, name, applied_at) for name in KNOWN_MIGRATIONS],
    )
