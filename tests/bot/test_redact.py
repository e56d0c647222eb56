"""HITL_REDACT: card numbers, emails and phone numbers are replaced as items arrive, by import
and by the API, before anything stores, scores or posts them; ids come from the text as it
came, so the same ticket sent again is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.config import load_settings
from bot.errors import ConfigError
from bot.ingest import item_id_for_text
from bot.ingest.redact import Redactor
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.test_api import AUTH, start_api
from tests.fake_slack import CHANNEL

CARD = "4111 1111 1111 1111"  # passes the Luhn check, as card numbers do


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (f"my card is {CARD}, refund", "my card is [card], refund"),
        ("card 4111-1111-1111-1111.", "card [card]."),
        ("card 4111.1111.1111.1111 ok", "card [card] ok"),
        ("call 0044 7700 900999", "call [phone]"),  # not a card: no network starts with 0
        ("v1.2.3.4, 2026.12.05, 1.234.567", "v1.2.3.4, 2026.12.05, 1.234.567"),
        ("order 4111 1111 1111 1112 failed", "order 4111 1111 1111 1112 failed"),  # no Luhn
        ("order 1234567890123 failed", "order 1234567890123 failed"),
        ("mail JANE.DOE@example.co.uk now", "mail [email] now"),
        ("call +44 7700 900999 or (020) 7946 0958", "call [phone] or [phone]"),
        ("+1-202-555-0143", "[phone]"),
        (
            "on 2026-12-05 at 10:30, v1.2.3, 1,234.56 EUR",
            "on 2026-12-05 at 10:30, v1.2.3, 1,234.56 EUR",
        ),
        ("ticket 12345678 and T-1001", "ticket 12345678 and T-1001"),
    ],
)
def test_each_kind_is_replaced_and_lookalikes_are_left(text: str, redacted: str):
    assert Redactor(("card", "email", "phone")).item(text, {})[0] == redacted


def test_a_card_number_sent_as_a_number_in_meta_is_replaced_too():
    text, meta = Redactor(("card",)).item("x", {"pan": 4111111111111111, "n": 12, "ok": True})
    assert meta == {"pan": "[card]", "n": 12, "ok": True}


def test_turning_redaction_on_or_off_keeps_a_re_import_of_the_same_file_working(tmp_path: Path):
    """Items stored before HITL_REDACT was turned on keep their text; the same file imported
    again (a nightly sync) found them stored "with another text" and failed, and so did one
    after it was turned off."""
    db = tmp_path / "hitl.db"
    path = tmp_path / "sync.jsonl"
    path.write_text(json.dumps({"id": "S-1", "text": f"card {CARD}"}) + "\n")
    assert CliRunner().invoke(cli, ["--db", str(db), "import", str(path)]).exit_code == 0
    on = CliRunner().invoke(
        cli, ["--db", str(db), "import", str(path)], env={"HITL_REDACT": "card"}
    )
    assert on.exit_code == 0, on.output
    assert "imported 0 (0 with labels), 1 duplicate, 0 rejected" in on.stdout
    db2 = tmp_path / "other.db"
    env = {"HITL_REDACT": "card"}
    assert CliRunner().invoke(cli, ["--db", str(db2), "import", str(path)], env=env).exit_code == 0
    off = CliRunner().invoke(cli, ["--db", str(db2), "import", str(path)])
    assert off.exit_code == 0, off.output
    assert "imported 0 (0 with labels), 1 duplicate, 0 rejected" in off.stdout
    with Store.open(db2) as store:
        assert store.get_item("S-1")["text"] == "card [card]"


def test_only_the_kinds_named_are_replaced_in_text_and_meta():
    redactor = Redactor(("email",))
    text, meta = redactor.item(
        f"{CARD} from a@b.io", {"from": "a@b.io", "n": 3, "cc": ["c@d.io"], "deep": {"x": "e@f.io"}}
    )
    assert text == f"{CARD} from [email]"
    assert meta == {"from": "[email]", "n": 3, "cc": ["[email]"], "deep": {"x": "[email]"}}
    assert redactor.changed == 1
    assert redactor.item("nothing", {"n": 1}) == ("nothing", {"n": 1})
    assert redactor.changed == 1


def test_an_unknown_kind_is_one_line_naming_the_kinds():
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_REDACT": "card,iban"}, None)
    assert str(caught.value) == (
        "HITL_REDACT=\"card,iban\" names 'iban'; use some of card, email, phone"
    )
    assert load_settings({"HITL_REDACT": "card, email"}, None).redact == ("card", "email")


def test_an_import_stores_the_redacted_text_and_a_second_import_finds_its_items(tmp_path: Path):
    db = tmp_path / "hitl.db"
    path = tmp_path / "tickets.jsonl"
    rows = [
        {"id": "T-1", "text": f"card {CARD} please", "meta": {"from": "jane@example.com"}},
        {"text": f"no id, card {CARD}", "label": "billing"},
        {"id": "T-3", "text": "nothing personal", "label": "bug"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {"HITL_REDACT": "card,email"}
    done = CliRunner().invoke(cli, ["--db", str(db), "import", str(path)], env=env)
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[-1] == (
        "tickets.jsonl: personal data replaced in 2 items (HITL_REDACT=card,email) before they"
        " were stored"
    )
    with Store.open(db) as store:
        assert store.get_item("T-1")["text"] == "card [card] please"
        assert store.get_item("T-1")["meta"] == {"from": "[email]"}
        # a row without an id is named by its redacted text: a hash of the text as it came,
        # shown beside the redacted text in every export, would let the number be guessed back
        assert store.get_item(item_id_for_text(f"no id, card {CARD}")) is None
        assert store.get_item(item_id_for_text("no id, card [card]"))["text"] == (
            "no id, card [card]"
        )
    assert CARD.encode() not in db.read_bytes()
    again = CliRunner().invoke(cli, ["--db", str(db), "import", str(path)], env=env)
    assert "imported 0 (0 with labels), 3 duplicates, 0 rejected" in again.stdout, again.output


async def test_the_api_stores_and_posts_the_redacted_text(fake_slack: FakeSlack, tmp_path: Path):
    async for api in start_api(fake_slack, tmp_path, max_open=2, redact=("card", "phone")):
        one = await api.http.post(
            "/api/predict", json={"id": "P-1", "text": f"card {CARD}"}, headers=AUTH
        )
        assert one.status == 200
        many = await api.http.post(
            "/api/items",
            json={"items": [{"id": "P-2", "text": "call +44 7700 900999", "meta": {"p": CARD}}]},
            headers=AUTH,
        )
        assert [r["result"] for r in (await many.json())["results"]] == ["created"]
        assert api.store.get_item("P-1")["text"] == "card [card]"
        assert api.store.get_item("P-2")["text"] == "call [phone]"
        assert api.store.get_item("P-2")["meta"] == {"p": "[card]"}
        # sent without an id, it is named by its redacted text, and found again by it
        bare = await api.http.post("/api/predict", json={"text": f"no id {CARD}"}, headers=AUTH)
        assert (await bare.json())["id"] == item_id_for_text("no id [card]")
        again = await api.http.post("/api/predict", json={"text": f"no id {CARD}"}, headers=AUTH)
        assert (await again.json())["id"] == item_id_for_text("no id [card]")
        # the same ticket sent again is the same item, not a conflict
        resent = await api.http.post(
            "/api/predict", json={"id": "P-1", "text": f"card {CARD}"}, headers=AUTH
        )
        assert resent.status == 200 and (await resent.json())["id"] == "P-1"
        assert await api.dispatcher.fill() == 2  # of 3: max_open
        shown = json.dumps(api.fake.messages(CHANNEL))
        assert "[card]" in shown and "4111" not in shown and "7700" not in shown
