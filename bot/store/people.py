"""Anonymising people (`hitl people anonymise`): a teammate who left keeps their labels, but
not their name.

One transaction replaces each person's user id, wherever it is stored, with a pseudonym of
their own (``former-1``, ``former-2``…), so Dawid–Skene, the agreement (kappas, α) and the gold
accuracy still see distinct annotators, and every label, vote and agreement stays as it was:

- the people's columns: ``answers.user_id``, ``label_history.user_id``,
  ``reviews.decided_by``, ``label_set_changes.user_id``, ``deleted_items.user_id``;
- ``labels.annotators`` (a JSON list);
- ``answered_by_user`` (the row moves to the pseudonym; with ``merge``, a second id of one
  person joins the pseudonym given before, and the row is counted again from the answers);
- the answers' ``dedupe_key`` (``item:user:label:ts`` of a click, ``undo:``/``reopen:`` keys,
  an import's ``import+answer:["user", "item"]``), rewritten with the pseudonym so that the
  keys stay unique and hold no id;
- and any other text that names the id as a word (a gold miss's review ``detail``, a run's
  ``triggered_by`` "<@U…>", a reason typed into the history, a run's JSON ``detail``).

Left as they are, and counted for the command to say so: the columns that name tickets and
labels (item ids, the ticket's text and meta, label names: they are not about the person, and
changing them would break the links between tables and to the producer), and ``locks`` (a
retrain the person started holds its lock under its owner string until it ends).

The Slack questions of the items the person answered or decided are redrawn (``redraw_seq``),
so a running server draws them again without the mention. What stays is that someone was
anonymised, under which pseudonym, by whom and when (``anonymised_people``), never the id.

A Slack retry of a click the person made before (the same ``action_ts``) no longer matches its
rewritten key: it would be stored as a new person's answer. Slack gives up retrying within
minutes of the click, and someone who left cannot click any more: the command says when the
person's last answer is recent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from sqlite_utils import Database

from bot.errors import StoreError

PREFIX = "former-"
# A user id the bot draws as a Slack mention (``bot.words.SLACK_USER``): a pseudonym
# must never look like one, nor like a CLI user (``cli:ana``, from `hitl labels --by`).
_SLACK_ID = re.compile(r"[UWB][A-Z0-9]+")
# Safe in every place it goes: JSON strings, Slack mrkdwn, the terminal, a dedupe key.
_PSEUDONYM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
_NUMBERED = re.compile(re.escape(PREFIX) + r"([0-9]+)")

# The columns that hold one user id each.
PEOPLE_COLUMNS = (
    ("answers", "user_id"),
    ("label_history", "user_id"),
    ("reviews", "decided_by"),
    ("label_set_changes", "user_id"),
    ("deleted_items", "user_id"),
    ("answered_by_user", "user_id"),
)
# Columns that name tickets and labels, not people: never rewritten, occurrences counted.
KEPT_TABLES = {"locks"}
KEPT_COLUMNS = {("items", "id"), ("items", "text"), ("items", "meta"), ("legacy_text_ids", "id")}
KEPT_NAMES = {
    "item_id",
    "label",
    "old_label",
    "new_label",
    "predicted_label",
    "decision",
    "ranked",
    "label_set",
    "predictions",
}
KEPT_LABEL_TABLES = {"label_set", "label_aliases", "label_counts"}
# An answer counts (``bot.store.migrations.COUNTED``): what ``answered_by_user`` is made of.
COUNTED = "source != 'import' AND late = 0"


@dataclass
class Anonymised:
    """What ``anonymise_people`` changed for one person: rows per table (``rows``), the
    Slack question messages to redraw, occurrences left as they are (``kept``, per
    ``table.column``), and when their latest answer from Slack was given."""

    pseudonym: str
    rows: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    last_answer: str | None = None

    @property
    def changed(self) -> int:
        return sum(self.rows.values())


class PeopleMixin:
    """Methods of ``Store``; they use ``self.db``, ``self.now`` and ``self._immediate``."""

    db: Database
    now: Callable[[], str]
    _immediate: Callable[[], AbstractContextManager[None]]

    def anonymise_people(
        self,
        user_ids: Sequence[str],
        *,
        done_by: str,
        pseudonym: str | None = None,
        merge: bool = False,
    ) -> list[Anonymised]:
        """Replace each of ``user_ids`` everywhere with a pseudonym of its own (``former-N``,
        the next free N), or with ``pseudonym`` (one id only), in one transaction: all, or (an
        unknown id, a refused pseudonym) none, with a one-line ``StoreError``. A pseudonym given
        before is refused (two people would become one annotator) unless ``merge``: a second
        id of the same person joins it."""
        ids = list(dict.fromkeys(user_ids))
        if not ids or any(not u.strip() for u in ids):
            raise StoreError("no user id given")
        if pseudonym is not None and len(ids) > 1:
            raise StoreError("--as names one person: give one user id (run it again for others)")
        conn = self.db.conn
        conn.execute("PRAGMA secure_delete = ON")  # the old id's bytes are zeroed, not freed
        try:
            with self._immediate():
                recorded = {r[0] for r in conn.execute("SELECT pseudonym FROM anonymised_people")}
                if already := [u for u in ids if u in recorded]:
                    raise StoreError(
                        f"{already[0]!r} is a pseudonym already (anonymised before); nothing"
                        " changed"
                    )
                if pseudonym is not None:
                    self._check_pseudonym(pseudonym, ids[0], recorded, merge)
                elif merge:
                    raise StoreError("--merge needs --as: the pseudonym to merge into")
                done: list[Anonymised] = []
                unknown: list[str] = []
                taken = set(recorded)
                for user in ids:
                    name = pseudonym or self._next_pseudonym(taken)
                    taken.add(name)
                    result = self._anonymise(user, name, merge=name in recorded)
                    if not result.changed:
                        unknown.append(user)
                    done.append(result)
                if unknown:
                    shown = ", ".join(map(repr, unknown[:5])) + (" …" if len(unknown) > 5 else "")
                    raise StoreError(f"no one with user id {shown} is stored; nothing changed")
                now = self.now()
                conn.executemany(
                    "INSERT INTO anonymised_people (pseudonym, done_by, created_at)"
                    " VALUES (?, ?, ?)",
                    [(d.pseudonym, done_by, now) for d in done],
                )
        finally:
            conn.execute("PRAGMA secure_delete = OFF")
        return done

    def pseudonyms(self) -> list[dict[str, str]]:
        """Who was anonymised: the pseudonym, by whom and when, oldest first."""
        return [
            {"pseudonym": r[0], "by": r[1], "at": r[2]}
            for r in self.db.execute(
                "SELECT pseudonym, done_by, created_at FROM anonymised_people ORDER BY id"
            )
        ]

    # -- inside the transaction ----------------------------------------------------------

    def _present(self, user_id: str) -> bool:
        """Whether ``user_id`` is stored as someone's id (in a people column or a label's
        annotators)."""
        conn = self.db.conn
        for table, column in PEOPLE_COLUMNS:
            if conn.execute(
                f"SELECT 1 FROM {table} WHERE {column} = ? LIMIT 1", [user_id]
            ).fetchone():
                return True
        return (
            conn.execute(
                "SELECT 1 FROM labels WHERE EXISTS (SELECT 1 FROM json_each(labels.annotators)"
                " WHERE value = ?) LIMIT 1",
                [user_id],
            ).fetchone()
            is not None
        )

    def _check_pseudonym(self, name: str, user_id: str, recorded: set[str], merge: bool) -> None:
        if not _PSEUDONYM.fullmatch(name):
            raise StoreError(
                f"pseudonym {name!r}: use 1 to 40 letters, digits, '.', '_' or '-', starting with"
                " a letter or digit; nothing changed"
            )
        if _SLACK_ID.fullmatch(name):
            raise StoreError(
                f"pseudonym {name!r} looks like a user id (a Slack id or a cli: user): pick one"
                " that names no one, as former-1; nothing changed"
            )
        if name == user_id or user_id in name:
            raise StoreError(f"pseudonym {name!r} holds the id it replaces; nothing changed")
        if name in recorded and not merge:
            raise StoreError(
                f"{name!r} is the pseudonym of someone anonymised before: pick another (two"
                " people would become one annotator), or add --merge if both ids are one"
                " person's; nothing changed"
            )
        if merge and name not in recorded:
            raise StoreError(f"--merge: {name!r} is no pseudonym given before; nothing changed")
        if name not in recorded and self._present(name):
            raise StoreError(
                f"pseudonym {name!r} is the user id of someone stored: pick another; nothing"
                " changed"
            )

    def _next_pseudonym(self, taken: set[str]) -> str:
        """``former-N`` for the next N after every one given before and free of any stored id."""
        n = max((int(m[1]) for t in taken if (m := _NUMBERED.fullmatch(t))), default=0) + 1
        while f"{PREFIX}{n}" in taken or self._present(f"{PREFIX}{n}"):
            n += 1
        return f"{PREFIX}{n}"

    def _anonymise(self, user: str, name: str, *, merge: bool) -> Anonymised:
        conn = self.db.conn
        done = Anonymised(name)
        changed: dict[str, set[int]] = {}
        items: set[str] = set()

        def mark(table: str, rowid: int) -> None:
            changed.setdefault(table, set()).add(rowid)

        (done.last_answer,) = conn.execute(
            "SELECT max(created_at) FROM answers WHERE user_id = ? AND source != 'import'",
            [user],
        ).fetchone()
        # answers: the id and the dedupe key that holds it
        rows = conn.execute(
            "SELECT id, item_id, dedupe_key FROM answers WHERE user_id = ?", [user]
        ).fetchall()
        for answer_id, item_id, key in rows:
            new_key = _rekey(str(key), str(item_id), user, name)
            if (
                new_key != key
                and conn.execute(
                    "SELECT 1 FROM answers WHERE dedupe_key = ? AND id != ?", [new_key, answer_id]
                ).fetchone()
            ):
                new_key = f"{new_key}#{answer_id}"  # two ids merged into one pseudonym
            conn.execute(
                "UPDATE answers SET user_id = ?, dedupe_key = ? WHERE id = ?",
                [name, new_key, answer_id],
            )
            mark("answers", answer_id)
            items.add(item_id)
        # labels.annotators: the id in the list (once, if merged into someone already there)
        rows = conn.execute(
            "SELECT rowid, item_id, annotators FROM labels WHERE EXISTS (SELECT 1 FROM"
            " json_each(labels.annotators) WHERE value = ?)",
            [user],
        ).fetchall()
        for rowid, item_id, annotators in rows:
            renamed = [name if a == user else a for a in json.loads(annotators)]
            conn.execute(
                "UPDATE labels SET annotators = ? WHERE rowid = ?",
                [json.dumps(list(dict.fromkeys(renamed))), rowid],
            )
            mark("labels", rowid)
            items.add(item_id)
        # the columns that hold one id each
        for table, column in PEOPLE_COLUMNS:
            if table in ("answers", "answered_by_user"):
                continue
            item_column = "item_id" if table in ("label_history", "reviews") else "NULL"
            rows = conn.execute(
                f"SELECT rowid, {item_column} FROM {table} WHERE {column} = ?", [user]
            ).fetchall()
            for rowid, item_id in rows:
                mark(table, rowid)
                if item_id is not None:
                    items.add(item_id)
            conn.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", [name, user])
        # answered_by_user: moved, or merged into the pseudonym's row (counted again from the
        # answers, as the triggers count: an item once per person, however many ids)
        if conn.execute("SELECT 1 FROM answered_by_user WHERE user_id = ?", [user]).fetchone():
            mark("answered_by_user", 0)
            if merge:
                conn.execute("DELETE FROM answered_by_user WHERE user_id IN (?, ?)", [user, name])
                conn.execute(
                    "INSERT INTO answered_by_user (user_id, n, labeled) SELECT ?, count(*),"
                    " coalesce(sum(label IS NOT NULL), 0) FROM answers WHERE id IN (SELECT max(id)"
                    f" FROM answers WHERE user_id = ? AND {COUNTED} GROUP BY item_id)"
                    " AND source != 'undo'",
                    [name, name],
                )
            else:
                conn.execute(
                    "UPDATE answered_by_user SET user_id = ? WHERE user_id = ?", [name, user]
                )
        # any other text that names the id as a word
        self._sweep(user, name, done, mark, items)
        done.rows = {table: len(rowids) for table, rowids in changed.items()}
        if items:
            ids = sorted(items)
            for n in range(0, len(ids), 500):
                chunk = ids[n : n + 500]
                done.messages += conn.execute(
                    "UPDATE posts SET redraw_seq = redraw_seq + 1"
                    f" WHERE item_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).rowcount
        return done

    def _sweep(
        self,
        user: str,
        name: str,
        done: Anonymised,
        mark: Callable[[str, int], None],
        items: set[str],
    ) -> None:
        """Every text column of every table: the id as a word (not inside a longer id) is
        replaced, except in the columns that name tickets and labels, where it is counted."""
        conn = self.db.conn
        word = re.compile(rf"(?<![A-Za-z0-9]){re.escape(user)}(?![A-Za-z0-9])")
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
                " AND name != '_sqlite_migrations' ORDER BY name"
            )
        ]
        for table in tables:
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            has_item = "item_id" in columns
            for column in columns:
                found = conn.execute(
                    f'SELECT rowid, "{column}"{", item_id" if has_item else ""} FROM "{table}"'
                    f' WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                    [user],
                ).fetchall()
                hits = [row for row in found if word.search(row[1])]
                if not hits:
                    continue
                if (
                    table in KEPT_TABLES
                    or table in KEPT_LABEL_TABLES
                    or (table, column) in KEPT_COLUMNS
                    or column in KEPT_NAMES
                ):
                    done.kept[f"{table}.{column}"] = len(hits)
                    continue
                for row in hits:
                    conn.execute(
                        f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?',
                        [word.sub(name, row[1]), row[0]],
                    )
                    mark(table, row[0])
                    if has_item:
                        items.add(row[2])


def _rekey(key: str, item_id: str, user: str, name: str) -> str:
    """An answer's dedupe key with ``user`` replaced by ``name``, in each form keys take: a
    click's ``item:user:label:ts`` (``bot.slack.app``), ``undo:item:user:…`` and
    ``reopen:item:user:…`` (``bot.store.queue``), an import's ``import+answer:["user",
    "item"]`` (``bot.store.records``); any other key where it holds the id as a word."""
    for head in ("", "undo:", "reopen:"):
        before = f"{head}{item_id}:{user}:"
        if key.startswith(before):
            return f"{head}{item_id}:{name}:" + key[len(before) :]
    imported = json.dumps([user, item_id])
    if key.endswith(":" + imported):
        return key[: -len(imported)] + json.dumps([name, item_id])
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(user)}(?![A-Za-z0-9])", name, key)
