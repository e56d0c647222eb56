"""Label names, outside review t-labels (F3, F4, F5, F6, F9, F10), through the real CLI and the
real server: a label that differs from one in the set only in white space is refused as a case
twin is (and two such labels an older version stored stay, the server starts and says how to
make them one); a case twin of a name renamed or merged away is refused as the name is; an
import's advice for a renamed label is a command that works; a label named "Skip" or "Other"
never reads like the control beside it; a label or an id starting with "-" is told to go after
`--` in one line; a JSONL number label is kept as written, as in CSV."""

from __future__ import annotations

import csv
import json
import logging
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.slack.blocks import Question, decode_value, question_blocks
from bot.store import Store
from tests import signing
from tests.bot.harness import Item, make_settings, seed, start_bot
from tests.bot.test_blocks import as_dicts
from tests.bot.test_cli_loop import run

ROWS = [
    ("1", "my card payment went through twice yesterday", "card payment"),
    ("2", "the card payment shows a strange amount now", "card  payment"),  # two spaces
    ("3", "card payment failed at the shop this morning", "card \u00a0 payment"),
    ("4", "please reset my password, I am locked out", "account"),
]
SPACES = "only in white space (two spaces for one, a no-break space, ...)"


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def stored_labels(db: Path) -> dict[str, str]:
    with Store.open(db) as store:
        return dict(store.db.execute("SELECT item_id, label FROM labels").fetchall())


# -- F3: white space ----------------------------------------------------------------------------


def test_a_label_that_differs_only_in_white_space_is_taken_as_its_twin_on_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("HITL_LABELS", raising=False)
    db = tmp_path / "hitl.db"
    imported = run(db, "import", str(write_csv(tmp_path / "in.csv", ROWS)))
    assert imported.stderr.splitlines()[:2] == [
        'in.csv: 1 row labeled "card  payment" (line 3) taken as the label "card payment": they'
        f" differ {SPACES}",
        'in.csv: 1 row labeled "card \\xa0 payment" (line 4) taken as the label "card payment":'
        f" they differ {SPACES}",
    ]
    assert sorted(set(stored_labels(db).values())) == ["account", "card payment"]  # one class

    added = run(db, "labels", "add", "card   payment")
    assert added.exit_code == 1
    assert added.stderr == (
        f'Error: "card   payment" differs from the label "card payment" {SPACES}; use'
        ' "card payment", or rename it\n'
    )
    added = run(db, "labels", "add", "Card  Payment")
    assert added.exit_code == 1
    assert 'differs from the label "card payment" only in case and white space' in added.stderr

    monkeypatch.setenv("HITL_LABELS", "card payment,card  payment,account")
    shown = run(db, "labels", "show")
    assert shown.exit_code != 0
    assert (
        "has 'card payment' and 'card  payment', which differ only in white space" in shown.stderr
    )


async def test_white_space_twins_stored_before_are_kept_and_the_server_starts_naming_them(
    fake_slack: FakeSlack,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    """A database an older version filled with both spellings: nothing is lost, each stays
    usable, the start (and `hitl labels show`) names them with the merge that makes them one."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    db = tmp_path / "hitl.db"
    seed(
        db,
        [
            Item("1", "my card payment went through twice", "card payment"),
            Item("2", "a card payment I do not recognise", "card  payment"),
            Item("3", "the card payment failed at the shop", "card payment"),
            Item("4", "please reset my password now", "account"),
        ],
    )
    shown = run(db, "labels", "show")
    assert shown.exit_code == 0
    assert shown.stdout.splitlines()[0].endswith(": account, card  payment, card payment")
    assert "labels in force that differ only in case, character form or white space" in shown.stdout
    caplog.set_level(logging.INFO)
    settings = make_settings(fake_slack, tmp_path, labels=())
    async for _bot in start_bot(fake_slack, settings):
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(
            "'card  payment' and 'card payment' (buttons that look alike, one class split in two);"
            " make them one with `hitl labels merge 'card  payment' 'card payment'`" in x
            for x in said
        ), said
    assert stored_labels(db) == {
        "1": "card payment",
        "2": "card  payment",
        "3": "card payment",
        "4": "account",
    }
    # either spelling stored before is still a label a row may have
    more = write_csv(
        tmp_path / "more.csv",
        [("5", "another card payment twice", "card  payment"), ("6", "one more", "card payment")],
    )
    assert run(db, "import", str(more)).exit_code == 0
    assert stored_labels(db)["5"] == "card  payment"
    merged = run(db, "labels", "merge", "card  payment", "card payment")
    assert merged.exit_code == 0, merged.output
    assert set(stored_labels(db).values()) == {"card payment", "account"}


# -- F4: twins of names renamed or merged away ---------------------------------------------------

BASE = [
    {"id": f"T{n}", "text": f"ticket number {n} with enough words to be an item", "label": label}
    for n, label in enumerate(["billing", "bug", "billing", "account"])
]


def test_a_case_twin_of_a_name_renamed_or_merged_away_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("HITL_LABELS", raising=False)
    db = tmp_path / "a.db"
    assert run(db, "import", str(write_jsonl(tmp_path / "in.jsonl", BASE))).exit_code == 0
    assert run(db, "labels", "rename", "billing", "invoices").exit_code == 0
    added = run(db, "labels", "add", "Billing")
    assert added.exit_code == 1
    assert added.stderr.startswith(
        'Error: "Billing" differs only in case from "billing", which was renamed to "invoices"'
    )
    assert added.stderr.rstrip().endswith(
        "answers and labels given as billing count for invoices: choose another name (or use"
        ' "invoices")'
    )
    assert run(db, "labels", "add", "billing  ").exit_code == 1  # trimmed: the name itself
    # the old name's class renamed back, in another case, is fine: those answers meant it
    back = run(db, "labels", "rename", "invoices", "Billing")
    assert back.exit_code == 0, back.output

    db = tmp_path / "b.db"
    assert run(db, "import", str(write_jsonl(tmp_path / "in.jsonl", BASE))).exit_code == 0
    assert run(db, "labels", "merge", "billing", "account").exit_code == 0
    added = run(db, "labels", "add", "BILLING")
    assert added.exit_code == 1
    assert '"BILLING" differs only in case from "billing", which was merged into "account"' in (
        added.stderr
    )
    with Store.open(db) as store:
        assert store.stored_labels() == ["account", "bug"]


def test_a_retired_label_comes_back_after_a_case_rename_or_the_twins_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Outside review r-labels R2: the twin check took the label's own history ("Billing"
    renamed to "billing", or the suggested merge of white-space twins) for another label's,
    so `add` refused to bring the retired label back, advising to use the very name."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    db = tmp_path / "a.db"
    rows = [
        {**row, "label": "Billing" if row["label"] == "billing" else row["label"]} for row in BASE
    ]
    assert run(db, "import", str(write_jsonl(tmp_path / "in.jsonl", rows))).exit_code == 0
    assert run(db, "labels", "rename", "Billing", "billing").exit_code == 0
    assert run(db, "labels", "retire", "billing").exit_code == 0
    back = run(db, "labels", "add", "billing")
    assert back.exit_code == 0, back.output
    assert "billing" in back.stdout.splitlines()[-1]
    assert run(db, "labels", "add", "BILLING").exit_code == 1  # a twin of it: still refused

    db = tmp_path / "b.db"  # white-space twins an older version stored, merged as advised
    seed(
        db,
        [
            Item("1", "my card payment went through twice", "card payment"),
            Item("2", "a card payment I do not recognise", "card  payment"),
            Item("4", "please reset my password now", "account"),
            Item("5", "the app crashes when I open it", "bug"),
        ],
    )
    assert run(db, "labels", "merge", "card  payment", "card payment").exit_code == 0
    assert run(db, "labels", "retire", "card payment").exit_code == 0
    back = run(db, "labels", "add", "card payment")
    assert back.exit_code == 0, back.output
    assert run(db, "labels", "add", "card   payment").exit_code == 1


# -- F5: the import's advice for a label renamed or merged away ------------------------------------

OLD_ROW = [
    {"id": "X1", "text": "an old export row that was labelled billing then", "label": "billing"}
]


@pytest.mark.parametrize(
    ("changes", "advice"),
    [
        (
            [("rename", "billing", "invoices")],
            'old.jsonl line 1: label "billing" is now "invoices" (changed with `hitl labels`):'
            ' write "invoices" in the file, or, to have "billing" back, rename the label back'
            " with `hitl labels rename invoices billing`, row skipped",
        ),
        (
            [("rename", "billing", "invoices"), ("rename", "invoices", "money")],
            'old.jsonl line 1: label "billing" is now "money" (changed with `hitl labels`):'
            ' write "money" in the file, or, to have "billing" back, rename the label back'
            " with `hitl labels rename money billing`, row skipped",
        ),
        (
            [("merge", "billing", "account")],
            'old.jsonl line 1: label "billing" is now "account" (changed with `hitl labels`):'
            ' write "account" in the file, row skipped',
        ),
        (  # renamed, then that class merged: renaming account back would take account's items
            [("rename", "billing", "invoices"), ("merge", "invoices", "account")],
            'old.jsonl line 1: label "billing" is now "account" (changed with `hitl labels`):'
            ' write "account" in the file, row skipped',
        ),
    ],
    ids=["rename", "renamed-twice", "merge", "renamed-then-merged"],
)
def test_the_import_advice_for_a_label_renamed_or_merged_away_works(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    changes: list[tuple[str, str, str]],
    advice: str,
):
    monkeypatch.delenv("HITL_LABELS", raising=False)
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(write_jsonl(tmp_path / "in.jsonl", BASE))).exit_code == 0
    for change in changes:
        assert run(db, "labels", *change).exit_code == 0
    old = write_jsonl(tmp_path / "old.jsonl", OLD_ROW)
    refused = run(db, "import", str(old))
    assert refused.stderr.splitlines()[0] == advice
    if "rename the label back with `" in advice:
        command = advice.split("rename the label back with `")[1].split("`")[0]
        done = run(db, *command.split()[1:])
        assert done.exit_code == 0, done.output
        assert run(db, "import", str(old)).exit_code == 0
        assert stored_labels(db)["X1"] == "billing"
    assert "hitl labels add billing" not in refused.stderr


# -- F6: a label that reads like a control ---------------------------------------------------------


def answer_buttons(message: dict) -> list[tuple[str, str]]:
    return [
        (e["text"]["text"], e["action_id"])
        for b in message["blocks"]
        for e in b.get("elements", [])
        if e.get("type") == "button"
    ]


async def test_a_label_named_skip_or_other_never_reads_like_the_control_beside_it(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("N1", "please stop sending me these newsletters every day")])
    labels = ("billing", "Skip", "other…", "bug", "account", "how_to", "praise")
    settings = make_settings(fake_slack, tmp_path, labels=labels, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        await bot.settled()
        [message] = bot.posted()
        shown = answer_buttons(message)
        texts = [text for text, _ in shown]
        assert len({text.casefold() for text in texts}) == len(texts), shown
        assert ("Skip (not me)", "hitl.q.skip") in shown
        [select] = [
            e
            for b in message["blocks"]
            for e in b.get("elements", [])
            if e.get("type") == "static_select"
        ]
        assert select["placeholder"]["text"] == "More labels…"
        assert [o["value"] for o in select["options"]] == list(labels)
        # the control still passes: no label stored, the item still waits for the others
        [(block, skip)] = [
            (b, e)
            for b in message["blocks"]
            for e in b.get("elements", [])
            if e.get("action_id") == "hitl.q.skip"
        ]
        payload = signing.block_actions_payload(
            "U0ANA",
            skip["action_id"],
            skip["value"],
            block_id=block["block_id"],
            message_ts=message["ts"],
            message=message,
        )
        assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert bot.store.db.execute("SELECT count(*) FROM labels").fetchone()[0] == 0
        assert decode_value(skip["value"])[0] == "N1"


async def test_without_such_a_label_the_controls_read_as_before(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("N1", "please stop sending me these newsletters every day")])
    labels = ("billing", "bug", "account", "how_to", "praise", "skipped_payment", "other_bank")
    settings = make_settings(fake_slack, tmp_path, labels=labels, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        await bot.settled()
        [message] = bot.posted()
        assert ("Skip", "hitl.q.skip") in answer_buttons(message)
        [select] = [
            e
            for b in message["blocks"]
            for e in b.get("elements", [])
            if e.get("type") == "static_select"
        ]
        assert select["placeholder"]["text"] == "Other…"


def test_a_label_that_reads_like_guidelines_or_past_100_labels_like_other():
    """The Guidelines button, and the type-ahead "Other…" past 100 labels, read otherwise too."""
    labels = ["Guidelines", "other", *(f"intent {n}" for n in range(120))]
    q = Question("i1", "t", labels, [("Guidelines", 0.5), ("other", 0.3)], has_guidelines=True)
    [actions] = [b for b in as_dicts(question_blocks(q)) if b["type"] == "actions"]
    texts = [e["text"]["text"] for e in actions["elements"] if e["type"] == "button"]
    assert texts == ["Guidelines", "other", "Label guidelines", "Skip"]
    [select] = [e for e in actions["elements"] if e["type"] == "external_select"]
    assert select["placeholder"]["text"] == "More labels… (type to search)"


# -- F9: a label or an id that starts with "-" ---------------------------------------------------


def test_a_label_starting_with_a_dash_is_told_to_go_after_double_dash_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("HITL_LABELS", raising=False)
    db = tmp_path / "hitl.db"
    rows = [
        {"id": f"T{n}", "text": f"review number {n}: the product was {word} for me", "label": lb}
        for n, (lb, word) in enumerate([("-1", "bad"), ("0", "ok"), ("1", "good"), ("-1", "awful")])
    ]
    assert run(db, "import", str(write_jsonl(tmp_path / "s.jsonl", rows))).exit_code == 0
    said = run(db, "labels", "set", "T1", "-1", "--reason", "was it bad")
    assert said.exit_code == 2
    assert said.output == (
        "Error: no such option '-1'; if '-1' is a label or an id (one that starts with \"-\"),"
        f" put `--` before it: hitl --db {db} labels set T1 --reason 'was it bad' -- -1\n"
    )
    fixed = shlex.split(said.output.split("put `--` before it: ")[1])
    assert fixed[:3] == ["hitl", "--db", str(db)]
    done = run(db, *fixed[3:])  # the command as the line gives it
    assert done.exit_code == 0, done.output
    assert stored_labels(db)["T1"] == "-1"

    said = run(db, "labels", "rename", "-1", "negative")
    assert said.exit_code == 2
    assert said.output == (
        "Error: no such option '-1'; if '-1' is a label or an id (one that starts with \"-\"),"
        f" put `--` before it: hitl --db {db} labels rename -- -1 negative\n"
    )
    assert run(db, "labels", "rename", "--", "-1", "negative").exit_code == 0
    # an unknown long option is still click's own message
    typo = run(db, "import", "--lable-column", "x", "s.jsonl")
    assert "No such option '--lable-column'" in typo.output


@pytest.mark.parametrize(
    ("args", "item", "label"),
    [
        (["labels", "rename", "-1", "negative", "--db", "{db}"], "T2", "negative"),
        (["labels", "set", "T1", "-1", "--db={db}", "--reason", "was it bad", "-v"], "T1", "-1"),
        (["--db", "other.db", "labels", "set", "T1", "-1", "--db", "{db}"], "T1", "-1"),
        # a --reason whose value starts as the label does: the label is the one refused
        (
            ["--db", "{db}", "labels", "rename", "--reason", "-1 means x", "-1", "negative"],
            "T2",
            "negative",
        ),
        (["--db", "{db}", "labels", "set", "T1", "--reason", "-1 means x", "-1"], "T1", "-1"),
        # a `--` of its own after the label: one `--`, before the label (not a second, a word)
        (["--db", "{db}", "labels", "rename", "-1", "--", "negative"], "T2", "negative"),
        # a label that starts as the group's -v (click refuses its "-v": not "-v goes before
        # the command", the same command) or as -h (taken as help: click refuses its "-i")
        (["--db", "{db}", "labels", "set", "T1", "-vague"], "T1", "-vague"),
        (["labels", "set", "T1", "-vague", "--db", "{db}", "-v"], "T1", "-vague"),
        (["--db", "{db}", "labels", "set", "T1", "-high", "--reason", "-v"], "T1", "-high"),
        (["--db", "{db}", "labels", "set", "T1", "-hv"], "T1", "-hv"),
    ],
    ids=[
        "rename-db-after",
        "set-db-and-v-after",
        "db-before-and-after",
        "rename-reason-like-the-label",
        "set-reason-like-the-label",
        "rename-double-dash-after-the-label",
        "set-a-label-starting-as-v",
        "set-a-label-starting-as-v-db-and-v-after",
        "set-a-label-starting-as-h",
        "set-a-label-of-h-and-v",
    ],
)
def test_the_double_dash_hint_with_db_or_v_after_the_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], item: str, label: str
):
    """Outside review r-labels R4: with --db (README: the group's options may come after the
    command) after the label, the hint put it after `--`, as a label: the command failed."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "hitl.db"
    rows = [
        {"id": f"T{n}", "text": f"review number {n}: the product was {word} for me", "label": lb}
        for n, (lb, word) in enumerate([("1", "good"), ("0", "ok"), ("-1", "bad")])
    ]
    assert run(db, "import", str(write_jsonl(tmp_path / "s.jsonl", rows))).exit_code == 0
    said = CliRunner().invoke(cli, [a.format(db=db) for a in args], prog_name="hitl")
    assert said.exit_code == 2
    refused = label if label.startswith("-") else "-1"  # the word that starts with "-"
    assert said.output.startswith(
        f"Error: no such option '{refused}'; if '{refused}' is a label"
    ), said.output
    hint = said.output.split("put `--` before it: ")[1].strip()
    fixed = shlex.split(hint)
    assert fixed[0] == "hitl" and fixed[fixed.index("--") + 1] == refused
    done = CliRunner().invoke(cli, fixed[1:], prog_name="hitl")  # the command as the hint gives
    assert done.exit_code == 0, (hint, done.output)
    assert stored_labels(db)[item] == label
    assert not (tmp_path / "other.db").exists()


# -- F10: a JSONL number label as written --------------------------------------------------------


def test_a_jsonl_number_label_is_kept_as_written_as_in_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("HITL_LABELS", raising=False)
    labels = ["1.50", "1e3", "-0", "2.0", "3"]
    texts = [f"rating number {n} given by a customer for the product" for n in range(5)]
    lines = [
        f'{{"id": "R{n}", "text": "{text}", "label": {label}, "score": 1.50}}\n'
        for n, (text, label) in enumerate(zip(texts, labels, strict=True))
    ]
    lines.append('{"id": "R5", "text": "a doccano row with a list", "label": [2.50]}\n')
    (tmp_path / "r.jsonl").write_text("".join(lines))
    rows = [
        (f"R{n}", text, label) for n, (text, label) in enumerate(zip(texts, labels, strict=True))
    ]
    write_csv(tmp_path / "r.csv", [*rows, ("R5", "a doccano row with a list", "2.50")])
    got = {}
    for fmt in ("jsonl", "csv"):
        db = tmp_path / f"{fmt}.db"
        assert run(db, "import", str(tmp_path / f"r.{fmt}")).exit_code == 0
        got[fmt] = stored_labels(db)
    assert got["jsonl"] == {**{f"R{n}": label for n, label in enumerate(labels)}, "R5": "2.50"}
    assert got["jsonl"] == got["csv"]
    with Store.open(tmp_path / "jsonl.db") as store:  # other fields keep their decoded value
        item = store.get_item("R0")
        assert item is not None and item["meta"] == {"score": 1.5}


def test_a_jsonl_number_label_keeps_the_spelling_a_database_stored_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Outside review r-labels R3: versions before stored the JSONL label 1.50 as "1.5"; kept as
    written now, the next file split each class in two (1.5 and 1.50), a file imported before
    read as labels that differ, and HITL_LABELS=1.5,2.5 refused every row."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    texts = [f"a rating number {n} a customer gave the product last week" for n in range(4)]
    old = [("a1", texts[0], "1.5"), ("a2", texts[1], "2.5")]  # as the previous version stored
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(write_csv(tmp_path / "old.csv", old))).exit_code == 0
    lines = [
        f'{{"id": "{item_id}", "text": "{text}", "label": {label}}}\n'
        for item_id, text, label in [
            ("a1", texts[0], "1.50"),  # the old file, again
            ("a2", texts[1], "2.50"),
            ("b1", texts[2], "1.50"),
            ("b2", texts[3], "[2.50]"),
        ]
    ]
    (tmp_path / "new.jsonl").write_text("".join(lines))
    again = run(db, "import", str(tmp_path / "new.jsonl"))
    assert again.exit_code == 0, again.output
    assert "imported 2 (2 with labels), 2 duplicates, 0 rejected" in again.output
    assert "differ" not in again.output
    assert stored_labels(db) == {"a1": "1.5", "a2": "2.5", "b1": "1.5", "b2": "2.5"}
    assert run(db, "labels", "show").stdout.splitlines()[0].endswith(": 1.5, 2.5")

    monkeypatch.setenv("HITL_LABELS", "1.5,2.5")  # a fixed set, spelled as stored before
    fixed = tmp_path / "fixed.db"
    done = run(fixed, "import", str(tmp_path / "new.jsonl"))
    assert done.exit_code == 0, done.output
    assert "0 rejected" in done.output
    assert set(stored_labels(fixed).values()) == {"1.5", "2.5"}
