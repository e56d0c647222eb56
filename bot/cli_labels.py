"""`hitl labels`: change or remove decided labels, and read their history.

A click group beside ``bot.cli`` (which adds it to `hitl`), so the main command line stays one
readable module; it gets the same ``State`` as every command (``click.pass_obj``).
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from bot.cli_errors import Stopped, friendly_errors
from bot.labelnames import (
    case_twin,
    how_twins_differ,
    label_name,
    label_problem,
    looks_the_same,
    only_twin,
    quoted,
    taken_as,
)
from bot.labelset import (
    current_labels,
    label_set_warnings,
    restate_all,
    retired_note,
)
from bot.words import count


@contextmanager
def _errors() -> Iterator[None]:
    """``friendly_errors``: the same one line for every error, a locked or read-only
    database's too."""
    with friendly_errors():
        yield


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
    """Change or remove any decided label (imported ones included), change the label set
    (add, rename, merge, retire), and read the history.

    Every change is kept (who, when, old label, new label, why) and reaches the next retrain,
    which trains on the current labels; `hitl export` writes the current ones. Once the label
    set is changed here (or with /hitl labels), the stored set is the one in force, over
    HITL_LABELS and the imported labels.

    \b
    Examples:
      hitl labels set T-1001 billing --reason "refund request, not a bug"
      hitl labels remove T-1002 --reason "spam"
      hitl labels history T-1001
      hitl labels show
      hitl labels rename how_to question
      hitl labels merge praise feedback
    """


@labels_group.command("set")
@click.argument("item_ids", metavar="ITEM_ID...", nargs=-1, required=True)
@click.argument("label")
@_REASON
@_BY
@click.pass_obj
def set_command(
    state: Any, item_ids: tuple[str, ...], label: str, reason: str, by: str | None
) -> None:
    """Make LABEL the label of each ITEM_ID, whatever it was (an open item is resolved; on a
    gold item, the gold label). Several items are set together or, if one cannot be (an
    unknown id), none: after a change in how the team labels, `hitl labels set` with the ids
    of the outdated gold questions updates them in one command.

    \b
    Examples:
      hitl labels set T-1001 billing --reason "refund request"
      hitl labels set G-4 G-9 G-12 account --reason "refunds are account now"
    """
    label = _check_name(label)
    ids = list(dict.fromkeys(item_ids))  # an id given twice is set once
    store, kept = None, None  # the store, and its count of commits before the change
    try:
        with _errors(), state.open_existing_store() as store:
            known = current_labels(state.settings, store)
            fixed = state.settings.labels or store.stored_labels() is not None
            twin = case_twin(label, known)
            if twin is not None and only_twin(label, known) == twin and looks_the_same(label, twin):
                # "card payment" typed for the label imported with a no-break space: what one
                # reads and types is that label, which advice to use it could not be followed for
                click.echo(taken_as(label, twin))
                label, twin = twin, None
            if twin is not None:  # open labels too: one spelling
                raise click.ClickException(
                    f"{quoted(label)} differs from the label {quoted(twin)}"
                    f" {how_twins_differ(label, twin)}; use {quoted(twin)}"
                )
            if fixed and label not in known:
                # a label retired: said, with the way back (as the retire itself said it)
                back = (
                    f" (it was retired: `hitl labels add {label}` brings it back)"
                    if label in store.retired_labels()
                    else ""
                )
                raise click.ClickException(
                    f"{quoted(label)} is not in the label set ({', '.join(known)}){back}; use"
                    " one of these"
                )
            stored = store.existing_item_ids(ids) if len(ids) > 1 else set(ids)
            if unknown := [i for i in ids if i not in stored]:
                raise click.ClickException(
                    f"no item with id {', '.join(quoted(i, 200) for i in unknown)}; nothing changed"
                    " (`hitl export` lists the labeled ones)"
                )
            # One transaction for them all: the Store's own (no public one for several labels;
            # ``Store.remove_labels`` is its counterpart for `hitl labels remove`).
            kept = store.commits
            with store._immediate():
                changes = [store.set_label(i, label, user_id=_who(by), reason=reason) for i in ids]
        for change in changes:
            if change.confirmed:
                click.echo(
                    f"{change.item_id}: {label} kept, now decided by a person (training keeps it)"
                )
            elif not change.is_changed:
                click.echo(f"{change.item_id}: already {label}, nothing changed")
            else:
                click.echo(f"{change.item_id}: {change.old or '(no label)'} → {label}")
    except KeyboardInterrupt:
        if store is None or kept is None:  # before the change began
            raise
        if store.commits == kept:  # inside the transaction: rolled back
            raise Stopped(
                "; nothing was changed (the items are set together or not at all)"
            ) from None
        # committed (a signal during the COMMIT is raised as it returns), maybe while the
        # lines above were written
        raise Stopped(
            f"; the change is committed: {count(len(ids), 'item')} now labeled {quoted(label)}"
            " (`hitl labels history` lists what changed)"
        ) from None


@labels_group.command("remove")
@click.argument("item_ids", metavar="ITEM_ID...", nargs=-1, required=True)
@_REASON
@_BY
@click.pass_obj
def remove_command(state: Any, item_ids: tuple[str, ...], reason: str, by: str | None) -> None:
    """Remove the label of each ITEM_ID: it leaves training and export, and is not asked
    again. Several items are removed together or, if one cannot be (an unknown id), none.

    \b
    Examples:
      hitl labels remove T-1002 --reason "spam, not a ticket"
      hitl labels remove $(jq -r .id wrong.jsonl) --reason "a bad import"
    """
    with _errors(), state.open_existing_store() as store:
        ids = list(dict.fromkeys(item_ids))  # an id given twice is removed once
        changes = store.remove_labels(ids, user_id=_who(by), reason=reason)
    for change in changes:
        click.echo(f"{change.item_id}: {change.old or '(no label)'} removed; the item is set aside")


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
        if not rows and item_id and store.get_item(item_id) is None:
            raise click.ClickException(
                f"no item with id {quoted(item_id, 200)}; `hitl export` lists the labeled ones"
            )
    if not rows:
        click.echo("No label changes" + (f" for {item_id}" if item_id else "") + ".")
        return
    for row in rows:
        why = f" ({row['reason']})" if row["reason"] else ""
        click.echo(
            f"{row['created_at']}  {row['item_id']}  {row['old_label'] or '-'} → "
            f"{row['new_label'] or '-'}  {row['action']} by {row['user_id']}{why}"
        )


def _check_name(label: str) -> str:
    label = label_name(label)
    if problem := label_problem(label):
        raise click.ClickException(f"the label {quoted(label, 40)} {problem}")
    return label


def _change(state: Any, action: str, label: str, new: str | None, reason: str, by: str | None):
    # the store, its count of commits before the change, the change, and whether the stored
    # predictions were put under the new set: what an interrupt (Ctrl-C, SIGTERM, SIGHUP) kept
    store, kept, labels, restated = None, None, None, False
    aliases: dict[str, str] = {}  # old names → the label now: a retire's note reads them
    try:
        with _errors(), state.open_existing_store() as store:
            kept = store.commits
            labels = store.change_label_set(
                action,
                label,
                new,
                current=current_labels(state.settings, store),
                user_id=_who(by),
                reason=reason,
                votes_needed=state.settings.votes,
            )
            aliases = store.label_aliases()
            _restate(store, state.settings.threshold)
            restated = True
        for line in labels.taken_notes():  # a name typed for the label of the set it is a twin of
            click.echo(line)
        click.echo(f"Label set now: {', '.join(labels)}")
        if action == "retire":  # the label this change retired (``ChangedSet``), as stored
            click.echo(_retired(state, labels, aliases))
    except KeyboardInterrupt:
        if store is None or kept is None:  # before the change began
            raise
        if store.commits == kept:  # inside its transaction: rolled back
            raise Stopped(f"; nothing was changed (the {action} was not made)") from None
        # committed (a signal during the COMMIT is raised as it returns): the change, which
        # the store keeps for a caller stopped before it was returned
        if labels is None:
            labels = store.write_result
        # the change and the size of the set, not the set: with 89 labels it was 1,000 characters
        change = labels.change
        what = quoted(change["label"], 40)
        if change["new_label"]:
            what += f" → {quoted(change['new_label'], 40)}"
        said = (
            f": the {action} {what} is committed ({count(len(labels), 'label')} in the set now;"
            " `hitl labels show` lists them)"
        )
        if not restated:
            said += (
                "; not every stored prediction is under the new set yet: `hitl serve`, or the"
                " next label change, puts them there"
            )
        if action == "retire":
            said += f". {_retired(state, labels, aliases)}"
        raise Stopped(said) from None


def _retired(state: Any, labels: Any, aliases: dict[str, str]) -> str:
    """What a retire did to the items of the label it retired (``labels``: ``ChangedSet``);
    ``aliases``: old names → the label now, so a route set under an old name is named too."""
    note = retired_note(
        labels.made, labels.labeled, slack=False, settings=state.settings, aliases=aliases
    )
    return note + labels.gold_note(labels.made)


BAR_FROM = 100_000  # items: the pass after a change shows a progress bar from here


def _restate(store: Any, threshold: float) -> None:
    """After a change of the label set: the stored predictions under the new set, in short
    transactions (``bot.labelset.restate_all``; the change itself touches no item), so a
    database used without a server is right too: a retired label's model-decided items wait
    for people, a label added back takes its items back. A running server's scorer would do
    it too. A bar on stderr from BAR_FROM items: the pass reads every waiting item (12-27 s
    at a million on 2 shared cores: RESULTS.md, "Commands at a million items")."""
    end = store.last_rowid()
    if end < BAR_FROM:
        restate_all(store, threshold)
        return
    from bot.cli_progress import fitted

    label = "Putting the predictions under the new label set"
    with click.progressbar(length=end, **fitted(label), file=sys.stderr) as bar:

        def step(at: int, _end: int) -> None:
            bar.update(at - bar.pos)

        restate_all(store, threshold, step)


@labels_group.command("show")
@click.pass_obj
def show_command(state: Any) -> None:
    """The label set in force, where it comes from, and its changes.

    \b
    Examples:
      hitl labels show
    """
    with _errors(), state.open_existing_store() as store:
        labels = current_labels(state.settings, store)
        stored = store.stored_labels() is not None
        changes = store.label_set_changes()
        version = store.label_set_version(labels)
        warnings = label_set_warnings(state.settings, store)
    source = (
        "stored (changed with hitl labels)"
        if stored
        else "HITL_LABELS"
        if state.settings.labels
        else "the imported labels"
    )
    click.echo(f"Labels ({source}, {version}): {', '.join(labels) or 'none'}")
    for c in changes:
        what = f"{c['label']} → {c['new_label']}" if c["new_label"] else c["label"]
        why = f" ({c['reason']})" if c["reason"] else ""
        click.echo(f"{c['created_at']}  {c['action']} {what} by {c['user_id']}{why}")
    for line in warnings:  # labels outside the set in force, case twins in force
        click.echo(f"Warning: {line}")


@labels_group.command("add")
@click.argument("label")
@_REASON
@_BY
@click.pass_obj
def add_command(state: Any, label: str, reason: str, by: str | None) -> None:
    """Add LABEL to the label set (a retired one comes back).

    \b
    Examples:
      hitl labels add refund
    """
    _change(state, "add", _check_name(label), None, reason, by)


@labels_group.command("rename")
@click.argument("old")
@click.argument("new")
@_REASON
@_BY
@click.pass_obj
def rename_command(state: Any, old: str, new: str, reason: str, by: str | None) -> None:
    """Rename label OLD to NEW: its decided labels become NEW (each in the history), and a
    click on an old OLD button counts for NEW.

    \b
    Examples:
      hitl labels rename how_to question
    """
    _change(state, "rename", old, _check_name(new), reason, by)


@labels_group.command("merge")
@click.argument("old")
@click.argument("into")
@_REASON
@_BY
@click.pass_obj
def merge_command(state: Any, old: str, into: str, reason: str, by: str | None) -> None:
    """Merge label OLD into INTO: OLD leaves the set, its decided labels become INTO (each in
    the history), and a click on an old OLD button counts for INTO.

    \b
    Examples:
      hitl labels merge praise feedback
    """
    _change(state, "merge", old, into, reason, by)


@labels_group.command("retire")
@click.argument("label")
@_REASON
@_BY
@click.pass_obj
def retire_command(state: Any, label: str, reason: str, by: str | None) -> None:
    """Retire LABEL: no question offers it any more, a click on an old button for it is
    refused with a note, and the items decided with it leave training and `hitl export`: they
    wait in /hitl review (Slack) until they get a label in force (or `hitl labels set ID
    LABEL`). `hitl labels add LABEL` brings the label and its items back.

    \b
    Examples:
      hitl labels retire feature_request
    """
    _change(state, "retire", label, None, reason, by)
