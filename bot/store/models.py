"""The learning loop: training data, the retrain lock, model versions, live accuracy."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sqlite_utils import Database

from bot.store.records import LabelMark

logger = logging.getLogger("bot.store")


class ModelsMixin:
    """Methods of ``Store``; they use ``self.db``, ``self.now`` and ``self._immediate``."""

    db: Database
    now: Callable[[], str]

    # -- the learning loop: training data, locks, models, live accuracy --

    def training_data(self) -> list[tuple[str, str, str, str]]:
        """(item id, text, label, resolved_at) of every resolved item, oldest first, except
        gold items: the model never learns a gold answer. A champion trained on one guesses
        it on the gold question, and the guess (shown, and the first button) gives it away:
        gold would measure who follows the model. An item made gold no more (`hitl labels
        remove`, then a label) trains as any other."""
        return self.db.execute(
            "SELECT l.item_id, i.text, l.label, l.resolved_at FROM labels l"
            " JOIN items i ON i.id = l.item_id"
            " WHERE NOT EXISTS (SELECT 1 FROM gold g WHERE g.item_id = l.item_id)"
            " ORDER BY l.resolved_at, l.rowid"
        ).fetchall()

    def audit_answered_since(self, mark: LabelMark) -> set[str]:
        """Items asked as random audits whose label was written after ``mark`` (a model's
        training read; the empty mark: all): the answers a refresh of the working model holds
        out to gate itself on."""
        where, args = mark.after("l")
        rows = self.db.execute(
            "SELECT DISTINCT l.item_id FROM labels l JOIN posts p ON p.item_id = l.item_id"
            f" WHERE p.reason = 'audit' AND ({where})",
            args,
        ).fetchall()
        return {row[0] for row in rows}

    def labels_after(self, mark: LabelMark) -> set[str]:
        """The items whose label was written after ``mark`` (a model's training read: not in
        its training, relabelled ones too)."""
        where, args = mark.after("labels")
        return {
            row[0] for row in self.db.execute(f"SELECT item_id FROM labels WHERE {where}", args)
        }

    def label_mark(self) -> LabelMark:
        """Where the labels are now, as a model's training read records it: the count of label
        writes (m034) and the newest label's time. A rollback records it (its run's detail:
        ``label_seq``, ``label_watermark``), so the labels given since it count by the order
        they were written in, not by the clock (``rolled_back_mark``)."""
        seq = self.db.execute("SELECT n FROM label_clock").fetchone()[0]
        newest = self.db.execute("SELECT max(resolved_at) FROM labels").fetchone()[0]
        return LabelMark(seq=int(seq), at=newest or "")

    def rolled_back_mark(self, version: int) -> LabelMark | None:
        """Where the labels were when a rollback made ``version`` the champion, if the newest
        run that made a champion (a promoted retrain, a rollback; by the order runs were made
        in) is that rollback (None: a promotion made the champion, or no run is recorded). The
        labels written after it are the ones given since it became champion again: by the
        count of label writes it recorded (``label_mark``), so a clock that ran ahead and was
        set right does not make labels given before it look newer; a rollback recorded before
        that counts by its end's time."""
        row = self.db.execute(
            "SELECT kind, finished_at, detail FROM runs WHERE ((kind = 'retrain' AND"
            " status = 'promoted') OR (kind = 'rollback' AND status = 'ok'))"
            " AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None or row[0] != "rollback":
            return None
        try:
            detail = json.loads(row[2] or "{}")
            rolled_to = detail.get("version")
        except (ValueError, AttributeError):
            return None
        if rolled_to != version:
            return None
        seq = detail.get("label_seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return LabelMark(seq=seq, at=str(detail.get("label_watermark") or ""))
        return LabelMark(at=row[1])

    def refresh_version_digest(self, version: int) -> str | None:
        """The digest of what the refresh that took ``version`` was fitted on (m038; None:
        no refresh took it)."""
        row = self.db.execute(
            "SELECT digest FROM refresh_versions WHERE version = ?", [version]
        ).fetchone()
        return row[0] if row else None

    def take_refresh_version(self, version: int, digest: str) -> None:
        """Record that a refresh fitted on ``digest`` took ``version`` (kept across restarts,
        so a later server's refresh of other labels takes another: ``begin_refresh``)."""
        with self._immediate():
            self.db.execute(
                "INSERT OR IGNORE INTO refresh_versions (version, digest, taken_at)"
                " VALUES (?, ?, ?)",
                [version, digest, self.now()],
            )

    def lock_until(self, name: str) -> str | None:
        """When lock ``name`` expires (None: nobody holds it)."""
        row = self.db.execute("SELECT expires_at FROM locks WHERE name = ?", [name]).fetchone()
        return row[0] if row else None

    def lock_holder(
        self,
        name: str,
        now: str,
        *,
        holder_alive: Callable[[str], bool | None] | None = None,
    ) -> str | None:
        """Who holds lock ``name`` (None: nobody), by ``acquire_lock``'s rule: a holder whose
        process runs holds it expired or not, one that is gone holds nothing, one that cannot
        be seen (``holder_alive`` None) holds it until it expires. One read; takes nothing."""
        row = self.db.execute(
            "SELECT owner, expires_at FROM locks WHERE name = ?", [name]
        ).fetchone()
        if row is None:
            return None
        alive = holder_alive(row[0]) if holder_alive else None
        return row[0] if alive or (alive is None and row[1] > now) else None

    def asked_as_uncertain(self) -> set[str]:
        """Items ever posted because the model was unsure of them (reason ``uncertain``) or as
        TypiClust's typical picks (``typical``): their labels are not a sample of the pool, so
        a learning curve is not tested on them. Reads every such post: call it off the event
        loop."""
        rows = self.db.execute(
            "SELECT DISTINCT item_id FROM posts WHERE reason IN ('uncertain', 'typical')"
        )
        return {row[0] for row in rows}

    def drawn_uniformly(self, item_ids: Iterable[str]) -> list[bool]:
        """Per item, whether it was not asked for uncertainty (``asked_as_uncertain``): its
        label is a sample of the pool (cold start, audits, warm-up, imported)."""
        asked = self.asked_as_uncertain()
        return [item_id not in asked for item_id in item_ids]

    def label_count_at_upgrade(self) -> int:
        """The count of label writes when m034 began counting them (the labels then): a model,
        or a run's watermark, from before it read at most those, so any label written since
        is new to it."""
        return int(self.db.execute("SELECT start FROM label_clock").fetchone()[0])

    def labels_watermark(self) -> dict[str, Any]:
        """How many labels there are, the newest resolution and the count of label writes
        (``seq``, m034: a relabel stamped before the newest by a clock stepped back changes it):
        "anything new?" compares it.
        Gold labels (a gold item given another label) and changes to the label set (a retired
        label's items leave training, come back when it is added) count as new too."""
        n, newest = self.db.execute("SELECT count(*), max(resolved_at) FROM labels").fetchone()
        seq = self.db.execute("SELECT n FROM label_clock").fetchone()[0]
        n_gold, gold_newest = self.db.execute(
            "SELECT count(*), max(created_at) FROM gold"
        ).fetchone()
        n_changes = self.db.execute("SELECT count(*) FROM label_set_changes").fetchone()[0]
        return {
            "n_labels": n,
            "newest": newest,
            "seq": seq,
            **({"n_gold": n_gold, "gold_newest": gold_newest} if n_gold else {}),
            **({"label_set_changes": n_changes} if n_changes else {}),
        }

    def acquire_lock(
        self,
        name: str,
        owner: str,
        now: str,
        expires_at: str,
        *,
        holder_alive: Callable[[str], bool | None] | None = None,
        runs: Sequence[str] = (),
    ) -> str | None:
        """Take lock ``name`` unless someone else holds it; return the holder then. A holder
        holds it until it expires; with ``holder_alive`` (True: its process runs, False: it
        is gone, None: cannot tell), one that runs holds it expired or not and one that is
        gone holds nothing. Taking it from another holder ends that holder's unfinished
        ``runs`` (kinds run only under this lock) as failed: they will not finish."""
        with self._immediate():
            row = self.db.execute(
                "SELECT owner, expires_at FROM locks WHERE name = ?", [name]
            ).fetchone()
            if row is not None and row[0] != owner:
                alive = holder_alive(row[0]) if holder_alive else None
                if alive or (alive is None and row[1] > now):
                    return row[0]
                if runs:
                    why = (
                        f"it ended before it finished (its process, {row[0]}, is gone)"
                        if alive is False
                        else f"it did not finish before its lock expired ({row[0]})"
                    )
                    self.db.execute(
                        "UPDATE runs SET status = 'failed', finished_at = ?, detail = ?"
                        f" WHERE status = 'running' AND kind IN ({','.join('?' * len(runs))})",
                        [now, json.dumps({"reason": why}), *runs],
                    )
            self.db.execute(
                "INSERT OR REPLACE INTO locks (name, owner, acquired_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                [name, owner, now, expires_at],
            )
            return None

    def release_lock(self, name: str, owner: str) -> None:
        with self._immediate():
            self.db.execute("DELETE FROM locks WHERE name = ? AND owner = ?", [name, owner])

    def record_model(self, meta: dict[str, Any]) -> None:
        """Mirror a registry version (and its status) into the models table. ``reason`` keeps
        every reason the version was given, oldest first (a rejection → the rollback that
        overrode it)."""
        history = meta.get("history") or []
        reasons = [h["reason"] for h in history] if history else [meta.get("reason") or ""]
        row = {
            "version": meta["version"],
            "status": meta["status"],
            "created_at": meta["created_at"],
            "n_train": meta["n_train"],
            "label_set": json.dumps(meta["label_set"], ensure_ascii=False),
            "metrics": json.dumps(meta["metrics"]),
            "path": meta["model_file"],
            "sha256": meta["sha256"],
            "reason": " → ".join(reasons),
        }
        with self._immediate():
            if row["status"] == "champion":
                self.db.execute(
                    "UPDATE models SET status = 'retired' WHERE status = 'champion'"
                    " AND version != ?",
                    [row["version"]],
                )
            self.db["models"].insert(row, replace=True)

    def has_model(self, version: int) -> bool:
        """Whether the models table records ``version``."""
        row = self.db.execute("SELECT 1 FROM models WHERE version = ?", [version]).fetchone()
        return row is not None

    def model_n_train(self, version: int) -> int | None:
        """How many labels model ``version`` was trained on; None if the models table does not
        record it."""
        row = self.db.execute("SELECT n_train FROM models WHERE version = ?", [version]).fetchone()
        return None if row is None else row[0]

    def champion_version(self) -> int | None:
        row = self.db.execute("SELECT version FROM models WHERE status = 'champion'").fetchone()
        return row[0] if row else None

    def models(self) -> list[dict[str, Any]]:
        return [
            {**m, "label_set": json.loads(m["label_set"]), "metrics": json.loads(m["metrics"])}
            for m in self.db["models"].rows_where(order_by="version")
        ]

    def last_run(self, kind: str, statuses: Sequence[str] | None = None) -> dict[str, Any] | None:
        where, args = "kind = ?", [kind]
        if statuses:
            where += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        rows = list(self.db["runs"].rows_where(where, args, order_by="id desc", limit=1))
        return {**rows[0], "detail": json.loads(rows[0]["detail"])} if rows else None

    def runs_newest_first(
        self, kind: str, statuses: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The runs of ``kind`` (with one of ``statuses``), newest first, read as they are
        taken: a caller that stops early reads no more (``retrain._tried_on_these``)."""
        where, args = "kind = ?", [kind]
        if statuses:
            where += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        for row in self.db["runs"].rows_where(where, args, order_by="id desc"):
            try:
                detail = json.loads(row["detail"] or "{}")
            except ValueError:
                detail = {}
            yield {**row, "detail": detail if isinstance(detail, dict) else {}}

    def has_refresh_posts_since(self, since: str) -> bool:
        """Whether a working model refreshed (a negative version) posted a question at or after
        ``since`` (ISO time: when the champion it was refreshed from became champion)."""
        row = self.db.execute(
            "SELECT 1 FROM posts WHERE model_version < 0 AND posted_at >= ? LIMIT 1", [since]
        ).fetchone()
        return row is not None

    def live_accuracy(
        self,
        model_version: int,
        reason: str,
        since: str | None = None,
        *,
        refreshes_since: str | None = None,
    ) -> tuple[int, int]:
        """(answered, matched): items people resolved that a post of ``reason`` showed with
        ``model_version``'s guess, and how many of those the guess got right. With
        ``refreshes_since`` (ISO time: when ``model_version`` became champion) the posts of the
        working models refreshed from it count too: a refresh (a negative version) asks every
        question once adopted, and a promotion or rollback ends it, so a refresh's post since
        then was asked by one refreshed from this champion. A guess of a label renamed or
        merged since counts under its successor, as the decided label does. An item posted
        more than once so (its question moved to another channel) counts once, by its newest
        such post."""
        after = " AND q.posted_at >= ?" if since else ""
        asked_by = "q.model_version = ?"
        args: list[Any] = [model_version]
        if refreshes_since:
            asked_by = f"({asked_by} OR (q.model_version < 0 AND q.posted_at >= ?))"
            args.append(refreshes_since)
        sql = (
            "SELECT count(*), coalesce(sum(coalesce(m.new, p.predicted_label) = l.label), 0)"
            " FROM posts p JOIN labels l ON l.item_id = p.item_id"
            " LEFT JOIN label_aliases m ON m.old = p.predicted_label"
            f" WHERE p.id IN (SELECT max(q.id) FROM posts q WHERE {asked_by}"
            f" AND q.reason = ? AND q.predicted_label IS NOT NULL{after} GROUP BY q.item_id)"
        )
        args += [reason, *([since] if since else [])]
        n, correct = self.db.execute(sql, args).fetchone()
        return int(n), int(correct)
