"""webhook_claim.py: a delivery round's claim, now and the old one, on the same backlogs."""

from __future__ import annotations

import re

from tests.benchmarks.runner import run_quick

ROW = re.compile(
    r"^\| (?P<backlog>[^|]+?) \| (?P<rows>[\d,]+) \| (?P<due>[\d,]+) \| (?P<now>[\d.]+) \|"
    r" (?P<now_max>[\d.]+) \| (?P<old>[\d.]+) \| (?P<old_max>[\d.]+) \| (?P<ratio>[\d.]+) \|"
    r" (?P<served_now>\d+) \((?P<claimed_now>\d+)\) \|"
    r" (?P<served_old>\d+) \((?P<claimed_old>\d+)\) \|$",
    re.M,
)


def test_webhook_claim_benchmark_serves_every_receiver_with_a_delivery_due_now():
    out = run_quick("webhook_claim.py")
    assert re.search(r"^\| backlog \| rows \| receivers due \| now median ms \|", out, re.M), out
    rows = {(m["backlog"], m["rows"]): m for m in ROW.finditer(out)}
    assert list(rows) == [
        ("one receiver", "1,000"),
        ("one receiver", "10,000"),
        ("a URL per item, one host", "10,000"),
        ("10,000 hosts × 1", "10,000"),
        ("100 hosts × 100, interleaved", "10,000"),
        ("one receiver, then 1,000 hosts × 1", "11,000"),
    ], out
    for row in rows.values():
        assert 0 < float(row["now"]) <= float(row["now_max"]), out
        assert 0 < float(row["old"]) <= float(row["old_max"]), out
        assert int(row["claimed_now"]) >= int(row["claimed_old"]), out
    # One receiver's backlog (one URL or a URL per item) beside 5 others with one due each:
    # now every one of the 6 is served in a round (its 4, theirs 1 each); the old claim's
    # 1,000 oldest rows were all the backlog's, and served it alone.
    for key in list(rows)[:3]:
        row = rows[key]
        assert (row["due"], row["served_now"], row["claimed_now"]) == ("6", "6", "9"), out
        assert (row["served_old"], row["claimed_old"]) == ("1", "4"), out
    # More receivers due than a round's 50: a full round, one each, both ways.
    for key in list(rows)[3:5]:
        assert rows[key]["served_now"] == rows[key]["claimed_now"] == "50", out
    # Behind one receiver's backlog the old claim never reached the 1,005 others.
    last = rows[("one receiver, then 1,000 hosts × 1", "11,000")]
    assert (last["due"], last["claimed_now"], last["served_now"]) == ("1,006", "50", "47"), out
    assert last["served_old"] == "1", out
