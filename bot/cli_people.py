"""`hitl people anonymise USER_ID...`: a teammate who left keeps their labels, under a
pseudonym (``bot.store.people``).

A group beside ``bot.cli`` (which adds it to `hitl`), as ``bot.cli_labels`` is; it gets the
same ``State`` as every command (``click.pass_obj``).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from bot.cli_delete import scrub, unscrubbed_line
from bot.cli_errors import Stopped, friendly_errors, utf8_text
from bot.cli_labels import _who
from bot.cli_progress import Reading
from bot.words import count
from model.registry import ModelRegistry

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
    and item ids that contain the id are left as they are (the command says how many). The
    models folder's metadata that names them (vN.json: a retrain they started) gets the
    pseudonym too, unless a retrain or rollback is running (then the command names the files).

    \b
    Examples:
      hitl people anonymise U0LEAVER
      hitl people anonymise U0LEAVER --as former-ana --by dpo
      hitl people anonymise W0LEAVER --as former-ana --merge   # their other id
    """
    ids = list(dict.fromkeys(utf8_text(i, "USER_ID") for i in user_ids))
    pseudonym = utf8_text(pseudonym, "--as") if pseudonym is not None else None
    by = utf8_text(by, "--by") if by is not None else None
    # the store, its count of commits before the change, what was changed, and the models
    # folder's changes: what an interrupt (Ctrl-C, SIGTERM, SIGHUP) kept
    store, kept, done, models, scrubbing = None, None, None, None, False
    try:
        with friendly_errors(), state.open_existing_store() as store:
            kept = store.commits
            # every text column is read for each id (seconds an id at a million items)
            with Reading(f"Looking for {count(len(ids), 'id')} in every table") as bar:
                done = store.anonymise_people(
                    ids, done_by=_who(by), pseudonym=pseudonym, merge=merge, progress=bar.to
                )
            scrubbing = True
            unscrubbed = scrub(store)
            scrubbing = False
            now = datetime.fromisoformat(store.now())
            models = _anonymise_models(state, store, ids, [r.pseudonym for r in done])
        _tell_anonymised(state, ids, done, models, unscrubbed, now)
    except KeyboardInterrupt:
        if store is None or kept is None:  # before the change began
            raise
        if done is None and store.commits != kept:  # committed, not yet returned
            done = store.write_result  # None: the write that committed changed nothing
        if done is None:  # inside the transaction: rolled back
            raise Stopped("; nothing was changed (the ids go together or not at all)") from None
        said = _anonymised_kept(state, ids, done, models is not None)
        if scrubbing:  # stopped while the file was rebuilt: it is as it was before that
            said += (
                f"; the database file was not rebuilt: its unused space may keep old copies of"
                f" the ids until `sqlite3 {state.settings.db} VACUUM` is run"
            )
        raise Stopped(said) from None


def _anonymised_kept(state: Any, ids: list[str], done: list[Any], models_done: bool) -> str:
    """The rest of the line of an anonymisation stopped after its commit (``done``: each id's
    ``Anonymised``; ``models_done``: the models folder was gone through)."""
    named = ", ".join(f"{user} is now {r.pseudonym}" for user, r in zip(ids, done, strict=True))
    said = f"; the anonymisation is committed: {named}"
    folder = Path(state.settings.models_dir)
    if not models_done and folder.is_dir():
        said += (
            f"; the models folder ({folder}) was not gone through: a vN.json there may still"
            " name them (replace each id with its pseudonym there)"
        )
    return said + "; backups and exports made before keep the ids: anonymise or delete them there"


def _tell_anonymised(
    state: Any,
    ids: list[str],
    done: list[Any],
    models: dict[str, str],
    unscrubbed: str | None,
    now: Any,
) -> None:
    """What `hitl people anonymise` changed (``done``: each id's ``Anonymised``; ``models``:
    the models folder's changes, per id; ``unscrubbed``: why the file was not rebuilt after
    it, ``Store.scrub``), on standard output."""
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
        if result.running:
            click.echo(
                "  A retrain or rollback they started is running: its model, run record and"
                " report will still name them; run the command again once it ends."
            )
        if result.last_answer and now - datetime.fromisoformat(result.last_answer) < RECENT:
            click.echo(
                f"  Their last answer was at {result.last_answer[11:19]} UTC: a retry of it from"
                " Slack, if one still came, would count as another person's answer."
            )
        if user in models:
            click.echo(f"  Models folder ({state.settings.models_dir}): {models[user]}")
        if user in admins:
            click.echo(f"  {user} is still in HITL_ADMINS: take it out there.")
    click.echo(
        f"Slack: {count(messages, 'question message')} to redraw without them; `hitl serve`"
        " redraws them (at once if it runs, else when it starts)."
        if messages
        else "Slack: no question message names them."
    )
    if unscrubbed is not None:
        click.echo(unscrubbed_line(state.settings.db, unscrubbed, "ids"))
    click.echo("Backups and exports made before keep the ids: anonymise or delete them there too.")


def _anonymise_models(
    state: Any, store: Any, ids: list[str], pseudonyms: list[str]
) -> dict[str, str]:
    """Give the pseudonyms to the models folder's metadata too (``vN.json``: who started a
    retrain), under the retrain lock, as every write there; per id that was there, what
    happened, in a line. None without a models folder (none is made)."""
    from bot.learning import retrain  # here: the retrain's imports (aiohttp) are the server's

    folder = Path(state.settings.models_dir)
    if not folder.is_dir():
        return {}
    registry = ModelRegistry(folder)
    owner = retrain.lock_owner("hitl people anonymise")
    holder = retrain.take_lock(store, owner, datetime.now(UTC), timedelta(minutes=5))
    if holder is not None:
        word = {user: re.compile(rf"(?<![^\W_]){re.escape(user)}(?![^\W_])") for user in ids}
        versions, _ = registry.scan()
        said = {}
        for user, pseudonym in zip(ids, pseudonyms, strict=True):
            files = [
                f"v{meta.version}.json"
                for meta in versions
                if word[user].search(json.dumps(meta.to_dict(), ensure_ascii=False))
            ]
            if files:
                said[user] = (
                    f"{', '.join(files)} still {'names' if len(files) == 1 else 'name'} {user}:"
                    f" {retrain.busy_reason(holder)}; replace it with {pseudonym} there once it"
                    " ends."
                )
        return said
    try:
        done = {  # a mention (who started a retrain: "<@U…>") becomes the name, as in the
            user: sorted(  # database: "<@former-1>" would be a broken mention
                set(registry.replace_word(f"<@{user}>", pseudonym))
                | set(registry.replace_word(user, pseudonym))
            )
            for user, pseudonym in zip(ids, pseudonyms, strict=True)
        }
    finally:
        store.release_lock(retrain.LOCK, owner)
    return {
        user: f"{', '.join(f'v{v}.json' for v in versions)} now name {pseudonym}"
        for (user, versions), pseudonym in zip(done.items(), pseudonyms, strict=True)
        if versions
    }
