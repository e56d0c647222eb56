"""`hitl labels`: change or remove decided labels, and read their history.

A click group beside ``bot.cli`` (which adds it to `hitl`), so the main command line stays one
readable module; it gets the same ``State`` as every command (``click.pass_obj``).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from bot.errors import HitlError
from bot.labelset import current_labels

MAX_LABEL = 75  # Slack's limit for a button's text


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except HitlError as exc:
        raise click.ClickException(str(exc)) from exc


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


_REASON = click.option("--reason", default="", help="Why, kept in the history.")
_BY = click.option("--by", help="Who made the change, for the history (default: cli:$USER).")


@click.group("labels")
def labels_group() -> None:
    """Change or remove any decided label (imported ones included) and read the history.

    Every change is kept (who, when, old label, new label, why) and reaches the next retrain,
    which trains on the current labels; `hitl export` writes the current ones.

    \b
    Examples:
      hitl labels set T-1001 billing --reason "refund request, not a bug"
      hitl labels remove T-1002 --reason "spam"
      hitl labels history T-1001
    """


@labels_group.command("set")
@click.argument("item_id")
@click.argument("label")
@_REASON
@_BY
@click.pass_obj
def set_command(state: Any, item_id: str, label: str, reason: str, by: str | None) -> None:
    """Make LABEL the label of item ITEM_ID, whatever it was (an open item is resolved).

    \b
    Examples:
      hitl labels set T-1001 billing --reason "refund request"
    """
    label = label.strip()
    if not label or len(label) > MAX_LABEL:
        raise click.ClickException(
            f"label {label[:30]!r} must be 1 to {MAX_LABEL} characters (Slack's button limit)"
        )
    with _errors(), state.open_existing_store() as store:
        known = current_labels(state.settings, store)
        if state.settings.labels and label not in known:
            raise click.ClickException(
                f"{label!r} is not in the label set ({', '.join(known)}); use one of these"
            )
        change = store.set_label(item_id, label, user_id=_who(by), reason=reason)
    if not change.is_changed:
        click.echo(f"{item_id}: already {label}, nothing changed")
    else:
        click.echo(f"{item_id}: {change.old or '(no label)'} → {label}")


@labels_group.command("remove")
@click.argument("item_id")
@_REASON
@_BY
@click.pass_obj
def remove_command(state: Any, item_id: str, reason: str, by: str | None) -> None:
    """Remove the label of item ITEM_ID: it leaves training and export, and is not asked again.

    \b
    Examples:
      hitl labels remove T-1002 --reason "spam, not a ticket"
    """
    with _errors(), state.open_existing_store() as store:
        change = store.remove_label(item_id, user_id=_who(by), reason=reason)
    click.echo(f"{item_id}: {change.old or '(no label)'} removed; the item is set aside")


@labels_group.command("history")
@click.argument("item_id", required=False)
@click.pass_obj
def history_command(state: Any, item_id: str | None) -> None:
    """Changes to decided labels, oldest first: of ITEM_ID, or of every item.

    \b
    Examples:
      hitl labels history
      hitl labels history T-1001
    """
    with _errors(), state.open_existing_store() as store:
        rows = store.label_history(item_id)
    if not rows:
        click.echo("No label changes" + (f" for {item_id}" if item_id else "") + ".")
        return
    for row in rows:
        why = f" ({row['reason']})" if row["reason"] else ""
        click.echo(
            f"{row['created_at']}  {row['item_id']}  {row['old_label'] or '-'} → "
            f"{row['new_label'] or '-'}  {row['action']} by {row['user_id']}{why}"
        )
