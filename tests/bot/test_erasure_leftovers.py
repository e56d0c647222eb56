"""An erasure leaves no old copy of what it removed in the database file.

``secure_delete`` zeroes the cells a delete frees, but a row an earlier write moved (items
scored, their rows grown and their pages split) can leave its old bytes in the unused part of a
page, where no delete reaches: `hitl delete` said the file kept no copy of the text, and a look
at the file found it. `hitl delete`, `hitl people anonymise` and a restore that deletes or
anonymises again now rebuild the file (VACUUM) when no server runs on it, and say so when one
does."""

from __future__ import annotations

import random
import re
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner

from bot.cli import cli
from bot.store import Store
from tests.bot.harness import Item, seed
from tests.bot.test_new_database_race import lock_held_by_child

N = 100  # items: scoring them all splits pages and leaves an old copy of a row (SQLite 3.40)


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


def on_disk(db: Path) -> bytes:
    """The database file and its log, as someone reading the disk sees them."""
    log = db.with_name(db.name + "-wal")
    return db.read_bytes() + (log.read_bytes() if log.exists() else b"")


def scored(db: Path) -> None:
    """N items with a text each of its own, scored as a model does (each row grows)."""
    seed(db, [Item(f"T-{n}", f"ticket {n} secret{n:04d}x") for n in range(N)])
    with Store.open(db) as store:
        guesses = [["bug", 0.5], ["billing", 0.5]]
        store.set_predictions(
            [(f"T-{n}", 1, "bug", 0.5, guesses, 0.5) for n in range(N)], 0.8, "uncertainty"
        )


def copied_twice(db: Path) -> list[str]:
    """The items whose text the file holds more than once: a live row and an old copy."""
    counts = Counter(re.findall(rb"secret(\d{4})x", on_disk(db)))
    return [f"T-{int(n)}" for n, times in sorted(counts.items()) if times > 1]


def text_of(item_id: str) -> bytes:
    return b"secret%04dx" % int(item_id[2:])


def test_a_deleted_item_leaves_no_old_copy_of_its_text_in_the_file(tmp_path: Path):
    db = tmp_path / "hitl.db"
    scored(db)
    twice = copied_twice(db)
    assert twice  # the old copies this is about: a row moved when its page split
    done = run(db, "delete", *twice, "--yes", "--reason", "erasure request #4411")
    assert done.exit_code == 0, done.output
    assert "could not be rebuilt" not in done.output
    data = on_disk(db)
    assert [i for i in twice if text_of(i) in data] == []
    assert text_of("T-99" if "T-99" not in twice else "T-98") in data  # the others stay


def shared_milliseconds(seed: int = 0) -> Callable[[], str]:
    """A clock whose every millisecond a few answers share, as on a fast machine: two people's
    answers at once sort out of the order they came in (answers_by_people), and the pages
    that split then leave an old copy of an entry behind."""
    rng = random.Random(seed)
    times = iter(
        f"2026-12-01T10:00:00.{ms:03d}+00:00"
        for ms in range(1000)
        for _ in range(rng.randint(4, 8))
    )
    return times.__next__


def test_an_anonymised_id_leaves_no_old_copy_in_the_file(tmp_path: Path):
    db, before = tmp_path / "hitl.db", tmp_path / "before.db"
    seed(db, [Item(f"U-{n}", f"ticket {n}") for n in range(N)])
    with Store.open(db, clock=shared_milliseconds()) as store:
        guesses = [["bug", 0.5], ["billing", 0.5]]
        store.set_predictions(
            [(f"U-{n}", 1, "bug", 0.5, guesses, 0.5) for n in range(N)], 0.8, "uncertainty"
        )
        for n in range(N):
            for user in ("U0LEAVER", "U0ANA"):
                store.record_answer(
                    f"U-{n}",
                    user,
                    "bug",
                    source="button",
                    dedupe_key=f"U-{n}:{user}",
                    votes_needed=2,
                )
    shutil.copyfile(db, before)
    with Store.open(before) as store:  # what the command did before it rebuilt the file
        store.anonymise_people(["U0LEAVER"], done_by="dpo")
        assert store.empty_log()
    assert b"U0LEAVER" in on_disk(before)  # the old copy this is about
    done = run(db, "people", "anonymise", "U0LEAVER", "--by", "dpo")
    assert done.exit_code == 0, done.output
    assert "could not be rebuilt" not in done.output
    assert b"U0LEAVER" not in on_disk(db)


def test_a_restore_that_deletes_again_leaves_no_old_copy_of_the_text(tmp_path: Path):
    db, backup = tmp_path / "hitl.db", tmp_path / "backup.db"
    scored(db)
    twice = copied_twice(db)
    assert twice
    source, copy = sqlite3.connect(db), sqlite3.connect(backup)
    source.backup(copy)  # the backup holds the old copies too: pages are copied as they are
    source.close(), copy.close()
    assert run(db, "delete", *twice, "--yes").exit_code == 0
    done = run(db, "restore", str(backup))
    assert done.exit_code == 0, done.output
    assert "Deleted again: " in done.output and "could not be rebuilt" not in done.output
    data = on_disk(db)
    assert [i for i in twice if text_of(i) in data] == []


def test_beside_a_running_server_the_delete_says_old_copies_may_stay(tmp_path: Path):
    """A server's clicks would wait on the rebuild: it is left, and the command says so."""
    db = tmp_path / "hitl.db"
    seed(db, [Item("T-1", "refund for jane.doe@example.com")])
    with lock_held_by_child(db):
        done = run(db, "delete", "T-1", "--yes")
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[1] == (
        "The database file could not be rebuilt now (a hitl server runs on it): its unused"
        " space and its write-ahead log may keep old copies of the text until"
        f" `sqlite3 {db} VACUUM` is run with nothing else on the database (stop `hitl serve`"
        " first)."
    )


def test_a_restore_does_not_offer_a_rollback_to_a_model_whose_file_was_deleted(tmp_path: Path):
    """After an erasure, `HITL_KEEP_MODELS=0 hitl retrain --force` deleted the file of v1, which
    may keep the erased words; a backup made before it records v1 as champion. The restore
    told to `hitl rollback 1`, which refuses: the file is gone."""
    from bot.cli_restore import models_note
    from model import ModelRegistry, TextClassifier

    folder = tmp_path / "hitl.db.models"
    registry = ModelRegistry(folder)
    texts, labels = ["refund my card", "the app crashes"] * 3, ["billing", "bug"] * 3
    fitted = TextClassifier().fit(texts, labels)
    for _ in range(2):  # v1, then v2 trained after the erasure
        registry.promote(registry.save(fitted, n_train=6).version)
    registry.drop_file(1)
    lines = models_note(SimpleNamespace(models_dir=folder), {1: "champion"})
    said = " ".join(line for line, _warn in lines)
    assert "rollback 1" not in said, said
    assert "the backup's champion v1 has no model file any more (it was deleted)" in said
