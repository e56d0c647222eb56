"""`hitl people anonymise`: a teammate who left keeps their labels under a pseudonym of their
own. No table, export, history, stats line or Slack question names their id afterwards; the
labels, votes, agreement, gold accuracy and Dawid–Skene see the same distinct annotators;
an unknown id or a pseudonym that names someone changes nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.learning import quality
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import LABELS, Bot, Item, make_settings, seed, start_bot
from tests.bot.test_label_set import redrawer_running

LEAVER = "U0LEAVER"
ENV = {"HITL_VOTES": "2", "HITL_AGGREGATION": "dawid_skene", "HITL_LABELS": ",".join(LABELS)}


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], env=ENV)


def click(store: Store, item: str, user: str, label: str | None, ts: str) -> None:
    """An answer as a button click stores it (``bot.slack.app``'s dedupe key)."""
    store.record_answer(
        item, user, label, source="button", dedupe_key=f"{item}:{user}:{label}:{ts}", votes_needed=2
    )


def team(tmp_path: Path) -> Path:
    """A database where LEAVER is everywhere a person can be: votes, a skip, a gold miss, a
    split vote they decided, an admin's label change with their name in the reason, a label
    set change, a deletion, a retrain they started, imported answers (their dedupe keys)."""
    db = tmp_path / "hitl.db"
    history = tmp_path / "history.jsonl"
    history.write_text(
        json.dumps(
            {
                "id": "h1",
                "text": "old ticket",
                "label": "bug",
                "votes": 2,
                "agreement": 1.0,
                "annotators": [LEAVER, "U0ANA"],
                "resolved_at": "2026-01-01T00:00:00+00:00",
                "meta": {},
                "answers": [
                    {"user_id": LEAVER, "label": "bug", "created_at": "2026-01-01T00:00:00+00:00"},
                    {"user_id": "U0ANA", "label": "bug", "created_at": "2026-01-01T00:00:00+00:00"},
                ],
            }
        )
        + "\n"
    )
    assert run(db, "import", str(history)).exit_code == 0
    seed(db, [Item(f"i{n}", f"ticket {n} about the app") for n in range(1, 7)])
    with Store.open(db) as store:
        store.add_gold([Item("g1", "a checked ticket", "billing")])
        click(store, "i1", LEAVER, "bug", "1.1")
        click(store, "i1", "U0ANA", "bug", "1.2")
        click(store, "i2", LEAVER, "billing", "2.1")
        click(store, "i2", "U0RAJ", "bug", "2.2")
        click(store, "i2", "U0ANA", "billing", "2.3")
        click(store, "i3", LEAVER, None, "3.1")
        click(store, "i3", "U0RAJ", "bug", "3.2")
        click(store, "i3", "U0ANA", "bug", "3.3")
        click(store, "i4", LEAVER, "bug", "4.1")
        click(store, "i4", "U0RAJ", "billing", "4.2")  # a split: reviewed
        click(store, "g1", LEAVER, "bug", "5.1")  # a gold miss: reviewed, naming them
        click(store, "g1", "U0RAJ", "billing", "5.2")
        click(store, "g1", "U0ANA", "billing", "5.3")
        click(store, "i5", LEAVER, "bug", "6.1")
        click(store, "i6", "U0ANA", "bug", "7.1")
        click(store, "i6", "U0RAJ", "bug", "7.2")
        store.finish_run(store.start_run("retrain", triggered_by=f"<@{LEAVER}>"), "ok", {})
    assert run(db, "labels", "set", "i4", "bug", "--by", LEAVER).exit_code == 0
    said = run(db, "labels", "set", "i1", "billing", "--by", "cli:ana", "--reason", f"{LEAVER} ok")
    assert said.exit_code == 0
    assert run(db, "labels", "add", "refund", "--by", LEAVER).exit_code == 0
    assert run(db, "delete", "i5", "--yes", "--by", LEAVER).exit_code == 0
    return db


def occurrences(db: Path, needle: str) -> list[tuple[str, str, Any]]:
    """Every (table, column, value) of the database whose text holds ``needle``."""
    conn = sqlite3.connect(db)
    try:
        found = []
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]:
                rows = conn.execute(
                    f'SELECT "{column}" FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?)',
                    [needle],
                ).fetchall()
                found += [(table, column, row[0]) for row in rows]
        return found
    finally:
        conn.close()


def dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def measured(db: Path, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Labels, votes, agreement, gold accuracy and Dawid–Skene, with user ids renamed by
    ``names``: what anonymising must leave as it was."""
    names = names or {}

    def name(user: str) -> str:
        return names.get(user, user)

    with Store.open(db) as store:
        labels = store.db.execute(
            "SELECT item_id, label, votes, agreement, decided_by FROM labels ORDER BY item_id"
        ).fetchall()
        annotators = {
            r[0]: [name(u) for u in json.loads(r[1])]
            for r in store.db.execute("SELECT item_id, annotators FROM labels")
        }
        votes = sorted((i, name(u), lb) for i, u, lb in store.iter_votes())
        found = quality.measure(
            store, SimpleNamespace(votes=2, aggregation="dawid_skene", labels=())
        )
    agreement = found.agreement
    assert agreement is not None and found.estimates is not None and found.gold
    return {
        "labels": labels,
        "annotators": annotators,
        "votes": votes,
        "alpha": round(agreement.overall.alpha or 0, 9),
        "pairs": {
            frozenset((name(p.a), name(p.b))): (p.n_shared, round(p.kappa or 0, 9))
            for p in agreement.pairs
        },
        "per_person": {
            name(p.annotator): (p.n_votes, p.n, p.n_agree) for p in agreement.per_annotator
        },
        "gold": {name(g.annotator): (g.n, g.n_correct) for g in found.gold},
        "ds_votes": {name(u): n for u, n in found.estimates.n_votes.items()},
        "ds_accuracy": {
            name(u): round(a or 0, 6) for u, a in found.estimates.aggregation.accuracy.items()
        },
        "ds_labels": found.estimates.aggregation.label_of(),
    }


def answered(db: Path) -> dict[str, tuple[int, int]]:
    with Store.open(db) as store:
        rows = store.db.execute("SELECT user_id, n, labeled FROM answered_by_user").fetchall()
    return {user: (n, labeled) for user, n, labeled in rows}


def test_a_person_who_left_is_anonymised_everywhere_and_keeps_their_labels(tmp_path: Path):
    db = team(tmp_path)
    assert occurrences(db, LEAVER)  # in many places before
    before = measured(db, {LEAVER: "former-1"})
    counts = answered(db)

    done = run(db, "people", "anonymise", LEAVER, "--by", "dpo")
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"{LEAVER} is now former-1: changed 6 answers, 3 labels, 2 history rows, 2 reviews"
        " (and 1 row of deleted_items, 1 row of label_set_changes, 1 row of runs)."
    )
    assert lines[-2] == "Slack: no question message names them."

    # no row of any table names the id, nor any byte of the files
    assert occurrences(db, LEAVER) == []
    for path in tmp_path.glob("hitl.db*"):
        if path.is_file():
            assert LEAVER.encode() not in path.read_bytes(), path
    # what everyone reads shows the pseudonym
    for args in (("export",), ("export", "--answers"), ("labels", "history"), ("stats",)):
        shown = run(db, *args)
        assert shown.exit_code == 0, shown.output
        assert LEAVER not in shown.stdout and "former-1" in shown.stdout, args
        assert "@former-1" not in shown.stdout, args  # a name, not a mention of no one
    # labels, votes, agreement, gold accuracy and Dawid–Skene: as they were, under the name
    assert measured(db) == before
    # the answer counts moved to the pseudonym, and still add up
    after = answered(db)
    assert after["former-1"] == counts[LEAVER] and LEAVER not in after
    assert {u: c for u, c in after.items() if u != "former-1"} == {
        u: c for u, c in counts.items() if u != LEAVER
    }
    with Store.open(db) as store:
        assert store.pseudonyms() == [
            {"pseudonym": "former-1", "by": "dpo", "at": store.pseudonyms()[0]["at"]}
        ]
        # a click's key holds the pseudonym now, so the keys stay unique and hold no id
        keys = [r[0] for r in store.db.execute("SELECT dedupe_key FROM answers WHERE item_id='i1'")]
        assert "i1:former-1:bug:1.1" in keys
        assert 'import+answer:["former-1", "h1"]' in [
            r[0] for r in store.db.execute("SELECT dedupe_key FROM answers WHERE item_id='h1'")
        ]

    # asked again: the id is nowhere, so it is unknown; nothing changes
    stored = dump(db)
    again = run(db, "people", "anonymise", LEAVER)
    assert again.exit_code == 1
    assert again.stderr == f"Error: no one with user id '{LEAVER}' is stored; nothing changed\n"
    assert dump(db) == stored


def test_two_people_get_two_pseudonyms_and_stay_apart(tmp_path: Path):
    db = team(tmp_path)
    with Store.open(db) as store:  # an id that begins with LEAVER's is another person
        click(store, "i6", "U0LEAVERX", "billing", "7.3")
    names = {LEAVER: "former-1", "U0RAJ": "former-2", "U0LEAVERX": "former-3"}
    before = measured(db, names)
    counts = answered(db)

    done = run(db, "people", "anonymise", LEAVER, "U0RAJ")
    assert done.exit_code == 0, done.output
    said = [line for line in done.stdout.splitlines() if " is now " in line]
    assert said[0].startswith(f"{LEAVER} is now former-1: ")
    assert said[1].startswith("U0RAJ is now former-2: ")
    assert occurrences(db, "U0LEAVERX")  # not touched: another person
    assert run(db, "people", "anonymise", "U0LEAVERX").exit_code == 0

    for user in names:
        assert occurrences(db, user) == []
    after = measured(db)
    assert after == before
    assert {"former-1", "former-2", "U0ANA"} <= set(after["ds_votes"])
    assert {"former-1", "former-2"} <= set(after["per_person"])  # still two annotators
    assert answered(db) == {names.get(u, u): c for u, c in counts.items()}
    assert sum(n for n, _ in answered(db).values()) == sum(n for n, _ in counts.values())


def test_an_unknown_id_or_a_pseudonym_that_names_someone_changes_nothing(tmp_path: Path):
    db = team(tmp_path)
    stored = dump(db)
    refused = {
        (LEAVER, "U0NOPE"): "no one with user id 'U0NOPE' is stored; nothing changed",
        (LEAVER, "--as", "U0ANA"): "pseudonym 'U0ANA' looks like a user id (a Slack id or a cli:"
        " user): pick one that names no one, as former-1; nothing changed",
        (LEAVER, "--as", "W0NEW"): "pseudonym 'W0NEW' looks like a user id (a Slack id or a cli:"
        " user): pick one that names no one, as former-1; nothing changed",
        (LEAVER, "--as", "votes"): "pseudonym 'votes' is the user id of someone stored: pick"
        " another; nothing changed",
        (LEAVER, "--as", "a b"): "pseudonym 'a b': use 1 to 40 letters, digits, '.', '_' or '-',"
        " starting with a letter or digit; nothing changed",
        (LEAVER, "U0ANA", "--as", "gone"): "--as names one person: give one user id (run it again"
        " for others)",
    }
    for args, error in refused.items():
        said = run(db, "people", "anonymise", *args)
        assert said.exit_code == 1, (args, said.output)
        assert said.stderr == f"Error: {error}\n", args
        assert dump(db) == stored, args

    # a pseudonym given before names someone: refused, unless it is the same person's other id
    assert run(db, "people", "anonymise", "U0RAJ", "--as", "gone").exit_code == 0
    stored = dump(db)
    taken = run(db, "people", "anonymise", LEAVER, "--as", "gone")
    assert taken.exit_code == 1
    assert taken.stderr.startswith("Error: 'gone' is the pseudonym of someone anonymised before")
    assert dump(db) == stored
    merged = run(db, "people", "anonymise", "U0ANA", "--as", "gone", "--merge")
    assert merged.exit_code == 0, merged.output
    # one person now: each item they both answered counts once
    with Store.open(db) as store:
        (items,) = store.db.execute(
            "SELECT count(DISTINCT item_id) FROM answers WHERE user_id = 'gone'"
            " AND source != 'import' AND late = 0 AND label IS NOT NULL"
        ).fetchone()
    assert answered(db)["gone"] == (items, items)
    assert occurrences(db, "U0ANA") == [] and occurrences(db, "U0RAJ") == []


# -- a running server ------------------------------------------------------------------------


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "the app crashes"), Item("b", "charged twice")])
    settings = make_settings(fake_slack, tmp_path, max_open=2, votes=2)
    async for running in start_bot(fake_slack, settings):
        yield running


async def test_a_running_server_redraws_the_questions_without_the_person(bot: Bot):
    assert await bot.dispatcher.fill() == 2
    async with redrawer_running(bot, 0.01):  # as `hitl serve` runs it: sees the CLI's commit
        for message in bot.posted():  # both decided by LEAVER's vote and another's
            for user in (LEAVER, "U0ANA"):
                assert (await bot.action(bot.button_payload(message, user, "bug"))).status == 200
        await bot.settled()
        assert json.dumps(bot.posted()).count(f"<@{LEAVER}>") == 2  # "✅ bug by <@U0LEAVER>…"
        done = CliRunner().invoke(
            cli, ["--db", str(bot.rt.settings.db), "people", "anonymise", LEAVER], env=ENV
        )
        assert done.exit_code == 0, done.output
        assert "Slack: 2 question messages to redraw without them; `hitl serve` redraws" in (
            done.stdout
        )
        await bot.settled()  # fails (times out) unless both are redrawn
    shown = json.dumps(bot.posted())
    assert LEAVER not in shown
    assert shown.count("former-1") == 2
    assert "<@former-1>" not in shown  # Slack would draw a broken mention
    assert {tuple(bot.store.resolution(i)["annotators"]) for i in "ab"} == {("former-1", "U0ANA")}


# -- names that are no person; the columns that name kinds, statuses, reasons, sources ------


def not_people(db: Path) -> list[Any]:
    """The columns that name kinds, statuses, reasons and sources: never a person."""
    conn = sqlite3.connect(db)
    try:
        return [
            conn.execute(query).fetchall()
            for query in (
                "SELECT id, source, status FROM items ORDER BY id",
                "SELECT status, n FROM item_counts ORDER BY status",
                "SELECT id, kind, status FROM runs ORDER BY id",
                "SELECT id, reason FROM reviews ORDER BY id",
                "SELECT id, source FROM answers ORDER BY id",
                "SELECT id, action FROM label_history ORDER BY id",
            )
        ]
    finally:
        conn.close()


def test_names_the_product_writes_are_refused_and_kinds_statuses_sources_never_change(
    tmp_path: Path,
):
    db = team(tmp_path)
    stored = dump(db)
    for name in ("import", "gold", "api", "restore", "cli"):  # stored by slack-hitl itself
        said = run(db, "people", "anonymise", name)
        assert said.exit_code == 1, (name, said.output)
        assert said.stderr == (
            f"Error: {name!r} is a name slack-hitl itself writes (imported labels, gold items,"
            " the API's and a restore's deletions, the CLI), not a person's id; nothing changed\n"
        ), name
        assert dump(db) == stored, name
    # people whose names (given with --by) are also an item status and a review's reason
    assert run(db, "labels", "set", "i6", "billing", "--by", "resolved").exit_code == 0
    assert run(db, "labels", "add", "refund2", "--by", "split").exit_code == 0
    kinds = not_people(db)
    for name in ("resolved", "split"):
        done = run(db, "people", "anonymise", name)
        assert done.exit_code == 0, done.output
    assert not_people(db) == kinds  # items.status 'resolved', reviews.reason 'split' as they were
    with Store.open(db) as store:
        assert store.db.execute(
            "SELECT user_id FROM label_history WHERE item_id = 'i6'"
        ).fetchall() == [("former-1",)]
        assert store.db.execute(
            "SELECT user_id FROM label_set_changes WHERE label = 'refund2'"
        ).fetchall() == [("former-2",)]


# -- the write lock: held for the rows that change, not for a scan ---------------------------


def in_the_write_transaction(statements: list[str]) -> list[str]:
    begin = statements.index("BEGIN IMMEDIATE")
    return statements[begin : statements.index("COMMIT", begin)]


def test_the_scan_for_the_id_is_done_before_the_write_transaction(tmp_path: Path):
    """A running server writes while the command runs: the write lock is held only to change
    the rows a read found (each checked again) and rows added since the read; no statement in
    the write transaction reads a whole text column (items' text, meta, predictions…)."""
    db = team(tmp_path)
    statements: list[str] = []
    with Store.open(db) as store:
        store.db.conn.set_trace_callback(statements.append)
        store.anonymise_people([LEAVER], done_by="dpo")
        store.db.conn.set_trace_callback(None)
    inside = in_the_write_transaction(statements)
    assert [s for s in inside if "instr(" in s and "rowid" not in s] == []
    assert [s for s in inside if 'instr("text"' in s or 'instr("meta"' in s] == []
    assert [s for s in statements if 'instr("text"' in s]  # the read before it looked
    assert occurrences(db, LEAVER) == []


def test_a_row_added_between_the_read_and_the_write_is_anonymised_too(tmp_path: Path):
    db = team(tmp_path)
    with Store.open(db) as store:
        real_read = store._read

        def read_then_a_late_answer(names: Any, *rest: Any) -> Any:
            plan = real_read(names, *rest)
            other = sqlite3.connect(db)  # the server, between the read and the write
            other.execute(
                "INSERT INTO answers (item_id, user_id, label, source, created_at, dedupe_key,"
                " late) VALUES ('i6', ?, 'bug', 'button', '2026-01-02T00:00:00+00:00',"
                " 'i6:U0LEAVER:bug:9.9', 1)",
                [LEAVER],
            )
            other.commit()
            other.close()
            return plan

        store._read = read_then_a_late_answer  # type: ignore[method-assign]
        store.anonymise_people([LEAVER], done_by="dpo")
    assert occurrences(db, LEAVER) == []


# -- a restore of a backup made before ------------------------------------------------------


def test_a_restore_of_an_older_backup_anonymises_the_person_again(tmp_path: Path):
    db = team(tmp_path)
    backup = tmp_path / "backup.db"
    with sqlite3.connect(db) as source, sqlite3.connect(backup) as copy:
        source.backup(copy)
    copy.close()
    source.close()
    assert run(db, "people", "anonymise", LEAVER, "--by", "dpo").exit_code == 0
    # someone who answered nothing the backup holds: nothing to map, nothing said
    with Store.open(db) as store:
        click(store, "i6", "U0LATE", "bug", "8.1")
    assert run(db, "people", "anonymise", "U0LATE").exit_code == 0

    for args, kept in (
        ((), "hitl.db.before-restore"),
        (("--undelete",), "hitl.db.before-restore.2"),
    ):
        done = run(db, "restore", str(backup), *args)  # --undelete or not: anonymised again
        assert done.exit_code == 0, done.output
        assert (
            "Anonymised again: 1 person (former-1), anonymised (`hitl people anonymise`) after"
            f" the backup was made, as {kept} records." in done.stdout.splitlines()
        ), done.stdout
        assert "former-2" not in done.stdout
        assert [o for o in occurrences(db, LEAVER) if o[0] != "deleted_items"] == []
        with Store.open(db) as store:
            assert [(p["pseudonym"], p["by"]) for p in store.pseudonyms()] == [("former-1", "dpo")]
        assert answered(db)["former-1"] and LEAVER not in answered(db)
