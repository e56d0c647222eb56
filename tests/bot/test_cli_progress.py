"""`hitl stats` and `hitl find` read every answer or every item: at a million items an outside
test saw them print nothing for 15-40 s (`hitl import` and `hitl retrain` show a bar). Now both
show click's bar on stderr when it is a terminal (a pty here), nothing on a pipe or with
--quiet; and `hitl find` reads the items a stretch at a time (``FIND_CHUNK``), printing what it
found in each before it reads the next, with the same results, in the same order."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.store import Store, erasure
from tests import terminal

ROOT = Path(__file__).resolve().parents[2]


def run(db: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["--db", str(db), *args], env=env)


def on_a_terminal(db: Path, *args: str, votes: int = 1) -> tuple[str, str, int]:
    """``hitl --db DB ARGS`` with its stderr on a pseudo-terminal and its stdout on a pipe:
    (stdout, what the terminal got, exit code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITL_")}
    env |= {"PYTHONPATH": str(ROOT), "HITL_VOTES": str(votes), "COLUMNS": "100"}
    argv = [sys.executable, "-m", "bot", "--db", str(db), *args]
    return terminal.on_a_terminal(argv, cwd=db.parent, env=env)


def imported(tmp_path: Path, rows: list[dict]) -> Path:
    db = tmp_path / "hitl.db"
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    done = run(db, "import", str(path))
    assert done.exit_code == 0, done.output
    return db


def tickets(n: int) -> list[dict]:
    return [
        {"id": f"T-{i}", "text": f"order {i} from {'ann@example.com' if i % 3 == 0 else 'bob'}"}
        for i in range(n)
    ]


# -- hitl stats --


def test_stats_shows_a_bar_on_a_terminal(tmp_path: Path):
    db = imported(tmp_path, tickets(5))
    out, shown, code = on_a_terminal(db, "stats", votes=3)
    assert code == 0, shown
    assert "Reading the stats of 5 items" in shown
    assert "100%" in shown
    assert "Items:" in out and "Reading" not in out  # the report alone on stdout


def test_stats_shows_no_bar_with_quiet_or_on_a_pipe(tmp_path: Path):
    db = imported(tmp_path, tickets(5))
    out, shown, code = on_a_terminal(db, "stats", "--quiet", votes=3)
    assert code == 0, shown
    assert shown == ""
    assert "Items:" in out
    piped = run(db, "stats", env={"HITL_VOTES": "3"})
    assert piped.exit_code == 0, piped.output
    assert piped.stderr == ""
    assert piped.stdout == out


# -- hitl find --


def test_find_shows_a_bar_on_a_terminal_and_the_items_on_stdout(tmp_path: Path):
    db = imported(tmp_path, tickets(7))
    out, shown, code = on_a_terminal(db, "find", "ann@example.com", "--ids")
    assert code == 0, shown
    assert "Searching 7 items" in shown and "100%" in shown
    assert out.split() == ["T-0", "T-3", "T-6"]


def test_find_shows_no_bar_with_quiet_or_on_a_pipe(tmp_path: Path):
    db = imported(tmp_path, tickets(7))
    out, shown, code = on_a_terminal(db, "find", "ann@example.com", "--quiet")
    assert code == 0, shown
    assert "Searching" not in shown and "%" not in shown
    assert shown.strip() == "3 items found."
    assert [line.split()[0] for line in out.splitlines()] == ["T-0", "T-3", "T-6"]
    piped = run(db, "find", "ann@example.com")
    assert piped.exit_code == 0, piped.output
    assert piped.stderr == "3 items found.\n"
    assert piped.stdout == out


def test_find_gives_the_same_items_in_order_read_a_stretch_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = imported(tmp_path, tickets(20))
    whole = run(db, "find", "ann@example.com", "--jsonl")
    assert whole.exit_code == 0, whole.output
    with Store.open(db) as store:  # holes in the rowids
        store.delete_items(["T-4", "T-5", "T-6"], user_id="test", reason="test")
    monkeypatch.setattr(erasure, "FIND_CHUNK", 3)
    ids = run(db, "find", "ann@example.com", "--ids")
    assert ids.stdout.split() == ["T-0", "T-3", "T-9", "T-12", "T-15", "T-18"]
    listed = run(db, "find", "order", "--jsonl")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [
        f"T-{i}" for i in range(20) if i not in (4, 5, 6)
    ]
    plain = run(db, "find", "order")
    assert plain.stderr == "17 items found.\n"
    assert len(plain.stdout.splitlines()) == 17
    with Store.open(db) as store:
        assert [i["id"] for i in store.find_items("ann@example.com", limit=4)] == [
            "T-0",
            "T-3",
            "T-9",
            "T-12",
        ]
        assert [i["id"] for i in store.find_items("ann@example.com", limit=0)] == []


def test_find_yields_the_first_items_before_it_has_read_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = imported(tmp_path, tickets(12))
    monkeypatch.setattr(erasure, "FIND_CHUNK", 4)
    said: list[tuple[int, int]] = []
    with Store.open(db) as store:
        found = store.find_items(
            "ann@example.com", progress=lambda done, total: said.append((done, total))
        )
        assert next(found)["id"] == "T-0"
        assert said == [(0, 12)]  # nothing more read than the first stretch
        assert [i["id"] for i in found] == ["T-3", "T-6", "T-9"]
    assert said == [(0, 12), (4, 12), (8, 12), (12, 12)]


def test_what_sqlite_passes_over_is_what_python_would_not_find(tmp_path: Path):
    """The items SQLite's test (ASCII text lowered) leaves out are those Python's folding
    would not find: non-ASCII text, JSON escapes in meta and numbers that read otherwise all
    still reach it."""
    db = imported(tmp_path, [{"id": f"M-{i}", "text": "nothing here"} for i in range(6)])
    conn = sqlite3.connect(db)
    with conn:
        for item, text, meta in [
            ("M-0", "Grüße aus der STRASSE", "{}"),
            ("M-1", "plain", '{"name": "J\\u00fcrgen M\\u00fcller"}'),  # escaped in the JSON
            ("M-2", "plain", '{"path": "CORP\\\\jdoe"}'),
            ("M-3", "plain", '{"amount": 1e3}'),
            ("M-4", "ａｎｎ＠ＥＸＡＭＰＬＥ．ＣＯＭ wrote", "{}"),
            ("M-5", "Ann@Example.com wrote", '{"n": 7}'),
        ]:
            conn.execute("UPDATE items SET text = ?, meta = ? WHERE id = ?", [text, meta, item])
    conn.close()
    with Store.open(db) as store:

        def ids(needle: str, **kw) -> list[str]:
            return [i["id"] for i in store.find_items(needle, **kw)]

        assert ids("straße") == ["M-0"]
        assert ids("jürgen müller") == ["M-1"]
        assert ids("corp\\jdoe") == ["M-2"]
        assert ids("1000.0") == ["M-3"]
        assert ids("ann@example.com") == ["M-4", "M-5"]
        assert ids("ANN", part=True) == ["M-4", "M-5"]
        assert ids("nothing here") == []


# -- hitl delete, hitl people anonymise: the file rebuilt after an erasure --


def test_delete_shows_a_bar_while_it_rebuilds_the_file_on_a_terminal_only(tmp_path: Path):
    # The VACUUM after a delete (or an anonymisation) rebuilds the whole file: at a million
    # items `hitl delete` of one id showed nothing for 4-6 s after it asked.
    db = imported(tmp_path, tickets(5))
    out, shown, code = on_a_terminal(db, "delete", "--yes", "T-1")
    assert code == 0, shown
    assert "Rebuilding the database file" in shown
    assert out.startswith("Deleted 1 item.") and "Rebuilding" not in out
    piped = run(db, "delete", "--yes", "T-2")
    assert piped.exit_code == 0, piped.output
    assert piped.stderr == ""


# -- hitl export --


def test_export_shows_a_bar_on_a_terminal_when_the_rows_go_to_a_file(tmp_path: Path):
    # 400,000 labels took 5 s (JSONL) to 11 s (CSV) to export, with nothing on the terminal.
    db = imported(tmp_path, [{**t, "label": "sales"} for t in tickets(5)])
    out, shown, code = on_a_terminal(db, "export", "--format", "csv", "-o", "x.csv")
    assert code == 0, shown
    assert "Exporting 5 labels" in shown and "100%" in shown
    assert shown.endswith("wrote 5 labels to x.csv\n")
    assert len((tmp_path / "x.csv").read_text().splitlines()) == 6
    # to a pipe (its reader, `| head`, may write on the same terminal): no bar
    out, shown, code = on_a_terminal(db, "export", "--format", "csv")
    assert code == 0, shown
    assert shown == ""
    assert out == (tmp_path / "x.csv").read_text()


# -- hitl people anonymise --


def test_people_anonymise_shows_a_bar_while_it_looks_for_the_ids_on_a_terminal_only(
    tmp_path: Path,
):
    # It reads every text column of every table for each id: 2.3 s an id at a million items,
    # then the file's rebuild, with nothing on the terminal.
    db = imported(tmp_path, tickets(3))
    with Store.open(db) as store:
        for user in ("U0ANA", "U0BOB"):
            store.record_answer(
                "T-1", user, "sales", source="button", dedupe_key=user, votes_needed=3
            )
    out, shown, code = on_a_terminal(db, "people", "anonymise", "U0ANA")
    assert code == 0, shown
    assert "Looking for 1 id in every table" in shown and "100%" in shown
    assert "Rebuilding the database file" in shown
    assert out.startswith("U0ANA is now former-1: changed 1 answer")
    piped = run(db, "people", "anonymise", "U0BOB")
    assert piped.exit_code == 0, piped.output
    assert piped.stderr == ""
    assert piped.stdout.startswith("U0BOB is now former-2: changed 1 answer")


# -- the harness itself --


def test_the_terminal_is_read_while_the_command_runs_so_a_long_bar_does_not_stop_it(
    tmp_path: Path,
):
    # A bar over a big input writes more than the terminal's buffer (a few KB): read only after
    # the child exits, the child waited on a full terminal until the timeout.
    lines = ("x" * 99 + "\n") * 2000  # 200 KB
    child = "import sys; sys.stderr.write(('x' * 99 + '\\n') * 2000); print('done')"
    out, shown, code = terminal.on_a_terminal(
        [sys.executable, "-c", child], cwd=tmp_path, env=dict(os.environ), timeout=10
    )
    assert (out, code) == ("done\n", 0)
    assert shown == lines
