"""Bad input, fuzzed: interaction payloads never crash the bot or get a 500; import files of
any bytes end in a summary or a one-line error, never a traceback."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.cli import cli
from bot.sandbox import FakeSlack
from tests import signing
from tests.bot.harness import SECRET, Item, make_settings, seed, start_bot

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
ACTION_IDS = [
    "hitl.q.label.0",
    "hitl.q.other",
    "hitl.q.other_ext",
    "hitl.q.skip",
    "hitl.undo",
    "hitl.m.label.1",
    "hitl.home.start",
    "unknown.action",
]
VALUES = st.one_of(
    st.just('{"i":"a","l":"billing"}'),
    st.just('{"i":"nope","l":"billing"}'),
    st.just('{"i":"a","l":"not-a-label"}'),
    st.text(max_size=40),
    st.just("x" * 5000),
    json_values.map(json.dumps),
)


@st.composite
def payloads(draw) -> dict:
    """A block_actions payload with parts broken, missing, or of the wrong type."""
    action = {
        "type": draw(st.sampled_from(["button", "static_select", "external_select", "weird"])),
        "action_id": draw(st.sampled_from(ACTION_IDS)),
        "block_id": draw(st.one_of(st.just("q:a"), st.just("q:nope"), st.text(max_size=20))),
        "value": draw(VALUES),
        "action_ts": draw(st.text(max_size=20)),
    }
    if draw(st.booleans()):
        action["selected_option"] = draw(
            st.one_of(
                json_values,
                st.just({"value": "billing", "text": {"type": "plain_text", "text": "b"}}),
            )
        )
    payload = signing.block_actions_payload("U0ANA", "x", "y")
    payload["actions"] = [action]
    for key in draw(st.lists(st.sampled_from(sorted(payload)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del payload[key]
        else:
            payload[key] = draw(json_values)
    return payload


@pytest.fixture(scope="module")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


async def fuzz_bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "refund please"), Item("b", "app crashes")])
    return start_bot(fake_slack, make_settings(fake_slack, tmp_path))


N_PAYLOADS = 150


def draw_payloads(n: int) -> list[dict]:
    """``n`` fuzzed payloads, drawn by Hypothesis on the test's own thread before any request
    is sent: nothing else runs while it draws, so its checks on the ``random`` module hold."""
    drawn: list[dict] = []

    @settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(payload=payloads())
    def collect(payload: dict) -> None:
        drawn.append(payload)

    collect()
    return drawn


async def test_fuzzed_interaction_payloads_never_get_a_500(fake_slack: FakeSlack, tmp_path: Path):
    drawn = draw_payloads(N_PAYLOADS)
    assert len(drawn) == N_PAYLOADS
    async for bot in await fuzz_bot(fake_slack, tmp_path):
        await bot.dispatcher.fill()
        failures = []
        for payload in drawn:
            status = (await bot.action(payload)).status
            if status >= 500:
                failures.append((status, payload))
        assert not failures, failures[:3]
        await bot.rt.background.drain()
        assert bot.store.integrity_check() == "ok"


@pytest.mark.parametrize(
    "raw",
    [
        b"payload=%7Bnot+json",
        b"payload=" + quote(json.dumps([1, 2, 3])).encode(),
        b"payload=" + quote(json.dumps({"type": "block_actions"})).encode(),
        b"payload=" + quote(json.dumps({"type": "block_actions", "actions": "nope"})).encode(),
        b"nothing=here",
        b"\xff\xfe\x00garbage",
    ],
)
async def test_malformed_bodies_get_a_4xx_not_a_crash(
    fake_slack: FakeSlack, tmp_path: Path, raw: bytes
):
    async for bot in await fuzz_bot(fake_slack, tmp_path):
        stamp = str(int(time.time()))
        digest = hmac.new(SECRET.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": "v0=" + digest.hexdigest(),  # signed over the raw bytes
        }
        response = await bot.post(raw, headers)
        assert 400 <= response.status < 500, response.status  # refused, neither taken nor a crash


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    content=st.one_of(
        st.binary(max_size=3000),
        st.lists(st.text(max_size=80), max_size=30).map(
            lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")
        ),
        st.lists(st.text(max_size=40), max_size=20).map(
            lambda ls: "\n".join(ls).encode("latin-1", "replace")
        ),
        st.integers(40_000, 45_000).map(lambda n: b"text\n" + b"z" * n + b"\n"),
    ),
    fmt=st.sampled_from(["csv", "tsv", "jsonl", "text"]),
)
def test_import_of_any_bytes_ends_in_a_summary_or_one_line_error(
    shared_tmp: Path, content: bytes, fmt: str
):
    path = shared_tmp / f"fuzz.{fmt if fmt != 'text' else 'txt'}"
    path.write_bytes(content)
    db = shared_tmp / "fuzz.db"
    result = CliRunner().invoke(cli, ["--db", str(db), "import", "-q", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert result.stdout.strip().splitlines()[-1].startswith(f"{path.name}: read ")
    else:
        assert result.exit_code == 1
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("Error: ")
