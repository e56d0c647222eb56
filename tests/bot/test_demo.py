"""`hitl demo`: its generated data, a user's own file, and the simulated teammates whose answers
make the model better (the real retrain job, through signed requests to /slack/events)."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.demo import (
    LABELS,
    DemoOptions,
    demo_data,
    generate,
    load_data,
    read_jsonl,
    running_demo,
)
from bot.demo.data import Columns, read_data
from bot.demo.run import describe
from bot.errors import HitlError
from bot.store import Store

ACCURACY = re.compile(r"after (\d+) labels: model v\d+, held-out accuracy ([\d.]+)%")


def test_the_generated_data_is_the_same_for_a_seed_and_spans_every_label():
    first, again, other = generate(300, seed=7), generate(300, seed=7), generate(300, seed=8)
    assert first == again and first != other
    assert len(first) == 300 and len({item.text for item in first}) == 300
    assert {item.label for item in first} == set(LABELS) and 5 <= len(LABELS) <= 8
    assert all(5 < len(item.text) < 200 for item in first)


def test_held_out_items_are_not_in_the_pool_and_the_pool_is_imported_without_labels():
    data = demo_data(600, seed=0)
    assert (len(data.pool), len(data.holdout)) == (480, 120)
    assert not {i.id for i in data.pool} & {i.id for i in data.holdout}
    assert all(item.label is None for item in data.unlabeled())
    assert data.truth == {item.id: item.label for item in data.pool}


def test_a_users_jsonl_keeps_its_labels_out_of_the_database(tmp_path: Path):
    rows = [{"id": f"r{n}", "text": f"message number {n}", "label": "ab"[n % 2]} for n in range(20)]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    data = read_jsonl(path)
    assert data.labels == ("a", "b") and len(data.holdout) == 4

    async def start() -> None:
        options = DemoOptions(db=tmp_path / "d.db", port=0, data=path, retrain_every=0)
        async with running_demo(options, load_data(options), echo=lambda line: None) as demo:
            assert demo.settings.labels == ("a", "b")
            assert demo.rt.store.count_labels() == 0 and demo.rt.store.count_answers() == 0
            assert demo.rt.store.count_items()["resolved"] == 0

    asyncio.run(start())


def test_a_jsonl_without_two_labels_is_refused(tmp_path: Path):
    path = tmp_path / "plain.jsonl"
    path.write_text('{"text": "hello"}\n{"text": "there", "label": "x"}\n', encoding="utf-8")
    with pytest.raises(HitlError, match="at least two labels"):
        read_jsonl(path)
    path.write_text('{"text": "hello"}\n{"txt": 1}\n', encoding="utf-8")
    reported: list[str] = []
    with pytest.raises(HitlError, match="at least two labels"):
        read_data(path, report=reported.append)
    assert reported[0] == (
        'plain.jsonl line 2: no field "text" (this row has: txt); pass --text-column with one '
        "of these, row skipped"
    )


def test_a_data_file_without_a_row_to_use_is_refused_naming_it(tmp_path: Path):
    """As `hitl import` refuses an empty input: one line naming the file and what it holds,
    not a word about labels it could not have."""
    empty, header, rejected = (tmp_path / n for n in ("e.jsonl", "h.csv", "r.csv"))
    empty.write_text("")
    header.write_text("id,text,label\n")
    rejected.write_text("id,text,label\n1,,a\n")
    for path, line in [
        (empty, f"Error: {empty}: no rows to use (the file is empty)\n"),
        (header, f"Error: {header}: no rows to use (a header only)\n"),
        (
            rejected,
            f"Error: every row of {rejected} was rejected: nothing to use (see the lines above)\n",
        ),
    ]:
        args = ["--db", str(tmp_path / "d.db"), "demo", "--data", str(path), "--no-browser"]
        result = CliRunner().invoke(cli, args)
        assert (result.exit_code, result.output.splitlines(keepends=True)[-1]) == (1, line)


def test_simulated_teammates_make_the_held_out_accuracy_climb(tmp_path: Path):
    result = CliRunner().invoke(
        cli,
        [
            "--db",
            str(tmp_path / "demo.db"),
            "demo",
            "--simulate",
            "3",
            "--answers",
            "75",  # three retrains (25, 50, 75 labels): 50.8 % → 74.2 % on this seed
            "--retrain-every",
            "25",
            "--port",
            "0",
            "--no-browser",
        ],
    )
    assert result.exit_code == 0, result.output
    scores = [(int(n), float(acc)) for n, acc in ACCURACY.findall(result.output)]
    assert [n for n, _ in scores] == [25, 50, 75]
    first, last = scores[0][1], scores[-1][1]
    assert last > first + 20, result.output
    assert "After 75 simulated answers (75 labels): model v" in result.output
    with Store.open(tmp_path / "demo.db") as store:
        assert store.count_answers() == 75
        sources = {a["source"] for a in store.iter_answers()}
        assert sources <= {"button", "select"}
        assert store.champion_version() is not None


def test_demo_refuses_a_database_it_did_not_make(tmp_path: Path):
    real = tmp_path / "hitl.db"
    real.write_bytes(b"")
    result = CliRunner().invoke(cli, ["--db", str(real), "demo", "--port", "0", "--no-browser"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {real} exists and was not made by hitl demo; the demo recreates its database at "
        "every start, so pass another file (hitl --db demo.db demo)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hitl.db"]  # no lock file left beside


async def test_a_second_demo_on_the_same_database_refuses_and_leaves_it_alone(tmp_path: Path):
    """The demo recreates its database at every start: a second one in the same folder deleted
    the running demo's database from under it. Now it refuses, naming the first."""
    options = DemoOptions(db=tmp_path / "demo.db", port=0)
    async with running_demo(options, load_data(options), background=False) as demo:
        items = demo.rt.store.db["items"].count
        second = ["--db", str(options.db), "demo", "--port", "0", "--no-browser"]
        result = await asyncio.to_thread(CliRunner().invoke, cli, second)
        assert result.exit_code == 1, result.output
        assert result.output.startswith(
            f"Error: {options.db} is in use by another hitl server or demo (pid "
        )
        assert len(result.output.splitlines()) == 1
        with Store.open(options.db) as store:  # the first demo's database is still there
            assert store.db["items"].count == items > 0


def test_answers_need_simulated_teammates(tmp_path: Path):
    result = CliRunner().invoke(cli, ["demo", "--answers", "5", "--no-browser"])
    assert result.exit_code == 1
    assert result.output == "Error: --answers needs simulated teammates: add --simulate N\n"


# --data reads what `hitl import` reads, with the same row errors (issue 16.9).


def _write_csv(path: Path, n: int, bad_lines: dict[int, str] | None = None) -> None:
    lines = ["id,text,label"] + [
        f"r{k},message number {k} about {'ab'[k % 2]},{'ab'[k % 2]}" for k in range(n)
    ]
    for at, line in (bad_lines or {}).items():
        lines[at - 1] = line
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_users_csv_is_read_like_hitl_import_and_bad_rows_are_reported_and_skipped(
    tmp_path: Path,
):
    path = tmp_path / "mine.csv"
    _write_csv(path, 20, {4: "r2,,a", 7: 'r5,"never closed,b'})
    reported: list[str] = []
    data = read_data(path, report=reported.append)
    assert reported == [
        'mine.csv line 4: column "text" is empty, row skipped',
        'mine.csv line 7: unterminated quote in field "text", row skipped',
        "mine.csv: read 20 rows, using 18, 2 rejected",
    ]
    assert data.labels == ("a", "b") and len(data.pool) + len(data.holdout) == 18
    assert data.pool[0].text.startswith("message number")


def test_demo_runs_on_a_csv_with_a_bad_row_and_says_why_it_stops_before_answers(
    tmp_path: Path,
):
    path = tmp_path / "mine.csv"
    _write_csv(path, 31, {3: "r1,,b"})  # 30 good rows: 24 to label, 6 held out
    result = CliRunner().invoke(
        cli,
        [
            "--db",
            str(tmp_path / "demo.db"),
            "demo",
            "--data",
            str(path),
            "--simulate",
            "2",
            "--answers",
            "40",
            "--retrain-every",
            "0",
            "--port",
            "0",
            "--no-browser",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        'mine.csv line 3: column "text" is empty, row skipped',
        "mine.csv: read 31 rows, using 30, 1 rejected",
    ]
    assert "The pool has 24 items; stopping at 24 answers (not 40).\n" in result.stdout
    assert "After 24 simulated answers (24 labels)" in result.stdout


async def test_the_banners_curl_command_reaches_the_producer_api(tmp_path: Path):
    """The demo turns the producer API on with a token of its own and prints a command that
    works as printed (README's curl against `hitl demo` answered 503 "set HITL_API_TOKEN")."""
    options = DemoOptions(db=tmp_path / "demo.db", port=0)
    async with running_demo(options, load_data(options), background=False) as demo:
        line = next(line for line in describe(demo) if line.lstrip().startswith("API"))
        words = shlex.split(line.split("API", 1)[1])
        assert words[:2] == ["curl", "-s"] and words[3] == "-H" and words[5] == "-d"
        url, header, body = words[2], words[4], words[6]
        name, value = header.split(": ", 1)
        async with aiohttp.ClientSession() as http:
            async with http.post(url, headers={name: value}, data=body) as answer:
                assert answer.status == 200, await answer.text()
                predicted = await answer.json()
            async with http.post(url, headers={name: "Bearer wrong"}, data=body) as answer:
                assert answer.status == 401
    assert predicted["status"] == "needs_review" and predicted["id"]
    assert value == f"Bearer {options.api_token}" and len(options.api_token) >= 16
    assert DemoOptions().api_token != options.api_token  # a new one at every start


def test_the_demo_takes_its_api_token_from_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HITL_API_TOKEN", "team-token-0123456789")
    result = CliRunner().invoke(
        cli,
        ["--db", str(tmp_path / "demo.db"), "demo", "--simulate", "1", "--answers", "1",
         "--retrain-every", "0", "--port", "0", "--no-browser"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "-H 'Authorization: Bearer team-token-0123456789'" in result.output


def test_the_demo_refuses_an_api_token_hitl_serve_would_refuse(tmp_path: Path, monkeypatch):
    """A re-test: the demo took `HITL_API_TOKEN=a`, which `hitl serve` refuses at start."""
    monkeypatch.setenv("HITL_API_TOKEN", "a")
    result = CliRunner().invoke(
        cli, ["--db", str(tmp_path / "demo.db"), "demo", "--port", "0", "--no-browser"]
    )
    assert result.exit_code == 2
    assert "Invalid value for HITL_API_TOKEN: has 1 character, fewer than 16" in result.output
    assert not (tmp_path / "demo.db").exists()


def test_a_data_file_with_other_column_names_is_read_with_the_options_its_error_names(
    tmp_path: Path,
):
    # The README's examples/tickets.csv has body and ticket_id: the error says to pass
    # --text-column, so `hitl demo` must have it (it used to answer "No such option").
    tickets = Path(__file__).resolve().parents[2] / "examples" / "tickets.csv"
    result = CliRunner().invoke(
        cli, ["--db", str(tmp_path / "d.db"), "demo", "--data", str(tickets), "--no-browser"]
    )
    assert result.exit_code == 1 and "pass --text-column with one of these" in result.stderr
    help_text = CliRunner().invoke(cli, ["demo", "--help"]).stdout
    assert "--text-column" in help_text and "--id-column" in help_text
    data = read_data(tickets, columns=Columns(text="body", id="ticket_id"), report=print)
    items = {item.id: item for item in data.pool + data.holdout}
    assert len(items) == 30 and data.truth["T-1002"] == "bug"
    assert items["T-1002"].text == "The app crashes every time I open the settings page"


def test_a_data_file_whose_name_does_not_tell_its_format_is_read_with_format(tmp_path: Path):
    """A file without a known extension is refused with "pass --format": `hitl demo` answered
    that advice with "No such option: --format"."""
    path = tmp_path / "mine"
    _write_csv(path, 21)  # 20 items: 16 to label, 4 held out
    args = ["--db", str(tmp_path / "demo.db"), "demo", "--data", str(path), "--simulate", "1",
            "--answers", "3", "--retrain-every", "0", "--port", "0", "--no-browser"]  # fmt: skip
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "pass --format (" in refused.stderr
    result = CliRunner().invoke(cli, [*args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "After 3 simulated answers (3 labels)" in result.stdout


@pytest.mark.parametrize("simulate", [1, 2])
def test_teammates_skip_what_they_cannot_answer_and_go_on_to_every_labeled_item(
    tmp_path: Path, simulate: int
):
    """README's examples/tickets.csv has 15 of 30 rows labeled: the unlabeled ones filled the
    channel (HITL_MAX_OPEN) with questions the teammates could not answer, and the run stopped
    after a few answers. Now each teammate clicks Skip on them, the bot sets them aside once
    every teammate did (fewer than HITL_SKIPS_TO_DISCARD: all of them), and every one of the
    12 labeled pool items is answered."""
    tickets = Path(__file__).resolve().parents[2] / "examples" / "tickets.csv"
    db = tmp_path / "demo.db"
    result = CliRunner().invoke(
        cli,
        ["--db", str(db), "demo", "--data", str(tickets), "--text-column", "body",
         "--id-column", "ticket_id", "--simulate", str(simulate), "--answers", "400",
         "--retrain-every", "0", "--seed", "1", "--port", "0", "--no-browser"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "The pool has 27 items (12 with a label to answer with; 15 without one skipped and set "
        "aside); stopping at 12 answers (not 400).\n"
    ) in result.stdout
    assert "After 12 simulated answers (12 labels)" in result.stdout
    with Store.open(db) as store:
        counts = store.count_items()
        answers = list(store.iter_answers())
    assert counts["resolved"] == 12 and counts["skipped"] == 15
    skips = [a for a in answers if a["label"] is None]
    assert len(skips) == 15 * simulate and {a["source"] for a in skips} == {"button"}
    assert len({(a["item_id"], a["user_id"]) for a in skips}) == len(skips)


def test_a_repeated_text_in_a_file_without_ids_is_named_by_its_line_not_by_a_hash(
    tmp_path: Path,
):
    # banking77's train file repeats a few texts and has no id column: the hash the reader
    # gives each row as its id was never in the file, so it must not be what the line names
    path = tmp_path / "intents.jsonl"
    rows = [{"text": f"message number {n}", "label": "ab"[n % 2]} for n in range(6)]
    rows.insert(4, {"text": "message number 1", "label": "b"})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    reported: list[str] = []
    data = read_data(path, report=reported.append)
    assert reported == [
        "intents.jsonl line 5: the same text was read on line 2 already, row skipped",
        "intents.jsonl: read 7 rows, using 6, 1 rejected",
    ]
    assert len(data.pool) + len(data.holdout) == 6
