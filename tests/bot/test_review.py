"""The review queue through signed requests: a split vote goes to review, an admin decides it in
the `/hitl review` modal, the decision is kept in history, resolves the item and redraws it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.review import DECISION_ACTION, DECISION_BLOCK, REVIEW_CALLBACK
from bot.store import ReviewRules, Store
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_slack_bot import buttons, context_text
from tests.fake_slack import CHANNEL


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash"), Item("b", "hello")])
    settings = make_settings(fake_slack, tmp_path, max_open=1, votes=3)
    async for running in start_bot(fake_slack, settings):
        yield running


async def split_vote(bot: Bot) -> tuple[str, dict, list[str]]:
    """Three people answer the open question with three labels: no majority."""
    await bot.dispatcher.fill()
    message = bot.posted()[0]
    labels = buttons(message)[:3]
    for user, label in zip(("U0ANA", "U0RAJ", "U0MEI"), labels, strict=True):
        assert (await bot.action(bot.button_payload(message, user, label))).status == 200
    await bot.settled()
    item_id = bot.store.db["posts"].get(1)["item_id"]
    return item_id, message, labels


def decision(view: dict, value: str, user: str = "U0ADMIN") -> dict:
    option = next(
        o
        for b in view["blocks"]
        if b.get("block_id") == DECISION_BLOCK
        for o in b["element"]["options"]
        if o["value"] == value
    )
    chosen = {"type": "static_select", "selected_option": option}
    values = {DECISION_BLOCK: {DECISION_ACTION: chosen}}
    return signing.view_submission_payload(
        REVIEW_CALLBACK, values, user_id=user, private_metadata=view["private_metadata"]
    )


def view_text(view: dict) -> str:
    return json.dumps(view["blocks"])


async def test_a_split_vote_goes_to_review_and_an_admins_decision_resolves_it(bot: Bot):
    item_id, message, labels = await split_vote(bot)
    assert bot.store.get_item(item_id)["status"] == "posted"  # still open for a fourth vote
    assert bot.store.next_review() == {
        "item_id": item_id,
        "reasons": [("split", f"{labels[0]} 1, {labels[1]} 1, {labels[2]} 1")],
    }

    response = await bot.command("review", "U0ADMIN")
    assert response.status == 200
    opened = await bot.fake.next_call("views.open")
    view = opened.reply["view"]
    shown = view_text(view)
    assert "split vote" in shown and "<@U0ANA>" in shown and "<@U0MEI>" in shown
    assert bot.store.get_item(item_id)["text"] in shown

    before = len(bot.fake.calls_to("chat.update"))
    reply = await bot.action(decision(view, f"label:{labels[1]}"))
    assert reply.status == 200
    answer = json.loads(await reply.text())
    assert answer["response_action"] == "update"
    assert "Nothing to review. You decided 1" in json.dumps(answer["view"])
    await bot.settled()

    assert bot.store.resolution(item_id)["label"] == labels[1]
    assert bot.store.get_item(item_id)["status"] == "resolved"
    assert bot.store.next_review() is None
    [review] = bot.store.reviews_of(item_id)
    assert (review["decision"], review["decided_by"]) == (labels[1], "U0ADMIN")
    [change] = bot.store.label_history(item_id)
    assert (change["old_label"], change["new_label"], change["action"], change["user_id"]) == (
        None,
        labels[1],
        "review",
        "U0ADMIN",
    )
    assert change["reason"] == "review: split"
    assert len(bot.fake.calls_to("chat.update")) > before  # the question is redrawn, decided
    assert labels[1] in context_text(bot.fake.message(CHANNEL, message["ts"]))
    assert buttons(bot.fake.message(CHANNEL, message["ts"])) == []


async def test_review_is_refused_to_a_non_admin_command_and_submission(bot: Bot):
    item_id, _, labels = await split_vote(bot)
    text = await (await bot.command("review", "U0RAJ")).text()
    assert text == "Only admins can use `/hitl review`. Admins: <@U0ADMIN>"
    assert bot.fake.calls_to("views.open") == []

    await bot.command("review", "U0ADMIN")
    view = (await bot.fake.next_call("views.open")).reply["view"]
    crafted = await bot.action(decision(view, f"label:{labels[0]}", user="U0RAJ"))
    assert json.loads(await crafted.text()) == {
        "response_action": "errors",
        "errors": {DECISION_BLOCK: "Only admins can review."},
    }
    assert bot.store.resolution(item_id) is None
    assert bot.store.next_review()["item_id"] == item_id


async def test_remove_sets_the_item_aside_and_skip_moves_on_leaving_it_in_review(bot: Bot):
    item_id, _, _ = await split_vote(bot)
    await bot.command("review", "U0ADMIN")
    view = (await bot.fake.next_call("views.open")).reply["view"]
    skipped = json.loads(await (await bot.action(decision(view, "skip"))).text())
    assert "Nothing to review. You decided 0" in json.dumps(skipped["view"])
    assert bot.store.next_review()["item_id"] == item_id  # still waiting for someone

    await bot.command("review", "U0ADMIN", trigger_id="13345224609.738474920.8088930838d88f0")
    view = (await bot.fake.next_call("views.open")).reply["view"]
    await bot.action(decision(view, "remove"))
    await bot.settled()
    assert bot.store.get_item(item_id)["status"] == "skipped"
    assert bot.store.resolution(item_id) is None
    assert bot.store.next_review() is None
    assert bot.store.label_history(item_id)[0]["action"] == "review"


def test_a_vote_that_decides_a_split_closes_it_and_low_agreement_or_a_confident_model_flag_it():
    with Store.memory() as store:
        store.add_items([Item("x", "text"), Item("y", "text")], "import")
        rules = ReviewRules(min_agreement=0.7, contradict_confidence=0.95)
        for n, (user, label) in enumerate([("U1", "a"), ("U2", "b"), ("U3", "c")]):
            store.record_answer(
                "x", user, label, source="button", dedupe_key=f"x{n}", votes_needed=3
            )
        assert [r["reason"] for r in store.reviews_of("x")] == ["split"]  # no majority of 3
        result = store.record_answer(
            "x", "U4", "a", source="button", dedupe_key="x4", votes_needed=3, review=rules
        )
        assert result.status == "resolved"
        split, low = store.reviews_of("x")
        assert (split["decision"], split["decided_by"]) == ("a", "votes")
        assert (low["reason"], low["decided_at"], low["detail"]) == (
            "low_agreement",
            None,
            "50%: a 2, b 1, c 1",
        )
        store.set_predictions([("y", 1, "b", 0.97, [["b", 0.97]], 0.03)], 0.99, "margin")
        store.record_answer("y", "U1", "a", source="button", dedupe_key="y1", review=rules)
        [contradicted] = store.reviews_of("y")
        assert (contradicted["reason"], contradicted["detail"]) == (
            "contradicted",
            "model v1: b (97%)",
        )


async def test_a_label_an_admin_removes_in_review_leaves_training(
    fake_slack: FakeSlack, tmp_path: Path
):
    from bot.learning.quality import training_rows

    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash"), Item("s", "seed", "billing")])
    settings = make_settings(fake_slack, tmp_path, max_open=1, votes=3, review_agreement=0.9)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        message = bot.posted()[0]
        for user, label in (("U0ANA", "bug"), ("U0RAJ", "billing"), ("U0ADMIN", "bug")):
            assert (await bot.action(bot.button_payload(message, user, label))).status == 200
        await bot.settled()
        assert bot.store.resolution("a")["label"] == "bug"  # 2 of 3: below 90%, to review
        assert [r[0] for r in training_rows(bot.store, settings)] == ["s", "a"]
        assert bot.store.next_review()["reasons"] == [("low_agreement", "67%: bug 2, billing 1")]

        await bot.command("review", "U0ADMIN")
        view = (await bot.fake.next_call("views.open")).reply["view"]
        assert (await bot.action(decision(view, "remove"))).status == 200
        await bot.settled()
        assert [r[0] for r in training_rows(bot.store, settings)] == ["s"]  # left training
        assert bot.store.get_item("a")["status"] == "skipped"
        [change] = bot.store.label_history("a")
        assert (change["old_label"], change["new_label"], change["action"]) == (
            "bug",
            None,
            "review",
        )


def test_the_review_modal_escapes_what_a_reason_quotes():
    """A reason's detail quotes labels and the model's guess; Slack must show them, not act on
    them (a label "<!channel>" would notify the whole channel from an admin's modal)."""
    from bot.slack.review import ReviewItem, review_view

    item = ReviewItem(
        item_id="a",
        text="hello",
        reasons=[
            ("split", "<!channel> 1, a&b 1"),
            ("contradicted", "model v2: <!here> (97%)"),
            ("gold_miss", "<@U0RAJ> <!subteam^S1>; gold: a&b"),
        ],
        votes={"<!channel>": ["U0ANA"], "a&b": ["U0RAJ"]},
        label=None,
        guess=("<!here>", 0.97),
        labels=["<!channel>", "a&b"],
        waiting=1,
    )
    blocks = review_view(item, 0, []).to_dict()["blocks"]
    shown = json.dumps([b["text"] for b in blocks if b.get("text", {}).get("type") == "mrkdwn"])
    assert "<!channel>" not in shown and "<!here>" not in shown
    assert "&lt;!channel&gt; 1, a&amp;b 1" in shown and "&lt;!here&gt; (97%)" in shown
    assert "(<@U0RAJ> &lt;!subteam^S1&gt;; gold: a&amp;b)" in shown  # who answered: a mention


async def test_an_answer_a_confident_model_contradicts_goes_to_review_through_a_click(
    fake_slack: FakeSlack, tmp_path: Path
):
    from tests.bot.harness import margin_scored

    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash")])
    settings = make_settings(fake_slack, tmp_path, max_open=1, review_confidence=0.9)
    async for bot in start_bot(fake_slack, settings):
        ranked = [["billing", 0.95], ["bug", 0.03], ["account", 0.02]]
        bot.store.set_predictions(
            margin_scored([("a", 1, "billing", 0.95, ranked)]), threshold=0.99, strategy="margin"
        )
        await bot.dispatcher.fill()
        message = bot.posted()[0]
        assert (await bot.action(bot.select_payload(message, "U0ANA", "bug"))).status == 200
        await bot.settled()
        assert bot.store.resolution("a")["label"] == "bug"  # decided, and to be looked at again
        assert bot.store.next_review() == {
            "item_id": "a",
            "reasons": [("contradicted", "model v1: billing (95%)")],
        }


async def test_a_split_frees_its_place_in_the_channel_and_a_later_vote_still_decides_it(bot: Bot):
    """With HITL_MAX_OPEN=1 and a team that all voted, a split used to hold the channel's only
    place until an admin came: no other question was asked meanwhile."""
    item_id, message, labels = await split_vote(bot)
    assert await bot.dispatcher.fill() == 1  # the next question takes its place
    [other] = {"a", "b"} - {item_id}
    assert [p["item_id"] for p in bot.store.open_posts()] == [other]

    rename = await bot.command(f"labels rename {labels[2]} renamed", "U0ADMIN")
    assert rename.status == 200
    await bot.settled()
    split = bot.fake.message(CHANNEL, message["ts"])  # still waiting: redrawn with the set
    assert "renamed" in json.dumps(split["blocks"]) and buttons(split)

    # a fourth person's vote on it makes a majority: it is decided (the split by the votes;
    # at 2 of 4 it waits in review for its low agreement)
    assert (await bot.action(bot.button_payload(split, "U0ADMIN", labels[0]))).status == 200
    await bot.settled()
    assert bot.store.resolution(item_id)["label"] == labels[0]
    reviews = {r["reason"]: r for r in bot.store.reviews_of(item_id)}
    assert (reviews["split"]["decided_by"], reviews["split"]["decision"]) == ("votes", labels[0])
    assert reviews["low_agreement"]["decided_at"] is None
    assert buttons(bot.fake.message(CHANNEL, message["ts"])) == []


async def test_an_admin_relabels_any_item_in_slack_by_its_id_an_imported_label_too(
    fake_slack: FakeSlack, tmp_path: Path
):
    from bot.learning.quality import training_rows

    seed(tmp_path / "hitl.db", [Item("s", "refund after the crash", "billing")])  # imported
    settings = make_settings(fake_slack, tmp_path, max_open=1)
    async for bot in start_bot(fake_slack, settings):
        assert bot.store.next_review() is None  # nothing waits in review
        missing = await bot.command("review nope", "U0ADMIN")
        assert await missing.text() == (
            "No item with id `nope`. `/hitl review ID` takes the id an item was imported with"
            " (`hitl import`'s id column) or sent to the API with; `/hitl review` alone opens the"
            " items waiting in review."
        )
        assert (await bot.command("review s", "U0ADMIN")).status == 200
        view = (await bot.fake.next_call("views.open")).reply["view"]
        shown = view_text(view)
        assert "opened by its id" in shown and "*Label now:* `billing`" in shown
        answer = json.loads(await (await bot.action(decision(view, "label:bug"))).text())
        assert "Nothing to review. You decided 1" in json.dumps(answer["view"])
        assert [(r[0], r[2]) for r in training_rows(bot.store, settings)] == [("s", "bug")]
        [change] = bot.store.label_history("s")
        assert (change["old_label"], change["new_label"], change["user_id"]) == (
            "billing",
            "bug",
            "U0ADMIN",
        )


async def test_a_second_admin_is_told_the_item_was_decided_meanwhile_and_overwrites_nothing(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash"), Item("b", "hello")])
    settings = make_settings(
        fake_slack, tmp_path, max_open=1, votes=3, admins=("U0ADMIN", "U0BOSS")
    )
    async for bot in start_bot(fake_slack, settings):
        item_id, _, labels = await split_vote(bot)
        await bot.command("review", "U0ADMIN", trigger_id="1.1.first")
        first = (await bot.fake.next_call("views.open")).reply["view"]
        await bot.command("review", "U0BOSS", trigger_id="1.1.second")
        second = (await bot.fake.next_call("views.open")).reply["view"]
        assert json.loads(first["private_metadata"])["item"] == item_id
        assert json.loads(second["private_metadata"])["item"] == item_id

        await bot.action(decision(first, f"label:{labels[0]}"))
        reply = await bot.action(decision(second, f"label:{labels[1]}", user="U0BOSS"))
        answer = json.loads(await reply.text())
        assert answer["response_action"] == "update"
        shown = view_text(answer["view"])
        assert f"<@U0ADMIN> decided this item meanwhile (*`{labels[0]}`*)" in shown
        assert "Your decision was not saved" in shown
        assert json.loads(answer["view"]["private_metadata"])["item"] == item_id
        assert bot.store.resolution(item_id)["label"] == labels[0]  # nothing overwritten
        assert len(bot.store.label_history(item_id)) == 1

        # Shown the decision, the second admin may still change it, deliberately.
        again = json.loads(
            await (
                await bot.action(decision(answer["view"], f"label:{labels[1]}", "U0BOSS"))
            ).text()
        )
        assert "Nothing to review. You decided 1" in json.dumps(again["view"])
        assert bot.store.resolution(item_id)["label"] == labels[1]
        assert [c["user_id"] for c in bot.store.label_history(item_id)] == ["U0ADMIN", "U0BOSS"]


async def test_a_window_an_older_hitl_drew_overwrites_no_decision_it_cannot_vouch_for(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A `/hitl review` window opened before the upgrade to a hitl that records what a window
    showed (its private_metadata has no "seen", as an older hitl wrote it) and submitted after
    another admin decided the item: it overwrote that decision and said "Nothing to review"
    (outside test of windows open across an upgrade). Now it is shown again as it is, and a
    second submission decides it; an old window on an item nobody decided still decides it."""
    seed(tmp_path / "hitl.db", [Item("a", "refund and a crash"), Item("b", "hello")])
    settings = make_settings(
        fake_slack, tmp_path, max_open=1, votes=3, admins=("U0ADMIN", "U0BOSS")
    )
    async for bot in start_bot(fake_slack, settings):
        item_id, _, labels = await split_vote(bot)
        await bot.command("review", "U0BOSS", trigger_id="1.1.old")
        view = (await bot.fake.next_call("views.open")).reply["view"]
        old = {
            **view,
            "private_metadata": json.dumps({"item": item_id, "decided": 0, "skipped": []}),
        }
        # nobody decided it yet: the old window's decision is saved, as before
        await bot.action(decision(old, f"label:{labels[1]}", user="U0BOSS"))
        assert bot.store.resolution(item_id)["label"] == labels[1]

        # decided since (by an admin here): the old window's submission overwrites nothing
        bot.store.set_label(item_id, labels[0], user_id="U0ADMIN", reason="review", action="review")
        reply = await bot.action(decision(old, f"label:{labels[2]}", user="U0BOSS"))
        answer = json.loads(await reply.text())
        assert answer["response_action"] == "update"
        shown = view_text(answer["view"])
        assert "opened before hitl was upgraded" in shown
        assert f"<@U0ADMIN> decided this item last (*`{labels[0]}`*)" in shown
        assert "Your decision was not saved" in shown
        assert bot.store.resolution(item_id)["label"] == labels[0]
        assert "seen" in json.loads(answer["view"]["private_metadata"])

        # the window drawn now records what it showed: a second submission decides it
        again = await bot.action(decision(answer["view"], f"label:{labels[2]}", "U0BOSS"))
        assert "Nothing to review" in json.dumps(json.loads(await again.text())["view"])
        assert bot.store.resolution(item_id)["label"] == labels[2]


async def test_the_review_modal_offers_every_label_of_a_set_above_slacks_100_options(
    fake_slack: FakeSlack, tmp_path: Path
):
    many = tuple(f"label_{n:03d}" for n in range(120))
    seed(tmp_path / "hitl.db", [Item("s", "refund after the crash", "label_000")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, labels=many)):
        assert (await bot.command("review s", "U0ADMIN")).status == 200
        view = (await bot.fake.next_call("views.open")).reply["view"]
        [select] = [b["element"] for b in view["blocks"] if b.get("block_id") == DECISION_BLOCK]
        groups = select.get("option_groups") or [{"options": select["options"]}]
        assert len(groups) <= 100 and all(len(g["options"]) <= 100 for g in groups)
        offered = [o for g in groups for o in g["options"]]
        assert [o["value"] for o in offered] == ["skip", "remove", *(f"label:{x}" for x in many)]

        last = offered[-1]
        values = {
            DECISION_BLOCK: {DECISION_ACTION: {"type": "static_select", "selected_option": last}}
        }
        submitted = signing.view_submission_payload(
            REVIEW_CALLBACK, values, user_id="U0ADMIN", private_metadata=view["private_metadata"]
        )
        assert (await bot.action(submitted)).status == 200
        assert bot.store.resolution("s")["label"] == "label_119"


async def test_skipping_many_long_ids_keeps_the_review_window_within_slacks_metadata_limit(
    fake_slack: FakeSlack, tmp_path: Path
):
    # Each "Skip for now" kept the item id in the view's private_metadata: past Slack's 3,000
    # characters the view could not be built, and the window closed without a word.
    ids = [f"ticket-{n:0190d}" for n in range(20)]  # ids may have up to 200 characters
    seed(tmp_path / "hitl.db", [Item(item_id, f"text {n}") for n, item_id in enumerate(ids)])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        for item_id in ids:
            bot.store.flag_review(item_id, "split", "billing 1, bug 1")
        await bot.command("review", "U0ADMIN")
        view = (await bot.fake.next_call("views.open")).reply["view"]
        for _ in ids:
            reply = await bot.action(decision(view, "skip"))
            answer = json.loads(await reply.text())  # an empty body closes the window
            assert answer["response_action"] == "update"
            view = answer["view"]
            assert len(view["private_metadata"]) <= 3000


async def test_confirming_the_label_the_votes_gave_in_review_keeps_it_in_training(
    fake_slack: FakeSlack, tmp_path: Path
):
    """With HITL_AGGREGATION=dawid_skene, an admin's review decision for the label an item
    has (t1: bug by majority; Dawid–Skene would train it as billing) is the label it trains
    with: the decision is recorded, as a change would be."""
    from bot.learning.quality import training_rows
    from tests.bot.test_aggregation import GOLD, ITEMS, click_the_tally

    with Store.open(tmp_path / "hitl.db") as store:
        store.add_gold([Item(i, text, label) for i, text, label in GOLD])
        store.add_items([Item(i, text) for i, text in ITEMS], "import")
    settings = make_settings(
        fake_slack, tmp_path, votes=3, gold_rate=1.0, max_open=10, aggregation="dawid_skene"
    )
    async for bot in start_bot(fake_slack, settings):
        await click_the_tally(bot)
        assert bot.store.resolution("t1")["label"] == "bug"
        assert {r[0]: r[2] for r in training_rows(bot.store, settings)}["t1"] == "billing"

        assert (await bot.command("review t1", "U0ADMIN")).status == 200
        view = (await bot.fake.next_call("views.open")).reply["view"]
        assert "*Label now:* `bug`" in view_text(view)
        assert (await bot.action(decision(view, "label:bug"))).status == 200
        await bot.settled()
        assert {r[0]: r[2] for r in training_rows(bot.store, settings)}["t1"] == "bug"
        [change] = bot.store.label_history("t1")
        assert (change["old_label"], change["new_label"], change["action"]) == (
            "bug",
            "bug",
            "review",
        )
        assert all(r["decided_at"] is not None for r in bot.store.reviews_of("t1"))


async def test_a_gold_question_missed_by_a_large_team_still_shows_the_label_now(
    fake_slack: FakeSlack, tmp_path: Path
):
    # The *Why*, *Votes*, *Model* and *Label now* lines were one block: a gold question that
    # 40 people answered with 60-character labels, none the gold one, names each answer on
    # the *Why* line, past a block's 3,000 characters, and the cut took the votes and the
    # label now out of the review window; the *Why* line's own cut took the gold label.
    name = "card_payment_wrong_exchange_rate_abroad_on_a_weekend_days"  # 60 characters with n
    labels = tuple(f"{n:02d}_{name}" for n in range(41))
    people = [f"U0{n:02d}ABCDEFGHIJ" for n in range(40)]
    seed(tmp_path / "hitl.db", [Item("g", "which rate was applied?")])
    settings = make_settings(fake_slack, tmp_path, labels=labels, votes=3)
    async for bot in start_bot(fake_slack, settings):
        for n, user in enumerate(people):
            bot.store.record_answer(
                "g", user, labels[n], source="button", dedupe_key=f"g{n}", votes_needed=99
            )
        bot.store.add_gold([Item("g", "which rate was applied?", labels[40])])
        assert (await bot.command("review g", "U0ADMIN")).status == 200
        view = (await bot.fake.next_call("views.open")).reply["view"]
        texts = [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"]
        assert all(len(text) <= 3000 for text in texts)
        why = next(text for text in texts if text.startswith("*Why:* a gold answer missed"))
        # the answers it names are cut, the gold label they missed is not
        assert f"…; gold: {labels[40]})" in why
        assert any(t.startswith(f"*Votes:* `{labels[0]}`: <@U000ABCDEFGHIJ>") for t in texts)
        assert texts[-1] == "*Label now:* none"  # 40 answers, no majority: undecided
