"""The requests Slack sends an app, built from what a person did in the sandbox, and signed.

Pure functions of plain data (slack-platform.md §2, §3): interactivity is a form with one field,
``payload=<url-encoded JSON>``; a slash command is flat form fields; an event is a JSON envelope.
``sign`` adds the headers Slack adds, with ``slack_sdk.signature.SignatureVerifier``.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote, urlencode

from slack_sdk.signature import SignatureVerifier

VERIFICATION_TOKEN = "sandbox-verification-token"  # the deprecated field Slack still sends

Signed = tuple[bytes, dict[str, str]]


def sign(body: bytes, secret: str, content_type: str, timestamp: int | None = None) -> Signed:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
    }
    return body, headers


def signed_interaction(payload: dict, secret: str, timestamp: int | None = None) -> Signed:
    """Interactivity: a form with one field, ``payload=<url-encoded JSON>``."""
    body = ("payload=" + quote(json.dumps(payload, separators=(",", ":")))).encode()
    return sign(body, secret, "application/x-www-form-urlencoded", timestamp)


def signed_command(fields: dict[str, str], secret: str, timestamp: int | None = None) -> Signed:
    """A slash command: flat form fields."""
    return sign(urlencode(fields).encode(), secret, "application/x-www-form-urlencoded", timestamp)


def signed_event(envelope: dict, secret: str, timestamp: int | None = None) -> Signed:
    """An Events API delivery: the envelope as JSON."""
    return sign(json.dumps(envelope).encode(), secret, "application/json", timestamp)


def user_object(user: dict, team_id: str) -> dict:
    return {"id": user["id"], "username": user["name"], "name": user["name"], "team_id": team_id}


def action_object(element: dict, block_id: str, action_ts: str, chosen: str | None) -> dict:
    """One entry of ``actions``: a button click, or a select with ``chosen`` as its value."""
    action: dict[str, Any] = {
        "type": element["type"],
        "action_id": element["action_id"],
        "block_id": block_id,
        "action_ts": action_ts,
    }
    if element["type"] == "button":
        action["value"] = element.get("value", "")
        action["text"] = element.get("text", {"type": "plain_text", "text": ""})
        if element.get("style"):
            action["style"] = element["style"]
    else:
        action["selected_option"] = selected_option(element, chosen)
    return action


def options_of(element: dict) -> list[dict]:
    """A select's options, its ``option_groups``' too (Slack takes one or the other)."""
    grouped = [o for group in element.get("option_groups") or [] for o in group.get("options", [])]
    return list(element.get("options") or []) + grouped


def selected_option(element: dict, chosen: str | None) -> dict | None:
    """The ``selected_option`` Slack sends for ``chosen``: the option with that value (its text
    from the element), or null when nothing is chosen."""
    if not chosen:
        return None
    label = chosen
    for option in options_of(element):
        if option.get("value") == chosen:
            label = option.get("text", {}).get("text", label)
    return {"text": {"type": "plain_text", "text": label, "emoji": True}, "value": chosen}


def view_state(blocks: list[dict], chosen: dict[str, dict[str, Any]]) -> dict:
    """A view's ``state``: ``{"values": {block_id: {action_id: {type, ...}}}}`` for every input
    block, with what the person chose (``chosen[block_id][action_id]``, a value or None)."""
    values: dict[str, dict] = {}
    for block in blocks:
        element = block.get("element")
        if block.get("type") != "input" or not isinstance(element, dict):
            continue
        action_id = element.get("action_id", "")
        picked = (chosen.get(block["block_id"]) or {}).get(action_id)
        entry: dict[str, Any] = {"type": element.get("type")}
        if element.get("type") in ("static_select", "external_select"):
            entry["selected_option"] = selected_option(element, picked)
        else:  # plain_text_input and the like
            entry["value"] = picked if picked else None
        values[block["block_id"]] = {action_id: entry}
    return {"values": values}


def block_actions(
    *,
    user: dict,
    team: dict,
    app_id: str,
    action: dict,
    trigger_id: str,
    message: dict | None = None,
    channel: dict | None = None,
    response_url: str | None = None,
    is_ephemeral: bool = False,
    view: dict | None = None,
) -> dict:
    """A ``block_actions`` payload from a message (with a response_url) or from a view."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": user_object(user, team["id"]),
        "api_app_id": app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "team": team,
        "enterprise": None,
        "is_enterprise_install": False,
        "actions": [action],
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view["id"]}
        payload["view"] = view
        payload["state"] = view.get("state", {"values": {}})
        return payload
    assert message is not None and channel is not None
    payload["container"] = {
        "type": "message",
        "message_ts": message["ts"],
        "channel_id": channel["id"],
        "is_ephemeral": is_ephemeral,
    }
    payload["channel"] = {"id": channel["id"], "name": channel.get("name", "")}
    payload["message"] = message
    payload["state"] = {"values": {}}
    payload["response_url"] = response_url
    return payload


def block_suggestion(
    *,
    user: dict,
    team: dict,
    app_id: str,
    action_id: str,
    block_id: str,
    value: str,
    container: dict,
    channel: dict | None = None,
    view: dict | None = None,
) -> dict:
    """What Slack sends while someone types in an external select."""
    payload: dict[str, Any] = {
        "type": "block_suggestion",
        "user": user_object(user, team["id"]),
        "container": container,
        "api_app_id": app_id,
        "token": VERIFICATION_TOKEN,
        "action_id": action_id,
        "block_id": block_id,
        "value": value,
        "team": team,
    }
    if channel is not None:
        payload["channel"] = {"id": channel["id"], "name": channel.get("name", "")}
    if view is not None:
        payload["view"] = view
    return payload


def view_submission(*, user: dict, team: dict, app_id: str, view: dict, trigger_id: str) -> dict:
    """A modal's submission; ``view`` carries ``state.values`` (what the person chose)."""
    return {
        "type": "view_submission",
        "team": team,
        "user": user_object(user, team["id"]),
        "api_app_id": app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "view": view,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_closed(*, user: dict, team: dict, app_id: str, view: dict) -> dict:
    return {
        "type": "view_closed",
        "team": team,
        "user": user_object(user, team["id"]),
        "api_app_id": app_id,
        "token": VERIFICATION_TOKEN,
        "view": view,
        "is_cleared": False,
        "is_enterprise_install": False,
        "enterprise": None,
    }


def command_fields(
    *,
    user: dict,
    team: dict,
    app_id: str,
    channel: dict,
    command: str,
    text: str,
    trigger_id: str,
    response_url: str,
) -> dict[str, str]:
    """The form fields of a slash command (§2.6)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team["id"],
        "team_domain": team["domain"],
        "channel_id": channel["id"],
        "channel_name": channel.get("name", "directmessage"),
        "user_id": user["id"],
        "user_name": user["name"],
        "command": command,
        "text": text,
        "api_app_id": app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def event_envelope(
    event: dict, *, team_id: str, app_id: str, bot_user_id: str, number: int
) -> dict:
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": app_id,
        "type": "event_callback",
        "event": event,
        "event_id": f"Ev{number:08d}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


def app_home_opened(user_id: str, event_ts: str, view: dict | None) -> dict:
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": "D" + user_id[1:],
        "tab": "home",
        "event_ts": event_ts,
    }
    if view is not None:
        event["view"] = view
    return event
