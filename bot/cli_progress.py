"""A progress bar on stderr for the CLI's long reads (`hitl stats`, `hitl find`), as `hitl
import` and `hitl retrain` show theirs."""

from __future__ import annotations

import sys

import click


class Reading:
    """A bar on stderr for a long read (`hitl stats`, `hitl find`), as `hitl import` and `hitl
    retrain` show theirs: click's, on a terminal only; nothing on a pipe or with ``quiet``.
    ``to(done, total)`` moves it; ``aside()`` wipes its line for output on the same terminal
    (stdout), and the next move draws it again. Use it as a context manager."""

    def __init__(self, label: str, *, quiet: bool = False, eta: bool = True) -> None:
        self.shown = not quiet and sys.stderr.isatty()
        self.bar = click.progressbar(
            length=1,
            label=label,
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
