"""The README stays true: every command is documented, and CI runs the README's test command."""

from __future__ import annotations

import re
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


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", quick_start, flags=re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert commands[0].startswith("pip install -e . && hitl ")
    test_command = commands[1]
    assert test_command in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in test_command


def test_every_slash_subcommand_is_in_the_readme_help_and_manifest():
    from bot.commands import HELP, SUBCOMMANDS

    manifest = (ROOT / "manifest.yml").read_text(encoding="utf-8")
    for sub in SUBCOMMANDS:
        assert f"`/hitl {sub}`" in README, f"README lacks /hitl {sub}"
        assert f"`/hitl {sub}`" in HELP, f"/hitl help lacks {sub}"
        assert sub in manifest.split("usage_hint:", 1)[1].splitlines()[0]


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
