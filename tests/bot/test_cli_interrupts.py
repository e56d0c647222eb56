"""Ctrl-C, SIGTERM and SIGHUP during `hitl` commands: one line that says what was kept and exit
128 + the signal (130 for Ctrl-C), not click's "Aborted!" and 1, nor a silent death that leaves
files behind; and no traceback from the fork server, whose process group the terminal's Ctrl-C
reaches too.

Each interrupt lands at a chosen point: a function the command calls raises KeyboardInterrupt
(through click's CliRunner), or, for a signal, the process prints a line where it waits and the
signal is sent once that line is read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.store import Store, erasure

ROOT = Path(__file__).resolve().parents[2]
NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, prog_name="hitl")


def stopped(result) -> str:  # noqa: ANN001 - click's Result
    """The one line a command stopped by Ctrl-C ends with (exit 130, not click's "Aborted!")."""
    assert result.exit_code == 130, result.output
    assert "Aborted!" not in result.output
    return result.stderr.strip().splitlines()[-1]


def write_rows(path: Path, n: int, *, labeled: bool = True, prefix: str = "T") -> Path:
    kinds = ("billing invoice charged twice", "app crashes on login", "parcel shipped late")
    labels = ("billing", "bug", "shipping")
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            row = {"id": f"{prefix}{i}", "text": f"{kinds[i % 3]} {prefix} number {i}"}
            if labeled:
                row["label"] = labels[i % 3]
            handle.write(json.dumps(row) + "\n")
    return path


def count_items(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def ctrl_c_as_in_a_terminal():
    """A child started meanwhile gets SIGINT's default disposition, as a command typed in a
    terminal does, even where the tests run with it ignored (pytest started in the background
    by a script: ``pytest &``): the command keeps an ignored SIGINT ignored, as it should."""
    before = signal.getsignal(signal.SIGINT)
    if before is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)  # reset to default at exec
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def run_until(script: str, marker: str, sig: int, **popen) -> tuple[int, str]:
    """Run ``script`` (python -c), read its stderr until a line with ``marker``, send ``sig``;
    its exit status and all of its stderr."""
    with ctrl_c_as_in_a_terminal():
        process = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env(),
            cwd=ROOT,
            **popen,
        )
    seen = []
    try:
        while True:
            line = process.stderr.readline().decode()
            if not line:
                break
            seen.append(line)
            if marker in line:
                process.send_signal(sig)
                break
        _, rest = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, "".join(seen) + rest.decode()


# --- Ctrl-C through CliRunner: the command's own line ---------------------------------------


def test_an_import_stopped_by_ctrl_c_says_how_many_rows_it_kept_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db, rows = tmp_path / "hitl.db", write_rows(tmp_path / "rows.jsonl", 2500)
    add_items = Store.add_items
    calls = []

    def add_then_stop(self, *args, **kwargs):  # the third batch of 1,000 is interrupted
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return add_items(self, *args, **kwargs)

    monkeypatch.setattr(Store, "add_items", add_then_stop)
    result = run("--db", str(db), "import", str(rows))
    assert stopped(result) == (
        "Stopped by Ctrl-C: 2,000 rows imported before it (committed, 2,000 with labels); run"
        " the same import again for the rest: rows already stored are skipped"
    )
    assert count_items(db) == 2000
    monkeypatch.setattr(Store, "add_items", add_items)
    again = run("--db", str(db), "import", str(rows))
    assert again.exit_code == 0, again.output
    assert "imported 500 " in again.output and "2,000 duplicates" in again.output
    assert count_items(db) == 2500


def test_a_retrain_stopped_while_its_model_is_written_says_the_model_is_the_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from bot.learning import retrain

    db = tmp_path / "hitl.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 60))).exit_code == 0
    fit = retrain._fit_in_thread

    async def stopped_once_writing(abandon, *args):
        """Ctrl-C as the model files start being written: the retrain waits for them."""
        writing = threading.Event()
        begin = abandon.begin_writing

        def begin_writing() -> bool:
            began = begin()
            writing.set()
            return began

        abandon.begin_writing = begin_writing
        fitting = asyncio.ensure_future(fit(abandon, *args))
        assert await asyncio.to_thread(writing.wait, 120)
        fitting.cancel()
        raise KeyboardInterrupt

    monkeypatch.setattr(retrain, "_fit_in_thread", stopped_once_writing)
    result = run("--db", str(db), "retrain")
    assert stopped(result) == (
        "Stopped by Ctrl-C after its model was written: v1 is stored and is the champion"
        " (`hitl models`); the waiting items were not scored with it: they keep their scores"
        " until `hitl serve` scores them (it does at start)"
    )
    with Store.open(db) as store:
        assert store.champion_version() == 1
        assert store.last_run("retrain")["status"] == "promoted"


def test_a_retrain_stopped_while_scoring_says_the_new_model_is_the_champion_in_its_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from bot.learning import retrain

    db = tmp_path / "hitl.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 60))).exit_code == 0
    waiting = write_rows(
        tmp_path / "w.jsonl", 5, labeled=False, prefix="W"
    )  # items the model scores
    assert run("--db", str(db), "import", str(waiting)).exit_code == 0

    async def stopped_scoring(*_args, progress=None, **_kwargs):
        progress(0, 5)
        raise KeyboardInterrupt

    monkeypatch.setattr(retrain, "score_items", stopped_scoring)
    result = run("--db", str(db), "retrain")
    assert stopped(result) == (
        "Stopped by Ctrl-C while scoring the waiting items: the new model is the champion"
        " (`hitl models`); items not scored yet keep the previous model's scores until"
        " `hitl serve` scores them (it does at start)"
    )
    with Store.open(db) as store:
        assert store.champion_version() == 1


def test_an_export_to_a_file_stopped_by_ctrl_c_leaves_the_old_file_and_no_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from bot import cli as cli_module

    db, out = tmp_path / "hitl.db", tmp_path / "labels.jsonl"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 30))).exit_code == 0
    out.write_text("the old export\n")
    write_records = cli_module._write_records

    def stopped_after_two(handle, records, columns, fmt):
        def two_then_stop():
            for n, record in enumerate(records):
                if n == 2:
                    raise KeyboardInterrupt
                yield record

        return write_records(handle, two_then_stop(), columns, fmt)

    monkeypatch.setattr(cli_module, "_write_records", stopped_after_two)
    result = run("--db", str(db), "export", "-o", str(out))
    assert stopped(result) == (
        f"Stopped by Ctrl-C: {out} was not written; the file there is as it was"
    )
    assert out.read_text() == "the old export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_command_that_only_reads_says_nothing_was_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from bot.learning import reports

    db = tmp_path / "hitl.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 6))).exit_code == 0

    def stop(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reports, "stats_text", stop)
    result = run("--db", str(db), "stats")
    assert stopped(result) == "Stopped by Ctrl-C; nothing was changed"
    assert result.stderr.strip() == "Stopped by Ctrl-C; nothing was changed"  # that line alone


def test_labels_merge_stopped_after_its_commit_says_it_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Stopped while it puts the stored predictions under the new set, the merge is committed
    already: the line says so (it said only "Aborted!", as if nothing was done)."""
    db = tmp_path / "hitl.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 6))).exit_code == 0

    def stop(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bot.cli_labels.restate_all", stop)
    result = run("--db", str(db), "labels", "merge", "bug", "billing")
    assert stopped(result) == (
        'Stopped by Ctrl-C: the merge "bug" → "billing" is committed (2 labels in the set now;'
        " `hitl labels show` lists them);"
        " not every stored prediction is under the new set yet: `hitl serve`, or the next label"
        " change, puts them there"
    )
    assert "merge bug → billing" in run("--db", str(db), "labels", "show").stdout


def test_labels_rename_stopped_after_its_commit_names_the_change_not_every_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With 89 labels its one line listed them all (over 1,000 characters); it names the
    change and counts the labels."""
    db, rows = tmp_path / "hitl.db", tmp_path / "r.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"id": f"T{i}", "text": f"text {i}", "label": f"label-{i:02}"}) + "\n"
            for i in range(89)
        )
    )
    assert run("--db", str(db), "import", str(rows)).exit_code == 0

    def stop(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bot.cli_labels.restate_all", stop)
    result = run("--db", str(db), "labels", "rename", "label-00", "label-x")
    assert stopped(result) == (
        'Stopped by Ctrl-C: the rename "label-00" → "label-x" is committed (89 labels in the set'
        " now; `hitl labels show` lists them); not every stored prediction is under the new set"
        " yet: `hitl serve`, or the next label change, puts them there"
    )
    assert "label-x, label-01" in run("--db", str(db), "labels", "show").stdout


def test_a_restore_stopped_after_its_swap_says_the_database_was_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Stopped while it read the models folder, after the restore was done, it said only
    "Stopped by Ctrl-C": a script read a restore that had happened as one that failed (an
    outside re-test)."""
    from bot import cli_restore
    from tests.bot.test_restore_command import backup_of

    db, backup = tmp_path / "hitl.db", tmp_path / "b.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 6))).exit_code == 0
    backup_of(db, backup)

    def stop(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_restore, "models_note", stop)
    result = run("--db", str(db), "restore", str(backup))
    kept = tmp_path / "hitl.db.before-restore"
    assert stopped(result) == (
        f"Stopped by Ctrl-C after the restore: {db} was restored from {backup}; the database"
        f" that was there is kept as {kept}; what the models folder holds was not checked"
        " (`hitl models`)"
    )
    assert kept.exists()


def test_a_delete_stopped_while_it_rebuilds_the_file_stops_there_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The VACUUM after a delete rebuilds the whole file (seconds at a million items): Ctrl-C
    then waited for the end of it (5.6 s at a million). A Ctrl-C in it now stops it, which
    leaves the file as it was: the line says the delete is committed and how to rebuild."""
    db = tmp_path / "hitl.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 30))).exit_code == 0
    scrub = Store.scrub
    monkeypatch.setattr(erasure, "SCRUB_STEPS", 1)  # a step of the VACUUM: Ctrl-C comes there

    def ctrl_c_in_the_vacuum(self, progress=None):  # noqa: ANN001, ANN202
        return scrub(self, lambda: os.kill(os.getpid(), signal.SIGINT))

    monkeypatch.setattr(Store, "scrub", ctrl_c_in_the_vacuum)
    # Ctrl-C as a terminal's reaches the command: Python's own handler, whatever the suite was
    # started with (a job a script starts in the background inherits SIGINT ignored, and
    # Python keeps it so: the VACUUM then ran to its end and the test failed)
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = run("--db", str(db), "delete", "T1", "--yes")
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert stopped(result) == (
        "Stopped by Ctrl-C; the delete is committed. Deleted 1 item: 1 answer, 1 label. The"
        " database file was not rebuilt: its unused space may keep old copies of the text until"
        f" `sqlite3 {db} VACUUM` is run. Backups and exports made before keep these items: delete"
        " them there too."
    )
    assert count_items(db) == 29


@pytest.mark.parametrize("fault", [KeyboardInterrupt, sqlite3.OperationalError])
def test_a_restore_stopped_before_it_deleted_again_names_the_commands_that_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: type[BaseException]
):
    """Stopped (or failed: a database locked past the wait) as it deleted again an item erased
    after the backup, it said "`hitl restore BACKUP` again deletes them", which keeps the
    restored database, which does not record the deletion: the erased item stayed. A failure
    was a traceback. The commands it names now delete it again."""
    from tests.bot.test_restore_command import backup_of

    db, backup = tmp_path / "hitl.db", tmp_path / "b.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 3))).exit_code == 0
    backup_of(db, backup)
    assert run("--db", str(db), "delete", "T0", "--yes").exit_code == 0
    real = Store.delete_again

    def fail(*_args, **_kwargs):
        raise fault("database is locked")

    monkeypatch.setattr(Store, "delete_again", fail)
    result = CliRunner().invoke(cli, ["--db", str(db), "restore", str(backup)])
    kept = tmp_path / "hitl.db.before-restore"
    what = (
        f"{db} was restored from {backup}, but the items deleted after the backup was made were"
        " not deleted again"
    )
    redo = f"`hitl restore {kept}` and then `hitl restore {backup}` delete them"
    if fault is KeyboardInterrupt:
        assert stopped(result) == f"Stopped by Ctrl-C after the restore: {what}: {redo}"
    else:
        assert result.exit_code == 1, result.output
        assert result.stderr.splitlines()[-1] == (
            f"Error: {what} ({db}: database error (database is locked)): once that is fixed, {redo}"
        )
    monkeypatch.setattr(Store, "delete_again", real)
    for command in redo.split("`")[1::2]:
        assert run("--db", str(db), *command.split()[1:]).exit_code == 0
    with Store.open(db) as store:
        assert store.get_item("T0") is None and store.get_item("T1") is not None


def test_labels_set_stopped_inside_its_transaction_says_nothing_was_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`hitl labels set` of several ids stopped before its commit changed nothing, and said
    only "Stopped by SIGTERM" (an outside re-test)."""
    from bot.store import Store

    db = tmp_path / "hitl.db"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 6))).exit_code == 0
    real, calls = Store.set_label, []

    def stopped_at_the_second(self, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Store, "set_label", stopped_at_the_second)
    result = run("--db", str(db), "labels", "set", "T0", "T1", "shipping")
    assert stopped(result) == (
        "Stopped by Ctrl-C; nothing was changed (the items are set together or not at all)"
    )
    monkeypatch.undo()
    exported = run("--db", str(db), "export").stdout
    labels = {json.loads(line)["id"]: json.loads(line)["label"] for line in exported.splitlines()}
    assert (labels["T0"], labels["T1"]) == ("billing", "bug")  # as they were


# --- SIGTERM, SIGHUP (and SIGINT) to a process: the clean-ups run ----------------------------

EXPORT = """
import sys
from bot import cli
write_records = cli._write_records

def slow(handle, records, columns, fmt):
    def waiting():
        for n, record in enumerate(records):
            if n == 2:
                print("two written", file=sys.stderr, flush=True)
                sys.stdin.readline()  # until the signal
            yield record
    return write_records(handle, waiting(), columns, fmt)

cli._write_records = slow
sys.argv = ["hitl", "--db", {db!r}, "export", "-o", {out!r}]
cli.main()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_an_export_stopped_by_a_signal_removes_its_partial_file(tmp_path: Path, sig: int):
    db, out = tmp_path / "hitl.db", tmp_path / "labels.jsonl"
    assert run("--db", str(db), "import", str(write_rows(tmp_path / "r.jsonl", 30))).exit_code == 0
    code, err = run_until(EXPORT.format(db=str(db), out=str(out)), "two written", sig)
    assert code == 128 + sig, err
    assert err.strip().splitlines()[-1] == (
        f"Stopped by {NAMES[sig]}: {out} was not written (no file was made)"
    )
    assert "Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no .tmp


RESTORE = """
import sys
from bot.store import restore as restore_module
copy = restore_module._copy
swap = restore_module._swap
restore_module.STEP_PAGES = 1

def copy_slowly(backup, into, target, progress):
    def waiting(done, total):
        if done == 1:
            print("copying", file=sys.stderr, flush=True)
            sys.stdin.readline()  # until the signal
        progress(done, total)
    return copy(backup, into, target, waiting)

def signalled_swap(target, into):
    import os, signal
    os.kill(os.getpid(), {sig})  # while the files are swapped
    return swap(target, into)

if {where!r} == "copy":
    restore_module._copy = copy_slowly
else:
    restore_module._swap = signalled_swap
from bot import cli
sys.argv = ["hitl", "--db", {db!r}, "restore", {backup!r}]
cli.main()
"""


def two_databases(tmp_path: Path) -> tuple[Path, Path]:
    db, backup = tmp_path / "hitl.db", tmp_path / "backup.db"
    for path, n in ((backup, 300), (db, 5)):
        rows = write_rows(tmp_path / f"{path.stem}.jsonl", n)
        assert run("--db", str(path), "import", str(rows)).exit_code == 0
    return db, backup


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_restore_stopped_by_a_signal_during_the_copy_leaves_the_database_as_it_was(
    tmp_path: Path, sig: int
):
    db, backup = two_databases(tmp_path)
    script = RESTORE.format(db=str(db), backup=str(backup), sig=int(sig), where="copy")
    code, err = run_until(script, "copying", sig)
    assert code == 128 + sig, err
    assert err.strip().splitlines()[-1] == (
        f"Stopped by {NAMES[sig]}: the restore was not done; {db} is as it was (the copy of"
        f" {backup} was removed): run `hitl restore {backup}` again"
    )
    assert not (tmp_path / "hitl.db.restoring").exists()
    assert count_items(db) == 5


def test_a_restore_signalled_while_its_files_are_swapped_finishes_the_swap_and_says_so(
    tmp_path: Path,
):
    db, backup = two_databases(tmp_path)
    script = RESTORE.format(db=str(db), backup=str(backup), sig=int(signal.SIGTERM), where="swap")
    process = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, env=env(), cwd=ROOT, timeout=120
    )
    err = process.stderr.decode()
    assert process.returncode == 128 + signal.SIGTERM, err
    kept = tmp_path / "hitl.db.before-restore"
    assert err.strip().splitlines()[-1] == (
        f"Stopped by SIGTERM: {db} was restored from {backup} just before it; the database that"
        f" was there is kept as {kept}"
    )
    assert count_items(db) == 300 and count_items(kept) == 5
    assert not (tmp_path / "hitl.db.restoring").exists()


# --- the start of a command, and the fork server ---------------------------------------------


def test_ctrl_c_while_the_cli_imports_is_one_line_and_130_not_a_traceback():
    """The guard is set as bot.cli starts importing; the signal lands in a module it imports:
    here the test's own wait stands in for a library's import (sys.modules is emptied of bot
    first so that it imports anew)."""
    script = (
        "import signal, sys\n"
        "import bot.store\n"  # a module of bot.cli's imports, imported before the guard
        "import builtins\n"
        "real_import = builtins.__import__\n"
        "def waiting_import(name, *args, **kwargs):\n"
        "    if name == 'bot.store' and 'bot.cli' in sys.modules:\n"
        "        builtins.__import__ = real_import\n"
        "        print('importing', file=sys.stderr, flush=True)\n"
        "        sys.stdin.readline()  # until the signal\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = waiting_import\n"
        "from bot.cli import main\n"
        "print('imported', file=sys.stderr, flush=True)\n"
    )
    code, err = run_until(script, "importing", signal.SIGINT)
    assert code == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "Stopped by Ctrl-C; nothing was changed"


# The fork server's only import (FORK_SERVER): it stands in for CHILD_PRELOAD, whose seconds
# of imports (scikit-learn, scipy: ~1.5 s of CPU) it went on with after the Ctrl-C before.
MARKER = """
import sys
print("fork server importing", file=sys.stderr, flush=True)
sys.stdin.readline()  # stands in for its seconds of imports: until the test says
"""

FORK_SERVER = """
import signal, sys
from bot.learning import children

if children.child_context().get_start_method() != "forkserver":
    print("no fork server here", file=sys.stderr, flush=True)
    sys.exit(3)
children.CHILD_PRELOAD = ("hitl_test_marker",)  # its imports: the marker's wait stands in
signal.signal(signal.SIGINT, lambda *_: print("parent: Ctrl-C", file=sys.stderr, flush=True))
children.start_fork_server()
"""


def test_ctrl_c_while_the_fork_server_imports_prints_no_traceback(tmp_path: Path):
    """The terminal sends Ctrl-C to the whole foreground process group: the parent (here a
    script that started the fork server, as `hitl serve` and `hitl demo` do first thing) and
    the fork server, still importing. The fork server must not take it."""
    (tmp_path / "hitl_test_marker.py").write_text(textwrap.dedent(MARKER))
    process = subprocess.Popen(
        [sys.executable, "-c", FORK_SERVER],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env(), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
        cwd=tmp_path,
        process_group=0,  # as a terminal's job: the test's own group gets nothing
    )
    seen = []
    try:
        while True:
            line = process.stderr.readline().decode()
            if not line:
                break
            seen.append(line)
            if "fork server importing" in line:
                os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does
                break
        process.stdin.close()  # the fork server's import ends; all end when it is done
        err = "".join(seen) + process.stderr.read().decode()  # to the last writer's end
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    if process.returncode == 3:
        pytest.skip("children are spawned here (no fork server)")
    assert "fork server importing" in err, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


# --- hitl serve and hitl demo: SIGHUP (the terminal closed) stops them as SIGTERM does -------


def stop_server(command: list[str], cwd: Path, env: dict[str, str], marker: str, sig: int):
    """Start ``command``, read its stderr and stdout (merged) up to ``marker``, send ``sig``."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd
    )
    seen = []
    try:
        while True:
            line = process.stdout.readline().decode()
            if not line:
                break
            seen.append(line)
            if marker in line.lower():
                process.send_signal(sig)
                break
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, "".join(seen) + rest.decode()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT])
def test_serve_stops_cleanly_on_sighup_and_exits_130_on_ctrl_c(tmp_path: Path, sig: int):
    from tests.bot.test_serve_process import free_port, socket_mode_env

    db = tmp_path / "hitl.db"
    unreachable = f"http://127.0.0.1:{free_port()}/api/"  # Slack cannot be reached: it retries
    code, output = stop_server(
        [sys.executable, "-m", "bot", "serve"],
        tmp_path,
        {**socket_mode_env(db, unreachable, "xoxb-1", "xapp-1"), "PYTHONPATH": str(ROOT)},
        "retrying",
        sig,
    )
    assert code == (130 if sig == signal.SIGINT else 0), output
    assert "shutting down" in output and "Traceback" not in output


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT])
def test_demo_stops_cleanly_on_sighup_and_exits_130_on_ctrl_c(tmp_path: Path, sig: int):
    command = [sys.executable, "-m", "bot", "--db", str(tmp_path / "demo.db"), "demo"]
    code, output = stop_server(
        [*command, "--no-browser", "--port", "0"],
        tmp_path,
        {**{k: v for k, v in env().items() if not k.startswith(("SLACK_", "HITL_"))}},
        "ctrl-c to stop",
        sig,
    )
    assert code == (130 if sig == signal.SIGINT else 0), output
    assert "Stopping…" in output and "Traceback" not in output
