"""What reaches Slack is safe text (outside testers' findings hostile L1, intl L1 and M5):

- a label is escaped in every text the bot composes with it, in a code span in mrkdwn
  (`/hitl stats` "By label", `/hitl accuracy` "Weakest classes", a resolved question's
  notification text, the "Saved …", "already decided", "Undone" and "not in the label set"
  notes), so a label such as
  ``<https://evil.example|click me>`` cannot show as a disguised link nor ``<!channel>`` ping;
- a cut text keeps whole characters as people see them (a flag, 👍🏽, NFD "ệ", Thai tone
  marks, 👨‍👩‍👧‍👦) and never ends inside an ``&lt;`` escape;
- the type-ahead "Other…" menu matches as label names are compared (``label_key``: case and
  character form folded), so "STRASSE" finds "Straße" and an NFD query its NFC label.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.slack import blocks, guidelines
from bot.slack.blocks import Question, cut, encode_value, fit, question_text
from tests import signing
from tests.bot.harness import (
    SECRET,
    Bot,
    Item,
    block_suggestion_payload,
    make_settings,
    seed,
    start_bot,
)
from tests.bot.test_slack_bot import buttons, context_text
from tests.fake_slack import CHANNEL

EVIL = "<https://evil.example|click me>"
PING = "<!channel>"
LABELS = (EVIL, PING, "plain")
EVIL_SHOWN = "&lt;https://evil.example|click me&gt;"
PING_SHOWN = "&lt;!channel&gt;"


def assert_inert(text: str) -> None:
    """No live link or broadcast made of a label in ``text``."""
    assert "<https://evil" not in text and "<!channel>" not in text and "<!here>" not in text, text


@pytest.fixture
async def evil_bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "hello"), Item("b", "other")])
    settings = make_settings(fake_slack, tmp_path, labels=LABELS, max_open=1)
    async for running in start_bot(fake_slack, settings):
        yield running


def ephemerals_to(bot: Bot, user: str) -> list[str]:
    return [
        c.params["text"]
        for c in bot.fake.calls_to("chat.postEphemeral")
        if c.params["user"] == user
    ]


# -- hostile L1: labels are escaped in every text ---------------------------------------------


async def test_a_resolved_questions_notification_and_the_notes_escape_the_label(evil_bot: Bot):
    bot = evil_bot
    assert await bot.dispatcher.fill() == 1
    message = bot.posted()[0]
    assert set(buttons(message)) == set(LABELS)
    assert (await bot.action(bot.button_payload(message, "U0ANA", EVIL))).status == 200
    await bot.settled()
    item_id = bot.store.db["posts"].get(1)["item_id"]
    assert bot.store.resolution(item_id)["label"] == EVIL

    updates = [
        c.params for c in bot.fake.calls_to("chat.update") if c.params["ts"] == message["ts"]
    ]
    assert updates[-1]["text"] == f"Labeled {EVIL_SHOWN}: hello"
    assert ephemerals_to(bot, "U0ANA") == [
        f"Saved `{EVIL_SHOWN}`. Undo within 10 minutes if you change your mind."
    ]

    # Raj clicks the message he still sees: the item is decided, and he is told with what.
    assert (await bot.action(bot.button_payload(message, "U0RAJ", PING))).status == 200
    await bot.settled()
    assert ephemerals_to(bot, "U0RAJ") == [
        f"This one was already decided (labeled `{EVIL_SHOWN}`); thanks anyway!"
    ]

    # Ana undoes hers: the reply names the label, escaped.
    note = next(c.params for c in bot.fake.calls_to("chat.postEphemeral") if c.params.get("blocks"))
    drawn = note["blocks"] if isinstance(note["blocks"], list) else json.loads(note["blocks"])
    undo = signing.block_actions_payload(
        "U0ANA",
        blocks.UNDO_ACTION,
        drawn[0]["accessory"]["value"],
        message_ts=message["ts"],
        response_url=bot.fake.response_url(CHANNEL),
    )
    assert (await bot.action(undo)).status == 200
    await bot.settled()
    assert bot.fake.responses[-1]["payload"]["text"] == (
        f"Undone: `{EVIL_SHOWN}` is no longer the label. The question is open again."
    )
    for call in bot.fake.calls:
        if call.method in ("chat.update", "chat.postEphemeral", "chat.postMessage"):
            assert_inert(call.params.get("text") or "")
    for response in bot.fake.responses:
        assert_inert(response["payload"].get("text") or "")


async def test_a_click_on_a_label_not_in_the_set_is_told_with_the_label_escaped(evil_bot: Bot):
    bot = evil_bot
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    payload = bot.button_payload(message, "U0ANA", EVIL)
    payload["actions"][0]["value"] = encode_value("a", "<!here>")  # a value Slack never drew
    assert (await bot.action(payload)).status == 200
    await bot.settled()
    assert ephemerals_to(bot, "U0ANA") == [
        "`&lt;!here&gt;` is not in the label set any more; pick another."
    ]


VOTERS = {"U0ANA": [EVIL] * 6 + [PING] * 4, "U0RAJ": [EVIL] * 5 + [PING, EVIL] + [PING] * 3}


def answer_all(store) -> None:
    for user, labels in VOTERS.items():
        for n, label in enumerate(labels):
            store.record_answer(
                f"i{n}", user, label, source="button", dedupe_key=f"{n}{user}", votes_needed=2
            )


async def test_stats_by_label_escapes_the_labels_in_slack_and_shows_them_in_the_terminal(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    seed(db, [Item(f"i{n}", f"item {n}") for n in range(10)])
    settings = make_settings(fake_slack, tmp_path, labels=LABELS, votes=2)
    async for bot in start_bot(fake_slack, settings):
        answer_all(bot.store)
        response = await bot.command("stats", "U0RAJ")
        assert response.status == 200
        body = json.loads(await response.text())
        by_label = f"*By label* (specific agreement): `{PING_SHOWN}` 75% · `{EVIL_SHOWN}` 83%"
        assert by_label in body["text"].splitlines()
        assert by_label in [b["text"]["text"] for b in body["blocks"]]
        assert_inert(body["text"])
        assert_inert(json.dumps(body["blocks"]))
    # The terminal shows the label as it is (``plain`` undoes Slack's escape).
    result = CliRunner().invoke(
        cli,
        ["--db", str(db), "stats"],
        env={"HITL_VOTES": "2", "HITL_LABELS": ",".join(LABELS)},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"By label (specific agreement): {PING} 75% · {EVIL} 83%" in result.output.splitlines()


async def test_accuracy_weakest_classes_escapes_the_labels(fake_slack: FakeSlack, tmp_path: Path):
    from model import ModelRegistry, TextClassifier

    db = tmp_path / "hitl.db"
    texts = [
        "refund please",
        "charged twice",
        "app crashes",
        "login fails",
        "thanks a lot",
        "great",
    ]
    seed(db, [Item(f"i{n}", text) for n, text in enumerate(texts)])
    registry = ModelRegistry(db.with_name(db.name + ".models"))
    classifier = TextClassifier().fit(texts, [EVIL, EVIL, PING, PING, "plain", "plain"])
    per_class = {
        EVIL: {"precision": 0.1, "recall": 0.1, "f1": 0.10, "support": 2},
        PING: {"precision": 0.2, "recall": 0.2, "f1": 0.20, "support": 2},
        "plain": {"precision": 0.9, "recall": 0.9, "f1": 0.90, "support": 2},
    }
    metrics = {"accuracy": 0.5, "macro_f1": 0.4, "n_splits": 2, "per_class": per_class}
    registry.promote(registry.save(classifier, n_train=6, metrics=metrics).version)
    settings = make_settings(fake_slack, tmp_path, labels=LABELS)
    async for bot in start_bot(fake_slack, settings):
        response = await bot.command("accuracy", "U0ANA")
        assert response.status == 200
        body = await response.text()  # a plain text ack, unless it carries blocks
        text = json.loads(body)["text"] if body.startswith("{") else body
        weakest = (
            f"*Weakest classes:* `{EVIL_SHOWN}` (F1 0.10, n=2), `{PING_SHOWN}` (F1 0.20, n=2),"
            " `plain` (F1 0.90, n=2)"
        )
        assert weakest in text.splitlines(), text
        assert_inert(text)


# -- intl L1: cuts keep whole characters ------------------------------------------------------

NFD_E = unicodedata.normalize("NFD", "ệ")  # e, dot below, circumflex
HANGUL_NFD = unicodedata.normalize("NFD", "한")
CLUSTERS = {  # each a list of what people see as one character each
    "flags": ["🇯🇵", "🇩🇪", "🇹🇷"],
    "skin tone": ["👍🏽"],
    "nfd": [NFD_E],
    "thai": ["ที่", "นี่", "ทำ"],
    "family": ["👨‍👩‍👧‍👦"],
    "keycap": ["1\ufe0f\u20e3"],
    "tag flag": ["🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"],
    "hangul nfd": [HANGUL_NFD],
}


def made_of(units: list[str], n: int, prefix: str = "") -> tuple[str, set[int]]:
    """``prefix`` and ``n`` of ``units`` in turn, and the positions between characters."""
    parts = [*prefix, *(units[k % len(units)] for k in range(n))]
    ends, at = {0}, 0
    for part in parts:
        at += len(part)
        ends.add(at)
    return "".join(parts), ends


@pytest.mark.parametrize("name", CLUSTERS)
def test_grapheme_end_moves_a_cut_to_the_nearest_boundary_on_its_left(name: str):
    text, ends = made_of(CLUSTERS[name], 9, prefix="ab")
    for at in range(len(text) + 1):
        assert blocks.grapheme_end(text, at) == max(e for e in ends if e <= at), (name, at)


def whole_head(head: str, text: str, ends: set[int]) -> bool:
    return text.startswith(head) and len(head) in ends


@pytest.mark.parametrize("name", CLUSTERS)
@pytest.mark.parametrize("shift", range(4))
def test_cut_fit_fallback_and_meta_keep_whole_characters(name: str, shift: int):
    units = CLUSTERS[name]
    text, ends = made_of(units, 3100 // min(len(u) for u in units) + 1, prefix="x" * shift)
    quoted = cut(text)
    head = quoted[: quoted.index("… _(cut")]
    assert whole_head(head, text, ends) and len(quoted) <= blocks.TEXT_BUDGET, name
    assert len(head) > blocks.TEXT_BUDGET - 60

    fitted = fit(text)
    assert fitted.endswith("…") and len(fitted) <= blocks.TEXT_LIMIT
    assert whole_head(fitted[:-1], text, ends) and len(fitted) > blocks.TEXT_LIMIT - 12

    fallback = question_text(Question(item_id="x", text=text, labels=["a"]))
    shown = fallback.removeprefix("Which label fits? ")
    assert shown.endswith("…") and len(shown) <= blocks.FALLBACK_LIMIT
    assert whole_head(shown[:-1], text, ends) and len(shown) > blocks.FALLBACK_LIMIT - 12

    line = guidelines.meta_line({"note": text}, ["note"])
    value = line.removeprefix("note: ")
    assert value.endswith("…") and len(value) <= guidelines.META_VALUE_LIMIT
    assert whole_head(value[:-1], text, ends) and len(value) > guidelines.META_VALUE_LIMIT - 12


@pytest.mark.parametrize("shift", range(5))
def test_the_fallback_and_meta_never_end_inside_an_escape(shift: int):
    text = "a" * (blocks.FALLBACK_LIMIT - 4 + shift) + "<b>" * 100
    shown = question_text(Question(item_id="x", text=text, labels=["a"]))
    shown = shown.removeprefix("Which label fits? ")
    assert len(shown) <= blocks.FALLBACK_LIMIT
    head = shown[:-1]
    assert head.rfind("&") < head.rfind(";") or "&" not in head, head[-12:]

    meta = "a" * (guidelines.META_VALUE_LIMIT - 4 + shift) + "&" * 100
    value = guidelines.meta_line({"n": meta}, ["n"]).removeprefix("n: ")[:-1]
    assert value.endswith(("a", "&amp;")), value[-12:]


async def test_a_posted_question_keeps_whole_flags_in_its_quote_notification_and_meta(
    fake_slack: FakeSlack, tmp_path: Path
):
    flags = CLUSTERS["flags"]
    text, ends = made_of(flags, 1600)  # 3,200 characters: each cut at an odd length is in a flag
    meta, meta_ends = made_of(flags, 150)
    seed(tmp_path / "hitl.db", [Item("f", text, meta={"country": meta})])
    settings = make_settings(fake_slack, tmp_path, show_meta=("country",))
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 1
        [posted] = bot.fake.calls_to("chat.postMessage")
        fallback = posted.params["text"].removeprefix("Which label fits? ")
        assert whole_head(fallback[:-1], text, ends), ascii(fallback[-6:])
        message = bot.posted()[0]
        quote = message["blocks"][0]["text"]["text"]
        assert whole_head(quote[1 : quote.index("… _(cut")], text, ends), ascii(quote[-60:])
        shown = context_text(message)
        value = shown[shown.index("country: ") + len("country: ") :].split("\n")[0]
        assert value.endswith("…") and whole_head(value[:-1], meta, meta_ends), ascii(value[-6:])


# -- intl M5: the type-ahead menu folds case and character form -------------------------------

MANY = tuple(f"label {n:03d}" for n in range(110)) + ("Straße", "Café", "İade")


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("STRASSE", ["Straße"]),  # casefold: ß is ss
        ("straße", ["Straße"]),
        (unicodedata.normalize("NFD", "café"), ["Café"]),  # NFD query, NFC label
        ("AF", ["Café"]),
        ("label 10", [f"label {n}" for n in range(100, 110)]),
    ],
)
async def test_the_type_ahead_menu_matches_as_label_names_compare(
    fake_slack: FakeSlack, tmp_path: Path, query: str, found: list[str]
):
    seed(tmp_path / "hitl.db", [Item("a", "hello")])
    settings = make_settings(fake_slack, tmp_path, labels=MANY)
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 1
        actions = next(b for b in bot.posted()[0]["blocks"] if b["type"] == "actions")
        select = next(e for e in actions["elements"] if e["type"] == "external_select")
        suggestion = block_suggestion_payload(
            "U0ANA", select["action_id"], actions["block_id"], query
        )
        response = await bot.post(*signing.signed_action(suggestion, SECRET))
        assert response.status == 200
        assert [o["value"] for o in (await response.json())["options"]] == found


def test_a_cut_inside_a_code_span_or_block_closes_it():
    """A text over Slack's limit cut inside the trend's preformatted block left it open (the
    "…" and any later block shown as code, or Slack showing the backticks), and one cut inside
    a label's code span showed a stray backtick before the label."""
    from bot.learning.reports import VersionPoint, trend_table

    points = [VersionPoint(v, "rejected", 40 * v, 0.8, 0.7, "") for v in range(1, 11)]
    table = trend_table(points)
    text = "*Weakest classes:* " + "x" * (blocks.TEXT_LIMIT - 200) + "\n*Trend:*\n" + table
    fitted = fit(text)
    assert len(fitted) <= blocks.TEXT_LIMIT and fitted.endswith("…```")
    assert fitted.count("```") == 2 and text.startswith(fitted[: -len("…```")])

    listed = ",".join(f"`label-{n:04}`" for n in range(400))  # nearly all of it in spans
    ends = set()
    for pad in range(13):  # the cut at each place in a span's 13 characters
        spans = "*By label:*" + " " * pad + listed
        fitted = fit(spans)
        assert len(fitted) <= blocks.TEXT_LIMIT and fitted.count("`") % 2 == 0, pad
        head = fitted.removesuffix("`").removesuffix("…")
        assert spans.startswith(head) and len(head) > blocks.TEXT_LIMIT - 20, pad
        ends.add(fitted[-2:])
    assert "…`" in ends  # closed where the cut is inside a span

    plain = "word " * 700  # no code: cut as before, "…" alone
    assert fit(plain) == plain[: blocks.TEXT_LIMIT - 1].rstrip(" ") + "…"
