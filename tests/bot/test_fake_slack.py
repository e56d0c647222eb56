"""The fake Slack behaves like Slack for a real slack_sdk AsyncWebClient and SocketModeClient."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.sandbox import FakeSlack
from tests.fake_slack import CHANNEL, slack_client
from tests.fake_socket_mode import FakeSocketMode
from tests.signing import command_fields

SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "Is this *spam*?"}}
MODAL = {
    "type": "modal",
    "callback_id": "label",
    "title": {"type": "plain_text", "text": "Label"},
    "blocks": [SECTION],
}
HOME = {"type": "home", "blocks": [SECTION]}


async def error_of(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


# ------------------------------------------------------------------ round trips


async def test_auth_test_names_the_bot_and_its_scopes(fake_slack: FakeSlack):
    reply = await slack_client(fake_slack).auth_test()

    assert (reply["team_id"], reply["user_id"], reply["bot_id"]) == ("T0HITL", "UBOT", "BHITL")
    assert {"url", "team", "user"} <= reply.data.keys()
    assert "chat:write" in reply.headers["X-OAuth-Scopes"].split(",")


async def test_post_update_delete_round_trip(fake_slack: FakeSlack):
    client = slack_client(fake_slack)

    posted = await client.chat_postMessage(channel=CHANNEL, text="Spam?", blocks=[SECTION])
    updated = await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="Answered: spam")

    assert posted["channel"] == CHANNEL and posted["message"]["blocks"] == [SECTION]
    assert updated["text"] == "Answered: spam"
    [message] = fake_slack.messages(CHANNEL)
    assert message["ts"] == posted["ts"] and message["text"] == "Answered: spam"
    assert message["bot_id"] == "BHITL" and message["user"] == "UBOT"
    assert message["blocks"] == [SECTION]  # chat.update keeps blocks it was not given
    assert message["edited"]["user"] == "UBOT"

    await client.chat_delete(channel=CHANNEL, ts=posted["ts"])
    assert fake_slack.messages(CHANNEL) == []
    gone = await error_of(client.chat_update(channel=CHANNEL, ts=posted["ts"], text="x"))
    assert gone.response["error"] == "message_not_found"


async def test_timestamps_increase_and_look_like_slacks(fake_slack: FakeSlack):
    client = slack_client(fake_slack)
    stamps = [(await client.chat_postMessage(channel=CHANNEL, text=str(n)))["ts"] for n in range(3)]

    assert stamps == sorted(stamps, key=float) and len(set(stamps)) == 3
    assert stamps[0] == "1700000000.000100"
    assert [m["text"] for m in fake_slack.messages(CHANNEL)] == ["0", "1", "2"]


async def test_json_body_args_and_bolts_extra_team_id_are_merged(fake_slack: FakeSlack):
    client = AsyncWebClient(token=fake_slack.token, base_url=fake_slack.base_url, team_id="T0HITL")
    await client.chat_postMessage(channel=CHANNEL, text="hi", blocks=[SECTION])

    call = await fake_slack.next_call("chat.postMessage")
    assert call.params["team_id"] == "T0HITL"
    assert call.params["blocks"] == [SECTION] and call.token == fake_slack.token


async def test_a_post_to_a_user_id_lands_in_the_direct_message(fake_slack: FakeSlack):
    reply = await slack_client(fake_slack).chat_postMessage(channel="U0ADMIN", text="retrained")

    assert reply["channel"] == fake_slack.dm_channel("U0ADMIN")
    assert fake_slack.messages(reply["channel"])[0]["text"] == "retrained"


async def test_ephemeral_is_recorded_for_its_user(fake_slack: FakeSlack):
    client = slack_client(fake_slack)
    reply = await client.chat_postEphemeral(channel=CHANNEL, user="U0ANA", text="Thanks!")

    assert fake_slack.ephemerals == [
        {
            "channel": CHANNEL,
            "user": "U0ANA",
            "message_ts": reply["message_ts"],
            "text": "Thanks!",
            "blocks": None,
            "thread_ts": None,
        }
    ]
    stranger = await error_of(client.chat_postEphemeral(channel=CHANNEL, user="U0NOBODY", text="x"))
    assert stranger.response["error"] == "user_not_in_channel"
    assert fake_slack.messages(CHANNEL) == []


async def test_views_open_push_update_with_hash(fake_slack: FakeSlack):
    client = slack_client(fake_slack)

    opened = (await client.views_open(trigger_id="t1", view=MODAL))["view"]
    pushed = (await client.views_push(trigger_id="t2", view=MODAL | {"callback_id": "more"}))[
        "view"
    ]
    new_view = MODAL | {"private_metadata": "item-7"}
    updated = (await client.views_update(view_id=opened["id"], hash=opened["hash"], view=new_view))[
        "view"
    ]

    assert opened["id"].startswith("V") and opened["id"] != pushed["id"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    assert fake_slack.views[opened["id"]]["private_metadata"] == "item-7"
    assert fake_slack.views[pushed["id"]]["callback_id"] == "more"
    stale = await error_of(
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=MODAL)
    )
    assert stale.response["error"] == "hash_conflict"
    missing = await error_of(client.views_update(view_id="V404", view=MODAL))
    assert missing.response["error"] == "not_found"
    reused = await error_of(client.views_open(trigger_id="t1", view=MODAL))
    assert reused.response["error"] == "exchanged_trigger_id"


async def test_views_update_by_external_id(fake_slack: FakeSlack):
    client = slack_client(fake_slack)
    opened = (await client.views_open(trigger_id="t1", view=MODAL | {"external_id": "q-7"}))["view"]

    await client.views_update(external_id="q-7", view=MODAL | {"external_id": "q-7", "blocks": []})

    assert fake_slack.views[opened["id"]]["blocks"] == []


async def test_views_publish_keeps_one_home_per_user(fake_slack: FakeSlack):
    client = slack_client(fake_slack)

    first = (await client.views_publish(user_id="U0ANA", view=HOME))["view"]
    second = (await client.views_publish(user_id="U0ANA", view=HOME | {"blocks": []}))["view"]

    assert first["id"] == second["id"] and fake_slack.home["U0ANA"]["blocks"] == []
    not_home = await error_of(client.views_publish(user_id="U0ANA", view=MODAL))
    assert not_home.response["error"] == "invalid_arguments"
    nobody = await error_of(client.views_publish(user_id="U0NOBODY", view=HOME))
    assert nobody.response["error"] == "user_not_found"


async def test_users_and_conversations_info_are_gets(fake_slack: FakeSlack):
    client = slack_client(fake_slack)

    user = (await client.users_info(user="U0ADMIN"))["user"]
    channel = (await client.conversations_info(channel=CHANNEL))["channel"]

    assert (user["name"], user["is_admin"]) == ("admin", True)
    assert (channel["name"], channel["is_member"]) == ("labeling", True)
    assert [c.http_method for c in fake_slack.calls] == ["GET", "GET"]
    unknown = await error_of(client.users_info(user="U0NOBODY"))
    assert unknown.response["error"] == "user_not_found"


async def test_files_upload_v2_end_to_end(fake_slack: FakeSlack):
    client = slack_client(fake_slack)

    reply = await client.files_upload_v2(
        channel=CHANNEL,
        content="label,count\nspam,3\n",
        filename="labels.csv",
        title="Labels",
        initial_comment="This week's labels",
    )

    [stored] = fake_slack.files.values()
    assert stored["content"] == b"label,count\nspam,3\n"
    assert (stored["filename"], stored["title"], stored["channel"]) == (
        "labels.csv",
        "Labels",
        CHANNEL,
    )
    assert reply["file"]["id"] == stored["id"]
    [message] = fake_slack.messages(CHANNEL)
    assert message["text"] == "This week's labels" and message["files"][0]["id"] == stored["id"]
    completed = fake_slack.calls_to("files.completeUploadExternal")[0]
    assert completed.params["files"][0]["id"] == stored["id"]  # JSON string decoded


async def test_response_url_replaces_the_original_message(fake_slack: FakeSlack):
    posted = await slack_client(fake_slack).chat_postMessage(channel=CHANNEL, text="Spam?")
    webhook = AsyncWebhookClient(fake_slack.response_url(CHANNEL, posted["ts"]))

    await webhook.send(text="Thanks, recorded: spam", replace_original=True)

    assert fake_slack.message(CHANNEL, posted["ts"])["text"] == "Thanks, recorded: spam"
    assert fake_slack.responses[0]["payload"]["replace_original"] is True


# ------------------------------------------------------------------ Slack's refusals


async def test_a_wrong_token_gets_invalid_auth_and_none_gets_not_authed(fake_slack: FakeSlack):
    wrong = AsyncWebClient(token="xoxb-stolen", base_url=fake_slack.base_url)
    anonymous = AsyncWebClient(base_url=fake_slack.base_url)

    assert (await error_of(wrong.auth_test())).response["error"] == "invalid_auth"
    assert (await error_of(anonymous.auth_test())).response["error"] == "not_authed"
    assert [c.token for c in fake_slack.calls] == ["xoxb-stolen", None]


async def test_unscripted_methods_are_unknown(fake_slack: FakeSlack):
    failure = await error_of(slack_client(fake_slack).api_call("reactions.add"))

    assert failure.response["error"] == "unknown_method"


async def test_unknown_channel_is_channel_not_found(fake_slack: FakeSlack):
    failure = await error_of(slack_client(fake_slack).chat_postMessage(channel="C0NONE", text="x"))

    assert failure.response["error"] == "channel_not_found"


async def test_not_in_channel_until_the_bot_joins(fake_slack: FakeSlack):
    fake_slack.add_channel("C0OTHER", "other", is_member=False)
    client = slack_client(fake_slack)

    refused = await error_of(client.chat_postMessage(channel="C0OTHER", text="hi"))
    joined = await client.conversations_join(channel="C0OTHER")
    posted = await client.chat_postMessage(channel="C0OTHER", text="hi")

    assert refused.response["error"] == "not_in_channel"
    assert joined["channel"]["is_member"] is True and posted["ok"]
    again = await client.conversations_join(channel="C0OTHER")
    assert again["warning"] == "already_in_channel"


async def test_a_message_needs_text_or_blocks(fake_slack: FakeSlack):
    # api_call: chat_postMessage() would warn (an error here) before sending a text-less message
    client = slack_client(fake_slack)
    failure = await error_of(client.api_call("chat.postMessage", json={"channel": CHANNEL}))

    assert failure.response["error"] == "no_text"


async def test_51_blocks_are_invalid_blocks(fake_slack: FakeSlack):
    client = slack_client(fake_slack)

    failure = await error_of(
        client.chat_postMessage(channel=CHANNEL, text="x", blocks=[SECTION] * 51)
    )

    assert failure.response["error"] == "invalid_blocks"
    assert "[json-pointer:/blocks]" in failure.response["errors"][0]
    assert fake_slack.messages(CHANNEL) == []
    assert (await client.chat_postMessage(channel=CHANNEL, text="x", blocks=[SECTION] * 50))["ok"]


async def test_blocks_over_the_cap_are_msg_blocks_too_long_on_every_chat_method(
    fake_slack: FakeSlack,
):
    client = slack_client(fake_slack)
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 2000}}
    posted = await client.chat_postMessage(channel=CHANNEL, text="x", blocks=[section] * 6)
    fake_slack.blocks_cap = 10_000  # six 2,000-character sections are over it as a whole

    for call in (
        client.chat_postMessage(channel=CHANNEL, text="x", blocks=[section] * 6),
        client.chat_update(channel=CHANNEL, ts=posted["ts"], text="y", blocks=[section] * 6),
        client.chat_postEphemeral(channel=CHANNEL, user="U0ANA", text="x", blocks=[section] * 6),
    ):
        assert (await error_of(call)).response["error"] == "msg_blocks_too_long"
    assert len(fake_slack.messages(CHANNEL)) == 1 and fake_slack.ephemerals == []
    assert fake_slack.message(CHANNEL, posted["ts"])["text"] == "x"  # the update took nothing
    assert (await client.chat_postMessage(channel=CHANNEL, text="x", blocks=[section] * 4))["ok"]


async def test_a_block_slack_sdk_would_reject_is_invalid_blocks(fake_slack: FakeSlack):
    too_long = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}

    failure = await error_of(
        slack_client(fake_slack).chat_postMessage(channel=CHANNEL, text="x", blocks=[too_long])
    )

    assert failure.response["error"] == "invalid_blocks"
    assert failure.response["errors"] == [
        "text attribute cannot exceed 3000 characters [json-pointer:/blocks/0]"
    ]


async def test_views_refuse_long_titles_and_more_than_100_blocks(fake_slack: FakeSlack):
    client = slack_client(fake_slack)
    long_title = MODAL | {"title": {"type": "plain_text", "text": "x" * 25}}
    many_blocks = MODAL | {"blocks": [SECTION] * 101}

    for view in (long_title, many_blocks):
        failure = await error_of(client.views_open(trigger_id=str(id(view)), view=view))
        assert failure.response["error"] == "invalid_arguments"
    assert fake_slack.views == {}


# ------------------------------------------------------------------ faults


async def test_429_surfaces_as_slack_api_error_with_retry_after(fake_slack: FakeSlack):
    fake_slack.fail("chat.postMessage", status=429, retry_after=7)

    failure = await error_of(slack_client(fake_slack).chat_postMessage(channel=CHANNEL, text="x"))

    assert failure.response.status_code == 429
    assert failure.response["error"] == "ratelimited"
    assert failure.response.headers["Retry-After"] == "7"
    assert fake_slack.calls[0].faulted and fake_slack.messages(CHANNEL) == []


async def test_the_rate_limit_retry_handler_retries_after_a_429(fake_slack: FakeSlack):
    # The handler sleeps Retry-After (0 here) plus up to 1 s of jitter: the library's own backoff.
    fake_slack.fail("chat.postMessage", status=429, retry_after=0)
    client = slack_client(fake_slack)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))

    reply = await client.chat_postMessage(channel=CHANNEL, text="x")

    assert reply["ok"] and [c.faulted for c in fake_slack.calls] == [True, False]
    assert len(fake_slack.messages(CHANNEL)) == 1


async def test_500_is_internal_error(fake_slack: FakeSlack):
    fake_slack.fail("chat.update", "whatever", status=500)

    failure = await error_of(
        slack_client(fake_slack).chat_update(channel=CHANNEL, ts="1", text="x")
    )

    assert failure.response.status_code == 500
    assert failure.response["error"] == "internal_error"


async def test_an_error_fault_fails_only_the_next_calls(fake_slack: FakeSlack):
    fake_slack.fail("auth.test", "account_inactive", times=2)
    client = slack_client(fake_slack)

    errors = [(await error_of(client.auth_test())).response["error"] for _ in range(2)]

    assert errors == ["account_inactive"] * 2
    assert (await client.auth_test())["ok"]


async def test_a_reset_connection_is_a_connection_error(fake_slack: FakeSlack):
    fake_slack.fail("chat.postMessage", mode="reset")
    client = slack_client(fake_slack, retry_handlers=[])

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.chat_postMessage(channel=CHANNEL, text="x")
    assert fake_slack.calls[0].faulted and fake_slack.messages(CHANNEL) == []


async def test_the_connection_retry_handler_recovers_from_a_reset(fake_slack: FakeSlack):
    fake_slack.fail("chat.postMessage", mode="reset")
    no_wait = FixedValueRetryIntervalCalculator(fixed_internal=0)
    client = slack_client(
        fake_slack, retry_handlers=[AsyncConnectionErrorRetryHandler(interval_calculator=no_wait)]
    )

    reply = await client.chat_postMessage(channel=CHANNEL, text="x")

    assert reply["ok"] and [c.faulted for c in fake_slack.calls] == [True, False]


async def test_a_held_call_is_answered_when_timeouts_are_released(fake_slack: FakeSlack):
    fake_slack.fail("chat.postMessage", mode="timeout")
    client = slack_client(fake_slack)
    posting = asyncio.create_task(client.chat_postMessage(channel=CHANNEL, text="late"))

    held = await fake_slack.next_call("chat.postMessage")
    assert held.faulted and not posting.done()
    assert fake_slack.messages(CHANNEL) == []

    fake_slack.release_timeouts()
    reply = await asyncio.wait_for(posting, 2)
    assert reply["ok"] and fake_slack.messages(CHANNEL)[0]["text"] == "late"


async def test_a_held_call_trips_the_clients_own_timeout(fake_slack: FakeSlack):
    fake_slack.fail("chat.postMessage", mode="timeout")
    client = slack_client(fake_slack, timeout=0.2)  # the server never answers before release

    with pytest.raises(asyncio.TimeoutError):
        await client.chat_postMessage(channel=CHANNEL, text="x")
    fake_slack.release_timeouts()


def test_fail_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="mode='hang'"):
        FakeSlack().fail("auth.test", mode="hang")


@pytest.mark.parametrize("mode", ["error", "reset"])
async def test_a_fault_after_the_call_stores_the_message_and_loses_the_answer(
    fake_slack: FakeSlack, mode: str
):
    fake_slack.fail("chat.postMessage", status=500, mode=mode, after=True)
    client = slack_client(fake_slack, retry_handlers=[])

    with pytest.raises((SlackApiError, aiohttp.ClientError)):
        await client.chat_postMessage(channel=CHANNEL, text="stored all the same")

    [message] = fake_slack.messages(CHANNEL)
    assert message["text"] == "stored all the same" and fake_slack.calls[0].faulted
    assert (await client.chat_postMessage(channel=CHANNEL, text="next"))["ok"]


def test_after_needs_an_error_or_a_reset():
    with pytest.raises(ValueError, match="after=True"):
        FakeSlack().fail("chat.postMessage", mode="timeout", after=True)


async def test_history_of_a_private_channel_needs_groups_history():
    fake = FakeSlack(scopes=("chat:write", "channels:history"))
    fake.add_channel("C0PUBLIC", "public")
    fake.add_channel("G0PRIVATE", "private", is_private=True)
    async with fake:
        client = slack_client(fake)
        assert (await client.conversations_history(channel="C0PUBLIC"))["ok"]

        failure = await error_of(client.conversations_history(channel="G0PRIVATE"))

    assert failure.response["error"] == "missing_scope"
    assert failure.response["needed"] == "groups:history"
    assert failure.response["provided"] == "chat:write,channels:history"


async def test_a_text_over_3000_characters_anywhere_is_invalid_blocks(fake_slack: FakeSlack):
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": "x" * 3001}]}

    failure = await error_of(
        slack_client(fake_slack).chat_postMessage(channel=CHANNEL, text="x", blocks=[context])
    )

    assert failure.response["error"] == "invalid_blocks"
    assert failure.response["errors"] == [
        "must be less than 3001 characters [json-pointer:/blocks/0/elements/0/text]"
    ]


async def test_an_empty_text_anywhere_is_invalid_blocks(fake_slack: FakeSlack):
    section = {"type": "section", "text": {"type": "mrkdwn", "text": ""}}
    context = {"type": "context", "elements": [{"type": "plain_text", "text": ""}]}

    failure = await error_of(
        slack_client(fake_slack).chat_postMessage(
            channel=CHANNEL, text="x", blocks=[section, context]
        )
    )

    assert failure.response["error"] == "invalid_blocks"
    assert failure.response["errors"] == [
        "must be more than 0 characters [json-pointer:/blocks/0/text/text]",
        "must be more than 0 characters [json-pointer:/blocks/1/elements/0/text]",
    ]


async def test_a_section_field_over_2000_characters_is_invalid_blocks(fake_slack: FakeSlack):
    fields = [{"type": "mrkdwn", "text": "x" * 2000}, {"type": "mrkdwn", "text": "y" * 2001}]
    section = {"type": "section", "fields": fields}

    failure = await error_of(
        slack_client(fake_slack).chat_postEphemeral(
            channel=CHANNEL, user="U0ANA", text="x", blocks=[section]
        )
    )

    assert failure.response["error"] == "invalid_blocks"
    assert failure.response["errors"] == [
        "must be less than 2001 characters [json-pointer:/blocks/0/fields/1/text]"
    ]


async def test_a_response_url_refuses_what_a_message_refuses_with_a_400(fake_slack: FakeSlack):
    posted = await slack_client(fake_slack).chat_postMessage(channel=CHANNEL, text="Spam?")
    webhook = AsyncWebhookClient(fake_slack.response_url(CHANNEL, posted["ts"]))
    empty = {"type": "section", "text": {"type": "mrkdwn", "text": ""}}

    refused = await webhook.send(text="x", blocks=[empty], replace_original=True)
    taken = await webhook.send(text="Thanks", replace_original=True)

    assert (refused.status_code, refused.body) == (400, "invalid_blocks")
    assert taken.status_code == 200
    assert fake_slack.message(CHANNEL, posted["ts"])["text"] == "Thanks"
    assert [r["payload"]["text"] for r in fake_slack.responses] == ["Thanks"]


# ------------------------------------------------------------------ waiting for calls


async def test_next_call_returns_each_call_once_in_order(fake_slack: FakeSlack):
    client = slack_client(fake_slack)
    first_wait = asyncio.create_task(fake_slack.next_call("chat.postMessage"))
    await client.auth_test()
    assert not first_wait.done()  # an auth.test is not what it waits for

    for text in ("one", "two"):
        await client.chat_postMessage(channel=CHANNEL, text=text)

    first = await asyncio.wait_for(first_wait, 2)
    second = await fake_slack.next_call("chat.postMessage")
    assert (first.params["text"], second.params["text"]) == ("one", "two")
    assert first.at < second.at and fake_slack.calls[second.at] is second
    with pytest.raises(TimeoutError, match="call #3 to chat.postMessage"):
        await fake_slack.next_call("chat.postMessage", timeout=0.05)


async def test_wait_for_wakes_on_state_changes(fake_slack: FakeSlack):
    client = slack_client(fake_slack)
    waiting = asyncio.create_task(fake_slack.wait_for(lambda: bool(fake_slack.home)))

    await client.views_publish(user_id="U0RAJ", view=HOME)

    await asyncio.wait_for(waiting, 2)
    assert list(fake_slack.home) == ["U0RAJ"]


# ------------------------------------------------------------------ Socket Mode


async def test_a_socket_mode_client_connects_and_acks_an_envelope(fake_slack: FakeSlack):
    server = FakeSocketMode()
    fake_slack.socket_url = await server.start()
    client = SocketModeClient(
        app_token=fake_slack.app_token,
        web_client=slack_client(fake_slack),
        auto_reconnect_enabled=False,
    )

    async def acknowledge(client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        reply = SocketModeResponse(envelope_id=request.envelope_id, payload={"text": "3 queued"})
        await client.send_socket_mode_response(reply)

    client.socket_mode_request_listeners.append(acknowledge)
    try:
        await client.connect()
        envelope_id = await server.send_envelope("slash_commands", command_fields("queue"))
        ack = await server.next_ack(envelope_id)
    finally:
        await client.close()
        await server.close()

    assert ack == {"envelope_id": envelope_id, "payload": {"text": "3 queued"}}
    opened = fake_slack.calls_to("apps.connections.open")
    assert [c.token for c in opened] == [fake_slack.app_token]


async def test_a_disconnect_makes_the_client_reconnect_through_apps_connections_open(
    fake_slack: FakeSlack,
):
    server = FakeSocketMode()
    fake_slack.socket_url = await server.start()
    client = SocketModeClient(
        app_token=fake_slack.app_token,
        web_client=slack_client(fake_slack),
        auto_reconnect_enabled=False,
    )

    async def acknowledge(client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

    client.socket_mode_request_listeners.append(acknowledge)
    try:
        await client.connect()
        await server.disconnect("refresh_requested")
        await server.wait_connected(count=2)
        envelope_id = await server.send_envelope("events_api", {"type": "event_callback"})
        ack = await server.next_ack(envelope_id)
    finally:
        await client.close()
        await server.close()

    assert ack == {"envelope_id": envelope_id}
    assert len(fake_slack.calls_to("apps.connections.open")) == 2


async def test_apps_connections_open_wants_the_app_token(fake_slack: FakeSlack):
    fake_slack.socket_url = "ws://127.0.0.1:1/link"

    client = AsyncWebClient(base_url=fake_slack.base_url)

    wrong = await error_of(client.apps_connections_open(app_token="xapp-stolen"))
    bot_token = await error_of(client.apps_connections_open(app_token=fake_slack.token))
    reply = await client.apps_connections_open(app_token=fake_slack.app_token)

    assert wrong.response["error"] == "invalid_auth"
    assert bot_token.response["error"] == "not_allowed_token_type"
    assert reply["url"] == "ws://127.0.0.1:1/link"
