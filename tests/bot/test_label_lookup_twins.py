"""A label of the set named by a twin of it (outside review rv, F3): a label imported with a
no-break space, as spreadsheets export it ("card\\xa0payment"), could not be retired, renamed or
merged by its visible name typed with a plain space, in `hitl labels` nor in `/hitl labels`: the
reply said "not in the label set" and listed a name that looks the same, while `add` knew the
twin. A name typed for a label of the set is now taken as the one label in force it is a twin
of (``only_twin``, the rule `add` refuses twins by), and the reply names the label as stored.
Through the real CLI and the real server (signed `/hitl labels`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Item, make_settings, seed, start_bot
from tests.bot.test_cli_loop import run
from tests.bot.test_label_drift import said

NBSP = "card\u00a0payment"  # as the spreadsheet wrote it
TYPED = "card payment"  # as people type it
TAKEN = (
    f'"{TYPED}" is taken as the label "{NBSP}" of the set: they differ only in white space'
    " (two spaces for one, a no-break space, ...)"
)
ROWS = [
    ("1", "my card payment went through twice yesterday", NBSP),
    ("2", "the card payment shows a strange amount now", NBSP),
    ("3", "the app crashes when I open the settings", "bug"),
    ("4", "please reset my password, I am locked out", "account"),
]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A database whose labels came from a CSV with a no-break space in one of them."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    path = tmp_path / "in.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerows(ROWS)
    db = tmp_path / "hitl.db"
    imported = run(db, "import", str(path))
    assert imported.exit_code == 0, imported.output
    return db


def labels_of(db: Path) -> dict[str, str]:
    with Store.open(db) as store:
        return dict(store.db.execute("SELECT item_id, label FROM labels").fetchall())


def label_set(db: Path) -> dict[str, str]:
    with Store.open(db) as store:
        return dict(store.db.execute("SELECT name, status FROM label_set").fetchall())


def test_retire_by_the_visible_name_retires_the_label_and_names_it(db: Path):
    retired = run(db, "labels", "retire", TYPED)
    assert retired.exit_code == 0, retired.output
    lines = retired.stdout.splitlines()
    assert lines[0] == TAKEN
    assert lines[1] == "Label set now: account, bug"
    assert f"2 items labeled {NBSP} left training" in retired.stdout
    assert label_set(db) == {"account": "active", "bug": "active", NBSP: "retired"}
    # `add` of the visible name, as the line advises, brings it back with its items
    back = run(db, "labels", "add", TYPED)
    assert back.exit_code == 0, back.output
    assert back.stdout.splitlines() == [TAKEN, f"Label set now: account, bug, {NBSP}"]
    assert label_set(db) == {"account": "active", "bug": "active", NBSP: "active"}
    with Store.open(db) as store:
        assert store.db.execute(
            "SELECT count(*) FROM reviews WHERE reason = 'retired' AND decided_at IS NULL"
        ).fetchone() == (0,)


def test_rename_by_the_visible_name_can_make_it_the_plain_spelling(db: Path):
    renamed = run(db, "labels", "rename", TYPED, TYPED)
    assert renamed.exit_code == 0, renamed.output
    assert renamed.stdout.splitlines() == [TAKEN, "Label set now: account, bug, card payment"]
    assert labels_of(db) == {"1": TYPED, "2": TYPED, "3": "bug", "4": "account"}
    # now the plain spelling is the label: no twin to take, nothing said of one
    again = run(db, "labels", "rename", TYPED, "payments")
    assert again.stdout.splitlines() == ["Label set now: account, bug, payments"]


@pytest.mark.parametrize(
    ("args", "merged"),
    [((TYPED, "bug"), "bug"), (("bug", TYPED), NBSP)],
    ids=["merge-it", "merge-into-it"],
)
def test_merge_by_the_visible_name_merges_the_label(db: Path, args, merged: str):
    done = run(db, "labels", "merge", *args)
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[0] == TAKEN
    assert set(labels_of(db).values()) == {merged, "account"}


def test_set_by_the_visible_name_gives_the_label_a_case_twin_is_still_refused(db: Path):
    done = run(db, "labels", "set", "3", TYPED)
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == [TAKEN, f"3: bug → {NBSP}"]
    assert labels_of(db)["3"] == NBSP
    refused = run(db, "labels", "set", "4", "Card Payment")  # reads otherwise: use the label
    assert refused.exit_code == 1
    assert "only in case and white space" in refused.stderr
    assert labels_of(db)["4"] == "account"


def test_a_case_twin_is_refused_naming_the_label(db: Path):
    """Outside review rvtw F1: a twin in case may be another word, so retire, merge and
    rename do not act on it: they refuse it, naming the label, as they refused before."""
    refused = run(db, "labels", "retire", "BUG")
    assert refused.exit_code == 1
    assert refused.stderr == (
        f'Error: "BUG" is not in the label set (account, bug, {NBSP}); did you mean "bug"?\n'
    )
    assert label_set(db) == {}  # nothing changed: the set is not stored yet
    assert run(db, "labels", "retire", "bug").exit_code == 0
    # a change refused after a name was taken for its twin says which label it took
    refused = run(db, "labels", "retire", TYPED)
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"Error: a label set needs two labels; add one before retiring ({TAKEN})\n"
    )


def test_no_twin_is_guessed_when_two_are_stored_or_the_name_is_stored_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Two spellings an older version stored: which is meant is for the person to say. A name
    stored itself (retired) is that name, never its twin in force."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    db = tmp_path / "hitl.db"
    seed(
        db,
        [
            Item("1", "my card payment went through twice", "card payment"),
            Item("2", "a card payment I do not recognise", "card  payment"),
            Item("3", "the app crashes when I open it", "bug"),
            Item("4", "please reset my password now", "account"),
            Item("5", "I want to pay by invoice", "Billing"),
        ],
    )
    case = run(db, "labels", "retire", "BUG")  # one twin in force, in case: refused
    assert case.exit_code == 1
    assert case.stderr.endswith('; did you mean "bug"?\n'), case.stderr
    assert run(db, "labels", "retire", "bug").exit_code == 0
    refused = run(db, "labels", "retire", "card \u00a0payment")
    assert refused.exit_code == 1
    assert "is not in the label set" in refused.stderr
    assert run(db, "labels", "retire", "Billing").exit_code == 0
    # `add billing` would bring "Billing" back (its twin); a rename makes a label "billing"
    assert run(db, "labels", "rename", "account", "billing").exit_code == 0
    again = run(db, "labels", "retire", "Billing")  # the retired one, not billing in force
    assert again.exit_code == 1
    assert '"Billing" is not in the label set' in again.stderr
    assert label_set(db)["billing"] == "active"


@pytest.mark.parametrize(
    "command",
    [f'labels retire "{TYPED}"', f"labels retire {TYPED}"],
    ids=["quoted", "unquoted"],
)
async def test_slash_labels_retire_by_the_visible_name(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
):
    monkeypatch.delenv("HITL_LABELS", raising=False)
    seed(tmp_path / "hitl.db", [Item(n, text, label) for n, text, label in ROWS])
    settings = make_settings(fake_slack, tmp_path, labels=())
    async for bot in start_bot(fake_slack, settings):
        reply = await said(bot, command)
        assert reply.startswith("Done. Labels now: `account`, `bug`."), reply
        assert f" {TAKEN}. " in reply
        assert bot.store.retired_labels() == {NBSP}


def words_db(tmp_path: Path, labels: list[str]) -> Path:
    """A database whose open labels ``labels`` came from an import, two items each."""
    path = tmp_path / "words.jsonl"
    rows = [
        {"id": f"{n}-{k}", "text": f"item {k} about {label}", "label": label}
        for n, label in enumerate(labels)
        for k in range(2)
    ]
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    db = tmp_path / "hitl.db"
    imported = run(db, "import", str(path))
    assert imported.exit_code == 0, imported.output
    return db


@pytest.mark.parametrize(
    ("args", "typed", "stored"),
    [
        (["merge", "Maße", "bug"], "Maße", "Masse"),  # "dimensions" for "mass"
        (["merge", "bug", "Maße"], "Maße", "Masse"),
        (["retire", "sik"], "sik", "sık"),  # Turkish: dotless ı, another word
        (["rename", "MASSE", "weight"], "MASSE", "Masse"),
        (["retire", "👩💻"], "👩💻", "👩\u200d💻"),  # woman + laptop: not the technologist
        (["retire", "میخواهم"], "میخواهم", "می\u200cخواهم"),  # the ZWNJ changes the word
    ],
    ids=["merge-it", "merge-into-it", "dotless-i", "rename-case", "zwj", "zwnj"],
)
def test_a_twin_that_reads_otherwise_changes_nothing_and_names_the_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], typed: str, stored: str
):
    """Outside review rvtw F1, F2: `merge Maße bug` merged the label "Masse" (a different
    word) into bug, which no add could undo; a joiner (ZWJ, ZWNJ) changes what is drawn. Only
    a twin that looks the same is taken; any other is refused, naming the label."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    labels = ["Masse", "bug", "account", "sık", "👩\u200d💻", "می\u200cخواهم"]
    db = words_db(tmp_path, labels)
    before = labels_of(db)
    refused = run(db, "labels", *args)
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.startswith(f'Error: "{typed}" is not in the label set ('), refused.stderr
    assert refused.stderr.endswith(f'); did you mean "{stored}"?\n'), refused.stderr
    assert labels_of(db) == before
    assert label_set(db) == {}  # nothing changed: the set is not stored yet
    # the label as named is what the change takes
    done = run(db, "labels", *[stored if arg == typed else arg for arg in args])
    assert done.exit_code == 0, done.output
    assert "is taken as" not in done.stdout


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("👩💻", "👩\u200d💻"), ("میخواهم", "می\u200cخواهم")],
    ids=["zwj", "zwnj"],
)
def test_set_refuses_a_joiner_twin_saying_the_joiner_changes_the_drawing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, typed: str, stored: str
):
    """Outside review rvtw F2: `set 2 👩💻` gave the label 👩‍💻, saying the two differed
    "only in characters that show as nothing"; the joiner makes one glyph of two."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    db = words_db(tmp_path, ["bug", "account", stored])
    refused = run(db, "labels", "set", "0-0", typed)
    assert refused.exit_code == 1, refused.output
    assert refused.stderr == (
        f'Error: "{typed}" differs from the label "{stored}" only in characters that show as'
        " nothing themselves (a joiner, ZWJ or ZWNJ, which can change how the characters"
        f' around it are drawn); use "{stored}"\n'
    )
    assert labels_of(db)["0-0"] == "bug"


def test_add_of_a_retired_labels_case_twin_makes_a_label_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Outside review rvtw F1: only a twin that looks the same brings a retired label back;
    "Billing" added after "billing" was retired is made as typed, as before twins were
    taken (its items stay retired), and the look-alike brings the retired one back."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    db = words_db(tmp_path, ["billing", "bug", "account", NBSP])
    assert run(db, "labels", "retire", "billing").exit_code == 0
    added = run(db, "labels", "add", "Billing")
    assert added.exit_code == 0, added.output
    assert added.stdout.splitlines() == ["Label set now: account, bug, card\xa0payment, Billing"]
    assert label_set(db) == {
        "account": "active",
        "bug": "active",
        NBSP: "active",
        "billing": "retired",
        "Billing": "active",
    }
    assert run(db, "labels", "retire", NBSP).exit_code == 0
    back = run(db, "labels", "add", TYPED)
    assert back.stdout.splitlines()[0] == TAKEN
    assert label_set(db)[NBSP] == "active"


async def test_slash_labels_merge_of_a_case_twin_is_refused_naming_the_label(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Outside review rvtw F1, in Slack: `/hitl labels merge Maße bug` merged "Masse"."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    rows = [("5", "the size of the parcel", "Masse"), ("6", "the app crashes", "bug")]
    seed(tmp_path / "hitl.db", [Item(n, text, label) for n, text, label in ROWS + rows])
    settings = make_settings(fake_slack, tmp_path, labels=())
    async for bot in start_bot(fake_slack, settings):
        for command in ("labels merge Maße bug", 'labels merge "Maße" bug'):
            reply = await said(bot, command)
            assert "did you mean" in reply and "Masse" in reply, reply
            assert not reply.startswith("Done"), reply
        assert bot.store.stored_labels() is None  # nothing changed
        assert bot.store.db.execute(
            "SELECT count(*) FROM labels WHERE label = 'Masse'"
        ).fetchone() == (1,)


def test_import_takes_a_label_that_looks_the_same_as_one_of_the_set(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Outside review rvtw F3: `hitl labels set 2 "card payment"` took the label imported with
    a no-break space, but `hitl import` of a row labeled "card payment" refused it, advising
    a name that looks the same. Import takes it too, saying so; a case twin is still refused.
    With the labels open (the fixture's), then with the set stored by `hitl labels`."""
    for n, stored in enumerate((False, True)):
        if stored:
            assert run(db, "labels", "add", "refund").exit_code == 0
        more = tmp_path / f"more{n}.jsonl"
        rows = [
            {"id": f"m{n}1", "text": f"card payment twice again {n}", "label": TYPED},
            {"id": f"m{n}2", "text": f"a card payment I do not know {n}", "label": "card  payment"},
            {"id": f"m{n}3", "text": f"the app crashes again {n}", "label": "Bug"},
        ]
        more.write_text("".join(json.dumps(row) + "\n" for row in rows))
        done = run(db, "import", str(more))
        assert done.exit_code == 0, done.output
        assert "imported 2 (2 with labels), 0 duplicates, 1 rejected" in done.stdout
        assert done.stderr.splitlines() == [
            f'more{n}.jsonl line 3: label "Bug" differs from the label "bug" only in case:'
            ' write "bug" in the file, row skipped',
            f'more{n}.jsonl: 1 row labeled "card payment" (line 1) taken as the label'
            f' "card\\xa0payment": they differ only in white space (two spaces for one, a'
            " no-break space, ...)",
            f'more{n}.jsonl: 1 row labeled "card  payment" (line 2) taken as the label'
            f' "card\\xa0payment": they differ only in white space (two spaces for one, a'
            " no-break space, ...)",
        ], done.stderr
        assert {labels_of(db)[f"m{n}1"], labels_of(db)[f"m{n}2"]} == {NBSP}


async def test_slash_labels_unquoted_words_split_only_into_labels_the_store_takes(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Outside review rvtw F1: the words of `/hitl labels merge card payment bug` also split
    into "card" (a case twin of "Card") and "payment bug", so the reply asked which was meant,
    naming a change the store refuses. Only a twin that looks the same counts."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    rows = [("5", "my card was swallowed", "Card"), ("6", "paying fails", "payment bug")]
    seed(tmp_path / "hitl.db", [Item(n, text, label) for n, text, label in ROWS + rows])
    settings = make_settings(fake_slack, tmp_path, labels=())
    async for bot in start_bot(fake_slack, settings):
        reply = await said(bot, "labels merge card payment bug")
        assert reply.startswith("Done. Labels now: "), reply
        assert f" {TAKEN}. Merged into `bug`." in reply
        assert bot.store.db.execute(
            "SELECT label, count(*) FROM labels GROUP BY label ORDER BY label"
        ).fetchall() == [("Card", 1), ("account", 1), ("bug", 3), ("payment bug", 1)]


@pytest.mark.parametrize(
    ("command", "taken"),
    [
        (f"labels merge {NBSP} bug", False),  # pasted as stored, unquoted
        (f"labels merge  {NBSP}\u00a0 bug", False),  # white space around it as typed
        (f"labels merge {TYPED} bug", True),  # typed with a plain space: the twin, said so
        (f"labels retire {NBSP}", False),
    ],
    ids=["pasted", "spaced", "typed", "retire-pasted"],
)
async def test_slash_labels_a_label_pasted_as_stored_unquoted_is_the_label_itself(
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    taken: bool,
):
    """Outside review rvlt 3: `/hitl labels merge card payment bug` with the no-break space
    as stored replied that "card payment" was taken as the label "card payment": the words,
    split on the no-break space, were joined again with a plain space, which the store took
    as a twin. The words are joined as typed where that is the label."""
    monkeypatch.delenv("HITL_LABELS", raising=False)
    seed(tmp_path / "hitl.db", [Item(n, text, label) for n, text, label in ROWS])
    settings = make_settings(fake_slack, tmp_path, labels=())
    async for bot in start_bot(fake_slack, settings):
        reply = await said(bot, command)
        assert reply.startswith("Done. Labels now: `account`, `bug`."), reply
        assert ("is taken as the label" in reply) is taken, reply
        if taken:
            assert f" {TAKEN}. " in reply
        assert NBSP not in {
            label
            for (label,) in bot.store.db.execute(
                "SELECT name FROM label_set WHERE status = 'active'"
            )
        }
