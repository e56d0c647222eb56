"""A label set that can change, through signed requests and the CLI: a rename redraws the open
questions and an old button counts for the new name, a retired label's old button is refused
with a note, a merge reaches training, and exports say which label set they follow."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.errors import StoreError
from bot.learning.quality import training_rows
from bot.sandbox import FakeSlack
from bot.slack.redraw import Redrawer
from bot.store import Store
from tests.bot.harness import LABELS, Bot, Item, make_settings, seed, start_bot
from tests.bot.test_cli_loop import labeled_file, run
from tests.bot.test_review import decision
from tests.bot.test_slack_bot import buttons
from tests.fake_slack import CHANNEL


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(
        tmp_path / "hitl.db",
        [Item("a", "refund and a crash"), Item("s1", "seed one", "billing")],
    )
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        yield running


@contextlib.asynccontextmanager
async def redrawer_running(bot: Bot, idle_tick: float):
    """The redrawer's background loop, as `hitl serve` runs it, once its first pass is done
    (from there it waits: to be woken, or ``idle_tick`` seconds for another connection's
    commit); stopped at the end of the block."""
    redrawer = Redrawer.of(bot.rt)
    redrawer.idle_tick = idle_tick
    async with redrawer.drawn:
        loop_task = asyncio.create_task(redrawer.run())
        await redrawer.drawn.wait()
    try:
        yield redrawer
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task


async def reply(bot: Bot, text: str, user: str = "U0ADMIN") -> str:
    response = await bot.command(text, user)
    assert response.status == 200
    body = await response.text()
    return json.loads(body)["text"] if body.startswith("{") else body


async def test_a_rename_redraws_open_questions_and_an_old_button_counts_for_the_new_name(bot: Bot):
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    old = buttons(message)[0]
    before = len(bot.fake.calls_to("chat.update"))

    text = await reply(bot, f"labels rename {old} renamed")
    assert text.startswith("Done. Labels now: ") and "`renamed`" in text
    await bot.settled()
    updates = bot.fake.calls_to("chat.update")[before:]
    assert updates and "renamed" in json.dumps(updates[-1].params)
    redrawn = bot.fake.message(CHANNEL, message["ts"])
    assert "renamed" in buttons(redrawn) and old not in buttons(redrawn)

    # A click on the button drawn before the rename counts for the new name.
    assert (await bot.action(bot.button_payload(message, "U0ANA", old))).status == 200
    await bot.settled()
    assert bot.store.resolution("a")["label"] == "renamed"
    assert [a["label"] for a in bot.store.iter_answers() if a["item_id"] == "a"] == ["renamed"]


async def test_a_retired_labels_old_button_is_refused_with_a_note_and_nothing_is_stored(bot: Bot):
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    retired = buttons(message)[0]
    assert (await reply(bot, f"labels retire {retired}")).startswith("Done. Labels now: ")
    await bot.settled()
    assert retired not in buttons(bot.fake.message(CHANNEL, message["ts"]))

    assert (await bot.action(bot.button_payload(message, "U0ANA", retired))).status == 200
    note = await bot.fake.next_call("chat.postEphemeral")
    assert note.params["text"] == f"`{retired}` is not in the label set any more; pick another."
    assert bot.store.count_answers() == 1  # the seed's only


async def test_labels_shows_the_set_and_bad_changes_say_what_to_fix(bot: Bot):
    shown = await reply(bot, "labels")
    assert shown.startswith("*Labels* (v0:") and "`billing`" in shown and "Usage:" in shown
    assert (await reply(bot, "labels rename nope x")).startswith(
        'Cannot rename: "nope" is not in the label set (billing, bug,'
    )
    assert (await reply(bot, "labels rename bug billing")) == (
        'Cannot rename: "billing" is in the label set already; merge "bug" into it instead'
    )
    assert (await reply(bot, "labels frobnicate x")).startswith(
        "I don't know `/hitl labels frobnicate`. Usage: `/hitl labels`"
    )
    assert (await reply(bot, "labels add", "U0RAJ")).startswith(
        "Only admins can use `/hitl labels`."
    )
    assert bot.store.stored_labels() is None  # nothing changed yet: HITL_LABELS in force


def test_a_merge_reaches_training_keeps_history_and_exports_name_their_label_set(
    tmp_path: Path,
):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    before = json.loads(run(db, "export").stdout.splitlines()[0])["label_set"]
    merged = run(db, "labels", "merge", "bug", "billing", "--reason", "one queue", "--by", "ana")
    assert merged.stdout == "Label set now: billing\n", merged.output
    # a set of one label: further retiring is refused, in one line
    assert run(db, "labels", "retire", "billing").stderr == (
        "Error: a label set needs two labels; add one before retiring\n"
    )
    assert run(db, "labels", "add", "refund").stdout == "Label set now: billing, refund\n"
    with Store.open(db) as store:
        assert {row[2] for row in store.training_data()} == {"billing"}
        history = store.label_history("ag0")
        assert [(h["old_label"], h["new_label"], h["action"]) for h in history] == [
            ("bug", "billing", "merge")
        ]
        # the imported answer keeps the label it was given
        assert [a["label"] for a in store.iter_answers() if a["item_id"] == "ag0"] == ["bug"]
    after = json.loads(run(db, "export").stdout.splitlines()[0])["label_set"]
    assert before.startswith("v0:") and after.startswith("v2:") and before != after
    show = run(db, "labels", "show").stdout.splitlines()
    assert show[0] == f"Labels (stored (changed with hitl labels), {after}): billing, refund"
    assert show[1].endswith("merge bug → billing by ana (one queue)")
    # the label set in force is the stored one now: set refuses a label outside it
    assert run(db, "labels", "set", "ab0", "bug").stderr == (
        'Error: "bug" is not in the label set (billing, refund); use one of these\n'
    )


@pytest.mark.parametrize("change", [("rename", "bug", "defect"), ("merge", "bug", "billing")])
def test_a_retrain_after_a_rename_or_merge_gates_against_the_champion_with_its_labels(
    tmp_path: Path, change: tuple[str, str, str]
):
    """A rename or a merge changes no decision: the retrain after a rename counts no new label
    (after a merge, the labels it moved to another class), and the gate refits the champion on
    the labels it had (before, every renamed label was dated anew, so the champion was refitted
    without them: 0.333 against 0.916, a whole class missing, and any candidate passed)."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    with Store.open(db) as store:
        dated = {row[0]: row[3] for row in store.training_data()}
    assert run(db, "labels", *change).exit_code == 0
    if change[0] == "merge":  # a set of one label does not train: add one, with 2 examples
        assert run(db, "labels", "add", "refund").exit_code == 0
        assert run(db, "labels", "set", "ab0", "ab1", "refund").exit_code == 0
    with Store.open(db) as store:
        kept = {row[0]: row[3] for row in store.training_data()}
    assert {k: v for k, v in kept.items() if k not in ("ab0", "ab1")} == {
        k: v for k, v in dated.items() if k not in ("ab0", "ab1")
    }
    lines = run(db, "retrain").stdout.splitlines()
    # a merge moves bug's 6 labels to billing's class (ab0 and ab1, set to refund, are new too)
    new = "0 new" if change[0] == "rename" else "8 new"  # since v1, the champion, was trained
    assert lines[1] == f"Labels: 12 ({new} since v1 was trained)"
    why = next(line for line in lines if line.startswith("Why: "))
    if change[0] == "rename":  # the same labels under another name: the same folds, same scores
        scores = why.split("macro-F1 ")[1].split(" on the same")[0]
        before, after = scores.split("→")
        assert before == after, why


async def test_a_retired_labels_items_leave_training_and_wait_in_review_for_a_label_in_force(
    bot: Bot,
):
    assert [(r[0], r[2]) for r in training_rows(bot.store, bot.rt.settings)] == [("s1", "billing")]
    assert (await reply(bot, "labels retire billing")).startswith("Done. Labels now: ")
    assert training_rows(bot.store, bot.rt.settings) == []  # no longer trains as billing
    assert bot.store.next_review() == {
        "item_id": "s1",
        "reasons": [("retired", "billing was retired")],
    }
    assert (await bot.command("review", "U0ADMIN")).status == 200
    view = (await bot.fake.next_call("views.open")).reply["view"]
    assert "its label was retired (billing was retired)" in json.dumps(view)
    assert "label:billing" not in json.dumps(view)  # only labels in force to pick
    assert (await bot.action(decision(view, "label:account"))).status == 200
    await bot.settled()
    assert [(r[0], r[2]) for r in training_rows(bot.store, bot.rt.settings)] == [("s1", "account")]
    assert bot.store.next_review() is None


async def test_a_retired_label_added_back_trains_again_and_its_items_leave_review(bot: Bot):
    assert (await reply(bot, "labels retire billing")).startswith("Done. Labels now: ")
    assert bot.store.next_review()["reasons"] == [("retired", "billing was retired")]
    assert (await reply(bot, "labels add billing")).startswith("Done. Labels now: ")
    assert [(r[0], r[2]) for r in training_rows(bot.store, bot.rt.settings)] == [("s1", "billing")]
    assert bot.store.next_review() is None  # nothing left to decide: its label is in force
    [review] = bot.store.reviews_of("s1")
    assert (review["decision"], review["decided_by"]) == ("billing", "U0ADMIN")


async def test_a_question_posted_after_a_rename_shows_the_models_guess_by_its_new_name(bot: Bot):
    from bot.runtime import Champion
    from tests.bot.harness import margin_scored

    bot.rt.champion = Champion(version=1, classifier=None)  # scored by v1, before the rename
    ranked = [["billing", 0.6], ["bug", 0.3], ["praise", 0.1]]
    bot.store.set_predictions(
        margin_scored([("a", 1, "billing", 0.6, ranked)]), threshold=0.8, strategy="margin"
    )
    assert (await reply(bot, "labels rename billing money")).startswith("Done. Labels now: ")
    assert (await reply(bot, "labels retire praise")).startswith("Done. Labels now: ")
    assert await bot.dispatcher.fill() == 1
    [post] = bot.fake.calls_to("chat.postMessage")
    shown = json.dumps(post.params["blocks"])
    assert "Model's guess: *`money`* (60%)" in shown and "billing" not in shown
    assert "praise" not in shown  # a retired label is no guess any more
    assert buttons(bot.posted()[0])[:2] == ["money", "bug"]


async def test_a_rename_made_in_the_cli_while_the_server_runs_redraws_the_open_questions(
    bot: Bot,
):
    """`hitl labels rename` from another process's connection: no click tells the server, and
    the redrawer's background loop (as `hitl serve` runs it) sees the commit on its idle tick."""
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    old = buttons(message)[0]
    async with redrawer_running(bot, 0.01):
        renamed = CliRunner().invoke(
            cli,
            ["--db", str(bot.rt.settings.db), "labels", "rename", old, "renamed"],
            env={"HITL_LABELS": ",".join(LABELS)},
        )
        assert renamed.exit_code == 0, renamed.output
        await bot.settled()  # fails (times out) unless a pass draws the change
        redrawn = bot.fake.message(CHANNEL, message["ts"])
        assert "renamed" in buttons(redrawn) and old not in buttons(redrawn)


async def test_a_question_posted_while_the_cli_renamed_a_label_is_redrawn_under_the_new_name(
    bot: Bot,
):
    """A round drew its buttons, then `hitl labels rename` committed (and redrew the questions
    open then) before the round's post was recorded: that question kept the old name's button
    for good (an outside drift test saw it 30 s on). Its record notes the change, and it is
    redrawn."""
    # as `hitl serve` runs it, but no look of its own in this test: only a wake draws
    async with redrawer_running(bot, 3600):
        bot.fake.fail("chat.postMessage", mode="timeout")  # Slack holds the post
        round_ = asyncio.create_task(bot.dispatcher.fill())
        held = await bot.fake.next_call("chat.postMessage")
        old = buttons({"blocks": held.params["blocks"]})[0]
        renamed = CliRunner().invoke(
            cli,
            ["--db", str(bot.rt.settings.db), "labels", "rename", old, "renamed"],
            env={"HITL_LABELS": ",".join(LABELS)},
        )
        assert renamed.exit_code == 0, renamed.output
        bot.fake.release_timeouts()
        assert await round_ == 1
        await bot.settled()  # fails (times out) unless the post woke a pass that drew it
        [message] = bot.posted()
        redrawn = bot.fake.message(CHANNEL, message["ts"])
        assert "renamed" in buttons(redrawn) and old not in buttons(redrawn)


async def test_a_question_found_in_the_history_after_a_rename_is_redrawn_under_the_new_name(
    bot: Bot,
):
    """Slack posted the question but its answer was lost; `hitl labels rename` ran; the next
    round found the message in the channel's history and recorded it under that round's label
    set, so it kept the old name's button for good (an outside re-test). A message found in
    the history is redrawn under the label set in force."""
    async with redrawer_running(bot, 3600):
        bot.fake.fail("chat.postMessage", mode="reset", after=True)  # posted; the answer lost
        await bot.dispatcher.fill()
        posted = bot.fake.calls_to("chat.postMessage")[0]
        old = buttons({"blocks": posted.params["blocks"]})[0]
        renamed = CliRunner().invoke(
            cli,
            ["--db", str(bot.rt.settings.db), "labels", "rename", old, "renamed"],
            env={"HITL_LABELS": ",".join(LABELS)},
        )
        assert renamed.exit_code == 0, renamed.output
        state = bot.dispatcher.channel_state(CHANNEL)
        state.next_attempt = state.history_retry_at = 0.0  # its backoff is over
        await bot.dispatcher.fill()  # finds it: "posted after all"
        await bot.settled()
        post = bot.store.post_for_item("a")
        assert post is not None and post["closed_at"] is None
        shown = bot.fake.message(CHANNEL, post["ts"])
        assert "renamed" in buttons(shown) and old not in buttons(shown)


def test_the_retrain_after_a_retire_or_an_add_trains_on_the_label_set_in_force(tmp_path: Path):
    """Retiring a label changes what training reads, though no label is new: the next
    retrain trains without its items (not "nothing new"), and with them once it is back."""
    db, path = tmp_path / "hitl.db", tmp_path / "three.jsonl"
    words = {"billing": "refund invoice card charge", "bug": "crash error freeze blank",
             "account": "password login email profile"}  # fmt: skip
    rows = [{"id": f"{label}{n}", "text": f"{word} please", "label": label}
            for label, text in words.items() for n, word in enumerate(text.split())]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(db, "import", str(path)).exit_code == 0
    first = run(db, "retrain").stdout.splitlines()
    assert first[0].startswith("Retrain v1: promoted ✅") and first[1] == "Labels: 12 (12 new)"
    assert run(db, "labels", "retire", "account").exit_code == 0
    retired = run(db, "retrain").stdout
    assert retired.startswith("Retrain v2: "), retired
    assert retired.splitlines()[1].startswith("Labels: 8 ")  # account's 4 left out
    assert run(db, "labels", "add", "account").exit_code == 0
    back = run(db, "retrain").stdout
    assert back.startswith("Retrain v3: ") and back.splitlines()[1].startswith("Labels: 12 ")
    assert run(db, "retrain").stdout.startswith("Retrain (cli): nothing new")


async def test_a_merge_in_slack_redraws_and_an_old_button_counts_for_the_label_it_went_into(
    bot: Bot,
):
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    old, into = buttons(message)[:2]
    text = await reply(bot, f"labels merge {old} {into}")
    assert text.startswith("Done. Labels now: ") and f"`{old}`" not in text
    await bot.settled()
    assert old not in buttons(bot.fake.message(CHANNEL, message["ts"]))
    assert (await bot.action(bot.button_payload(message, "U0ANA", old))).status == 200
    assert bot.store.resolution("a")["label"] == into
    assert bot.store.label_set_changes()[-1]["action"] == "merge"


def test_labels_set_to_a_retired_label_says_it_was_retired_and_how_to_bring_it_back(
    tmp_path: Path,
):
    """Old: only '"c" is not in the label set (a, b)', as for a typo."""
    db, path = tmp_path / "hitl.db", tmp_path / "three.csv"
    path.write_text("id,text,label\nA,one,a\nB,two,b\nC,three,c\n")
    assert run(db, "import", str(path)).exit_code == 0
    assert run(db, "labels", "retire", "c").exit_code == 0
    assert run(db, "labels", "set", "A", "c").stderr == (
        'Error: "c" is not in the label set (a, b) (it was retired: `hitl labels add c` brings'
        " it back); use one of these\n"
    )
    assert run(db, "labels", "set", "A", "d").stderr == (
        'Error: "d" is not in the label set (a, b); use one of these\n'
    )


def test_one_label_has_one_spelling_and_a_case_twin_is_refused(tmp_path: Path):
    # "café" as é and as e + a combining accent looked the same and were two classes, and
    # "Billing" beside "billing" split one class in two.
    db = tmp_path / "hitl.db"
    rows = [
        {"id": "1", "text": "a flat white", "label": "caf\u00e9"},
        {"id": "2", "text": "an espresso", "label": "cafe\u0301"},
        {"id": "3", "text": "green tea", "label": "tea"},
    ]
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert run(db, "import", str(items)).exit_code == 0
    with Store.open(db) as store:
        assert store.label_set() == ["caf\u00e9", "tea"]
    refused = run(db, "labels", "add", "Tea")
    assert refused.exit_code == 1
    assert refused.stderr == (
        'Error: "Tea" differs from the label "tea" only in case; use "tea", or rename it\n'
    )
    assert run(db, "labels", "add", "cafe\u0301").stderr == (
        'Error: "caf\u00e9" is in the label set already\n'
    )
    assert run(db, "labels", "rename", "tea", "Tea").stdout == "Label set now: caf\u00e9, Tea\n"


def test_an_import_refuses_a_case_twin_of_a_label_stored_or_met_earlier_in_the_file(
    tmp_path: Path,
):
    # With no label set in force, a file labelled "billing" then one labelled "Billing" made
    # the set "Billing, billing": two classes of one. The first spelling wins, in one file too.
    db = tmp_path / "hitl.db"
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text(json.dumps({"id": "1", "text": "refund me", "label": "billing"}) + "\n")
    rows = [
        {"id": "2", "text": "charged twice", "label": "Billing"},
        {"id": "3", "text": "app crashes", "label": "Bug"},
        {"id": "4", "text": "blank screen", "label": "BUG"},
        {"id": "5", "text": "it froze", "label": "Bug"},
    ]
    second.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert run(db, "import", str(first)).exit_code == 0
    result = run(db, "import", str(second))
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        'second.jsonl line 1: label "Billing" differs from the label "billing" only in case: '
        'write "billing" in the file, row skipped',
        'second.jsonl line 3: label "BUG" differs from the label "Bug" only in case: write '
        '"Bug" in the file, row skipped',
    ]
    shown = run(db, "labels", "show").stdout
    assert shown.startswith("Labels (the imported labels, ") and shown.endswith("): Bug, billing\n")
    # `hitl labels set` with the labels open names the spelling to use too
    refused = run(db, "labels", "set", "1", "BILLING")
    assert refused.exit_code == 1
    assert refused.stderr == (
        'Error: "BILLING" differs from the label "billing" only in case; use "billing"\n'
    )


def test_a_case_twin_of_a_label_in_force_is_told_the_label_to_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # "add it with `hitl labels add Billing`" was advice that then failed, and `hitl labels
    # set` said only that "Billing" is not in the set.
    monkeypatch.setenv("HITL_LABELS", "billing,bug")
    db = tmp_path / "hitl.db"
    items = tmp_path / "items.jsonl"
    rows = [
        {"id": "1", "text": "refund me", "label": "billing"},
        {"id": "2", "text": "charged twice", "label": "Billing"},
    ]
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert run(db, "import", str(items)).stderr == (
        'items.jsonl line 2: label "Billing" differs from the label "billing" only in case: '
        'write "billing" in the file, row skipped\n'
    )
    refused = run(db, "labels", "set", "1", "Billing")
    assert refused.exit_code == 1
    assert refused.stderr == (
        'Error: "Billing" differs from the label "billing" only in case; use "billing"\n'
    )
    assert run(db, "labels", "set", "1", "Refund").stderr == (
        'Error: "Refund" is not in the label set (billing, bug); use one of these\n'
    )


def test_an_export_leaves_out_items_of_a_retired_label_so_reading_it_back_keeps_it_retired(
    tmp_path: Path,
):
    db, copy = tmp_path / "hitl.db", tmp_path / "copy.db"
    rows = [{"id": f"b{n}", "text": f"refund {n}", "label": "billing"} for n in range(3)]
    rows += [{"id": f"g{n}", "text": f"crash {n}", "label": "bug"} for n in range(3)]
    rows += [{"id": f"q{n}", "text": f"how do I {n}", "label": "question"} for n in range(3)]
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert run(db, "import", str(items)).exit_code == 0
    assert run(db, "labels", "retire", "bug").exit_code == 0
    exported = tmp_path / "decided.jsonl"
    assert run(db, "export", "-o", str(exported)).exit_code == 0
    labels = [json.loads(line)["label"] for line in exported.read_text().splitlines()]
    assert sorted(labels) == ["billing"] * 3 + ["question"] * 3  # bug's items wait in review
    again = run(db, "import", str(exported))  # into the same database: nothing new, none refused
    assert "6 duplicates, 0 rejected" in again.stdout, again.output
    assert run(copy, "import", str(exported)).exit_code == 0
    with Store.open(copy) as store:
        assert store.label_set() == ["billing", "question"]  # bug is not brought back


def test_a_label_with_a_line_break_or_another_control_character_is_refused_everywhere(
    tmp_path: Path,
):
    # "a\nb" was imported as one label and `hitl labels add` took "new\nline": a button
    # text split over lines, and a label with a bell in it looked like "c" but was not.
    db = tmp_path / "hitl.db"
    rows = [
        {"id": "1", "text": "a refund please", "label": "billing"},
        {"id": "2", "text": "it crashed", "label": "bug\nreport"},
        {"id": "3", "text": "how do I log in", "label": "question\u0007"},
        {"id": "4", "text": "the app froze", "label": "bug"},
    ]
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = run(db, "import", str(items))
    assert "imported 2 (2 with labels), 0 duplicates, 2 rejected" in result.stdout, result.output
    control = "the label has a control character (a line break, a tab, ...)"
    assert f"line 2: {control}" in result.output and f"line 3: {control}" in result.output
    for args in (["add", "new\nline"], ["rename", "bug", "bug\treport"], ["set", "4", "x\x1b"]):
        refused = run(db, "labels", *args)
        assert refused.exit_code == 1, args
        assert refused.stderr.startswith("Error: the label ") and control[10:] in refused.stderr
        assert refused.stderr.count("\n") == 1, refused.stderr  # one line, with the \n escaped
    with Store.open(db) as store:
        assert sorted(store.label_set()) == ["billing", "bug"]
        assert store.stored_labels() is None  # nothing was changed


@pytest.mark.parametrize(
    ("hidden", "name"),
    [
        ("\u200b", "U+200B ZERO WIDTH SPACE"),
        ("\u00ad", "U+00AD SOFT HYPHEN"),
        ("\ufeff", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
    ],
)
def test_a_label_with_an_invisible_character_is_refused_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hidden: str, name: str
):
    # `hitl labels add` took "billing" + a zero-width space (a soft hyphen, a byte-order mark):
    # a second button that looks exactly like "billing", and a class split in two.
    db = tmp_path / "hitl.db"
    rows = [
        {"id": "1", "text": "a refund please", "label": "billing"},
        {"id": "2", "text": "charged twice", "label": f"billing{hidden}"},
        {"id": "3", "text": "it crashed", "label": "bug"},
    ]
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = run(db, "import", str(items))
    assert "imported 2 (2 with labels), 0 duplicates, 1 rejected" in result.stdout, result.output
    said = f"the label has an invisible character ({name}); labels are text people can see"
    assert f"items.jsonl line 2: {said}" in result.stderr, result.stderr
    for args in (["add", f"billing{hidden}"], ["rename", "bug", f"{hidden}bug"]):
        refused = run(db, "labels", *args)
        assert refused.exit_code == 1, args
        assert refused.stderr.startswith("Error: the label ") and said[10:] in refused.stderr
    with Store.open(db) as store:
        assert sorted(store.label_set()) == ["billing", "bug"]
        assert store.stored_labels() is None  # nothing was changed
    monkeypatch.setenv("HITL_LABELS", f"billing,bug{hidden}")
    refused = run(db, "labels", "show")
    assert refused.exit_code == 1 and f"has a label that has an invisible character ({name})" in (
        refused.stderr
    ), refused.stderr


@pytest.mark.parametrize(
    ("label", "said"),
    [
        ("bug\u034f", 'differs from the label "bug" only in characters that show as nothing'),
        ("bug\ufe0f", 'differs from the label "bug" only in characters that show as nothing'),
        ("bug\u200d", 'differs from the label "bug" only in characters that show as nothing'),
        ("\u3164", "has no visible character"),
        ("\u2800", "has no visible character"),
        ("\ufb01x", 'differs from the label "fix" only in character form'),  # the ligature "ﬁ"
    ],
)
def test_a_label_that_looks_like_another_or_like_nothing_is_refused(
    tmp_path: Path, label: str, said: str
):
    # A combining grapheme joiner, a variation selector or a joiner after "bug" made a second
    # "bug" button; a Hangul filler or a blank braille cell made a button with no text.
    db = tmp_path / "hitl.db"
    items = tmp_path / "items.jsonl"
    rows = [
        {"id": "1", "text": "crash", "label": "bug"},
        {"id": "2", "text": "fix", "label": "fix"},
    ]
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert run(db, "import", str(items)).exit_code == 0
    refused = run(db, "labels", "add", label)
    assert refused.exit_code == 1 and said in refused.stderr, refused.stderr
    with Store.open(db) as store:
        assert store.stored_labels() is None  # nothing was changed


def test_joiners_a_script_needs_are_kept_in_a_label(tmp_path: Path):
    db = tmp_path / "hitl.db"
    items = tmp_path / "items.jsonl"
    rows = [
        {"id": "1", "text": "refund", "label": "billing"},
        {"id": "2", "text": "crash", "label": "bug"},
    ]
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert run(db, "import", str(items)).exit_code == 0
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # "I want": a non-joiner
    coder = "\U0001f469\u200d\U0001f4bb"  # an emoji sequence with a zero-width joiner
    for label in (persian, coder):
        assert run(db, "labels", "add", label).exit_code == 0, label
    with Store.open(db) as store:
        assert store.stored_labels() == ["billing", "bug", persian, coder]


def test_a_fullwidth_twin_of_a_label_is_told_the_label_to_use(tmp_path: Path):
    # "ｂｕｇ" (fullwidth) beside "bug" was taken as a new label: two buttons that read alike.
    db = tmp_path / "hitl.db"
    rows = [
        {"id": "1", "text": "a refund please", "label": "billing"},
        {"id": "2", "text": "it crashed", "label": "bug"},
        {"id": "3", "text": "it froze", "label": "\uff42\uff55\uff47"},
    ]
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert run(db, "import", str(items)).stderr == (
        'items.jsonl line 3: label "\uff42\uff55\uff47" differs from the label "bug" only in '
        'character form (fullwidth, ligatures, ...): write "bug" in the file, row skipped\n'
    )
    refused = run(db, "labels", "add", "\uff22\uff35\uff27")  # fullwidth and upper case
    assert refused.exit_code == 1
    assert refused.stderr == (
        'Error: "\uff22\uff35\uff27" differs from the label "bug" only in character form '
        '(fullwidth, ligatures, ...); use "bug", or rename it\n'
    )
    assert run(db, "labels", "add", "Bug").stderr == (
        'Error: "Bug" differs from the label "bug" only in case; use "bug", or rename it\n'
    )


async def test_a_slash_command_label_with_a_control_character_is_refused(bot: Bot):
    assert (await reply(bot, "labels add bell\u0007")) == (
        "Cannot add: the label `bell\u0007` has a control character (a line break, a tab, "
        "...); labels are one line of text."
    )
    assert (await reply(bot, "labels add " + "x" * 76)).startswith("Cannot add: the label `xxxx")
    assert bot.store.stored_labels() is None


def test_labels_an_older_version_stored_as_they_came_can_still_be_changed(tmp_path: Path):
    # Before labels were stored in NFC and checked, "café" could be stored twice (NFC and
    # NFD) and a label could hold a line break. `hitl labels rename <NFD café> coffee` then
    # renamed the NFC one, retiring the NFD one was refused as "not in the label set", and
    # renaming "bug\nreport" was refused for its line break.
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    with Store.open(tmp_path / "hitl.db") as store:
        with store.db.conn:  # the label set as an older version left it
            for n, name in enumerate(["tea", nfc, nfd, "bug\nreport"]):
                store.db.execute("INSERT INTO label_set (name, position) VALUES (?, ?)", [name, n])
        change = functools.partial(store.change_label_set, current=[], user_id="cli:admin")
        assert change("rename", nfd, "coffee") == ["tea", nfc, "coffee", "bug\nreport"]
        assert change("rename", "bug\nreport", "bug_report") == ["tea", nfc, "coffee", "bug_report"]
        assert change("merge", nfc, "coffee") == ["tea", "coffee", "bug_report"]
        with pytest.raises(StoreError, match=f'"{nfc}" was merged into "coffee"'):
            change("add", nfd)  # made in NFC: café, a name merged away
        assert change("add", "the\u0301") == ["tea", "coffee", "bug_report", "th\u00e9"]  # NFC
        with pytest.raises(StoreError, match="has a control character"):
            change("rename", "tea", "green\ntea")  # a name made now is checked
