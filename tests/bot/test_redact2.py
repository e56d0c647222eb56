"""HITL_REDACT, more: a card number pasted with digits beside it (its CVV, expiry, a quantity)
is replaced too; numbers that are no one's (an order number starting 00, a year in brackets,
an IBAN) are left as they are, and an international phone number is ``[phone]`` whole; a file
of id-less tickets imported again after the setting is turned on (or given more kinds) finds
them as duplicates, and brings back none that `hitl delete` erased; turned off (or set to other
kinds), a redacted form stored before names every ticket differing from it only in what it
replaced, so no other customer's ticket is taken for it: the item is stored as it comes."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.ingest import item_id_for_text
from bot.ingest.redact import Redactor
from bot.sandbox import FakeSlack
from tests.bot.test_api import AUTH, start_api

EVERY = ("card", "email", "phone")
EVERY_SET = ",".join(EVERY)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("card 4111 1111 1111 1111 123", "card [card] 123"),  # its CVV after it
        ("my visa 4111111111111111 737 please refund", "my visa [card] 737 please refund"),
        ("card 4111 1111 1111 1111 12/25", "card [card] 12/25"),  # its expiry
        ("bought 2 4111 1111 1111 1111 charged twice", "bought 2 [card] charged twice"),
        ("Card No.4111111111111111 was charged", "Card No.[card] was charged"),
        ("amex 3782 822463 10005 1234", "amex [card] 1234"),
        ("1 4111-1111-1111-1111 737", "1 [card] 737"),
        ("two: 4111 1111 1111 1111 5555 5555 5555 4444", "two: [card] [card]"),
        # still left: no Luhn, glued to a word, small groups, too long
        ("order 4111 1111 1111 1112 123", "order 4111 1111 1111 1112 123"),
        (
            "ref 4111111111111111-A, card_4111111111111111",
            "ref 4111111111111111-A, card_4111111111111111",
        ),
        ("scores 5 4 3 5 2 1 4 4 3 2 1 5 5 5 3", "scores 5 4 3 5 2 1 4 4 3 2 1 5 5 5 3"),
        ("id 41111111111111111234", "id 41111111111111111234"),
    ],
)
def test_a_card_number_with_digits_beside_it_is_replaced(text: str, redacted: str):
    assert Redactor(EVERY).item(text, {})[0] == redacted


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("order 0012 3456 7890 shipped", "order 0012 3456 7890 shipped"),
        ("invoice 00123-4567-89 is wrong", "invoice 00123-4567-89 is wrong"),
        ("SKU 00789 1234 5678 out of stock", "SKU 00789 1234 5678 out of stock"),
        ("see report (2024) 123 456", "see report (2024) 123 456"),
        ("IBAN DE89 3704 0044 0532 0130 00", "IBAN DE89 3704 0044 0532 0130 00"),
        ("bare 004477009009990", "bare 004477009009990"),
        # real phone numbers, whole
        ("call me on +49 151 12345678", "call me on [phone]"),  # passes Luhn: no card
        ("call 0049 151 12345678 now", "call [phone] now"),
        ("call 0044 7700 900999", "call [phone]"),
        ("call 001 202 555 0143", "call [phone]"),
        ("call +44 7700 900999 or (020) 7946 0958", "call [phone] or [phone]"),
        ("call (202) 555-0143 or (0151) 1234 5678", "call [phone] or [phone]"),
        ("+1 (555) 123-4567, +15551234567, tel:+4915112345678", "[phone], [phone], tel:[phone]"),
    ],
)
def test_numbers_that_are_no_ones_are_left_and_a_phone_number_is_replaced_whole(
    text: str, redacted: str
):
    assert Redactor(EVERY).item(text, {})[0] == redacted


TICKETS = (
    "please refund, card 4111 1111 1111 1111 was charged twice\n"
    "the app crashes when I open settings\n"
    "wrong amount on invoice, my card 5555 5555 5555 4444, mail jane@example.com\n"
)


def hitl(db: Path, *args: str, redact: str | None = None):
    env = {"HITL_REDACT": redact} if redact else {}
    done = CliRunner().invoke(cli, ["--db", str(db), *args], env=env)
    assert done.exit_code == 0, done.output
    return done.stdout


def texts(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [text for (text,) in conn.execute("SELECT text FROM items ORDER BY rowid")]


@pytest.mark.parametrize(
    ("first", "then"),
    [(None, "card"), ("card", "card,email,phone"), ("card", "card,email"), (None, EVERY_SET)],
)
def test_a_re_import_after_the_setting_changed_finds_the_id_less_items(
    tmp_path: Path, first: str | None, then: str | None
):
    db = tmp_path / "hitl.db"
    path = tmp_path / "tickets.txt"
    path.write_text(TICKETS)
    hitl(db, "import", str(path), redact=first)
    stored = texts(db)
    again = hitl(db, "import", str(path), redact=then)
    assert "imported 0 (0 with labels), 3 duplicates, 0 rejected" in again
    assert texts(db) == stored


@pytest.mark.parametrize(
    ("first", "then"), [(None, "card"), ("card", "card,email"), (None, EVERY_SET)]
)
def test_an_erased_id_less_ticket_stays_erased_after_the_setting_changed(
    tmp_path: Path, first: str | None, then: str | None
):
    db = tmp_path / "hitl.db"
    path = tmp_path / "tickets.txt"
    path.write_text(TICKETS)
    hitl(db, "import", str(path), redact=first)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        [(erased,)] = conn.execute("SELECT id FROM items WHERE text LIKE 'please refund%'")
    hitl(db, "delete", erased, "--yes", "--reason", "erasure request")
    again = hitl(db, "import", str(path), redact=then)
    assert "imported 0 (0 with labels), 2 duplicates, 0 rejected, 1 row skipped" in again
    assert not [text for text in texts(db) if "please refund" in text]
    assert b"4111 1111" not in db.read_bytes()


def test_a_re_import_with_the_setting_turned_off_stores_the_id_less_items_as_they_come(
    tmp_path: Path,
):
    """Its redacted form stored before names every ticket that differs from it only in the
    personal data: it cannot say which one this is, so the item is stored as it comes."""
    db = tmp_path / "hitl.db"
    path = tmp_path / "tickets.txt"
    path.write_text(TICKETS)
    hitl(db, "import", str(path), redact="card")
    again = hitl(db, "import", str(path))
    assert "imported 2 (0 with labels), 1 duplicate, 0 rejected" in again
    lines = TICKETS.splitlines()
    assert texts(db)[3:] == [lines[0], lines[2]]


CALL_BACK = "Please call me back at {} about my refund"


def test_with_the_setting_turned_off_another_customers_ticket_is_not_taken_for_a_stored_one(
    tmp_path: Path,
):
    """HITL_REDACT=phone stored customer A's ticket as "… [phone] …"; turned off, customer B's
    (another number) is a new item, not a duplicate of A's, and once A is erased customer C's
    is stored too, not skipped as deleted before."""
    db = tmp_path / "hitl.db"
    for name, number in [("a", "+49 151 23456789"), ("b", "+49 160 99887766")]:
        (tmp_path / f"{name}.txt").write_text(CALL_BACK.format(number) + "\n")
    (tmp_path / "c.txt").write_text(CALL_BACK.format("+49 170 11223344") + "\n")
    hitl(db, "import", str(tmp_path / "a.txt"), redact="phone")
    assert texts(db) == [CALL_BACK.format("[phone]")]
    assert "imported 1 (0 with labels), 0 duplicates" in hitl(db, "import", str(tmp_path / "b.txt"))
    [a] = [item_id_for_text(CALL_BACK.format("[phone]"))]
    hitl(db, "delete", a, "--yes", "--reason", "erasure request")
    after = hitl(db, "import", str(tmp_path / "c.txt"))
    assert "imported 1 (0 with labels), 0 duplicates" in after and "skipped" not in after
    assert texts(db) == [CALL_BACK.format("+49 160 99887766"), CALL_BACK.format("+49 170 11223344")]


def test_a_form_under_a_kind_the_setting_keeps_does_not_find_another_customers_ticket(
    tmp_path: Path,
):
    """Stored with HITL_REDACT=email as "… [email] …"; set to card (addresses kept), a ticket
    with another address is another customer's: stored, not a duplicate of the first."""
    db = tmp_path / "hitl.db"
    (tmp_path / "a.txt").write_text("card 4111 1111 1111 1111 charged twice, mail a@example.com\n")
    (tmp_path / "b.txt").write_text("card 4111 1111 1111 1111 charged twice, mail b@example.com\n")
    hitl(db, "import", str(tmp_path / "a.txt"), redact="email")
    again = hitl(db, "import", str(tmp_path / "b.txt"), redact="card")
    assert "imported 1 (0 with labels), 0 duplicates" in again
    assert texts(db)[1] == "card [card] charged twice, mail b@example.com"


API_CARD = "4111 1111 1111 1111"  # passes the Luhn check


async def test_the_api_finds_an_id_less_ticket_after_the_setting_changed(
    fake_slack: FakeSlack, tmp_path: Path
):
    """As `hitl import` does: the same ticket sent again without an id, HITL_REDACT turned on
    (or off) since, is the stored item, not a second one; once deleted it stays deleted."""
    raw = f"no id {API_CARD}"
    async for api in start_api(fake_slack, tmp_path):  # stored as it came
        first = await api.http.post("/api/predict", json={"text": raw}, headers=AUTH)
        assert (await first.json())["id"] == item_id_for_text(raw)
    async for api in start_api(fake_slack, tmp_path, redact=("card",)):
        again = await api.http.post("/api/predict", json={"text": raw}, headers=AUTH)
        assert again.status == 200 and (await again.json())["id"] == item_id_for_text(raw)
        many = await api.http.post("/api/items", json={"items": [{"text": raw}]}, headers=AUTH)
        assert [r["id"] for r in (await many.json())["results"]] == [item_id_for_text(raw)]
        assert sum(api.store.count_items().values()) == 1
        gone = await api.http.delete(f"/api/items/{item_id_for_text(raw)}", headers=AUTH)
        assert gone.status == 200
        refused = await api.http.post("/api/predict", json={"text": raw}, headers=AUTH)
        assert refused.status == 410
        batch = await api.http.post("/api/items", json={"items": [{"text": raw}]}, headers=AUTH)
        assert [r["result"] for r in (await batch.json())["results"]] == ["rejected"]
        assert sum(api.store.count_items().values()) == 0


async def test_the_api_with_the_setting_turned_off_takes_no_ticket_for_another_customers(
    fake_slack: FakeSlack, tmp_path: Path
):
    """As `hitl import` does: HITL_REDACT=phone stored A's ticket as "… [phone] …"; turned
    off, B's ticket (another number) is its own item, and once A is deleted C's is not 410."""
    a, b, c = (
        CALL_BACK.format(n) for n in ("+49 151 23456789", "+49 160 99887766", "+49 170 11223344")
    )
    async for api in start_api(fake_slack, tmp_path, redact=("phone",)):
        first = await api.http.post("/api/predict", json={"text": a}, headers=AUTH)
        assert (await first.json())["id"] == item_id_for_text(CALL_BACK.format("[phone]"))
    async for api in start_api(fake_slack, tmp_path):
        other = await api.http.post("/api/predict", json={"text": b}, headers=AUTH)
        assert other.status == 200 and (await other.json())["id"] == item_id_for_text(b)
        gone = await api.http.delete(
            f"/api/items/{item_id_for_text(CALL_BACK.format('[phone]'))}", headers=AUTH
        )
        assert gone.status == 200
        third = await api.http.post("/api/predict", json={"text": c}, headers=AUTH)
        assert third.status == 200 and (await third.json())["id"] == item_id_for_text(c)
        many = await api.http.post("/api/items", json={"items": [{"text": c}]}, headers=AUTH)
        assert [r["id"] for r in (await many.json())["results"]] == [item_id_for_text(c)]
        assert sum(api.store.count_items().values()) == 2
