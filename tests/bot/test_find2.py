"""`hitl find`, the cases an outside privacy re-test found: a person written with other spaces
(a name broken across lines, a no-break space, two spaces), a phone number with other
separators or none (README's own `hitl find "+44 7700 900999"`), an address with a full-width
＠, and Turkish capitals (casefold leaves ı and İ apart from i)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.store import Store


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args])


def imported(tmp_path: Path, texts: dict[str, str]) -> Path:
    db = tmp_path / "hitl.db"
    path = tmp_path / "people.jsonl"
    rows = [{"id": key, "text": text} for key, text in texts.items()]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    done = run(db, "import", str(path))
    assert done.exit_code == 0, done.output
    return db


def ids(db: Path, *args: str) -> list[str]:
    found = run(db, "find", *args, "--ids")
    assert found.exit_code == 0, found.output
    return found.stdout.split()


def test_a_name_is_found_whatever_the_spaces_between_its_words(tmp_path: Path):
    db = imported(
        tmp_path,
        {
            "N-1": "Name: Marie Dupont",
            "N-2": "Mit freundlichen Grüßen\nMarie\nDupont",
            "N-3": "Marie\u00a0Dupont (HTML mail signature)",
            "N-4": "Marie  Dupont",
            "N-5": "Marie\r\n\tDupont",
            "X-1": "Marie Dupontel",  # another person: still a whole word
            "X-2": "MarieDupont",
        },
    )
    assert ids(db, "Marie Dupont") == ["N-1", "N-2", "N-3", "N-4", "N-5"]
    assert ids(db, "marie   dupont") == ["N-1", "N-2", "N-3", "N-4", "N-5"]
    assert ids(db, "Marie\u00a0Dupont") == ["N-1", "N-2", "N-3", "N-4", "N-5"]
    assert ids(db, "Marie Dupont", "--part") == ["N-1", "N-2", "N-3", "N-4", "N-5", "X-1"]


def test_a_phone_number_is_found_with_any_separators_or_none(tmp_path: Path):
    db = imported(
        tmp_path,
        {
            "P-1": "Tel +44 7700 900999",
            "P-2": "Tel +44\u00a07700\u00a0900999 (HTML mail)",
            "P-3": "Tel +447700900999",
            "P-4": "Tel +44 (0)7700 900999",
            "P-5": "Tel 44-7700-900.999",
            "P-6": "Tel (44) 7700/900999",
            "X-1": "Tel +44 7700 9009991",  # a longer number: another person's
            "X-2": "Ref 144 7700 900999",
            "X-3": "Tel +44 7700 900998",
        },
    )
    every = ["P-1", "P-2", "P-3", "P-4", "P-5", "P-6"]
    assert ids(db, "+44 7700 900999") == every  # README's example
    assert ids(db, "+447700900999") == every
    assert ids(db, "+44 (0)7700 900-999") == every
    # the end of a number, as a whole word: not inside a run of digits (P-3)
    assert ids(db, "7700 900999") == ["P-1", "P-2", "P-4", "P-5", "P-6", "X-2"]
    assert ids(db, "4111") == []  # a short number is a word as before
    # part: inside a longer number too
    assert ids(db, "447700900999", "--part") == [*every, "X-1", "X-2"]


def test_an_address_with_a_full_width_at_sign_is_found_and_stays_whole(tmp_path: Path):
    db = imported(
        tmp_path,
        {
            "E-1": "von marie.dupont＠example.com (full-width @, Japanese IME)",
            "E-2": "von marie.dupont@example.com",
            "E-3": "von ＭＡＲＩＥ.ＤＵＰＯＮＴ＠ＥＸＡＭＰＬＥ.ＣＯＭ",
            "X-1": "von anne-marie.dupont＠example.com",  # another person's
            "X-2": "von marie.dupont＠example.com.au",
        },
    )
    assert ids(db, "marie.dupont@example.com") == ["E-1", "E-2", "E-3"]
    assert ids(db, "marie.dupont＠example.com") == ["E-1", "E-2", "E-3"]
    assert ids(db, "example.com") == ["E-1", "E-2", "E-3", "X-1"]


def test_turkish_capitals_are_the_same_letters(tmp_path: Path):
    db = imported(
        tmp_path,
        {
            "TR-1": "Gönderen: AYŞE YILMAZ, sipariş iptal",
            "TR-2": "Ayşe Yılmaz yazdı",
            "TR-3": "İPEK DEMİR iade istiyor",
            "TR-4": "ipek demir",
            "TR-5": "I\u0307pek Demi\u0307r",  # İ written decomposed
            "X-1": "Ayse Yilmaz",  # s is not ş
        },
    )
    assert ids(db, "Ayşe Yılmaz") == ["TR-1", "TR-2"]
    assert ids(db, "AYŞE YILMAZ") == ["TR-1", "TR-2"]
    assert ids(db, "İpek Demir") == ["TR-3", "TR-4", "TR-5"]
    assert ids(db, "IPEK DEMIR") == ["TR-3", "TR-4", "TR-5"]
    assert ids(db, "yılmaz", "--part") == ["TR-1", "TR-2", "X-1"]


def test_find_items_reads_the_same_rules_from_the_store(tmp_path: Path):
    db = imported(tmp_path, {"A-1": "Ayşe\nYILMAZ +90 (532) 123 45 67"})
    with Store.open(db) as store:
        assert [i["id"] for i in store.find_items("ayşe yılmaz")] == ["A-1"]
        assert [i["id"] for i in store.find_items("+905321234567")] == ["A-1"]
