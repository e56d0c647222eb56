"""A progress bar on stderr for the CLI's long reads (`hitl stats`, `hitl find`), as `hitl
import` and `hitl retrain` show theirs."""

from __future__ import annotations

import os
import sys
import unicodedata
from typing import Any

import click

MIN_BAR = 10  # columns of the bar itself, when the label is shortened to fit


def _columns() -> int:
    """The terminal's width for a bar on stderr: $COLUMNS when set, else stderr's terminal
    (not stdout's, which may be a file: `hitl import big.csv > log`), else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return 80


def _width(text: str) -> int:
    """``text``'s columns on a terminal: a wide character (账) takes 2, a combining one 0."""
    wide = ("W", "F")
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in wide else 1
        for ch in text
    )


def _shortened(label: str, room: int) -> str:
    """``label`` in at most ``room`` columns: its middle left out (a file name's start and end
    say which file it is)."""
    if _width(label) <= room:
        return label
    keep = max(room - 1, 2)
    head, tail = label[: (keep + 1) // 2], label[len(label) - keep // 2 :]
    while _width(head) + _width(tail) > keep and (head or tail):
        if _width(head) >= _width(tail):
            head = head[:-1]
        else:
            tail = tail[1:]
    return f"{head}…{tail}"


def fitted(label: str, *, eta: bool = True, says: int = 0) -> dict[str, Any]:
    """click.progressbar's ``label`` and ``width`` for a bar that fits on one line of the
    terminal with the percentage, the ETA (``eta``) and a text of up to ``says`` columns
    after it; a line that wrapped would leave a stale copy at every redraw. The label is
    shortened when even a short bar would not fit."""
    info = 4 + (2 + 8 if eta else 0) + (2 + says if says else 0)  # " 42%  00:00:03  …"
    room = _columns() - 1 - info - len("  []  ")  # the last column left: no early wrap
    label = _shortened(label, max(room - MIN_BAR, 8))
    return {"label": label, "width": max(room - _width(label), 2)}


class Reading:
    """A bar on stderr for a long read (`hitl stats`, `hitl find`), as `hitl import` and `hitl
    retrain` show theirs: click's, on a terminal only; nothing on a pipe or with ``quiet``.
    ``to(done, total)`` moves it; ``aside()`` wipes its line for output on the same terminal
    (stdout), and the next move draws it again. ``says``: the widest ``doing`` text, for the
    bar to fit the terminal with it. Use it as a context manager."""

    def __init__(self, label: str, *, quiet: bool = False, eta: bool = True, says: int = 0) -> None:
        self.shown = not quiet and sys.stderr.isatty()
        self.bar = click.progressbar(
            length=1,
            **fitted(label, eta=eta, says=says),
            file=sys.stderr,
            hidden=not self.shown,
            show_eta=eta,
            item_show_func=lambda doing: doing,
        )

    def __enter__(self) -> Reading:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def to(self, done: int, total: int, doing: str | None = None) -> None:
        self.bar.length = max(total, 1)
        if doing is not None:
            self.bar.current_item = doing
        if done > self.bar.pos:
            self.bar.update(done - self.bar.pos)
        else:  # what it does now, at the same place
            self.bar.render_progress()

    def aside(self) -> None:
        if self.shown:
            click.echo("\r\x1b[K", file=sys.stderr, nl=False)  # the bar's line, wiped
