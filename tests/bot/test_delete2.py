"""`hitl delete` and `hitl find`, the cases a review found: the models named when the label
changed since, a deleted item's post whose outcome was unknown, a message Slack will not
delete, other people's addresses in a whole-word find, and the files and bytes the commands
are given."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import LABELS, Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL, slack_client

SECRET_TEXT = "refund please, my card is 4111 1111 1111 1234"


def run(db: Path, *args: str, stdin: str | bytes | None = None):
    return CliRunner().invoke(cli, ["--db", str(db), *args], input=stdin)


def add_model(store: Store, version: int, created_at: str) -> None:
    store.db["models"].insert(
        {
            "version": version,
            "status": "champion",
            "created_at": created_at,
            "n_train": 2,
            "label_set": "[]",
            "path": f"v{version}.skops",
            "sha256": "0" * 64,
        }
    )


def test_a_model_is_named_when_the_label_was_changed_or_removed_since(tmp_path: Path):
    """v1 trained on both items' labels; `hitl labels set` later moved one label's time past
    it and `hitl labels remove` took the other's row: no model was named for either."""
    now = ["2026-12-05T06:00:00.000+00:00"]
    with Store.open(tmp_path / "hitl.db", clock=lambda: now[0]) as store:
        store.add_items([Item("a", "card text a", "billing"), Item("b", "text b", "bug")], "import")
        add_model(store, 1, "2026-12-05T07:00:00+00:00")
        now[0] = "2026-12-05T08:00:00.000+00:00"
        store.set_label("a", "bug", user_id="U0ADMIN")
        store.remove_label("b", user_id="U0ADMIN")
        assert store.delete_items(["a"], user_id="dpo").models == [1]
        assert store.delete_items(["b"], user_id="dpo").models == [1]


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", SECRET_TEXT), Item("b", "the export button is gone")])
    settings = make_settings(fake_slack, tmp_path, max_open=2)
    async for running in start_bot(fake_slack, settings, retries=0):
        yield running


def delete_in_cli(bot: Bot, *ids: str):
    return CliRunner().invoke(
        cli,
        ["--db", str(bot.rt.settings.db), "delete", *ids, "--yes"],
        env={"HITL_LABELS": ",".join(LABELS)},
    )


async def test_a_deleted_items_post_that_got_no_answer_is_looked_for_and_deleted(bot: Bot):
    """The server stopped (or Slack timed out) during the post: its `post_attempts` note said
    "look for it first". `hitl delete` took the note with the item, so no one looked, and the
    message with the card number stayed in Slack."""
    assert bot.store.begin_post_attempt("a", CHANNEL, "cold_start", None, None, None)
    client = slack_client(bot.fake)
    await client.chat_postMessage(
        channel=CHANNEL,
        text=f"Which label? {SECRET_TEXT}",
        metadata={"event_type": "hitl_question", "event_payload": {"item_id": "a"}},
    )
    done = delete_in_cli(bot, "a")
    assert done.exit_code == 0, done.output
    await bot.rt.redrawer.pending()
    assert "4111" not in json.dumps(bot.fake.messages(CHANNEL))
    assert len(bot.fake.calls_to("chat.delete")) == 1
    assert bot.store.lost_posts() == [] and bot.store.erased_posts() == []


async def test_a_lost_post_not_in_slack_is_looked_for_until_it_settles(bot: Bot):
    from bot.slack.redraw import LOST_SETTLE

    assert bot.store.begin_post_attempt("a", CHANNEL, "cold_start", None, None, None)
    assert delete_in_cli(bot, "a").exit_code == 0
    redrawer = bot.rt.redrawer
    start = redrawer.clock()
    redrawer.clock = lambda: start
    await redrawer.pending()
    (lost,) = bot.store.lost_posts()
    assert lost["item_id"] == "a" and lost["channel"] == CHANNEL
    assert redrawer.next_due() is not None  # looked for again (a slow Slack may store it)
    redrawer.clock = lambda: start + LOST_SETTLE
    await redrawer.pending(due_only=True)
    assert bot.store.lost_posts() == []  # never posted: nothing to delete
    assert bot.fake.calls_to("chat.delete") == []


async def test_a_message_slack_will_not_delete_is_set_aside_and_the_others_go(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    """Slack refuses `chat.delete` for good on a message another bot user posted: the pass
    stopped there and retried it first forever, so no later message was deleted."""
    from bot.sandbox.webapi import SlackError

    assert await bot.dispatcher.fill() == 2
    first = bot.fake.messages(CHANNEL)[0]
    deletes = bot.fake._handlers["chat.delete"]

    def chat_delete(params: dict):
        if params.get("ts") == first["ts"]:
            raise SlackError("cant_delete_message")  # posted by another bot user, say
        return deletes(params)

    bot.fake._handlers["chat.delete"] = chat_delete
    assert delete_in_cli(bot, "a", "b").exit_code == 0
    with caplog.at_level(logging.INFO, logger="bot"):
        await bot.rt.redrawer.pending()
        await bot.rt.redrawer.pending()
    assert [m["ts"] for m in bot.fake.messages(CHANNEL)] == [first["ts"]]  # the other: deleted
    tried = [call.params["ts"] for call in bot.fake.calls_to("chat.delete")]
    assert tried.count(first["ts"]) == 1 and len(tried) == 2  # the refused one: not again
    said = [r.getMessage() for r in caplog.records if "cant_delete_message" in r.getMessage()]
    assert len(said) == 1, said
    assert bot.rt.redrawer.next_due() is None  # no backoff: nothing a retry would fix


def test_find_matches_an_address_whole_not_inside_another_persons(tmp_path: Path):
    db = tmp_path / "hitl.db"
    path = tmp_path / "people.jsonl"
    rows = [
        {"id": "M-1", "text": "from marie@example.com"},
        {"id": "M-2", "text": "from anne-marie@example.com"},
        {"id": "D-1", "text": "mail doe@example.com."},  # the end of a sentence
        {"id": "D-2", "text": "mail jane.doe@example.com"},
        {"id": "A-1", "text": "write to <ann@example.com>"},
        {"id": "A-2", "text": "write to ann@example.com.au"},
        {"id": "A-3", "text": "x", "meta": {"email": "ANN@example.com"}},
        {"id": "N-1", "text": "Anne-Marie Dupont called"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(db, "import", str(path)).exit_code == 0
    assert run(db, "find", "marie@example.com", "--ids").stdout == "M-1\n"
    assert run(db, "find", "doe@example.com", "--ids").stdout == "D-1\n"
    assert run(db, "find", "ann@example.com", "--ids").stdout == "A-1\nA-3\n"
    # a name is a whole word as before: every Marie, in an address too
    assert run(db, "find", "marie", "--ids").stdout == "M-1\nM-2\nN-1\n"
    # the README's pipeline deletes marie's ticket only
    ids = run(db, "find", "marie@example.com", "--ids").stdout
    assert run(db, "delete", "--ids-from", "-", "--yes", stdin=ids).exit_code == 0
    with Store.open(db) as store:
        assert store.get_item("M-2") is not None and store.get_item("M-1") is None


def test_find_leaves_out_the_spaces_pasted_around_an_address(tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item("A-1", "from ann@example.com")])
    assert run(db, "find", " ann@example.com\n", "--ids").stdout == "A-1\n"
    assert run(db, "find", "ann@example.com ", "--ids").stdout == "A-1\n"


def test_delete_reads_ids_files_excel_saves_and_refuses_other_bytes_in_one_line(tmp_path: Path):
    db = tmp_path / "hitl.db"
    seed(db, [Item(f"L-{n}", f"text {n}") for n in range(1, 5)] + [Item("L-é", "text é")])
    bom = tmp_path / "bom.txt"
    bom.write_bytes("L-1\r\nL-é\r\n".encode("utf-8-sig"))  # Excel's "CSV UTF-8"
    done = run(db, "delete", "--ids-from", str(bom), "--yes")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("Deleted 2 items")
    u16 = tmp_path / "u16.txt"
    u16.write_bytes("L-2\r\n".encode("utf-16"))  # Excel's "Unicode Text"
    done = run(db, "delete", "--ids-from", str(u16), "--yes")
    assert done.exit_code == 0, done.output
    latin = tmp_path / "latin.txt"
    latin.write_bytes("L-3\nL-é\n".encode("latin-1"))
    refused = run(db, "delete", "--ids-from", str(latin), "--yes")
    assert refused.exit_code == 1 and refused.exception.__class__ is SystemExit
    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"Error: {latin} is not UTF-8 text") and "save it as UTF-8" in line
    refused = run(db, "delete", "--ids-from", "-", "--yes", stdin="L-3\n".encode("utf-16-le"))
    assert refused.exit_code == 1 and "standard input is not UTF-8" in refused.stderr
    # bytes a Latin-1 terminal sends come as surrogates: refused, not a traceback
    for args in (["L-\udce9"], ["L-3", "--reason", "caf\udce9"], ["L-3", "--by", "j\udce9"]):
        refused = run(db, "delete", *args, "--yes")
        assert refused.exit_code == 2, (args, refused.output)
        assert "is not UTF-8 text" in refused.stderr
    with Store.open(db) as store:
        assert sorted(store.existing_item_ids(["L-3", "L-4"])) == ["L-3", "L-4"]
