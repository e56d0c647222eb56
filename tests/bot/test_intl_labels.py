"""Label names in other scripts and forms: one spelling from every settings source (NFC), the
Turkish dotted and dotless i as case twins, `hitl config` aligned by display width, and a
large label set listed whole-entry in Slack (outside testers' reports t_intl M4, M5, L2 and
t_hostile L6)."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.config import load_settings
from bot.errors import ConfigError
from bot.labelnames import case_twin, how_twins_differ, label_key, label_problem
from bot.sandbox import FakeSlack
from bot.server import label_set_problems
from bot.slack.blocks import TEXT_LIMIT
from bot.slack.labels import USAGE
from bot.store import Store
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot

CAFE = "Caf\u00e9"  # é, one code point (NFC)
CAFE_NFD = "Cafe\u0301"  # e + a combining acute accent: looks the same


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


# M4: settings give labels in NFC, as imports and label changes store them.


def test_label_names_from_every_settings_source_are_nfc(tmp_path: Path):
    env = load_settings({"HITL_LABELS": f"{CAFE_NFD},Th\u00e9"}, None)
    assert env.labels == (CAFE, "Th\u00e9")
    toml = tmp_path / "hitl.toml"
    toml.write_text(
        f'[hitl]\nlabels = ["{CAFE_NFD}", "The\u0301"]\n'
        f'[hitl.routes]\n"{CAFE_NFD}" = "C0CAFE"\n'
        f'[labels."{CAFE_NFD}"]\ndescription = "coffee"\n',
        encoding="utf-8",
    )
    settings = load_settings({}, toml)
    assert settings.labels == (CAFE, "Th\u00e9")
    assert settings.routes == {CAFE: "C0CAFE"}
    assert list(settings.guidelines) == [CAFE]
    # `hitl serve`'s check: the route and the guideline name a label in force.
    label_set_problems(settings, list(settings.labels), {})


def test_one_name_in_two_unicode_spellings_in_settings_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_LABELS": f"{CAFE},{CAFE_NFD},tea"}, None)
    assert "lists a label twice (in two Unicode spellings of one name)" in caught.value.problems[0]
    toml = tmp_path / "hitl.toml"
    toml.write_text(
        f'[hitl]\nlabels = ["{CAFE}", "tea"]\n'
        f'[hitl.routes]\n"{CAFE}" = "C1"\n"{CAFE_NFD}" = "C2"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings({}, toml)
    assert caught.value.problems == [
        f"{toml} [hitl.routes] names the label {CAFE!r} twice (in two Unicode spellings)"
    ]


def test_an_import_under_a_decomposed_hitl_labels_takes_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Every row labeled "Café" was refused with "write 'Café' in the file", advice no file
    # could follow: import stores the file's label in NFC whatever is written.
    monkeypatch.setenv("HITL_LABELS", f"{CAFE_NFD},Gro\u0308\u00dfe")
    db = tmp_path / "hitl.db"
    items = tmp_path / "a.csv"
    items.write_text(f"id,text,label\n1,un caf\u00e9 svp,{CAFE}\n2,XXL,{CAFE_NFD}\n")
    result = run(db, "import", str(items))
    assert result.exit_code == 0 and result.stderr == ""
    with Store.open(db) as store:
        assert [store.resolution(i)["label"] for i in ("1", "2")] == [CAFE, CAFE]
    assert run(db, "labels", "show").stdout.endswith(f": {CAFE}, Gr\u00f6\u00dfe\n")


# M5: the Turkish dotted and dotless i.


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("İade", "iade"),
        ("İADE", "iade"),
        ("IADE", "ıade"),
        ("ılık", "ILIK"),
        ("I\u0307ade", "iade"),  # İ written as I + a combining dot above
        ("\u00ccx", "i\u0307\u0300x"),  # Lithuanian: Ì lower-cased keeps the i's dot
        ("\u012e\u0307x", "\u012fx"),  # į with a dot above (past its ogonek): į
        ("Straße", "STRASSE"),
        ("ｂｕｇ", "bug"),  # character form, as before
    ],
)
def test_case_twins_include_the_dotted_and_dotless_i(one: str, other: str):
    assert label_key(one) == label_key(other)
    assert case_twin(one, [other, "hesap"]) == other


@pytest.mark.parametrize(
    ("one", "other"),
    [("café", "cafe"), ("i\u0301", "i\u0308"), ("ij", "ii"), ("a\u0307", "a")],
)
def test_labels_that_differ_in_more_than_case_are_not_twins(one: str, other: str):
    assert label_key(one) != label_key(other)


def test_how_dotted_and_dotless_twins_differ_is_said():
    assert how_twins_differ("İade", "iade") == "only in case"
    assert how_twins_differ("Straße", "STRASSE") == "only in case"
    assert how_twins_differ("ıade", "iade") == "only in case or in the dot of an i (ı, i, İ, I)"
    assert how_twins_differ("ｂｕｇ", "bug") == "only in character form (fullwidth, ligatures, ...)"


def test_hitl_labels_with_iade_and_its_capital_is_refused():
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_LABELS": "iade,İade"}, None)
    assert caught.value.problems == [
        "HITL_LABELS=\"iade,İade\" has 'iade' and 'İade', which differ only in case; keep one"
    ]


def test_an_import_row_in_turkish_capitals_is_told_the_label_to_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # It was told "not in the label set: add it with `hitl labels add 'İADE'`", advice that
    # split one class behind two buttons that read the same.
    monkeypatch.setenv("HITL_LABELS", "iade,hesap")
    db = tmp_path / "hitl.db"
    items = tmp_path / "a.csv"
    items.write_text("id,text,label\n1,para iadesi,iade\n2,İADE İSTİYORUM,İADE\n")
    assert run(db, "import", str(items)).stderr == (
        'a.csv line 3: label "İADE" differs from the label "iade" only in case: write "iade" in'
        " the file, row skipped\n"
    )


def test_labels_open_an_import_keeps_one_spelling_and_labels_add_refuses_the_twin(
    tmp_path: Path,
):
    db = tmp_path / "hitl.db"
    items = tmp_path / "a.csv"
    items.write_text("id,text,label\n1,para iadesi,iade\n2,İade lütfen,İade\n3,borç,hesap\n")
    result = run(db, "import", str(items))
    assert result.exit_code == 0
    assert 'label "İade" differs from the label "iade" only in case' in result.stderr
    with Store.open(db) as store:
        assert store.label_set() == ["hesap", "iade"]
    refused = run(db, "labels", "add", "İADE")
    assert refused.exit_code == 1
    assert refused.stderr == (
        'Error: "İADE" differs from the label "iade" only in case; use "iade", or rename it\n'
    )
    # A change of a label's own case is a rename, and it is taken.
    assert run(db, "labels", "rename", "iade", "İade").stdout == "Label set now: hesap, İade\n"


# L2: `hitl config` pads by display width.


def columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_config_columns_line_up_with_wide_characters(tmp_path: Path):
    toml = tmp_path / "hitl.toml"
    toml.write_text('[hitl.routes]\n"账单" = "C0BILL"\n', encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        ["config"],
        env={"HITL_LABELS": "账单,账户,故障,功能请求", "HITL_CONFIG": str(toml)},
        prog_name="hitl",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("HITL_LABELS ") and "账单,账户" in line for line in lines)
    assert any(line.startswith("routes.账单 ") for line in lines)
    assert len({columns(line[: line.rindex("(")]) for line in lines}) == 1, lines


# L6: a large label set in `/hitl labels`.

MANY = tuple(f"{n:04d}-" + "x" * 70 for n in range(600))  # 75 characters each


async def reply(bot: Bot, text: str) -> str:
    response = await bot.command(text, "U0ADMIN")
    assert response.status == 200
    body = await response.text()
    return json.loads(body)["text"] if body.startswith("{") else body


def shown_labels(text: str) -> list[str]:
    return re.findall(r"`(\d{4}-x{70}|newlabel)`", text)


@pytest.fixture
async def many(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "some text")])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, labels=MANY)):
        yield running


async def test_a_large_label_set_is_listed_in_whole_entries_with_the_count_left_out(many: Bot):
    text = await reply(many, "labels")
    assert len(text) <= TEXT_LIMIT and text.endswith(f"\n{USAGE}")
    shown = shown_labels(text)
    assert shown == list(MANY[: len(shown)]) and len(shown) > 30
    assert text.count("`") % 2 == 0  # no backtick left open
    assert f", … and {600 - len(shown)} more (`hitl labels show` lists them all)\n" in text


async def test_labels_add_says_the_label_it_added_also_past_a_cut_list(many: Bot):
    text = await reply(many, "labels add newlabel")
    assert len(text) <= TEXT_LIMIT and text.startswith("Done. Labels now: `0000-")
    assert "… and " in text and text.count("`") % 2 == 0
    assert text.endswith(". Added `newlabel`. Open questions are redrawn.")
    assert many.store.stored_labels() == [*MANY, "newlabel"]
    text = await reply(many, "labels rename newlabel newer")
    assert text.endswith(". Renamed to `newer`. Open questions are redrawn.")


@pytest.mark.parametrize("separator", ["\u2028", "\u2029"])
def test_a_label_with_a_line_or_paragraph_separator_is_refused(separator: str):
    # Unicode's own line breaks (categories Zl, Zp) split a button as a newline does
    problem = label_problem(f"billing{separator}bug")
    assert problem == (
        "has a control character (a line break, a tab, ...); labels are one line of text"
    )
    with pytest.raises(ConfigError, match="line break"):
        load_settings({"HITL_LABELS": f"billing{separator}x,bug"}, None)
