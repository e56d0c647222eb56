"""/api/predict and click acks as the backlog grows: the real `hitl serve` at 10k, 100k, 1M items.

One database grows through the sizes. It holds a trained champion (``hitl import`` of labeled
dataset texts, then ``hitl retrain``; banking77's 77 classes by default) and a backlog of
unlabeled items already scored by that champion (the steady state of a server that keeps up),
written through ``Store.add_items`` and ``Store.set_predictions`` in bulk with synthetic texts.
At each size the real server runs as a subprocess (``python -m bot serve``, started as
``bot_load.py`` starts it, HITL_MAX_OPEN questions posted to the fake Slack; with
``--keep-server``, set by ``--quick``, one server serves every size: started at the first,
the backlog grown beneath it as an import while it runs would grow it, stopped after the
last), and the benchmark measures, over HTTP on loopback:

1. ``predict``: ``--predicts`` calls to ``/api/predict`` from ``--predict-clients`` clients,
   each with a new text (an item stored and scored per call): p50 / p99 and calls/s;
2. ``clicks, quiet``: ``--clicks`` signed button clicks (``bot_load.py``'s payloads) from
   ``--click-clients`` clients on the posted questions, nothing else running;
3. ``clicks under predict load``: the same number of new clicks while the predict clients
   keep calling ``/api/predict``.

The floor is ``bot_load.py``'s bare Bolt (a Bolt app that only acks, own process; with
``--quick`` one such process serves every floor of the run) under the same clicks, measured
right after each size (a shared machine's load drifts over the run: each size is read against
its own floor), twice: alone, and while the same predict clients call the bare server's
``/api/predict``, which only answers (the loaded floor: what the machine, aiohttp and Bolt give
a click under that traffic with no product code at all; with ``--keep-server`` the idle
server still runs beside the floors). After each size's server stopped (``--keep-server``:
after the last size) the database is read: every acknowledged click must be exactly one
answer row. The load average is printed before and after each size.

    python benchmarks/predict_growth.py [--data DIR]      # 10k, 100k, 1M items; banking77
    python benchmarks/predict_growth.py --quick   # 1k, 4k items, 20 labels, one server; trec
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    add_data_options,
    free_port,
    grow_backlog,
    load_mixture,
    machine,
    markdown_table,
    resolve_data,
)
from bot_load import (
    CHANNELS,
    TOKEN,
    FakeThread,
    bare_phase,
    click_payloads,
    count_answers,
    metric,
    predict_load,
    run_load,
    serve_env,
    start_predict_worker,
    start_process,
    stop_kept_bare,
    stop_predict_worker,
    stop_process,
    train_seed_champion,
)

CHANNEL = CHANNELS["idle"]


# --- load ---------------------------------------------------------------------------------


async def open_questions(ft: FakeThread, n: int, limit_s: float) -> list[dict]:
    """The channel's first ``n`` questions: with HITL_VOTES=25 no click resolves one, so they
    stay open from size to size and each server finds the channel full."""
    deadline = time.monotonic() + limit_s
    while True:
        messages = [m for m in ft.messages(CHANNEL) if m.get("blocks")]
        if len(messages) >= n:
            for m in messages:
                m.setdefault("channel", CHANNEL)
            return messages[:n]
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(messages)} of {n} questions posted in {limit_s:.0f} s")
        await asyncio.sleep(0.05)  # a benchmark polling another thread, not a test


async def start_server(ft: FakeThread, db: Path, args) -> tuple[asyncio.subprocess.Process, str]:
    """``hitl serve`` on ``db`` (the fake Slack's channel, HITL_MAX_OPEN questions, the API
    token set), once it listens; the process and its base URL."""
    port = free_port()
    env = serve_env(ft.fake, db, CHANNEL, port, args.max_open)
    env["HITL_API_TOKEN"] = TOKEN
    process = await start_process([sys.executable, "-m", "bot", "serve"], env)
    return process, f"http://127.0.0.1:{port}"


async def stop_hitl_serve(process: asyncio.subprocess.Process) -> int | str:
    """Stop ``hitl serve``: its exit code, with the end of its log if it failed."""
    code, rest = await stop_process(process)
    return code if code == 0 and "Traceback" not in rest else f"{code}: {rest[-300:]}"


def answers(db: Path, index: int) -> dict[str, tuple[int, int]]:
    """The answer rows of size ``index``'s clicks, quiet and loaded, read once the server
    stopped: (rows, distinct (item, user)) each."""
    return {kind: count_answers(db, f"S{index}{kind}") for kind in ("Q", "L")}


async def size_phase(
    ft: FakeThread, db: Path, size: int, index: int, texts: list[str], args, base: str
) -> dict:
    """The predicts and both click phases of one size, on the running server at ``base``."""
    out: dict = {"size": size}
    tag = f"S{index}"
    messages = await open_questions(ft, args.max_open, 20 + 2 * args.max_open)
    predict_url = f"{base}/api/predict"
    await predict_load(
        predict_url, texts, args.predict_clients, n=args.warmup, stop=None, tag=f"{tag}w"
    )
    out["predict"] = await predict_load(
        predict_url, texts, args.predict_clients, n=args.predicts, stop=None, tag=tag
    )
    quiet = click_payloads(messages, args.clicks, args.max_open, f"{tag}Q")
    out["payloads"] = quiet
    out["clicks_quiet"] = await run_load(
        "clicks, quiet", f"{base}/slack/events", quiet, args.click_clients
    )
    loaded = click_payloads(messages, args.clicks, args.max_open, f"{tag}L")
    texts_file = db.parent / "predict_texts.json"
    texts_file.write_text(json.dumps(texts[:20_000]))
    background = await asyncio.to_thread(
        start_predict_worker, predict_url, args.predict_clients, texts_file, f"{tag}b"
    )  # in a process of its own, as in bot_load's mix
    await asyncio.sleep(args.load_lead)  # the predict clients are busy before the clicks
    before = await fsyncs(base)
    out["clicks_loaded"] = await run_load(
        "clicks under predict load", f"{base}/slack/events", loaded, args.click_clients
    )
    after = await fsyncs(base)
    out["fsyncs"] = [a - b for a, b in zip(after, before, strict=True)]
    out["predict_during_clicks"] = await stop_predict_worker(background)
    out["texts_file"] = texts_file
    return out


FSYNC_SLOW = ("0.05", "0.1")  # seconds: the /metrics buckets that tell a slow fsync


async def fsyncs(base: str) -> list[float]:
    """The server's fsyncs so far (``hitl_wal_fsync_seconds``): all, and those over 50 and
    100 ms (-1 each from a server without the metric)."""
    name = "hitl_wal_fsync_seconds"
    total = await metric(base, f"{name}_count")
    within = [await metric(base, f'{name}_bucket{{le="{le}"}}') for le in FSYNC_SLOW]
    if total < 0 or min(within) < 0:
        return [-1.0] * (1 + len(FSYNC_SLOW))
    return [total, *(total - n for n in within)]


# --- report -------------------------------------------------------------------------------


def report(results: list[dict]) -> str:
    first = results[0]["predict"].p(50)
    rows = []
    for r in results:
        pr, quiet, loaded = r["predict"], r["clicks_quiet"], r["clicks_loaded"]
        acked = {"Q": quiet.ok, "L": loaded.ok}
        stored = all(r["answers"][k] == (acked[k], acked[k]) for k in acked)
        errors = sum(
            len(lo.errors) + sum(n for s, n in lo.statuses.items() if s != 200)
            for lo in (pr, quiet, loaded, r["predict_during_clicks"], r["floor_loaded"])
            + (r["floor_predicts"],)
        )
        rows.append(
            [
                f"{r['size']:,}",
                f"{pr.p(50):.1f}",
                f"{pr.p(99):.1f}",
                f"{len(pr.latencies) / pr.seconds:,.0f}",
                f"{pr.p(50) / first:.2f}",
                f"{quiet.p(50):.1f}",
                f"{quiet.p(99):.1f}",
                f"{loaded.p(50):.1f}",
                f"{loaded.p(99):.1f}",
                f"{r['floor'].p(99):.1f}",
                f"{loaded.p(99) / r['floor'].p(99):.2f}",
                f"{quiet.p(99) / r['floor'].p(99):.2f}",
                f"{r['floor_loaded'].p(99):.1f}",
                f"{loaded.p(99) / r['floor_loaded'].p(99):.2f}",
                f"{len(r['predict_during_clicks'].latencies):,} / "
                f"{len(r['floor_predicts'].latencies):,}",
                errors,
                "yes" if stored else f"NO {r['answers']} vs {acked}",
            ]
        )
    head = [
        "unlabeled items",
        "predict p50 ms",
        "predict p99 ms",
        "predicts/s",
        "p50 / smallest",
        "click p50 ms (quiet)",
        "click p99 ms (quiet)",
        "click p50 ms (predict load)",
        "click p99 ms (predict load)",
        "floor p99 ms",
        "loaded p99 / floor",
        "quiet p99 / floor",
        "floor p99 ms (predict load)",
        "loaded p99 / loaded floor",
        "predicts during clicks (server / floor)",
        "errors",
        "acked = answer rows",
    ]
    floor_line = "bare Bolt floor after each size: p50 " + " / ".join(
        f"{r['floor'].p(50):.1f}" for r in results
    )
    floor_line += " ms; under the predict clients: p50 " + " / ".join(
        f"{r['floor_loaded'].p(50):.1f}" for r in results
    )
    floor_line += " ms\nfsyncs during the loaded clicks (all / over 50 ms / over 100 ms): " + (
        "; ".join(
            f"{r['size']:,}: " + " / ".join(f"{n:.0f}" for n in r["fsyncs"])
            if min(r["fsyncs"]) >= 0
            else f"{r['size']:,}: not reported by this server"
            for r in results
        )
    )
    loads = "; ".join(f"{r['size']:,}: {r['load']}" for r in results)
    return (
        markdown_table(head, rows, "l" + "r" * 15 + "l")
        + f"\n\n{floor_line} ms\nload average (1, 5, 15 min) before / after each size: {loads}"
    )


async def main_async(args) -> int:
    print(machine())
    sizes = args.sizes
    print(
        f"sizes {', '.join(f'{s:,}' for s in sizes)}; {args.labeled:,} labels; "
        f"{args.predicts} predicts and {args.clicks} clicks per phase; "
        f"{args.predict_clients} predict clients, {args.click_clients} click clients"
    )
    texts, _ = load_mixture(args.data, args.datasets)
    words = sorted({w for t in texts[:20_000] for w in t.split()})
    with tempfile.TemporaryDirectory() as tmp, FakeThread() as ft:
        db = Path(tmp) / "growth.db"
        labels, retrain_s = train_seed_champion(db, args.labeled, args.data, args.datasets)
        print(
            f"champion v1: {len(labels)} classes, {args.labeled:,} labels, retrain "
            f"{retrain_s:.0f} s"
        )
        results: list[dict] = []
        have = 0
        floor_args = args_for_floor(args)
        server = None  # the running `hitl serve`: (process, base URL)
        try:
            for index, size in enumerate(sizes):
                seconds = grow_backlog(db, have, size, words, labels)
                added = f"{size - have:,} added in {seconds:.0f} s"
                added += ", beneath the running server" if server is not None else ""
                print(f"{size:,} unlabeled items ({added})", flush=True)
                have = size
                before = load_average()
                if server is None:
                    server = await start_server(ft, db, args)
                result = await size_phase(ft, db, size, index, texts, args, server[1])
                if not args.keep_server:
                    result["server_exit"] = await stop_hitl_serve(server[0])
                    server = None
                    result["answers"] = answers(db, index)
                result["floor"] = await bare_phase(
                    ft.fake, result["payloads"], floor_args, f"bare Bolt ({size:,})"
                )
                result["floor_loaded"], result["floor_predicts"] = await bare_phase(
                    ft.fake,
                    result["payloads"],
                    floor_args,
                    f"bare Bolt under predicts ({size:,})",
                    under_predicts=(result["texts_file"], args.predict_clients, args.load_lead),
                )
                result["load"] = f"{before} / {load_average()}"
                results.append(result)
                print(
                    f"  predict p50 {result['predict'].p(50):.1f} ms, click p99 quiet "
                    f"{result['clicks_quiet'].p(99):.1f} / loaded "
                    f"{result['clicks_loaded'].p(99):.1f} ms, floor "
                    f"{result['floor'].p(99):.1f} ms; server exit "
                    f"{result.get('server_exit', 'later (kept for the next size)')}",
                    flush=True,
                )
            if server is not None:  # --keep-server: each size's answers read once it stopped
                code = await stop_hitl_serve(server[0])
                server = None
                print(f"server (one for every size) exit {code}", flush=True)
                for index, result in enumerate(results):
                    result["server_exit"], result["answers"] = code, answers(db, index)
        finally:
            if server is not None:
                await stop_process(server[0])
            await stop_kept_bare(floor_args)
    print(report(results))
    return 0


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def args_for_floor(args) -> argparse.Namespace:
    """bot_load.bare_phase reads ``concurrency``: the click clients; and ``keep_bare`` (set by
    ``--quick``): one bare server for every floor of the run, kept in ``bare`` until the end."""
    return argparse.Namespace(concurrency=args.click_clients, keep_bare=args.quick, bare=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run for the test suite")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--labeled", type=int, default=2_000, help="labels the champion learns")
    parser.add_argument("--predicts", type=int, default=3_000, help="calls in the predict phase")
    parser.add_argument("--warmup", type=int, default=100, help="predict calls before measuring")
    parser.add_argument("--clicks", type=int, default=400, help="clicks in each click phase")
    parser.add_argument("--predict-clients", type=int, default=20)
    parser.add_argument("--click-clients", type=int, default=10)
    parser.add_argument(
        "--max-open",
        type=int,
        default=50,
        help="HITL_MAX_OPEN (≤ 50): the questions clicked, so that no label of one reaches the "
        "13 votes that resolve it under HITL_VOTES=25 over all sizes and phases",
    )
    parser.add_argument(
        "--load-lead", type=float, default=1.0, help="seconds of predict load before the clicks"
    )
    parser.add_argument(
        "--keep-server",
        action="store_true",
        help="one `hitl serve` for every size (set by --quick): started at the first, the "
        "backlog grown beneath it, stopped after the last",
    )
    add_data_options(parser, ("banking77",), quick="trec")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.labeled, args.predicts, args.warmup = [1_000, 4_000], 20, 40, 10
        args.clicks, args.max_open, args.load_lead = 20, 4, 0.2
        args.keep_server = True  # one server start (~8 s of CPU with its fork server), not two
    args.data, args.datasets = resolve_data(args)
    if sorted(args.sizes) != args.sizes:
        parser.error("--sizes must grow")
    if 2 * len(args.sizes) * args.clicks > 60 * args.max_open:
        parser.error("too many clicks per question: some would resolve; raise --max-open")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
