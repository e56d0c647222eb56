"""`hitl demo`: the bot and a local Slack workspace in one process, on one event loop.

One aiohttp server (HITL_PORT, default 3000) carries the bot's own app from ``init_app`` (so
``/slack/events`` is the production code path) with the sandbox's browser UI mounted beside it;
the fake Slack Web API listens on an OS-picked loopback port and the bot's SLACK_API_URL points
at it. The database is recreated at every start, since the workspace lives in memory. With
``careless`` a teammate answers wrong half the time and some items are gold questions, so
``/hitl stats`` and ``/hitl review`` have something to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import shlex
import shutil
import sys
import threading
import webbrowser
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from bot.config import Settings
from bot.demo.data import Columns, DemoData, DemoItem, demo_data, read_data
from bot.demo.simulate import Retrainer, Score, Simulator, Teammate, score_champion
from bot.errors import HitlError, StoreError
from bot.runtime import Runtime
from bot.sandbox import FakeSlack, ui
from bot.sandbox.workspace import Sandbox
from bot.server import RUNTIME, init_app, stop_signals
from bot.slack.dispatch import Dispatcher
from bot.slack.redraw import Redrawer
from bot.store import Store
from bot.store.erasure import imported_into
from bot.store.lock import HeldLock, server_lock
from bot.words import count

logger = logging.getLogger(__name__)

SIGNING_SECRET = "sandbox-signing-secret"
BOT_TOKEN = "xoxb-sandbox-token"
CHANNEL = ("C0QUESTIONS", "hitl-questions")
REPORT_CHANNEL = ("C0REPORTS", "hitl-reports")
PEOPLE = (
    ("U0ANA", "ana", "Ana Souza"),
    ("U0RAJ", "raj", "Raj Patel"),
    ("U0MEI", "mei", "Mei Chen"),
)
CARELESS = ("U0SIMCAL", "cal")  # --careless: a teammate wrong at CARELESS_ERROR_RATE
CARELESS_ERROR_RATE = 0.5
GOLD_ITEMS = 20  # --careless: pool items asked as gold questions (their label known)
GOLD_RATE = 0.25  # ... at this share of the posts, so they come up in a short session
TEAMMATES = (
    ("U0SIMALEX", "alex"),
    ("U0SIMKIM", "kim"),
    ("U0SIMSAM", "sam"),
    ("U0SIMJO", "jo"),
    ("U0SIMPAT", "pat"),
    ("U0SIMLEE", "lee"),
    ("U0SIMMAX", "max"),
    ("U0SIMRIA", "ria"),
)
MARKER = ".demo"  # beside the database: "hitl demo made this file, it may recreate it"

Echo = Callable[[str], None]


@dataclass
class DemoOptions:
    db: Path = Path("hitl-demo.db")
    host: str = "127.0.0.1"
    port: int = 3000
    seed: int = 0
    data: Path | None = None
    data_format: str | None = None  # --format: --data's format when its name does not tell
    columns: Columns = field(default_factory=Columns)  # --data's fields
    size: int = 600
    simulate: int = 0
    error_rate: float = 0.1
    answers: int | None = None  # stop after this many simulated answers
    retrain_every: int = 20
    pace: float = 1.0  # seconds between simulated answers (0 with --answers)
    max_open: int = 5
    pipeline: str | None = None  # HITL_PIPELINE; None: see demo_pipeline
    careless: bool = False  # a careless teammate, and gold questions that catch them
    # the producer API's token (HITL_API_TOKEN); a new one at every start unless given
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)


BUILT_IN_PIPELINE = "word_lr"  # the generated English data's: quick to fit, retrains in a blink


def demo_pipeline(options: DemoOptions) -> str:
    """The demo's classifier: the one asked for, else the quick word-only ``word_lr`` on the
    generated English data (`hitl demo --simulate 3 --answers 200 --retrain-every 50`: 13-16 s
    and 93-96 % held out, against 20-26 s and 89-91 % with ``word_char_auto``), and the
    product's default (``hitl serve``'s, word + character n-grams) on ``--data``'s own items:
    a word-only model never learns unspaced Chinese or Japanese (a whole sentence is one word)
    or emoji-only texts (no word at all), and stayed at chance on them."""
    if options.pipeline:
        return options.pipeline
    if options.data is None:
        return BUILT_IN_PIPELINE
    from model import DEFAULT_PIPELINE

    return DEFAULT_PIPELINE


API_EXAMPLE = "I was charged twice this month"  # the banner's producer API example


@dataclass
class Demo:
    """A running demo: what tests and the CLI reach into."""

    options: DemoOptions
    data: DemoData
    settings: Settings
    fake: FakeSlack
    sandbox: Sandbox
    rt: Runtime
    dispatcher: Dispatcher
    retrainer: Retrainer
    url: str
    teammates: list[Teammate] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def simulator(self, *, drive: bool) -> Simulator:
        return Simulator(
            self.sandbox,
            self.rt,
            CHANNEL[0],
            self.teammates,
            self.data.truth,
            self.data.labels,
            error_rate=self.options.error_rate,
            seed=self.options.seed,
            dispatcher=self.dispatcher if drive else None,
            retrainer=self.retrainer,
            pace=0.0 if drive else self.options.pace,
            skip_unknown=drive,  # nobody else is there to answer what they cannot
        )


def _replaced(db: Path) -> tuple[Path, ...]:
    """What a start deletes and recreates: the database, its WAL files, its models folder."""
    return (
        db,
        db.with_name(db.name + "-wal"),
        db.with_name(db.name + "-shm"),
        db.with_name(db.name + ".models"),
    )


def refuse_foreign(db: Path) -> None:
    """Refuse a database `hitl demo` did not make: the demo recreates its own at every start.
    Its WAL files and models folder too: a database moved aside (or restored) without its
    ``.models`` folder leaves that folder, with every trained model, beside a missing file."""
    if db.with_name(db.name + MARKER).exists():
        if db.exists() and (n := imported_into(db)):  # made by the demo, then used for real
            raise HitlError(
                f"{db} was made by hitl demo, but {n:,} item{'s' if n != 1 else ''} came into"
                " it since from outside the demo (hitl import); the demo recreates its database"
                " at every start, so pass another file (hitl --db demo.db demo), or delete"
                f" {db.name}{MARKER} to keep {db.name} as your own"
            )
        return
    if db.exists():
        raise HitlError(
            f"{db} exists and was not made by hitl demo; the demo recreates its database at "
            "every start, so pass another file (hitl --db demo.db demo)"
        )
    for path in _replaced(db)[1:]:
        if path.exists():
            raise HitlError(
                f"{path} exists and was not made by hitl demo; the demo would delete it at its "
                "start, so move it aside or pass another file (hitl --db demo.db demo)"
            )


def prepare_database(db: Path) -> None:
    """Start from an empty database: only one that `hitl demo` made may be replaced."""
    refuse_foreign(db)
    marker = db.with_name(db.name + MARKER)
    *files, models = _replaced(db)
    for path in files:
        path.unlink(missing_ok=True)
    if models.exists():
        shutil.rmtree(models)
    db.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by hitl demo; deleted with the database at its next start\n")


def load_data(options: DemoOptions, warn: Echo = print) -> DemoData:
    """The generated data, or ``--data``'s file (its bad rows reported through ``warn``)."""
    if options.data is not None:
        return read_data(
            options.data,
            seed=options.seed,
            report=warn,
            fmt=options.data_format,
            columns=options.columns,
        )
    return demo_data(options.size, seed=options.seed)


def demo_settings(
    options: DemoOptions, fake: FakeSlack, data: DemoData, *, headless: bool = False
) -> Settings:
    """The bot's settings. ``headless`` (the simulated teammates are the only people): an item
    is set aside once every teammate skipped it, if there are fewer of them than
    HITL_SKIPS_TO_DISCARD, so the questions they cannot answer do not fill the channel."""
    settings = Settings(
        slack_bot_token=fake.token,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake.base_url,
        db=options.db,
        channel=CHANNEL[0],
        report_channel=REPORT_CHANNEL[0],
        labels=data.labels,
        admins=tuple(user_id for user_id, _, _ in PEOPLE),
        host=options.host,
        port=options.port,
        max_open=options.max_open,
        pipeline=demo_pipeline(options),
        gold_rate=GOLD_RATE if options.careless else 0.0,
        api_token=options.api_token,
    )
    n_teammates = min(options.simulate, len(TEAMMATES)) + options.careless
    if headless and 0 < n_teammates < settings.skips_to_discard:
        settings = settings.with_changes(skips_to_discard=n_teammates)
    return settings


def build_workspace(options: DemoOptions) -> tuple[FakeSlack, Sandbox, list[Teammate]]:
    fake = FakeSlack(token=BOT_TOKEN, team_name="HITL Sandbox")
    sandbox = Sandbox(fake, SIGNING_SECRET)
    for channel_id, name in (CHANNEL, REPORT_CHANNEL):
        sandbox.add_channel(channel_id, name)
    for user_id, name, real_name in PEOPLE:
        sandbox.add_user(user_id, name, real_name)
    teammates = []
    for user_id, name in TEAMMATES[: options.simulate]:
        sandbox.add_user(user_id, name, f"{name.title()} (simulated)")
        teammates.append(Teammate(user_id, name))
    if options.careless:
        user_id, name = CARELESS
        sandbox.add_user(user_id, name, f"{name.title()} (simulated, careless)")
        teammates.append(Teammate(user_id, name, error_rate=CARELESS_ERROR_RATE))
    return fake, sandbox, teammates


def gold_items(data: DemoData) -> list[DemoItem]:
    """The pool items asked as gold questions with --careless: the first GOLD_ITEMS with a
    known label (as ``hitl import --gold`` would load them)."""
    return [item for item in data.pool if item.label is not None][:GOLD_ITEMS]


def check_options(options: DemoOptions) -> None:
    if options.simulate > len(TEAMMATES):
        raise HitlError(f"--simulate {options.simulate}: at most {len(TEAMMATES)} teammates")


@asynccontextmanager
async def running_demo(
    options: DemoOptions, data: DemoData, echo: Echo = print, *, background: bool = True
) -> AsyncIterator[Demo]:
    """Start everything on ``data`` (``load_data(options)``: generated or ``--data``; a
    benchmark brings its own split), post the first questions, yield, then stop it all in
    order. ``background=False`` leaves the queue to the caller (a headless simulation moves it
    itself).
    """
    check_options(options)
    refuse_foreign(options.db)  # before the lock: a refused start leaves no lock file beside it
    # Held before the database is replaced: a demo already running on it keeps it.
    with contextlib.ExitStack() as held:
        try:
            lock = held.enter_context(server_lock(options.db, kind="demo"))
        except StoreError as exc:
            raise StoreError(demo_lock_advice(str(exc))) from None
        async with _running_demo(options, data, echo, background=background, lock=lock) as demo:
            yield demo


def demo_lock_advice(refused: str) -> str:
    """The lock's refusal as a demo's: `hitl demo` takes its database from --db before the
    command, never from HITL_DB (a demo replaces its database), so the advice says that."""
    return refused.replace(" (--db or HITL_DB)", ": hitl --db other.db demo --port 0")


@asynccontextmanager
async def _running_demo(
    options: DemoOptions, data: DemoData, echo: Echo, *, background: bool, lock: HeldLock
) -> AsyncIterator[Demo]:
    prepare_database(options.db)
    with Store.open(options.db) as store:
        # The lock's flock on the database file was taken on the file this start deleted (or
        # on none, at a first start): the new file gets it now, before any item is written, so
        # a server or a command through another name of it (a hard link) is refused.
        lock.hold_file(refuse=True)
        gold = gold_items(data) if options.careless else []
        asked_as_gold = {item.id for item in gold}
        store.add_items([i for i in data.unlabeled() if i.id not in asked_as_gold], source="demo")
        store.add_gold(gold)
    lock.started()  # its lock file no longer says it is starting: it serves this database
    fake, sandbox, teammates = build_workspace(options)
    await fake.start(options.host, 0)
    settings = demo_settings(options, fake, data, headless=not background)

    def configure(rt: Runtime) -> None:
        dispatcher = Dispatcher.of(rt)
        dispatcher.post_interval = 0.0  # the fake has no rate limit; new questions at once
        dispatcher.rng = random.Random(options.seed)

    app = init_app(settings, run_background=False, configure=configure, lock=False)
    ui.add_routes(app, sandbox)
    ui.guard_host(app)  # /slack/events too: the sandbox's signing secret is no secret
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
    tasks: list[asyncio.Task] = []
    try:
        await runner.setup()
        site = web.TCPSite(runner, options.host, options.port)
        try:
            await site.start()
        except OSError as exc:
            raise HitlError(
                f"cannot listen on {options.host}:{options.port} ({exc.strerror}); "
                "pass another --port"
            ) from exc
        port = runner.addresses[0][1]
        url = f"http://{options.host}:{port}"
        await sandbox.start(f"{url}/slack/events")
        rt = app[RUNTIME]
        dispatcher = Dispatcher.of(rt)
        retrainer = Retrainer(rt, data.holdout, options.retrain_every, echo)
        demo = Demo(
            options, data, settings, fake, sandbox, rt, dispatcher, retrainer, url, teammates
        )
        fake.observers.append(demo.changed.set)
        await dispatcher.fill()  # the first questions are there when the page opens
        if background:
            tasks.append(asyncio.create_task(dispatcher.run(), name="demo-dispatcher"))
            tasks.append(asyncio.create_task(Redrawer.of(rt).run(), name="demo-redrawer"))
            tasks.append(asyncio.create_task(retrainer.watch(demo.changed), name="demo-retrain"))
        yield demo
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await sandbox.close()
        await runner.cleanup()
        await fake.close()


def describe(demo: Demo) -> list[str]:
    data, settings = demo.data, demo.settings
    people = ", ".join(f"{real} ({uid})" for uid, _, real in PEOPLE)
    lines = [
        "slack-hitl demo: the bot and a local Slack workspace; nothing leaves this machine.",
        f"  database   {settings.db} ({count(len(data.pool), 'item')} to label, "
        f"{len(data.holdout):,} held out to score the model)",
        f"  labels     {', '.join(data.labels)}",
        f"  channels   #{CHANNEL[1]} ({CHANNEL[0]}) for questions, "
        f"#{REPORT_CHANNEL[1]} ({REPORT_CHANNEL[0]}) for reports",
        f"  people     {people}: all admins, so /hitl retrain works",
        f"  Slack API  fake, at {settings.slack_api_url} (bot token {settings.slack_bot_token}, "
        f"signing secret {settings.slack_signing_secret})",
        f"  model      {settings.pipeline}, {retrain_line(demo.options.retrain_every)}",
        f"  API        curl -s {demo.url}/api/predict "
        f"-H {shlex.quote(f'Authorization: Bearer {settings.api_token}')} "
        f"-d {shlex.quote(json.dumps({'text': API_EXAMPLE}))}",
    ]
    if demo.teammates:
        lines.append(f"  simulated  {simulated_line(demo.teammates, demo.options.error_rate)}")
    if demo.options.careless:
        lines.append(
            f"  gold       {count(len(gold_items(data)), 'question')} with a known label, "
            f"{GOLD_RATE:.0%} of the posts: /hitl stats shows each person's accuracy on them, "
            "/hitl review the items someone missed"
        )
    return lines


def retrain_line(every: int) -> str:
    """How the demo retrains: every ``every`` labels, or (0) only when someone asks."""
    if every <= 0:
        return "retrained only on /hitl retrain (--retrain-every 0)"
    return f"retrained every {count(every, 'label')}"


def simulated_line(teammates: list[Teammate], error_rate: float) -> str:
    """Who the simulated teammates are and how often each is wrong on purpose: the steady ones
    at ``error_rate`` (--error-rate), the careless one (--careless) at its own rate."""
    steady = [t.name for t in teammates if t.error_rate is None]
    parts = []
    if steady:
        parts.append(
            f"{', '.join(steady)}: {'answer' if len(steady) > 1 else 'answers'} with the true"
            f" labels, {error_rate:.0%} wrong on purpose"
        )
    parts += [
        f"{t.name}: careless, {t.error_rate:.0%} wrong on purpose"
        for t in teammates
        if t.error_rate is not None
    ]
    return "; ".join(parts)


def has_desktop() -> bool:
    if os.environ.get("CI"):
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


async def run_demo(
    options: DemoOptions, echo: Echo = print, *, open_browser: bool = True, warn: Echo | None = None
) -> int | None:
    """The `hitl demo` command: run until Ctrl-C, SIGTERM or SIGHUP, and return that signal
    (or, with ``answers``, until that many simulated answers are in, then print the champion's
    held-out accuracy and stop: None)."""
    check_options(options)  # before the data is read: a bad option fails at once
    data = load_data(options, warn or echo)
    headless = options.answers is not None
    async with running_demo(options, data, echo, background=not headless) as demo:
        for line in describe(demo):
            echo(line)
        if headless:
            await _simulate_and_report(demo, echo)
            return None
        stop = asyncio.Event()
        with _stop_on_signals(stop) as stopped_by:  # before it says Ctrl-C stops it
            echo(f"Open {demo.url} (Ctrl-C to stop)")
            if open_browser and has_desktop():
                await asyncio.to_thread(webbrowser.open, demo.url)
            simulation = None
            if demo.teammates:
                simulation = asyncio.create_task(demo.simulator(drive=False).run())
            await stop.wait()
            echo("Stopping…")
            if simulation is not None:
                simulation.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await simulation
    return stopped_by[0] if stopped_by else None


def stopped_early_line(pool: int, known: int, set_aside: int, n: int, asked: int) -> str:
    """Why the simulation stopped at ``n`` answers, not the ``asked`` ones: the pool of ``pool``
    items has ``known`` with a label to answer with (``set_aside`` without one were skipped)."""
    labeled = ""
    if known < pool:
        skipped = f"; {set_aside:,} without one skipped and set aside" if set_aside else ""
        labeled = f" ({known:,} with a label to answer with{skipped})"
    return (
        f"The pool has {count(pool, 'item')}{labeled}; stopping at {count(n, 'answer')}"
        f" (not {asked:,})."
    )


async def _simulate_and_report(demo: Demo, echo: Echo) -> list[Score]:
    options = demo.options
    if not demo.teammates:
        raise HitlError("--answers needs simulated teammates: add --simulate N")
    echo(f"Simulating {count(options.answers or 0, 'answer')}…")
    simulator = demo.simulator(drive=True)
    n = await simulator.run(options.answers)
    await demo.rt.background.drain()
    if options.answers is not None and n < options.answers:
        pool, known = len(demo.data.pool), len(demo.data.truth)
        set_aside = simulator.n_set_aside() if known < pool else 0
        echo(stopped_early_line(pool, known, set_aside, n, options.answers))
    final = await score_champion(demo.rt, demo.data.holdout)
    scores = demo.retrainer.scores
    first = next((s for s in scores if s.accuracy is not None), None)
    echo(
        f"After {count(n, 'simulated answer')} ({count(final.n_labels, 'label')}):"
        f" {final.summary()}{_why_no_model(final, scores, options)}"
    )
    if first is not None and final.accuracy is not None:
        echo(
            f"Held-out accuracy went from {first.accuracy:.1%} (first model, "
            f"{count(first.n_labels, 'label')}) to {final.accuracy:.1%}."
        )
    return scores


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event):
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) set ``stop``; yields the list that
    gets the signal that did."""
    loop = asyncio.get_running_loop()
    installed = []
    stopped_by: list[int] = []

    def stop_on(sig: int) -> None:
        stopped_by.append(sig)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in stop_signals():
            loop.add_signal_handler(sig, stop_on, sig)
            installed.append(sig)
    try:
        yield stopped_by
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _why_no_model(final: Score, scores: list[Score], options: DemoOptions) -> str:
    """Why there is no model after the answers: no retrain was due yet, or the retrains had
    too few labels of each kind (a model needs 2 labels with 2 different texts each)."""
    if final.version is not None:
        return ""
    every = options.retrain_every
    if every <= 0:
        return " (--retrain-every 0: the demo does not retrain)"
    if not scores:
        return (
            f" (the first retrain comes after {count(every, 'new label')}: --retrain-every {every})"
        )
    return " (a model needs 2 labels with 2 different texts each; more answers bring them)"
