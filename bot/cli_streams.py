"""`hitl`'s standard streams, set up by ``bot.cli.main`` before any command runs.

What a command prints must never undo what it does, nor end it in a traceback:

- A reader that goes away (`hitl import FILE 2>&1 | head`, `hitl labels set … | head -2`): a
  command that changes things (import, retrain, delete, labels set, …) finishes its work, what
  it prints meanwhile is dropped, and it exits 141 at the end, the status of a Unix tool killed
  by SIGPIPE (``BROKEN_PIPE``), not 1, hitl's status for an error. A command that only prints
  (export, find, stats, labels show, …: ``strict``) stops at once, with the same status.
- standard output on a full disk or closed (``>&-``): the work is done and kept, then one line
  on stderr says the output was lost, and the exit status is 1. A command that only prints
  says it at once.
- A stream whose encoding cannot hold a character (a Latin-1 terminal, PYTHONIOENCODING=ascii,
  LC_ALL=C with PYTHONUTF8=0): the character is written as its ``\\uXXXX`` escape
  (``ESCAPE``), not a UnicodeEncodeError; `hitl export` keeps its data valid on its own
  (``bot.cli._write_stdout``).
- A descriptor closed when hitl starts (``>&-``, ``<&-``, ``2>&-``): /dev/null holds its place,
  so no file hitl opens takes it, and a read or write of it fails with one line.
"""

from __future__ import annotations

import atexit
import codecs
import errno
import io
import os
import sys
from collections.abc import Callable

BROKEN_PIPE = 128 + 13  # as a shell reports a process that SIGPIPE killed (`yes | head`)
ESCAPE = "hitl-escape"


def _escape(exc: UnicodeError) -> tuple[str, int]:
    """The characters the stream's encoding cannot hold, as JSON and Python write them
    (``\\u2705``; above U+FFFF a surrogate pair): a JSON line stays valid JSON, and a person
    reads which character it was."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    escaped = []
    for ch in exc.object[exc.start : exc.end]:
        code = ord(ch)
        if code > 0xFFFF:
            code -= 0x10000
            escaped.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            escaped.append(f"\\u{code:04x}")
    return "".join(escaped), exc.end


codecs.register_error(ESCAPE, _escape)


def stdout_encoding() -> str:
    """Standard output's encoding by its codec's name (``utf-8``, ``latin-1``, ``ascii``): a
    command that writes data there (`hitl export`, `hitl find --jsonl`) writes JSON in ASCII
    with ``\\u`` escapes when it is not UTF-8, the same JSON in every encoding, and a file a
    JSON reader (or `hitl import`) takes as the UTF-8 it expects."""
    return codecs.lookup(getattr(sys.stdout, "encoding", None) or "utf-8").name


class StreamError(OSError):
    """standard output could not be written (a full disk, a closed descriptor): said in one
    line by ``bot.cli_errors.stream_problem``, for `Error: …`."""


class _Output(io.RawIOBase):
    """Descriptor ``fd`` for writing. The first failure is kept in ``failed``; from then on
    what is written is dropped, unless ``strict``, when the failure is raised (again): a
    BrokenPipeError for a reader gone, else a StreamError."""

    def __init__(self, fd: int, name: str, *, closed: bool) -> None:
        super().__init__()
        self.fd = fd
        self.name_shown = name
        self.strict = False
        self.failed: OSError | None = None
        if closed:
            self.failed = StreamError(errno.EBADF, "it was closed when hitl started (>&-)", name)

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return self.failed is None and os.isatty(self.fd)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.failed is None:
            try:
                return os.write(self.fd, data)
            except BlockingIOError:
                raise  # a non-blocking descriptor: the buffer above retries
            except BrokenPipeError:
                self.failed = BrokenPipeError(errno.EPIPE, "the reader went away")
            except OSError as exc:
                self.failed = StreamError(exc.errno, exc.strerror, self.name_shown)
        if self.strict:
            raise self.failed
        return len(data)

    @property
    def broken_pipe(self) -> bool:
        return isinstance(self.failed, BrokenPipeError)


class _ClosedInput(io.RawIOBase):
    """Standard input closed when hitl started (``<&-``): reading it is one line."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        raise OSError(errno.EBADF, "it was closed when hitl started (<&-)", "standard input")

    def isatty(self) -> bool:
        return False


_OUTPUTS: dict[str, _Output] = {}


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def _fileno(stream: object) -> int | None:
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None


def _hold(fd: int) -> None:
    """/dev/null in the place of closed descriptor ``fd``: no file hitl opens takes it."""
    with open(os.devnull, "rb+", buffering=0) as null:
        os.dup2(null.fileno(), fd)


def set_up() -> None:
    """Replace sys.stdout and sys.stderr with the streams this module describes (and sys.stdin,
    when it was closed). Their encoding stays what Python chose."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        was_closed = getattr(sys, name) is None or _closed(fd)
        if was_closed and _closed(fd):
            _hold(fd)
        if name == "stdin":
            if was_closed:
                sys.stdin = io.TextIOWrapper(io.BufferedReader(_ClosedInput()), encoding="utf-8")
            continue
        old = getattr(sys, name)
        if old is not None and _fileno(old) != fd:  # a caller's own stream (a test's capture)
            continue
        shown = "standard output" if fd == 1 else "standard error"
        raw = _Output(fd, shown, closed=was_closed)
        _OUTPUTS[name] = raw
        stream = io.TextIOWrapper(
            io.BufferedWriter(raw),
            encoding=getattr(old, "encoding", None) or "utf-8",
            errors=ESCAPE,
            line_buffering=bool(getattr(old, "line_buffering", fd == 2)),
            write_through=bool(getattr(old, "write_through", False)),
        )
        if old is not None:
            old.flush()
        setattr(sys, name, stream)
    atexit.register(_lenient)  # however hitl ends, Python's last flush raises nothing


def _lenient() -> None:
    for out in _OUTPUTS.values():
        out.strict = False


def strict_stdout() -> None:
    """A command that only prints: stop at the first failed write of standard output."""
    if "stdout" in _OUTPUTS:
        _OUTPUTS["stdout"].strict = True


def broken_pipe() -> bool:
    """Whether a reader of standard output or error went away."""
    return any(out.broken_pipe for out in _OUTPUTS.values())


def finish(status: int, said: Callable[[StreamError], str]) -> int:
    """The exit status of a command that ended with ``status``, once what it printed is
    flushed: a clean end whose standard output could not be written is 1 and one line on
    stderr; one whose reader went away is ``BROKEN_PIPE``. Another status stays: the command
    said why already (an error, an interrupt)."""
    _lenient()  # from here on a failure is only kept
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    if status != 0 or not _OUTPUTS:
        return status
    out = _OUTPUTS.get("stdout")
    if out is not None and isinstance(out.failed, StreamError):
        line = f"Error: {said(out.failed)}; the command ran to its end, only its output is lost"
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        return 1
    return BROKEN_PIPE if broken_pipe() else 0
