"""Waiting on other processes without ever waiting for ever: a child's next line, read up to a
deadline, and a process's end, waited for up to a bound. And a database made once, copied for
each test that hands it to a child."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import sqlite3
import time
from pathlib import Path
from typing import IO


def line_of(pipe: IO[bytes], deadline: float) -> str:
    """The next line on ``pipe`` (a child's binary stdout or stderr), read a byte at a time, so
    nothing after it is taken from the pipe; what came before the child ended, or "" at
    ``deadline`` (``time.monotonic()``): never a read that waits for ever."""
    fd = pipe.fileno()
    said = b""
    while not said.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        byte = os.read(fd, 1)
        if not byte:  # it ended
            break
        said += byte
    return said.decode("utf-8", "replace")


def exits_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` (not necessarily a child of this one: a fork server's child)
    ends within ``seconds``; a pidfd turns readable when it does."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # gone already (and reaped)
    try:
        return bool(select.select([fd], [], [], seconds)[0])
    finally:
        os.close(fd)


def copy_database(made: Path, folder: Path) -> Path:
    """A copy of the database ``made`` (closed: no process has it open) in ``folder``, under
    the same name, with its models folder (``<name>.models``, where the registry is), as a
    test would have made it there: its log checkpointed into the file first, so that the file
    holds all of it; the files keep their modes."""
    with contextlib.closing(sqlite3.connect(made)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    copy = folder / made.name
    shutil.copy(made, copy)  # its mode too (0600)
    models = made.with_name(made.name + ".models")
    if models.is_dir():
        shutil.copytree(models, copy.with_name(copy.name + ".models"))
    return copy
