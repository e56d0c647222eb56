"""Defects an outside docs audit found (/tmp/docsaudit): what users read did not match what the
code does.

- A question asked before the first model showed the model's guess once a model came, but once
  answered it said "The model had no guess yet." and once set aside "No model yet: your answers
  train the first one." while a model served (README: the decided message says what the model
  guessed).
- `hitl --db FILE config` credited FILE to the default, the environment or hitl.toml.
- The OpenAPI document had no 408 for the POST routes, which the server sends.
- `hitl demo` named '--port' / '--api-token' for a bad HITL_PORT / HITL_API_TOKEN.
- `hitl models --help` said the newest HITL_KEEP_MODELS versions keep their files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.api import bodies
from bot.api.routes import openapi_document
from bot.cli import cli
from bot.learning.jobs import run_retrain
from bot.sandbox import FakeSlack
from bot.slack.blocks import Question, question_blocks
from bot.slack.redraw import Redrawer
from tests.bot.harness import Bot, make_settings, seed, start_bot
from tests.bot.test_learning import UNLABELED, labeled_items
from tests.bot.test_openapi import check_answer
from tests.bot.test_slack_bot import context_text
from tests.fake_slack import CHANNEL

# -- 1. a question asked before the first model keeps the guess it showed -----------------------


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", labeled_items() + UNLABELED)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), max_open=2)
    async for running in start_bot(fake_slack, settings):
        yield running


GUESS = re.compile(r"Model's guess: \*`(\w+)`\* \((\d+%)\)")


def now_shown(bot: Bot, message: dict) -> str:
    return context_text(bot.fake.message(CHANNEL, message["ts"]))


async def decided(bot: Bot) -> tuple[dict, dict, dict[str, tuple[str, ...]], str]:
    """Two questions asked before the first model, shown its guess once it came; then two
    skips set the first aside (HITL_SKIPS_TO_DISCARD=2) and a label decides the second.
    Returns both messages, the guess each showed while open (label, percent), and the label."""
    assert await bot.dispatcher.fill() == 2
    before = bot.posted()
    assert all("No model yet" in context_text(m) for m in before)
    assert (await run_retrain(bot.rt, "cli", force=True)).status == "promoted"
    assert await Redrawer.of(bot.rt).pending() == 0
    set_aside, answered = (bot.fake.message(CHANNEL, m["ts"]) for m in before)
    shown = {}
    for message in (set_aside, answered):
        found = GUESS.search(context_text(message))
        assert found, context_text(message)
        shown[message["ts"]] = found.groups()
    for user in ("U0ANA", "U0RAJ"):
        assert (await bot.action(bot.button_payload(set_aside, user, None))).status == 200
    label = bot.first_label(answered)
    assert (await bot.action(bot.button_payload(answered, "U0ANA", label))).status == 200
    await bot.settled()
    return set_aside, answered, shown, label


async def test_a_question_asked_before_the_first_model_keeps_its_guess_once_answered(bot: Bot):
    _, answered, shown, label = await decided(bot)
    text = now_shown(bot, answered)
    assert f"✅ *`{label}`* by <@U0ANA>" in text, text
    assert "had no guess" not in text, text  # was: "The model had no guess yet."
    label_shown, p_shown = shown[answered["ts"]]
    verdict = "right" if label_shown == label else "wrong"
    assert f"Model guessed *`{label_shown}`* ({p_shown}): {verdict}." in text, text


async def test_a_question_asked_before_the_first_model_keeps_its_guess_once_set_aside(bot: Bot):
    set_aside, _, shown, _ = await decided(bot)
    text = now_shown(bot, set_aside)
    assert "⏭ Set aside after skips by" in text, text
    assert "No model yet" not in text, text  # was: while model v1 served
    label_shown, p_shown = shown[set_aside["ts"]]
    assert f"Model's guess: *`{label_shown}`* ({p_shown})" in text, text


def test_a_question_set_aside_with_no_guess_does_not_say_there_is_no_model():
    """The message stays as drawn while models come: "No model yet: your answers train the
    first one." suits only an open question."""
    q = Question("i1", "t", ["a", "b"], status="skipped", skips=["U1", "U2"])
    text = json.dumps([b.to_dict() for b in question_blocks(q)])
    assert "No model yet" not in text and "The model had no guess yet." in text, text


# -- 2. `hitl --db FILE config` names --db as the source ----------------------------------------


@pytest.mark.parametrize(
    ("env", "toml"),
    [({}, False), ({"HITL_DB": "env.db"}, False), ({}, True)],
    ids=["default", "env", "hitl.toml"],
)
def test_config_names_db_option_as_the_source_of_hitl_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], toml: bool
):
    monkeypatch.chdir(tmp_path)
    for name in ("HITL_DB", "HITL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    if toml:
        (tmp_path / "hitl.toml").write_text('[hitl]\ndb = "toml.db"\n')
        (tmp_path / "hitl.toml").chmod(0o600)
    result = CliRunner().invoke(cli, ["--db", "other.db", "config"], env=env)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("HITL_DB "))
    assert row.split() == ["HITL_DB", "other.db", "(--db)"], row


# -- 4. the OpenAPI document has the 408 the server sends ---------------------------------------


@pytest.mark.parametrize("path", ["/api/predict", "/api/items"])
def test_openapi_documents_the_408_for_a_body_that_does_not_all_come(path: str):
    doc = openapi_document()
    documented = doc["paths"][path]["post"]["responses"].get("408")
    assert documented is not None, f"POST {path}: no 408"
    assert f"{bodies.BODY_SECONDS:g} seconds" in documented["description"]
    assert "Connection" in documented["headers"]
    # What the server answers (tests/bot/test_slow_clients.py) fits the documented schema.
    said = f"the body did not all come within {bodies.BODY_SECONDS:g} seconds of the headers"
    check_answer(path, "POST", 408, {"error": f"{said}; send it at once"})


# -- 5. `hitl demo` names the variable a bad value came from ------------------------------------


@pytest.mark.parametrize(
    ("env", "args", "named", "not_named"),
    [
        ({"HITL_PORT": "abc"}, [], "Invalid value for HITL_PORT: 'abc'", "'--port'"),
        ({"HITL_PORT": "99999"}, [], "Invalid value for HITL_PORT: 99999", "'--port'"),
        (
            {"HITL_API_TOKEN": "short"},
            ["--port", "0"],
            "Invalid value for HITL_API_TOKEN: has 5 characters, fewer than 16",
            "'--api-token'",
        ),
        # typed on the command line: the option, as before
        ({"HITL_PORT": "abc"}, ["--port", "x"], "Invalid value for '--port': 'x'", "HITL_PORT"),
        (
            {"HITL_API_TOKEN": "0123456789abcdef"},
            ["--port", "0", "--api-token", "short"],
            "Invalid value for '--api-token': has 5 characters",
            "HITL_API_TOKEN",
        ),
    ],
)
def test_demo_names_the_variable_of_a_bad_value_from_the_environment(
    tmp_path: Path, env: dict[str, str], args: list[str], named: str, not_named: str
):
    db = tmp_path / "demo.db"
    result = CliRunner().invoke(cli, ["--db", str(db), "demo", *args, "--no-browser"], env=env)
    assert result.exit_code == 2, result.output
    assert named in result.output and not_named not in result.output, result.output
    assert list(tmp_path.iterdir()) == []  # nothing made


# -- 6. `hitl models --help` says which model files prune keeps ---------------------------------


def test_models_help_says_which_versions_keep_their_files():
    result = CliRunner().invoke(cli, ["models", "--help"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "newest HITL_KEEP_MODELS" not in said, said
    assert (
        "the newest, then the earlier champions (what `hitl rollback` goes back to) before "
        "rejected candidates, newest first" in said
    ), said
