"""Correctly signed Slack requests, and the payloads Slack really sends (slack-platform.md §2, §3).

Every `signed_*` function returns `(body, headers)` ready for an aiohttp test client or for
`AsyncBoltRequest(body=body.decode(), headers=headers)`. The signature comes from
`slack_sdk.signature.SignatureVerifier`, over the exact bytes returned. Pass an old `timestamp` to
build a replayed request.
"""

from __future__ import annotations

import itertools
from typing import Any

from bot.sandbox import payloads

TEAM_ID = "T0HITL"
TEAM_DOMAIN = "hitl-sandbox"
API_APP_ID = "A0HITL"
BOT_USER_ID = "UBOT"
BOT_ID = "BHITL"
CHANNEL = "C0QUESTIONS"
CHANNEL_NAME = "labeling"
MESSAGE_TS = "1700000000.000100"
TRIGGER_ID = "1700000001.0001.0123456789abcdef"
RESPONSE_URL = "http://127.0.0.1:9/no-fake-slack/response"
"""The response_url of a payload built here when the test names none: a loopback port nothing
listens on, so a reply sent to it fails at once with the product's own line ("could not answer
by response_url: ClientConnectorError"), which tests/bot/conftest.py fails a test for. The
harness (``tests.bot.harness.Bot``) swaps it for its fake Slack's ``response_url()``, where a
reply is recorded in ``fake.responses``; elsewhere, pass ``response_url=fake.response_url(...)``."""
VERIFICATION_TOKEN = "legacy-verification-token"  # deprecated field Slack still sends

_event_ids = itertools.count(1)

Signed = tuple[bytes, dict[str, str]]


# The sandbox signs what a person does in the browser the same way: one implementation.
sign = payloads.sign
signed_action = payloads.signed_interaction
signed_command = payloads.signed_command
signed_event = payloads.signed_event


def _user(user_id: str) -> dict:
    name = user_id.removeprefix("U0").lower()
    return {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID}


def block_actions_payload(
    user_id: str,
    action_id: str,
    value: str,
    *,
    channel: str = CHANNEL,
    message_ts: str = MESSAGE_TS,
    block_id: str = "question",
    action_type: str = "button",
    selected_value: str | None = None,
    trigger_id: str = TRIGGER_ID,
    response_url: str = RESPONSE_URL,
    message: dict | None = None,
    view: dict | None = None,
) -> dict:
    """A `block_actions` payload for one button click or select choice.

    From a message by default; pass `view` (a modal or Home view) for an action inside a view, which
    then has a view container and no channel, message or response_url (§2.3). ``response_url``:
    see RESPONSE_URL.
    """
    action: dict[str, Any] = {
        "type": action_type,
        "action_id": action_id,
        "block_id": block_id,
        "action_ts": "1700000001.000200",
    }
    if action_type == "button":
        action["value"] = value
        action["text"] = {"type": "plain_text", "text": value, "emoji": True}
    else:
        chosen = selected_value if selected_value is not None else value
        action["selected_option"] = {
            "text": {"type": "plain_text", "text": chosen, "emoji": True},
            "value": chosen,
        }
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": [action],
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id", "V0000000001")}
        payload["view"] = view
        return payload
    payload["container"] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel,
        "is_ephemeral": False,
    }
    payload["channel"] = {"id": channel, "name": CHANNEL_NAME}
    payload["message"] = message or {
        "type": "message",
        "ts": message_ts,
        "text": "Is this prediction right?",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "blocks": [],
    }
    payload["response_url"] = response_url
    return payload


def command_fields(
    text: str,
    user_id: str = "U0ANA",
    channel_id: str = CHANNEL,
    command: str = "/hitl",
    *,
    trigger_id: str = TRIGGER_ID,
    response_url: str = RESPONSE_URL,
) -> dict[str, str]:
    """The form fields of a slash command invocation (§2.6); ``response_url``: see RESPONSE_URL."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": CHANNEL_NAME if channel_id == CHANNEL else "directmessage",
        "user_id": user_id,
        "user_name": _user(user_id)["name"],
        "command": command,
        "text": text,
        "api_app_id": API_APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def view_submission_payload(
    callback_id: str,
    values: dict[str, dict[str, dict]],
    *,
    user_id: str = "U0ANA",
    private_metadata: str = "",
    view_id: str = "V0000000001",
    view_hash: str = "1700000000.abcdef12",
    trigger_id: str = TRIGGER_ID,
    blocks: list[dict] | None = None,
) -> dict:
    """A `view_submission` payload; `values` is `state.values`: {block_id: {action_id: {...}}}.

    Build entries with `text_input_value` / `selected_option_value`.
    """
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "user": _user(user_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "view": {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": "modal",
            "blocks": blocks or [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": values},
            "hash": view_hash,
            "title": {"type": "plain_text", "text": "slack-hitl", "emoji": True},
            "close": {"type": "plain_text", "text": "Cancel", "emoji": True},
            "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": API_APP_ID,
            "external_id": "",
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def text_input_value(value: str) -> dict:
    return {"type": "plain_text_input", "value": value}


def selected_option_value(value: str, text: str | None = None) -> dict:
    option = {"text": {"type": "plain_text", "text": text or value, "emoji": True}, "value": value}
    return {"type": "static_select", "selected_option": option}


def event_envelope(event: dict) -> dict:
    """An Events API `event_callback` envelope around `event`, with a fresh `event_id`."""
    number = next(_event_ids)
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "api_app_id": API_APP_ID,
        "type": "event_callback",
        "event": event,
        "event_id": f"Ev{number:08d}",
        "event_time": 1_700_000_000 + number,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


def app_home_opened_event(user_id: str, *, tab: str = "home", view: dict | None = None) -> dict:
    """The envelope of an `app_home_opened` event; `view` only if a Home was published before."""
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": "D" + user_id[1:],
        "tab": tab,
        "event_ts": "1700000000.000100",
    }
    if view is not None:
        event["view"] = view
    return event_envelope(event)


def url_verification_envelope(challenge: str) -> dict:
    return {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}


def view_closed_payload(user_id: str, view: dict) -> dict:
    """The `view_closed` payload Slack sends when ``user_id`` closes ``view`` (a modal that
    asked for it: ``notify_on_close``)."""
    return {
        "type": "view_closed",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "user": {"id": user_id, "team_id": TEAM_ID},
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "view": view,
        "is_cleared": False,
    }
