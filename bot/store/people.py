"""Anonymising people (`hitl people anonymise`): a teammate who left keeps their labels, but
not their name.

A read finds where each person's user id is stored (it holds no lock: a running server keeps
writing), then one short transaction replaces it in those rows (and in rows added since the
read) with a pseudonym of their own (``former-1``, ``former-2``…), so Dawid–Skene, the
agreement (kappas, α) and the gold accuracy still see distinct annotators, and every label,
vote and agreement stays as it was:

- the people's columns: ``answers.user_id``, ``label_history.user_id``,
  ``reviews.decided_by``, ``label_set_changes.user_id``, ``deleted_items.user_id``;
- ``labels.annotators`` (a JSON list);
- ``answered_by_user`` (the row moves to the pseudonym; with ``merge``, a second id of one
  person joins the pseudonym given before, and the row is counted again from the answers);
- the answers' ``dedupe_key`` (``item:user:label:ts`` of a click, ``undo:``/``reopen:`` keys,
  an import's ``import+answer:["user", "item"]``), rewritten with the pseudonym so that the
  keys stay unique and hold no id;
- and any other text that names the id as a word (a gold miss's review ``detail``, a run's
  ``triggered_by`` "<@U…>", a reason typed into the history, a run's JSON ``detail``), except
  the columns that name kinds, statuses, reason codes and sources (``NOT_PEOPLE_*``).

Names slack-hitl itself writes where a person's id goes ("import", "gold", "api", "restore",
"cli"…: ``PRODUCT_NAMES``) are refused: they are no one, and the same words are sources and
kinds. `hitl restore` anonymises again the people the database it replaces records
(``anonymised_in``, ``anonymise_again``): their answers keep their ids.

Left as they are, and counted for the command to say so: the columns that name tickets and
labels (item ids, the ticket's text and meta, label names: they are not about the person, and
changing them would break the links between tables and to the producer); and ``locks``, not
a ticket (a retrain or rollback the person started holds its lock under its owner string until
it ends, and its model, run and report will name them: ``running``, the command says so).

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
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from bot.errors import StoreError
from bot.store.erasure import read_only, tables_of

PREFIX = "former-"
# A user id the bot draws as a Slack mention (``bot.words.SLACK_USER``): a pseudonym
# must never look like one, nor like a CLI user (``cli:ana``, from `hitl labels --by`).
_SLACK_ID = re.compile(r"[UWB][A-Z0-9]+")
# Safe in every place it goes: JSON strings, Slack mrkdwn, the terminal, a dedupe key.
_PSEUDONYM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
_NUMBERED = re.compile(re.escape(PREFIX) + r"([0-9]+)")

# The names slack-hitl itself writes where a person's id goes: never a person, and the same
# words name the sources, kinds and statuses of rows (``items.source`` 'import'/'gold'/'api',
# ``runs.kind`` 'import', ``reviews.reason`` 'gold_miss'…). Imported labels' answers and
# annotators (``bot.store.core.IMPORT_USER``), gold items, the API's and a restore's deletions
# (``deleted_items.user_id`` 'api'/'restore'), a CLI user with no login name and the runs it
# starts ('cli'), an answer's source ('undo', 'reopen', 'button', 'demo'), a model's vote.
PRODUCT_NAMES = frozenset(
    {"import", "gold", "api", "restore", "cli", "undo", "reopen", "button", "demo", "model"}
)

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
# Columns that can never hold a person, so the whole-word scan neither reads nor rewrites them:
# the kind, status, source, action or strategy of a row and the reason code of a review or a
# post (``reviews.reason`` 'gold_miss', ``posts.reason`` 'gold': words the product writes,
# one of them a name a person's id could also be), times (``*_at``), counts of statuses
# (``item_counts``), Slack channels and message ts, webhook URLs and receivers. Free-text
# reasons (``label_history.reason``, ``label_set_changes.reason``, ``deleted_items.reason``,
# ``models.reason``) and details stay scanned: a person types them.
NOT_PEOPLE_NAMES = {"source", "kind", "status", "action", "strategy", "channel", "ts"}
NOT_PEOPLE_TABLES = {"_sqlite_migrations", "item_counts", "erased_posts", "stop_draws"}
NOT_PEOPLE_COLUMNS = {
    ("reviews", "reason"),
    ("posts", "reason"),
    ("post_attempts", "reason"),
    ("deliveries", "url"),
    ("deliveries", "receiver"),
    ("deliveries", "key"),  # a random key (or, for rows before m046, its row id)
    ("deliveries", "restates"),  # a delivery's key (m047), or ''
    ("items", "callback_url"),
}
# An answer counts (``bot.store.migrations.COUNTED``): what ``answered_by_user`` is made of.
COUNTED = "source != 'import' AND late = 0"
_CHUNK = 500


@dataclass
class Anonymised:
    """What ``anonymise_people`` changed for one person: rows per table (``rows``), the
    Slack question messages to redraw, occurrences left as they are (``kept``, per
    ``table.column``), the running jobs they started (``running``: the ``locks`` that name
    them, a retrain or rollback whose model, run and report will), and when their latest
    answer from Slack was given."""

    pseudonym: str
    rows: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    last_answer: str | None = None
    running: int = 0

    @property
    def changed(self) -> int:
        return sum(self.rows.values())


@dataclass
class _Found:
    """Where one id is stored, as a read saw it before the write transaction: the rowids of
    each (table, column) that held it, the occurrences left as they are, the last answer."""

    user: str
    name: str
    merge: bool
    rows: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    last_answer: str | None = None
    running: int = 0


@dataclass
class _Plan:
    """What the read found: the pseudonyms recorded then, the last rowid of each table (a
    row added after it is looked at again in the write transaction), each id's places."""

    recorded: set[str]
    tops: dict[str, int]
    columns: dict[str, list[str]]
    found: list[_Found]


class PeopleMixin:
    """Methods of ``Store``; they use ``self.db``, ``self.now`` and ``self._immediate``."""

    db: Database
    now: Callable[[], str]
    _immediate: Callable[[], AbstractContextManager[None]]
    write_result: Any

    def anonymise_people(
        self,
        user_ids: Sequence[str],
        *,
        done_by: str,
        pseudonym: str | None = None,
        merge: bool = False,
        progress: Callable[[int, int], object] | None = None,
    ) -> list[Anonymised]:
        """Replace each of ``user_ids`` everywhere with a pseudonym of its own (``former-N``,
        the next free N), or with ``pseudonym`` (one id only), in one transaction: all, or (an
        unknown id, a refused pseudonym) none, with a one-line ``StoreError``. A pseudonym given
        before is refused (two people would become one annotator) unless ``merge``: a second
        id of the same person joins it.

        Where each id is stored is found first, by reads that hold no lock (a running server
        keeps writing); the write transaction then changes only those rows (each checked to
        still hold the id) and the rows added since, so the write lock is held for as long
        as the rows take to change, not for a scan of every text column. That scan takes a
        few seconds an id at a million items: ``progress(done, total)`` after each column."""
        ids = list(dict.fromkeys(user_ids))
        if not ids or any(not u.strip() for u in ids):
            raise StoreError("no user id given")
        if pseudonym is not None and len(ids) > 1:
            raise StoreError("--as names one person: give one user id (run it again for others)")
        if product := [u for u in ids if u in PRODUCT_NAMES]:
            raise StoreError(
                f"{product[0]!r} is a name slack-hitl itself writes (imported labels, gold items,"
                " the API's and a restore's deletions, the CLI), not a person's id; nothing"
                " changed"
            )
        if merge and pseudonym is None:
            raise StoreError("--merge needs --as: the pseudonym to merge into")

        def names(recorded: set[str]) -> list[tuple[str, str, bool]]:
            if already := [u for u in ids if u in recorded]:
                raise StoreError(
                    f"{already[0]!r} is a pseudonym already (anonymised before); nothing changed"
                )
            if pseudonym is not None:
                self._check_pseudonym(pseudonym, ids[0], recorded, merge)
                return [(ids[0], pseudonym, pseudonym in recorded)]
            taken = set(recorded)
            chosen = []
            for user in ids:
                name = self._next_pseudonym(taken)
                taken.add(name)
                chosen.append((user, name, False))
            return chosen

        return self._anonymise_all(names, {}, done_by, progress)

    def anonymise_again(
        self, records: Sequence[tuple[str, str, str, list[tuple[Any, ...]]]]
    ) -> list[str]:
        """After a restore: anonymise again, as the pseudonym the database that was there
        gave them, the ids that answers of that pseudonym carry here (``anonymised_in``: the
        same answer, by id, item and time). Merges into a pseudonym recorded here; records one
        that is not, with who gave it and when. The pseudonyms given again, in order."""
        conn = self.db.conn
        pairs: list[tuple[str, str]] = []
        given: dict[str, tuple[str, str]] = {}
        for name, done_by, created_at, answers in records:
            if not _PSEUDONYM.fullmatch(name) or _SLACK_ID.fullmatch(name):
                continue
            users: set[str] = set()
            for n in range(0, len(answers), _CHUNK):
                chunk = answers[n : n + _CHUNK]
                users |= {
                    r[0]
                    for r in conn.execute(
                        "SELECT a.user_id FROM answers a JOIN json_each(?) j"
                        " ON a.id = json_extract(j.value, '$[0]')"
                        " AND a.item_id = json_extract(j.value, '$[1]')"
                        " AND a.created_at = json_extract(j.value, '$[2]')",
                        [json.dumps([list(row) for row in chunk])],
                    )
                }
            users -= {name, *PRODUCT_NAMES}
            if users:
                given[name] = (done_by, created_at)
                pairs += [(user, name) for user in sorted(users)]
        if not pairs:
            return []

        def names(recorded: set[str]) -> list[tuple[str, str, bool]]:
            pending = set(recorded)
            chosen = []
            for user, name in pairs:
                chosen.append((user, name, name in pending))
                pending.add(name)
            return chosen

        self._anonymise_all(names, given, "restore")
        return list(given)

    def pseudonyms(self) -> list[dict[str, str]]:
        """Who was anonymised: the pseudonym, by whom and when, oldest first."""
        return [
            {"pseudonym": r[0], "by": r[1], "at": r[2]}
            for r in self.db.execute(
                "SELECT pseudonym, done_by, created_at FROM anonymised_people ORDER BY id"
            )
        ]

    # -- the two steps: a read that finds, a short write that changes -------------------

    def _anonymise_all(
        self,
        names: Callable[[set[str]], list[tuple[str, str, bool]]],
        given: dict[str, tuple[str, str | None]],
        done_by: str,
        progress: Callable[[int, int], object] | None = None,
    ) -> list[Anonymised]:
        conn = self.db.conn
        conn.execute("PRAGMA secure_delete = ON")  # the old id's bytes are zeroed, not freed
        try:
            for _ in range(3):
                plan = self._read(names, progress)
                with self._immediate():
                    recorded = self._recorded()
                    if recorded != plan.recorded:
                        continue  # someone anonymised meanwhile: find again
                    # a new pseudonym stored as someone's id since the read (it saw the rest)
                    if any(not f.merge and self._present(f.name, plan.tops) for f in plan.found):
                        continue
                    done = [self._apply(found, plan) for found in plan.found]
                    unknown = [f.user for f, d in zip(plan.found, done, strict=True) if d is None]
                    if unknown:
                        shown = ", ".join(map(repr, unknown[:5])) + (
                            " …" if len(unknown) > 5 else ""
                        )
                        raise StoreError(f"no one with user id {shown} is stored; nothing changed")
                    now = self.now()
                    new = list(dict.fromkeys(f.name for f in plan.found if not f.merge))
                    conn.executemany(
                        "INSERT INTO anonymised_people (pseudonym, done_by, created_at)"
                        " VALUES (?, ?, ?)",
                        [
                            (
                                name,
                                given.get(name, (done_by, None))[0],
                                given.get(name, (done_by, None))[1] or now,
                            )
                            for name in new
                        ],
                    )
                    made = [d for d in done if d is not None]
                    self.write_result = made  # for a caller stopped just after the commit
                return made
            raise StoreError(
                "other people were anonymised while this ran, again and again; nothing changed:"
                " run it again"
            )
        finally:
            conn.execute("PRAGMA secure_delete = OFF")

    def _recorded(self) -> set[str]:
        return {r[0] for r in self.db.conn.execute("SELECT pseudonym FROM anonymised_people")}

    def _read(
        self,
        names: Callable[[set[str]], list[tuple[str, str, bool]]],
        progress: Callable[[int, int], object] | None = None,
    ) -> _Plan:
        """One read transaction (a snapshot; it holds no write lock): the checks, the
        pseudonyms and where each id is stored (``progress(done, total)``: after each column
        of each id)."""
        conn = self.db.conn
        began = not conn.in_transaction
        if began:
            conn.execute("BEGIN")
        try:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE"
                    " 'sqlite%' ORDER BY name"
                )
                if r[0] not in NOT_PEOPLE_TABLES
            ]
            tops = {
                t: conn.execute(f'SELECT coalesce(max(rowid), 0) FROM "{t}"').fetchone()[0]
                for t in tables
            }
            columns = {t: [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')] for t in tables}
            recorded = self._recorded()
            found = []
            chosen = names(recorded)
            scanned = sum(not _not_people(t, c) for t, names_ in columns.items() for c in names_)
            total, done = len(chosen) * scanned, [0]

            def tick() -> None:
                done[0] += 1
                if progress is not None:
                    progress(done[0], total)

            for user, name, merge in chosen:
                place = _Found(user, name, merge)
                self._locate(place, columns, tick)
                found.append(place)
            return _Plan(recorded, tops, columns, found)
        finally:
            if began and conn.in_transaction:
                conn.execute("COMMIT")

    def _locate(
        self, place: _Found, columns: dict[str, list[str]], tick: Callable[[], None]
    ) -> None:
        """Where ``place.user`` is stored: its people columns, the labels it voted for, any
        other text that names it as a word (the columns that name tickets and labels:
        counted, as ``kept``)."""
        conn = self.db.conn
        user = place.user
        (place.last_answer,) = conn.execute(
            "SELECT max(created_at) FROM answers WHERE user_id = ? AND source != 'import'",
            [user],
        ).fetchone()
        for table, column in PEOPLE_COLUMNS:
            if table in columns:
                place.rows[(table, column)] = {
                    r[0]
                    for r in conn.execute(f"SELECT rowid FROM {table} WHERE {column} = ?", [user])
                }
        place.rows[("labels", "annotators")] = {
            r[0]
            for r in conn.execute(
                "SELECT rowid FROM labels WHERE EXISTS (SELECT 1 FROM"
                " json_each(labels.annotators) WHERE value = ?)",
                [user],
            )
        }
        word = _word(user)
        for table, names in columns.items():
            for column in names:
                if _not_people(table, column):
                    continue
                hits = [
                    r[0]
                    for r in conn.execute(
                        f'SELECT rowid, "{column}" FROM "{table}"'
                        f' WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                        [user],
                    )
                    if word.search(r[1])
                ]
                tick()
                if not hits:
                    continue
                if table in KEPT_TABLES:  # a job they started holds its lock: not a ticket
                    place.running += len(hits)
                elif _kept(table, column):
                    place.kept[f"{table}.{column}"] = len(hits)
                else:
                    place.rows.setdefault((table, column), set()).update(hits)

    def _apply(self, place: _Found, plan: _Plan) -> Anonymised | None:
        """Inside the write transaction: the rows the read found, each checked to still hold
        the id, and the rows added since; None if no people column nor label holds it (and,
        for a Slack id, no text names it)."""
        conn = self.db.conn
        user, name = place.user, place.name
        done = Anonymised(
            name, kept=dict(place.kept), last_answer=place.last_answer, running=place.running
        )
        changed: dict[str, set[int]] = {}
        items: set[str] = set()

        def mark(table: str, rowid: int) -> None:
            changed.setdefault(table, set()).add(rowid)

        def rows(
            table: str, column: str, select: str, where: str, args: list[Any], extra: Any = ()
        ) -> list[Any]:
            """``select`` of the rows of ``table`` the read found holding the id in ``column``
            (and ``extra``), or added since, where ``where`` holds."""
            if table not in plan.tops:
                return []
            known = sorted(set(place.rows.get((table, column), ())) | set(extra))
            found = []
            for n in range(0, len(known), _CHUNK):
                chunk = known[n : n + _CHUNK]
                found += conn.execute(
                    f'SELECT rowid, {select} FROM "{table}" WHERE rowid IN'
                    f" ({','.join('?' * len(chunk))}) AND rowid <= ? AND ({where})",
                    [*chunk, plan.tops[table], *args],
                ).fetchall()
            return (
                found
                + conn.execute(
                    f'SELECT rowid, {select} FROM "{table}" WHERE rowid > ? AND ({where})',
                    [plan.tops[table], *args],
                ).fetchall()
            )

        # answers: the id and the dedupe key that holds it
        for answer_id, item_id, key in rows(
            "answers", "user_id", "item_id, dedupe_key", "user_id = ?", [user]
        ):
            new_key = _rekey(str(key), str(item_id), user, name)
            if (
                new_key != key
                and conn.execute(
                    "SELECT 1 FROM answers WHERE dedupe_key = ? AND id != ?", [new_key, answer_id]
                ).fetchone()
            ):
                new_key = f"{new_key}#{answer_id}"  # two ids merged into one pseudonym
            conn.execute(
                "UPDATE answers SET user_id = ?, dedupe_key = ? WHERE rowid = ?",
                [name, new_key, answer_id],
            )
            mark("answers", answer_id)
            items.add(item_id)
        # labels.annotators: the id in the list (once, if merged into someone already there);
        # the labels of the items they answered looked at again (a vote resolved since)
        again: set[int] = set()
        answered = sorted(items)
        for n in range(0, len(answered), _CHUNK):
            chunk = answered[n : n + _CHUNK]
            again |= {
                r[0]
                for r in conn.execute(
                    f"SELECT rowid FROM labels WHERE item_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            }
        for rowid, item_id, annotators in rows(
            "labels",
            "annotators",
            "item_id, annotators",
            "annotators IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(labels.annotators)"
            " WHERE value = ?)",
            [user],
            again,
        ):
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
            for rowid, item_id in rows(table, column, item_column, f"{column} = ?", [user]):
                conn.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", [name, rowid])
                mark(table, rowid)
                if item_id is not None:
                    items.add(item_id)
        # answered_by_user: moved, or merged into the pseudonym's row (counted again from the
        # answers, as the triggers count: an item once per person, however many ids)
        if conn.execute("SELECT 1 FROM answered_by_user WHERE user_id = ?", [user]).fetchone():
            mark("answered_by_user", 0)
            if place.merge:
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
        person = bool(changed)
        # any other text that names the id as a word
        word = _word(user)
        for table, names in plan.columns.items():
            has_item = "item_id" in names
            for column in names:
                if _not_people(table, column) or _kept(table, column):
                    continue
                for row in rows(
                    table,
                    column,
                    f'"{column}"' + (", item_id" if has_item else ""),
                    f'"{column}" IS NOT NULL AND typeof("{column}") = \'text\''
                    f' AND instr("{column}", ?) > 0',
                    [user],
                ):
                    if not word.search(row[1]):
                        continue
                    conn.execute(
                        f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?',
                        [word.sub(name, row[1]), row[0]],
                    )
                    mark(table, row[0])
                    if has_item:
                        items.add(row[2])
        if not person and not (changed and _SLACK_ID.fullmatch(user)):
            return None
        done.rows = {table: len(rowids) for table, rowids in changed.items()}
        if items:
            ids = sorted(items)
            for n in range(0, len(ids), _CHUNK):
                chunk = ids[n : n + _CHUNK]
                done.messages += conn.execute(
                    "UPDATE posts SET redraw_seq = redraw_seq + 1"
                    f" WHERE item_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).rowcount
        return done

    # -- checks ---------------------------------------------------------------------------

    def _present(self, user_id: str, tops: dict[str, int] | None = None) -> bool:
        """Whether ``user_id`` is stored as someone's id (in a people column or a label's
        annotators); with ``tops``, only in the rows added after them (the read saw the
        others)."""
        conn = self.db.conn

        def since(table: str) -> tuple[str, list[int]]:
            return ("", []) if tops is None else (" AND rowid > ?", [tops.get(table, 0)])

        for table, column in PEOPLE_COLUMNS:
            extra, args = since(table)
            if conn.execute(
                f"SELECT 1 FROM {table} WHERE {column} = ?{extra} LIMIT 1", [user_id, *args]
            ).fetchone():
                return True
        extra, args = since("labels")
        return (
            conn.execute(
                "SELECT 1 FROM labels WHERE EXISTS (SELECT 1 FROM json_each(labels.annotators)"
                f" WHERE value = ?){extra} LIMIT 1",
                [user_id, *args],
            ).fetchone()
            is not None
        )

    def _check_pseudonym(
        self,
        name: str,
        user_id: str,
        recorded: set[str],
        merge: bool,
        tops: dict[str, int] | None = None,
    ) -> None:
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
        if name in PRODUCT_NAMES:
            raise StoreError(
                f"pseudonym {name!r} is a name slack-hitl itself writes: pick another; nothing"
                " changed"
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
        if name not in recorded and self._present(name, tops):
            raise StoreError(
                f"pseudonym {name!r} is the user id of someone stored: pick another; nothing"
                " changed"
            )

    def _next_pseudonym(self, taken: set[str], tops: dict[str, int] | None = None) -> str:
        """``former-N`` for the next N after every one given before and free of any stored id."""
        n = max((int(m[1]) for t in taken if (m := _NUMBERED.fullmatch(t))), default=0) + 1
        while f"{PREFIX}{n}" in taken or self._present(f"{PREFIX}{n}", tops):
            n += 1
        return f"{PREFIX}{n}"


def anonymised_in(path: str | Path) -> list[tuple[str, str, str, list[tuple[int, str, str]]]]:
    """The anonymisations the database at ``path`` records (pseudonym, by, when), each with the
    answers that carry the pseudonym there (id, item id, time): read only; none from a
    database made before `hitl people anonymise` existed (no such table). One that cannot be
    read (damaged) raises ``StoreError`` with SQLite's words: who was anonymised there is not
    known, which is not "no one"."""

    def read(conn: sqlite3.Connection) -> list[tuple[str, str, str, list[tuple[int, str, str]]]]:
        if "anonymised_people" not in tables_of(conn):
            return []
        records = conn.execute(
            "SELECT pseudonym, done_by, created_at FROM anonymised_people ORDER BY id"
        ).fetchall()
        return [
            (
                name,
                by,
                at,
                conn.execute(
                    "SELECT id, item_id, created_at FROM answers WHERE user_id = ? ORDER BY id",
                    [name],
                ).fetchall(),
            )
            for name, by, at in records
        ]

    return read_only(path, read)


def _word(user: str) -> re.Pattern[str]:
    """``user`` as a word: not inside a longer id."""
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(user)}(?![A-Za-z0-9])")


def _not_people(table: str, column: str) -> bool:
    return (
        table in NOT_PEOPLE_TABLES
        or column in NOT_PEOPLE_NAMES
        or column.endswith("_at")
        or (table, column) in NOT_PEOPLE_COLUMNS
    )


def _kept(table: str, column: str) -> bool:
    return (
        table in KEPT_TABLES
        or table in KEPT_LABEL_TABLES
        or (table, column) in KEPT_COLUMNS
        or column in KEPT_NAMES
    )


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
