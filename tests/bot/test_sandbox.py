"""The sandbox workspace of `hitl demo`, driven without a browser: what a person does becomes a
signed request to the bot's real /slack/events, and what the bot answers shows to that person."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.demo import DemoOptions, load_data, running_demo
from bot.demo.run import CHANNEL, Demo
from bot.demo.simulate import Teammate
from bot.sandbox import payloads
from bot.sandbox.workspace import SandboxError, block_id_of

QUESTIONS = CHANNEL[0]


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    options = DemoOptions(db=tmp_path / "demo.db", port=0, size=60, retrain_every=0, pace=0.0)
    async with running_demo(options, load_data(options), echo=lambda line: None) as running:
        yield running


@pytest.fixture
async def still_demo(tmp_path: Path) -> AsyncIterator[Demo]:
    """The demo without its background tasks: a test moves the queue itself."""
    options = DemoOptions(db=tmp_path / "demo.db", port=0, size=60, retrain_every=0, pace=0.0)
    async with running_demo(
        options, load_data(options), echo=lambda line: None, background=False
    ) as running:
        yield running


def open_question(demo: Demo) -> tuple[dict, dict]:
    """The first question message and its actions block."""
    for message in demo.fake.messages(QUESTIONS):
        for block in message.get("blocks") or []:
            if block["type"] == "actions":
                return message, block
    raise AssertionError("no open question")


def texts(demo: Demo, user: str) -> list[str]:
    return [m["text"] for m in demo.sandbox.timeline(user, QUESTIONS) if m["ephemeral"]]


async def test_the_first_questions_are_posted_before_anyone_looks(demo: Demo):
    assert len(demo.fake.messages(QUESTIONS)) == demo.options.max_open
    assert demo.rt.store.open_post_counts() == {QUESTIONS: demo.options.max_open}
    state = demo.sandbox.state("U0ANA")
    assert [c["name"] for c in state["channels"]] == ["hitl-questions", "hitl-reports"]
    assert state["names"]["U0ANA"] == "ana" and state["modal"] is None


async def test_a_click_is_a_signed_request_and_undo_answers_through_the_response_url(demo: Demo):
    message, block = open_question(demo)
    button = block["elements"][0]
    reply = await demo.sandbox.click(
        "U0ANA",
        action_id=button["action_id"],
        block_id=block["block_id"],
        channel=QUESTIONS,
        ts=message["ts"],
    )
    assert reply.status == 200
    item_id = block["block_id"][2:]
    label = demo.rt.store.resolution(item_id)["label"]
    await demo.rt.background.drain()
    [undo_note] = [e for e in demo.fake.ephemerals if e["user"] == "U0ANA"]
    assert texts(demo, "U0RAJ") == []  # ephemerals are only for the person who clicked

    undo = await demo.sandbox.click(
        "U0ANA",
        action_id="hitl.undo",
        block_id="sb0",
        channel=QUESTIONS,
        ts=undo_note["message_ts"],
    )
    assert undo.status == 200
    await demo.rt.background.drain()
    assert demo.rt.store.resolution(item_id) is None
    assert texts(demo, "U0ANA") == [
        f"Undone: `{label}` is no longer the label. The question is open again."
    ]


async def test_a_slash_commands_text_reaches_the_app_escaped_as_slack_sends_it(demo: Demo):
    """Slack sends &, < and > of a command's text as entities and the app reads them back: a
    typed "a&lt;b" (an entity written out) comes back as typed, not as "a<b"."""
    reply = await demo.sandbox.command("U0ANA", QUESTIONS, "/hitl review a&lt;b")
    assert reply.status == 200
    assert "No item with id `a&amp;lt;b`." in reply.text  # escaped once, for Slack to show


async def test_a_slash_command_shows_the_bots_ack_to_its_author_only(demo: Demo):
    reply = await demo.sandbox.command("U0MEI", QUESTIONS, "/hitl queue")
    assert reply.status == 200
    assert reply.text.startswith("*Waiting:*")
    assert texts(demo, "U0MEI") == [reply.text]
    assert texts(demo, "U0ANA") == []


async def test_an_external_select_gets_its_options_from_a_block_suggestion(demo: Demo):
    message, block = open_question(demo)
    options = await demo.sandbox.suggest(
        "U0ANA",
        action_id="hitl.q.other_ext",
        block_id=block["block_id"],
        value="bi",
        channel=QUESTIONS,
        ts=message["ts"],
    )
    assert [o["value"] for o in options] == ["billing"]


async def start_labeling_from_home(demo: Demo, user: str) -> None:
    """``user`` clicks "Start labeling" on the App Home they have open (the labeling window
    opens in the background: drained)."""
    home = demo.sandbox.state(user)["home"]
    start = next(
        b
        for b in home["blocks"]
        if b.get("accessory", {}).get("text", {}).get("text") == "Start labeling"
    )
    await demo.sandbox.click(
        user,
        action_id=start["accessory"]["action_id"],
        block_id=start["block_id"],
        view_id=home["id"],
    )
    await demo.rt.background.drain()


async def test_home_start_labeling_and_one_answer_in_the_modal(demo: Demo):
    assert (await demo.sandbox.open_home("U0RAJ")).status == 200
    await demo.fake.wait_for(lambda: "U0RAJ" in demo.fake.home, 5)
    await start_labeling_from_home(demo, "U0RAJ")
    modal = demo.sandbox.modal_for("U0RAJ")
    assert modal is not None and demo.sandbox.modal_for("U0ANA") is None
    actions = next(b for b in modal["blocks"] if b["type"] == "actions")
    choice = actions["elements"][0]
    await demo.sandbox.click(
        "U0RAJ", action_id=choice["action_id"], block_id=actions["block_id"], view_id=modal["id"]
    )
    await demo.rt.background.drain()
    [answer] = list(demo.rt.store.iter_answers())
    assert (answer["user_id"], answer["source"]) == ("U0RAJ", "modal")
    shown = demo.sandbox.modal_for("U0RAJ")
    assert "1 answered in this session" in str(shown["blocks"])
    # the answer decided its item: the window offers its Undo above the next item, and the
    # sandbox's click on it undoes, as in Slack
    [(index, offer)] = [
        (i, b) for i, b in enumerate(shown["blocks"]) if "hitl.undo" in str(b.get("accessory"))
    ]
    await demo.sandbox.click(
        "U0RAJ",
        action_id=offer["accessory"]["action_id"],
        block_id=block_id_of(offer, index),
        view_id=shown["id"],
    )
    await demo.rt.background.drain()
    assert demo.rt.store.get_item(answer["item_id"])["status"] != "resolved"
    shown = demo.sandbox.modal_for("U0RAJ")
    assert "Undone:" in str(shown["blocks"]) and "0 answered in this session" in str(
        shown["blocks"]
    )
    await demo.sandbox.close_view("U0RAJ", shown["id"])
    assert demo.sandbox.modal_for("U0RAJ") is None


async def post_json(demo: Demo, path: str, body: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{demo.url}{path}", json=body) as response:
            return response.status, await response.json()


async def test_a_click_in_a_window_that_moved_on_answers_nothing(demo: Demo):
    """Ana has the labeling window open in two tabs: a label clicked in the second, drawn
    before the first answered, is refused, not stored as her answer to the next item (the bot
    reads the item from the view the click carries)."""
    assert (await demo.sandbox.open_home("U0ANA")).status == 200
    await demo.fake.wait_for(lambda: "U0ANA" in demo.fake.home, 5)
    await start_labeling_from_home(demo, "U0ANA")
    drawn = demo.sandbox.state("U0ANA")["modal"]  # what both tabs show
    actions = next(b for b in drawn["blocks"] if b["type"] == "actions")
    click = {
        "user": "U0ANA",
        "action_id": actions["elements"][0]["action_id"],
        "block_id": actions["block_id"],
        "view_id": drawn["id"],
        "hash": drawn["hash"],
    }
    assert (await post_json(demo, "/sandbox/action", click))[0] == 200  # the first tab
    await demo.rt.background.drain()
    [first] = list(demo.rt.store.iter_answers())
    moved_on = demo.sandbox.state("U0ANA")["modal"]
    assert moved_on["hash"] != drawn["hash"]

    status, said = await post_json(demo, "/sandbox/action", click)  # the second tab
    assert status == 400
    assert said["error"].startswith("This window has moved on since the page drew it")
    await demo.rt.background.drain()
    assert [a["item_id"] for a in demo.rt.store.iter_answers()] == [first["item_id"]]
    assert demo.sandbox.state("U0ANA")["modal"]["hash"] == moved_on["hash"]


async def test_retrain_and_accuracy_work_with_the_chart_as_an_image(demo: Demo):
    simulator = demo.simulator(drive=False)
    simulator.teammates = [Teammate("U0ANA", "ana")]  # answers as Ana, with the true labels
    await simulator.run(answers=12, wait=5)  # enough for 2 labels with 2 examples each
    reply = await demo.sandbox.command("U0ANA", QUESTIONS, "/hitl retrain")
    assert reply.status == 200 and "Retrain" in reply.text
    await demo.rt.background.drain(timeout=60)  # the labels are read after the ack
    assert demo.rt.trainer.task is not None
    await demo.rt.trainer.task
    assert demo.rt.champion is not None
    reply = await demo.sandbox.command("U0ANA", QUESTIONS, "/hitl accuracy")
    assert reply.text.startswith(f"*Model v{demo.rt.champion.version}")
    await demo.rt.background.drain(timeout=60)  # the chart is drawn after the ack (slow)
    assert [m for m in demo.sandbox.timeline("U0ANA", QUESTIONS) if m["files"]] == []
    ana, raj = demo.sandbox.state("U0ANA")["dm"], demo.sandbox.state("U0RAJ")["dm"]
    [shared] = [m for m in ana["messages"] if m["files"]]  # only in Ana's Messages tab
    assert raj["messages"] == [] and raj["id"] != ana["id"]
    file_id = shared["files"][0]["id"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{demo.url}/sandbox/files/{file_id}") as response:
            assert response.status == 200 and response.content_type == "image/png"
            assert (await response.read()).startswith(b"\x89PNG")


async def test_a_signature_with_another_secret_is_refused_by_the_bot(demo: Demo):
    message, block = open_question(demo)
    demo.sandbox.secret = "not-the-secret"
    reply = await demo.sandbox.click(
        "U0ANA",
        action_id=block["elements"][0]["action_id"],
        block_id=block["block_id"],
        channel=QUESTIONS,
        ts=message["ts"],
    )
    assert reply.status == 401
    assert demo.rt.store.count_answers() == 0
    assert texts(demo, "U0ANA")[-1].startswith("⚠️ The app answered HTTP 401")


async def test_unknown_messages_and_users_are_sandbox_errors(demo: Demo):
    with pytest.raises(SandboxError, match="no message"):
        await demo.sandbox.click("U0ANA", action_id="x", block_id="y", channel=QUESTIONS, ts="1.2")
    with pytest.raises(SandboxError, match="no user"):
        demo.sandbox.state("U0NOBODY")


async def test_the_browser_api_refuses_plain_messages_and_bad_json(demo: Demo):
    async with aiohttp.ClientSession() as http:
        command = {"user": "U0ANA", "channel": QUESTIONS, "text": "hello"}
        async with http.post(f"{demo.url}/sandbox/command", json=command) as response:
            assert response.status == 400
            assert (await response.json())["error"].startswith("The sandbox only sends slash")
        as_json = {"Content-Type": "application/json"}
        async with http.post(f"{demo.url}/sandbox/action", data=b"[", headers=as_json) as response:
            assert response.status == 400
        async with http.post(f"{demo.url}/sandbox/action", data=b"{}") as response:
            assert response.status == 415  # not said to be JSON: a cross-site form could send it
        async with http.get(f"{demo.url}/") as response:
            assert response.status == 200 and "slack-hitl sandbox" in await response.text()


# ------------------------------------------------------------------ Slack's error shapes


async def test_a_block_over_a_limit_is_invalid_blocks_with_a_json_pointer(demo: Demo):
    client = AsyncWebClient(token=demo.fake.token, base_url=demo.fake.base_url)
    header = {"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel=QUESTIONS, text="t", blocks=[header])
    body = raised.value.response.data
    assert body["ok"] is False and body["error"] == "invalid_blocks"
    assert body["errors"] == body["response_metadata"]["messages"]
    assert "[json-pointer:/blocks/0]" in body["errors"][0]


async def test_without_a_token_the_api_says_not_authed(demo: Demo):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{demo.fake.base_url}chat.postMessage", json={}) as response:
            assert response.status == 200
            assert await response.json() == {"ok": False, "error": "not_authed"}


async def test_channel_not_found_stops_posting_and_shows_in_hitl_queue(still_demo: Demo):
    demo = still_demo
    client = AsyncWebClient(token=demo.fake.token, base_url=demo.fake.base_url)
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="C0GONE", text="hello")
    assert raised.value.response.data == {"ok": False, "error": "channel_not_found"}

    message, block = open_question(demo)
    await demo.sandbox.click(
        "U0ANA",
        action_id=block["elements"][0]["action_id"],
        block_id=block["block_id"],
        channel=QUESTIONS,
        ts=message["ts"],
    )
    await demo.rt.background.drain()
    demo.fake.fail("chat.postMessage", "channel_not_found")  # the bot's next post fails so
    assert await demo.dispatcher.fill() == 0
    assert demo.dispatcher.channel_state(QUESTIONS).broken == "channel_not_found"
    reply = await demo.sandbox.command("U0ANA", QUESTIONS, "/hitl queue")
    assert f"<#{QUESTIONS}>: 4 of 5 open · ⛔ not posting: channel_not_found" in reply.text


def test_signed_payloads_verify_with_the_signing_secret():
    from slack_sdk.signature import SignatureVerifier

    body, headers = payloads.signed_command({"command": "/hitl", "text": "help"}, "s3cret")
    verifier = SignatureVerifier("s3cret")
    assert verifier.is_valid_request(body, headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    assert body == b"command=%2Fhitl&text=help"


async def test_a_command_from_outside_a_channel_is_refused_not_lost(demo: Demo):
    """The page sent App Home's place (no channel) as the command's channel: the bot answered
    into a channel nobody can open, and what the person typed vanished."""
    with pytest.raises(SandboxError, match="no channel None"):
        await demo.sandbox.command("U0ANA", "None", "/hitl stats")
    with pytest.raises(SandboxError, match="no channel"):  # someone else's direct messages
        await demo.sandbox.command("U0ANA", demo.sandbox.dms["U0RAJ"], "/hitl stats")
    assert demo.sandbox.notes == []
    async with aiohttp.ClientSession() as http:
        command = {"user": "U0ANA", "channel": None, "text": "/hitl stats"}
        async with http.post(f"{demo.url}/sandbox/command", json=command) as response:
            assert response.status == 400
            assert "slash commands are sent in a channel" in (await response.json())["error"]
    assert demo.sandbox.notes == []


# ------------------------------------------------------------------ modals with input blocks


async def test_the_review_modal_is_decided_through_the_browser_api(demo: Demo):
    """`/hitl review ID`: the decision is an input block; the page sends what was picked, the
    sandbox sends it in view.state.values as Slack does, and keeps the bot's errors and
    response_action update (it had sent the view without any value: "Pick a decision.")."""
    from bot.slack.review import DECISION_ACTION, DECISION_BLOCK

    message, block = open_question(demo)
    item_id = block["block_id"][2:]
    await demo.sandbox.command("U0ANA", QUESTIONS, f"/hitl review {item_id}")
    # the modal opens (views.open) after the command's ack, as in Slack
    await demo.fake.wait_for(lambda: demo.sandbox.modal_for("U0ANA") is not None, 5)
    modal = demo.sandbox.state("U0ANA")["modal"]
    assert modal is not None and not modal.get("errors")
    [decision] = [b for b in modal["blocks"] if b["type"] == "input"]
    element = decision["element"]
    groups = element.get("option_groups") or [{"options": element.get("options")}]
    labels = [o["value"] for g in groups for o in g["options"]]
    label = next(v for v in labels if v.startswith("label:")).removeprefix("label:")

    async def submit(values: dict | None) -> dict:
        body = {"user": "U0ANA", "view_id": modal["id"], "hash": modal["hash"]}
        if values is not None:
            body["values"] = values
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{demo.url}/sandbox/view/submit", json=body) as response:
                assert response.status == 200
                return await response.json()

    answered = await submit(None)  # nothing picked: the bot's error shows under the block
    assert answered["body"]["response_action"] == "errors"
    shown = demo.sandbox.state("U0ANA")["modal"]
    assert shown["id"] == modal["id"]
    assert shown.get("errors") == {DECISION_BLOCK: "Pick a decision."}
    assert shown["state"]["values"][DECISION_BLOCK][DECISION_ACTION]["selected_option"] is None

    answered = await submit({DECISION_BLOCK: {DECISION_ACTION: f"label:{label}"}})
    assert answered["body"]["response_action"] == "update"
    assert demo.rt.store.current_label(item_id) == label
    history = demo.rt.store.label_history(item_id)
    assert history[-1]["user_id"] == "U0ANA"
    shown = demo.sandbox.state("U0ANA")["modal"]  # the same modal, updated to what comes next
    assert shown["id"] == modal["id"] and not shown.get("errors")
    assert shown["hash"] != modal["hash"]

    # The same decision sent again from the view as first drawn (a second tab, a double
    # submit) is refused: it is not the decision on the item the window shows now.
    status, said = await post_json(
        demo,
        "/sandbox/view/submit",
        {
            "user": "U0ANA",
            "view_id": modal["id"],
            "hash": modal["hash"],
            "values": {DECISION_BLOCK: {DECISION_ACTION: "remove"}},
        },
    )
    assert status == 400 and said["error"].startswith("This window has moved on")
    assert demo.rt.store.current_label(item_id) == label
    assert len(demo.rt.store.label_history(item_id)) == len(history)
    assert demo.sandbox.state("U0ANA")["modal"]["hash"] == shown["hash"]


def test_a_submission_carries_every_input_block_in_state_values():
    select = {
        "type": "static_select",
        "action_id": "pick",
        "option_groups": [
            {
                "label": {"type": "plain_text", "text": "G"},
                "options": [{"text": {"type": "plain_text", "text": "Cat"}, "value": "cat"}],
            }
        ],
    }
    text = {"type": "plain_text_input", "action_id": "why"}
    blocks = [
        {"type": "section", "block_id": "s", "text": {"type": "mrkdwn", "text": "x"}},
        {"type": "input", "block_id": "a", "label": {}, "element": select},
        {"type": "input", "block_id": "b", "label": {}, "element": text},
    ]
    state = payloads.view_state(blocks, {"a": {"pick": "cat"}})
    assert state == {
        "values": {
            "a": {
                "pick": {
                    "type": "static_select",
                    "selected_option": {
                        "text": {"type": "plain_text", "text": "Cat", "emoji": True},
                        "value": "cat",
                    },
                }
            },
            "b": {"why": {"type": "plain_text_input", "value": None}},
        }
    }


async def test_an_unknown_command_is_said_in_a_sentence_and_the_page_has_no_404s(demo: Demo):
    reply = await demo.sandbox.command("U0ANA", QUESTIONS, "/foo bar")
    assert reply.status == 404
    assert texts(demo, "U0ANA") == ["/foo is not a valid command. Try /hitl help."]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{demo.url}/favicon.ico") as response:
            assert response.status == 204
