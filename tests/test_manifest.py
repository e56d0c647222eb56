"""manifest.yml is a valid Slack app manifest and names what the app serves (slack-platform.md §6).

Validated offline against Slack's published JSON Schema (slackapi/manifest-schema, MIT), which the
repository carries in tests/data/slack_manifest_schema with its source, version and licence.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tests" / "data" / "slack_manifest_schema"
SCHEMA_URL = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/"
VERSIONS = ("1.0.0", "2.0.0")
REQUEST_PATH = "/slack/events"


def load_schema(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def v1_validator() -> Draft7Validator:
    return Draft7Validator(load_schema(SCHEMAS / "schemas" / "manifest.schema.1.0.0.json"))


@pytest.fixture(scope="module")
def top_validator() -> Draft7Validator:
    """The dispatcher schema, whose `$ref`s point at the versioned files' raw GitHub URLs."""
    registry = Registry().with_resources(
        (
            SCHEMA_URL + f"manifest.schema.{version}.json",
            Resource.from_contents(
                load_schema(SCHEMAS / "schemas" / f"manifest.schema.{version}.json"),
                default_specification=DRAFT7,
            ),
        )
        for version in VERSIONS
    )
    return Draft7Validator(load_schema(SCHEMAS / "manifest.schema.json"), registry=registry)


def errors(validator: Draft7Validator, manifest: dict) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]


def socket_mode_variant(manifest: dict) -> dict:
    """The manifest as the comment in manifest.yml says to switch it to Socket Mode."""
    variant = copy.deepcopy(manifest)
    variant["settings"]["socket_mode_enabled"] = True
    for command in variant["features"]["slash_commands"]:
        del command["url"]
    del variant["settings"]["interactivity"]["request_url"]
    del variant["settings"]["interactivity"]["message_menu_options_url"]
    del variant["settings"]["event_subscriptions"]["request_url"]
    return variant


def test_manifest_is_valid_against_slacks_v1_schema(manifest, v1_validator):
    assert errors(v1_validator, manifest) == []


def test_manifest_is_valid_against_the_top_level_schema(manifest, top_validator):
    assert errors(top_validator, manifest) == []


def test_the_socket_mode_variant_is_valid_too(manifest, v1_validator, top_validator):
    variant = socket_mode_variant(manifest)

    assert errors(v1_validator, variant) == []
    assert errors(top_validator, variant) == []


def test_manifest_names_the_command_and_the_request_url_the_app_serves(manifest):
    [command] = manifest["features"]["slash_commands"]
    settings = manifest["settings"]

    assert command["command"] == "/hitl" and command["should_escape"] is False
    from bot.slack.commands import BY_NAME
    from bot.slack.commands import SUBCOMMANDS as SERVED

    hint = command["usage_hint"].removeprefix("[").removesuffix("]").split("|")
    assert [h.split()[0] for h in hint] == list(SERVED)
    for entry in hint:  # each one's arguments as /hitl help gives them (where they fit a hint)
        args = BY_NAME[entry.split()[0]].args
        if "|" not in args:
            assert entry == f"{entry.split()[0]} {args}".strip()
    urls = [
        command["url"],
        settings["interactivity"]["request_url"],
        settings["event_subscriptions"]["request_url"],
    ]
    assert all(url.startswith("https://") and url.endswith(REQUEST_PATH) for url in urls)
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is False


def test_the_options_load_url_is_set_because_a_question_can_carry_an_external_select(manifest):
    from bot.slack.blocks import MAX_STATIC_OPTIONS, Question, question_blocks

    labels = [f"label {n}" for n in range(MAX_STATIC_OPTIONS + 1)]
    built = [b.to_dict() for b in question_blocks(Question("i1", "t", labels, [("label 3", 0.5)]))]
    elements = [e for b in built for e in b.get("elements", [])]
    assert any(e["type"] == "external_select" for e in elements)  # the code can send one ...
    # ... and Slack asks an Options Load URL for its options: without one "Other…" is empty
    url = manifest["settings"]["interactivity"]["message_menu_options_url"]
    assert url.startswith("https://") and url.endswith(REQUEST_PATH)


# Listened for, deliberately not subscribed to: Slack sends `message_deleted` only to an app
# subscribed to every message of its channels (message.channels, message.groups); README says so.
NOT_SUBSCRIBED = {"message"}


def events_the_app_listens_for() -> set[str]:
    """The event types bot/slack/app.py registers a Bolt listener for (`app.event(...)`), read
    from its source: each is a string, or a dict whose "type" is one."""
    import ast

    tree = ast.parse((ROOT / "bot" / "slack" / "app.py").read_text(encoding="utf-8"))
    listened = set()
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "event"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "app"
        ):
            continue
        [arg] = node.args
        if isinstance(arg, ast.Dict):
            arg = dict(zip((k.value for k in arg.keys), arg.values, strict=True))["type"]
        assert isinstance(arg, ast.Constant), f"app.py line {node.lineno}: write the event name out"
        listened.add(arg.value)
    return listened


def test_manifest_subscribes_to_exactly_the_events_the_app_acts_on(manifest):
    listened = events_the_app_listens_for()
    assert {"app_home_opened", "app_uninstalled", "message"} <= listened  # the reading sees them
    # An event the app acts on but is not subscribed to never comes (app_uninstalled's error line
    # in the log, README's "Over HTTP"); one subscribed to that nothing acts on is wasted traffic.
    assert sorted(manifest["settings"]["event_subscriptions"]["bot_events"]) == sorted(
        listened - NOT_SUBSCRIBED
    )
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True


SCOPE_OF_CALL = {  # the bot scopes each Web API method the bot calls needs (public and private)
    "auth_test": (),
    "apps_connections_open": (),  # Socket Mode: the app-level token's connections:write
    "chat_postMessage": ("chat:write",),
    "chat_update": ("chat:write",),
    "chat_postEphemeral": ("chat:write",),
    "chat_delete": ("chat:write",),
    "conversations_join": ("channels:join",),
    "conversations_info": ("channels:read", "groups:read"),
    "conversations_members": ("channels:read", "groups:read"),
    "conversations_history": ("channels:history", "groups:history"),
    "conversations_open": ("im:write",),  # the person's DM with the bot, for their chart
    "users_info": ("users:read",),
    "files_upload_v2": ("files:write",),  # files.getUploadURLExternal, files.completeUploadExternal
    "views_open": (),
    "views_update": (),
    "views_push": (),
    "views_publish": (),
}


def web_api_methods_the_bot_uses() -> set[str]:
    """Every AsyncWebClient method the app's modules name (`client.chat_update(...)`, or handed
    on uncalled: `retry(client.auth_test, ...)`); bot/sandbox is the fake Slack."""
    import re

    from slack_sdk.web.async_client import AsyncWebClient

    methods = {
        name
        for name in dir(AsyncWebClient)
        if not name.startswith("_") and callable(getattr(AsyncWebClient, name))
    }
    bot_dir = ROOT / "bot"
    named = set()
    for path in bot_dir.rglob("*.py"):
        if bot_dir / "sandbox" not in path.parents:
            named |= set(re.findall(r"\.(\w+)\b", path.read_text(encoding="utf-8")))
    return named & methods


def test_manifest_asks_for_exactly_the_scopes_the_bot_uses(manifest):
    used = web_api_methods_the_bot_uses()
    assert {"chat_postMessage", "auth_test", "files_upload_v2"} <= used  # the reading sees them
    assert sorted(used - SCOPE_OF_CALL.keys()) == [], "add their scopes to SCOPE_OF_CALL"
    scopes = {scope for method in used for scope in SCOPE_OF_CALL[method]}
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(scopes | {"commands"})


def test_the_fake_slack_grants_the_bot_exactly_the_manifests_scopes(manifest):
    # Tests and `hitl demo` run against it: a scope it grants that the app does not ask for
    # would let a call pass there that Slack refuses with missing_scope.
    from bot.sandbox import FakeSlack

    assert sorted(FakeSlack().scopes) == sorted(manifest["oauth_config"]["scopes"]["bot"])


def test_manifest_display_information(manifest):
    display = manifest["display_information"]

    assert display["name"] == "slack-hitl"
    assert 175 <= len(display["long_description"]) <= 4000
    assert manifest["features"]["bot_user"] == {"display_name": "hitl", "always_online": True}


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda m: m["display_information"].update(name="x" * 40), "is too long"),
        (lambda m: m["settings"].update(socket_mode=True), "Additional properties"),
        (lambda m: m["features"]["slash_commands"][0].update(command="hitl"), "does not match"),
        (lambda m: m["display_information"].update(long_description="short"), "is too short"),
    ],
    ids=["40-char-name", "unknown-key", "command-without-slash", "short-long-description"],
)
def test_a_broken_manifest_fails_validation(
    manifest, v1_validator, top_validator, breakage, expected
):
    broken = copy.deepcopy(manifest)
    breakage(broken)

    assert any(expected in error for error in errors(v1_validator, broken))
    assert not top_validator.is_valid(broken)
