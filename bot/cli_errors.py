"""How `hitl` commands end on an error: one line, `Error: <what to fix>`, exit 1; never a
traceback. Shared by bot.cli and bot.cli_labels."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from bot.cli_streams import StreamError
from bot.errors import HitlError
from bot.store import DatabaseError, cwd_gone, database_problem


class Stopped(KeyboardInterrupt):
    """An interrupt that a command caught to say what it kept: the line is "Stopped by Ctrl-C"
    (or SIGTERM, SIGHUP) followed by ``rest`` (": 2,000 rows imported before it…")."""

    def __init__(self, rest: str) -> None:
        super().__init__(rest)
        self.rest = rest


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Our own errors become `Error: <what to fix>` and exit 1; never a traceback. So do the
    database's (locked by another writer, read-only: ``database_problem``, naming the file) and
    the system's (a folder that cannot be written), wherever in the command they are raised."""
    try:
        yield
    except HitlError as exc:
        raise click.ClickException(str(exc)) from exc
    except DatabaseError as exc:
        raise click.ClickException(str(database_problem(_db_path(), exc))) from exc
    except BrokenPipeError:
        raise  # the reader of our output went away (| head): `hitl` exits 141 quietly
    except StreamError as exc:  # standard output on a full disk, or closed
        raise click.ClickException(stream_problem(exc)) from exc
    except OSError as exc:
        raise click.ClickException(os_problem(exc)) from exc
    except UnicodeEncodeError as exc:
        if not _typed_in_another_encoding(exc):
            raise
        raise click.ClickException(_not_utf8(exc.object[exc.start : exc.end], exc.object)) from None


def _db_path() -> Path | str:
    """The running command's database, for an error about it (``hitl``'s context object, the
    CLI's State, knows it once settings are read)."""
    context = click.get_current_context(silent=True)
    state = context.find_root().obj if context is not None else None
    known = state.known_db() if hasattr(state, "known_db") else None
    return known if known is not None else "the database"


def os_problem(exc: OSError, path: Path | str | None = None) -> str:
    """An OS error as one line: the path and the system's reason (Python's ``[Errno 30]`` and
    traceback say nothing more to a person)."""
    where = path if path is not None else exc.filename
    if where is None and exc.errno == errno.ENOENT and (gone := cwd_gone()) is not None:
        return f"{gone}, so {_relative_paths()} cannot be found from it: cd to a folder that exists"
    reason = exc.strerror or str(exc)
    line = f"{where}: {reason}" if where is not None else reason
    fix = {  # the system's reason says what broke, not what to do about it
        errno.ENOSPC: "the disk is full: free some space and try again",
        errno.EDQUOT: "the disk quota is used up: free some space or raise the quota",
        errno.EFBIG: "the file-size limit (`ulimit -f`) stops it: raise it and try again",
        errno.EMFILE: "raise the open-files limit (`ulimit -n`, or LimitNOFILE= in a systemd unit)",
        errno.ENFILE: "the system's open-files limit is reached (sysctl fs.file-max)",
    }.get(exc.errno)
    return f"{line}; {fix}" if fix is not None else line


def stream_problem(exc: StreamError) -> str:
    """The one line for standard output that could not be written (``bot.cli_streams``)."""
    return os_problem(exc, f"cannot write to {exc.filename}")


def _typed_in_another_encoding(exc: UnicodeEncodeError) -> bool:
    """Whether ``exc`` is text given on the command line whose bytes are not UTF-8 (a terminal
    set to Latin-1): Python keeps each such byte as a lone surrogate (U+DC80-U+DCFF), which
    SQLite's UTF-8 cannot store."""
    bad = exc.object[exc.start : exc.end]
    return bool(bad) and all("\udc80" <= ch <= "\udcff" for ch in bad)


def _not_utf8(bad: str, value: str) -> str:
    """The one line for ``value``, text given with the bytes ``bad`` that are not UTF-8."""
    shown = value if len(value) <= 60 else value[max(0, value.find(bad) - 20) :][:60]
    shown = shown.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return f"'{shown}' is not UTF-8 text (set the terminal to UTF-8)"


def _relative_paths() -> str:
    """The running command's relative path arguments (`-o out.jsonl`), as a message names
    them; "no relative path" when it has none."""
    context = click.get_current_context(silent=True)
    params = context.params.values() if context is not None else ()
    named = [str(p) for p in params if isinstance(p, Path) and not p.is_absolute()]
    return ", ".join(named) if named else "no relative path"


def utf8_text(value: str, what: str) -> str:
    """``value`` as given on the command line; bytes that are not UTF-8 (a terminal set to
    Latin-1) come as surrogates SQLite cannot store: refused in one line, not a traceback."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise click.BadParameter(
            f"'{shown}' is not UTF-8 text (set the terminal to UTF-8)", param_hint=what
        ) from None
    return value
