"""`hitl people anonymise USER_ID...`: a teammate who left keeps their labels, under a
pseudonym (``bot.store.people``).

A group beside ``bot.cli`` (which adds it to `hitl`), as ``bot.cli_labels`` is; it gets the
same ``State`` as every command (``click.pass_obj``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import click

from bot.cli_errors import Stopped, friendly_errors
from bot.cli_labels import _who
from bot.words import count

# What a changed row of each table is, to the person reading the summary (the four the
# command always names first, then any other table that named them).
SAID = (
    ("answers", "answer"),
    ("labels", "label"),
    ("label_history", "history row"),
    ("reviews", "review"),
)
# A Slack retry of a click comes within minutes of it: an answer this recent may still have one
# on its way, which would no longer match its rewritten key.
RECENT = timedelta(hours=1)


@click.group("people")
def people_group() -> None:
    """The people who answered: anonymise a teammate who left, keeping their labels.

    Their user id is kept in their answers, the labels they voted for (annotators), the label
    history, reviews, label set changes and deletions, their answer count, and a few texts (a
    gold miss's review, a retrain they started). `hitl people anonymise` replaces it in all of
    them with a pseudonym of its own (former-1, former-2…).

    \b
    Examples:
      hitl people anonymise U0LEAVER
      hitl people anonymise U0LEAVER --as former-ana --by dpo
    """


@people_group.command("anonymise")
@click.argument("user_ids", metavar="USER_ID...", nargs=-1, required=True)
@click.option(
    "--as",
    "pseudonym",
    metavar="NAME",
    help="The pseudonym, for one USER_ID (default: former-1, former-2…, the next free number).",
)
@click.option(
    "--merge",
    is_flag=True,
    help="With --as NAME given before: USER_ID is a second id of the same person.",
)
@click.option("--by", help="Who anonymised them, kept with the pseudonym (default: cli:$USER).")
@click.pass_obj
def anonymise_command(
    state: Any, user_ids: tuple[str, ...], pseudonym: str | None, merge: bool, by: str | None
) -> None:
    """Replace each USER_ID (a Slack id such as U0LEAVER, or a cli: name), wherever it is
    stored, with a pseudonym of its own: their answers, the labels they voted for
    (annotators), the label history, reviews, label set changes, deletions, their answer count
    and any text that names them (a gold miss's review, a retrain they started). Every label,
    vote and agreement stays; each person stays a distinct annotator for the agreement, the
    gold accuracy and Dawid–Skene. One transaction: all the ids or, if one is unknown, none.
    Names slack-hitl itself writes (import, gold, api, restore, cli) are no one's: refused.
    It cannot be undone: the id is not kept anywhere, only that someone was anonymised, by
    whom and when.

    Exports, `hitl labels history` and `hitl stats` show the pseudonym from then on. `hitl
    serve` redraws the Slack questions that named them (at once if it runs, else when it
    starts); other messages already sent (replies, reports) keep their mention. Ticket texts
    and item ids that contain the id are left as they are (the command says how many).

    \b
    Examples:
      hitl people anonymise U0LEAVER
      hitl people anonymise U0LEAVER --as former-ana --by dpo
      hitl people anonymise W0LEAVER --as former-ana --merge   # their other id
    """
    ids = list(dict.fromkeys(user_ids))
    with friendly_errors(), state.open_existing_store() as store:
        try:
            done = store.anonymise_people(ids, done_by=_who(by), pseudonym=pseudonym, merge=merge)
        except KeyboardInterrupt:  # inside the transaction: rolled back
            raise Stopped("; nothing was changed (the ids go together or not at all)") from None
        emptied = store.empty_log()
        now = datetime.fromisoformat(store.now())
    admins = set(getattr(state.settings, "admins", ()) or ())
    messages = 0
    for user, result in zip(ids, done, strict=True):
        rows = result.rows
        said = [count(rows.get(table, 0), word) for table, word in SAID]
        others = sorted(
            (t, n) for t, n in rows.items() if t not in dict(SAID) and t != "answered_by_user"
        )
        more = ", ".join(count(n, "row") + f" of {table}" for table, n in others)
        click.echo(
            f"{user} is now {result.pseudonym}: changed {', '.join(said)}"
            + (f" (and {more})" if more else "")
            + "."
        )
        messages += result.messages
        if result.kept:
            where = ", ".join(f"{column} {n}" for column, n in sorted(result.kept.items()))
            click.echo(
                f"  Left as they are (tickets and labels, not people): {where}; `hitl delete` an"
                " item whose text must not keep it."
            )
        if result.last_answer and now - datetime.fromisoformat(result.last_answer) < RECENT:
            click.echo(
                f"  Their last answer was at {result.last_answer[11:19]} UTC: a retry of it from"
                " Slack, if one still came, would count as another person's answer."
            )
        if user in admins:
            click.echo(f"  {user} is still in HITL_ADMINS: take it out there.")
    click.echo(
        f"Slack: {count(messages, 'question message')} to redraw without them; `hitl serve`"
        " redraws them (at once if it runs, else when it starts)."
        if messages
        else "Slack: no question message names them."
    )
    if not emptied:
        click.echo(
            "The write-ahead log could not be emptied now (another process reads the"
            " database): SQLite empties it at its next checkpoint."
        )
    click.echo("Backups and exports made before keep the ids: anonymise or delete them there too.")
