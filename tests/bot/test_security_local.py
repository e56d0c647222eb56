"""What another local user can reach (security report items 6-9): the database is created
readable by its owner only; `hitl export -o` does not follow a link another user planted in a
shared folder (the kernel's fs.protected_symlinks rule); a config file someone else could have
written is refused; and so is an API token or a webhook secret short enough to guess, and the
server lock file is its owner's alone."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.config import load_settings
from bot.errors import ConfigError
from bot.store import Store
from tests.bot.test_cli_loop import labeled_file
from tests.bot.test_serve import startable  # everything serve needs but a label set

OTHER_UID = 65534  # nobody
MAKE_A_TOKEN = '`python -c "import secrets; print(secrets.token_urlsafe(32))"`'
GOOD_TOKEN = "Zx8vQ2lT-9aKp_3mWn7rB4cY"


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False, prog_name="hitl")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def owned_by(monkeypatch: pytest.MonkeyPatch, name: str, path: Path, uid: int) -> None:
    """``os.<name>`` (lstat, fstat) reports ``path``'s file as owned by ``uid``: another user's
    file without a second account (chown needs root)."""
    real = getattr(os, name)
    status = os.lstat(path) if name == "lstat" else os.stat(path)
    inode = (status.st_dev, status.st_ino)

    def reported(target, *args, **kwargs):  # noqa: ANN001, ANN202
        found = real(target, *args, **kwargs)
        if (found.st_dev, found.st_ino) != inode:
            return found
        fields = list(found)
        fields[4] = uid  # st_uid
        return os.stat_result(fields)

    monkeypatch.setattr(os, name, reported)


# -- #7: the database is created 0600 -----------------------------------------------------------


def test_a_new_database_and_its_wal_are_readable_by_their_owner_only(tmp_path: Path):
    db = tmp_path / "hitl.db"
    with umask(0o022), Store.open(db):  # the migrations are written: -wal holds them
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert wal.exists() and shm.exists()
        assert (mode(db), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)


def test_an_imported_database_is_readable_by_its_owner_only(tmp_path: Path):
    db = tmp_path / "hitl.db"
    with umask(0o022):
        assert run("--db", str(db), "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert mode(db) == 0o600


def test_an_existing_database_keeps_the_mode_its_operator_gave_it(tmp_path: Path):
    db = tmp_path / "hitl.db"
    Store.open(db).close()
    db.chmod(0o640)  # shared with a group on purpose (a backup user, a reporting job)
    with umask(0o022), Store.open(db) as store:
        store.db.execute("INSERT INTO runs (kind, started_at, status, detail) VALUES (?,?,?,?)",
                         ["x", "t", "r", "{}"])  # fmt: skip
        store.db.conn.commit()
        assert (mode(db), mode(Path(f"{db}-wal"))) == (0o640, 0o640)


# -- #6: hitl export -o and a link another user planted in a shared folder ---------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "hitl.db"
    assert run("--db", str(path), "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    return path


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A folder like /tmp: world-writable and sticky."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    return folder


@pytest.fixture
def precious(tmp_path: Path) -> Path:
    """A file of the caller's that a planted link points at."""
    (tmp_path / "private").mkdir()
    path = tmp_path / "private" / "precious.conf"
    path.write_text("keep me\n")
    return path


def test_export_refuses_a_link_another_user_planted_in_a_sticky_shared_folder(
    db: Path, shared: Path, precious: Path, monkeypatch: pytest.MonkeyPatch
):
    link = shared / "labels.csv"
    link.symlink_to(precious)
    owned_by(monkeypatch, "lstat", link, OTHER_UID)
    result = run("--db", str(db), "export", "--format", "csv", "-o", str(link))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: cannot write {link}: {link} is a symbolic link in the shared folder {shared}"
        f" (sticky, world-writable) that another user (uid {OTHER_UID}) owns, so it may point"
        " the export at any file of yours; the system refuses to follow such links"
        " (fs.protected_symlinks): delete the link or write to another path\n"
    )
    assert precious.read_text() == "keep me\n"
    assert link.is_symlink()


def test_export_refuses_a_planted_link_reached_through_a_link_of_ones_own(
    db: Path, tmp_path: Path, shared: Path, precious: Path, monkeypatch: pytest.MonkeyPatch
):
    planted = shared / "labels.csv"
    planted.symlink_to(precious)
    owned_by(monkeypatch, "lstat", planted, OTHER_UID)
    mine = tmp_path / "out.csv"
    mine.symlink_to(planted)  # the kernel checks every link it follows, not only the first
    result = run("--db", str(db), "export", "-o", str(mine))
    assert result.exit_code == 1
    assert f"{planted} is a symbolic link in the shared folder {shared}" in result.stderr
    assert precious.read_text() == "keep me\n"


def test_export_follows_ones_own_link_in_a_shared_folder(db: Path, shared: Path, precious: Path):
    link = shared / "labels.jsonl"
    link.symlink_to(precious)
    result = run("--db", str(db), "export", "-o", str(link))
    assert result.exit_code == 0, result.stderr
    assert precious.read_text() == run("--db", str(db), "export").stdout
    assert link.is_symlink()


def test_export_follows_a_link_the_shared_folders_owner_made(
    db: Path, shared: Path, precious: Path, monkeypatch: pytest.MonkeyPatch
):
    link = shared / "labels.jsonl"
    link.symlink_to(precious)
    # The folder and the link are this process's owner's; the caller is someone else.
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(shared).st_uid + 4242)
    result = run("--db", str(db), "export", "-o", str(link))
    assert result.exit_code == 0, result.stderr
    assert precious.read_text().startswith('{"id": ')


def test_export_follows_another_users_link_outside_a_sticky_folder(
    db: Path, tmp_path: Path, precious: Path, monkeypatch: pytest.MonkeyPatch
):
    folder = tmp_path / "open"  # world-writable but not sticky: the kernel rule does not apply
    folder.mkdir()
    folder.chmod(0o777)
    link = folder / "labels.jsonl"
    link.symlink_to(precious)
    owned_by(monkeypatch, "lstat", link, OTHER_UID)
    result = run("--db", str(db), "export", "-o", str(link))
    assert result.exit_code == 0, result.stderr
    assert precious.read_text().startswith('{"id": ')


# -- #8: a config file someone else could have written ------------------------------------------


def test_a_world_writable_hitl_toml_is_refused(tmp_path: Path):
    config = tmp_path / "hitl.toml"  # the tests run in tmp_path: ./hitl.toml
    config.write_text('[hitl]\nslack_api_url = "http://127.0.0.1:9/api/"\n')
    config.chmod(0o666)
    result = run("config")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: hitl.toml can be changed by other users (mode 0666), who could change the"
        " settings hitl takes from it (where the bot token is sent, the admins): `chmod go-w"
        " hitl.toml`\n"
    )


def test_a_group_writable_config_file_is_refused(tmp_path: Path):
    config = tmp_path / "team.toml"
    config.write_text('[hitl]\nchannel = "C0123"\n')
    config.chmod(0o664)
    with pytest.raises(ConfigError) as raised:
        load_settings({"HITL_CONFIG": str(config)})
    assert str(raised.value).startswith(f"{config} can be changed by other users (mode 0664)")
    assert str(raised.value).endswith(f"`chmod go-w {config}`")


def test_a_hitl_toml_another_user_owns_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "hitl.toml"
    config.write_text('[hitl]\nadmins = ["U0EVIL"]\n')
    owned_by(monkeypatch, "fstat", config, OTHER_UID)
    result = run("config")
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(
        f"Error: hitl.toml is owned by another user (uid {OTHER_UID}), who could change the"
        " settings hitl takes from it"
    )
    assert "chown" in result.stderr and "HITL_CONFIG" in result.stderr


def test_a_config_file_of_ones_own_or_roots_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = tmp_path / "hitl.toml"
    config.write_text('[hitl]\nchannel = "C0123"\n')
    config.chmod(0o644)
    assert load_settings({}).channel == "C0123"
    owned_by(monkeypatch, "fstat", config, 0)  # root's, read by another user: /etc's files
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    assert load_settings({}).channel == "C0123"


# -- #9: an API token short enough to guess ------------------------------------------------------


def test_serve_refuses_a_one_character_api_token(tmp_path: Path):
    result = run("serve", env=startable(tmp_path, HITL_API_TOKEN="q", HITL_LABELS="a,b"))
    assert result.exit_code == 1
    assert result.stderr == (
        'Error: HITL_API_TOKEN="***" has 1 character, fewer than 16: a client could guess it;'
        f" make a token with {MAKE_A_TOKEN}\n"
    )


def test_serve_takes_a_long_api_token(tmp_path: Path):
    result = run("serve", env=startable(tmp_path, HITL_API_TOKEN=GOOD_TOKEN))
    assert result.exit_code == 1  # past the settings, at the next thing serve needs
    assert result.stderr.startswith("Error: no label set")


@pytest.mark.parametrize(
    "token", ["abcdefghijklmnopq\x01", "abcdefgh ijklmnopq", "abcdefgh\tijklmnopq"]
)
def test_config_refuses_an_api_token_with_a_control_character_or_a_space(token: str):
    result = run("config", env={"HITL_API_TOKEN": token})
    assert result.exit_code == 1
    assert result.stderr == (
        'Error: HITL_API_TOKEN="***" has a space or a control character, which a Bearer header'
        f" cannot carry; make a token with {MAKE_A_TOKEN}\n"
    )


def test_config_refuses_a_short_api_token_from_hitl_toml(tmp_path: Path):
    (tmp_path / "hitl.toml").write_text('[hitl]\napi_token = "123456789012345"\n')
    result = run("config")
    assert result.exit_code == 1
    assert result.stderr == (
        'Error: hitl.toml api_token="***" has 15 characters, fewer than 16: a client could guess'
        f" it; make a token with {MAKE_A_TOKEN}\n"
    )


def test_config_shows_a_good_api_token_masked():
    result = run("config", env={"HITL_API_TOKEN": GOOD_TOKEN})
    assert result.exit_code == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("HITL_API_TOKEN"))
    assert row.split()[1:3] == [f"****{GOOD_TOKEN[-4:]}", "(env)"]


# -- a webhook secret short enough to guess from one delivery ------------------------------------


def test_config_refuses_a_short_webhook_secret(tmp_path: Path):
    """Every delivery carries the HMAC of its body under HITL_WEBHOOK_SECRET: a receiver's log of
    one delivery is enough for an offline search of a short secret (any length was taken)."""
    result = run("config", env={"HITL_WEBHOOK_SECRET": "hook"})
    assert result.exit_code == 1
    assert result.stderr == (
        'Error: HITL_WEBHOOK_SECRET="***" has 4 characters, fewer than 16: one signed delivery'
        f" is enough to guess it; make a secret with {MAKE_A_TOKEN}\n"
    )
    result = run("serve", env=startable(tmp_path, HITL_WEBHOOK_SECRET="123456789012345"))
    assert result.exit_code == 1 and "has 15 characters, fewer than 16" in result.stderr
    result = run("serve", env=startable(tmp_path, HITL_WEBHOOK_SECRET=GOOD_TOKEN))
    assert result.stderr.startswith("Error: no label set")  # past the settings


# -- the server lock file ------------------------------------------------------------------------


def test_the_server_lock_file_is_its_owners_alone(tmp_path: Path):
    """It names the server's pid and host; like the database beside it, it is 0600, whatever the
    umask (it was 0644)."""
    from bot.store.lock import lock_path, server_lock

    db = tmp_path / "hitl.db"
    with umask(0o022), server_lock(db):
        assert mode(lock_path(db)) == 0o600
    lock_path(db).chmod(0o644)  # as versions before made it, and it stays (never removed)
    with server_lock(db):
        assert mode(lock_path(db)) == 0o600
