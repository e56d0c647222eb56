from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import Settings, describe, load_settings, mask
from bot.errors import ConfigError


def test_defaults_match_the_design():
    settings = load_settings({}, None)
    assert settings == Settings()
    assert (settings.threshold, settings.audit_rate, settings.max_open, settings.votes) == (
        0.8,
        0.1,
        5,
        1,
    )
    assert (settings.host, settings.port, settings.db) == ("127.0.0.1", 3000, Path("hitl.db"))
    assert settings.retrain_cron == "0 3 * * *" and settings.timezone == "UTC"
    assert settings.models_dir == Path("hitl.db.models")
    assert settings.skips_to_discard == 2


def test_skips_to_discard_is_read_checked_and_shown():
    settings = load_settings({"HITL_SKIPS_TO_DISCARD": "3"}, None)
    assert settings.skips_to_discard == 3
    shown = {row[0]: row[1:] for row in describe(settings)}
    assert shown["HITL_SKIPS_TO_DISCARD"][:2] == ("3", "env")
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_SKIPS_TO_DISCARD": "0"}, None)
    assert caught.value.problems == [
        'HITL_SKIPS_TO_DISCARD="0" is out of range; use a whole number from 1 to 25'
    ]


def test_env_wins_over_the_file_and_the_file_over_defaults(tmp_path: Path):
    toml = tmp_path / "hitl.toml"
    toml.write_text(
        '[hitl]\nthreshold = 0.6\nmax_open = 3\nlabels = ["billing", "bug"]\n'
        '[hitl.routes]\nbilling = "CBILLING"\n'
    )
    settings = load_settings({"HITL_THRESHOLD": "0.7", "HITL_CHANNEL": "CQUESTIONS"}, toml)
    assert settings.threshold == 0.7 and settings.max_open == 3
    assert settings.labels == ("billing", "bug")
    assert settings.sources["threshold"] == "env" and settings.sources["max_open"] == str(toml)
    assert settings.routes == {"billing": "CBILLING"} and settings.channel == "CQUESTIONS"


def test_each_bad_value_gets_one_line_saying_what_is_allowed():
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "HITL_THRESHOLD": "abc",
                "HITL_MAX_OPEN": "2.5",
                "HITL_VOTES": "0",
                "HITL_RETRAIN_CRON": "every night",
                "HITL_TIMEZONE": "Mars/Base",
                "HITL_ADMINS": "ana",
                "SLACK_API_URL": "localhost:9",
                "HITL_LABELS": "only",
            },
            None,
        )
    assert caught.value.problems == [
        'SLACK_API_URL="localhost:9" is not an http(s) URL; e.g. https://slack.com/api/',
        'HITL_LABELS="only" names one label; give at least two',
        "HITL_ADMINS=\"ana\" has 'ana', not a Slack user ID; use IDs like U0123ABCD "
        "(profile → ⋮ → Copy member ID)",
        'HITL_THRESHOLD="abc" is not a number; use a value between 0 and 1',
        'HITL_MAX_OPEN="2.5" is not a whole number; use one from 1 to 50',
        'HITL_VOTES="0" is out of range; use a whole number from 1 to 25',
        'HITL_RETRAIN_CRON="every night" is not a cron expression (Wrong number of fields; '
        'got 2, expected 5); use five fields, e.g. "0 3 * * *" for 03:00 daily',
        'HITL_TIMEZONE="Mars/Base" is not a known time zone; use an IANA name like "Europe/Berlin"',
    ]


def test_bad_values_in_the_file_name_the_file_and_key(tmp_path: Path):
    toml = tmp_path / "hitl.toml"
    toml.write_text("[hitl]\nthreshold = 2\ntreshold = 0.5\n[hitl.routes]\nbilling = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, toml)
    problems = caught.value.problems
    assert problems[0].startswith(f"{toml}: unknown setting 'treshold' in [hitl]; known: ")
    assert f'{toml} threshold="2" is out of range; use a value between 0 and 1' in problems
    assert any("[hitl.routes] must map labels to channel IDs" in p for p in problems)


def test_unparseable_toml_is_one_line(tmp_path: Path):
    toml = tmp_path / "hitl.toml"
    toml.write_text("[hitl\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, toml)


def test_labels_accept_a_comma_list_or_a_toml_list():
    assert load_settings({"HITL_LABELS": "a, b ,c"}, None).labels == ("a", "b", "c")
    assert load_settings({"HITL_LABELS": '["a,1", "b"]'}, None).labels == ("a,1", "b")


def test_labels_that_differ_only_in_case_are_refused_naming_the_two():
    # "billing,Billing,bug" was taken: two classes of one, as `hitl labels add` refuses.
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_LABELS": "billing,Billing,bug"}, None)
    assert caught.value.problems == [
        "HITL_LABELS=\"billing,Billing,bug\" has 'billing' and 'Billing', which differ only in "
        "case; keep one"
    ]


def test_secrets_are_masked_and_never_in_repr():
    settings = load_settings(
        {
            "SLACK_BOT_TOKEN": "xoxb-1234-5678-abcdefgh",
            "SLACK_SIGNING_SECRET": "s3cr3t-signing-value",
        },
        None,
    )
    shown = {row[0]: row[1] for row in describe(settings)}
    assert shown["SLACK_BOT_TOKEN"] == "xoxb-****efgh"
    assert shown["SLACK_SIGNING_SECRET"] == "****alue"
    assert "abcdefgh" not in repr(settings) and "s3cr3t" not in repr(settings)
    assert mask("short") == "****"


def test_webhook_allow_takes_hosts_and_cidrs_and_names_a_bad_entry():
    settings = load_settings(
        {"HITL_WEBHOOK_ALLOW": "Hooks.Intranet., 10.0.0.0/8, [::1], 127.0.0.1"}, None
    )
    assert settings.webhook_allow == ("hooks.intranet", "10.0.0.0/8", "::1/128", "127.0.0.1/32")
    shown = {row[0]: row[1] for row in describe(settings)}
    assert shown["HITL_WEBHOOK_ALLOW"] == "hooks.intranet,10.0.0.0/8,::1/128,127.0.0.1/32"
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_WEBHOOK_ALLOW": "10.0.0.0/33,http://x/"}, None)
    assert caught.value.problems == [
        "HITL_WEBHOOK_ALLOW=\"10.0.0.0/33,http://x/\" has '10.0.0.0/33', neither a host name "
        "nor an IP address or CIDR; e.g. hooks.intranet, 10.0.0.0/8, ::1"
    ]


def test_strategy_is_one_of_the_registered_ones_and_defaults_to_margin():
    assert load_settings({}, None).strategy == "margin"
    assert load_settings({"HITL_STRATEGY": "entropy"}, None).strategy == "entropy"
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_STRATEGY": "random"}, None)
    assert caught.value.problems == [
        'HITL_STRATEGY="random" is not a known strategy; use one of entropy, least_confidence,'
        " margin"
    ]


def test_show_votes_is_off_by_default_and_reads_true_or_false(tmp_path: Path):
    assert load_settings({}, None).show_votes is False
    assert load_settings({"HITL_SHOW_VOTES": "true"}, None).show_votes is True
    assert load_settings({"HITL_SHOW_VOTES": "0"}, None).show_votes is False
    toml = tmp_path / "hitl.toml"
    toml.write_text("[hitl]\nshow_votes = true\n")
    assert load_settings({}, toml).show_votes is True
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_SHOW_VOTES": "maybe"}, None)
    assert caught.value.problems == [
        'HITL_SHOW_VOTES="maybe" is not true or false; use true or false'
    ]


def test_a_toml_file_with_a_utf8_byte_order_mark_is_read(tmp_path: Path):
    toml = tmp_path / "hitl.toml"
    toml.write_bytes(b"\xef\xbb\xbf[hitl]\nthreshold = 0.7\n")  # Notepad's "UTF-8 with BOM"
    settings = load_settings({}, toml)
    assert settings.threshold == 0.7 and settings.sources["threshold"] == str(toml)


@pytest.mark.parametrize(
    ("data", "found"),
    [
        ("[hitl]\nthreshold = 0.7\n".encode("utf-16"), "it looks like UTF-16"),
        (b'[hitl]\nchannel = "C0123"\n# caf\xe9\n', "byte 0xe9 on line 3"),  # Latin-1
    ],
    ids=["utf-16", "latin-1"],
)
def test_a_toml_file_that_is_not_utf8_is_one_line_saying_to_save_it_as_utf8(
    tmp_path: Path, data: bytes, found: str
):
    toml = tmp_path / "hitl.toml"
    toml.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, toml)
    assert caught.value.problems == [f"{toml} is not UTF-8 text ({found}); save it as UTF-8"]


def test_keys_outside_hitl_and_misspelt_tables_are_refused_naming_where_they_belong(
    tmp_path: Path,
):
    """reader4 #14: settings above the [hitl] line, a [hilt] table or [label.billing] were
    ignored without a word (the defaults stayed in force), while an unknown key inside [hitl]
    is an error."""
    toml = tmp_path / "hitl.toml"
    toml.write_text(
        'threshold = 0.5\nstray = 1\n\n[hilt]\nvotes = 3\n\n[label.billing]\ndescription = "M"\n'
        '\n[hitl]\nvotes = 2\n\n[labels.billing]\ndescription = "Money"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings({}, toml)
    assert caught.value.problems == [
        f"{toml}: setting 'threshold' is outside [hitl] (above the [hitl] line, or without one):"
        " put it under [hitl]",
        f"{toml}: unknown key 'stray' outside [hitl]; settings go under [hitl]",
        f"{toml}: unknown table [hilt]; settings go in [hitl] (routes in [hitl.routes]) and label"
        " guidelines in [labels.NAME]: did you mean [hitl]?",
        f"{toml}: unknown table [label]; settings go in [hitl] (routes in [hitl.routes]) and label"
        " guidelines in [labels.NAME]: did you mean [labels.NAME]?",
    ]


def test_a_toml_value_of_the_wrong_type_is_quoted_back_as_the_file_writes_it(tmp_path: Path):
    """`votes = true` was quoted back as Python writes it, `votes="True"`, and a list as
    `['a', '']`: not what the file says, in the error line and in `hitl config`'s table."""
    from click.testing import CliRunner

    from bot.cli import cli

    toml = tmp_path / "team.toml"
    toml.write_text('[hitl]\nvotes = true\nlabels = ["a", ""]\nthreshold = 1.5\n')
    result = CliRunner().invoke(cli, ["config"], env={"HITL_CONFIG": str(toml)})
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f'Error: {toml} labels="["a", ""]" lists an empty value (""); remove it',
        f'{toml} threshold="1.5" is out of range; use a value between 0 and 1',
        f'{toml} votes="true" is not a whole number; use one from 1 to 25',
    ]
    rows = dict(
        re.fullmatch(r"(\S+) +(.*?) +\((.*)\)", line).group(1, 2)
        for line in result.stdout.splitlines()
    )
    assert (rows["HITL_VOTES"], rows["HITL_LABELS"]) == ("true", '["a", ""]')


def test_a_value_listed_twice_is_named():
    """The line said "lists a value twice", leaving the reader to find which in a long list."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_LABELS": "billing,bug,account,bug", "HITL_SHOW_META": "a,a"}, None)
    assert caught.value.problems == [
        "HITL_LABELS=\"billing,bug,account,bug\" lists 'bug' twice; keep one",
        "HITL_SHOW_META=\"a,a\" lists 'a' twice; keep one",
    ]


def test_an_empty_value_written_in_a_list_is_refused_as_such(tmp_path):
    """``labels = ["a", ""]`` was refused as "names one label; give at least two", though two
    were written; the comma form still forgives a doubled or trailing comma."""
    toml = tmp_path / "hitl.toml"
    toml.write_text('[hitl]\nlabels = ["a", ""]\n')
    toml.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_ADMINS": '["U1", " "]'}, toml)
    assert set(caught.value.problems) == {
        'HITL_ADMINS="["U1", " "]" lists an empty value (""); remove it',
        f'{toml} labels="["a", ""]" lists an empty value (""); remove it',
    }
    assert load_settings({"HITL_LABELS": "a,,b,"}, None).labels == ("a", "b")


def test_a_number_is_written_in_digits_not_as_python_reads_one(tmp_path: Path):
    """``int``/``float`` take ``3_000`` and other scripts' digits: HITL_PORT=3_000 was port
    3000. A TOML integer ``3_000`` is TOML's own spelling, read by the TOML parser."""
    toml = tmp_path / "hitl.toml"
    toml.write_text('[hitl]\nvotes = "1_0"\nmax_open = 1_0\n')
    toml.chmod(0o600)
    env = {"HITL_PORT": "3_000", "HITL_THRESHOLD": "0_5", "HITL_QUESTION_TTL": "\u0664\u0668"}
    with pytest.raises(ConfigError) as caught:
        load_settings(env, toml)
    assert caught.value.problems == [
        'HITL_PORT="3_000" is not a whole number; use one from 1 to 65535',
        'HITL_THRESHOLD="0_5" is not a number; use a value between 0 and 1',
        'HITL_QUESTION_TTL="\u0664\u0668" is not a whole number; use one from 0 to 8760',
        f'{toml} votes="1_0" is not a whole number; use one from 1 to 25',
    ]
    toml.write_text("[hitl]\nmax_open = 1_0\n")
    settings = load_settings({"HITL_PORT": " 3000 "}, toml)
    assert (settings.port, settings.max_open) == (3000, 10)
