"""Standard input as `hitl import -` reads it: as it arrives, copied nowhere.

``InputStream`` is a binary stream over standard input (a pipe, a redirected file, a socket)
that the readers read as they read a file (``read_items(STDIN, fmt, stream=...)``): memory
and disk stay bounded whatever its size, and rows are imported while the writer still
writes (`tail -f`, a slow `curl`). Its first read holds the first ``SNIFF_BYTES`` bytes (or
all there is), as much as the readers look at before the first row (gzip's magic bytes, a
UTF-16 byte-order mark), or fewer where they already tell (a first line "hi" that starts
neither a gzip stream nor UTF-16 or UTF-32 text: no wait for more); nothing is read twice.

When the writer is slow, the rows read so far would wait for a whole batch (``IMPORT_BATCH``)
before they are committed: ``import_rows`` gives the stream a function that commits them
(``commit_with``), which the stream calls before a read that has to wait for the writer, at
most once every ``COMMIT_EVERY`` seconds (a writer that pauses between lines would otherwise
cost a transaction a line)."""

from __future__ import annotations

import io
import os
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

STDIN = Path("/dev/stdin")  # the name standard input's rows are told under ("stdin line 3")
SNIFF_BYTES = 8  # the readers' first look: gzip's 2 magic bytes, a UTF-32 start (8)
_SNIFFED_STARTS = frozenset(b"\x00\xff\xfe\x1f")  # NUL, a UTF-16/32 byte-order mark, gzip
COMMIT_EVERY = 1.0  # seconds: the rows a slow writer sent are committed at most this late


class InputStream(io.RawIOBase):
    """``source`` (``sys.stdin.buffer``) read as it arrives; see the module's docstring."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        try:
            self._fd: int | None = source.fileno()
        except (AttributeError, OSError, ValueError):  # not a file (a test's BytesIO)
            self._fd = None
        self._first = True
        self._commit: Callable[[], None] | None = None
        self._committed = time.monotonic()

    def commit_with(self, commit: Callable[[], None] | None) -> None:
        """Call ``commit`` (when not None) before a read that waits for the writer."""
        self._commit = commit
        self._committed = time.monotonic()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not self._first:
            return self._read_into(view)
        self._first = False
        got = 0
        while got < len(view) and _undecided(view[:got]):
            n = self._read_into(view[got:])
            if not n:
                break
            got += n
        return got

    def _read_into(self, view: memoryview) -> int:
        if self._fd is None:
            read = getattr(self._source, "read1", self._source.read)
            data = read(len(view))
            view[: len(data)] = data
            return len(data)
        self._wait()
        while True:
            try:
                return os.readv(self._fd, [view])
            except BlockingIOError:  # a descriptor left non-blocking by whoever passed it
                select.select([self._fd], [], [])

    def _wait(self) -> None:
        """Before a read: when it would wait for the writer (nothing arrives within what is
        left of ``COMMIT_EVERY`` since the last commit), commit the rows read so far."""
        if self._commit is None or self._fd is None:
            return
        left = max(0.0, self._committed + COMMIT_EVERY - time.monotonic())
        if select.select([self._fd], [], [], left)[0]:
            return
        self._commit()
        self._committed = time.monotonic()


def _undecided(start: memoryview) -> bool:
    """Whether the readers' look at the first bytes (``_is_gzip``, ``_refuse_wide``) needs
    more of them than ``start``: the starts it looks for begin with NUL, a byte-order mark's
    first byte or gzip's, or an ASCII character and a NUL (UTF-16LE, UTF-32LE)."""
    if len(start) >= SNIFF_BYTES:
        return False
    if len(start) == 0 or start[0] in _SNIFFED_STARTS:
        return True
    return len(start) < 2 or start[1] == 0
