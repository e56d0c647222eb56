"""What people read in Slack (outside tester "st", seam slack-text), through the real server:

1. an error under the review window's Decision menu names a label as people wrote it (no Python
   repr: no ``\\'`` nor ``\\u200d``), and a cut one is cut between whole characters, with "…";
2. ``HITL_SHOW_META`` shows a structured meta value as the producer sent it (JSON), not as
   Python (``True``, ``{'name': …}``, ``['a', 'b']``);
3. an item's text of only invisible characters (a zero-width space, a BOM, a soft hyphen, a
   word joiner) is refused as an empty one, by the producer API and by `hitl import`;
4. `/hitl labels` quotes a long label or word cut between whole characters, with "…".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.slack.blocks import grapheme_end
from bot.slack.review import DECISION_ACTION, DECISION_BLOCK, REMOVE, REVIEW_CALLBACK
from bot.store import Store
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

APOSTROPHES = "l'appel n'a pas \"abouti\""
FAMILY = "👨\u200d👩\u200d👧\u200d👦"  # one character as people see it, 7 code points
FAMILIES = "réclamation " + FAMILY * 6  # 54 code points: a label in full
HINDI = "शिकायत"  # श ि क ा य त: the vowel signs ि and ा belong to the consonant before them
LONG_ID = "T-1" + HINDI * 30  # quoted by the store's error: cut at 150 between क and ा before


async def reply_to(bot: Bot, text: str) -> str:
    """The answer to an admin's `/hitl TEXT` (plain text, or a JSON message)."""
    response = await bot.command(text, "U0ADMIN")
    assert response.status == 200
    body = await response.text()
    return json.loads(body)["text"] if body.startswith("{") else body


def whole_head(shown: str, full: str) -> bool:
    """Whether ``shown`` is ``full`` cut between whole characters, said with "…"."""
    if not shown.endswith("…"):
        return False
    head = shown.removesuffix("…")
    return full.startswith(head) and grapheme_end(full, len(head)) == len(head) and head != full


# -- 1. the review window's errors -----------------------------------------------------------


@pytest.fixture
async def review_bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(LONG_ID, "the call dropped")])
    labels = ("billing", "bug", APOSTROPHES, FAMILIES)
    settings = make_settings(fake_slack, tmp_path, labels=labels, max_open=1, votes=2)
    async for running in start_bot(fake_slack, settings):
        yield running


async def open_split_review(bot: Bot) -> dict:
    """Two people answer the one question with two labels (a split: it goes to review); an
    admin opens `/hitl review` on it: the window as drawn."""
    await bot.dispatcher.fill()
    await bot.settled()
    [message] = bot.posted()
    for user, label in (("U0ANA", "billing"), ("U0RAJ", "bug")):
        now = bot.fake.message(CHANNEL, message["ts"])
        assert (await bot.action(bot.button_payload(now, user, label))).status == 200
        await bot.settled()
    assert bot.store.next_review() is not None
    assert (await bot.command("review", "U0ADMIN")).status == 200
    return (await bot.fake.next_call("views.open")).reply["view"]


def submission(view: dict, value: str) -> dict:
    """An admin submits the review window ``view`` with the decision ``value``."""
    option = {"text": {"type": "plain_text", "text": "a decision"}, "value": value}
    chosen = {"type": "static_select", "selected_option": option}
    values = {DECISION_BLOCK: {DECISION_ACTION: chosen}}
    return signing.view_submission_payload(
        REVIEW_CALLBACK, values, user_id="U0ADMIN", private_metadata=view["private_metadata"]
    )


async def submitted_error(bot: Bot, view: dict, value: str) -> str:
    """The error Slack shows under the Decision menu when ``value`` is submitted."""
    answer = json.loads(await (await bot.action(submission(view, value))).text())
    assert answer["response_action"] == "errors", answer
    return answer["errors"][DECISION_BLOCK]


async def test_a_label_retired_while_the_review_window_was_open_is_named_as_written(
    review_bot: Bot,
):
    bot = review_bot
    view = await open_split_review(bot)
    [menu] = [b for b in view["blocks"] if b.get("block_id") == DECISION_BLOCK]
    options = [option["value"] for option in menu["element"]["options"]]
    assert f"label:{APOSTROPHES}" in options and f"label:{FAMILIES}" in options
    for label in (APOSTROPHES, FAMILIES):  # another admin retires them meanwhile
        assert (await reply_to(bot, f'labels retire "{label}"')).startswith("Done."), label
    await bot.settled()

    said = await submitted_error(bot, view, f"label:{APOSTROPHES}")
    assert said == f'"{APOSTROPHES}" is not in the label set any more; pick another.'
    said = await submitted_error(bot, view, f"label:{FAMILIES}")
    assert said == f'"{FAMILIES}" is not in the label set any more; pick another.'
    assert "\\" not in said


async def test_a_click_in_the_channel_on_a_label_retired_meanwhile_names_it_as_written(
    review_bot: Bot,
):
    """The channel's note said the label as Python writes it (``'l\\'appel …'``, ``\\u200d``)."""
    bot = review_bot
    await bot.dispatcher.fill()
    await bot.settled()
    [message] = bot.posted()
    for label in (APOSTROPHES, FAMILIES):
        assert (await reply_to(bot, f'labels retire "{label}"')).startswith("Done."), label
    await bot.settled()
    said = []
    for label in (APOSTROPHES, FAMILIES):  # the buttons drawn before the retire
        assert (await bot.action(bot.button_payload(message, "U0ANA", label))).status == 200
        said.append((await bot.fake.next_call("chat.postEphemeral")).params["text"])
    assert said == [
        f"`{APOSTROPHES}` is not in the label set any more; pick another.",
        f"`{FAMILIES}` is not in the label set any more; pick another.",
    ]
    assert bot.store.count_answers() == 0


async def test_a_value_longer_than_any_label_is_cut_between_characters_in_the_error(
    review_bot: Bot,
):
    bot = review_bot
    view = await open_split_review(bot)
    # a value longer than any label (an old or forged option): cut, never inside the family
    forged = "famille " + FAMILY * 20
    said = await submitted_error(bot, view, f"label:{forged}")
    shown = said.removeprefix('"').removesuffix('" is not in the label set any more; pick another.')
    assert said.startswith('"') and shown != said
    assert whole_head(shown, forged), said
    assert len(shown) <= 80


async def test_a_long_store_error_in_the_review_window_is_cut_between_characters(
    review_bot: Bot,
):
    bot = review_bot
    view = await open_split_review(bot)
    # "Remove" sets the split item aside; "Remove" again, in a window opened on it by its id,
    # is refused by the store, whose error quotes the long id: cut to 150 characters, between
    # whole characters, with "…"
    answer = json.loads(await (await bot.action(submission(view, REMOVE))).text())
    assert answer["response_action"] == "update", answer
    await bot.settled()
    assert bot.store.get_item(LONG_ID)["status"] == "skipped"
    reopened = await bot.command(f"review {LONG_ID}", "U0ADMIN", trigger_id="1700000001.1.b")
    assert reopened.status == 200
    view = (await bot.fake.next_call("views.open")).reply["view"]
    said = await submitted_error(bot, view, REMOVE)
    full = f'item "{LONG_ID}" has no label to remove'  # the store's words, cut at 150 before
    assert whole_head(said, full), said  # no vowel sign left off its consonant
    assert len(said) <= 150


# -- 2. HITL_SHOW_META ------------------------------------------------------------------------

AUTH = {"Authorization": "Bearer tok-123", "Content-Type": "application/json"}


@pytest.fixture
async def api_bot(fake_slack: FakeSlack, tmp_path: Path):
    settings = make_settings(
        fake_slack,
        tmp_path,
        max_open=10,
        api_token="tok-123",
        show_meta=("customer", "vip", "tags", "closed", "many", "empty"),
    )
    async for running in start_bot(fake_slack, settings):
        yield running


def meta_line_of(message: dict) -> str:
    texts = [e["text"] for b in message["blocks"] if b["type"] == "context" for e in b["elements"]]
    return texts[-1]


async def test_structured_meta_values_read_as_the_producer_sent_them(api_bot: Bot):
    bot = api_bot
    meta = {
        "customer": {"name": "ACME", "plan": "pro", "note": "<!channel> & co"},
        "vip": True,
        "tags": ["refund", "urgent", 3, None, {"k": False}],
        "closed": False,
        "empty": [],
    }
    item = {"id": "T-1", "text": "I was charged twice", "meta": meta}
    response = await bot.http.post("/api/items", data=json.dumps({"items": [item]}), headers=AUTH)
    assert response.status == 200, await response.text()
    await bot.dispatcher.fill()
    await bot.settled()
    [message] = bot.posted()
    assert meta_line_of(message) == (
        'customer: {"name": "ACME", "plan": "pro", "note": "&lt;!channel&gt; &amp; co"}'
        ' · vip: true · tags: refund, urgent, 3, null, {"k": false} · closed: false'
    )


async def test_a_long_structured_meta_value_is_cut_to_200_characters_with_a_marker(api_bot: Bot):
    bot = api_bot
    many = list(range(100_000))  # written out only as far as it is shown
    nested = {"name": "é" * 300}
    item = {"id": "T-2", "text": "long meta", "meta": {"many": many, "customer": nested}}
    response = await bot.http.post("/api/items", data=json.dumps({"items": [item]}), headers=AUTH)
    assert response.status == 200, await response.text()
    await bot.dispatcher.fill()
    await bot.settled()
    [message] = bot.posted()
    customer, many_shown = meta_line_of(message).split(" · ")
    assert customer == "customer: " + ('{"name": "' + "é" * 300)[:199] + "…"
    assert many_shown == "many: " + ", ".join(map(str, many))[:199] + "…"


# -- 3. a text of only invisible characters ---------------------------------------------------

INVISIBLE = ["\u200b\u200b", "\ufeff", "\u00ad", "\u2060", " \u200b\u2060 ", "\x00\u200b"]


async def test_the_producer_api_refuses_a_text_of_only_invisible_characters(api_bot: Bot):
    bot = api_bot
    for n, text in enumerate(INVISIBLE):
        items = {"items": [{"id": f"b{n}", "text": text}]}
        response = await bot.http.post("/api/items", data=json.dumps(items), headers=AUTH)
        answer = await response.json()
        assert (response.status, answer["created"], answer["rejected"]) == (200, 0, 1), answer
        assert answer["results"][0]["error"] == "items[0].text is empty", answer
        assert bot.store.get_item(f"b{n}") is None
    # a text with one character that shows is a text (a zero-width space beside it or not)
    items = {"items": [{"id": "ok", "text": "\u200bhello\u2060"}]}
    response = await bot.http.post("/api/items", data=json.dumps(items), headers=AUTH)
    assert response.status == 200, await response.text()
    await bot.dispatcher.fill()
    await bot.settled()
    [message] = bot.posted()  # the one item with a text is the one question
    assert "hello" in message["text"]


def test_hitl_import_refuses_a_text_of_only_invisible_characters_naming_the_line(tmp_path: Path):
    path = tmp_path / "items.jsonl"
    rows = [{"id": f"b{n}", "text": text} for n, text in enumerate(INVISIBLE)]
    rows.append({"id": "ok", "text": "a text people can read"})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    db = tmp_path / "hitl.db"
    result = CliRunner().invoke(
        cli, ["--db", str(db), "import", str(path)], catch_exceptions=False, prog_name="hitl"
    )
    assert result.exit_code == 0, result.output
    said = (
        'column "text" has no visible characters (only invisible ones: a zero-width space, a'
        " byte-order mark, a soft hyphen, …), row skipped"
    )
    assert result.stderr.splitlines() == [
        f"items.jsonl line {n}: {said}" for n in range(1, len(INVISIBLE) + 1)
    ]
    with Store.open(db) as store:
        assert [item["id"] for item in store.db["items"].rows] == ["ok"]


def test_hitl_import_of_a_csv_refuses_an_invisible_only_cell(tmp_path: Path):
    path = tmp_path / "items.csv"
    path.write_text("id,text\n1,\u200b\u00ad\n2,visible\n", encoding="utf-8")
    db = tmp_path / "hitl.db"
    result = CliRunner().invoke(
        cli, ["--db", str(db), "import", str(path)], catch_exceptions=False, prog_name="hitl"
    )
    assert result.exit_code == 0, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith('items.csv line 2: column "text" has no visible characters'), line
    with Store.open(db) as store:
        assert [item["id"] for item in store.db["items"].rows] == ["2"]


# -- 4. `/hitl labels` quotes a long label cut between whole characters -----------------------


@pytest.fixture
async def labels_bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "hello")])
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        yield running


def between(text: str, start: str, end: str) -> str:
    at = text.index(start) + len(start)
    return text[at : text.index(end, at)]


@pytest.mark.parametrize(
    "label",
    ["UPI " + (HINDI + " ") * 12, "family " + FAMILY * 11],
    ids=["devanagari", "emoji-family"],
)
async def test_an_over_long_label_is_quoted_cut_between_characters_with_a_marker(
    labels_bot: Bot, label: str
):
    said = await reply_to(labels_bot, f'labels add "{label}"')
    assert said.startswith("Cannot add: the label `") and "is over 75 characters" in said, said
    shown = between(said, "the label `", "`")
    assert whole_head(shown, label.strip()), said
    assert len(shown) <= 40


async def test_an_unknown_long_change_word_is_quoted_cut_between_characters(labels_bot: Bot):
    word = "a" + HINDI * 10  # cut at 40 code points: between क and its vowel sign ा
    said = await reply_to(labels_bot, f"labels {word}")
    shown = between(said, "`/hitl labels ", "`")
    assert whole_head(shown, word), said


async def test_a_long_label_in_the_right_form_is_quoted_cut_between_characters(labels_bot: Bot):
    name = "x" + (HINDI + " ") * 13  # cut at 79 code points: between श and its vowel sign ि
    said = await reply_to(labels_bot, f'labels rename "{name.strip()}"')
    assert "needs OLD and NEW" in said, said
    shown = between(said, '/hitl labels rename "', '" NEW')
    assert whole_head(shown, name.strip()), said
    assert len(shown) <= 80


# -- 5. review "rvst": `/hitl labels`, `hitl labels` and the store name labels and ids as written

PERSIAN = "درخواست\u200cها"  # "requests": the ZERO WIDTH NON-JOINER is part of its spelling
KIN = "👨\u200d👩\u200d👧 family"


async def test_hitl_labels_replies_name_a_label_as_written_without_a_python_repr(
    labels_bot: Bot,
):
    bot = labels_bot
    assert (await reply_to(bot, f"labels add {PERSIAN}")).startswith("Done."), PERSIAN
    again = await reply_to(bot, f"labels add {PERSIAN}")
    assert again == f'Cannot add: "{PERSIAN}" is in the label set already', again
    unknown = await reply_to(bot, f'labels retire "{KIN}"')
    assert unknown.startswith(f'Cannot retire: "{KIN}" is not in the label set ('), unknown
    # the reply is mrkdwn: a name the store words is escaped there (no mention, no link)
    loud = await reply_to(bot, 'labels retire "<!channel> & co"')
    assert loud.startswith('Cannot retire: "&lt;!channel&gt; &amp; co" is not in the'), loud
    taken = await reply_to(bot, f'labels rename bug "{PERSIAN}"')
    assert taken == (
        f'Cannot rename: "{PERSIAN}" is in the label set already; merge "bug" into it instead'
    ), taken
    for said in (again, unknown, loud, taken):
        assert "\\u200" not in said and "'" not in said, said


def hitl(db: Path, *args: str):
    return CliRunner().invoke(
        cli,
        ["--db", str(db), *args],
        env={"HITL_LABELS": "billing,bug"},
        catch_exceptions=False,
        prog_name="hitl",
    )


def test_hitl_labels_names_a_label_and_an_id_as_written_in_one_line(tmp_path: Path):
    db = tmp_path / "hitl.db"
    windows = "C:\\tmp\\1"  # an id with backslashes: shown with one each, as written
    seed(db, [Item(windows, "refund please", "billing"), Item("T-2", "app crashes", "bug")])
    assert hitl(db, "labels", "add", PERSIAN).exit_code == 0
    again = hitl(db, "labels", "add", PERSIAN)
    assert (again.exit_code, again.stderr) == (
        1,
        f'Error: "{PERSIAN}" is in the label set already\n',
    )
    retired = hitl(db, "labels", "retire", KIN)
    assert retired.stderr == f'Error: "{KIN}" is not in the label set (billing, bug, {PERSIAN})\n'
    assert hitl(db, "labels", "remove", windows).exit_code == 0
    twice = hitl(db, "labels", "remove", windows)
    assert twice.stderr == 'Error: item "C:\\tmp\\1" has no label to remove\n'
    # an id typed with a line break is named on one line, the break written as \n
    missing = hitl(db, "labels", "remove", "T-2\nT-3")
    assert missing.stderr == (
        'Error: no item with id "T-2\\nT-3"; `hitl export` lists the labeled ones\n'
    )
    unset = hitl(db, "labels", "set", "T-2", "T-\u200b9", "billing")
    assert unset.stderr == (
        'Error: no item with id "T-\\u200b9"; nothing changed (`hitl export` lists the labeled'
        " ones)\n"
    )


# -- 6. review "rvst": format characters that draw a glyph are text ---------------------------

DRAWN = [
    "\u0600", "\u0601", "\u0602", "\u0603", "\u0604", "\u0605", "\u06dd", "\u070f",
    "\u0890", "\u0891", "\u08e2", "\U000110bd", "\U000110cd",
]  # fmt: skip


async def test_a_text_of_a_format_character_that_draws_a_glyph_is_a_text(api_bot: Bot):
    """Unicode's Prepended_Concatenation_Mark characters (۝ ARABIC END OF AYAH, the Arabic
    number sign, ...) are format characters that show: a text of one is not empty."""
    bot = api_bot
    items = [{"id": f"m{n}", "text": char} for n, char in enumerate(DRAWN)]
    items.append({"id": "zw", "text": "\u200b"})  # a zero-width space still shows nothing
    response = await bot.http.post("/api/items", data=json.dumps({"items": items}), headers=AUTH)
    answer = await response.json()
    assert (response.status, answer["created"], answer["rejected"]) == (
        200,
        len(DRAWN),
        1,
    ), answer
    assert [bot.store.get_item(f"m{n}")["text"] for n in range(len(DRAWN))] == DRAWN
    from bot.labelnames import shows_nothing

    assert not any(shows_nothing(char) for char in DRAWN)
    assert shows_nothing("\u200b\u2060") and not shows_nothing("\u200b\u06dd 12")


# -- 7. review "rvst": a plain-text import skips a line that shows nothing as a blank one -----


def test_a_text_import_skips_a_line_of_invisible_characters_as_a_blank_line(tmp_path: Path):
    path = tmp_path / "msgs.txt"
    lines = ["first message", "", "\u2800", "\ufeff", "\u200b\u00ad ", "\u3164", "second", "۝"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = tmp_path / "hitl.db"
    result = CliRunner().invoke(
        cli, ["--db", str(db), "import", str(path)], catch_exceptions=False, prog_name="hitl"
    )
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    assert result.stdout.startswith("msgs.txt: read 3 rows, imported 3 "), result.stdout
    assert result.stdout.endswith(", 0 rejected\n"), result.stdout
    with Store.open(db) as store:
        texts = sorted(item["text"] for item in store.db["items"].rows)
    assert texts == sorted(["first message", "second", "۝"])


# -- 8. review "rvst": the OpenAPI document says a text of invisible characters is empty -------


def test_the_text_pattern_refuses_every_text_the_server_takes_for_empty():
    """The document's pattern lists code points; the server asks ``shows_nothing`` (NULs left
    out). Checked over every code point this Python's Unicode assigns (the list also names
    the Egyptian format controls newer Unicode assigns, as the id pattern does)."""
    import re
    import sys
    import unicodedata

    from bot.api.routes import OPENAPI_BYTES  # the document as served

    text = json.loads(OPENAPI_BYTES)["components"]["schemas"]["ItemIn"]["properties"]["text"]
    shows = re.compile(text["pattern"])
    for empty in ["\u200b", "\ufeff", "\u00ad", "\u2060", "\u2800", "\u3164", "\x00\u200b"]:
        assert not shows.search(f" {empty} "), ascii(empty)
    for full in ["۝", "a", "👩\u200d💻", "\u200bhello", "\U000f0000"]:
        assert shows.search(full), ascii(full)
    assert "invisible characters" in text["description"]

    from bot.labelnames import shows_nothing

    wrong = [
        f"U+{code:04X}"
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) not in ("Cs", "Cn")
        and bool(shows.search(chr(code))) == shows_nothing(chr(code).replace("\x00", ""))
    ]
    assert wrong == []


# -- 9. review "rvst": a meta list of empty texts ---------------------------------------------


async def test_a_meta_list_leaves_out_its_empty_texts(api_bot: Bot):
    bot = api_bot
    meta = {"tags": ["", "", ""], "customer": ["refund", "", "urgent"], "many": [""]}
    item = {"id": "T-3", "text": "charged twice", "meta": meta}
    response = await bot.http.post("/api/items", data=json.dumps({"items": [item]}), headers=AUTH)
    assert response.status == 200, await response.text()
    await bot.dispatcher.fill()
    await bot.settled()
    [message] = bot.posted()
    assert meta_line_of(message) == "customer: refund, urgent"
