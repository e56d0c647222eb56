"""Block Kit builders: limits checked by slack_sdk's models, text escaped and cut safely."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from slack_sdk.errors import SlackObjectFormationError

from bot.config import Settings
from bot.slack import blocks
from bot.slack.blocks import Question, question_blocks
from bot.slack.questions import build_question
from bot.store import Store
from tests.bot.harness import Item


def as_dicts(built) -> list[dict]:
    return [b.to_dict() for b in built]  # to_dict() runs slack_sdk's limit checks


def test_item_text_cannot_ping_or_link():
    q = Question("i1", "hey <!channel> <@U123> <https://evil.example|click> & more", ["a", "b"])
    text = as_dicts(question_blocks(q))[0]["text"]["text"]
    assert "<" not in text and ">" not in text.lstrip(">")
    assert "&lt;!channel&gt;" in text and "&amp; more" in text


def test_long_text_is_cut_within_the_section_limit_with_a_marker():
    q = Question("i1", "x" * 50_000, ["a", "b"])
    text = as_dicts(question_blocks(q))[0]["text"]["text"]
    assert len(text) <= blocks.SECTION_LIMIT
    assert text.endswith("… _(cut: 50,000 characters in all)_")


def test_cut_never_splits_an_escape():
    text = blocks.cut("a" * 2770 + "&" * 100, budget=2800)
    head = text.split("…")[0]
    assert not head.endswith(("&", "&a", "&am", "&amp"))


def test_multiline_text_stays_quoted():
    text = blocks.cut("one\ntwo", quote=True)
    assert text == ">one\n>two"


def actions_of(q: Question) -> list[dict]:
    return next(b for b in as_dicts(question_blocks(q)) if b["type"] == "actions")["elements"]


def test_buttons_follow_the_top_guesses_then_other_and_skip():
    labels = [f"l{n}" for n in range(10)]
    guesses = [("l3", 0.4), ("l7", 0.3), ("l1", 0.1), ("l0", 0.1), ("l2", 0.05), ("l9", 0.05)]
    elements = actions_of(Question("i9", "t", labels, guesses, model_version=2))
    buttons = [e for e in elements if e["type"] == "button"]
    assert [b["text"]["text"] for b in buttons] == ["l3", "l7", "l1", "l0", "l2", "Skip"]
    assert buttons[0]["style"] == "primary"
    assert [blocks.decode_value(b["value"]) for b in buttons[:2]] == [("i9", "l3"), ("i9", "l7")]
    select = next(e for e in elements if e["type"] == "static_select")
    assert [o["value"] for o in select["options"]] == labels


def test_the_other_select_is_checked_once_per_label_set_and_shared():
    labels = [f"intent {n}" for n in range(89)]
    first = actions_of(Question("i1", "t", labels, [("intent 3", 0.5)]))
    again = actions_of(Question("i2", "u", labels, [("intent 9", 0.5)], model_version=2))
    select = next(e for e in first if e["type"] == "static_select")
    shared = next(e for e in again if e["type"] == "static_select")
    assert all(a is b for a, b in zip(shared["options"], select["options"], strict=True))  # once
    fresh = blocks.StaticSelectElement(
        action_id="hitl.q.other",
        placeholder="Other…",
        options=[blocks.Option(value=lb, text=lb) for lb in labels],
    ).to_dict()
    assert select == fresh  # what an uncached select would have been
    other = actions_of(Question("i3", "t", [*labels, "intent 89"]))
    assert next(e for e in other if e["type"] == "static_select")["options"][-1]["value"] == (
        "intent 89"
    )
    with pytest.raises(SlackObjectFormationError):  # the limits are still checked
        actions_of(Question("i4", "t", ["a", "b", "c", "d", "e", "x" * 76]))


def test_over_100_labels_use_a_type_ahead_select():
    labels = [f"label {n}" for n in range(150)]
    elements = actions_of(Question("i1", "t", labels, [("label 3", 0.5), ("label 9", 0.2)]))
    select = next(e for e in elements if e["type"] == "external_select")
    assert select["min_query_length"] == 0
    options = blocks.label_options(labels, "label 14")
    assert [o["value"] for o in options] == ["label 14"] + [f"label {n}" for n in range(140, 150)]
    assert len(blocks.label_options(labels, "")) == 100


@pytest.mark.parametrize("label", ["🎉" * 75, "é" * 75, "a" * 75, 'lbl:with "quotes" & <tags>'])
def test_label_names_up_to_75_chars_and_emoji_fit(label: str):
    q = Question("item-" + "x" * 150, "t", [label, "other"], [(label, 0.6), ("other", 0.4)])
    elements = actions_of(q)
    assert blocks.decode_value(elements[0]["value"]) == ("item-" + "x" * 150, label)
    json.dumps(elements)


def test_resolved_message_has_no_buttons_and_says_who_and_what_the_model_guessed():
    q = Question(
        "i1",
        "t",
        ["a", "b"],
        [("b", 0.7), ("a", 0.3)],
        3,
        status="resolved",
        votes={"a": ["U1"]},
        resolved_label="a",
    )
    built = as_dicts(question_blocks(q))
    assert not any(b["type"] == "actions" for b in built)
    text = json.dumps(built, ensure_ascii=False)
    assert "✅ *`a`* by <@U1>" in text and "Model guessed *`b`* (70%): wrong." in text


def test_no_model_yet_says_so():
    text = json.dumps(as_dicts(question_blocks(Question("i1", "t", ["a", "b"]))))
    assert "No model yet" in text and "collecting first labels" not in text


def test_action_values_reject_foreign_payloads():
    for bad in ["", "not json", "[1]", '{"i": 5}', '{"i": "x", "l": 3}']:
        with pytest.raises(ValueError):
            blocks.decode_value(bad)


def test_modal_and_home_views_pass_slack_limits():
    q = Question("i1", "t" * 10_000, ["a", "b"])
    assert blocks.modal_view(q, remaining=3, answered=1).to_dict()["title"]["text"] == "Label items"
    assert "Nothing left" in json.dumps(blocks.modal_view(None, 0, 4).to_dict())
    home = blocks.home_view(
        blocks.HomeStats("U1", (3, 1), (2, 1), [("U1", 2, 1)], "v1", 10, 2)
    ).to_dict()
    assert home["type"] == "home"


def texts_of(built: list[dict]) -> list[str]:
    """Every text object's text in built blocks, wherever it sits."""
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text"):
                found.append(node["text"])
            for child in node.values():
                walk(child)

    walk(built)
    return found


def assert_within_limits(built: list[dict]) -> None:
    for text in texts_of(built):
        assert 0 < len(text) <= 3000, (len(text), text[:80])
        assert text.count("<") == text.count(">") - text.count("\n>") - text.startswith(">"), text
        assert not text.rstrip(" …").endswith(("<@", ",", "&am"))


PEOPLE = [f"U{n:010d}" for n in range(400)]  # Slack user ids are 11 characters


def test_a_tally_of_185_skippers_is_cut_to_fit_the_context():
    q = Question(
        "i1", "t", ["a", "b"], votes={"a": ["U0ANA"]}, skips=PEOPLE[:185], votes_needed=3,
        show_votes=True,
    )  # fmt: skip
    built = as_dicts(question_blocks(q))
    assert_within_limits(built)
    tally = next(b for b in built if b["type"] == "context")["elements"][-1]["text"]
    assert tally.startswith("Votes so far: *`a`* 1 (<@U0ANA>) · skipped by <@U0000000000>, <@U0")
    named, more = tally.count("<@U0000"), int(re.search(r" and (\d+) more\. ", tally)[1])
    assert named + more == 185 and named > 150
    assert tally.endswith("more. 2 matching votes decide.")


def test_hundreds_of_voters_and_labels_fit_every_open_resolved_and_skipped_text():
    votes = {f"label {n}": PEOPLE[n * 40 : (n + 1) * 40] for n in range(10)}
    many = Question("i1", "t", list(votes), votes=votes, skips=PEOPLE[:300], votes_needed=401)
    assert_within_limits(as_dicts(question_blocks(many)))
    assert_within_limits(as_dicts(question_blocks(replace(many, show_votes=True))))
    decided = Question(
        "i1",
        "t",
        ["a", "b"],
        votes={"a": PEOPLE[:300], "b": PEOPLE[300:]},
        votes_needed=400,
        status="resolved",
        resolved_label="a",
    )
    built = as_dicts(question_blocks(decided))
    assert_within_limits(built)
    assert texts_of(built)[1].startswith(
        "✅ *`a`* by vote (*`a`* 300 · *`b`* 100: <@U0000000000>, "
    )
    assert re.search(r" and \d+ more\)$", texts_of(built)[1])
    skipped = Question("i1", "t", ["a", "b"], skips=PEOPLE, votes_needed=400, status="skipped")
    built = as_dicts(question_blocks(skipped))
    assert_within_limits(built)
    assert texts_of(built)[1].startswith("⏭ Set aside after skips by <@U0000000000>, ")
    assert re.search(
        r" and \d+ more: no one will be asked again \(an admin can still label it:"
        r" `/hitl review i1`\)$",
        texts_of(built)[1],
    )


def test_a_tally_cut_inside_a_label_in_bold_closes_the_bold_too():
    """A decided question's tally over 77 labels of 60 characters is cut inside the 42nd
    label, written in bold (*`name`*): the cut closed its code span, not its bold, and the
    text ended with a stray star ("*`42xx…`"). Wherever the cut falls in such a list, stars
    and backticks come in pairs."""
    labels = [f"{n:02d}" + "x" * 58 for n in range(77)]
    votes = {label: [PEOPLE[n]] for n, label in enumerate(labels)}
    decided = Question(
        "i1", "t", labels, votes=votes, votes_needed=100, status="resolved",
        resolved_label=labels[0],
    )  # fmt: skip
    built = as_dicts(question_blocks(decided))
    assert_within_limits(built)
    tally = texts_of(built)[1]
    assert tally.endswith(" · *`42" + "x" * 18 + "…`*"), tally[-80:]
    for pad in range(18):  # the cut at each place of a label's "*`label-001`* 1 · "
        listed = "Votes:" + " " * pad + " · ".join(f"*`label-{n:03}`* 1" for n in range(300))
        fitted = blocks.fit(listed)
        assert len(fitted) <= blocks.TEXT_LIMIT, pad
        assert fitted.count("*") % 2 == 0 and fitted.count("`") % 2 == 0, (pad, fitted[-30:])


def test_an_app_home_with_overlong_names_still_builds():
    board = [(f"U{n}" + "X" * 400, 10 - n, n) for n in range(10)]
    stats = blocks.HomeStats("U1", (3, 0), (1, 0), board, "v1, trained on 3 labels " * 200, 10, 2)
    built = blocks.home_view(stats).to_dict()["blocks"]
    assert_within_limits(built)
    assert "1. <@U0XXX" in json.dumps(built)


def label_buttons(q: Question) -> list[str]:
    return [e["text"]["text"] for e in actions_of(q) if e["action_id"].startswith("hitl.q.label.")]


def test_before_any_model_every_label_gets_to_be_a_button():
    labels = ["billing", "bug", "account", "how_to", "feature_request", "other"]
    shown = {f"item{n}": label_buttons(Question(f"item{n}", "t", labels)) for n in range(30)}
    assert all(len(buttons) == blocks.MAX_GUESS_BUTTONS for buttons in shown.values())
    counts = {label: sum(label in buttons for buttons in shown.values()) for label in labels}
    assert all(n >= 1 for n in counts.values()), counts
    # an item keeps its buttons on every redraw (and in the modal), in the labels' order
    assert label_buttons(Question("item7", "other text", labels)) == shown["item7"]
    assert all(buttons == [lb for lb in labels if lb in buttons] for buttons in shown.values())
    modal = next(
        b
        for b in as_dicts(question_blocks(Question("item7", "t", labels), prefix="m"))
        if b["type"] == "actions"
    )
    assert [e["text"]["text"] for e in modal["elements"][:5]] == shown["item7"]
    # the label left out of the buttons is still one pick away in "Other…"
    elements = actions_of(Question("item7", "t", labels))
    select = next(e for e in elements if e["type"] == "static_select")
    assert [o["value"] for o in select["options"]] == labels


def test_counts_in_messages_read_as_words():
    one = Question("i1", "t", ["a", "b"], skips=["U0ANA"], votes_needed=1)
    tally = next(b for b in as_dicts(question_blocks(one)) if b["type"] == "context")
    assert tally["elements"][-1]["text"] == "Skipped by <@U0ANA>; the first answer decides."
    three = Question("i1", "t", ["a", "b"], votes={"a": ["U0ANA"]}, votes_needed=3)
    tally = next(b for b in as_dicts(question_blocks(three)) if b["type"] == "context")
    assert tally["elements"][-1]["text"] == (
        "1 of 3 answers in. 2 matching answers decide; answers show once it is decided."
    )
    shown = replace(three, show_votes=True)
    tally = next(b for b in as_dicts(question_blocks(shown)) if b["type"] == "context")
    assert tally["elements"][-1]["text"].endswith("2 matching votes decide.")
    assert [blocks.count(n, "item") for n in (0, 1, 2)] == ["0 items", "1 item", "2 items"]


@pytest.mark.parametrize(("by", "shown"), [("U0ADMIN", "<@U0ADMIN>"), ("cli:ana", "ana")])
def test_a_label_nobody_voted_shows_who_set_it_not_an_empty_by(tmp_path, by: str, shown: str):
    # Ana voted billing; an admin set bug in review (or with hitl labels set): the message
    # read "✅ *bug* by " with nobody after "by".
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_items([Item("t1", "refund me")], "api")
        store.record_answer("t1", "U0ANA", "billing", source="button", dedupe_key="k")
        store.set_label("t1", "bug", user_id=by, action="review")
        question = build_question(store, Settings(labels=("billing", "bug")), "t1")
    assert question is not None
    decided = question_blocks(question)[1].to_dict()["text"]["text"]
    assert decided == f"✅ *`bug`*, set by {shown} (votes: *`billing`* 1)"  # Ana's vote, counted
