"""The README stays true: every command is documented, and CI runs the README's test command."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.config import SPECS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_hitl_command_has_a_readme_section_and_help():
    for name, command in cli.commands.items():
        assert f"### `hitl {name}" in README, f"README lacks a section for hitl {name}"
        assert command.help and len(command.help.strip()) > 20, f"hitl {name} needs --help text"


def test_every_setting_is_in_the_readme_table():
    for spec in SPECS:
        assert f"`{spec.env}`" in README, f"README's settings table lacks {spec.env}"


def test_quick_start_has_a_venv_step_then_exactly_two_commands_and_ci_runs_the_test_one():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    venv, *commands = re.findall(r"```bash\n(.+?)\n```", quick_start, flags=re.S)
    # Debian's and Ubuntu's Python refuse `pip install` outside a virtual environment.
    assert venv == "python3 -m venv .venv && . .venv/bin/activate"
    assert "externally-managed-environment" in quick_start
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert commands[0].startswith("pip install -e . && hitl ")
    test_command = commands[1]
    assert test_command in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in test_command


def test_every_slash_subcommand_is_in_the_readme_help_and_manifest():
    from bot.slack.commands import HELP, SUBCOMMANDS

    manifest = (ROOT / "manifest.yml").read_text(encoding="utf-8")
    for sub in SUBCOMMANDS:
        assert f"`/hitl {sub}`" in README, f"README lacks /hitl {sub}"
        assert f"`/hitl {sub}`" in HELP, f"/hitl help lacks {sub}"
        assert sub in manifest.split("usage_hint:", 1)[1].splitlines()[0]


def test_every_slash_command_the_readme_names_exists():
    """The README named `/hitl quality`, which Slack answers with "unknown subcommand": the
    agreement figures are in `/hitl stats`."""
    from bot.slack.commands import SUBCOMMANDS

    named = set(re.findall(r"`/hitl ([a-z]+)", README))
    assert named and named <= set(SUBCOMMANDS), f"README names {sorted(named - set(SUBCOMMANDS))}"


def test_every_command_has_examples_in_its_help():
    runner = CliRunner()
    for name in cli.commands:
        result = runner.invoke(cli, [name, "--help"], prog_name="hitl")
        assert result.exit_code == 0
        examples = result.stdout.split("Examples:\n", 1)
        assert len(examples) == 2, f"hitl {name} --help has no Examples"
        assert re.search(rf"^  .*\bhitl\b.* {name}\b", examples[1], flags=re.M), (
            f"hitl {name} --help: no example runs hitl {name}"
        )


def test_what_hitl_demo_writes_beside_its_database_is_ignored_by_git():
    from fnmatch import fnmatch

    from bot.demo.run import MARKER

    patterns = [
        line.rstrip("/")
        for line in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    for name in (
        "hitl-demo.db",
        f"hitl-demo.db{MARKER}",
        "hitl-demo.db-wal",
        "hitl-demo.db.models",
    ):
        assert any(fnmatch(name, pattern) for pattern in patterns), f".gitignore lacks {name}"


def test_install_starts_with_socket_mode_and_shows_how_to_expose_http():
    install = README.split("## Install in your Slack workspace", 1)[1].split("\n## ", 1)[0]
    socket, http = install.index("Over Socket Mode"), install.index("Over HTTP")
    assert socket < http, "Socket Mode (no public URL) is the quickest setup: it comes first"
    assert "cloudflared tunnel --url http://127.0.0.1:3000" in install[http:]
    assert "reverse_proxy 127.0.0.1:3000" in install[http:]  # a Caddyfile


def test_http_install_has_slack_check_the_events_url_once_hitl_serve_answers():
    # The app's Request URL is checked as it is created from the manifest, before the server
    # that answers the check (it needs the signing secret of that app) can run.
    install = README.split("## Install in your Slack workspace", 1)[1].split("\n## ", 1)[0]
    http = install[install.index("Over HTTP") :].split("**Slow and idle clients.**", 1)[0]
    steps = re.split(r"^\d\. ", http, flags=re.M)
    created = next(
        n for n, step in enumerate(steps) if "From a manifest" in step or "`manifest.yml`" in step
    )
    serve = next(n for n, step in enumerate(steps) if "`hitl serve`" in step and n > created)
    after = " ".join(steps[serve][steps[serve].index("`hitl serve`") :].split())
    assert "**Event Subscriptions**" in after and "**Retry**" in after


def test_readme_says_how_to_find_user_ids_for_hitl_admins():
    assert "Copy member ID" in README
    row = next(line for line in README.splitlines() if line.startswith("| `HITL_ADMINS`"))
    assert "Copy member ID" in row or "member ID" in row


def console_block(first_command: str) -> list[tuple[str, list[str]]]:
    """The README's console block that starts with `$ first_command`: each command with the
    lines shown after it."""
    blocks = re.findall(r"```console\n(.+?)\n```", README, flags=re.S)
    block = next(b for b in blocks if b.startswith(f"$ {first_command}\n"))
    runs: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            runs.append((line[2:], []))
        else:
            runs[-1][1].append(line)
    return runs


def test_the_first_week_examples_print_what_the_readme_shows(tmp_path: Path):
    """The README's import, retrain and accuracy examples, run as written on
    examples/tickets.csv (only a retrain's seconds may differ). Its accuracy example showed
    the note that cross-validated figures read low, which `hitl accuracy` gives only once
    people have answered in Slack, not for these imported labels."""
    (tmp_path / "examples").mkdir()  # the test runs in tmp_path (conftest)
    shutil.copy(ROOT / "examples" / "tickets.csv", tmp_path / "examples")
    runner = CliRunner()
    for first in (
        "hitl import examples/tickets.csv --text-column body --id-column ticket_id",
        "hitl import examples/tickets.csv",
        "hitl retrain",
        "hitl accuracy",
    ):
        for command, shown in console_block(first):
            result = runner.invoke(cli, shlex.split(command)[1:], prog_name="hitl")
            printed = result.stdout.splitlines() + [
                line for line in result.stderr.splitlines() if line.startswith("Error: ")
            ]
            printed = [re.sub(r"\(cli, \d+ s\)", "(cli, 0 s)", line) for line in printed]
            assert printed == shown, f"$ {command}"


def test_import_help_says_a_stored_id_with_another_text_is_rejected(tmp_path: Path):
    """`hitl import --help` said a row whose id is stored is skipped; the import rejects it
    when the text differs (an import never changes a stored item), as the README says."""
    (tmp_path / "a.csv").write_text("id,text\n7,hello world\n", encoding="utf-8")
    (tmp_path / "dupid.csv").write_text("id,text\n7,another text\n", encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(cli, ["import", "a.csv"]).exit_code == 0
    again = runner.invoke(cli, ["import", "dupid.csv"])
    assert "1 rejected" in again.stdout and 'id "7" is stored with another text' in again.stderr
    shown = " ".join(runner.invoke(cli, ["import", "--help"], prog_name="hitl").stdout.split())
    assert "a row whose id is stored with another text is rejected" in shown
    assert "(same id, or same text when there is no id) are skipped" not in shown


def test_stats_help_says_the_answers_name_fifty_people_then_how_many_others(tmp_path: Path):
    """`hitl stats --help` said each per-person list names everyone; the answers today and this
    week name the 50 with most labels, then how many others answered ("and 1 other")."""
    from bot.ingest.readers import Row
    from bot.store import Store

    with Store.open(tmp_path / "hitl.db") as store:  # the test runs in tmp_path (conftest)
        store.add_items([Row(n, f"i{n}", f"text {n}") for n in range(51)], "api")
        for n in range(51):
            store.record_answer(f"i{n}", f"U{n:03d}", "bug", source="button", dedupe_key=f"k{n}")
    runner = CliRunner()
    shown = runner.invoke(cli, ["stats", "--quiet"], prog_name="hitl").stdout
    assert "@U049 1 label and 1 other\n" in shown and "U050" not in shown
    helped = " ".join(runner.invoke(cli, ["stats", "--help"], prog_name="hitl").stdout.split())
    assert "by person (the 50 with most labels, then how many others answered)" in helped
    assert "per-person list names everyone" not in helped


def readme_section(heading: str) -> str:
    """The README's text from ``heading`` to the next heading of its level or above."""
    level = heading.split(" ", 1)[0]
    after = README.split(f"\n{heading}", 1)[1]
    ends = [after.find(f"\n{mark} ") for mark in ("#" * n for n in range(2, len(level) + 1))]
    return after[: min((end for end in ends if end >= 0), default=len(after))]


def test_every_option_of_every_command_is_named_in_its_readme_section():
    """`hitl serve --host` and `--port`, `hitl import --quiet` and `hitl --version` were in
    `--help` and nowhere in the README's reference: each option, of `hitl` itself and of each
    command and subcommand, is named in the section of its command."""
    import click

    def names(command: click.Command) -> list[list[str]]:
        return [
            [*param.opts, *param.secondary_opts]
            for param in command.params
            if isinstance(param, click.Option) and param.name != "help"
        ]

    sections = [("## Commands", names(cli))]  # the global options: before the first command
    for name, command in cli.commands.items():
        heading = next(line for line in README.splitlines() if line.startswith(f"### `hitl {name}"))
        found = names(command)
        for sub in getattr(command, "commands", {}).values():
            found += names(sub)
        sections.append((heading, found))
    missing = []
    for heading, options in sections:
        text = readme_section(heading)
        if heading == "## Commands":
            text = text.split("\n### ", 1)[0]
        for opts in options:
            if not any(re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text) for o in opts):
                missing.append(f"{heading}: {'/'.join(opts)}")
    assert not missing, f"options not named in their README section: {missing}"


def test_the_settings_table_gives_the_defaults_hitl_config_prints():
    """Each default in the README's settings table written as a value (`0.8`, or – for none)
    is the one `hitl config` prints for that variable."""
    printed = {}
    for line in CliRunner().invoke(cli, ["config"]).stdout.splitlines():
        env, rest = line.split(None, 1)
        printed[env] = rest.rsplit("(default)", 1)[0].strip()
    table = readme_section("## Settings")
    rows = re.findall(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \| ([^|]+) \|", table, flags=re.M)
    checked = 0
    for envs, default in rows:
        envs = re.findall(r"`([A-Z_]+)`", envs)
        default = re.sub(r" \((?:port )?[\d.,]+–[\d.,]+\)$", "", default)  # its range
        shown = ["-"] * len(envs) if default.strip() == "–" else re.findall(r"`([^`]+)`", default)
        if re.fullmatch(r"(`[^`]+`(, )?)+", default.strip()) is None and default.strip() != "–":
            continue  # prose: "imported labels", "the model library's default", …
        if shown == ["HITL_CHANNEL"]:
            continue  # HITL_REPORT_CHANNEL: the value of another setting
        assert len(shown) == len(envs), envs
        for env, value in zip(envs, shown, strict=True):
            assert printed[env] == value, f"README's table: {env} defaults to {value}"
            checked += 1
    assert checked >= 25


def test_the_settings_table_gives_each_numbers_range_as_the_setting_checks_it():
    """Each number setting's row in the README's table gives, after its default, the range
    its parser refuses a value outside of (``bot.config``: the bounds it says in its error)."""
    from bot.config import SPECS

    def shown(x: float) -> str:
        return f"{x:,}" if isinstance(x, int) else f"{x:g}"

    table = readme_section("## Settings")
    bounded = [spec for spec in SPECS if hasattr(spec.parse, "bounds")]
    assert len(bounded) >= 14
    for spec in bounded:
        (row,) = re.findall(rf"^\| [^|]*`{spec.env}`[^|]* \| ([^|]+) \|", table, flags=re.M)
        low, high = spec.parse.bounds
        assert re.search(rf"\((port )?{re.escape(f'{shown(low)}–{shown(high)}')}\)$", row), (
            f"README's table: {spec.env} says no range {shown(low)}–{shown(high)}: {row!r}"
        )


def test_the_readme_webhook_receiver_accepts_a_real_signature_and_refuses_others():
    """The README's `verify` (Webhooks), run as written against the server's own signer."""
    import time

    from bot.api.webhooks import sign

    webhooks = readme_section("### Webhooks")
    (code,) = re.findall(r"```python\n(.+?)\n```", webhooks, flags=re.S)
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - the README's own example
    verify, secret, body = scope["verify"], "s3cret-of-sixteen-chars", b'{"id":"T-1"}'
    now = int(time.time())
    assert verify(secret, sign(secret, body, now), body)
    assert not verify(secret, sign(secret, body, now), body + b" ")
    assert not verify(secret, sign(secret, body, now - 301), body)
    assert not verify("another-secret-of-16", sign(secret, body, now), body)


def test_every_option_the_readme_gives_a_hitl_command_is_one_it_takes():
    """The other way round: each option in a `hitl …` command the README writes (in a code span
    or after `$ `) is one that command, or `hitl` itself, takes."""
    import click

    def options(command: click.Command) -> set[str]:
        return {o for p in command.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}

    prose = re.sub(r"^```.*?^```", "", README, flags=re.S | re.M)
    spans = re.findall(r"`([^`]+)`", prose) + re.findall(r"^\$ (.+)$", README, flags=re.M)
    wrong, checked = [], 0
    for span in spans:
        for segment in re.split(r"\||&&|\$\(|\)|;|>", " ".join(span.split())):
            words = segment.split()
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words.pop(0)  # HITL_VOTES=2 hitl stats
            if len(words) < 2 or words[0] != "hitl":
                continue
            allowed, command = options(cli) | {"-h", "--help"}, cli
            for word in words[1:]:
                if word == "--":
                    break
                if re.fullmatch(r"-v+", word) or not re.match(r"--?[a-z]", word):
                    sub = getattr(command, "commands", {}).get(word)
                    if sub is not None:
                        command, allowed = sub, allowed | options(sub)
                    continue
                checked += 1
                if word.split("=", 1)[0] not in allowed:
                    wrong.append(f"{segment.strip()}: {word}")
    assert checked > 50 and not wrong, wrong
