"""`hitl delete ITEM_ID...`: delete items and everything stored about them
(``bot.store.erasure``).

A command beside ``bot.cli`` (which adds it to `hitl`), as ``bot.cli_restore`` is; it gets the
same ``State`` as every command (``click.pass_obj``).
"""

from __future__ import annotations

import codecs
import sys
from pathlib import Path
from typing import Any

import click

from bot.cli_errors import Stopped, friendly_errors, utf8_text
from bot.cli_labels import _who
from bot.cli_progress import fitted
from bot.labelnames import quoted
from bot.words import count, first_few

# What a row of each table is, to the person reading the summary.
SAID = (
    ("answers", "answer"),
    ("labels", "label"),
    ("label_history", "label change"),
    ("reviews", "review"),
    ("gold", "gold label"),
    ("deliveries", "webhook delivery"),
)
PLURALS = {"webhook delivery": "webhook deliveries"}


@click.command("delete")
@click.argument("item_ids", metavar="ITEM_ID...", nargs=-1)
@click.option(
    "--ids-from",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="Read the ids from FILE, one a line ('-': standard input), as `hitl find --ids`"
    " writes them: an id with spaces, or one that starts with '-', stays one id. UTF-8 text"
    " (a byte order mark is fine) or UTF-16 with one.",
)
@click.option("--reason", default="", help="Why (an erasure request, say), kept with the id.")
@click.option("--by", help="Who deleted them, kept with the id (default: cli:$USER).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first (for scripts).")
@click.pass_obj
def delete_command(
    state: Any,
    item_ids: tuple[str, ...],
    ids_from: str | None,
    reason: str,
    by: str | None,
    yes: bool,
) -> None:
    """Delete each ITEM_ID and everything stored about it: its text and meta, the answers
    people gave, its label and label history, reviews, gold label, webhook deliveries, and
    the Slack questions that showed it. For an erasure request, or a ticket where someone
    pasted what must not be kept (a card number). It cannot be undone.

    All the items are deleted or, if one id is unknown, none. What stays is that the id was
    deleted, by whom, when and why: `hitl import` and the API skip that id from then on (the
    same file imported again brings nothing back). SQLite overwrites the freed space, and the
    file is rebuilt (VACUUM), so that no old copy of a row stays in it; not while a server
    runs on the database (the command says so: stop it, then `sqlite3 hitl.db VACUUM`).

    The Slack messages are deleted by `hitl serve`: at once if it runs, else when it starts.
    Model files trained while the item had a label may keep some of its words in their
    vocabulary (the command names them; `HITL_KEEP_MODELS=0 hitl retrain --force` trains one
    without it and deletes the others); backups and exports made before keep it too, and so
    does a <db>.before-restore left by `hitl restore`.

    \b
    Examples:
      hitl delete T-1001 --reason "erasure request #4411"
      hitl find jane.doe@example.com --ids |
        hitl delete --ids-from - --yes --reason "#4411"
      jq -r .id wrong.jsonl |
        hitl delete --ids-from - --yes --reason "wrong file imported"
      hitl delete -- -odd-id    # an id that starts with '-'
    """
    given = [utf8_text(i, "ITEM_ID") for i in item_ids]
    reason = utf8_text(reason, "--reason")
    if by is not None:
        by = utf8_text(by, "--by")
    if ids_from is not None:
        given += [line for line in _lines(read_ids(ids_from)) if line.strip()]
        if not yes and ids_from == "-":  # the answer would be read from the ids
            raise click.ClickException(
                "--ids-from reads the ids, and no one can answer the question: add --yes"
            )
    if not given:
        raise click.UsageError("give the ids to delete: ITEM_ID... or --ids-from FILE")
    ids = list(dict.fromkeys(given))
    # the store, its count of commits before the delete, and what the delete removed: what an
    # interrupt (Ctrl-C, SIGTERM, SIGHUP) kept
    store, kept, done, scrubbing = None, None, None, False
    try:
        with friendly_errors(), state.open_existing_store() as store:
            stored = store.existing_item_ids(ids)
            if unknown := [i for i in ids if i not in stored]:
                if len(unknown) == 1 and (before := store.deleted_item(unknown[0])) is not None:
                    why = f" ({before['reason']})" if before["reason"] else ""
                    raise click.ClickException(
                        f"{quoted(unknown[0], 200)} was deleted on"
                        f" {before['at'][:19].replace('T', ' ')} UTC by {before['user_id']}{why};"
                        " nothing deleted"
                    )
                shown = first_few([quoted(i, 200) for i in unknown])
                gone = store.deleted_among(unknown)
                why = f" ({len(gone):,} of them deleted before)" if gone else ""
                raise click.ClickException(
                    f"no item with id {shown}{why}; nothing deleted (`hitl find TEXT` finds items"
                    " by their text)"
                )
            if not yes:
                if not sys.stdin.isatty():
                    raise click.ClickException(
                        "asks before deleting, and no one can answer here (input is not a"
                        " terminal): add --yes"
                    )
                shown, held = first_few(ids), said_rows(store.rows_about(ids))
                click.confirm(
                    f"Delete {count(len(ids), 'item')} ({shown}) and everything stored about"
                    f" {'it' if len(ids) == 1 else 'them'}"
                    + (f" ({', '.join(held)})" if held else " (no answer or label yet)")
                    + "? This cannot be undone",
                    abort=True,
                )
            kept = store.commits
            done = store.delete_items(
                ids, user_id=_who(by), reason=reason, models_dir=state.settings.models_dir
            )
            scrubbing = True
            unscrubbed = scrub(store)
            scrubbing = False
        for line in deleted_lines(done, len(ids)):
            click.echo(line)
        if unscrubbed is not None:
            click.echo(unscrubbed_line(state.settings.db, unscrubbed, "text"))
        click.echo("Backups and exports made before keep these items: delete them there too.")
    except KeyboardInterrupt:
        if store is None or kept is None:  # before the delete began
            raise
        if done is None and store.commits != kept:  # committed, not yet returned
            done = store.write_result  # the store keeps it for such a caller
        if done is None:  # inside the transaction: rolled back
            raise Stopped("; nothing was deleted (the items go together or not at all)") from None
        # Deleted (a signal during the COMMIT is raised as it returns, or one came after it):
        # what a delete says is said here, in the one line
        said = " ".join(deleted_lines(done, len(ids)))
        if scrubbing:  # stopped while the file was rebuilt: it is as it was before that
            said += (
                f" The database file was not rebuilt: its unused space may keep old copies of"
                f" the text until `sqlite3 {state.settings.db} VACUUM` is run."
            )
        raise Stopped(
            f"; the delete is committed. {said} Backups and exports made before keep these"
            " items: delete them there too."
        ) from None


def deleted_lines(done: Any, asked: int) -> list[str]:
    """What a delete that committed says (``done``: ``Deleted``, of ``asked`` ids): how many
    rows, the Slack messages left to delete, the stop set, and the models that may keep the
    items' words."""
    rows = said_rows(done.rows)
    lines = [
        f"Deleted {count(done.rows['items'], 'item')}" + (f": {', '.join(rows)}." if rows else ".")
    ]
    if done.messages:
        lines.append(
            f"Slack: {count(done.messages, 'question message')} to delete; `hitl serve` deletes"
            " them (at once if it runs, else when it starts)."
        )
    if done.stop_set_dropped:
        lines.append("When to stop: its sample held one of them; the next update draws another.")
    if done.models:
        versions = ", ".join(f"v{v}" for v in done.models)
        lines.append(
            f"Models: {versions} {'was' if len(done.models) == 1 else 'were'} trained while"
            f" {'it' if asked == 1 else 'one of them'} had a label, and may keep some of its"
            " words in the vocabulary: `HITL_KEEP_MODELS=0 hitl retrain --force` trains a model"
            " without it, makes it the champion and deletes every other model file (no rollback"
            " to them after)."
        )
    return lines


def scrub(store: Any) -> str | None:
    """``store.scrub()`` (``Store.scrub``: a VACUUM, which rebuilds the whole file: seconds at
    a million items) with a bar on stderr while it runs, on a terminal only. SQLite tells no
    total, so the bar shows activity, as `hitl import -`'s does."""
    if not sys.stderr.isatty():
        return store.scrub()
    bar = click.progressbar(
        length=None,
        iterable=(n for n in ()),
        **fitted("Rebuilding the database file, so no old copy stays in it", eta=False),
        file=sys.stderr,
        show_eta=False,
    )
    with bar:
        return store.scrub(lambda: bar.update(1))


def unscrubbed_line(db: Any, why: str, what: str) -> str:
    """What `hitl delete` and `hitl people anonymise` say when the file could not be rebuilt
    after the change (``Store.scrub``): old copies of the rows may stay in its unused space
    and its log until a VACUUM with nothing else on the database."""
    return (
        f"The database file could not be rebuilt now ({why}): its unused space and its"
        f" write-ahead log may keep old copies of the {what} until `sqlite3 {db} VACUUM` is run"
        " with nothing else on the database (stop `hitl serve` first)."
    )


def said_rows(rows: dict[str, int]) -> list[str]:
    """``rows`` (per table) as the person reads them: "3 answers", "1 label", ..."""
    return [count(rows[table], word, PLURALS.get(word)) for table, word in SAID if rows.get(table)]


def read_ids(name: str) -> str:
    """The text of the ids file ``name`` ('-': standard input): UTF-8, with or without a
    byte order mark (Excel's "CSV UTF-8"), or UTF-16 with one (Excel's "Unicode Text").
    Anything else is refused in one line naming the file."""
    shown = "standard input" if name == "-" else name
    try:
        if name == "-":
            data = sys.stdin.buffer.read()  # click's get_binary_stream: deprecated in 8.5
        else:
            data = Path(name).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {shown}: {exc.strerror or exc}") from None
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
        if "\x00" not in text:  # UTF-16 without a mark reads as UTF-8 with a NUL a character
            return text
    except UnicodeDecodeError:
        pass
    raise click.ClickException(
        f"{shown} is not UTF-8 text (nor UTF-16 with a byte order mark): save it as UTF-8"
        " (in Excel: CSV UTF-8), or convert it, e.g. `iconv -f LATIN1 -t UTF-8 FILE`"
    )


def _lines(text: str) -> list[str]:
    """The lines of ``text`` as a text file reads them (\\n, \\r\\n or \\r end one), not
    ``str.splitlines``'s (a form feed or U+2028 inside an id would split it)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
