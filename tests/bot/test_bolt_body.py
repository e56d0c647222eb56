"""``bot.server.bolt_body``: the form decoding done ahead of Bolt gives Bolt exactly the body
it would have parsed itself, for any form, hostile ones included (the server's slow step is
what it replaces; see RESULTS "Bot load")."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus, urlencode

from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt.request.internals import parse_body

from bot.server import bolt_body

FORM = "application/x-www-form-urlencoded"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
# What a form's raw text may hold: the characters with a meaning in a form or a URL, broken
# escapes, and text outside ASCII.
awkward = st.text(
    alphabet=st.sampled_from('%&=+#;?{}"[]: aZ09é€\x00\n') | st.characters(), max_size=60
)


def outcome(body: str, content_type: str) -> tuple[str, object]:
    """What Bolt makes of a body: the parsed dict, or the kind of error it raises."""
    try:
        return "ok", parse_body(body, content_type)
    except ValueError as exc:
        return "error", type(exc)


def through_bolt_body(text: str, content_type: str) -> tuple[str, object]:
    try:
        handed = bolt_body(text, content_type)
    except ValueError as exc:  # a 400 from the server, as a parse error in Bolt gives
        return "error", type(exc)
    return outcome(handed, content_type)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    payload=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    extra=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=20)), max_size=3),
    before=st.booleans(),
    plus=st.booleans(),
)
def test_an_encoded_payload_reaches_bolt_as_bolt_would_decode_it(payload, extra, before, plus):
    fields = [("payload", json.dumps(payload, ensure_ascii=False))]
    fields = extra + fields if before else fields + extra
    text = urlencode(fields, quote_via=quote_plus if plus else quote)
    assert through_bolt_body(text, FORM) == outcome(text, FORM)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    head=st.sampled_from(["payload=", "payload=%7B", "payload={", "a=1&payload=", "", "{"]),
    text=awkward,
    tail=st.sampled_from(["", "&payload=%7B%7D", "&payload=x", "#frag", "%", "%7"]),
)
def test_any_form_text_gets_what_bolt_would_make_of_it(head, text, tail):
    body = head + text + tail
    assert through_bolt_body(body, FORM) == outcome(body, FORM)


def test_what_is_not_an_interaction_form_goes_to_bolt_as_it_came():
    command = urlencode({"command": "/hitl", "text": "stats", "payload": "[1]"})
    assert bolt_body(command, FORM) == command  # a payload field that is not a JSON object
    event = json.dumps({"type": "event_callback", "event": {"text": "payload=%7B%7D"}})
    assert bolt_body(event, "application/json") == event
    click = "payload=" + quote(json.dumps({"type": "block_actions", "x": "a+b %"}))
    assert bolt_body(click, FORM) == '{"type": "block_actions", "x": "a+b %"}'
    assert bolt_body(click, "text/plain") == click  # Bolt's own path for other types
