"""`hitl delete`: an item and everything stored about it go (an erasure request, a card number
pasted into a ticket), all or none; the file keeps no copy of the text; a running server
deletes its Slack questions, through faults; an import of the same file brings nothing back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.store import Store
from tests import terminal
from tests.bot.harness import LABELS, Bot, Item, make_settings, seed, start_bot
from tests.bot.test_label_set import redrawer_running
from tests.fake_slack import CHANNEL

SECRET_TEXT = "refund please, my card is 4111 1111 1111 1234"


def run(db: Path, *args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, ["--db", str(db), *args], input=stdin)


def tickets(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.jsonl"
    rows = [
        {"id": f"T-{n}", "text": f"ticket {n} about the {kind} page", "label": kind}
        for n, kind in enumerate(["billing", "bug"] * 4)
    ]
    rows += [
        {"id": "T-card", "text": SECRET_TEXT, "label": "billing"},
        {"id": "T-open", "text": "an open ticket nobody answered"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def counts(db: Path) -> dict[str, int]:
    with Store.open(db) as store:
        return {
            table: store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("items", "answers", "labels", "label_history", "gold", "reviews")
        }


def test_an_item_and_everything_about_it_goes_and_the_file_keeps_no_copy(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(tickets(tmp_path))).exit_code == 0
    assert run(db, "labels", "set", "T-card", "bug", "--reason", "not billing").exit_code == 0
    assert run(db, "retrain").exit_code == 0
    before = counts(db)

    done = run(db, "delete", "T-card", "--yes", "--reason", "erasure request #4411", "--by", "dpo")
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0] == "Deleted 1 item: 1 answer, 1 label, 1 label change."
    assert lines[1].startswith("Models: v1 was trained while it had a label, and may keep")
    assert "`HITL_KEEP_MODELS=0 hitl retrain --force`" in lines[1]
    assert lines[-1] == "Backups and exports made before keep these items: delete them there too."
    after = counts(db)
    assert {t: before[t] - after[t] for t in before} == {
        "items": 1,
        "answers": 1,
        "labels": 1,
        "label_history": 1,
        "gold": 0,
        "reviews": 0,
    }
    # secure_delete and the emptied log: no byte of the text is left in the files
    for path in tmp_path.glob("hitl.db*"):
        if path.is_file():
            assert b"4111 1111" not in path.read_bytes(), path
    assert "T-card" not in run(db, "export").stdout
    assert run(db, "labels", "history", "T-card").stderr.startswith("Error: no item with id")
    with Store.open(db) as store:
        assert store.deleted_item("T-card")["reason"] == "erasure request #4411"
    # asked again: when, by whom and why
    again = run(db, "delete", "T-card", "--yes")
    assert again.exit_code == 1
    assert again.stderr.startswith('Error: "T-card" was deleted on ')
    assert again.stderr.endswith(" UTC by dpo (erasure request #4411); nothing deleted\n")
    # what the line advises leaves no model file that learned the text
    assert any("4111" in term for term in vocabulary(tmp_path, 1))
    advised = CliRunner().invoke(
        cli, ["--db", str(db), "retrain", "--force"], env={"HITL_KEEP_MODELS": "0"}
    )
    assert advised.exit_code == 0, advised.output
    assert sorted(p.name for p in (tmp_path / "hitl.db.models").glob("*.skops")) == ["v2.skops"]
    assert not any("4111" in term for term in vocabulary(tmp_path, 2))
    # the same file imported again brings nothing back
    imported = run(db, "import", str(tickets(tmp_path)))
    assert imported.stdout.endswith("1 row skipped (deleted before with `hitl delete`)\n"), (
        imported.stdout
    )
    assert counts(db)["items"] == after["items"]


def vocabulary(folder: Path, version: int) -> list[str]:
    """Every term of model ``version``'s vectorizers (word and character n-grams)."""
    from model import ModelRegistry

    fitted = ModelRegistry(folder / "hitl.db.models").load(version)
    found: list[str] = []
    stack = [fitted.pipeline_]
    while stack:
        part = stack.pop()
        if hasattr(part, "vocabulary_"):
            found.extend(part.vocabulary_)
        stack.extend(getattr(part, "steps", []) and [s for _, s in part.steps])
        stack.extend(
            getattr(part, "transformer_list", []) and [t for _, t in part.transformer_list]
        )
    assert found, "no vectorizer found in the model"
    return found


def test_an_unknown_id_deletes_nothing_and_no_terminal_needs_yes(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(tickets(tmp_path))).exit_code == 0
    before = counts(db)
    unknown = run(db, "delete", "T-1", "T-nope", "--yes")
    assert unknown.exit_code == 1
    assert unknown.stderr == (
        'Error: no item with id "T-nope"; nothing deleted (`hitl find TEXT` finds items by their'
        " text)\n"
    )
    piped = run(db, "delete", "T-1", stdin="y\n")  # CliRunner's input is no terminal
    assert piped.exit_code == 1
    assert piped.stderr == (
        "Error: asks before deleting, and no one can answer here (input is not a terminal):"
        " add --yes\n"
    )
    assert counts(db) == before


def test_the_peoples_answer_counts_lose_what_the_deleted_items_gave(tmp_path: Path):
    """Counted as if the deleted item had never been: the same answers given in a database
    without it make the same counts (skips, labels, late answers and an Undo among them)."""
    answers = [
        ("a", "U1", "bug", "button"),
        ("b", "U2", None, "button"),  # a skip
        ("b", "U1", "billing", "button"),
        ("b", "U3", "bug", "button"),  # late: b is decided
        ("c", "U2", "bug", "button"),
        ("c", "U2", None, "undo"),
        ("d", "U3", "bug", "button"),
        ("b", "U2", "bug", "button"),  # late again
    ]

    def answered(db: Path, items: str, delete: str | None) -> list[tuple]:
        seed(db, [Item(i, f"text {i}") for i in items])
        with Store.open(db) as store:
            for n, (item, user, label, source) in enumerate(answers):
                if item in items:
                    store.record_answer(item, user, label, source=source, dedupe_key=f"k{n}")
            if delete:
                before.extend(counted(store))
                store.delete_items([delete], user_id="dpo")
            return counted(store)

    def counted(store: Store) -> list[tuple]:
        rows = store.db.execute("SELECT user_id, n, labeled FROM answered_by_user ORDER BY 1")
        return [row for row in rows.fetchall() if row[1] or row[2]]

    before: list[tuple] = []
    deleted = answered(tmp_path / "deleted.db", "abcd", "b")
    assert deleted == answered(tmp_path / "never.db", "acd", None)
    assert deleted != before  # b's answers counted until it went


def test_an_item_of_the_stop_set_drops_the_set_to_be_drawn_again(tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item(f"i{n}", f"text {n}") for n in range(5)])
    with Store.open(db) as store:
        store.draw_stop_set(["i1", "i2", "i3"])
        done = store.delete_items(["i4"], user_id="dpo")
        assert not done.stop_set_dropped and len(store.stop_set()[1]) == 3
        done = store.delete_items(["i2"], user_id="dpo")
        assert done.stop_set_dropped and store.stop_set() == (0, [])


def test_a_post_of_an_item_deleted_meanwhile_is_not_recorded_and_its_message_is_erased(
    tmp_path: Path,
):
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "text a"), Item("b", "text b")])
    with Store.open(db) as store:
        assert store.begin_post_attempt("a", CHANNEL, "cold_start", None, None, None)
        store.delete_items(["a", "b"], user_id="dpo")
        assert not store.begin_post_attempt("b", CHANNEL, "cold_start", None, None, None)
        assert store.record_post("a", CHANNEL, "1.000001", "cold_start", None, None, None) == 0
        assert store.erased_posts() == [{"id": 1, "channel": CHANNEL, "ts": "1.000001"}]


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", SECRET_TEXT), Item("b", "the export button is gone")])
    settings = make_settings(fake_slack, tmp_path, max_open=2)
    async for running in start_bot(fake_slack, settings, retries=0):  # the redrawer retries
        yield running


def delete_in_cli(bot: Bot, *ids: str):
    return CliRunner().invoke(
        cli,
        ["--db", str(bot.rt.settings.db), "delete", *ids, "--yes"],
        env={"HITL_LABELS": ",".join(LABELS)},
    )


async def test_a_running_server_deletes_the_question_from_slack_and_a_click_on_it_stores_nothing(
    bot: Bot,
):
    assert await bot.dispatcher.fill() == 2
    message = next(m for m in bot.posted() if "4111" in json.dumps(m))
    async with redrawer_running(bot, 0.01):  # as `hitl serve` runs it: sees the CLI's commit
        done = delete_in_cli(bot, "a")
        assert done.exit_code == 0, done.output
        assert "Slack: 1 question message to delete; `hitl serve` deletes them" in done.stdout
        await bot.settled()  # fails (times out) unless the message is deleted
    assert [call.params["ts"] for call in bot.fake.calls_to("chat.delete")] == [message["ts"]]
    assert "4111" not in json.dumps(bot.fake.messages(CHANNEL))
    assert len(bot.fake.messages(CHANNEL)) == 1  # b's question stays
    # a click that was on its way: acked, nothing stored, told in one line
    assert (await bot.action(bot.button_payload(message, "U0ANA", "billing"))).status == 200
    note = await bot.fake.next_call("chat.postEphemeral")
    assert note.params["text"] == "I can't find that item any more; it may have been removed."
    assert bot.store.count_answers() == 0


async def test_a_slack_that_fails_the_delete_is_tried_again_and_said_once(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    assert await bot.dispatcher.fill() == 2
    bot.rt.redrawer.retry_base = 0.01
    bot.fake.fail("chat.delete", "internal_error", status=500, times=2)
    assert delete_in_cli(bot, "a").exit_code == 0
    with caplog.at_level(logging.INFO, logger="bot"):
        async with redrawer_running(bot, 0.01):
            await bot.settled()  # fails (times out) unless the retries go through
    assert len(bot.fake.calls_to("chat.delete")) == 3
    assert "4111" not in json.dumps(bot.fake.messages(CHANNEL))
    assert bot.store.erased_posts() == []
    said = [r.getMessage() for r in caplog.records if "deleted item" in r.getMessage()]
    assert len(said) == 2, said  # the failure once (not at each retry), then that it works
    assert said[0].startswith("could not delete the Slack message of a deleted item: chat.delete")


async def test_a_message_already_gone_counts_as_deleted(bot: Bot):
    assert await bot.dispatcher.fill() == 2
    bot.fake.fail("chat.delete", "message_not_found")  # someone deleted it by hand
    assert delete_in_cli(bot, "a").exit_code == 0
    async with redrawer_running(bot, 0.01):
        await bot.settled()
    assert len(bot.fake.calls_to("chat.delete")) == 1  # not tried again
    assert bot.store.erased_posts() == []


async def test_a_question_whose_item_is_deleted_while_slack_posts_it_is_deleted_after(bot: Bot):
    """The round read the item, Slack took its time, `hitl delete` committed, then Slack
    answered: the post is not recorded (before, the missing item made its record fail, and
    the dispatcher stopped posting until it could record it), and the message is deleted."""
    async with redrawer_running(bot, 3600):  # only a wake draws here
        bot.fake.fail("chat.postMessage", mode="timeout")
        round_ = asyncio.create_task(bot.dispatcher.fill())
        await bot.fake.next_call("chat.postMessage")
        held = bot.fake.calls_to("chat.postMessage")[0]
        item = "a" if "4111" in json.dumps(held.params) else "b"
        assert delete_in_cli(bot, item).exit_code == 0
        bot.fake.release_timeouts()
        await round_
        await bot.settled()
    assert bot.store.post_for_item(item) is None
    shown = [m["metadata"]["event_payload"]["item_id"] for m in bot.fake.messages(CHANNEL)]
    assert item not in shown and len(shown) == 1  # the other item's question stays
    assert len(bot.fake.calls_to("chat.delete")) == 1
    assert not bot.dispatcher.unrecorded  # the dispatcher goes on posting


async def test_the_api_deletes_an_item_as_the_cli_does_and_says_so_after(
    fake_slack: FakeSlack, tmp_path: Path
):
    from tests.bot.test_api import AUTH, start_api
    from tests.bot.test_openapi import check_answer

    async for api in start_api(fake_slack, tmp_path, max_open=2):
        sent = await api.http.post(
            "/api/items", json={"items": [{"id": "T 7/a", "text": SECRET_TEXT}]}, headers=AUTH
        )
        assert sent.status == 200
        assert await api.dispatcher.fill() == 1
        path = "/api/items/" + quote("T 7/a", safe="")
        assert (await api.http.delete(path)).status == 401  # no token: nothing deleted
        assert (await api.http.get(path, headers=AUTH)).status == 200
        async with redrawer_running(api, 3600):  # the API's delete wakes it
            deleted = await api.http.delete(path + "?reason=erasure%20%234411", headers=AUTH)
            body = await deleted.json()
            check_answer("/api/items/{id}", "DELETE", deleted.status, body)
            assert body == {
                "id": "T 7/a",
                "deleted": True,
                "answers": 0,
                "label": False,
                "slack_messages": 1,
                "models": [],
            }
            await api.settled()  # fails (times out) unless the question is deleted
        assert api.fake.messages(CHANNEL) == []
        gone = await api.http.get(path, headers=AUTH)
        check_answer("/api/items/{id}", "GET", gone.status, await gone.json())
        assert gone.status == 410
        # a producer sending it again (a ticket system does, on every update) stores nothing
        resent = await api.http.post(
            "/api/predict", json={"id": "T 7/a", "text": SECRET_TEXT}, headers=AUTH
        )
        said = await resent.json()
        check_answer("/api/predict", "POST", resent.status, said)
        assert resent.status == 410 and said["field"] == "id"
        assert said["error"].startswith('item "T 7/a" was deleted at ')
        assert said["error"].endswith(  # by this API's DELETE, not `hitl delete`
            " (DELETE /api/items/{id}) and is not stored again; send a new item under a new id"
        )
        batch = await api.http.post(
            "/api/items",
            json={"items": [{"id": "T 7/a", "text": SECRET_TEXT}, {"id": "T-8", "text": "new"}]},
            headers=AUTH,
        )
        body = await batch.json()
        check_answer("/api/items", "POST", batch.status, body)
        assert [(r["id"], r["result"]) for r in body["results"]] == [
            ("T 7/a", "rejected"),
            ("T-8", "created"),
        ]
        assert body["results"][0]["field"] == "items[0].id"
        assert (
            api.store.get_item("T 7/a") is None and api.fake.calls_to("chat.postMessage")[1:] == []
        )
        again = await api.http.delete(path, headers=AUTH)
        said = await again.json()
        check_answer("/api/items/{id}", "DELETE", again.status, said)
        assert again.status == 410 and said["error"].startswith('item "T 7/a" was deleted at ')
        assert api.store.deleted_item("T 7/a")["reason"] == "erasure #4411"
        assert (await api.http.delete("/api/items/nope", headers=AUTH)).status == 404


def test_the_document_says_a_deleted_items_get_answers_410_as_the_server_does():
    """The DELETE's description said "`GET` then answers 404", while the server (above) and
    GET's own responses say 410."""
    document = json.loads((resources.files("bot.api") / "openapi.json").read_bytes())
    said = document["paths"]["/api/items/{id}"]["delete"]["description"]
    assert "`GET` and `DELETE` again then answer 410 saying when it was deleted" in said
    assert "404" not in said


def test_a_restore_deletes_again_what_was_deleted_after_the_backup(tmp_path: Path):
    """An erasure survives a restore of an older backup: the items deleted since are deleted
    again (their Slack questions too), as the database that was there records, and named;
    --undelete keeps them (a delete made by mistake)."""
    import sqlite3

    db = tmp_path / "hitl.db"
    assert run(db, "import", str(tickets(tmp_path))).exit_code == 0
    backup = tmp_path / "nightly.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"VACUUM INTO '{backup}'")
    assert run(db, "delete", "T-card", "T-open", "--yes", "--reason", "#4411").exit_code == 0

    restored = run(db, "restore", str(backup))
    assert restored.exit_code == 0, restored.output
    assert (
        "Deleted again: 2 items deleted (`hitl delete`) after the backup was made (T-card,"
        " T-open), as hitl.db.before-restore records; `hitl serve` deletes their Slack messages."
        " --undelete keeps them.\n"
    ) in restored.stdout
    assert counts(db)["items"] == 8
    assert b"4111 1111" not in db.read_bytes()
    with Store.open(db) as store:  # kept as it was made: the ids stay out of imports and the API
        assert store.deleted_item("T-card")["reason"] == "#4411"
    again = run(db, "import", str(tickets(tmp_path)))
    assert "2 rows skipped (deleted before with `hitl delete`)" in again.stdout

    undone = run(db, "restore", str(backup), "--undelete")
    assert undone.exit_code == 0, undone.output
    assert "Kept 2 items deleted after the backup was made (T-card, T-open): --undelete." in (
        undone.stdout
    )
    assert counts(db)["items"] == 10


def test_find_lists_a_persons_items_in_every_status_for_a_request(tmp_path: Path):
    """An erasure or access request names a person, not ids: `hitl find` reads every item's
    text, meta and id, whatever its status (export lists only the labeled ones)."""
    db = tmp_path / "hitl.db"
    path = tmp_path / "mail.jsonl"
    rows = [
        {"id": "M-1", "text": "From JANE.DOE@example.com: refund", "label": "billing"},
        {"id": "M-2", "text": "the app crashes", "meta": {"from": "jane.doe@example.com"}},
        {"id": "M-3", "text": "Straße 5, someone else", "label": "bug"},
        {"id": "M-4", "text": "jane.doe@example.org is another person"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(db, "import", str(path)).exit_code == 0
    assert run(db, "labels", "remove", "M-1").exit_code == 0  # set aside: in no export

    listed = run(db, "find", "jane.doe@example.com")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout == (
        "M-1  skipped  From JANE.DOE@example.com: refund\nM-2  new  the app crashes\n"
    )
    assert listed.stderr == "2 items found.\n"
    assert run(db, "find", "STRASSE").stdout.startswith("M-3  resolved (bug)  Straße 5")
    whole = [
        json.loads(line)
        for line in run(db, "find", "jane.doe@", "--part", "--jsonl").stdout.splitlines()
    ]
    assert [(r["id"], r["meta"]) for r in whole] == [
        ("M-1", {}),
        ("M-2", {"from": "jane.doe@example.com"}),
        ("M-4", {}),
    ]
    ids = run(db, "find", "jane.doe@example.com", "--ids").stdout.split()
    assert run(db, "delete", *ids, "--yes").stdout.startswith("Deleted 2 items")
    assert run(db, "find", "jane.doe@example.com").stderr == "0 items found.\n"
    assert run(db, "find", " ").stderr.endswith("give some text to look for\n")


def test_a_model_made_in_the_second_its_label_was_decided_is_named(tmp_path: Path):
    """A model's time has seconds, a label's milliseconds: compared as text, a model made in
    the same second after the label ("…:12+00:00" < "…:12.345+00:00") was left out of the
    models named (the full suite, fast enough, hit it)."""
    with Store.open(tmp_path / "hitl.db", clock=lambda: "2026-12-05T06:40:12.345+00:00") as store:
        store.add_items([Item("a", "card text", "billing")], "import")
        store.db["models"].insert(
            {
                "version": 1,
                "status": "champion",
                "created_at": "2026-12-05T06:40:12+00:00",
                "n_train": 1,
                "label_set": "[]",
                "path": "v1.skops",
                "sha256": "0" * 64,
            }
        )
        assert store.delete_items(["a"], user_id="dpo").models == [1]


async def test_the_api_refuses_a_deleted_item_stored_under_an_older_versions_id(
    fake_slack: FakeSlack, tmp_path: Path
):
    """An item an older version stored under the hash of its text as it came (decomposed, with
    \\r\\n), deleted: sent again without an id, its id is today's hash, which no deletion names;
    the producer API stored it again where `hitl import` skips it."""
    import hashlib
    import sqlite3

    from tests.bot.test_api import AUTH, start_api
    from tests.bot.test_ingest_review import TEXT

    db = tmp_path / "hitl.db"
    old = "t" + hashlib.sha256(TEXT.encode()).hexdigest()[:16]
    with Store.open(db) as store:
        store.add_items([Item(old, TEXT)], "import")
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:  # as an older version left it
        conn.execute("DROP TABLE legacy_text_ids")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm024_legacy_text_ids'")
    with Store.open(db) as store:
        store.delete_items([old], user_id="dpo", reason="erasure")
    async for api in start_api(fake_slack, tmp_path):
        sent = await api.http.post("/api/predict", json={"text": TEXT}, headers=AUTH)
        said = await sent.json()
        assert sent.status == 410, said
        assert list(api.store.find_items("4111")) == []


def test_find_matches_whole_words_in_any_unicode_form_and_meta_values_as_written(tmp_path: Path):
    import unicodedata

    db = tmp_path / "hitl.db"
    path = tmp_path / "people.jsonl"
    rows = [
        {"id": "P-1", "text": "from ann@example.com"},
        {"id": "P-2", "text": "from joann@example.com"},  # not ann's
        {"id": "P-3", "text": unicodedata.normalize("NFD", "Zoë Müller wrote")},
        {"id": "P-4", "text": "x", "meta": {"login": "CORP\\jdoe", "name": 'Jane "JJ" Doe'}},
        {"id": "P-5", "text": "bidi \u202egnp.exe and \x1b[31mred"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(db, "import", str(path)).exit_code == 0
    assert run(db, "find", "ann@example.com", "--ids").stdout == "P-1\n"
    assert run(db, "find", "ann@example.com", "--part", "--ids").stdout == "P-1\nP-2\n"
    assert run(db, "find", "zoë müller", "--ids").stdout == "P-3\n"  # typed composed
    assert run(db, "find", "CORP\\jdoe", "--ids").stdout == "P-4\n"
    assert run(db, "find", 'Jane "JJ" Doe', "--ids").stdout == "P-4\n"
    assert run(db, "find", "login", "--ids").stdout == ""  # a field's name is no value
    shown = run(db, "find", "bidi").stdout
    assert "\u202e" not in shown and "\x1b" not in shown  # a terminal would obey them
    assert "\\u202egnp.exe" in shown and "\\x1b[31mred" in shown


def test_ids_from_a_pipe_stay_whole_and_a_reason_is_kept_on_one_line(tmp_path: Path):
    """`hitl delete $(hitl find … --ids)` split an id with spaces and read an id `--yes` as the
    option (deleting the rest without asking); --ids-from reads one id a line."""
    db = tmp_path / "hitl.db"
    path = tmp_path / "odd.jsonl"
    rows = [
        {"id": i, "text": f"mail of jane@example.com {n}"}
        for n, i in enumerate(["--yes", "a b", "-rf"])
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(db, "import", str(path)).exit_code == 0
    ids = run(db, "find", "jane@example.com", "--ids").stdout
    asked = run(db, "delete", "--ids-from", "-", stdin=ids)
    assert asked.exit_code == 1 and "add --yes" in asked.stderr and counts(db)["items"] == 3
    done = run(db, "delete", "--ids-from", "-", "--yes", "--reason", "line\none\u202e", stdin=ids)
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("Deleted 3 items")
    assert counts(db)["items"] == 0
    with Store.open(db) as store:
        assert store.deleted_item("a b")["reason"] == "line one"


def test_the_summary_counts_webhook_deliveries_in_english(tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "text a", "billing")])
    with Store.open(db) as store, store.db.conn:  # committed at the block's end
        store.db.conn.executemany(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at)"
            " VALUES ('a', 'https://x.example/h', '2026-01-01', '2026-01-01')",
            [(), ()],
        )
    done = run(db, "delete", "a", "--yes")
    assert done.stdout.startswith("Deleted 1 item: 1 answer, 1 label, 2 webhook deliveries.")


def asked_on_a_terminal(db: Path, reply: str, *args: str) -> tuple[str, int]:
    """``hitl --db DB delete ARGS`` with its stdin and stdout on a pseudo-terminal, answering
    ``reply`` to its question: (what the terminal showed, exit code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITL_")}
    env |= {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    argv = [sys.executable, "-m", "bot", "--db", str(db), "delete", *args]
    _, shown, code = terminal.on_a_terminal(
        argv, cwd=db.parent, env=env, stdin=True, stdout=True, reply=reply
    )
    return shown, code


def test_the_question_before_a_delete_says_what_goes_with_the_items(tmp_path: Path):
    # It said only "Delete 2 items (T-card, T-open) and everything stored about them?": the
    # labels and answers that go with them were told after, when it could not be undone.
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(tickets(tmp_path))).exit_code == 0
    assert run(db, "labels", "set", "T-card", "bug", "--reason", "not billing").exit_code == 0
    before = counts(db)
    question = (
        "Delete 2 items (T-card, T-open) and everything stored about them (1 answer, 1 label,"
        " 1 label change)? This cannot be undone [y/N]: "
    )
    shown, code = asked_on_a_terminal(db, "n", "T-card", "T-open")
    assert question in shown, shown
    assert code == 1 and "Aborted!" in shown
    assert counts(db) == before  # nothing deleted
    shown, code = asked_on_a_terminal(db, "n", "T-open")
    assert "Delete 1 item (T-open) and everything stored about it (no answer or label yet)?" in (
        shown
    ), shown
    shown, code = asked_on_a_terminal(db, "y", "T-card", "T-open")
    assert question in shown and code == 0, shown
    assert "Deleted 2 items: 1 answer, 1 label, 1 label change." in shown
    assert counts(db)["items"] == before["items"] - 2


@pytest.mark.parametrize(
    "change",
    [("rename", "question", "how_to"), ("merge", "question", "bug"), ("retire", "question")],
    ids=["renamed", "merged", "retired"],
)
def test_a_deleted_items_row_is_skipped_whatever_its_label_became(tmp_path: Path, change):
    """The same file imported again after `hitl delete` and a change to the deleted item's
    label: its row is skipped as deleted before, as it is when the label is unchanged; it was
    refused, telling to write the new label in the file (or to add the label back) so that
    it be stored again."""
    db = tmp_path / "hitl.db"
    path = tmp_path / "tickets.jsonl"
    rows = [("T-1", "billing"), ("T-2", "bug"), ("T-3", "question"), ("T-4", None)]
    path.write_text(
        "".join(
            json.dumps({"id": id_, "text": f"ticket {id_}", **({"label": label} if label else {})})
            + "\n"
            for id_, label in rows
        )
    )
    assert run(db, "import", str(path)).exit_code == 0
    assert run(db, "labels", *change).exit_code == 0
    assert run(db, "delete", "T-3", "--yes").exit_code == 0
    again = run(db, "import", str(path))
    assert again.exit_code == 0, again.output
    assert again.stderr == ""
    assert again.stdout.endswith(
        "3 duplicates, 0 rejected, 1 row skipped (deleted before with `hitl delete`)\n"
    )
    assert "T-3" not in run(db, "export").stdout
