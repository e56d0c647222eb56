"""/hitl subcommands, the labeling modal and App Home, through signed requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.commands import ADMIN_ONLY, HELP, TABLE
from tests import signing
from tests.bot.harness import Bot, Item, make_settings, margin_scored, seed, start_bot
from tests.bot.test_learning import labeled_items, retrain_told
from tests.fake_slack import CHANNEL


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(
        tmp_path / "hitl.db",
        [Item("a", "refund please"), Item("b", "app crashes"), Item("c", "delete my account")],
    )
    async for running in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=2)):
        yield running


async def reply(bot: Bot, text: str, user: str = "U0ANA") -> str:
    response = await bot.command(text, user)
    assert response.status == 200
    body = await response.text()
    return json.loads(body)["text"] if body.startswith("{") else body


async def test_help_shows_the_help_line_of_every_subcommand_in_the_table(bot: Bot):
    text = await reply(bot, "help")
    assert text == HELP
    for sub in TABLE:
        assert sub.help_line in text.splitlines(), sub.name
        assert f"`/hitl {sub.name}`" in sub.help_line
        assert ("(admins" in sub.help_line) == sub.admins_only


async def test_every_admin_only_subcommand_is_refused_to_a_non_admin_and_no_other_is(bot: Bot):
    assert (
        ADMIN_ONLY
        == {sub.name for sub in TABLE if sub.admins_only}
        == {"review", "labels", "retrain", "rollback"}
    )
    for sub in TABLE:
        text = await reply(bot, f"{sub.name} 1", user="U0RAJ")
        refusal = f"Only admins can use `/hitl {sub.name}`. Admins: <@U0ADMIN>"
        assert (text == refusal) == sub.admins_only, (sub.name, text)
    assert bot.store.runs("retrain") == [] and bot.store.runs("rollback") == []


async def test_unknown_subcommand_gets_help(bot: Bot):
    text = await reply(bot, "retrian")
    assert text.startswith("I don't know `retrian`.") and "`/hitl stats`" in text
    # a typed backtick cannot end the code span early (shown as "ˋ", as a label's is)
    text = await reply(bot, "re`train*")
    assert text.startswith("I don't know `reˋtrain*`.")


async def test_review_of_an_unknown_id_with_a_backtick_keeps_its_code_span(bot: Bot):
    text = await reply(bot, "review T`7 <b>", user="U0ADMIN")
    assert text.startswith("No item with id `Tˋ7 &lt;b&gt;`. ")


async def test_empty_command_is_help(bot: Bot):
    assert "`/hitl label`" in await reply(bot, "")


# Clicks go through "Other…": with no model, which labels get a button is drawn per item.


async def test_stats_counts_answers_by_person_and_items(bot: Bot):
    await bot.dispatcher.fill()
    await bot.action(bot.select_payload(bot.posted()[0], "U0RAJ", "bug"))
    text = await reply(bot, "stats")
    assert "*Answers today:* 1 (1 label): <@U0RAJ> 1 label" in text
    assert "*Items:* 1 waiting · 1 posted · 1 resolved" in text


async def test_stats_of_a_large_team_still_shows_the_items_line(bot: Bot):
    # The day's and week's answers by person were one block with the items line: 49 people
    # with Slack-long ids and skips passed a block's 3,000 characters, and the cut took the
    # items waiting, posted and resolved (and part of the week's list) out of what Slack showed.
    people = [f"U0{n:02d}ABCDEFGH" for n in range(49)]
    bot.store.add_items([Item(f"t{n}", f"ticket {n}") for n in range(98)], "import")
    for n, user in enumerate(people):
        bot.store.record_answer(f"t{n}", user, "bug", source="button", dedupe_key=f"l{n}")
        bot.store.record_answer(f"t{49 + n}", user, None, source="button", dedupe_key=f"s{n}")
    response = await bot.command("stats")
    shown = [block["text"]["text"] for block in json.loads(await response.text())["blocks"]]
    assert any(line.startswith("*Items:* 52 waiting · 0 posted · 49 resolved") for line in shown)
    week = next(line for line in shown if line.startswith("*Answers this week:*"))
    assert week.endswith("<@U048ABCDEFGH> 1 label + 1 skip")
    assert all(len(text) <= 3000 and "…" not in text for text in shown)


async def test_queue_shows_waiting_open_and_channel_errors(bot: Bot):
    await bot.dispatcher.fill()
    text = await reply(bot, "queue")
    assert "*Waiting:* 1 item" in text and f"<#{CHANNEL}>: 2 of 2 open" in text
    bot.dispatcher.channel_state(CHANNEL).broken = "channel_not_found"
    assert "⛔ not posting: channel_not_found" in await reply(bot, "queue")


async def test_queue_says_how_the_questions_are_picked(bot: Bot):
    from bot.runtime import Champion

    assert "*Picking:* at random: there is no model yet" in await reply(bot, "queue")
    bot.rt.champion = Champion(version=1, classifier=None, n_train=30)
    grown = "*Picking:* the model's closest calls first (margin), 10% random audits"
    assert grown in await reply(bot, "queue")  # no warm-up by default
    bot.rt.settings = bot.rt.settings.with_changes(warm_up=50)
    young = "*Picking:* at random while the model is young: it has 30 of the 50 labels"
    assert young in await reply(bot, "queue")
    bot.rt.champion = Champion(version=2, classifier=None, n_train=50)
    grown = "*Picking:* the model's closest calls first (margin), 10% random audits"
    assert grown in await reply(bot, "queue")


async def test_leaderboard_ranks_people(bot: Bot):
    assert "No labels yet" in await reply(bot, "leaderboard")
    await bot.dispatcher.fill()
    first, second = bot.posted()
    await bot.action(bot.select_payload(first, "U0RAJ", "bug"))
    await bot.action(bot.select_payload(second, "U0RAJ", "billing"))
    text = await reply(bot, "leaderboard")
    assert "🥇 <@U0RAJ> — 2 labels" in text


async def test_accuracy_without_a_model_says_how_to_get_one(bot: Bot):
    text = await reply(bot, "accuracy")
    assert text.startswith("*No model yet.*") and "/hitl retrain" in text


async def test_retrain_refuses_non_admins_politely(bot: Bot, caplog: pytest.LogCaptureFixture):
    text = await reply(bot, "retrain", user="U0ANA")
    assert text == "Only admins can use `/hitl retrain`. Admins: <@U0ADMIN>"
    assert "refused /hitl retrain for U0ANA: not an admin" in caplog.text
    assert bot.store.runs("retrain") == []
    rollback = await reply(bot, "rollback 1", user="U0RAJ")
    assert rollback == "Only admins can use `/hitl rollback`. Admins: <@U0ADMIN>"


async def test_admin_retrain_answers_at_once_and_reports_when_done(bot: Bot):
    bot.store.add_items(labeled_items(), "import")
    ack, told = await retrain_told(bot)
    assert ack == (
        f"Retraining: checking for new labels; I'll post the result in <#{CHANNEL}> when it is"
        " done."
    )
    assert told == []  # it began: nothing more to say before the report
    await bot.rt.trainer.task
    report = (await bot.fake.next_call("chat.postMessage")).params["text"]
    assert report.startswith("*Retrain v1: promoted ✅* (<@U0ADMIN>,")


async def test_admin_retrain_with_too_few_labels_says_what_is_missing(bot: Bot):
    _, [text] = await retrain_told(bot)
    assert bot.fake.responses[-1]["payload"]["response_type"] == "ephemeral"  # private
    assert text == (
        "*Retrain (<@U0ADMIN>) not started:* too few labels to train: cross-validation needs "
        "at least 2 classes with at least 2 examples each; got no labels. "
        "4 more labels needed."
    )
    bot.store.add_items(
        [Item("d", "refund twice", "billing"), Item("e", "card", "billing")], "import"
    )
    bot.store.add_items([Item("f", "crash on start", "bug")], "import")
    _, [text] = await retrain_told(bot)
    assert "got 2 class(es) (billing: 2, bug: 1). 1 more label needed." in text
    assert bot.rt.trainer.task is None  # nothing started in the background,
    assert bot.fake.calls_to("chat.postMessage") == []  # so no report pings every admin
    _, [again] = await retrain_told(bot)
    assert again == (
        "*Retrain (<@U0ADMIN>):* nothing new: no labels since the last run (3 labels); "
        "training skipped. 1 more label needed to train."
    )


@pytest.mark.parametrize("word", ["--forse", "—force", "now", "`x`"])
async def test_admin_retrain_with_a_word_it_does_not_take_starts_nothing_and_says_so(
    bot: Bot, word: str
):
    # a mistyped --force (or a smart-dash keyboard's "—force") was dropped: the retrain ran
    # unforced, so a candidate not better than the champion was rejected
    bot.store.add_items(labeled_items(), "import")
    text = await reply(bot, f"retrain {word}", user="U0ADMIN")
    shown = word.replace("`", "ˋ")  # a typed backtick cannot end the code span early
    assert text == (
        f"`/hitl retrain` takes no `{shown}`: nothing was started. Usage: `/hitl retrain`, or"
        " `/hitl retrain --force` to train even with nothing new and promote the model even if"
        " not better."
    )
    assert bot.store.runs("retrain") == [] and bot.rt.trainer.task is None


async def test_admin_retrain_takes_force_in_any_case(bot: Bot):
    ack, _ = await retrain_told(bot, "retrain --Force")
    assert ack.startswith("Retraining (forced:")


def reason_line(view: dict) -> str:
    return next(
        e["text"]
        for b in view["blocks"]
        for e in b.get("elements", [])
        if str(e.get("text", "")).startswith("Why this one:")
    )


async def test_labeling_window_says_why_a_waiting_item_is_asked_as_its_question_would(bot: Bot):
    # nothing posted, no model: the window serves a waiting item, which a question would ask
    # to collect first labels; it said "the model is unsure · no model"
    assert (await bot.command("label", "U0ANA")).status == 200
    opened = await bot.fake.next_call("views.open")
    assert reason_line(opened.reply["view"]) == "Why this one: collecting first labels · no model"
    # once a model has scored the waiting items, the window serves its closest call
    ranked = [["billing", 0.5], ["bug", 0.4]]
    bot.store.set_predictions(
        margin_scored([(i, 1, "billing", 0.5, ranked) for i in ("a", "b", "c")]),
        threshold=0.8,
        strategy="margin",
    )
    another = "1700000002.0002.0123456789abcdef"  # a trigger opens one window
    assert (await bot.command("label", "U0RAJ", trigger_id=another)).status == 200
    opened = await bot.fake.next_call("views.open")
    assert reason_line(opened.reply["view"]) == "Why this one: the model is unsure · model v1"


async def test_labeling_modal_walks_three_items(bot: Bot):
    response = await bot.command("label", "U0ANA")
    assert response.status == 200
    opened = await bot.fake.next_call("views.open")
    view_id = next(iter(bot.fake.views))
    seen = []
    for label in ("billing", "bug", "account"):
        view = bot.fake.views[view_id]
        meta = json.loads(view["private_metadata"])
        seen.append(meta["item"])
        button = next(
            e
            for b in view["blocks"]
            for e in b.get("elements", [])
            if e.get("type") == "button" and f'"l":"{label}"' in e.get("value", "")
        )
        payload = signing.block_actions_payload(
            "U0ANA", button["action_id"], button["value"], view=view
        )
        payload["actions"][0]["action_ts"] = bot.next_action_ts()
        assert (await bot.action(payload)).status == 200
        await bot.fake.next_call("views.update")
    assert opened.params["view"]["callback_id"] == "hitl.label_modal"
    assert sorted(seen) == ["a", "b", "c"]
    final = bot.fake.views[view_id]
    assert "Nothing left to label. You answered 3" in json.dumps(final["blocks"])
    sources = {a["source"] for a in bot.store.iter_answers()}
    assert sources == {"modal"} and bot.store.count_labels() == 3


async def test_app_home_shows_your_answers_and_a_start_button(bot: Bot):
    await bot.dispatcher.fill()
    await bot.action(bot.select_payload(bot.posted()[0], "U0ANA", "bug"))
    response = await bot.event(signing.app_home_opened_event("U0ANA"))
    assert response.status == 200
    published = await bot.fake.next_call("views.publish")
    assert published.params["user_id"] == "U0ANA"
    home = json.dumps(bot.fake.home["U0ANA"], ensure_ascii=False)
    assert "This week you labeled *1 item*;" in home and "hitl.home.start" in home
    assert "*1 item* of all time. Thank you!" in home
    assert "<@U0ANA> — 1 label" in home


async def test_start_labeling_from_home_opens_the_modal(bot: Bot):
    payload = signing.block_actions_payload(
        "U0RAJ", "hitl.home.start", "start", view={"id": "VHOME", "type": "home"}
    )
    assert (await bot.action(payload)).status == 200
    opened = await bot.fake.next_call("views.open")
    assert opened.params["view"]["title"]["text"] == "Label items"


async def test_app_home_counts_your_answers_when_fifty_people_answered_more(bot: Bot):
    bot.store.add_items([Item(f"x{n}", f"text {n}") for n in range(100)], "import")
    for n in range(50):  # 50 people with 2 answers each: the top 50 of the board
        for item in (f"x{2 * n}", f"x{2 * n + 1}"):
            bot.store.record_answer(
                item, f"U{n:04d}", "bug", source="button", dedupe_key=f"{item}:{n}"
            )
    bot.store.record_answer("a", "U0ANA", "bug", source="button", dedupe_key="a:ana")
    assert (await bot.event(signing.app_home_opened_event("U0ANA"))).status == 200
    await bot.fake.next_call("views.publish")
    home = json.dumps(bot.fake.home["U0ANA"], ensure_ascii=False)
    assert "This week you labeled *1 item*; *1 item* of all time" in home


async def test_stats_by_label_of_a_large_label_set_names_the_least_agreed_and_how_many_more(
    fake_slack: FakeSlack, tmp_path: Path
):
    # Agreement by label was every label of the set in one block: 77 labels of 62 characters
    # passed its 3,000 characters, and the cut ended inside a label with no word of the 34
    # left out, the least agreed (the last of the set here) among them.
    labels = tuple(
        f"{n:02d}_card_payment_wrong_exchange_rate_abroad_on_a_weekend_days" for n in range(77)
    )
    seed(tmp_path / "hitl.db", [Item(f"t{n}", f"ticket {n}") for n in range(77)])
    async for bot in start_bot(
        fake_slack, make_settings(fake_slack, tmp_path, labels=labels, votes=3)
    ):
        for n, label in enumerate(labels):
            second = label if n < 76 else labels[0]  # all agree but on the last label
            for user, given in (("U0ANA", label), ("U0RAJ", second)):
                bot.store.record_answer(
                    f"t{n}", user, given, source="button", dedupe_key=f"{n}{user}", votes_needed=3
                )
        response = await bot.command("stats", "U0ADMIN")
        shown = [block["text"]["text"] for block in json.loads(await response.text())["blocks"]]
        by_label = next(text for text in shown if text.startswith("*By label*"))
        assert len(by_label) <= 3000
        assert by_label.startswith(
            f"*By label* (specific agreement, least agreed first): `{labels[76]}` 0% · "
        )
        assert by_label.endswith(" 100% …and 57 more labels (`hitl stats` lists them all)")
