"""`hitl find TEXT`: the items whose text, meta or id holds TEXT, whatever their status: what
an erasure or access request about a person needs (``Store.find_items``).

A command beside ``bot.cli`` (which adds it to `hitl`), as ``bot.cli_delete`` is.
"""

from __future__ import annotations

import json
from typing import Any

import click

from bot import cli_streams
from bot.cli_errors import friendly_errors
from bot.cli_progress import Reading
from bot.words import count

SHOWN_CHARS = 80  # of the text, on a line of the plain listing


def printable(text: str) -> str:
    """``text`` for a terminal: a control character, an escape sequence or a right-to-left
    override from a ticket written as its escape (``\\x1b``, ``\\u202e``), not obeyed."""
    if text.isprintable():  # nearly every line: no walk over its characters
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


@click.command("find")
@click.argument("text")
@click.option(
    "--part",
    is_flag=True,
    help="Match TEXT anywhere, inside a word too (default: as a whole word, or a whole"
    " address: ann@example.com finds neither joann@example.com nor ann@example.com.au).",
)
@click.option(
    "--ids",
    "ids_only",
    is_flag=True,
    help="Print only the ids, one a line (for `hitl delete --ids-from -`).",
)
@click.option(
    "--jsonl",
    "as_jsonl",
    is_flag=True,
    help="Print each item whole as a JSON line (id, status, source, text, meta, created_at,"
    " label, label_retired): what an access request asks for.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar on stderr.")
@click.pass_obj
def find_command(
    state: Any, text: str, part: bool, ids_only: bool, as_jsonl: bool, quiet: bool
) -> None:
    """Find the items whose text, meta values or id hold TEXT as a whole word (any case, any
    Unicode form, any status: waiting, asked, decided, set aside), oldest first. For an
    erasure or access request that names a person (an email, a phone number, a name) rather
    than item ids; `hitl export` lists only the labeled items. Check the list before deleting.

    A space in TEXT matches any run of white space (a line break, a no-break space); full-width
    forms match their plain ones (＠ is @); ı, İ, I and i are one letter (YILMAZ finds
    Yılmaz). A phone number (7 digits or more, with + spaces - . / or brackets) matches the
    same digits with any of those between them or none, and a trunk (0): "+44 7700 900999"
    finds +447700900999 and +44 (0)7700 900-999.

    It reads every item: on a terminal a bar on stderr says how far it is (--quiet leaves it
    out), and the items found so far are printed as it goes.

    \b
    Examples:
      hitl find jane.doe@example.com
      hitl find "+44 7700 900999" --jsonl > access-request-4411.jsonl
      hitl find jane.doe@example.com --ids |
        hitl delete --ids-from - --reason "request #4411"
    """
    if ids_only and as_jsonl:
        raise click.UsageError("--ids and --jsonl: give one of them")
    text = text.strip()  # pasted from an email: " ann@example.com\n" is ann's address
    if not text:
        raise click.BadParameter("give some text to look for", param_hint="TEXT")
    from bot.store import ITEM_STATUSES

    # data for a file or a program: on a standard output that is not UTF-8, JSON in ASCII
    ascii_only = as_jsonl and cli_streams.stdout_encoding() != "utf-8"
    found = 0
    lines: list[str] = []  # found in the stretch read last: printed at once, then the bar

    def flush() -> None:
        if lines:
            bar.aside()
            click.echo("\n".join(lines))
            lines.clear()

    def progress(done: int, total: int) -> None:
        flush()
        bar.to(done, total)

    with friendly_errors(), state.open_existing_store() as store:
        counts = store.count_items()  # flat: the counts kept with every change
        items = sum(counts.get(status, 0) for status in ITEM_STATUSES)
        retired = store.retired_labels()  # the label set's few rows
        with Reading(f"Searching {count(items, 'item')}", quiet=quiet) as bar:
            for item in store.find_items(text, part=part, progress=progress):
                found += 1
                lines.append(
                    _line(
                        item, retired, ids_only=ids_only, as_jsonl=as_jsonl, ascii_only=ascii_only
                    )
                )
            flush()
    if not ids_only and not as_jsonl:
        click.echo(f"{count(found, 'item')} found.", err=True)


def _line(
    item: dict[str, Any],
    retired: set[str],
    *,
    ids_only: bool,
    as_jsonl: bool,
    ascii_only: bool = False,
) -> str:
    """The line printed for ``item``: its id, its JSON, or id, status, label and text.

    An item decided with a label retired since (in ``retired``) is not decided any more: it
    waits in /hitl review for a label in force, as `hitl stats` counts it and the producer API
    says (``needs_review``). The plain listing says so; the JSON keeps the stored ``status``
    (the API's ``queue_status``) and ``label``, and says it with ``label_retired``."""
    if ids_only:
        return item["id"]
    label_retired = item["status"] == "resolved" and item["label"] in retired
    if as_jsonl:
        item["meta"] = json.loads(item["meta"] or "{}")
        return json.dumps({**item, "label_retired": label_retired}, ensure_ascii=ascii_only)
    shown = " ".join(item["text"].split())
    if len(shown) > SHOWN_CHARS:
        shown = shown[: SHOWN_CHARS - 1] + "…"
    status = "waiting in review" if label_retired else item["status"]
    label = f" ({printable(item['label'])})" if item["label"] else ""
    if label_retired:
        label = f" ({printable(item['label'])} was retired)"
    return f"{printable(item['id'])}  {status}{label}  {printable(shown)}"
