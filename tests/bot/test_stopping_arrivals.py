"""When to stop with items arriving every day (the producer API's normal use): each nightly
retrain found a quarter of the items waiting had arrived since the stop set was drawn, drew it
again and compared only within a draw, so no model was ever "100 labels older" and 18 of 20
reports said "no model 100 labels older than the newest to compare with yet" though such models
existed (a month's test). A draw again keeps the items of the one before still without a label,
the models are compared on the items both predicted, and a report without a comparison says why.
Through the real CLI (`hitl import`, `hitl retrain`)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.store import Store

WORDS = {
    "billing": ["refund", "invoice", "payment", "card", "charge", "price"],
    "bug": ["crash", "error", "freeze", "broken", "slow", "bug"],
    "account": ["login", "password", "email", "profile", "signup", "locked"],
}
FILLER = ["please", "help", "today", "again", "the", "app", "my", "since", "order", "team"]


def tickets(prefix: str, n: int, seed: int) -> list[dict[str, str]]:
    """``n`` tickets: two words of their label's, one of another's (noise), three fillers."""
    rng = random.Random(seed)
    out = []
    labels = list(WORDS)
    for k in range(n):
        label = labels[k % 3]
        other = labels[(k + 1 + rng.randrange(2)) % 3]
        words = rng.sample(WORDS[label], 2) + [rng.choice(WORDS[other])] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        out.append({"id": f"{prefix}{k}", "text": f"{' '.join(words)} {prefix}{k}", "label": label})
    return out


def run_cli(db: Path, *args: str):
    result = CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")
    assert result.exit_code == 0, result.output
    return result.output


def import_rows(db: Path, path: Path, rows: list[dict[str, str]], labeled: bool) -> None:
    path.write_text(
        "".join(
            json.dumps({k: v for k, v in r.items() if labeled or k != "label"}) + "\n" for r in rows
        )
    )
    run_cli(db, "import", str(path))


def when_to_stop(output: str) -> str:
    found = re.search(r"When to stop: (.*)", output)
    assert found, output
    return found.group(1)


def test_nightly_retrains_with_items_arriving_daily_compare_across_draws(tmp_path: Path):
    db = tmp_path / "hitl.db"
    labeled = tickets("l", 200, seed=1)
    pool = tickets("u", 1_000, seed=2)
    import_rows(db, tmp_path / "u0.jsonl", pool[:300], labeled=False)
    said, draws, start = [], [], 300
    # 40 labels a night, and each night a quarter or more of the items waiting are new
    for day, new in enumerate([0, 100, 140, 190, 260]):
        import_rows(db, tmp_path / f"l{day}.jsonl", labeled[day * 40 : (day + 1) * 40], True)
        if new:
            import_rows(db, tmp_path / f"u{day}.jsonl", pool[start : start + new], False)
            start += new
        said.append(when_to_stop(run_cli(db, "retrain")))
        with Store.open(db) as store:
            draws.append(store.stop_checks(limit=1)[-1]["draw"])
    assert draws == [1, 2, 3, 4, 5]  # drawn again every night, as items kept arriving
    # 40, 80, 120 labels: no model 100 labels older (true); then each compared with the
    # newest 100 or more labels older (v1 on 40, v2 on 80) on the items both predicted
    assert said[:3] == ["no model 100 labels older than the newest to compare with yet"] * 3
    for line in said[3:]:
        assert re.match(
            r"(still changing|predictions have settled): the last 120 labels changed \d+\.\d%"
            r" of the model's answers on a fixed sample of unlabelled items",
            line,
        ), said
    with Store.open(db) as store:
        checks = store.stop_checks(limit=5)
    assert [(c["n_train"], c["span"]) for c in checks] == [
        (40, None), (80, None), (120, None), (160, 120), (200, 120)
    ]  # fmt: skip


def test_a_report_without_a_comparison_says_the_sample_was_drawn_again(tmp_path: Path):
    db = tmp_path / "hitl.db"
    labeled = tickets("l", 200, seed=3)
    pool = tickets("u", 1_100, seed=4)
    import_rows(db, tmp_path / "u0.jsonl", pool[:60], labeled=False)
    import_rows(db, tmp_path / "l0.jsonl", labeled[:40], labeled=True)
    first = when_to_stop(run_cli(db, "retrain"))
    assert first == "no model 100 labels older than the newest to compare with yet"
    # 1,040 new items: the 60 v1 predicted are too few of the new sample to compare on
    import_rows(db, tmp_path / "u1.jsonl", pool[60:], labeled=False)
    import_rows(db, tmp_path / "l1.jsonl", labeled[40:160], labeled=True)
    output = run_cli(db, "retrain")
    line = when_to_stop(output)
    with Store.open(db) as store:
        [check] = store.stop_checks(limit=1)
    assert check["changed"] is None and check["draw"] == 2
    assert "yet" not in line, line
    assert line.startswith(
        "no comparison: the fixed sample the models are compared on was drawn again on "
    ), line
    assert (
        "the models 100 or more labels older predicted too few of its items still without a"
        " label (200 needed, or half of them in a smaller sample): a comparison comes once a"
        " model 100 labels newer than v2 (260 labels or more) predicts it"
    ) in line, line
    accuracy = run_cli(db, "accuracy")
    assert f"When to stop: {line}" in accuracy


def test_a_draw_again_at_full_size_keeps_the_old_items_and_follows_the_pool(tmp_path: Path):
    """At its full size the set cannot hold every item: the items of the draw before still
    without a label stand for those from before it and are kept as far as the sample's rate
    allows (dropped at random only past it), the arrivals sampled at the same rate."""
    from bot.learning.stopping import read_stop_plan
    from tests.bot.harness import Item, seed

    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"text {n}") for n in range(40)])
    with Store.open(tmp_path / "hitl.db") as store:
        plan = read_stop_plan(store, size=20)
        first = set(plan.ids)
        assert plan.draw == 1 and len(first) == 20
        store.record_stop_check(kind="retrain", model_version=1, n_train=10, draw=1,
                                predictions=["a"] * 20, changed=None, span=None,
                                extrapolation=None, keep_since=-90,
                                item_ids=plan.ids)  # fmt: skip
        store.add_items([Item(f"j{n}", f"new {n}") for n in range(40)], "import")
        again = read_stop_plan(store, size=20)  # 40 of 80 arrived: drawn again
        assert again.draw == 2 and len(again.ids) == 20
        # half the items came before the draw: 10 of the 20 are kept ones, 10 arrivals
        assert len(first & set(again.ids)) == 10
        assert sum(i.startswith("j") for i in again.ids) == 10
        [(n, before)] = again.earlier  # v1's predictions, looked up by item
        assert n == 10
        assert [p for i, p in zip(again.ids, before, strict=True) if i in first] == ["a"] * 10
        assert [p for i, p in zip(again.ids, before, strict=True) if i not in first] == [None] * 10
