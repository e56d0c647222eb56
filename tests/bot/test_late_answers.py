"""An answer counts only if its item was open when it was given: a click on a decided or
set-aside item is told "already decided … thanks anyway" and is history, however the item was
closed (votes, two skips, an admin before anyone voted) and whether or not it keeps a label
(`hitl labels remove`). Not a vote for agreement, gold accuracy or Dawid-Skene, and not an
answer in the leaderboard, "Answers today" or App Home; nor is an answer taken back with Undo.
"""

from __future__ import annotations

from pathlib import Path

from sqlite_utils import Database

from bot.store import Store
from bot.store.migrations import migrations
from tests.bot.test_store import R

TODAY = "2000-01-01"  # every answer below is given after it


def click(store: Store, item: str, user: str, label: str | None, votes: int = 3) -> str:
    click.n += 1  # type: ignore[attr-defined]
    return store.record_answer(
        item, user, label, source="button", dedupe_key=f"k{click.n}", votes_needed=votes
    ).status  # type: ignore[attr-defined]


click.n = 0  # type: ignore[attr-defined]


def counts(store: Store) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    return store.answers_by_user(), store.answers_by_user(TODAY), store.answers_since(TODAY)


def test_answers_after_an_item_was_set_aside_by_skips_are_no_votes(memory_store: Store):
    store = memory_store
    store.add_items([R("a", "please help")], "import")
    store.add_gold([R("g", "refund my double charge", "billing")])
    for item in ("a", "g"):
        assert click(store, item, "U0ANA", None) == "recorded"
        assert click(store, item, "U0RAJ", None) == "skipped"
        assert click(store, item, "U0MEI", "bug") == "closed"  # "already decided (skipped)"
    assert click(store, "a", "U0CAL", "billing") == "closed"
    assert list(store.iter_votes()) == []
    assert store.gold_votes_of("U0MEI") == ([], {})  # her only gold answer was the late one
    # the skips counted (they set the items aside); the late labels did not
    assert counts(store) == ([("U0ANA", 2), ("U0RAJ", 2)],) * 2 + (4,)
    assert store.answers_of("U0MEI") == store.answers_of("U0MEI", TODAY) == 0


def test_answers_after_an_admin_decided_an_item_nobody_voted_on_are_no_votes(
    memory_store: Store,
):
    store = memory_store
    store.add_items([R("b", "cannot upload")], "import")
    store.set_label("b", "bug", user_id="cli:admin")
    assert click(store, "b", "U0ANA", "billing") == "closed"
    assert click(store, "b", "U0RAJ", "billing") == "closed"
    assert list(store.iter_votes()) == []
    assert counts(store) == ([], [], 0)


def test_answers_after_a_decision_stay_out_when_the_label_is_removed(memory_store: Store):
    store = memory_store
    store.add_items([R("c", "charged twice")], "import")
    assert click(store, "c", "U1", "billing", votes=2) == "recorded"
    assert click(store, "c", "U2", "billing", votes=2) == "resolved"
    assert click(store, "c", "U3", "bug", votes=2) == "closed"
    store.remove_label("c", user_id="cli:admin")  # no label row (no decided_by) any more
    assert click(store, "c", "U4", "bug", votes=2) == "closed"
    # the votes given while it was open still count (they agreed); the late ones never do
    assert list(store.iter_votes()) == [("c", "U1", "billing"), ("c", "U2", "billing")]
    assert counts(store)[0] == [("U1", 1), ("U2", 1)]


def test_an_undone_answer_is_no_answer_until_given_again(memory_store: Store):
    store = memory_store
    store.add_items([R("d", "app crashes")], "import")
    assert click(store, "d", "U0CAL", "bug", votes=1) == "resolved"
    assert store.answers_of("U0CAL") == store.answers_of("U0CAL", TODAY) == 1
    assert store.undo_resolution("d", "U0CAL", since="")
    assert store.answers_of("U0CAL") == store.answers_of("U0CAL", TODAY) == 0  # App Home
    assert counts(store) == ([], [], 0)
    assert list(store.iter_votes()) == []
    assert click(store, "d", "U0CAL", "billing", votes=1) == "resolved"  # answered again
    assert counts(store) == ([("U0CAL", 1)], [("U0CAL", 1)], 1)
    assert store.answers_of("U0CAL") == 1


def test_a_reopened_item_counts_the_late_answerers_answer_from_while_it_was_open(
    memory_store: Store,
):
    store = memory_store
    store.add_items([R("e", "double charge")], "import")
    assert click(store, "e", "U1", "billing", votes=2) == "recorded"
    assert click(store, "e", "U2", "bug", votes=2) == "recorded"
    assert click(store, "e", "U3", "billing", votes=2) == "resolved"
    assert click(store, "e", "U2", "account", votes=2) == "closed"  # too late to change
    assert click(store, "e", "U4", "account", votes=2) == "closed"  # too late to answer
    assert store.undo_resolution("e", "U3", since="")
    assert sorted(store.iter_votes()) == [("e", "U1", "billing"), ("e", "U2", "bug")]
    assert counts(store)[0] == [("U1", 1), ("U2", 1)]
    assert counts(store)[1:] == ([("U1", 1), ("U2", 1)], 2)


def test_an_old_database_marks_its_late_answers_when_it_is_upgraded(db_path: Path):
    """Answers stored before ``answers.late``: after the answer that decided the item, or
    after the item closed (its post's closed_at, or the admin's decision of an item never
    posted), they are late; the counts per person are computed again without them."""
    old = Database(db_path)
    migrations.apply(old, stop_before="m021_late_answers")
    t = "2026-12-01T10:00:0{}.000+00:00".format
    for item, status in (("s", "skipped"), ("v", "resolved"), ("x", "resolved")):
        old["items"].insert(
            {
                "id": item,
                "text": item,
                "source": "api",
                "status": status,
                "created_at": t(0),
                "updated_at": t(0),
            }  # fmt: skip
        )
    answers = [  # (item, user, label, at): s set aside by two skips at t1, then a late vote
        ("s", "U1", None, 1), ("s", "U2", None, 1), ("s", "U3", "bug", 2),
        ("v", "U1", "bug", 1), ("v", "U3", "billing", 3),  # v decided by U1's answer (id 4)
        ("x", "U2", "bug", 5),  # x: an admin set its label at t4, never posted
    ]  # fmt: skip
    for n, (item, user, label, at) in enumerate(answers):
        old["answers"].insert(
            {
                "item_id": item,
                "user_id": user,
                "label": label,
                "source": "button",
                "created_at": t(at),
                "dedupe_key": f"old{n}",  # not click()'s k<n>, whatever ran before
            }  # fmt: skip
        )
    old["posts"].insert(
        {
            "item_id": "s",
            "channel": "C1",
            "ts": "1.0",
            "reason": "uncertain",
            "posted_at": t(0),
            "closed_at": t(1),
        }  # fmt: skip
    )
    old["labels"].insert_all(
        [
            {
                "item_id": "v",
                "label": "bug",
                "votes": 1,
                "agreement": 1.0,
                "annotators": '["U1"]',
                "resolved_at": t(1),
                "decided_by": 4,
            },
            {
                "item_id": "x",
                "label": "bug",
                "votes": 0,
                "agreement": 0.0,
                "annotators": '["cli:admin"]',
                "resolved_at": t(4),
                "decided_by": None,
            },
        ]  # fmt: skip
    )
    old["label_history"].insert(
        {
            "item_id": "x",
            "old_label": None,
            "new_label": "bug",
            "action": "set",
            "user_id": "cli:admin",
            "reason": "",
            "created_at": t(4),
        }  # fmt: skip
    )
    old.conn.commit()
    old.conn.close()
    with Store.open(db_path) as store:
        assert list(store.iter_votes()) == [("v", "U1", "bug")]
        assert store.answers_by_user() == [("U1", 2), ("U2", 1)]  # U1: s and v; U2: s
        assert store.answers_by_user(TODAY) == [("U1", 2), ("U2", 1)]
        store.add_items([R("y", "new")], "api")  # the counts go on from there
        assert click(store, "y", "U3", "bug", votes=1) == "resolved"
        assert store.answers_of("U3") == 1
