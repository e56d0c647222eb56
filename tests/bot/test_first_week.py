"""An operator's first week from the README (outside test "firstweek"): `hitl accuracy --chart`
never writes over the database, the advice in errors can be followed as given, `hitl serve`
lists every problem of the config file at once, and `hitl config` shows the values in force."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.store.lock import server_lock
from tests.bot.test_cli_loop import labeled_file

PNG = b"\x89PNG\r\n\x1a\n"
NEWER = "m999_from_the_future"


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, prog_name="hitl")


def rows(stdout: str) -> dict[str, list[str]]:
    """`hitl config`'s table: each variable's value and "(source)"."""
    table = {}
    for line in stdout.splitlines():
        name, rest = line.split(None, 1)
        value, source = rest.rsplit("  (", 1)
        table[name] = [value.strip(), "(" + source]
    return table


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with hitl.db (12 labels) and its models folder holding v1: copied per test."""
    folder = tmp_path_factory.mktemp("trained")
    db = folder / "hitl.db"
    assert run("--db", str(db), "import", str(labeled_file(folder, "a"))).exit_code == 0
    assert run("--db", str(db), "retrain").exit_code == 0
    return folder


@pytest.fixture
def work(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "work"
    shutil.copytree(trained, folder, symlinks=True)
    monkeypatch.chdir(folder)
    return folder


def items_in(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]
    finally:
        conn.close()


# -- defect 1: `hitl accuracy --chart hitl.db` replaced the database with a PNG ---------------


@pytest.mark.parametrize(
    "name",
    [
        "hitl.db",  # the database: every item, answer and model record was lost
        "sub/../hitl.db",
        "link.png",  # a symlink to the database
        "hard.png",  # a hard link to it
        "hitl.db-wal",
        "hitl.db-shm",
        "hitl.db.server.lock",
        "hitl.db.models/chart.png",
    ],
)
def test_a_chart_over_the_database_or_a_file_beside_it_is_refused_in_one_line(
    work: Path, name: str
):
    db = work / "hitl.db"
    (work / "sub").mkdir()
    (work / "link.png").symlink_to("hitl.db")
    os.link(db, work / "hard.png")
    before = db.read_bytes()
    files = sorted(p.name for p in (work / "hitl.db.models").iterdir())

    refused = run("accuracy", "--chart", name)

    assert refused.exit_code == 1, refused.output
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"Error: cannot save the chart to {name}: it is "), line
    assert "hitl.db" in line and line.endswith("name another file (accuracy.png)"), line
    assert db.read_bytes() == before
    assert items_in(db) == 13
    assert sorted(p.name for p in (work / "hitl.db.models").iterdir()) == files
    assert run("stats").exit_code == 0


def test_a_chart_replaces_its_file_atomically_and_keeps_a_link_to_it(work: Path):
    old = work / "accuracy.png"
    old.write_bytes(b"an older chart")
    os.chmod(old, 0o640)
    inode = old.stat().st_ino
    (work / "latest.png").symlink_to("accuracy.png")

    saved = run("accuracy", "--chart", "latest.png")

    assert saved.exit_code == 0, saved.output
    assert saved.stderr == "chart saved to latest.png\n"
    assert (work / "latest.png").is_symlink()  # the link kept, its target replaced
    assert old.read_bytes()[:8] == PNG
    assert old.stat().st_ino != inode  # a new file renamed over it: no half-written chart
    assert oct(old.stat().st_mode & 0o777) == oct(0o640)  # the mode it had
    assert not [p.name for p in work.iterdir() if p.name.endswith(".tmp")]


def test_a_new_chart_is_made_as_any_file_is_not_as_an_export(work: Path):
    """A chart holds figures, no text nor person: a new one is what the umask leaves of 0666
    (0644 under 022), readable where a cron job puts it for others, not an export's 0600."""
    umask = os.umask(0o022)
    try:
        saved = run("accuracy", "--chart", "new.png")
    finally:
        os.umask(umask)
    assert saved.exit_code == 0, saved.output
    assert oct((work / "new.png").stat().st_mode & 0o777) == oct(0o644)


DRAWN_AT_EXIT = """
import atexit, sys
atexit.register(lambda: print("drawn" if "matplotlib" in sys.modules else "not drawn"))
sys.argv = ["hitl", *sys.argv[1:]]
import bot.cli
bot.cli.main()
"""


def test_a_refused_chart_is_said_before_it_is_drawn(work: Path):
    """A chart over the database or into a missing folder was drawn first (matplotlib
    imported, ~0.4 s of CPU), then refused: the refusal comes first, and the drawing only for a
    file that is written. The real CLI in a child, which says at its exit whether it drew."""

    def accuracy_chart(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", DRAWN_AT_EXIT, "accuracy", "--chart", name],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    for name in ("hitl.db", "no/such/chart.png"):
        refused = accuracy_chart(name)
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.startswith(f"Error: cannot save the chart to {name}: ")
        # said before the report, which is not printed (the drawn/not-drawn line only)
        assert refused.stdout.splitlines() == ["not drawn"]
    saved = accuracy_chart("ok.png")
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.splitlines()[-1] == "drawn"
    assert (work / "ok.png").read_bytes().startswith(b"\x89PNG")


def test_a_chart_into_a_missing_folder_is_one_line_and_makes_no_folder(work: Path):
    saved = run("accuracy", "--chart", "no/such/chart.png")
    assert saved.exit_code == 1
    assert saved.stderr == (
        "Error: cannot save the chart to no/such/chart.png: the folder no/such does not exist;"
        " create it or fix the path\n"
    )
    assert not (work / "no").exists()


# -- defect 8: advice that did not work ---------------------------------------------------------


def from_a_newer_version(db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
            " SELECT migration_set, ?, applied_at FROM _sqlite_migrations LIMIT 1",
            [NEWER],
        )
    conn.close()


def test_a_database_from_a_newer_version_says_how_to_update_the_clone_install(tmp_path: Path):
    # It said "pip install -U slack-hitl": slack-hitl is not on PyPI, and in the README's
    # editable install that is a no-op.
    db = tmp_path / "hitl.db"
    assert run("--db", str(db), "import", str(labeled_file(tmp_path, "a")), "-q").exit_code == 0
    backup = tmp_path / "backup.db"
    shutil.copy(db, backup)
    from_a_newer_version(backup)

    restored = run("--db", str(db), "restore", str(backup))
    from_a_newer_version(db)
    opened = run("--db", str(db), "stats")

    for result in (restored, opened):
        assert result.exit_code == 1, result.output
        line = result.stderr.splitlines()[-1]  # (a restore says "Checking …" first)
        assert line.startswith("Error: ") and f"newer slack-hitl (schema {NEWER})" in line, line
        assert "pip install -U" not in line, line
        assert "in its clone: git pull && pip install -e ." in line, line


def test_a_second_demo_is_advised_another_database_and_a_free_port(tmp_path: Path):
    # The advice `hitl --db other.db demo` failed too: the first demo holds port 3000.
    db = tmp_path / "hitl-demo.db"
    with server_lock(db):  # the first demo
        second = run("--db", str(db), "demo", "--no-browser", env={"HITL_PORT": ""})
    assert second.exit_code == 1, second.output
    [line] = second.stderr.splitlines()
    assert "is in use by another hitl server or demo" in line, line
    assert line.endswith(": hitl --db other.db demo --port 0"), line
    assert "0 picks a free one" in " ".join(run("demo", "--help").stdout.split())


# -- defect 9: `hitl serve` listed one [labels.X] problem per start -------------------------


def test_serve_names_a_mistyped_guidelines_key_and_a_table_of_no_label_in_one_run(
    tmp_path: Path,
):
    db = tmp_path / "hitl.db"
    source = tmp_path / "t.csv"
    source.write_text("text,label\ncharged twice,billing\napp crashes,bug\n")
    assert run("--db", str(db), "import", str(source), "-q").exit_code == 0
    toml = tmp_path / "hitl.toml"
    toml.write_text(
        '[labels.refunds]\ndescription = "x"\n'
        '[labels.bug]\ndescriptoin = "typo"\nexample = "one"\n'
        "[labels.billing]\ndescription = 3\n"
    )
    toml.chmod(0o600)
    env = {
        "HITL_CONFIG": str(toml),
        "HITL_DB": str(db),
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "HITL_CHANNEL": "C0QUESTIONS",
        "HITL_PORT": "1",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
    }

    result = run("serve", env=env)

    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        f"Error: {toml} [labels.bug] has 'descriptoin', 'example'; use description and examples",
        f"{toml} [labels.billing] description must be text",
        "[labels.*] names 'refunds', which is not a label in force (billing, bug)",
    ]


# -- defect 12: `hitl config` showed "-" for values in force ------------------------------------


def test_config_shows_the_report_channel_labels_and_pipeline_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    env = {"HITL_CHANNEL": "C0QUESTIONS", "HITL_LABELS": "", "HITL_CONFIG": ""}

    before = rows(run("config", env=env).stdout)  # no database: nothing else is in force
    assert before["HITL_REPORT_CHANNEL"] == ["C0QUESTIONS", "(default: HITL_CHANNEL)"]
    assert before["HITL_LABELS"] == ["-", "(default)"]
    assert before["HITL_PIPELINE"] == ["word_char_auto", "(default)"]
    assert before["HITL_SHOW_VOTES"] == ["false", "(default)"]  # as written, not Python's False
    assert before["HITL_CONNECT_RETRY"] == ["1", "(default)"]  # as README's table, not 1.0
    assert not (tmp_path / "hitl.db").exists()  # config made no database

    Path("t.csv").write_text("text,label\ncharged twice,billing\napp crashes,bug\n")
    assert run("import", "t.csv", "-q").exit_code == 0
    imported = rows(run("config", env=env).stdout)
    assert imported["HITL_LABELS"] == ["billing,bug", "(the imported labels, in the database)"]

    assert run("labels", "add", "account").exit_code == 0
    env["HITL_LABELS"] = "billing,bug"
    stored = run("config", env=env)
    assert stored.exit_code == 0, stored.output
    shown = rows(stored.stdout)
    assert shown["HITL_LABELS"] == [
        "billing,bug,account",
        "(stored in the database, changed with hitl labels; the env value is not in force)",
    ]
    assert run("labels", "show", env=env).stdout.splitlines()[0].endswith("billing, bug, account")
    env["HITL_REPORT_CHANNEL"] = "C0REPORTS"
    env["HITL_SHOW_VOTES"] = "1"
    shown = rows(run("config", env=env).stdout)
    assert shown["HITL_REPORT_CHANNEL"] == ["C0REPORTS", "(env)"]
    assert shown["HITL_SHOW_VOTES"] == ["true", "(env)"]
