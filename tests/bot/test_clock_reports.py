"""Times people read, when the team is far from UTC or the wall clock ran ahead.

A rejected retrain's report says since which day the champion stands: the day in
HITL_TIMEZONE, as "today" and "this week" count days (``reports.period_starts``), not the UTC
date cut from the stored time. And a question posted, or taken back, while the server's clock
ran ahead (set right since: NTP stepped it back) is taken back, and rests, HITL_QUESTION_TTL
after the machine first sees its time in the future at most, not once the clock catches up
with it and a TTL more: the rule webhook retries and lost posts follow (test_clock_webhooks).

The store's clock is driven by hand (``Store.open(path, clock)``); the settings are read from
an environment given to ``load_settings``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from bot.config import load_settings
from bot.learning import reports
from bot.learning.retrain import Outcome
from bot.learning.stopping import Streak
from bot.slack.dispatch import Dispatcher
from bot.slack.redraw import _floor
from bot.store import Store
from tests.bot.test_cli_loop import char_only_file, run

TTL = 72
AHEAD = timedelta(days=1)  # how far the clock ran ahead before NTP stepped it back
T = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # the true time of the post
MS = timedelta(milliseconds=1)


@dataclass
class Row:
    id: str
    text: str
    label: str | None = None
    meta: dict = field(default_factory=dict)


def rejected(since: str, rejections: int = 1) -> Outcome:
    """v2 rejected, v1 champion since ``since`` (UTC ISO), five hours before the report."""
    streak = Streak(rejected=rejections, champion=1, since=since, days=5 / 24)
    return Outcome(
        "rejected", "not better", "nightly", version=2, previous_version=1, streak=asdict(streak)
    )


def test_a_rejected_retrain_dates_the_champion_by_the_teams_day():
    promoted = "2026-12-05T19:00:00.000+00:00"  # Sunday 6 December, 08:00 in Auckland
    auckland = load_settings({"HITL_TIMEZONE": "Pacific/Auckland"}, None)
    lines = reports.retrain_text(rejected(promoted), timezone=auckland.timezone).splitlines()
    assert "*Champion:* v1 since 2026-12-06 (5 hours); the first retrain rejected since." in lines
    second = reports.retrain_text(rejected(promoted, 2), timezone=auckland.timezone)
    assert "*2nd rejection in a row:* v1 has been champion since 2026-12-06 (5 hours)." in second
    # the same moment is still the 5th in UTC, and in Los Angeles (11:00 on Saturday)
    for zone in ("UTC", "America/Los_Angeles"):
        settings = load_settings({"HITL_TIMEZONE": zone}, None)
        text = reports.retrain_text(rejected(promoted), timezone=settings.timezone)
        assert "*Champion:* v1 since 2026-12-05 (5 hours)" in text, (zone, text)
    # a report whose caller names no zone dates as before: UTC
    assert "*Champion:* v1 since 2026-12-05 (5 hours)" in reports.retrain_text(rejected(promoted))


def test_a_question_posted_while_the_clock_ran_ahead_is_taken_back_a_ttl_after_it_was_seen(
    tmp_path: Path,
):
    clock = [T + AHEAD]  # the clock that ran a day ahead
    with Store.open(
        tmp_path / "hitl.db", lambda: clock[0].isoformat(timespec="milliseconds")
    ) as store:
        store.add_items([Row("a", "refund please"), Row("b", "app crashes")], "import")
        store.record_post("a", "C1", "1.0001", "uncertain", None, None, None)
        clock[0] = T  # NTP steps it back: the true time, the post's
        assert store.expire_posts(TTL, 10) == []  # a dispatcher round: the post is a day ahead
        store.record_post("b", "C1", "1.0002", "uncertain", None, None, None)  # an honest one
        clock[0] = T + timedelta(hours=TTL) - MS
        assert store.expire_posts(TTL, 10) == []
        clock[0] = T + timedelta(hours=TTL) + MS  # TTL after the post, not TTL + the step
        assert sorted(p["item_id"] for p in store.expire_posts(TTL, 10)) == ["a", "b"]
        assert store.get_item("a")["status"] == "new"
        # its time as the machine saw it once the clock was set right
        assert store.post_for_item("a")["posted_at"] == T.isoformat(timespec="milliseconds")


def test_a_question_taken_back_while_the_clock_ran_ahead_rests_a_ttl_and_counts_a_week(
    tmp_path: Path,
):
    clock = [T + AHEAD - timedelta(hours=TTL + 1)]
    with Store.open(
        tmp_path / "hitl.db", lambda: clock[0].isoformat(timespec="milliseconds")
    ) as store:
        store.add_items([Row("a", "refund please")], "import")
        store.record_post("a", "C1", "1.0001", "uncertain", None, None, None)
        clock[0] = T + AHEAD  # still a day ahead: taken back, expired_at a day in the future
        assert [p["item_id"] for p in store.expire_posts(TTL, 10)] == ["a"]
        clock[0] = T  # NTP steps it back
        assert store.expire_posts(TTL, 10) == []  # a dispatcher round's first step
        assert store.resting(TTL) == {"a"}  # it rests from now
        assert store.expired_counts(7) == {"C1": 1}
        clock[0] = T + timedelta(hours=TTL) + MS
        store.expire_posts(TTL, 10)  # the round's first step, before it reads what rests
        assert store.resting(TTL) == set()  # one TTL, not one TTL and the step
        assert store.expired_counts(7) == {"C1": 1}
        clock[0] = T + timedelta(days=7) + MS
        assert store.expired_counts(7) == {}  # /hitl queue's "taken back in the last 7 days"


def test_hitl_retrain_dates_the_champion_in_hitl_timezone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # end to end: `hitl retrain` passes HITL_TIMEZONE to the report (it printed the UTC date)
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(char_only_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").stdout.startswith("Retrain v1: promoted")
    with Store.open(db) as store:
        made = datetime.fromisoformat(store.last_run("retrain", ["promoted"])["finished_at"])
    # a zone whose day differs from UTC's at that moment: 14 h ahead, or 12 h behind
    zone = "Pacific/Kiritimati" if made.hour >= 10 else "Etc/GMT+12"
    local = made.astimezone(ZoneInfo(zone)).date().isoformat()
    assert local != made.date().isoformat()
    monkeypatch.setenv("HITL_TIMEZONE", zone)
    monkeypatch.setenv("HITL_PIPELINE", "word_lr")  # cannot read letters: the gate rejects it
    assert run(db, "import", str(char_only_file(tmp_path, "b"))).exit_code == 0
    report = run(db, "retrain").stdout
    assert report.startswith("Retrain v2: rejected"), report
    assert f"Champion: v1 since {local} (" in report, report


def test_a_lost_post_stamped_ahead_is_looked_for_past_the_questions_posted_after_it(
    tmp_path: Path,
):
    # The look for a post whose outcome is unknown (Slack timed out) stops at the newest open
    # question recorded before its attempt (posted_at < attempted_at: redraw's _floor, the
    # dispatcher's _recorded_floor); a question posted after it, older by the stored times
    # once _stamped_ahead brought only the posts back, hid the lost message (a deleted item's
    # question left in Slack, or a question posted twice).
    clock = [T - timedelta(hours=1)]  # honest, before the clock ran ahead
    ch = "C1"

    def floor_of(store: Store, attempted_at: str) -> str | None:
        recorded = Dispatcher._recorded_floor(  # noqa: SLF001 - the dispatcher's own bound
            SimpleNamespace(rt=SimpleNamespace(store=store)), ch, attempted_at
        )
        assert recorded == _floor(store.open_posts(), ch, attempted_at)  # the redrawer's
        return recorded

    with Store.open(
        tmp_path / "hitl.db", lambda: clock[0].isoformat(timespec="milliseconds")
    ) as store:
        store.add_items([Row(i, f"text {i}") for i in ("a", "c", "d", "e", "x")], "import")
        store.record_post("a", ch, "1765000000.000100", "uncertain", None, None, None)
        clock[0] = T + AHEAD  # the clock runs a day ahead
        for item_id in ("c", "x"):  # posted, but Slack timed out: unconfirmed
            assert store.begin_post_attempt(item_id, ch, "uncertain", None, None, None)
        store.delete_items(["x"], user_id="cli:test")  # x's message is a lost post to look for
        clock[0] += MS  # and another of x's, as a restored backup notes it (hitl restore)
        later = clock[0].isoformat(timespec="milliseconds")
        assert store._queue_erased([(ch, f"lost {later} x", None)]) == 1  # noqa: SLF001
        clock[0] += timedelta(minutes=1)
        for item_id, ts in (("d", "1765000060.000200"), ("e", "1765000061.000300")):
            assert store.begin_post_attempt(item_id, ch, "uncertain", None, None, None)
            store.record_post(item_id, ch, ts, "uncertain", None, None, None)  # after c and x
        [attempt] = store.post_attempts()
        assert floor_of(store, attempt["attempted_at"]) == "1765000000.000100"  # a's, not d's
        assert {floor_of(store, str(lost["attempted_at"])) for lost in store.lost_posts()} == {
            "1765000000.000100"
        }
        clock[0] = T  # NTP steps the clock back
        assert store.expire_posts(TTL, 10) == []  # a dispatcher round: _stamped_ahead
        now = T.isoformat(timespec="milliseconds")
        [attempt] = store.post_attempts()
        assert floor_of(store, attempt["attempted_at"]) == "1765000000.000100"  # not d's or e's
        assert attempt["attempted_at"] == now
        assert {floor_of(store, str(lost["attempted_at"])) for lost in store.lost_posts()} == {
            "1765000000.000100"
        }
        # x's two lost posts, now the same time: one look for its messages in the channel
        assert [(lost["item_id"], lost["attempted_at"]) for lost in store.lost_posts()] == [
            ("x", now)
        ]
        assert store.expire_posts(TTL, 10) == []  # nothing left in the future: no write
        # c is deleted after the step: its lost post is bounded the same way
        store.delete_items(["c"], user_id="cli:test")
        assert {floor_of(store, str(lost["attempted_at"])) for lost in store.lost_posts()} == {
            "1765000000.000100"
        }
