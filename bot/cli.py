"""The `hitl` command line: parses, calls into bot/ and model/, turns errors into one line.

One click command per `hitl` subcommand, each thin: parse the options, call the library
(``bot.ingest``, ``bot.learning``, ``bot.store``, ``bot.server``, ``bot.demo``), print what it
returns. Most of its ~600 lines are options, help text and printing, which `hitl --help` and
the README show; like sqlite-utils' ``cli.py`` it stays one module so the whole command reads
in one place.
"""

from __future__ import annotations

import signal
import sys


def _stopped_while_starting(signum: int, _frame: object) -> None:
    """Ctrl-C while this module imports (the first ~0.5 s of any command): one line and exit
    130, not a traceback from inside some library's import. Put back once they are done."""
    sys.stderr.write("Stopped by Ctrl-C; nothing was changed\n")
    raise SystemExit(128 + signum)


def _one_blas_thread_under_a_memory_limit() -> None:
    """Under an address-space limit (``ulimit -v``), OpenBLAS starts as many threads as cores
    when numpy is imported, and when one cannot start it ``raise(SIGINT)``s: a command said
    "Stopped by Ctrl-C" that nobody pressed (an outside re-test). Its threads are for dense
    maths the product does not do (every fit uses one BLAS thread already); one thread starts
    none, and what really lacks memory then says so (``main``: "ran out of memory")."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError):
        return
    if soft != resource.RLIM_INFINITY:
        import os

        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


_one_blas_thread_under_a_memory_limit()
_GUARDED = False
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # none of a caller's own
    try:
        signal.signal(signal.SIGINT, _stopped_while_starting)
        _GUARDED = True
    except ValueError:  # imported outside the main thread: nothing to guard there
        pass

import contextlib  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable, Coroutine, Iterator, Mapping  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import IO, Any, TypeVar  # noqa: E402

import click  # noqa: E402

from bot import cli_streams, logs  # noqa: E402
from bot.cli_errors import Stopped, friendly_errors, os_problem, stream_problem  # noqa: E402
from bot.cli_progress import Reading, fitted  # noqa: E402
from bot.config import Settings, api_token, config_path, describe, load_settings  # noqa: E402
from bot.errors import HitlError  # noqa: E402
from bot.ingest import FORMATS, formula_guarded, import_rows, rows_of_file  # noqa: E402
from bot.ingest.stream import STDIN, InputStream  # noqa: E402
from bot.labelset import current_labels  # noqa: E402
from bot.store import Store, path_problem  # noqa: E402
from bot.words import count  # noqa: E402

T = TypeVar("T")

logger = logging.getLogger(__name__)

MAX_ERRORS_SHOWN = 50
EXPORT_FIELDS = (
    "id",
    "text",
    "label",
    "votes",
    "agreement",
    "annotators",
    "resolved_at",
    "meta",
    "answers",
    "label_set",
    "gold",
)
ANSWER_FIELDS = (
    "item_id",
    "text",
    "user_id",
    "label",
    "source",
    "created_at",
    "late",
    "team_id",
)

# A command that stopped on an interrupt says so in one line, "Stopped by Ctrl-C" and what was
# kept, and exits 128 + the signal (130 for Ctrl-C), as shells expect, not click's "Aborted!"
# and 1. `main` turns SIGTERM and SIGHUP (a closed terminal, a dropped ssh session) into the
# same interrupt, so that what cleans up after one (a half-written export's file, a restore's
# copy) runs for them too. `hitl serve` and `hitl demo` stop on their own handlers.
READ_ONLY = {("config",), ("stats",), ("models",), ("labels", "show"), ("labels", "history")}
_SIGNALLED: list[int] = []  # SIGTERM or SIGHUP, when one of them was the interrupt


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM or SIGHUP, handled as Ctrl-C is: SIGINT's handler runs (asyncio's cancels the
    running task first, as for Ctrl-C), or KeyboardInterrupt is raised where SIGINT is
    ignored (a job started in the background)."""
    _SIGNALLED.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
        return
    raise KeyboardInterrupt


def _stop_signal() -> int:
    return _SIGNALLED[-1] if _SIGNALLED else signal.SIGINT


def _stopped_by() -> str:
    signum = _stop_signal()
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _command_words(args: list[str]) -> tuple[str, ...]:
    """The command of ``args`` (`hitl`'s own arguments): ("stats",), ("labels", "show")."""
    words = args[_command_at(args) :]
    if words[:1] == ["labels"]:
        return tuple(words[:1] + [w for w in words[1:] if not w.startswith("-")][:1])
    return tuple(words[:1])


def _say_stopped(exc: KeyboardInterrupt, args: list[str]) -> int:
    """Print the one line for an interrupted command; its exit status."""
    by = _stopped_by()
    if isinstance(exc, Stopped):
        line = f"Stopped by {by}{exc.rest}"
    elif _command_words(args) in READ_ONLY or (
        _command_words(args) == ("accuracy",) and not any(a.startswith("--chart") for a in args)
    ):
        line = f"Stopped by {by}; nothing was changed"
    else:
        line = f"Stopped by {by}"
    with contextlib.suppress(OSError, ValueError):  # stderr closed: the status still says it
        click.echo(line, err=True)
    return 128 + _stop_signal()


class State:
    """What the group passes to its commands: options, and settings loaded on first use."""

    def __init__(self, db: Path | None):
        self.db = db
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            settings = load_settings(os.environ, config_path(os.environ))
            if self.db is not None:  # `hitl config` names where each value came from
                sources = {**settings.sources, "db": "--db"}
                settings = settings.with_changes(db=self.db, sources=sources)
            logs.REDACTOR.add(
                settings.slack_bot_token,
                settings.slack_signing_secret,
                settings.slack_app_token,
                settings.api_token,
                settings.webhook_secret,
            )
            self._settings = settings
        return self._settings

    def open_store(self) -> Store:
        return Store.open(self.settings.db)

    def known_db(self) -> Path | None:
        """The database path as far as it is known, without loading the settings: for an error
        about the database, whose handler must not raise an error of its own."""
        return self._settings.db if self._settings is not None else self.db

    def require_db(self) -> None:
        """For commands that only read: an error instead of creating an empty database (and
        its models folder) in whatever folder they were run from."""
        db = self.settings.db
        if (problem := path_problem(db)) is not None:  # a device, unreadable, cwd deleted
            raise click.ClickException(str(problem))
        if not Path(db).exists():
            raise click.ClickException(
                f"no database at {db} (nothing imported here yet): run `hitl import FILE` "
                "first, or point --db or HITL_DB at an existing one"
            )

    def open_existing_store(self) -> Store:
        self.require_db()
        return self.open_store()


class HitlGroup(click.Group):
    """`hitl`'s group: an option of its own given after the command (`hitl stats --db h.db`)
    is told where it goes, with the command written that way, instead of click's bare "No
    such option"."""

    OWN_OPTIONS = ("--db", "-v", "--verbose")
    TAKES_VALUE = ("--db",)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["hitl.args"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return self._invoke(ctx)
        except KeyboardInterrupt as exc:  # Ctrl-C (SIGTERM, SIGHUP: `main`): one line, 130
            raise click.exceptions.Exit(_say_stopped(exc, ctx.meta.get("hitl.args", []))) from None
        except BrokenPipeError:  # a command that only prints, its reader gone (| head)
            if not cli_streams.broken_pipe():
                raise
            raise click.exceptions.Exit(cli_streams.BROKEN_PIPE) from None
        except cli_streams.StreamError as exc:  # its standard output full or closed
            raise click.ClickException(stream_problem(exc)) from None

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:
            given = ctx.meta.get("hitl.args", [])
            at = self._refused_at(exc, given)
            # the group's own option, given after the command; not a label or an id that
            # starts as one (`-vague`: click refuses its `-v`)
            own = (
                exc.option_name in self.OWN_OPTIONS
                if at is None
                else _is("-v", given[at]) or _is("--db", given[at])
            )
            if not own:
                dashed = self._dashed_value(exc, given, at)
                if dashed is None:
                    raise
                raise dashed from exc
            args = moved_to_front(given, "--db")  # both, if both came after the command
            shown = "--db FILE" if args is None else exc.option_name
            if args is None:  # `hitl retrain --db`: no value to move
                args = ["--db", "FILE", *_without_db(given)]
            args = moved_to_front(args, "-v") or args
            raise click.UsageError(
                f"{shown} goes before the command: {' '.join(['hitl', *map(shlex.quote, args)])}",
                ctx=exc.ctx,
            ) from exc

    @staticmethod
    def _options(exc: click.NoSuchOption) -> tuple[set[str], set[str]]:
        """The names of the refusing command's options that take a value, and of its flags
        (its help option's among them)."""
        valued: set[str] = set()
        flags: set[str] = set()
        ctx = exc.ctx
        for param in ctx.command.get_params(ctx) if ctx is not None else ():
            if isinstance(param, click.Option):
                names = {*param.opts, *param.secondary_opts}
                (flags if param.is_flag or param.count else valued).update(names)
        return valued, flags

    @staticmethod
    def _refused_at(exc: click.NoSuchOption, given: list[str]) -> int | None:
        """Where in ``given`` the argument click refused is: the first after the command that
        starts with "-" and is none of the command's options (the group's own, given after
        it, are refused so too), not an option's value (`--reason "-1 means x" -1`) nor
        anything after a `--` (those are words). Not found by the option click names: it
        names one letter of a word (`-vague`: `-v`; `-high`: `-i`, its `-h` taken as help).
        None if there is none with that letter."""
        name = exc.option_name
        valued, flags = HitlGroup._options(exc)
        i = _command_at(given)
        while i < len(given) and given[i] != "--":
            arg = given[i]
            if arg in valued:
                i += 2  # the option and its value
                continue
            i += 1
            if len(arg) < 2 or not arg.startswith("-") or arg in flags:
                continue  # a word ("-": standard input), or one of the command's flags
            if arg.startswith("--") and arg.split("=", 1)[0] in valued:
                continue  # --reason=TEXT
            # the one click refused (a long option by its name, a short one by a letter)
            if arg.startswith("--"):
                return i - 1 if arg.split("=", 1)[0] == name else None
            return i - 1 if name.startswith("-") and name[1:2] in arg[1:] else None
        return None

    @staticmethod
    def _dashed_value(
        exc: click.NoSuchOption, given: list[str], at: int | None
    ) -> click.UsageError | None:
        """None, or, for an unknown short option that may be a label or an id
        starting with "-" (`hitl labels rename -1 negative`, `-1` for a sentiment label), one
        line saying to put `--` before it, with the command so written: the command's options
        given after it first (``--reason TEXT``), then `--` and the labels and ids (those
        already after a `--` of its own too, without a second: it would be taken as a word).
        ``at``: where the refused argument is in ``given`` (``_refused_at``)."""
        if at is None or given[at].startswith("--"):
            return None  # an unknown long option: click's own message
        valued, flags = HitlGroup._options(exc)
        options: list[str] = []
        words = [given[at]]
        db: list[str] = []  # the group's own options given after it (the last --db counts)
        verbose: list[str] = []
        rest = iter(given[at + 1 :])
        for arg in rest:
            if arg == "--":  # the rest are words as given (one `--` goes before them all)
                words += rest
                break
            if arg in valued:
                options += [arg, next(rest, "")]
            elif arg in flags or arg.split("=", 1)[0] in valued:
                options.append(arg)
            elif arg == "--db":
                db = [arg, next(rest, None) or "FILE"]
            elif _is("--db", arg):
                db = [arg]
            elif _is("-v", arg):
                verbose.append(arg)
            else:
                words.append(arg)
        # before the command, where they go (`hitl --db FILE labels ...`), as the hint for one
        # given after it shows; an earlier --db there is dropped: the one typed last is meant
        head = (moved_to_front([*given[:at], *db], "--db") or given[:at]) if db else given[:at]
        fixed = ["hitl", *verbose, *head, *options, "--", *words]
        return click.UsageError(
            f"no such option {given[at]!r}; if {given[at]!r} is a label or an id (one that"
            f' starts with "-"), put `--` before it: {" ".join(map(shlex.quote, fixed))}'
        )


def _is(option: str, arg: str) -> bool:
    """Whether ``arg`` gives ``option`` (``--db``: ``--db`` or ``--db=FILE``; ``-v``: ``-v``,
    ``-vv``, ``--verbose``)."""
    if option == "--db":
        return arg == "--db" or arg.startswith("--db=")
    return re.fullmatch(r"-v+|--verbose", arg) is not None


def _command_at(args: list[str]) -> int:
    """Where the command starts in ``args``: after the group's own options."""
    i = 0
    while i < len(args) and (_is("--db", args[i]) or _is("-v", args[i])):
        i += 2 if args[i] == "--db" else 1
    return i


def _without_db(args: list[str]) -> list[str]:
    """``args`` without the ``--db`` given after the command (it had no value)."""
    at = _command_at(args)
    return [*args[:at], *(a for a in args[at:] if not _is("--db", a))]


def moved_to_front(args: list[str], option: str) -> list[str] | None:
    """``args`` as they should have been given: the last ``option`` given after the command
    (with its value) moved before it. A ``--db`` given before the command too is dropped
    there: the one typed last is the one meant. None for a ``--db`` with no value."""
    at = _command_at(args)
    for i in reversed(range(at, len(args))):
        if not _is(option, args[i]):
            continue
        end = i + 1
        if args[i] == "--db":
            if i + 1 == len(args) or args[i + 1].startswith("-"):
                return None
            end = i + 2
        front = args[:at]
        if option == "--db":  # drop the earlier --db FILE / --db=FILE before the command
            kept, j = [], 0
            while j < len(front):
                if _is("--db", front[j]):
                    j += 2 if front[j] == "--db" else 1
                    continue
                kept.append(front[j])
                j += 1
            front = kept
        return [*args[i:end], *front, *args[at:i], *args[end:]]
    return args


@click.group(cls=HitlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="slack-hitl")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite database file (default: $HITL_DB or ./hitl.db).",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log more: -v INFO, -vv DEBUG, -vvv DEBUG for the Slack and HTTP libraries too.",
)
@click.pass_context
def cli(ctx: click.Context, db: Path | None, verbose: int) -> None:
    """slack-hitl: a text classifier that asks your team in Slack when it is unsure,
    and learns from the answers.

    Settings come from environment variables (SLACK_*, HITL_*) and an optional
    hitl.toml; see `hitl config`.
    """
    logs.configure(verbose)
    ctx.obj = State(db)


@cli.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), help="File format (default: from the extension)."
)
@click.option(
    "--text-column", default="text", show_default=True, help="Column or field holding the text."
)
@click.option(
    "--id-column",
    help="Column holding a unique item id (default: 'id' if present, else a hash of the text).",
)
@click.option(
    "--label-column",
    help="Column holding a known label (default: 'label' if present); "
    "labeled rows become seed labels.",
)
@click.option(
    "--gold",
    is_flag=True,
    help="The rows are gold: known answers to score people on, mixed into the questions (and "
    "each person's labeling-window items) at HITL_GOLD_RATE; each row needs a label, and an id "
    "already stored is marked gold.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary, not each rejected row.")
@click.pass_obj
def import_command(
    state: State,
    path: Path,
    fmt: str | None,
    text_column: str,
    id_column: str | None,
    label_column: str | None,
    gold: bool,
    quiet: bool,
) -> None:
    """Import items to label from PATH (CSV, TSV, JSONL or plain text, one item per line).

    PATH "-" reads standard input (give --format); rows are reported as lines of "stdin".
    A CSV may be separated by semicolons or tabs instead of commas (read from its header
    and first rows). A .json file is read as JSON lines, a gzip file (.gz) as what it holds;
    in a Prodigy export only accepted rows give labels. Columns other than the text, id and
    label are kept as the item's meta. A row already stored (same id and text, or same
    text when there is no id) is a duplicate and changes nothing, so importing the same
    file twice adds nothing; a row whose id is stored with another text is rejected (an
    import never changes a stored item). Bad rows are reported with their line number and
    skipped; all good rows are imported.

    \b
    Examples:
      hitl import tickets.csv --text-column body --id-column ticket_id
      hitl import labeled.jsonl --label-column intent
      hitl import messages.txt
      hitl import --gold checked.csv
      hitl export > decided.jsonl && hitl import --gold decided.jsonl
      curl -s https://example.com/tickets.jsonl | hitl import - --format jsonl
    """
    named = "FILE" if str(path) == "-" else shlex.quote(str(path))  # in a command to run again
    with friendly_errors(), contextlib.ExitStack() as spool:
        stream = None
        if str(path) == "-":  # read as it arrives: rows are stored while the writer writes
            path, stream = STDIN, standard_input(fmt)
        size = path.stat().st_size if stream is None and path.is_file() else 0
        show_bar = sys.stderr.isatty()
        bar = click.progressbar(  # standard input's size is not known: a bar with no end
            length=size if stream is None else None,
            iterable=None if stream is None else (n for n in ()),
            **fitted(f"Importing {path.name}"),
            file=sys.stderr,
            show_eta=True,
        )
        rows = rows_of_file(  # a problem of the whole file surfaces here, before any write
            path,
            fmt,
            text_column=text_column,
            id_column=id_column,
            label_column=label_column,
            progress=bar.update if show_bar else None,
            stream=stream,
        )
        spool.callback(getattr(rows, "close", lambda: None))  # the file, however this ends
        shown = unapplied = 0

        def show(message: str) -> None:
            nonlocal shown
            if shown < MAX_ERRORS_SHOWN and not quiet:
                click.echo(message, err=True)
            shown += 1

        def show_unapplied(message: str) -> None:
            nonlocal unapplied
            if unapplied < MAX_ERRORS_SHOWN and not quiet:
                click.echo(message, err=True)
            unapplied += 1

        db = state.settings.db
        made: tuple[int, int] | None | bool = not db.exists()  # by this import (remove_unused)
        with state.open_store() as store, bar if show_bar else contextlib.nullcontext():
            made = store.file_id if made else None  # the file it made (device, inode)
            last = store.last_run("import")
            try:
                summary = import_rows(
                    store,
                    path,
                    rows,
                    triggered_by=f"cli:{path.name}",
                    on_error=show,
                    on_unapplied=show_unapplied,
                    gold=gold,
                    configured_labels=state.settings.labels,
                    redact=state.settings.redact,
                    stream=stream,
                )
            except KeyboardInterrupt:
                raise Stopped(_import_kept(store, last["id"] if last else 0)) from None
        if summary.rejected > MAX_ERRORS_SHOWN and not quiet:
            click.echo(
                f"... and {count(summary.rejected - MAX_ERRORS_SHOWN, 'more rejected row')}",
                err=True,
            )
        if unapplied > MAX_ERRORS_SHOWN and not quiet:
            more = count(unapplied - MAX_ERRORS_SHOWN, "more label")
            click.echo(f"... and {more} not applied", err=True)
    if gold:
        click.echo(
            f"{path.name}: read {count(summary.read, 'row')}, "
            f"{count(summary.imported, 'new gold item')}, "
            f"{count(summary.marked_gold, 'stored item')} marked gold, "
            f"{summary.duplicates:,} already gold, {summary.rejected:,} rejected"
            f"{_deleted_before(summary.deleted_before)}"
        )
    else:
        ignored = []
        if summary.labels_not_applied:
            n = summary.labels_not_applied
            ignored.append(f"{count(n, 'label')} for items stored unlabeled not applied")
        if summary.labels_differ:
            n = summary.labels_differ
            ignored.append(
                f"{count(n, 'label')} {'differs' if n == 1 else 'differ'} from the stored"
                f" {'one' if n == 1 else 'ones'}, not applied"
            )
        told = (
            f" ({', '.join(ignored)}: `hitl labels set ID LABEL` labels a stored item)"
            if ignored
            else ""
        )
        click.echo(
            f"{path.name}: read {count(summary.read, 'row')}, imported {summary.imported:,} "
            f"({summary.labeled:,} with labels), {count(summary.duplicates, 'duplicate')}"
            f"{told}, {summary.rejected:,} rejected{_deleted_before(summary.deleted_before)}"
        )
        if summary.gold_left_out:  # an export's gold items, now plain labeled ones
            n = summary.gold_left_out
            if (fmt or path.suffix.lstrip(".").lower()) == "jsonl":  # the gold rows alone
                keep = (
                    f'`jq -c \'select((.gold // "") != "")\' {named} | hitl import --gold -'
                    " --format jsonl --label-column gold` keeps them gold"
                )
            else:
                keep = (
                    f"`hitl import --gold {named} --label-column gold` keeps them gold (and"
                    " rejects the rows without one, a line each)"
                )
            click.echo(
                f"{path.name}: {count(n, 'row')} {'carries' if n == 1 else 'carry'} a gold label"
                f" (column gold), which a plain import leaves out: those items train like any"
                f" other; {keep}",
                err=True,
            )
    if summary.redacted:
        kinds = ",".join(state.settings.redact)
        click.echo(
            f"{path.name}: personal data replaced in {count(summary.redacted, 'item')}"
            f" (HITL_REDACT={kinds}) before they were stored"
        )
    if summary.read and summary.rejected == summary.read:  # a script must not take it as done
        if made:  # the database this import made holds nothing: a typo'd --db leaves no file
            from bot.store.restore import remove_unused

            remove_unused(db, made)  # unless another process took it meanwhile
        raise click.ClickException(
            f"every row of {path.name} was rejected: nothing was imported (see the lines above)"
            if not quiet
            else f"every row of {path.name} was rejected: nothing was imported (run it without"
            " --quiet to see why)"
        )


def _deleted_before(n: int) -> str:
    """The import line's note of rows skipped because `hitl delete` deleted their ids."""
    if not n:
        return ""
    return f", {count(n, 'row')} skipped (deleted before with `hitl delete`)"


def _import_kept(store: Store, before: int) -> str:
    """What an import stopped by an interrupt kept, from the run it recorded as failed (its
    batches are committed one by one; the one under way when it stopped is not)."""
    again = "run the same import again for the rest: rows already stored are skipped"
    with contextlib.suppress(Exception):
        run = store.last_run("import")
        if run is not None and run["id"] > before and run["status"] == "failed":
            done = run["detail"]
            n = int(done.get("imported", 0)) + int(done.get("marked_gold", 0))
            labeled = int(done.get("labeled", 0))
            with_labels = f", {labeled:,} with labels" if labeled else ""
            return f": {count(n, 'row')} imported before it (committed{with_labels}); {again}"
    return f": the rows committed before it are kept; {again}"


def standard_input(fmt: str | None) -> InputStream:
    """Standard input for `hitl import -`, read as it arrives (``bot.ingest.stream``): nothing
    is copied to a temporary file, so its size does not matter, and a slow writer's rows are
    stored as they come."""
    if fmt is None:
        raise HitlError(f"reading standard input (-) needs --format ({', '.join(FORMATS)})")
    if sys.stdin is None or sys.stdin.isatty():
        raise HitlError("- reads standard input, but nothing is piped in: hitl import - < FILE")
    return InputStream(sys.stdin.buffer)


@cli.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
@click.option(
    "--answers", is_flag=True, help="Export every raw answer instead of the resolved labels."
)
@click.option(
    "--bom",
    is_flag=True,
    help="With --format csv: start the file with a UTF-8 byte-order mark, so Excel opens it "
    'as UTF-8, as it does its own "CSV UTF-8" (without it, Excel on Windows garbles every '
    "non-ASCII character). Off by default: Python's csv module (encoding utf-8) reads the mark "
    "as part of the first column's name. `hitl import` accepts it.",
)
@click.pass_obj
def export_command(state: State, fmt: str, output: Path | None, answers: bool, bom: bool) -> None:
    """Export resolved labels (or, with --answers, every raw answer).

    Labels have the fields id, text, label, votes, agreement, annotators,
    resolved_at, meta, answers, label_set (which label set they follow: its
    version and a hash of its labels) and gold (a gold item's gold label, which its
    answers are scored against; else empty); `hitl import` reads an export back.

    In CSV, a cell that starts with = + - @, a tab or a return is written after a '
    so that a spreadsheet shows it as text rather than running it as a formula (a
    plain number such as -1 or +44 is written as it is); `hitl import` takes the '
    off again in a CSV hitl exported. For programs (pandas, datasets), JSONL carries every
    value as it is.

    \b
    Examples:
      hitl export > labels.jsonl
      hitl export --format csv --output labels.csv
      hitl export --format csv --bom --output labels-for-excel.csv
      hitl export --answers --format csv
    """
    if bom and fmt != "csv":
        raise click.UsageError(
            "--bom is for --format csv (Excel); a JSON reader would take it as part of the"
            " first line"
        )
    with friendly_errors(), state.open_existing_store() as store:
        if answers:
            records = store.iter_answers()
        else:  # which label set the labels follow: its version and a hash of its labels
            version = store.label_set_version(current_labels(state.settings, store))
            records = ({**r, "label_set": version} for r in store.iter_export())
        columns = ANSWER_FIELDS if answers else EXPORT_FIELDS
        records = ({name: r[name] for name in columns} for r in records)  # in this order
        if bom:
            fmt = "csv+bom"
        # a bar on stderr when it is a terminal and the rows go to a file (seconds for
        # 100,000s of labels), not to a pipe: its reader (| head, | less) may write on the
        # same terminal. Its total counts retired labels too, which are left out.
        total = store.count_answers() if answers else store.count_labels()
        what = count(total, "answer" if answers else "label")
        quiet = output is None and not _a_file(sys.stdout)
        with Reading(f"Exporting {what}", quiet=quiet) as bar:
            records = _moving(records, bar, total)
            if output is None:
                try:
                    n = _write_stdout(records, columns, fmt)
                except KeyboardInterrupt:
                    raise Stopped(
                        "; nothing was changed (the export on standard output stops short)"
                    ) from None
            else:
                before = _identity(output)
                in_place = _written_in_place(output)
                try:
                    n = _write_file(output, records, columns, fmt, db=state.settings.db)
                except KeyboardInterrupt:
                    raise Stopped(_export_kept(output, before, in_place)) from None
    if output is not None:
        click.echo(f"wrote {n:,} {'answers' if answers else 'labels'} to {output}", err=True)


def _a_file(stream: IO[str]) -> bool:
    """Whether ``stream`` is a regular file (`hitl export > labels.jsonl`)."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # no descriptor (click's test runner)
        return False


def _moving(
    records: Iterator[dict[str, Any]], bar: Reading, total: int
) -> Iterator[dict[str, Any]]:
    """``records`` as they are, moving ``bar`` every 1,000 of ``total``."""
    done = 0
    for done, record in enumerate(records, 1):  # noqa: B007 - the count is read after
        if done % 1000 == 0:
            bar.to(done, total)
        yield record
    bar.to(max(done, total), max(done, total))


def _identity(path: Path) -> tuple[int, int] | None:
    """The file at ``path`` (device, inode), or None for none: whether it was replaced."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _export_kept(output: Path, before: tuple[int, int] | None, in_place: bool) -> str:
    """What an export to ``output`` stopped by an interrupt left there."""
    if in_place:
        return f": the export written to {output} stops short"
    if _identity(output) != before:  # stopped just after the rename
        return f": {output} was written in full before it"
    if before is None:
        return f": {output} was not written (no file was made)"
    return f": {output} was not written; the file there is as it was"


def _write_stdout(records: Iterator[dict[str, Any]], columns: tuple[str, ...], fmt: str) -> int:
    """The export on standard output, flushed here: a full disk is this command's one-line error,
    not a traceback, nor a second one when Python flushes at exit (the rest of the output goes
    to os.devnull, as the signal module's docs advise for a closed pipe).

    On a standard output that is not UTF-8 (a Latin-1 terminal, PYTHONIOENCODING=ascii) the
    export stays valid data: JSONL is written in ASCII (``\\u00e9``: the same JSON, read back
    as it was); a CSV has no escape, so a row the encoding cannot hold stops it with one line
    saying what to do (``_Encodable``) rather than writing the row changed."""
    encoding = cli_streams.stdout_encoding()
    handle: IO[str] = sys.stdout
    if encoding != "utf-8" and fmt != "jsonl":  # JSONL: ASCII, with \u escapes (below)
        if fmt == "csv+bom":
            raise click.ClickException(_not_encodable(encoding, "--bom's UTF-8 mark"))
        handle = _Encodable(sys.stdout, encoding)
    try:
        n = _write_records(handle, records, columns, fmt, ascii_only=encoding != "utf-8")
        sys.stdout.flush()
    except BrokenPipeError:
        raise  # the reader went away (| head): `hitl` exits 141 quietly (HitlGroup.invoke)
    except OSError as exc:
        with contextlib.suppress(OSError, ValueError):  # ValueError: no descriptor (tests)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise click.ClickException(os_problem(exc, "cannot write to standard output")) from exc
    return n


def _not_encodable(encoding: str, what: str) -> str:
    return (
        f"cannot write the CSV export to standard output: its encoding ({encoding}) cannot hold"
        f" {what}: write it to a file with -o FILE (always UTF-8), or run hitl in a UTF-8"
        " locale (LC_ALL=C.UTF-8, or PYTHONIOENCODING=utf-8)"
    )


class _Encodable:
    """``handle`` for ``_write_records``' CSV rows (one row a call) on a standard output in
    ``encoding``: a row that the encoding cannot hold stops the export in one line
    (``_not_encodable``), where the stream would write it changed."""

    def __init__(self, handle: IO[str], encoding: str) -> None:
        self._handle = handle
        self._encoding = encoding
        self._rows = -1  # the header is the first

    def write(self, row: str) -> int:
        self._rows += 1
        try:
            row.encode(self._encoding)
        except UnicodeEncodeError as exc:
            what = repr(exc.object[exc.start : exc.end][:10])
            where = f"row {self._rows:,}" if self._rows else "the header"
            raise click.ClickException(
                _not_encodable(self._encoding, f"{what} ({where})")
            ) from None
        return self._handle.write(row)


def _write_file(
    output: Path,
    records: Iterator[dict[str, Any]],
    columns: tuple[str, ...],
    fmt: str,
    *,
    db: Path | None = None,
) -> int:
    """The export written to ``output`` (``write_output``); an OS error is one line naming it."""
    return write_output(
        output,
        lambda handle: _write_records(handle, records, columns, fmt),
        db=db,
        failed=f"cannot write {output}",
        what="the export",
        example="labels.jsonl",
    )


def write_output(
    output: Path,
    write: Callable[[IO[Any]], int],
    *,
    db: Path | None,
    failed: str,
    what: str,
    example: str,
    binary: bool = False,
    private: bool = True,
) -> int:
    """``write(handle)`` into the file ``output`` a command was given (`hitl export -o`,
    `hitl accuracy --chart`), returning what it returns; ``binary`` for bytes, else UTF-8 text;
    ``private``: a new file is its owner's alone (an export's texts and user ids), else it is
    made as any file is (a chart: what the umask leaves of 0666).
    Every refusal and OS error is one line starting with ``failed`` ("cannot write FILE");
    ``what`` names the writing in it ("the export") and ``example`` another file to name.

    A regular file, or a new path, is replaced atomically: a reader never sees half a file
    and a failed write leaves the old file as it was. Through a symlink, its target is replaced
    and the link kept, unless another user planted the link in a shared folder
    (``_refuse_planted_link``). Anything else (a FIFO, a device, /dev/stdout) is written as it
    is: replacing it would swap the pipe or device node for a regular file that no one reads.
    The database ``db`` and the files beside it are refused (``_refuse_the_database``), also
    through a symlink or a hard link."""
    try:
        refuse_output(output, db=db, failed=failed, what=what, example=example)
        if _written_in_place(output):  # appended: "w" would truncate the file behind >>
            if binary:
                with open(output, "ab") as handle:
                    return write(handle)
            with open(output, "a", encoding="utf-8", newline="") as handle:
                return write(handle)
        return _replace_atomically(
            Path(os.path.realpath(output)), write, binary=binary, private=private
        )
    except OSError as exc:
        raise click.ClickException(os_problem(exc, failed)) from exc


def refuse_output(output: Path, *, db: Path | None, failed: str, what: str, example: str) -> None:
    """``write_output``'s refusals of ``output``, before anything is written: the database or a
    file of it, a planted link, a folder that does not exist (a mistyped path: said, not
    created). A command that prints before it writes (`hitl accuracy --chart`) calls it first,
    so that a refused file is said before the rest."""
    if db is not None:
        _refuse_the_database(output, Path(db), failed=failed, what=what, example=example)
    _refuse_planted_link(output, failed=failed, what=what)
    if _written_in_place(output):
        return
    target = Path(os.path.realpath(output))
    if not target.parent.exists():
        folder = output.parent if output.parent.resolve() == target.parent else target.parent
        raise click.ClickException(
            f"{failed}: the folder {folder} does not exist; create it or fix the path"
        )


def _refuse_the_database(output: Path, db: Path, *, failed: str, what: str, example: str) -> None:
    """Refuse to write ``output`` (``write_output``: an export, a chart) when it is the database
    the command reads (``-o hitl.db``, a slip that shell completion offers) or a file of it: its
    -wal, -shm or -journal, the server lock, the demo's marker, a restore's copy or kept
    database, anything in its models folder. The write would replace the database (or its log):
    every item, answer and model record gone. One line starting with ``failed``, naming
    ``what`` would replace it and ``example``. Compared by
    the file the path ends at (symlinks, relative paths, ``..``) and, for files that exist, by
    identity (a hard link)."""
    out = os.path.realpath(output)
    for base in dict.fromkeys((os.path.abspath(db), os.path.realpath(db))):
        folder, name = os.path.split(base)
        models = os.path.realpath(base + ".models")
        beside = os.path.dirname(out) == os.path.realpath(folder) and os.path.basename(
            out
        ).startswith(name + ".before-restore")
        found = beside or os.path.commonpath([out, models]) == models
        for suffix in ("", "-wal", "-shm", "-journal", ".server.lock", ".demo", ".restoring"):
            if found:
                break
            found = os.path.realpath(base + suffix) == out
            if not found and os.path.exists(output):
                with contextlib.suppress(OSError):
                    found = os.path.samefile(base + suffix, output)
            if found and not suffix:
                raise click.ClickException(
                    f"{failed}: it is the database {db}, which {what} would replace: name"
                    f" another file ({example})"
                )
        if found:
            raise click.ClickException(
                f"{failed}: it is a file of the database {db} (beside it or in"
                f" {os.path.basename(base)}.models), which {what} would replace: name"
                f" another file ({example})"
            )


def _refuse_planted_link(output: Path, *, failed: str, what: str) -> None:
    """Refuse to follow a symlink that the kernel's ``fs.protected_symlinks`` would not let
    ``open()`` follow: one in a sticky, world-writable folder (/tmp) that neither the caller nor
    the folder's owner owns. Another user may have put it there to point the export (``what``)
    at a file of the caller's. ``realpath`` only reads links, so without this the rule never
    applied. The refusal's line starts with ``failed``."""
    folder = os.getcwd() if not os.path.isabs(output) else os.sep  # getcwd has no links
    names = list(reversed(os.fspath(output).split(os.sep)))
    links = 0
    while names and links <= 40:  # the kernel follows at most 40 links; more is ELOOP on writing
        name = names.pop()
        if name in ("", "."):
            continue
        if name == "..":
            folder = os.path.dirname(folder)
            continue
        path = os.path.join(folder, name)
        try:
            link = os.lstat(path)
        except OSError:  # a new file, or a path writing reports
            return
        if not stat.S_ISLNK(link.st_mode):
            folder = path
            continue
        shared = os.stat(folder)
        sticky_and_open = shared.st_mode & (stat.S_ISVTX | stat.S_IWOTH)
        if sticky_and_open == stat.S_ISVTX | stat.S_IWOTH and link.st_uid not in (
            os.geteuid(),
            shared.st_uid,
        ):
            raise click.ClickException(
                f"{failed}: {path} is a symbolic link in the shared folder"
                f" {folder} (sticky, world-writable) that another user (uid {link.st_uid}) owns,"
                f" so it may point {what} at any file of yours; the system refuses to follow"
                " such links (fs.protected_symlinks): delete the link or write to another path"
            )
        links += 1
        target = os.readlink(path)
        if os.path.isabs(target):
            folder = os.sep
        names.extend(reversed(target.split(os.sep)))


def _written_in_place(output: Path) -> bool:
    """Whether ``output`` is no regular file to replace: an existing FIFO, device or socket, or
    the name of a file descriptor (/dev/stdout, /dev/fd/1, /proc/self/fd/1, or a link to one),
    whose file the caller opened already (``>> all.jsonl`` appends, so it must not be replaced)."""
    descriptors = ("/proc/", "/dev/fd/", "/dev/stdout", "/dev/stderr")
    name = os.path.abspath(output)
    for _ in range(40):  # the kernel follows at most 40 links (ELOOP)
        if name.startswith(descriptors):
            return True
        if not os.path.islink(name):
            break
        name = os.path.normpath(os.path.join(os.path.dirname(name), os.readlink(name)))
    try:
        return not stat.S_ISREG(os.stat(output).st_mode)
    except OSError:  # a new file (or a link to one): created; any other error shows on writing
        return False


def _replace_atomically(
    target: Path, write: Callable[[IO[Any]], int], *, binary: bool, private: bool = True
) -> int:
    """Write a new file beside ``target`` (``write(handle)``, a binary handle or a UTF-8 text
    one) and rename it over ``target``. It gets the old file's mode and owner, or for a new
    file 0600 (what the umask leaves of it; 0666 when not ``private``): an export holds the
    texts and user ids that the database and the model files keep readable by their owner
    only. A file in the folder's place: mkstemp's "Not a directory" says so."""
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        handle: IO[Any]
        with open(fd, "wb") if binary else open(fd, "w", encoding="utf-8", newline="") as handle:
            n = write(handle)
            handle.flush()
            _give_mode(handle.fileno(), old, 0o600 if private else 0o666)
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return n


def _give_mode(fd: int, old: os.stat_result | None, new: int = 0o600) -> None:
    """The replaced file's mode and (where allowed) owner; else what the umask leaves of
    ``new`` (0600, as for the database: readable by its owner only)."""
    if old is None:
        umask = os.umask(0o077)  # reading the umask means setting it; put back at once
        os.umask(umask)
        os.fchmod(fd, new & ~umask)
        return
    os.fchmod(fd, stat.S_IMODE(old.st_mode))
    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(PermissionError):
            os.fchown(fd, old.st_uid, old.st_gid)


def _write_records(
    handle: IO[str] | _Encodable,
    records: Iterator[dict[str, Any]],
    columns: tuple[str, ...],
    fmt: str,
    *,
    ascii_only: bool = False,
) -> int:
    """The records as JSONL (in ASCII with ``ascii_only``), or as CSV (``fmt`` "csv", or
    "csv+bom" after a UTF-8 byte-order
    mark for Excel) with a header line, lines ending in ``\n``: a field that holds a ``\r`` or
    a ``\n`` is quoted (csv's own writer, with ``\n`` line ends, would leave a lone ``\r``
    bare, and every reader would split the row there), and each cell is ``_csv_cell``'s."""
    n = 0
    if fmt == "jsonl":
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=ascii_only) + "\n")
            n += 1
        return n
    if fmt == "csv+bom":
        handle.write("\ufeff")
    writer = csv.writer(_LineEnds(handle), lineterminator="\r\n")  # quotes \r and \n
    writer.writerow(columns)
    for record in records:
        writer.writerow([_csv_cell(record[c]) for c in columns])
        n += 1
    return n


class _LineEnds:
    """A file for ``csv.writer(..., lineterminator="\r\n")`` that writes each row ending in
    ``\n`` instead: csv quotes a field holding any character of the line terminator, so
    "\r\n" quotes both a lone \r and a \n; the export's lines kept the \n they always had
    (diffs of exports, shell tools). The writer writes one whole row per call."""

    def __init__(self, handle: IO[str] | _Encodable) -> None:
        self._handle = handle

    def write(self, row: str) -> int:
        return self._handle.write(row[:-2] + "\n")


# A cell that is a number and nothing else: a spreadsheet reads it as that number, never as a
# formula, and CSV readers (pandas, datasets) as it was written (a label -1, an id -3).
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _csv_cell(value: Any) -> Any:
    """``value`` for a CSV cell: a list or dict as JSON; text that a spreadsheet would run as a
    formula after a ' (``formula_guarded``: text starting with = + - @, a tab or a return, or
    's and then one of those), except a plain number (``-1``, ``+44``, ``-3.5``), written as
    it is. `hitl import` reads each back as it was: it takes one ' off a cell that is 's and
    then one of those characters, and a plain number has none."""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and _PLAIN_NUMBER.fullmatch(value):
        return value
    return formula_guarded(value)


@cli.command("config")
@click.pass_obj
def config_command(state: State) -> None:
    """Print the effective settings (secrets masked) and where each comes from: --db (hitl's
    option, for HITL_DB), env (an environment variable), the hitl.toml file, or the default. A
    bad value is shown as given, and after the table every bad value is an error line naming
    the variable and what is allowed (exit status 1), as every command refuses it. A value
    that another one stands for is shown as the one in force: the report channel
    (HITL_CHANNEL's when HITL_REPORT_CHANNEL is unset), the label set (the database's: the set
    `hitl labels` changed, which wins over HITL_LABELS, or without either the imported
    labels) and the pipeline (the model library's default).

    \b
    Examples:
      hitl config
      HITL_VOTES=3 hitl config | grep HITL_VOTES
      HITL_CONFIG=team.toml hitl config
    """
    import unicodedata

    from bot.config import read_settings
    from bot.errors import ConfigError

    with friendly_errors():
        try:
            settings, problems, refused = state.settings, [], {}
        except ConfigError:  # the values, then every problem with them (exit status 1)
            reading = read_settings(os.environ, config_path(os.environ))
            settings, problems, refused = reading.settings, reading.problems, reading.refused
            if state.db is not None:
                sources = {**settings.sources, "db": "--db"}
                settings = settings.with_changes(db=state.db, sources=sources)

    def columns(text: str) -> int:  # as a terminal draws it: 账 takes 2, a combining accent 0
        return sum(
            0
            if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf")
            else 2
            if unicodedata.east_asian_width(c) in "WF"
            else 1
            for c in text
        )

    def pad(text: str, width: int) -> str:
        return text + " " * (width - columns(text))

    in_force = _in_force(settings, refused)
    rows = [  # a refused value as it was given, where it came from; else the value in force
        (env, *refused[env], help_)
        if env in refused
        else (env, *in_force[env], help_)
        if env in in_force
        else (env, value, source, help_)
        for env, value, source, help_ in describe(settings)
    ]
    width = max(columns(r[0]) for r in rows)
    value_width = min(max(columns(r[1]) for r in rows), 40)
    for env, value, source, _help in rows:
        click.echo(f"{pad(env, width)}  {pad(value, value_width)}  ({source})")
    if problems:
        with friendly_errors():
            raise ConfigError(problems)


def _in_force(settings: Settings, refused: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """`hitl config`'s (value, source) of the settings whose value in force is not their own:
    HITL_REPORT_CHANNEL unset is HITL_CHANNEL's; HITL_LABELS is the database's stored set once
    `hitl labels` changed it (over HITL_LABELS), else HITL_LABELS, else the imported labels
    (``current_labels``); HITL_PIPELINE unset is the model library's default. A refused value
    is left as given."""
    shown: dict[str, tuple[str, str]] = {}
    if "HITL_REPORT_CHANNEL" not in refused and not settings.report_channel and settings.channel:
        shown["HITL_REPORT_CHANNEL"] = (settings.channel, "default: HITL_CHANNEL")
    if "HITL_PIPELINE" not in refused and not settings.pipeline:
        from model.names import DEFAULT_PIPELINE

        shown["HITL_PIPELINE"] = (DEFAULT_PIPELINE, "default")
    found = None if "HITL_LABELS" in refused else Store.label_sets_read_only(Path(settings.db))
    if found is not None:
        stored, imported = found
        if stored is not None:
            source = "stored in the database, changed with hitl labels"
            if settings.labels:
                given = settings.sources.get("labels", "default")
                source += f"; the {given} value is not in force"
            shown["HITL_LABELS"] = (",".join(stored) or "-", source)
        elif not settings.labels and imported:
            shown["HITL_LABELS"] = (",".join(imported), "the imported labels, in the database")
    return shown


class _PortRange(click.IntRange):
    """A port written in plain digits, as the settings take HITL_PORT (``bot.config``): click's
    ``int`` also takes ``3_000`` and other scripts' digits."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and ("_" in value or not value.isascii()):
            self.fail(f"{value!r} is not a whole number; write it in digits, e.g. 3000", param, ctx)
        return super().convert(value, param, ctx)


@cli.command("serve")
@click.option("--host", help="Address to listen on (default: $HITL_HOST or 127.0.0.1).")
@click.option(
    "--port",
    type=_PortRange(1, 65535),
    help="Port to listen on (default: $HITL_PORT or 3000).",
)
@click.pass_obj
def serve_command(state: State, host: str | None, port: int | None) -> None:
    """Run the Slack bot: POST /slack/events for Slack (or Socket Mode), plus the dispatcher.

    Needs SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode),
    HITL_CHANNEL and a label set (HITL_LABELS, or labels imported with `hitl import`).
    Checks the token and the channels with Slack before it listens. Stops cleanly on Ctrl-C
    (exit status 130), SIGTERM or SIGHUP (a closed terminal; 0), also while Slack cannot be
    reached.

    \b
    Examples:
      hitl serve
      HITL_PORT=8080 hitl -v serve
    """
    import asyncio

    from bot.config import read_settings
    from bot.errors import ConfigError
    from bot.learning.children import fork_server_failure, has_champion, start_fork_server

    with friendly_errors():
        try:
            settings, problems, refused = state.settings, [], {}
        except ConfigError:  # said below with what else would stop the start
            reading = read_settings(os.environ, config_path(os.environ))
            settings, problems, refused = reading.settings, reading.problems, reading.refused
            if state.db is not None:
                settings = settings.with_changes(db=state.db)
        if host:
            settings = settings.with_changes(host=host)
        if port:
            settings = settings.with_changes(port=port)
        if settings.models_dir.is_dir() and has_champion(settings.models_dir):  # (makes none)
            start_fork_server()  # its imports run beside the ones below (bot.learning.children)
            # The champion's load imports skops.io, which looks for each of scipy.special's
            # functions in every module imported before it, in import order
            # (model/modelfile.py: _skops): imported ahead of the server's ~650 modules, each
            # look ends that much sooner (0.25 s less CPU before the server listens, median
            # of 8). The load imports it anyway.
            import scipy.special  # noqa: F401
        from bot.eventloop import FastLaneEventLoop
        from bot.server import serve, serve_settings_problems, start_problems

        # Every problem known before Slack is asked, in one run: the bad values, the missing
        # pieces, the label set (read from the database only for a start refused anyway).
        if problems or serve_settings_problems(settings, refused):
            problems += start_problems(settings, refused)
            raise ConfigError(list(dict.fromkeys(problems)))

        try:
            # The fast lane: Slack's requests run ahead of the producers' (bot/eventloop.py).
            with asyncio.Runner(loop_factory=FastLaneEventLoop) as runner:
                stopped_by = runner.run(
                    serve(settings, announce=lambda line: click.echo(line, err=True))
                )
        except (EOFError, ConnectionError) as exc:  # else click says only "Aborted!"
            why = fork_server_failure(exc)
            if why is None:
                raise
            raise click.ClickException(why) from None
    if stopped_by == signal.SIGINT:  # Ctrl-C: 130, as shells expect; SIGTERM, SIGHUP: 0
        raise click.exceptions.Exit(128 + signal.SIGINT)


@cli.command("retrain")
@click.option(
    "--force",
    is_flag=True,
    help="Train even when no label is new since the last run, and promote the new model even"
    " if it is not better.",
)
@click.pass_obj
def retrain_command(state: State, force: bool) -> None:
    """Retrain the model on every resolved label now, and promote it if it is not worse.

    Only one retrain runs at a time, here or in `hitl serve`. A running server picks up a
    promoted model on its own. While `hitl serve` refits its working model, this waits for
    that first (one line says so; at most until the refit's expected end).

    \b
    Examples:
      hitl retrain
      hitl retrain --force  # train with nothing new; promote even if it is worse
    """
    import asyncio

    # The new model's save imports skops.io, which looks for each of scipy.special's
    # functions in every module imported before it, in import order (model/modelfile.py:
    # _skops): imported before bot.learning's modules (scikit-learn's, scipy's), each look
    # ends sooner, as in `hitl serve` (serve_command).
    import scipy.special  # noqa: F401

    from bot.learning import reports, retrain

    with friendly_errors(), state.open_existing_store() as store:
        settings = state.settings
        gone = retrain.gone_under_a_server(settings)  # before the registry: it makes the folder
        if gone is not None:  # as the server's own /hitl retrain refuses (retrain.begin)
            raise click.ClickException(gone)
        busy = retrain.busy_now(store, "cli")  # before the champion's load (seconds)
        if busy is not None:  # one line, on stderr, exit 1
            raise click.ClickException(
                reports.terminal(lambda: reports.retrain_text(busy, timezone=settings.timezone))
            )
        registry = retrain.registry_for(settings)
        champion = retrain.load_champion(registry)
        if champion is None:  # none in the folder, one in the database: as `hitl serve` does
            named = store.champion_version()
            champion = retrain.recover_champion(registry, named) or retrain.load_champion(
                registry  # another process (a server starting) made it champion just now
            )
        plan = retrain.begin(
            store,
            settings,
            registry,
            triggered_by="cli",
            force=force,
            # hitl serve's refresh of the working model fitting now: wait for it (one line)
            wait=lambda held: retrain.wait_for_refresh(held, lambda say: click.echo(say, err=True)),
        )
        if isinstance(plan, retrain.Outcome):
            if plan.status == "busy":  # one line, on stderr, exit 1
                raise click.ClickException(
                    reports.terminal(lambda: reports.retrain_text(plan, timezone=settings.timezone))
                )
            click.echo(
                reports.terminal(lambda: reports.retrain_text(plan, timezone=settings.timezone))
            )
            return
        label = f"Training on {count(len(plan.labels), 'label')}"
        with contextlib.ExitStack() as bars:
            bar = bars.enter_context(click.progressbar(length=1, **fitted(label), file=sys.stderr))

            def progress(done: int, total: int) -> None:
                bar.length = total
                bar.update(done - bar.pos)

            scoring: list = []  # the second bar, once the promoted model scores the queue

            def rescore_progress(done: int, total: int) -> None:
                if not scoring:
                    bars.close()  # the training bar ends here
                    scoring.append(
                        bars.enter_context(
                            click.progressbar(
                                length=max(total, 1),
                                **fitted(
                                    f"Scoring {count(total, 'waiting item')} with the new model"
                                ),
                                file=sys.stderr,
                            )
                        )
                    )
                scoring[0].update(done - scoring[0].pos)

            try:
                outcome = asyncio.run(
                    ends_when_out_of_memory(
                        retrain.retrain(
                            store,
                            settings,
                            registry,
                            champion=champion,
                            triggered_by="cli",
                            force=force,
                            progress=progress,
                            plan=plan,
                            rescore_progress=rescore_progress,
                        )
                    )
                )
            except retrain.ScoringStopped as exc:  # promoted and recorded; the queue is behind
                bars.close()
                with reports.for_terminal():
                    said = reports.retrain_text(exc.outcome, timezone=settings.timezone)
                click.echo(reports.plain(said))
                why = _problem(exc.__cause__, settings.db)
                raise click.ClickException(
                    f"{exc} ({why}); items not scored yet keep the previous model's scores "
                    "until `hitl serve` scores them (it does at start)"
                ) from exc
            except KeyboardInterrupt:
                bars.close()
                if scoring:  # promoted and recorded; only the queue's scores are behind
                    raise Stopped(
                        " while scoring the waiting items: the new model is the champion "
                        "(`hitl models`); items not scored yet keep the previous model's scores "
                        "until `hitl serve` scores them (it does at start)"
                    ) from None
                raise Stopped(_retrain_kept(store, plan.run_id)) from None
            except OSError as exc:  # the model's files (a full disk, a file-size limit)
                bars.close()
                raise click.ClickException(
                    retrain.failure_reason(exc, None, registry, champion)  # as hitl serve says it
                ) from exc
    click.echo(reports.terminal(lambda: reports.retrain_text(outcome, timezone=settings.timezone)))
    if outcome.status == "failed" and not outcome.n_missing:
        sys.exit(1)  # it printed why; a cron job's `hitl retrain || alert` hears of it


async def ends_when_out_of_memory(work: Coroutine[Any, Any, T]) -> T:
    """``work`` with every signal waking the loop (``woken_by_signals``), ending the process
    at once when it runs out of memory (``out_of_memory``), with ``main``'s one line: after
    it, `asyncio.run` shuts its executor down from a thread it starts, and in a process with
    no memory left that thread can die as it starts, leaving `Thread.start` waiting for it for
    ever (a retrain under 64 MB of room that could not import scikit-learn hung so, in the
    test suite). What was committed is kept; the run left "running" is ended by the next
    retrain, as after a kill."""
    try:
        return await woken_by_signals(work)
    except (MemoryError, RuntimeError, ImportError, SystemError) as exc:
        if not out_of_memory(exc):
            raise
        _say_out_of_memory(exc)
        os._exit(1)


async def woken_by_signals(work: Coroutine[Any, Any, T]) -> T:
    """``work``, with every signal waking the event loop. `asyncio.run` takes a Ctrl-C with a
    Python handler, which runs only once the loop's thread runs Python again; a SIGINT the
    kernel hands to another thread (the fit's, the end's: any thread that does not block it)
    wakes nothing, and the loop, asleep until that thread's work ends, saw the Ctrl-C only
    then: minutes into a fit that README says Ctrl-C stops at once. A handler the loop holds
    for any signal (SIGWINCH here, a terminal's resize: ignored by default, and by this one)
    makes the loop's self-pipe the process's wakeup fd, to which every signal writes."""
    import asyncio

    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGWINCH, lambda: None)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):  # no SIGWINCH here
        return await work
    try:
        return await work
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)


def _retrain_kept(store: Store, run_id: int) -> str:
    """What a retrain stopped by an interrupt kept, from its run's record: one stopped while
    its model files were written waited for them and recorded the model (promoted or not), or
    its model could not be recorded (another process held the database's write lock) and is
    not kept; said from the outcome this process holds (``retrain.UNRECORDED``) when the
    database could not record the run's end either (it is still `running` there)."""
    from bot.learning import retrain

    scores = (
        "the waiting items were not scored with it: they keep their scores until `hitl serve`"
        " scores them (it does at start)"
    )
    with contextlib.suppress(Exception):
        run = next((r for r in store.runs("retrain", limit=20) if r["id"] == run_id), None)
        detail = run["detail"] if run is not None else {}
        if run is not None and run["status"] == "running":
            detail = retrain.UNRECORDED.get((store.path, run_id)) or detail
        version = detail.get("version")
        reason = str(detail.get("reason") or "")
        if detail.get("status") == "failed" and re.match(r"v\d+ could not be recorded ", reason):
            return f" after its model was written: {reason}"  # not kept (``_not_kept``)
        if version is not None and detail.get("status") == "promoted":
            return (
                f" after its model was written: v{version} is stored and is the champion"
                f" (`hitl models`); {scores}"
            )
        if version is not None and detail.get("status") == "rejected":
            return (
                f" after its model was written: v{version} is stored but is not the champion"
                " (it did not beat it: `hitl models`); the champion is as it was"
            )
        if run is not None and run["status"] != "running":
            return ": before its model was written; no model was stored, the champion is as it was"
    return ""


def _problem(exc: BaseException | None, db: Path) -> str:
    """An error as the one line `friendly_errors` would print for it (without "Error: ")."""
    from bot.store import DatabaseError, database_problem

    if isinstance(exc, HitlError):
        return str(exc)
    if isinstance(exc, DatabaseError):
        return str(database_problem(db, exc))
    if isinstance(exc, OSError):
        return os_problem(exc)
    return f"{type(exc).__name__}: {exc}"


@cli.command("models")
@click.pass_obj
def models_command(state: State) -> None:
    """List the model versions: status, size of training data, scores and why (every reason,
    oldest first: a rejection, then the rollback that overrode it).

    Only the champion and HITL_KEEP_MODELS (default 5) other versions keep their model
    files (each a few MiB: about 4 MiB at 1,000 labels in 89 classes): the newest, then the
    earlier champions (what `hitl rollback` goes back to) before rejected candidates, newest
    first, so a run of rejected retrains never leaves only models that need --force. The
    others are listed with "(file deleted)" and cannot be rolled back to.

    \b
    Examples:
      hitl models
      hitl --db team.db models
    """
    from bot.learning import reports, retrain

    with friendly_errors(), state.open_existing_store() as store:
        known = {int(m["version"]): m for m in store.models()}
        # No models folder, no models: a command that reads creates no folder (nor fails to).
        models_dir = state.settings.models_dir
        registry = retrain.registry_for(state.settings) if models_dir.is_dir() else None
        versions, unreadable = registry.scan() if registry is not None else ([], {})
        newest_label = store.labels_watermark()["newest"]
        trained = reports.trained_labels(store, state.settings.labels)
    if not versions and not known and not unreadable:
        click.echo("No models yet: `hitl retrain` trains the first one.")
        return
    # each model file that would not load (missing, or not the sha256 its vN.json records)
    files = reports.file_problems(registry, versions) if registry is not None else {}
    rows = {
        v.version: _model_row(
            v.to_dict(),
            v.reasons(),
            v.pruned_at,
            f"(file {files[v.version]})" if v.version in files else "",
        )
        for v in versions
    }
    for version, why in unreadable.items():
        row = known.get(version) or {"version": version, "status": "?"}
        rows[version] = _model_row(row, [], "", f"(metadata v{version}.json unreadable: {why})")
    # The folder's champion is the one served (the database's, with no files, cannot be): one
    # champion is listed, the folder's (a folder restored from a backup older than the database)
    served = any(v.status == "champion" for v in versions)
    for version in sorted(set(known) - set(rows)):
        row, note = known[version], f"(files missing in {models_dir})"
        if served and row["status"] == "champion":
            row = {**row, "status": "retired"}
            note = f"(files missing in {models_dir}; the database's champion, not served)"
        rows[version] = _model_row(row, [], "", note)
    click.echo(
        f"{'version':<8} {'status':<10} {'created':<26} {'labels':>7} {'accuracy':>9} "
        f"{'macro-F1':>9}  reason"
    )
    for version in sorted(rows):
        click.echo(rows[version])
    if any(reports.scored_with_old_folds(v.metrics) for v in versions):
        click.echo(reports.OLD_FOLDS)
    if (gone := retrain.gone_under_a_server(state.settings)) is not None:
        # moved under a running server, which serves its model from memory and refuses a
        # retrain (as `hitl retrain` does) until the folder is back: no other advice holds
        click.echo(f"Warning: {gone}; `hitl serve` serves the model it loaded meanwhile", err=True)
        return
    for line in [
        *reports.unknown_models(known, versions, newest_label, models_dir, trained),
        *reports.lost_models(known, versions, unreadable, models_dir, files),
    ]:
        click.echo(f"Warning: {line}", err=True)


def _model_row(model: dict[str, Any], reasons: list[str], pruned_at: str, note: str = "") -> str:
    """One line of `hitl models`, from a version's metadata or the database's row of it."""
    from bot.learning.reports import scored_with_old_folds

    metrics = model.get("metrics") or {}
    acc, f1 = metrics.get("accuracy"), metrics.get("macro_f1")
    reason = " → ".join(reasons) if reasons else model.get("reason") or ""
    notes = [note] if note else []
    if pruned_at:
        notes.insert(0, "(file deleted)")
    return (
        f"v{model['version']:<7} {model['status']:<10} {model.get('created_at') or '':<26} "
        f"{model.get('n_train') or 0:>7,} {acc * 100 if acc is not None else 0:>8.1f}% "
        f"{f1 or 0:>9.3f}{'†' if scored_with_old_folds(metrics) else ''}  "
        + " ".join([reason, *notes] if reason else notes)
    )


@cli.command("rollback")
@click.argument("version")
@click.option("--force", is_flag=True, help="Roll back even to a version the gate rejected.")
@click.pass_obj
def rollback_command(state: State, version: str, force: bool) -> None:
    """Make an earlier model VERSION the champion again (see `hitl models`).

    A version the gate rejected needs --force, and you are told its scores. Waits for no one:
    while a retrain or another rollback runs it says so and changes nothing. A running
    server notices the new champion within a second and serves it once its file is loaded.

    \b
    Examples:
      hitl rollback 3
      hitl rollback 4 --force   # v4 was rejected; make it the champion anyway
    """
    from bot.learning import reports, retrain, rollback
    from model import ModelError

    number = version.lstrip("v")
    if not number.isdigit():
        raise click.ClickException(f"{version!r} is not a version number; e.g. hitl rollback 3")
    with friendly_errors(), state.open_existing_store() as store:
        if not state.settings.models_dir.is_dir():  # no model to go back to; and making the
            # folder here would let the next `hitl retrain` promote an ungated first model
            folder = state.settings.models_dir.name
            raise click.ClickException(
                f"cannot roll back: the models folder {folder} (beside the database) is"
                " missing: was it deleted or moved? Put it back, then roll back again"
            )
        try:
            done = rollback.rollback(
                store, retrain.registry_for(state.settings), int(number), force=force
            )
        except (ModelError, retrain.BusyError) as exc:
            logger.info("rollback to v%s refused: %r", number, exc.__cause__ or exc)
            raise click.ClickException(f"cannot roll back: {reports.plain(str(exc))}") from exc
    if done.warning:
        click.echo(f"Warning: {done.warning}; it is the champion now because of --force.", err=True)
    click.echo(f"v{number} is the champion again.")


@cli.command("accuracy")
@click.option(
    "--chart",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also save a PNG chart: cross-validated accuracy and macro-F1 of the last 10 versions,"
    " by version and by number of labels, and (once audit posts are answered) the live audit"
    " accuracy with its 95% interval.",
)
@click.pass_obj
def accuracy_command(state: State, chart: Path | None) -> None:
    """How good the current model is: cross-validated scores, live accuracy on audit posts
    with a 95% interval, agreement on uncertain posts, weakest classes, the trend, when to
    stop labeling and what the next 500 labels should bring.

    \b
    Examples:
      hitl accuracy
      hitl accuracy --chart accuracy.png  # and the chart of its trend
    """
    from datetime import UTC, datetime

    from bot.learning import reports
    from model import ModelRegistry

    # the chart's file refused (the database, a missing folder) before the report is printed
    chart_words = {
        "failed": f"cannot save the chart to {chart}",
        "what": "the chart",
        "example": "accuracy.png",
    }
    if chart is not None:
        try:
            refuse_output(chart, db=state.settings.db, **chart_words)
        except OSError as exc:
            raise click.ClickException(os_problem(exc, chart_words["failed"])) from exc
    with friendly_errors(), state.open_existing_store() as store:
        known = {int(m["version"]): m for m in store.models()}
        # No models folder, no model: a command that reads creates no folder (`hitl models`).
        if state.settings.models_dir.is_dir():
            registry = ModelRegistry(state.settings.models_dir)
            # scanned first: damaged metadata is said once, below, not also as it is skipped
            versions, unreadable = registry.scan(told=True)
            report = reports.accuracy_report(store, registry, datetime.now(UTC))
        else:
            report, versions, unreadable = None, [], {}
    click.echo(reports.terminal(lambda: reports.accuracy_text(report)))
    for line in reports.lost_models(known, versions, unreadable, state.settings.models_dir):
        click.echo(f"Warning: {line}", err=True)
    if chart is None:
        return
    if report is None:
        click.echo(f"no chart saved to {chart}: there is no model to chart yet", err=True)
        return
    write_output(  # never over the database or a file beside it; atomically (as an export)
        chart,
        # drawn once the file is accepted: a refused one (the database, a missing folder) is
        # said at once, not after the chart's drawing (~0.4 s, matplotlib imported)
        lambda handle: handle.write(reports.chart_png(report)),
        db=state.settings.db,
        **chart_words,
        binary=True,
        private=False,  # figures, no text nor person: made as any file (a chart for the web)
    )
    click.echo(f"chart saved to {chart}", err=True)


@cli.command("stats")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar on stderr.")
@click.pass_obj
def stats_command(state: State, quiet: bool) -> None:
    """Answers today and this week by person (the 50 with most labels, then how many others
    answered), how many items wait, are posted or resolved, and with HITL_VOTES > 1 how far
    people agree (what `/hitl stats` shows in Slack). Each list of agreement or accuracy by
    person names everyone, worst first (`/hitl stats` names the first 20).

    On a terminal a bar on stderr says what it reads meanwhile (reading every answer takes
    a while in a large database); --quiet leaves it out.

    \b
    Examples:
      hitl stats
      HITL_DB=/srv/hitl/hitl.db hitl stats
    """
    from datetime import UTC, datetime

    from bot.learning import quality, reports
    from bot.store import ITEM_STATUSES

    with friendly_errors(), state.open_existing_store() as store:
        counts = store.count_items()  # flat: the counts kept with every change
        items = sum(counts.get(status, 0) for status in ITEM_STATUSES)
        label = f"Reading the stats of {count(items, 'item')}"
        with Reading(label, quiet=quiet, eta=False, says=len("every answer (agreement)")) as bar:
            bar.to(0, 2, "counts")
            sections = [reports.stats_text(store, state.settings, datetime.now(UTC))]
            bar.to(1, 2, "every answer (agreement)")
            measured = quality.measure(store, state.settings)
            bar.to(2, 2, "done")
        # everyone, worst first (no Slack size limit here; /hitl stats shows the first 20);
        # labels as they are (``reports.plain`` keeps them so)
        with reports.for_terminal():
            sections += quality.quality_sections(measured, gold=True, limit=None)
    click.echo(reports.plain("\n\n".join(sections)))


def _demo_token(value: str | None) -> str | None:
    """The demo's --api-token / $HITL_API_TOKEN, checked as `hitl serve` checks it (a re-test:
    the demo took a 1-character token that serve refuses)."""
    if not value:
        return value
    try:
        return api_token(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


class _EnvOption(click.Option):
    """An option of `hitl demo` that may come from its environment variable (``envvar``): a
    bad value from there is an error naming the variable (``Invalid value for HITL_PORT: …``),
    as `hitl serve` names it, not an option the user never typed."""

    def consume_value(self, ctx: click.Context, opts: Any) -> Any:
        value, source = super().consume_value(ctx, opts)
        ctx.meta[f"hitl.from_env.{self.name}"] = source == click.core.ParameterSource.ENVIRONMENT
        return value, source

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except click.BadParameter as exc:
            if ctx.meta.get(f"hitl.from_env.{self.name}") and isinstance(self.envvar, str):
                exc.param_hint = self.envvar
            raise


@cli.command("demo")
@click.option(
    "--port",
    cls=_EnvOption,
    type=_PortRange(0, 65535),
    default=3000,
    show_default=True,
    envvar="HITL_PORT",
    help="Port of the sandbox and the bot ($HITL_PORT; 0 picks a free one).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the demo data, the queue and the simulated teammates.",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Your own items instead of the demo data: CSV, TSV, JSONL or text, read as "
    "`hitl import` reads them (text, label and id fields); the labels only drive the "
    "simulated teammates and the held-out score.",
)
@click.option(
    "--format",
    "data_format",
    type=click.Choice(FORMATS),
    help="--data's format, as in `hitl import` (default: from the extension).",
)
@click.option(
    "--text-column",
    default="text",
    show_default=True,
    help="--data's column with the text, as in `hitl import`.",
)
@click.option("--id-column", help="--data's column with the ids (default: id, when present).")
@click.option(
    "--label-column", help="--data's column with the labels (default: label, when present)."
)
@click.option(
    "--simulate",
    type=click.IntRange(0, 8),
    default=0,
    metavar="N",
    help="Add N simulated teammates who answer open questions.",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="Share of simulated answers that are wrong on purpose.",
)
@click.option(
    "--answers",
    type=click.IntRange(1),
    metavar="K",
    help="Stop after K simulated answers; print the held-out accuracy.",
)
@click.option(
    "--retrain-every",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="Retrain after this many new labels (0: only on /hitl retrain).",
)
@click.option(
    "--careless",
    is_flag=True,
    help="Add a careless simulated teammate (wrong half the time) and gold questions: "
    "/hitl stats shows their accuracy on gold, /hitl review the gold misses.",
)
@click.option(
    "--api-token",
    cls=_EnvOption,
    envvar="HITL_API_TOKEN",
    callback=lambda _ctx, _param, value: _demo_token(value),
    help="Token of the producer API (/api/*) on the demo's port ($HITL_API_TOKEN; default: a "
    "new one at every start, printed with a ready curl command); 16 characters or more, as "
    "hitl serve takes.",
)
@click.option("--no-browser", is_flag=True, help="Do not open a browser window.")
@click.pass_obj
def demo_command(
    state: State,
    port: int,
    seed: int,
    data_path: Path | None,
    data_format: str | None,
    text_column: str,
    id_column: str | None,
    label_column: str | None,
    simulate: int,
    error_rate: float,
    answers: int | None,
    retrain_every: int,
    careless: bool,
    api_token: str | None,
    no_browser: bool,
) -> None:
    """Try slack-hitl without a Slack workspace: the bot and a local Slack in your browser.

    Starts the bot and a sandbox workspace (channels, buttons, /hitl, App Home, the labeling
    window) on http://127.0.0.1:PORT, with a generated data set of support messages and the
    first questions posted. Everything stays on this machine; the database (./hitl-demo.db,
    or hitl's own --db: `hitl --db other.db demo`) is recreated at every start. Ctrl-C stops
    it.

    \b
    Examples:
      hitl demo
      hitl demo --simulate 3                # teammates answer while you watch
      hitl demo --simulate 3 --answers 200  # no browser: how accuracy climbs
      hitl demo --data mine.jsonl --port 8080
      hitl demo --data tickets.csv --simulate 3 --answers 100
      hitl demo --data tickets.csv --text-column body --id-column ticket_id
      hitl demo --simulate 2 --careless     # gold catches a careless teammate
    """
    import asyncio

    from bot.learning.children import start_fork_server

    if answers is not None and not simulate and not careless:
        raise click.ClickException("--answers needs simulated teammates: add --simulate N")
    start_fork_server()  # its imports run beside the ones below (bot.learning.children)
    from bot.demo import DemoOptions, run_demo
    from bot.demo.data import Columns

    options = DemoOptions(
        db=state.db or Path("hitl-demo.db"),
        port=port,
        seed=seed,
        data=data_path,
        data_format=data_format,
        columns=Columns(text_column, id_column, label_column),
        simulate=simulate,
        error_rate=error_rate,
        answers=answers,
        retrain_every=retrain_every,
        careless=careless,
        **({"api_token": api_token} if api_token else {}),
    )
    with friendly_errors():
        stopped_by = asyncio.run(
            run_demo(
                options,
                click.echo,
                open_browser=not no_browser,
                warn=lambda line: click.echo(line, err=True),
            )
        )
    if stopped_by == signal.SIGINT:  # Ctrl-C: 130, as shells expect; SIGTERM, SIGHUP: 0
        raise click.exceptions.Exit(128 + signal.SIGINT)


from bot.cli_delete import delete_command  # noqa: E402 (a command of its own module)
from bot.cli_find import find_command  # noqa: E402 (a command of its own module)
from bot.cli_labels import labels_group  # noqa: E402 (a group of its own module, added here)
from bot.cli_people import people_group  # noqa: E402 (a group of its own module, added here)
from bot.cli_restore import restore_command  # noqa: E402 (a command of its own module)

cli.add_command(labels_group)
cli.add_command(restore_command)
cli.add_command(delete_command)
cli.add_command(find_command)
cli.add_command(people_group)

if _GUARDED and signal.getsignal(signal.SIGINT) is _stopped_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the imports are done


def main() -> None:
    cli_streams.set_up()  # output that cannot be written never ends the work (bot.cli_streams)
    if _prints_only(sys.argv[1:]):
        cli_streams.strict_stdout()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:  # not ignored (nohup), nor handled
            signal.signal(signum, _interrupt)
    try:
        try:
            cli(prog_name="hitl")
        except SystemExit as exc:  # click ends every command so
            if exc.code is not None and not isinstance(exc.code, int):
                raise
            sys.exit(cli_streams.finish(exc.code or 0, stream_problem))
    except (MemoryError, RuntimeError, ImportError, SystemError) as exc:
        if not out_of_memory(exc):
            raise
        _say_out_of_memory(exc)
        sys.exit(1)


def _say_out_of_memory(exc: BaseException) -> None:
    """The one line for ``exc``, the process out of memory: of its message, the first line
    (scikit-learn's import, refused a library's mapping, adds a dozen lines of advice on
    building it from source, which would end the output instead of the fix)."""
    said = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    what = f"{type(exc).__name__}: {said}" if said else type(exc).__name__
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    sys.stderr.write(
        f"Error: ran out of memory ({what}); give hitl more memory (its limit: `ulimit -v`,"
        " or the container's); what was stored is kept\n"
    )
    sys.stderr.flush()


def _prints_only(args: list[str]) -> bool:
    """Whether the command of ``args`` does nothing but print (`hitl export`, `hitl find`,
    the read-only ones): a reader of its output going away stops it at once, where a command
    that changes things runs to its end (``bot.cli_streams``)."""
    words = _command_words(args)
    if words == ("accuracy",):
        return not any(a.startswith("--chart") for a in args)
    return words in READ_ONLY or words in {("export",), ("find",)}


def _memory_limited() -> bool:
    """Whether the process runs under an address-space limit (``ulimit -v``)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return False
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return soft != resource.RLIM_INFINITY


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the process out of memory (a ``ulimit -v`` or a container's limit),
    as the places where that lands say it: no memory for an object, a thread's stack, or a
    library's mapping while it is imported; under a memory limit, a C extension's failed
    allocation that set no error (``SystemError: error return without exception set``, seen
    from a retrain's fit under 64 MB of room), or an import that failed so (``<function
    _find_and_load …> returned NULL without setting an exception``, scikit-learn imported by
    the retrain's fit under 64 MB of room)."""
    if isinstance(exc, MemoryError):
        return True
    said = str(exc)
    if isinstance(exc, SystemError):  # a C extension whose allocation failed set no error
        no_error = ("without exception set", "without setting an exception")
        return any(words in said for words in no_error) and _memory_limited()
    if isinstance(exc, RuntimeError):
        return "can't start new thread" in said
    return isinstance(exc, ImportError) and (
        "failed to map segment" in said or "cannot allocate memory" in said.lower()
    )
