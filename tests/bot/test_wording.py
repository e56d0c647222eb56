"""What the CLI and Slack tell people after an outside tester's reading (its findings F5, F6,
F11, F12, F15, F16): a retire says what happened to the items decided with the label, a
rollback to a version whose files are gone says so, a hint names the command of the surface
it is read on, counts agree with their nouns, and a wrong `/hitl labels` or an unknown item
says what was wrong."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.learning import reports
from bot.learning.retrain import Outcome
from tests.bot.harness import Bot
from tests.bot.test_cli_loop import labeled_file, run
from tests.bot.test_label_set import bot, reply  # noqa: F401 - bot: the fixture

MISSING_V1 = (
    "Error: cannot roll back: the database records model v1, but its files (v1.json,"
    " v1.skops) are missing from the models folder hitl.db.models: restore them from a backup"
    " of that folder, or roll back to a version that has its files\n"
)


def _labels_file(tmp_path: Path) -> Path:
    path = tmp_path / "l.csv"
    path.write_text("id,text,label\n1,a a,x\n2,b b,x\n3,c c,y\n4,d d,z\n5,e e,w\n")
    return path


def test_a_retire_says_its_items_left_training_and_export_where_they_wait_and_the_way_back(
    tmp_path: Path,
):
    """F5: the help said "its decided labels stay" and the output only "Label set now: …",
    yet the items decided with the label leave training and `hitl export`."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(_labels_file(tmp_path))).exit_code == 0
    retired = run(db, "labels", "retire", "x")
    assert retired.stdout == (
        "Label set now: w, y, z\n"
        "2 items labeled x left training and export; they wait in /hitl review (Slack) until"
        " given a label in force (or `hitl labels set ID LABEL`); `hitl labels add x` brings"
        " them back.\n"
    ), retired.output
    assert len(run(db, "export").stdout.splitlines()) == 3
    one = run(db, "labels", "retire", "y").stdout.splitlines()[1]
    assert one.startswith("1 item labeled y left training and export; it waits in ")
    assert one.endswith("`hitl labels add y` brings it back.")

    help_text = " ".join(run(db, "labels", "retire", "--help").stdout.split())
    assert "decided labels stay" not in help_text
    assert (
        "the items decided with it leave training and `hitl export`: they wait in /hitl review"
        " (Slack) until they get a label in force (or `hitl labels set ID LABEL`). `hitl labels"
        " add LABEL` brings the label and its items back." in help_text
    )


async def test_slacks_retire_says_the_same(bot: Bot):  # noqa: F811 - the fixture imported above
    """F5 in Slack: "Done. Labels now: …" said nothing of the items decided with the label."""
    assert await reply(bot, "labels retire billing") == (
        "Done. Labels now: `bug`, `account`, `how_to`, `feature_request`, `praise`. 1 item"
        " labeled `billing` left"
        " training and export; it waits in `/hitl review` until given a label in force"
        " (`/hitl labels add billing` brings it back). Open questions are redrawn."
    )
    assert bot.store.stored_labels() == ["bug", "account", "how_to", "feature_request", "praise"]


async def test_a_wrong_labels_command_says_what_was_wrong_and_the_right_form(
    bot: Bot,  # noqa: F811 - the fixture imported above
):
    """F15: `/hitl labels` with a wrong word, or too few or too many labels, answered only
    with the usage line."""
    assert await reply(bot, "labels delete bug") == (
        "I don't know `/hitl labels delete` (to take a label out of the set:"
        " `/hitl labels retire LABEL`)."
    )
    assert (await reply(bot, "labels frobnicate x")).startswith(
        "I don't know `/hitl labels frobnicate`. Usage: `/hitl labels` shows the label set;"
    )
    assert await reply(bot, "labels rename bug") == (
        "`rename` needs OLD and NEW: `/hitl labels rename bug NEW`."
    )
    assert await reply(bot, "labels add") == "`add` needs LABEL: `/hitl labels add LABEL`."
    assert await reply(bot, "labels retire bug question") == (
        "`retire` takes one label (`/hitl labels retire LABEL`), not 2; a label is one word."
    )
    assert bot.store.stored_labels() is None  # nothing changed: HITL_LABELS in force


def test_history_of_an_unknown_item_says_there_is_no_such_item(tmp_path: Path):
    """F16: "No label changes for NOPE." read as if NOPE were an item."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    missing = run(db, "labels", "history", "NOPE")
    assert (missing.exit_code, missing.stderr) == (
        1,
        'Error: no item with id "NOPE"; `hitl export` lists the labeled ones\n',
    )
    assert run(db, "labels", "history", "ab2").stdout == "No label changes for ab2.\n"


def test_a_rollback_to_a_recorded_version_whose_files_are_gone_says_so(tmp_path: Path):
    """F6: `hitl models` listed v1 "(files missing in …)", and the rollback said it "does not
    exist"; a version never recorded still does not exist."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v2: promoted")
    for path in (tmp_path / "hitl.db.models").glob("v1.*"):
        path.unlink()
    lost = run(db, "rollback", "1")
    assert (lost.exit_code, lost.stderr) == (1, MISSING_V1)
    assert run(db, "rollback", "9").stderr == (
        "Error: cannot roll back: model v9 does not exist (see `hitl models`)\n"
    )


def test_no_model_names_the_command_of_the_surface_it_is_read_on(tmp_path: Path):
    """F11: `hitl accuracy` sent the terminal to `/hitl retrain`; Slack keeps its command."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    none = run(db, "accuracy").stdout
    assert none == (
        "No model yet. `hitl retrain` trains the first one now, or the next scheduled retrain"
        " does; it needs 2 labels with 2 different texts each.\n"
    )
    assert reports.accuracy_text(None).startswith(
        "*No model yet.* `/hitl retrain` trains the first one now"
    )


def test_nothing_new_says_how_to_train_anyway_and_counts_agree_with_their_nouns(
    tmp_path: Path,
):
    """F12: "nothing new" did not say that --force trains anyway (it does), and the queue
    line said "re-scored 1 items"."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    first = run(db, "retrain").stdout.splitlines()
    assert first[-1].startswith("Queue: re-scored 1 item; waiting for people ")
    again = run(db, "retrain").stdout
    assert again == (
        "Retrain (cli): nothing new: no labels since the last run (12 labels); training"
        " skipped. `hitl retrain --force` trains and promotes one anyway.\n"
    )
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v2: promoted")

    slack = reports.retrain_text(Outcome("nothing_new", "nothing new: …", "<@U0ADMIN>"))
    assert slack.endswith("skipped. `/hitl retrain --force` trains and promotes one anyway.")
    one_short = Outcome("nothing_new", "nothing new: …", "<@U0ADMIN>", n_missing=1)
    assert reports.retrain_text(one_short).endswith("skipped. 1 more label needed to train.")


def test_plain_names_the_clis_commands_only_for_those_the_terminal_has():
    text = "`/hitl retrain --force`, `/hitl labels add x`, `/hitl review ID`, `/hitl rollback 3`"
    assert reports.plain(text) == (
        "`hitl retrain --force`, `hitl labels add x`, `/hitl review ID`, `hitl rollback 3`"
    )
    assert reports.command("retrain --force") == "`/hitl retrain --force`"


def test_the_demo_counts_in_the_right_number_and_says_why_there_is_no_model(tmp_path: Path):
    """F12: "Simulating 1 answers… After 1 simulated answers (1 labels): no model yet"."""
    result = CliRunner().invoke(
        cli,
        ["--db", str(tmp_path / "demo.db"), "demo", "--simulate", "1", "--answers", "1",
         "--port", "0", "--no-browser"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Simulating 1 answer…\n" in result.stdout
    assert (
        "After 1 simulated answer (1 label): no model yet (the first retrain comes after 20 new"
        " labels: --retrain-every 20)\n" in result.stdout
    ), result.stdout
    assert "retrained every 20 labels" in result.stdout
