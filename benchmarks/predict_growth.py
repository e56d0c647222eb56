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

With ``--start-early`` (set by ``--quick``) one process of predict clients serves every loaded
phase, the server's and the floors' (told where to call, then to stop, phase after phase), and
one bare Bolt server every floor; both are started beside the seeding, off the run's path.

    python benchmarks/predict_growth.py [--data DIR]      # 10k, 100k, 1M items; banking77
    python benchmarks/predict_growth.py --quick   # 1k, 4k items, 20 labels, one server; trec
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bot_load
from _common import (
    ROOT,
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
    SECRET,
    TOKEN,
    FakeThread,
    Load,
    bare_phase,
    clean_env,
    click_payloads,
    count_answers,
    metric,
    predict_load,
    run_load,
    serve_env,
    start_predict_worker,
    start_process,
    step,
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


class PredictClients:
    """``--start-early``: one process of predict clients (``--predict-phases``) for every
    loaded phase: ``call`` sets them calling a URL, ``stop`` stops them and returns their
    Load, phase after phase. Like bot_load's ``--predict-worker``, a process of its own, so
    that their work does not share the click clients' interpreter."""

    def __init__(self, texts: Path) -> None:
        step("starting the predict clients (one process for every loaded phase)")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--predict-phases", str(texts)],
            env=clean_env(),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.process.stdout.readline().strip() != "ready":
            self.close()
            raise SystemExit("the predict clients did not start (their errors are above)")

    async def call(self, url: str, clients: int, tag: str) -> None:
        """Set the clients calling ``url``; returns once the first call was answered and
        they all call."""
        step(f"the predict clients call {url} ({tag})")
        self.process.stdin.write(f"{url} {clients} {tag}\n")
        self.process.stdin.flush()
        try:
            line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 120)
        except TimeoutError:
            raise SystemExit(f"the predict clients did not call {url} within 120 s") from None
        if line.strip() != "calling":
            raise SystemExit(f"the predict clients ended ({self.process.wait()})")

    async def stop(self) -> Load:
        step(f"stopping the predict clients (pid {self.process.pid})")
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        try:  # (a stuck process is killed by close, which ends the read)
            line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 120)
        except TimeoutError:
            raise SystemExit("the predict clients did not stop within 120 s") from None
        if not line:
            raise SystemExit(f"the predict clients ended ({self.process.wait()})")
        fields = json.loads(line)
        fields["statuses"] = {int(k): v for k, v in fields["statuses"].items()}
        return Load(**fields)

    def close(self) -> None:
        """End the process: its input closed (it then ends), killed if it does not."""
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_predict_phases(texts_file: Path) -> None:
    """``--predict-phases TEXTS``: the other side of ``PredictClients``. Each line on stdin,
    ``URL CLIENTS TAG``, starts that many clients calling URL with new texts, until the next
    line; their Load is then written on stdout as one JSON line. They start once one call (not
    counted) was answered, and "calling" is written then. Stdin's end (the benchmark closed
    it, or ended) ends the process."""
    texts = json.loads(texts_file.read_text())

    async def run() -> None:
        print("ready", flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            url, clients, tag = line.split()
            await predict_load(url, texts, 1, n=1, stop=None, tag=f"{tag}p")  # the URL answers
            stop = asyncio.Event()
            calls = asyncio.create_task(
                predict_load(url, texts, int(clients), n=None, stop=stop, tag=tag)
            )
            await asyncio.sleep(0)  # the clients send their first calls
            print("calling", flush=True)
            await asyncio.to_thread(sys.stdin.readline)  # "stop" (or the end)
            stop.set()
            print(json.dumps((await calls).__dict__), flush=True)

    asyncio.run(run())


async def start_bare(ft: FakeThread) -> tuple[asyncio.subprocess.Process, str]:
    """bot_load's bare Bolt server (``--bare-server``) once it listens, and its base URL."""
    port = free_port()
    env = clean_env(
        SLACK_BOT_TOKEN=ft.fake.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=ft.fake.base_url,
        HITL_PORT=str(port),
    )
    process = await start_process([sys.executable, bot_load.__file__, "--bare-server"], env)
    return process, f"http://127.0.0.1:{port}"


def write_texts(db: Path, texts: list[str]) -> Path:
    """The texts the predict clients' process calls with, in a file beside ``db``."""
    texts_file = db.parent / "predict_texts.json"
    texts_file.write_text(json.dumps(texts[:20_000]))
    return texts_file


def answers(db: Path, index: int) -> dict[str, tuple[int, int]]:
    """The answer rows of size ``index``'s clicks, quiet and loaded, read once the server
    stopped: (rows, distinct (item, user)) each."""
    return {kind: count_answers(db, f"S{index}{kind}") for kind in ("Q", "L")}


async def size_phase(
    ft: FakeThread,
    db: Path,
    size: int,
    index: int,
    texts: list[str],
    args,
    base: str,
    clients: PredictClients | None = None,
) -> dict:
    """The predicts and both click phases of one size, on the running server at ``base``
    (``clients``: the predict clients' process of ``--start-early``; else one is started)."""
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
    texts_file = write_texts(db, texts)
    if clients is None:
        background = await asyncio.to_thread(
            start_predict_worker, predict_url, args.predict_clients, texts_file, f"{tag}b"
        )  # in a process of its own, as in bot_load's mix
    else:
        await clients.call(predict_url, args.predict_clients, f"{tag}b")
    await asyncio.sleep(args.load_lead)  # the predict clients are busy before the clicks
    before = await fsyncs(base)
    out["clicks_loaded"] = await run_load(
        "clicks under predict load", f"{base}/slack/events", loaded, args.click_clients
    )
    after = await fsyncs(base)
    out["fsyncs"] = [a - b for a, b in zip(after, before, strict=True)]
    if clients is None:
        out["predict_during_clicks"] = await stop_predict_worker(background)
    else:
        out["predict_during_clicks"] = await clients.stop()
    out["texts_file"] = texts_file
    return out


async def floors(ft: FakeThread, result: dict, args, floor_args, early: Early | None) -> None:
    """The bare Bolt floors of a size, on its quiet clicks' payloads: alone, then under the
    predict clients (``early``: on the bare server and with the clients' process started
    beside the seeding; else bot_load's ``bare_phase`` starts them)."""
    size, payloads = result["size"], result["payloads"]
    name, loaded_name = f"bare Bolt ({size:,})", f"bare Bolt under predicts ({size:,})"
    if early is None:
        result["floor"] = await bare_phase(ft.fake, payloads, floor_args, name)
        result["floor_loaded"], result["floor_predicts"] = await bare_phase(
            ft.fake,
            payloads,
            floor_args,
            loaded_name,
            under_predicts=(result["texts_file"], args.predict_clients, args.load_lead),
        )
        return
    events, clients = f"{early.bare}/slack/events", early.clients
    result["floor"] = await run_load(name, events, payloads, args.click_clients)
    await clients.call(f"{early.bare}/api/predict", args.predict_clients, f"F{result['size']}")
    await asyncio.sleep(args.load_lead)  # the predict clients are busy before the clicks
    result["floor_loaded"] = await run_load(loaded_name, events, payloads, args.click_clients)
    result["floor_predicts"] = await clients.stop()


class Early:
    """``--start-early``: the predict clients' process and the bare server, started beside
    the seeding."""

    def __init__(self) -> None:
        self.clients: PredictClients | None = None
        self.bare_process: asyncio.subprocess.Process | None = None
        self.bare = ""  # the bare server's base URL

    async def start(self, ft: FakeThread, texts_file: Path) -> None:
        clients = asyncio.to_thread(PredictClients, texts_file)
        done = await asyncio.gather(clients, start_bare(ft), return_exceptions=True)
        if isinstance(done[0], PredictClients):
            self.clients = done[0]
        if isinstance(done[1], tuple):
            self.bare_process, self.bare = done[1]
        for failed in (d for d in done if isinstance(d, BaseException)):
            raise failed

    async def stop(self) -> None:
        if self.clients is not None:
            await asyncio.to_thread(self.clients.close)
            self.clients = None
        if self.bare_process is not None:
            process, self.bare_process = self.bare_process, None
            await stop_process(process)


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
        early = Early() if args.start_early else None
        seeding = asyncio.to_thread(train_seed_champion, db, args.labeled, args.data, args.datasets)
        if early is None:
            labels, retrain_s = await seeding
        else:
            done = await asyncio.gather(
                seeding, early.start(ft, write_texts(db, texts)), return_exceptions=True
            )
            if any(isinstance(d, BaseException) for d in done):
                await early.stop()
                raise next(d for d in done if isinstance(d, BaseException))
            labels, retrain_s = done[0]
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
                clients = early.clients if early is not None else None
                result = await size_phase(ft, db, size, index, texts, args, server[1], clients)
                if not args.keep_server:
                    result["server_exit"] = await stop_hitl_serve(server[0])
                    server = None
                    result["answers"] = answers(db, index)
                await floors(ft, result, args, floor_args, early)
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
                stopping = [early.stop()] if early is not None else []  # beside the server's
                code, *_ = await asyncio.gather(stop_hitl_serve(server[0]), *stopping)
                server = None
                print(f"server (one for every size) exit {code}", flush=True)
                for index, result in enumerate(results):
                    result["server_exit"], result["answers"] = code, answers(db, index)
        finally:
            if server is not None:
                await stop_process(server[0])
            if early is not None:
                await early.stop()
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
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000, 1_000_000],
        metavar="N",
        help="items in the database at each measured size, ascending; one database grows "
        "through them (default 10000 100000 1000000; --quick: 1000 4000)",
    )
    parser.add_argument("--labeled", type=int, default=2_000, help="labels the champion learns")
    parser.add_argument("--predicts", type=int, default=3_000, help="calls in the predict phase")
    parser.add_argument("--warmup", type=int, default=100, help="predict calls before measuring")
    parser.add_argument("--clicks", type=int, default=400, help="clicks in each click phase")
    parser.add_argument(
        "--predict-clients", type=int, default=20, help="/api/predict clients (default 20)"
    )
    parser.add_argument(
        "--click-clients", type=int, default=10, help="click clients at once (default 10)"
    )
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
    parser.add_argument(
        "--start-early",
        action="store_true",
        help="one process of predict clients for every loaded phase and one bare server for "
        "every floor, both started beside the seeding (set by --quick)",
    )
    parser.add_argument("--predict-phases", type=Path, help=argparse.SUPPRESS)
    add_data_options(parser, ("banking77",), quick="trec")
    args = parser.parse_args(argv)
    if args.predict_phases:  # the predict clients' process of --start-early
        run_predict_phases(args.predict_phases)
        return 0
    if args.quick:
        args.sizes, args.labeled, args.predicts, args.warmup = [1_000, 4_000], 20, 40, 10
        # one question, not four: the server posts one a second to a channel, so four kept
        # the run waiting three seconds at the first size (two, one second); 40 clicks on it
        # stay at most 60 a question (below), and each label's votes under 13
        args.clicks, args.max_open = 10, 1
        # their predict clients start calling within milliseconds (--start-early: once a call
        # was answered), so a tenth of a second of load comes before the clicks
        args.load_lead = 0.1
        args.keep_server = True  # one server start (~8 s of CPU with its fork server), not two
        args.start_early = True  # one predict clients' process, not four; beside the seeding
    args.data, args.datasets = resolve_data(args)
    if sorted(args.sizes) != args.sizes:
        parser.error("--sizes must grow")
    if 2 * len(args.sizes) * args.clicks > 60 * args.max_open:
        parser.error("too many clicks per question: some would resolve; raise --max-open")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
