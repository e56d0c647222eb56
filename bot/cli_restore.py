"""`hitl restore BACKUP`: put a backup of the database in place (``bot.store.restore``).

A command beside ``bot.cli`` (which adds it to `hitl`), as ``bot.cli_labels`` is; it gets the
same ``State`` as every command (``click.pass_obj``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from bot.cli_delete import scrub, unscrubbed_line
from bot.cli_errors import Stopped, friendly_errors
from bot.cli_progress import fitted
from bot.errors import StoreError
from bot.words import count, first_few


@click.command("restore")
@click.argument("backup", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--undelete",
    is_flag=True,
    help="Keep the items the backup holds that `hitl delete` deleted after it was made (by"
    " default they are deleted again). Deletions of items the backup does not hold stay, and"
    " people anonymised after it are anonymised again, all the same.",
)
@click.pass_obj
def restore_command(state: Any, backup: Path, undelete: bool) -> None:
    """Put BACKUP (a copy of the database) in place of the database, safely after a crash.

    Stop `hitl serve` first: the restore is refused while a server, demo or another hitl
    process has the database open, and no server or demo starts on it until the restore ends
    (what was deleted or anonymised after the backup is so again first). BACKUP is checked
    first (a slack-hitl database this version can open, PRAGMA quick_check), then copied with
    SQLite's backup API. The database that was there is kept, with its -wal and -shm, as
    <db>.before-restore (or .before-restore.2, ...): nothing is deleted, and `hitl restore
    hitl.db.before-restore` undoes the restore.

    Never copy a backup over the database with cp while a hitl.db-wal is beside it (a server
    that crashed leaves one): SQLite applies that log over the copy, which ends damaged.

    Model files are not restored: the command says which versions the backup records and
    which the models folder (<db>.models) holds, and when that folder lacks some that the
    folder made with the backup (BACKUP.models) holds, the cp command that puts it in place.

    Items `hitl delete` deleted after the backup was made (an erasure request) are deleted
    again, as the database that was there records them, with their Slack messages (those it
    had left to delete too); the command names them. --undelete keeps the items the backup
    holds (a delete made by mistake); the deletions of items it does not hold stay, and their
    Slack messages still go.

    A producer a webhook sent after the backup was made may have told something the backup
    does not say (a label it takes back, an Undo, a label retired or added back) gets a webhook
    with what the restored database says ("label": null for an item open again), sent by the
    next `hitl serve`; so does the producer of an item --undelete keeps. The command says how
    many. A callback_url registered after the backup was made is kept. Slack messages drawn
    after the backup was made (a question reopened by an Undo) are redrawn as the restored
    database has them. When what changed cannot be read, the restore goes on and says so.

    People `hitl people anonymise` anonymised after the backup was made are anonymised
    again, under the pseudonym the database that was there gave them (found by their
    answers, which keep their ids), with or without --undelete; the command names them.

    \b
    Examples:
      sqlite3 hitl.db ".backup backup.db"   # a backup, safe while hitl serve runs
      hitl restore backup.db
      hitl --db /srv/hitl/hitl.db restore /backups/hitl-monday.db
      hitl restore hitl.db.before-restore   # undo the last restore
    """
    from bot.store.restore import restoring

    with friendly_errors(), contextlib.ExitStack() as bars:
        db = state.settings.db
        bar: list[Any] = []

        def progress(done: int, total: int) -> None:
            if not bar:
                bar.append(
                    bars.enter_context(
                        click.progressbar(
                            length=max(total, 1),
                            **fitted(f"Copying {backup.name}"),
                            file=sys.stderr,
                        )
                    )
                )
            bar[0].update(done - bar[0].pos)

        def checking() -> None:
            click.echo(f"Checking {backup} (PRAGMA quick_check)…", err=True)

        before = _identity(db)
        try:
            # The server lock stays held until the command ends: no `hitl serve` (a systemd
            # restart), demo or upgrade starts on the restored database before the items
            # deleted and the people anonymised after the backup was made are so again in it
            # and its file is rebuilt; started as the files were swapped, it posted or
            # answered what the backup holds of them.
            done = click.get_current_context().with_resource(
                restoring(db, backup, progress=progress, checking=checking)
            )
        except KeyboardInterrupt:
            bars.close()
            raise Stopped(_restore_state(db, backup, before)) from None
    facts = done.facts
    newest = f", the newest at {facts.newest_answer}" if facts.newest_answer else ""
    click.echo(
        f"Restored {db} from {backup}: {count(facts.items, 'item')},"
        f" {count(facts.answers, 'answer')}{newest}."
    )
    if done.kept is not None:
        beside = " and ".join(path.name for path in done.kept_beside)
        with_log = f" with {beside} beside it (its log may hold its last answers)" if beside else ""
        click.echo(
            f"The database that was there is kept as {done.kept}{with_log}:"
            f" `hitl restore {done.kept}` undoes this."
        )
    elif done.kept_beside:
        names = ", ".join(str(path) for path in done.kept_beside)
        click.echo(f"Files left beside the database were moved aside: {names}.")
    if done.kept is not None and (done.taken_back or done.to_delete):
        what = []
        if done.taken_back:
            what.append(
                f"{done.taken_back} taken back (`hitl serve` redraws"
                f" {'it' if done.taken_back == 1 else 'them'} without buttons; the items are"
                " asked again in their turn)"
            )
        if done.to_delete:
            what.append(
                f"{done.to_delete} left to delete (of items the backup does not hold;"
                " `hitl serve` deletes them)"
            )
        click.echo(
            f"Carried over: {count(done.taken_back + done.to_delete, 'Slack message')} posted"
            f" after the backup was made, as {done.kept.name} records: {'; '.join(what)}."
        )
    if done.kept is not None and done.told:
        one = done.told == 1
        click.echo(
            f"Producers told: {count(done.told, 'webhook')} queued to tell the producer"
            f"{'' if one else 's'} of {count(done.told, 'item')} what the restored database"
            f" says (a webhook sent after the backup was made, as {done.kept.name} records,"
            f" may have told {'it' if one else 'them'} otherwise; a label taken back is told"
            ' with "label": null); `hitl serve` sends them.'
        )
    if done.kept is not None and done.not_told:
        click.echo(
            "Warning: producers were not told what the restore changed, and no Slack message"
            f" drawn after the backup was made was marked for a redraw: {done.not_told}; once"
            f" that is fixed, `hitl restore {done.kept}` and then `hitl restore {backup}` again"
            " tell them.",
            err=True,
        )
    if done.kept is not None and done.posts_unread:
        click.echo(
            f"Warning: {done.kept.name} cannot be read ({done.posts_unread}), so the Slack"
            " messages posted after the backup was made are not known and none was carried"
            " over: a question posted since stays in Slack with its buttons, unknown to the"
            " restored database; delete such messages there by hand.",
            err=True,
        )
    if done.kept is not None and done.not_carried:
        one = done.not_carried == 1
        click.echo(
            f"Warning: the backup is not an earlier copy of the database that was there (made"
            f" apart: no Slack message in common): {count(done.not_carried, 'Slack message')}"
            f" {done.kept.name} records {'was' if one else 'were'} not carried over and"
            f" {'is left in Slack as it is' if one else 'are left in Slack as they are'}; delete"
            f" {'it' if one else 'them'} there by hand if you want, or run"
            f" `hitl restore {done.kept}` if the backup was the wrong file.",
            err=True,
        )
    upgraded = done.upgraded  # to record the Slack messages it carried over
    erased = False  # items deleted again or people anonymised again: the file is rebuilt after
    if done.kept is not None:
        # `hitl restore BACKUP` alone would not redo them: the database it would keep is the
        # restored one, which does not record them; undone first, the one that does is kept
        rerun = f"hitl restore{' --undelete' if undelete else ''} {backup}"
        redo = f"`hitl restore {done.kept}` and then `{rerun}`"
        with _redo_said(
            f"{db} was restored from {backup}, but the items deleted after the backup was made"
            " were not deleted again",
            f"{redo} delete them",
        ):
            opened, erased = _delete_again(state, done.kept, undelete)
            upgraded = opened or upgraded
        with _redo_said(
            f"{db} was restored from {backup}, but the people anonymised after the backup was"
            " made were not anonymised again",
            f"{redo} anonymise them",
        ):
            opened, again = _anonymise_again(state, done.kept)
            upgraded, erased = opened or upgraded, again or erased
    else:  # no database was there: the record of the erasures made since went with it
        click.echo(
            f"Warning: no database was at {db}, so the items deleted (`hitl delete`, DELETE"
            " /api/items/{id}) and the people anonymised (`hitl people anonymise`) after the"
            " backup was made are not known, and none is deleted or anonymised again: the"
            " restored database holds them as the backup does; run those erasures again. Nor"
            " are the webhooks sent after it: producers are not told what the restore changed.",
            err=True,
        )
    if erased:  # the backup's pages, copied as they are, may keep old copies of those rows
        try:
            with state.open_existing_store() as store:
                unscrubbed = scrub(store)
        except KeyboardInterrupt:
            raise Stopped(
                f" after the restore: {db} was restored from {backup}, and what was deleted or"
                " anonymised after the backup was made is so again; its file may keep old"
                f" copies of them in its unused space until `sqlite3 {db} VACUUM` is run"
            ) from None
        if unscrubbed is not None:
            click.echo(unscrubbed_line(db, unscrubbed, "rows deleted or anonymised again"))
    if facts.pending:
        click.echo(
            "The backup was made by an older slack-hitl: "
            + ("it was upgraded" if upgraded else "the next hitl command upgrades it")
            + f" ({count(facts.pending, 'migration')})."
        )
    try:
        # a backup left to upgrade is not opened here ("the next hitl command upgrades it"):
        # `hitl models` and `hitl serve` say the rest then
        notes = models_note(
            state.settings,
            facts.models,
            state if upgraded or not facts.pending else None,
            backup,
        )
    except KeyboardInterrupt:  # the restore is done: only the look at the models folder is not
        kept = f"; the database that was there is kept as {done.kept}" if done.kept else ""
        raise Stopped(
            f" after the restore: {db} was restored from {backup}{kept}; what the models"
            " folder holds was not checked (`hitl models`)"
        ) from None
    for line, warn in notes:
        click.echo(f"Warning: {line}" if warn else line, err=warn)


@contextlib.contextmanager
def _redo_said(what: str, redo: str) -> Iterator[None]:
    """A step after the swap, in its own transaction (all of it, or none), stopped or failed:
    one line saying the restore is done, what is not (``what``) and how to redo it."""
    try:
        with friendly_errors():
            yield
    except KeyboardInterrupt:
        raise Stopped(f" after the restore: {what}: {redo}") from None
    except click.ClickException as exc:
        raise click.ClickException(f"{what} ({exc.message}): once that is fixed, {redo}") from None


def _delete_again(state: Any, kept: Path, undelete: bool) -> tuple[bool, bool]:
    """Delete again, in the restored database, what the database that was there (``kept``)
    records as deleted (`hitl delete`): an erasure survives a restore, and so do the Slack
    messages it knew showed a deleted item (left for `hitl serve` to delete). --undelete keeps
    the items the restored database holds; the deletions of ids it does not hold stay. Whether
    it opened (and so upgraded) the restored database, and whether it deleted an item."""
    from bot.store.erasure import deletions_in
    from bot.store.restore import erasures_in, tell_undeleted

    try:
        deleted = deletions_in(kept)
        messages, attempts = erasures_in(kept, [row[0] for row in deleted])
    except StoreError as exc:  # damaged: what was deleted there is not known
        click.echo(
            f"Warning: no item was deleted again: {kept.name} cannot be read ({exc}), so which"
            " items `hitl delete` deleted after the backup was made is not known, and those the"
            f" backup holds are in {state.settings.db} again: run `hitl delete` for them again"
            " (your erasure requests name them), and delete their Slack messages by hand.",
            err=True,
        )
        return False, False
    if not deleted and not messages:
        return False, False
    told = 0
    with state.open_existing_store() as store:
        present, queued = store.delete_again(deleted, messages, attempts, undelete=undelete)
        if undelete:  # their deliveries went with them: told what the restored database says
            told = tell_undeleted(store, present)
    if undelete:
        if present:
            tell = (
                f"; {count(told, 'webhook')} queued to tell their producers what the restored"
                " database says (`hitl serve` sends them)"
                if told
                else ""
            )
            click.echo(
                f"Kept {count(len(present), 'item')} deleted after the backup was made"
                f" ({first_few(present)}): --undelete{tell}."
            )
        held = set(present)
        gone = [row[0] for row in deleted if row[0] not in held]
        if gone:
            click.echo(
                f"Still deleted: {count(len(gone), 'item')} the backup does not hold"
                f" ({first_few(gone)}), as {kept.name} records:"
                f" {'its id stays' if len(gone) == 1 else 'their ids stay'} out of imports and"
                " the API."
            )
    elif present:
        click.echo(
            f"Deleted again: {count(len(present), 'item')} deleted (`hitl delete`) after the"
            f" backup was made ({first_few(present)}), as {kept.name} records; `hitl serve`"
            " deletes their Slack messages. --undelete keeps them."
        )
    if queued:
        # ``messages``: those the database that was there had left to delete, of items `hitl
        # delete` deleted or (an earlier restore's) of items its backup did not hold, and
        # the posts of the items it records as deleted
        of = (
            "of items deleted (`hitl delete`)"
            if deleted
            else "the database that was there still had to delete (of items the backup never held)"
        )
        click.echo(
            f"Left to delete: {count(queued, 'Slack message')} {of}, as {kept.name} records;"
            " `hitl serve` deletes them."
        )
    return True, bool(present) and not undelete


def _anonymise_again(state: Any, kept: Path) -> tuple[bool, bool]:
    """Anonymise again, in the restored database, the people the database that was there
    (``kept``) records as anonymised (`hitl people anonymise`), whatever --undelete says: their
    answers keep their ids, so the old id each answer of a pseudonym carries here is given
    that pseudonym again. Whether it opened (and so upgraded) the restored database, and
    whether it anonymised someone."""
    from bot.store.people import anonymised_in

    try:
        records = anonymised_in(kept)
    except StoreError as exc:  # damaged: who was anonymised there is not known
        click.echo(
            f"Warning: no one was anonymised again: {kept.name} cannot be read ({exc}), so who"
            " `hitl people anonymise` anonymised after the backup was made is not known, and"
            f" the backup names them in {state.settings.db} again: run `hitl people anonymise`"
            " for them again.",
            err=True,
        )
        return False, False
    if not records:
        return False, False
    with state.open_existing_store() as store:
        again = store.anonymise_again([record for record in records if record[3]])
        known = {row["pseudonym"] for row in store.pseudonyms()}
    if again:
        shown = first_few(again)
        click.echo(
            f"Anonymised again: {count(len(again), 'person', 'people')} ({shown}), anonymised"
            f" (`hitl people anonymise`) after the backup was made, as {kept.name} records."
        )
    # No answer of theirs is left there (deleted with their items, an erasure): nothing to find
    # them by in the backup, which may still name them.
    lost = [record[0] for record in records if not record[3] and record[0] not in known]
    if lost:
        one = len(lost) == 1
        click.echo(
            f"Not anonymised again: {count(len(lost), 'person', 'people')} ({first_few(lost)}),"
            f" anonymised after the backup was made, as {kept.name} records, with no answer"
            f" left there to find {'them' if one else 'each'} by: the backup may still name"
            f" {'that person' if one else 'them'}; run `hitl people anonymise` for"
            f" {'them' if one else 'each'} again."
        )
    return True, bool(again)


def _identity(path: Path) -> tuple[int, int] | None:
    """The file at ``path`` (device, inode; through a symlink), or None for none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _restore_state(db: Path, backup: Path, before: tuple[int, int] | None) -> str:
    """Where an interrupted restore left the database: as it was (its copy of BACKUP removed),
    or, stopped just after the files were swapped, restored (the old one kept)."""
    if _identity(db) == before:
        was = "as it was" if before is not None else "still not there"
        return (
            f": the restore was not done; {db} is {was} (the copy of {backup} was removed):"
            f" run `hitl restore {backup}` again"
        )
    target = Path(os.path.realpath(db))
    kept = [
        path
        for path in target.parent.glob(glob.escape(target.name) + ".before-restore*")
        if before is not None and _identity(path) == before
    ]
    if kept and not db.is_symlink():  # named as the database was (the same folder)
        kept[0] = db.with_name(kept[0].name)
    where = f"; the database that was there is kept as {kept[0]}" if kept else ""
    return f": {db} was restored from {backup} just before it{where}"


def models_note(
    settings: Any, recorded: dict[int, str], state: Any = None, backup: Path | None = None
) -> list[tuple[str, bool]]:
    """What the models folder holds against the versions the restored database records, as
    lines (and whether each is a warning). Model files are not part of the database: a folder
    newer than the backup keeps versions trained after it, and the folder is what is served.
    With ``state`` (the restored database opens without an upgrade, or was upgraded) also
    what `hitl serve` says at start of the folder's models (``reports.unknown_models``): a
    version that is another model than the one the database records under its number, a
    champion the database does not record that was trained on newer labels or other names.
    With ``backup`` (the file restored), versions the folder lacks that ``<backup>.models``
    holds are said with the command that copies it."""
    from bot.learning import reports
    from model import ModelRegistry

    models_dir = settings.models_dir
    registry = ModelRegistry(models_dir) if models_dir.is_dir() else None
    versions, unreadable = registry.scan() if registry is not None else ([], {})
    held = {v.version: v.status for v in versions}
    # versions whose model file was deleted (kept small, or trained on items erased since):
    # their metadata stays, but no rollback brings them back
    no_file = {v.version for v in versions if v.pruned_at}
    backup_champion = next((v for v, s in recorded.items() if s == "champion"), None)
    lines: list[tuple[str, bool]] = []
    if not recorded and not held and not unreadable:
        return [("Models: none in the backup, none in the models folder.", False)]
    shown = _versions(recorded) + (f" (champion v{backup_champion})" if backup_champion else "")
    folder_champion = _champion(held)
    folder = _versions(held) + (f" (champion v{folder_champion})" if folder_champion else "")
    lines.append(
        (
            f"Models: the backup records {shown or 'none'}; {models_dir} holds {folder or 'none'}.",
            False,
        )
    )
    newer = sorted(set(held) - set(recorded))
    if newer:
        which = ", ".join(f"v{v}" for v in newer)
        served = _champion(held)
        back = ""
        if backup_champion is not None and served != backup_champion:
            back = (
                f"; the backup's champion v{backup_champion} has no model file any more (it was"
                " deleted), so no rollback brings it back"
                if backup_champion in no_file
                else f"; `hitl rollback {backup_champion}` makes the backup's champion"
                f" v{backup_champion} the champion again"
            )
        lines.append(
            (
                f"{models_dir} holds {which}, which the backup does not record (trained after it,"
                " perhaps on answers the restore took out); "
                + ("they stay" if len(newer) > 1 else "it stays")
                + " in the folder"
                + (f", and its champion v{served} is the model served" if served else "")
                + f": `hitl models` lists {'them' if len(newer) > 1 else 'it'}{back}",
                True,
            )
        )
    known: dict[int, dict[str, Any]] = {v: {"version": v, "status": s} for v, s in recorded.items()}
    backup_models = backup.with_name(backup.name + ".models") if backup is not None else None
    lines += [
        (line, True)
        for line in reports.lost_models(
            known, versions, unreadable, models_dir, backup_models=backup_models
        )
    ]
    if state is not None:  # what `hitl serve` says at start (and `hitl models`), said now
        with state.open_existing_store() as store:  # as `hitl serve` reads them at start
            rows = {int(m["version"]): m for m in store.models()}
            newest_label = store.labels_watermark()["newest"]
            trained = reports.trained_labels(store, settings.labels)
        lines += [
            (line, True)
            for line in reports.unknown_models(rows, versions, newest_label, models_dir, trained)
        ]
    return lines


def _champion(held: dict[int, str]) -> int | None:
    return max((v for v, s in held.items() if s == "champion"), default=None)


def _versions(versions: dict[int, str] | Any) -> str:
    numbers = sorted(versions)
    if not numbers:
        return ""
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 2:
        return f"v{numbers[0]}–v{numbers[-1]}"
    return ", ".join(f"v{v}" for v in numbers)
