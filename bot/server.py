"""Composes the aiohttp application: Slack's endpoint, health, and the background tasks.

``init_app(settings)`` is used by ``hitl serve`` and by the tests alike. Over HTTP, Slack's
requests come to ``POST /slack/events``, whose signature is checked before the body is read
as anything; in Socket Mode (``SLACK_APP_TOKEN``) they come over Slack's websocket and the
HTTP route does not exist. Who the bot is, and that it can see its channels, is checked once
at start (``bot.slack.connect``, which also connects Socket Mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import faulthandler
import gc
import hmac
import logging
import os
import signal
import socket
import sys
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import yarl
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.request import payload_utils
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bot import eventloop
from bot.api import bodies, metrics, routes
from bot.api.webhooks import run_deliveries
from bot.appkeys import BOLT, MAX_BODY, RUNTIME, SERVER_LOCK, VERIFIER
from bot.config import Settings, channel_id_problems
from bot.errors import ConfigError, HitlError, StoreError, without_folders
from bot.eventloop import urgent
from bot.labelnames import case_twin, quoted
from bot.labelset import label_set_warnings
from bot.learning.jobs import (
    ChampionHolder,
    Trainer,
    catch_up,
    check_database_file,
    start_scheduler,
    stop_begun,
    stop_scheduler,
    warm_scoring,
)
from bot.learning.reports import lost_models, trained_labels, unknown_models
from bot.learning.retrain import (
    FitWorker,
    load_champion,
    recover_champion,
    registry_for,
    sweep_leftovers,
)
from bot.learning.scoring import Scorer
from bot.learning.scoring_worker import WALK_NICENESS, ScoringWorker
from bot.learning.typical import stop as stop_typical
from bot.runtime import Runtime, make_client, slack_session
from bot.slack.acks import dispatch_until_acked
from bot.slack.app import build_app
from bot.slack.commands import HomePublisher
from bot.slack.connect import check_slack, socket_mode_of, start_socket_mode
from bot.slack.dispatch import Dispatcher
from bot.slack.questions import label_set
from bot.slack.redraw import Redrawer
from bot.store import (
    Checkpointer,
    DatabaseError,
    ReviewRules,
    Store,
    damage_seen,
    database_problem,
)
from bot.store.lock import HeldLock, lock_path, server_lock
from model import ModelRegistry

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

# SQLite's lock bytes in a database file (os_unix.c: its pending byte, reserved byte and
# shared range): every connection that has the file open in WAL mode holds a read lock there
# for as long as it is open (``drop_new_database``).
SQLITE_PENDING_BYTE = 0x40000000
SQLITE_LOCK_BYTES = 512

# The event loop's connection waits at most this long for another process's write lock (an
# import commits every few hundred ms; a `sqlite3` shell left in BEGIN IMMEDIATE holds it for
# good): the write runs on the loop, so the wait holds every request, and a click refused
# after 2 s still gets its 503 before Slack's 3-second deadline. Worker threads keep 10 s.
LOOP_BUSY_TIMEOUT_MS = 2_000
# Once a write there has waited those 2 s and been refused, the writes of the next 2 s wait
# this long only (``Store.lock_rest``), until one is stored: a click queued behind a redraw
# that waited is answered within Slack's 3 s, and a brief lock (a commit) still lets it in.
LOOP_LOCK_REST_MS = 250

logger = logging.getLogger(__name__)


def serve_settings_problems(settings: Settings, refused: Collection[str] = ()) -> list[str]:
    """Every missing piece `serve` needs, and every channel setting that is not a channel ID,
    one line each. A setting in ``refused`` (its variable name: a bad value, already reported)
    is not said to be missing."""
    problems = []
    if not settings.slack_bot_token and "SLACK_BOT_TOKEN" not in refused:
        problems.append("SLACK_BOT_TOKEN is not set; copy the Bot User OAuth Token (xoxb-…)")
    if (
        not settings.slack_app_token
        and not settings.slack_signing_secret
        and not {"SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"} & set(refused)
    ):
        problems.append(
            "SLACK_SIGNING_SECRET is not set; copy it from Basic Information → App Credentials "
            "(or set SLACK_APP_TOKEN for Socket Mode)"
        )
    if not settings.channel and "HITL_CHANNEL" not in refused:
        problems.append("HITL_CHANNEL is not set; give the ID of the channel for questions")
    return problems + channel_id_problems(settings)


def check_serve_settings(settings: Settings) -> None:
    """Everything `serve` needs, each missing piece named on its own line."""
    problems = serve_settings_problems(settings)
    if problems:
        raise ConfigError(problems)


def start_problems(settings: Settings, refused: Collection[str] = ()) -> list[str]:
    """What `serve` would refuse before it reaches Slack, all of it, one line each: the
    missing pieces and channel IDs (``serve_settings_problems``) and the label set
    (``label_set_lines``: the configured one, or the database's when it is there; a
    database that cannot be opened now is left for the start to report). For a start that
    is refused anyway (a bad value): one run says every problem, not one kind per run."""
    problems = serve_settings_problems(settings, refused)
    if "HITL_LABELS" in refused:  # its bad value is said; no label set follows from it
        return problems
    if not Path(settings.db).exists():
        return problems + label_set_lines(settings, list(settings.labels), {})
    try:
        store = Store.open(settings.db, create=False)
    except (HitlError, DatabaseError, OSError):
        return problems
    try:
        labels = label_set(settings, store)
        aliases = store.label_aliases()
        retired = store.retired_labels()
    except (HitlError, DatabaseError, OSError):
        return problems
    finally:
        store.close()
    return problems + label_set_lines(settings, labels, aliases, retired)


def check_label_set(settings: Settings, store: Store) -> None:
    """``label_set_problems`` for the database's label set. A route or guideline naming a
    retired label is not refused: it is said at start (``bot.labelset.retired_in_config``)."""
    labels, aliases = label_set(settings, store), store.label_aliases()
    label_set_problems(settings, labels, aliases, store.retired_labels())


def check_new_database_labels(settings: Settings) -> None:
    """``check_label_set`` for a database file that does not exist yet, before anything makes
    it: its label set is the configured one, and a start it refuses must not leave an empty
    database (and its lock file) behind at a path that may be a typo (`hitl --db typo.db
    serve`), which later commands would then take."""
    if not Path(settings.db).exists():
        label_set_problems(settings, list(settings.labels), {})


def label_set_problems(
    settings: Settings,
    labels: list[str],
    aliases: Mapping[str, str],
    retired: Collection[str] = (),
) -> None:
    """Refuse (``ConfigError``) a label set of fewer than two labels, or a route or guideline
    naming a label that is not in force (an old name of one, in ``aliases``, follows it; a
    ``retired`` one is only warned of, ``bot.labelset.retired_in_config``)."""
    problems = label_set_lines(settings, labels, aliases, retired)
    if problems:
        raise ConfigError(problems)


def label_set_lines(
    settings: Settings,
    labels: list[str],
    aliases: Mapping[str, str],
    retired: Collection[str] = (),
) -> list[str]:
    """``label_set_problems``'s lines: none when the label set is fine. A route or guideline
    for a ``retired`` label is none: harmless (no question is predicted that label), and
    refusing it took the bot down at the restart after `/hitl labels retire`; the start warns
    of it with the fix instead (``bot.labelset.retired_in_config``)."""
    if len(labels) == 1:  # imported items all of one label, or HITL_LABELS of one
        return [
            f"only one label ({quoted(labels[0], 40)}): a label set needs at least two; add"
            " another with hitl labels add LABEL, or set HITL_LABELS to two or more (e.g."
            " HITL_LABELS=billing,bug,account)"
        ]
    if not labels:
        return [
            "no label set: set HITL_LABELS (e.g. HITL_LABELS=billing,bug,account) or "
            "import items with labels (hitl import FILE --label-column label)"
        ]
    # A route or guideline for a label that is not one (a typo, "Billing" for "billing") would
    # never apply, silently: a label's private channel would get none of its questions.
    known = {*labels, *aliases, *retired}  # an old name follows its rename; retired: warned
    problems = []
    for where, keys in (("[hitl.routes]", settings.routes), ("[labels.*]", settings.guidelines)):
        for key in sorted(k for k in keys if k not in known):
            twin = case_twin(key, labels)
            hint = f"; did you mean {twin!r}?" if twin else ""
            problems.append(
                f"{where} names {key!r}, which is not a label in force"
                f" ({', '.join(labels[:12])}{', …' if len(labels) > 12 else ''}){hint}"
            )
    return problems


def mirror_registry(store: Store, registry: ModelRegistry) -> None:
    """Make the models table agree with the model files (the registry is the truth)."""
    known = {(m["version"], m["status"]) for m in store.models()}
    for meta in registry.versions():
        if (meta.version, meta.status) not in known:
            store.record_model(meta.to_dict())


def check_db_folder(db: Path) -> None:
    """Refuse (``StoreError``, one line) a database whose folder is not there (a mistyped
    HITL_DB or --db), as `hitl import` refuses it (``Store.open``), before the lock file is
    made: a start makes no folder. Through a symlink, the folder of its target too (a volume
    not mounted yet)."""
    for path in (Path(db), Path(db).resolve()):
        if not path.parent.exists():
            raise StoreError(f"{db}: folder {path.parent} does not exist; create it or set HITL_DB")


def _data_version(store: Store) -> int | None:
    """SQLite's ``PRAGMA data_version`` on ``store``'s connection: it changes when another
    connection (another process's, any of its tables) commits to the file. None: unreadable."""
    try:
        return int(store.data_version())
    except Exception:  # noqa: BLE001 - unreadable: kept, as if written
        return None


def _written_by_others(store: Store, seen: int | None) -> bool:
    """Whether another process wrote to ``store``'s new database since its data version was
    ``seen`` (``_data_version``, read as it was made): a `hitl import`, a `hitl labels add`, a
    `hitl delete`'s record, beside a start. Items are looked for too, for one written in the
    moment before that first read. Unreadable: written, so kept."""
    now = _data_version(store)
    if now is None or seen is None or now != seen:
        return True
    try:
        return store.has_items()
    except Exception:  # noqa: BLE001 - unreadable: kept, as if written
        return True


def drop_new_database(db: Path, made: tuple[int, int]) -> bool:
    """Remove the database a refused start made (``made``: its file's device and inode), with
    its -wal and -shm, so that a mistyped path keeps nothing (the next start says it creates
    one; `hitl stats` says there is none). Called with the server lock held and this
    process's connections to it closed; kept when the file at the path is another one, or
    another process has it open (a `hitl import` beside the start: SQLite's read lock, held by
    every connection open on a WAL database, is seen). Whether it was removed."""
    path = Path(db).resolve()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        found = os.fstat(fd)
        if (found.st_dev, found.st_ino) != made:
            return False
        if fcntl is not None:
            try:
                fcntl.lockf(
                    fd, fcntl.LOCK_EX | fcntl.LOCK_NB, SQLITE_LOCK_BYTES, SQLITE_PENDING_BYTE
                )
            except OSError:
                return False
        for name in {path, Path(db)}:
            for end in ("", "-wal", "-shm"):
                if end or name == path:
                    with contextlib.suppress(OSError):
                        os.unlink(f"{name}{end}")
        return True
    finally:
        os.close(fd)  # drops the lock taken above


def new_lock_file(db: Path) -> bool:
    """Whether ``db``'s server lock file does not exist yet (starting creates it)."""
    return not lock_path(Path(db).resolve()).exists()


def drop_lock_file(db: Path) -> None:
    """Delete the server lock file a start made, when that start was refused."""
    lock_path(Path(db).resolve()).unlink(missing_ok=True)


def models_problem(
    store: Store, registry: ModelRegistry, settings: Settings, *, loaded: bool
) -> str | None:
    """What is wrong with the model files at start, in one line with the fix, as `hitl models`
    says it (``reports.lost_models``, ``reports.unknown_models``): versions the database
    records but the models folder lacks (a database restored without its folder, or renamed
    away from it), damaged metadata, a champion whose model file is missing or damaged (an
    earlier version serves), a champion the database does not know, trained on labels it
    lacks (a database restored beside a newer folder: said before ``mirror_registry`` records
    it), or (``loaded`` False) a champion whose file, and every earlier one's, was refused.
    None when all is well."""
    known = {int(m["version"]): m for m in store.models()}
    versions, unreadable = registry.scan()
    champion = next((v for v in reversed(versions) if v.status == "champion"), None)
    # Not loaded: the line below says it all (no earlier version to name in the fix)
    files = {champion.version: None} if not loaded and champion is not None else None
    lines = [
        *unknown_models(
            known,
            versions,
            store.labels_watermark()["newest"],
            settings.models_dir,
            trained_labels(store, settings.labels),
        ),
        *lost_models(known, versions, unreadable, settings.models_dir, files),
    ]
    if not loaded and champion is not None:  # its file: missing or damaged, no fallback
        lines.append(
            f"no model is served: champion v{champion.version}'s file v{champion.version}.skops"
            f" in {settings.models_dir} was refused, and no earlier version can stand in (see"
            f" above): restore it from a backup of {settings.models_dir}, or `hitl retrain"
            " --force` trains a new model"
        )
    return "; ".join(lines) or None


# What a request's headers may hold (aiohttp's parser answers 400 past it, and closes the
# connection): a request line of 8190 bytes (aiohttp's default: a DELETE /api/items/{id} with
# a 200-character id and a ?reason= can be several KB once percent-encoded), 40 header lines,
# each of 4096 bytes (aiohttp 3.14's parser counts a line's name and value together or
# apart, as its bytes happen to come: a name or a value over 4096 is always refused, a line
# may reach ~8 KB). Slack sends about 12 lines, none over 200 bytes (its signature is 67); a
# producer's Authorization line is its token; the proxies in front add a few each
# (X-Forwarded-*, X-Request-Id, trace ids, a CDN's own): 40 leaves room for three of them.
# aiohttp's own (128 lines of 8190 bytes) let a connection that never ended its headers hold
# ~1.9 MB until HEADER_SECONDS: 600 such connections, unsigned, took `hitl serve` from 75 MB
# to 1.2 GB, outside the budget of the bodies (bot/api/bodies.py). Measured with these
# (`hitl serve`, each connection 39 lines of 4090 bytes, never ended): ~330 KB each, 600 of
# them +193 MB, 2,000 +644 MB (lines of ~8 KB, if their bytes come so, twice that); an idle
# connection costs ~6 KB, one with 12 ordinary lines ~13 KB. So this bounds a connection, not
# their number: that is bounded only by the open files (OPEN_FILES_CAP) and HEADER_SECONDS.
HEADER_LIMITS = {"max_line_size": 8190, "max_headers": 40, "max_field_size": 4096}


def init_app(
    settings: Settings,
    *,
    run_background: bool = True,
    configure: Callable[[Runtime], None] | None = None,
    retry_base: float = 1.0,
    lock: bool = True,
) -> web.Application:
    """The aiohttp app: POST /slack/events (Bolt; not in Socket Mode), GET /healthz, /api/*,
    and background tasks.

    ``retry_base`` is where the dispatcher's and the redrawer's backoff start (seconds; tests
    make it small). ``configure(runtime)`` may adjust the runtime's parts before anything runs
    (the demo and tests set the dispatcher's post interval there). Starting the app asks
    Slack who the bot is, and refuses to start (``ConfigError``) if Slack refuses the token or
    a channel; with ``run_background`` in Socket Mode it also connects to Slack before the
    tasks start (without, a caller connects with ``start_socket_mode``). While it runs it holds
    the database's server lock (``bot.store.lock``; ``lock=False``: the caller holds it), so a
    second server on the same database refuses to start (``StoreError``).
    """
    app = web.Application(
        client_max_size=MAX_BODY,
        # Bodies are decoded from their Content-Encoding by ``bot.api.bodies.request_body``, which
        # answers one that does not decode (or br, zstd) in the API's words; aiohttp's own
        # decoding answered a 500 with three tracebacks, or a text/plain 400 before any handler.
        handler_args={"auto_decompress": False, "logger": PROTOCOL_LOGGER, **HEADER_LIMITS},
    )
    socket_mode = bool(settings.slack_app_token)
    if not socket_mode:
        if not settings.slack_signing_secret:
            raise ConfigError(
                ["SLACK_SIGNING_SECRET is not set; it is needed to verify requests from Slack"]
            )
        app[VERIFIER] = SignatureVerifier(settings.slack_signing_secret)

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        check_db_folder(settings.db)  # before the lock file and the database are made
        check_new_database_labels(settings)
        held = contextlib.ExitStack()
        made: tuple[int, int] | None = None  # the new database this start made, if any
        made_version: int | None = None  # its data version then (``_written_by_others``)
        new_lock = lock and new_lock_file(settings.db)
        # a start refused after the models folder is made (Socket Mode's connection) removes
        # the folder it made, while it is empty
        new_models = not settings.models_dir.exists()
        if lock:  # one server per database; "starting" in its file until the database is open
            app[SERVER_LOCK] = held.enter_context(server_lock(settings.db, starting=True))
        try:
            # exists, not lexists: a symlink to a file not there yet (a volume not mounted) is
            # a database this start makes
            created = not os.path.exists(settings.db)  # noqa: ASYNC240 - at start, before any request
            # a file of 0 bytes (truncated, or made by `touch`) is an empty database to SQLite;
            # said only when this server's own open made the database in it (``made_new``): a
            # command beside this start (an older slack-hitl's import makes its new database in
            # place, 0 bytes for a moment) may have made it first
            emptied = not created and _empty_file(settings.db)
            store = Store.open(settings.db)
            if created and store.made_new:  # removed if the start is refused, unwritten
                made = store.file_id
                made_version = _data_version(store)
            if lock:  # it writes to this file from here (``other_server``)
                app[SERVER_LOCK].started()
            store.set_busy_timeout(LOOP_BUSY_TIMEOUT_MS)
            store.lock_rest = LOOP_LOCK_REST_MS  # a lock held past one wait: brief ones next
            # said once the start is accepted: a refused one removes what it made (below)
            made_words: tuple[str, ...] = ()
            if created:  # started from another folder, HITL_DB mistyped: said, not silent
                made_words = (
                    "%s at %s (nothing was there); if the team's database is elsewhere, stop"
                    " the server and point HITL_DB at it (a hitl.toml beside it is read only"
                    " from the folder hitl runs in)",
                    "created a new, empty database"
                    if store.made_new
                    else "another hitl command made a new database, as this server started,",
                    str(settings.db.absolute()),
                )
            elif emptied and store.made_new:
                made_words = (
                    "made a new, empty database in %s, an empty file (0 bytes: nothing was"
                    " stored in it); if the team's database was there, stop the server and"
                    " restore it from a backup (`hitl restore BACKUP`), or point HITL_DB at"
                    " where it is",
                    str(settings.db.absolute()),
                )
        except BaseException:
            if new_lock:  # a refused file (another program's) keeps no lock file beside it
                drop_lock_file(settings.db)  # while held: nobody else took it meanwhile
            held.close()
            raise

        def leave_nothing(store: Store) -> None:
            """A refused start leaves nothing it made: its new database (when no other
            process wrote to it meanwhile, ``_written_by_others``, nor has it open,
            ``drop_new_database``), its models folder (while empty) and its lock file
            (while held: nobody else took it meanwhile)."""
            untouched = made is not None and not _written_by_others(store, made_version)
            store.close()
            if untouched:
                drop_new_database(settings.db, made)
            if new_models:
                with contextlib.suppress(OSError):  # not empty: another process wrote to it
                    settings.models_dir.rmdir()
            if new_lock:
                drop_lock_file(settings.db)

        session = slack_session()
        try:
            check_label_set(settings, store)
            # labels outside the set, twins, HITL_LABELS not in force, retired labels routed
            for line in label_set_warnings(settings, store):
                logger.warning("%s", line)
            decide_under_settings(settings, store)
            client = make_client(settings, session=session)
            rt = Runtime(settings=settings, store=store, client=client)
            erasures = store.erasure_mark()  # what is erased from here on is scrubbed at stop
            rt.dispatcher = dispatcher = Dispatcher(rt, retry_base=retry_base)
            rt.redrawer = redrawer = Redrawer(rt, retry_base=retry_base)
            rt.champion_holder = ChampionHolder()
            rt.scorer = scorer = Scorer.for_runtime(rt)
            rt.trainer = trainer = Trainer().bind(rt)
            if configure is not None:
                configure(rt)
            auth = await check_slack(rt)  # before the model: a bad token fails fast
            rt.registry = registry_for(settings)
            await asyncio.to_thread(sweep_leftovers, rt.registry)
            # damaged metadata: said once, by models_problem below, not also as it is skipped
            await asyncio.to_thread(rt.registry.scan, told=True)
            with collection_paused():  # the load imports most of scikit-learn and skops
                rt.champion = await asyncio.to_thread(load_champion, rt.registry)
                if rt.champion is None:  # none in the folder, one in the db: warns, serves it
                    named = store.champion_version()
                    rt.champion = await asyncio.to_thread(recover_champion, rt.registry, named)
            problem = models_problem(store, rt.registry, settings, loaded=rt.champion is not None)
            if problem is not None:
                logger.warning("%s", problem)
            mirror_registry(store, rt.registry)
            app[RUNTIME] = rt
            app[BOLT] = build_app(rt, auth)
            socket = None
            if run_background and settings.slack_app_token:
                # Connected before anything is posted: no question is asked that nobody
                # could answer.
                socket = await start_socket_mode(app, settings.slack_app_token)
        except BaseException:  # a refusal, or a stop while Slack cannot be reached
            await session.close()
            leave_nothing(store)
            held.close()
            raise
        if made_words:
            logger.warning(*made_words)
        tasks: list[asyncio.Task] = []
        if run_background:
            trainer.worker = FitWorker()  # retrains fit in a child process, off the loop's GIL
            scorer.worker = ScoringWorker()  # and the model scores in another one
            # Walks over the waiting items (after a refresh or a promotion: every one of them)
            # in a third, at a lower priority: the clicks and the producers' items come first.
            scorer.walk_worker = ScoringWorker(niceness=WALK_NICENESS)
            if rt.champion is not None:  # with no model, nothing scores until the first one
                try:
                    warm_scoring(rt)  # (the champion watch warms them when it comes from the CLI)
                except BaseException:  # the children cannot start (a fork server that died)
                    for worker in (scorer.worker, scorer.walk_worker, trainer.worker):
                        worker.close()
                    await session.close()
                    leave_nothing(store)
                    held.close()
                    raise
            loops = [
                asyncio.create_task(dispatcher.run(), name="hitl-dispatcher"),
                asyncio.create_task(redrawer.run(), name="hitl-redrawer"),
                asyncio.create_task(scorer.run(), name="hitl-scorer"),
            ]
            scorer.wake()  # items a new strategy or a restart left unscored
            # The working model lived in memory only: the labels answered since the champion
            # was trained refit it now, not at the next click.
            trainer.wake()
            loops.append(asyncio.create_task(run_deliveries(rt), name="hitl-webhooks"))
            if SERVER_LOCK in app:
                loops.append(eventloop.background(watch_lock(app[SERVER_LOCK]), "hitl-lock"))
            scheduler = start_scheduler(rt)
            tasks.append(asyncio.create_task(catch_up(rt, rt.clock()), name="hitl-catch-up"))
            # The log goes back into the database file in a worker thread, never inside a
            # commit on the loop (bot/store/core.py: Checkpointer).
            # It also keeps the file's generation, which tells a copy put over the file (a
            # restore with cp) from its own writes (bot/store/core.py: FileWatch).
            checkpointer = Checkpointer(store.db, store.file_watch())
            checkpointer.take_over()
            loops.append(eventloop.background(checkpointer.keep_up(), "hitl-checkpoint"))
            for task in loops:
                tasks.append(supervised(app, task))
        try:
            yield
        finally:
            trainer.closing = True  # the clicks acked while the server stops start no refresh
            stop_typical(rt)  # TypiClust's order being computed: not waited for by the drain
            drained_by = asyncio.get_running_loop().time() + DRAIN_SECONDS
            if socket is not None:
                # No new envelope from here on; the clicks already taken finish and ack
                # (within the drain's time), then the websocket closes.
                await socket.stop(DRAIN_SECONDS)
            if run_background:
                stop_scheduler(rt, scheduler)
                trainer.worker.close()  # a fit in progress stops now; its run is marked failed
            if trainer.refresh_task is not None:
                tasks.append(trainer.refresh_task)
            with contextlib.suppress(TimeoutError):
                # answers already acked finish their redraw first
                await rt.background.drain(max(drained_by - asyncio.get_running_loop().time(), 0))
            if trainer.task is not None:  # after the drain: a `/hitl retrain` it let start
                tasks.append(trainer.task)
            # after the drain too: the App Homes a 429 holds are not waited for (said in a line)
            if isinstance(rt.homes, HomePublisher) and (homes := rt.homes.stop()) is not None:
                tasks.append(homes)
            for task in tasks:
                task.cancel()
            if tasks:
                _, stuck = await asyncio.wait(tasks, timeout=TASKS_STOP_SECONDS)
                for task in stuck:
                    logger.error("background task %s did not stop", task.get_name())
            await stop_begun(rt)  # a retrain whose task the cancel ended before it ran
            for worker in (scorer.worker, scorer.walk_worker):
                if worker is not None:
                    worker.close()  # after the tasks that score: none starts a new child
            await session.close()  # after the tasks that call Slack
            scrub_at_stop(store, erasures, settings.db)
            store.close()
            held.close()  # another server may start on this database from here

    app[STOPPED] = []
    app.cleanup_ctx.append(runtime_ctx)
    app.cleanup_ctx.append(one_blas_thread)  # after the start: the libraries it loaded too
    app.on_cleanup.append(say_refusals_at_stop)  # after the requests, before the loop ends
    if not socket_mode:
        # In Socket Mode Slack never calls us over HTTP: no route, so nothing unsigned gets in.
        app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    routes.add_routes(app)  # /api/*, /metrics
    return app


def scrub_at_stop(store: Store, mark: tuple[int, int], db: Path) -> None:
    """Rebuild the database file as the server stops (``Store.scrub``: a VACUUM, its log
    emptied) when an erasure was made while it ran (``Store.erased_since``): a DELETE
    /api/items/{id}, or `hitl delete` or `hitl people anonymise` beside it, which could not
    rebuild it then. ``secure_delete`` zeroed the rows they removed, not the old copies of
    those rows that earlier writes left in the file's unused space (a page split), and the
    log keeps older pages: until the rebuild, a look at the file finds the text. Not while
    it ran: the VACUUM holds the write lock for as long as it takes (seconds at a million
    items), and the clicks would wait. One log line either way."""
    if store.path is None or store.lost is not None:  # no file, or one replaced: said already
        return
    erased, started = 0, time.monotonic()
    try:
        erased = store.erased_since(mark)
        if not erased:
            return
        why = store.scrub()
    except (DatabaseError, KeyboardInterrupt) as exc:
        why = "stopped" if isinstance(exc, KeyboardInterrupt) else str(exc)
    if why is None:
        logger.info(
            "rebuilt the database file after %d erasure(s) made while the server ran, so it"
            " keeps no old copy of what they removed (%.1f s)",
            erased,
            time.monotonic() - started,
        )
        return
    logger.warning(
        "the database file could not be rebuilt after the erasures made while the server ran"
        " (%s): its unused space and its write-ahead log may keep old copies of what they"
        " removed until `sqlite3 %s VACUUM` is run with nothing else on the database",
        why,
        db,
    )


# Seconds a shutdown waits for the retrain and refresh tasks once cancelled: a retrain's end
# already recording its result (in a worker thread) is let finish, and it may wait twice for
# another process's write lock (10 s each, ``bot.learning.retrain.END_TRIES``).
TASKS_STOP_SECONDS = 30.0

# Seconds a shutdown waits for the requests already taken (Socket Mode's envelopes, then the
# listeners still working after their ack) to finish.
DRAIN_SECONDS = 5.0

# The background loops that stopped (by name): each should run as long as the server, and
# outlives its own failures; one that ends all the same is said, and /healthz answers 503.
STOPPED = web.AppKey("stopped_loops", list[str])


async def one_blas_thread(_app: web.Application) -> AsyncIterator[None]:
    """The server process's dense maths on one BLAS thread while it runs (each BLAS library
    loaded by its start: numpy's, and scipy's with a champion), as every fit's
    (``model.classifier.FIT_BLAS_THREADS``); the setting before it comes back at its stop.

    A read in a worker thread multiplies matrices there (`/hitl stats` before the walks'
    scoring child runs: the items each pair of people share, a product of the items × people
    matrix, ``model.agreement``). numpy holds
    the GIL through a product, and OpenBLAS's threads, when the machine's cores are busy,
    wait for each other: on 2 busy cores, 2.4 s at a million items (30,000 decided by vote),
    and the event loop waited for the GIL all that time; on one thread the product takes
    1.5 ms (benchmarks/RESULTS.md, "Commands at a million items")."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def supervised(app: web.Application, task: asyncio.Task) -> asyncio.Task:
    """``task``, a loop that runs as long as the server: if it ends with an exception (one its
    own handling missed), the log says so once, with the traceback, and /healthz names it
    (``stopped``) until a restart. A bare task's exception was said by asyncio only when the
    task was collected, if at all: a dead redrawer left the server answering 200."""

    def ended(task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return  # stopped with the server, or nothing to do (webhooks off)
        app[STOPPED].append(task.get_name())
        logger.error(
            "background task %s stopped: %s; restart the server (/healthz answers 503 until then)",
            task.get_name(),
            task.exception(),
            exc_info=task.exception(),
        )

    task.add_done_callback(ended)
    return task


def signature_problem(verifier: SignatureVerifier, body: bytes, headers: Mapping) -> str | None:
    """None when Slack signed ``body`` (slack_sdk's check over the raw bytes); else why not, in
    words for the log line, which names the likely fix and never shows the body."""
    signature = headers.get("X-Slack-Signature")
    if signature and not signature.isascii():  # slack_sdk's compare_digest would raise
        return "a malformed X-Slack-Signature header (not ASCII)"
    try:
        if verifier.is_valid_request(body, dict(headers)):
            return None
        timestamp = headers.get("X-Slack-Request-Timestamp")
        if not timestamp or not signature:
            return "no X-Slack-Signature or X-Slack-Request-Timestamp header"
        expected = verifier.generate_signature(timestamp=timestamp, body=body) or ""
    except (ValueError, OverflowError):  # a timestamp that is not a number, a body not UTF-8
        return "a malformed signature timestamp or body"
    if hmac.compare_digest(expected, signature):
        return "its timestamp is over 5 minutes off (a replayed request, or this machine's clock)"
    return "the signature does not match SLACK_SIGNING_SECRET (is it the app's Signing Secret?)"


# The requests Slack sends, as Bolt parses them, each with the fields Bolt routes it on (Bolt's
# own checks): a slash command, an event, an interaction, an options request, a shortcut, a modal.
SLACK_KINDS = (
    payload_utils.is_slash_command,
    payload_utils.is_event,
    payload_utils.is_action,
    payload_utils.is_options,
    payload_utils.is_shortcut,
    payload_utils.is_view,
)
ENVELOPES = ("url_verification", "app_rate_limited")  # answered by Bolt itself, or unhandled


def is_slack_payload(body: Any) -> bool:
    """Whether a signed body, as Bolt parsed it, is one of Slack's requests. One that is not (an
    empty body, a form with no command, ``block_actions`` without ``actions``) is answered 400;
    one that is but that no listener takes gets Bolt's 404 (an action or command) or a quiet
    200 (an event: ``bot.slack.app.unhandled``)."""
    if not isinstance(body, dict) or not body:
        return False
    if body.get("type") in ENVELOPES or body.get("ssl_check") == "1":
        return True
    return any(kind(body) for kind in SLACK_KINDS)


class NotSlackPayload(ValueError):
    """A signed body that is not one of Slack's requests."""


class RefusalLog:
    """The warnings for the requests /slack/events refuses (no valid signature, a body that
    could not be read): anyone who reaches the port can send them, and one line each let a
    single client write 6 MB of log in 5 s. The first of a reason is said in full, at once;
    more of the same reason are counted, and said in one line when its minute ends ("N more
    requests ... in the last minute"), again each minute while they go on, and when the server
    stops (``server_stopped``). A minute without one ends it: the next is said in full again.
    Reasons are few by construction (a signature problem, or a body's HTTP status), so an
    outsider cannot make new ones to be said in full.

    ``later(seconds, callback)`` runs the end of a minute (the loop's ``call_later`` unless
    given: a test gives its own, and ends the minute when it likes). ``where`` is what the
    minute's line says the requests went to (``ProtocolLogger``'s are to any path: "")."""

    MINUTE = 60.0

    def __init__(
        self,
        later: Callable[[float, Callable[[], None]], object] | None = None,
        where: str = " to /slack/events",
    ):
        self.later = later
        self.where = where
        self.more: dict[str, int] = {}  # reason: refusals since its last line
        self.last: dict[str, str] = {}  # reason: what the summary says of it

    def refused(self, reason: str, summary: str, line: str, *args: object) -> None:
        """A refusal for ``reason``: ``line % args`` is logged if it is the first one of a
        while; else it is counted, for a line that says ``summary`` (the latest's)."""
        self.last[reason] = summary
        if reason in self.more:
            self.more[reason] += 1
            return
        self.more[reason] = 0
        logger.warning(line, *args)
        self._at_minutes_end(reason)

    def _at_minutes_end(self, reason: str) -> None:
        later = self.later or asyncio.get_running_loop().call_later
        later(self.MINUTE, lambda: self._minute_ended(reason))

    def _minute_ended(self, reason: str) -> None:
        more = self.more.pop(reason, 0)
        summary = self.last.pop(reason, "")
        if not more:  # none came this minute: the next is said in full
            return
        logger.warning(
            "%d more %s%s refused in the last minute: %s (said once a minute while it lasts)",
            more,
            "request" if more == 1 else "requests",
            self.where,
            summary,
        )
        self.more[reason] = 0
        self.last[reason] = summary
        self._at_minutes_end(reason)

    def server_stopped(self) -> None:
        """The server stops: what is counted and not yet said is said now, in one line per
        reason (a restart after fixing SLACK_SIGNING_SECRET lost the count of the requests
        refused in its last minute). A minute's end still to come then finds nothing to say."""
        more, last = self.more, self.last
        self.more, self.last = {}, {}
        for reason, count in more.items():
            if not count:
                continue
            logger.warning(
                "%d more %s%s refused in the last minute: %s (said as the server stops)",
                count,
                "request" if count == 1 else "requests",
                self.where,
                last.get(reason, ""),
            )


# Per runtime, the refusals of /slack/events said lately (``RefusalLog``).
_REFUSALS: weakref.WeakKeyDictionary[Runtime, RefusalLog] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """The garbage collector's automatic runs paused (``gc.disable``) for the start's champion
    load, then as they were. The load imports most of scikit-learn and skops the first time
    (about a second of CPU), and each automatic run walks the objects those imports have
    just made, again and again: paused, the load took 0.13 s (14 %) less CPU (median of 5).
    It ends in seconds, before the server listens, so little can pile up meanwhile, and
    ``metrics.freeze`` collects it all before the server listens."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


async def say_refusals_at_stop(app: web.Application) -> None:
    """on_cleanup: once no request is handled any more, the refusals still counted are said
    (``RefusalLog.server_stopped``): of /slack/events, and of the header limits."""
    rt = app.get(RUNTIME)
    log = _REFUSALS.get(rt) if rt is not None else None
    if log is not None:
        log.server_stopped()
    # and the header-limit refusals ``PROTOCOL_LOGGER`` counted on this server's loop
    limits = PROTOCOL_LOGGER.logs.get(asyncio.get_running_loop())
    if limits is not None:
        limits.server_stopped()


def refusal_log(app: web.Application) -> RefusalLog:
    rt = app[RUNTIME]
    log = _REFUSALS.get(rt)
    if log is None:
        log = _REFUSALS[rt] = RefusalLog()
    return log


async def slack_events(request: web.Request) -> web.StreamResponse:
    """Slack's requests: the signature first, over the raw bytes; only then is the body parsed
    (Bolt's parsing of a hostile body can raise anything, RecursionError included). A refused
    request is logged as a warning in one line, without its body, so a wrong
    SLACK_SIGNING_SECRET shows at the default log level; more for the same reason are counted
    and said once a minute (``RefusalLog``)."""
    urgent()  # this request's steps run ahead of the producers' (bot/eventloop.py)
    try:
        body = await bodies.request_body(request)  # over MAX_BODY: 413
    except bodies.ApiError as exc:  # a body that does not decode, not all come, no room (503)
        refusal_log(request.app).refused(
            f"body {exc.status}",  # the message may name what the client sent (a coding)
            f"answered {exc.status} (the last one: {exc.message})",
            "refused a request to /slack/events: %s",
            exc.message,
        )
        return web.json_response({"error": exc.message}, status=exc.status, headers=exc.headers)
    problem = signature_problem(request.app[VERIFIER], body, request.headers)
    if problem is not None:
        refusal_log(request.app).refused(
            f"signature {problem}",
            f"without a valid Slack signature: {problem}",
            "refused a request to /slack/events (%d bytes) without a valid Slack signature: %s",
            len(body),
            problem,
        )
        return web.json_response({"error": "invalid request signature"}, status=401)
    bolt = request.app[BOLT]
    try:
        bolt_request = AsyncBoltRequest(
            body=bolt_body(body.decode(), request.content_type),
            query=request.query_string,
            headers=request.headers,
        )
        if not is_slack_payload(bolt_request.body):
            raise NotSlackPayload("not a command, event or interaction")
        response = await dispatch_until_acked(
            lambda: bolt.async_dispatch(bolt_request), request.app[RUNTIME].background.keep
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        # A signed body that is not shaped like Slack's (not UTF-8, not JSON, too deep, not one
        # of Slack's requests, or missing what Bolt routes on): answer 400, log the kind of
        # error, never the body.
        what = str(exc) if isinstance(exc, NotSlackPayload) else type(exc).__name__
        logger.warning("malformed Slack request: %s", what)
        return web.json_response({"error": "malformed request"}, status=400)
    return await to_aiohttp_response(response)


def bolt_body(text: str, content_type: str) -> str:
    """The body to hand Bolt, with its costliest step done here.

    A click, a modal submission or a menu's options request comes as a form whose one field,
    ``payload``, is percent-encoded JSON. Bolt decodes that with urllib's ``parse_qsl``, in
    Python: about 0.5 ms for a 7 KB click, most of what a click costs the event loop. yarl
    (aiohttp's URL library) decodes the same form in C, ten times faster; Bolt is then handed
    the decoded JSON, which it reads as JSON whatever the content type. Anything else (a slash
    command's form, an event's JSON, a payload that is not a JSON object) goes to Bolt as it
    came. Bolt reads the last ``payload`` field if there are several, and so does this.
    """
    if content_type != "application/x-www-form-urlencoded" or text.startswith("{"):
        return text
    if "payload" not in text:
        return text
    payloads = yarl.URL.build(query_string=text, encoded=True).query.getall("payload", [])
    if not payloads or not payloads[-1].startswith("{"):
        return text
    return payloads[-1]


class ProtocolLogger(logging.LoggerAdapter):
    """aiohttp's server logger (``aiohttp.server``), with a request its HTTP parser refuses (a
    NUL in a header, a Content-Length of "abc") said in one INFO line, not an ERROR with a
    traceback: the client got its 400, and anyone could fill the log with what looks like the
    server's bugs. A request refused by the header limits (``HEADER_LIMITS``: too many header
    lines, a header name or value or the request line too long) is a WARNING, naming the limit:
    a proxy chain that adds many lines is refused so, and the operator must see it at the
    default level. Said as ``RefusalLog`` says refusals (once per limit, then a line a minute
    while they go on; one log per event loop, the server's). Any other error keeps its
    traceback."""

    # what each limit is, as the warning says it (no setting changes them)
    LIMITS = {
        "max_headers": "more than {:,} header lines",
        "max_field_size": "a header name or value over {:,} bytes",
        "max_line_size": "a request line over {:,} bytes",
    }

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self.logs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RefusalLog] = (
            weakref.WeakKeyDictionary()
        )

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = sys.exc_info()[1] if exc_info is True else exc_info
        if not isinstance(exc, HttpProcessingError):
            super().exception(msg, *args, exc_info=exc_info, **kwargs)
            return
        remote = args[0] if args else "a client"  # "Error handling request from %s"
        limit = self.limit_passed(exc)
        if limit is not None:
            self.over_limit(limit, remote)
            return
        said = (str(exc.message).splitlines() or [""])[0][:120]
        self.info(
            "refused a malformed HTTP request from %s (%s: %s)", remote, type(exc).__name__, said
        )

    # a folded header line's start, or a header name (RFC 9110 token characters) then its colon,
    # or only name characters (a name over the 100 bytes aiohttp quotes)
    HEADER_START = rb"[ \t]|[-!#$%&'*+.^_`|~0-9A-Za-z]+(?::|$)"

    @staticmethod
    def limit_passed(exc: HttpProcessingError) -> str | None:
        """Which of ``HEADER_LIMITS`` ``exc`` (the parser's refusal) says was passed, if any.
        aiohttp says too many lines in its message, a line too long as ``LineTooLong`` with the
        limit it passed (the request line's or a header's: they differ) and the line's first
        100 bytes. With aiohttp's pure-Python parser (``AIOHTTP_NO_EXTENSIONS=1``, or no C
        build), a line that passes 8,190 bytes before its CRLF came is refused with the request
        line's limit whichever line it is: there the line says which (the request line starts
        with its method and a space, a header line with its name and a colon). With the C
        parser the request line's limit is the request line's (its text is the URL alone)."""
        import re

        from aiohttp import http_parser, web_protocol
        from aiohttp.http_exceptions import LineTooLong

        if isinstance(exc, LineTooLong):
            passed = exc.args[1] if len(exc.args) > 1 else None
            if passed != HEADER_LIMITS["max_line_size"]:
                return "max_field_size"  # a header's (or a chunk's, a trailer's) line
            line = exc.args[0]
            python_parser = web_protocol.HttpRequestParser is http_parser.HttpRequestParserPy
            if (
                python_parser
                and isinstance(line, bytes | bytearray)
                and re.match(ProtocolLogger.HEADER_START, bytes(line).removesuffix(b"..."))
            ):
                return "max_field_size"  # a header line that arrived in pieces
            return "max_line_size"
        if str(exc.message).startswith(("Too many headers", "Too many trailers")):
            return "max_headers"
        return None

    def over_limit(self, limit: str, remote: object) -> None:
        """One refusal by the header limits, said or counted by this loop's ``RefusalLog``."""
        what = self.LIMITS[limit].format(HEADER_LIMITS[limit])
        hint = "no setting raises this limit" + (
            "; a proxy chain in front that adds many header lines must add fewer"
            if limit == "max_headers"
            else ""
        )
        line = "refused a request from %s over hitl's header limits: %s (%s); answered 400"
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not from a server's loop: said, not counted
            logger.warning(line, remote, what, hint)
            return
        log = self.logs.get(loop)
        if log is None:
            log = self.logs[loop] = RefusalLog(where="")
        log.refused(
            f"header limit {limit}",
            f"over hitl's header limits, {what} (the last from {remote})",
            line,
            remote,
            what,
            hint,
        )


PROTOCOL_LOGGER = ProtocolLogger(logging.getLogger("aiohttp.server"))


# Per runtime, the database problem /healthz last logged: a load balancer probes every few
# seconds, and a damaged file would add a line (a traceback) to the log each time. Said once
# while it lasts, and once when it ends.
_HEALTH_SAID: weakref.WeakKeyDictionary[Runtime, str] = weakref.WeakKeyDictionary()


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers, stores what it is given, and is still the file at its
    path, and the scheduler (if any) runs; else 503. ``db`` is ``unreachable`` when it cannot
    be read (damaged, gone) and also when the file was deleted, moved away or replaced under
    the server, which then refuses writes (``check_database_file``); ``not storing`` when the
    last writes were refused (another process holds its lock past the wait, a full disk, a
    disk error) and none was stored since: ``Store.write_problem``. Then a write is tried here
    (``probe_write``, not waiting for the lock), so that an instance nobody sends requests to
    finds out when it can store again. ``db_problem`` says why in one line, logged once while
    it lasts (not with a traceback per probe). ``scoring`` is ``out of memory`` while the
    scorer cannot run (``Scorer.out_of_memory``: no question is posted), with
    ``scoring_problem`` the line the log said once: 503 too. ``stopped`` names the background
    loops that ended (``supervised``; the log has why): 503 too. In Socket Mode ``slack`` is
    the connection's state: ``connected``, ``reconnecting since …`` (a 503 once that lasts past
    ``bot.slack.connect.SOCKET_GRACE``) or ``refused`` (a 503 at once: the operator must fix
    the token or turn Socket Mode on), with ``slack_problem`` the line the log said."""
    rt = request.app[RUNTIME]
    problem: str | None = None
    db = "ok"
    try:
        rt.store.count_items()
    except DatabaseError as exc:
        db = "unreachable"
        problem = str(database_problem(rt.settings.db, exc, lost=rt.store.lost))
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
        db = "unreachable"
        problem = f"{type(exc).__name__}: {exc}"
        if _HEALTH_SAID.get(rt) != problem:
            logger.exception("health check: database unreachable")
            _HEALTH_SAID[rt] = problem
    if db == "ok" and (damage := damage_seen(rt.settings.db)) is not None:
        db, problem = "unreachable", damage  # met by another reader: this read went through
    if not check_database_file(rt):  # one stat; says it once when the file is gone
        db, problem = "unreachable", rt.store.lost or "the database file is gone"
        _HEALTH_SAID[rt] = problem  # said there
    elif db == "ok" and rt.store.write_problem is not None:
        with contextlib.suppress(DatabaseError):
            rt.store.probe_write()  # sets or clears write_problem, as any write does
        if rt.store.write_problem is not None:
            db, problem = "not storing", rt.store.write_problem
    _say_health(rt, db, problem)
    scheduler = Trainer.of(rt).scheduler_alive  # None: no scheduler in this process
    # Scoring ran out of memory (said once in the log by the scorer): no question is posted
    # until it works again, so a probe sees it as it sees a database that stores nothing.
    starved = getattr(rt.scorer, "out_of_memory", None)
    stopped = request.app.get(STOPPED) or []  # background loops that died (said in the log)
    # Socket Mode: the one link Slack's requests come in by (the reconnections say why in the
    # log); no field in HTTP mode
    link = socket_mode_of(rt)
    slack, slack_problem, slack_ok = link.health() if link is not None else (None, None, True)
    body = {
        "ok": db == "ok"
        and scheduler is not False
        and starved is None
        and not stopped
        and slack_ok,
        "db": db,
        # the log has the whole line; anyone may ask /healthz: no folders of the server's
        **({"db_problem": without_folders(problem, rt.settings.db)} if problem else {}),
        **rt.model_roles(),  # champion, working (a refresh: negative), asks, answers
        "scheduler": scheduler,
        "scoring": "ok" if starved is None else "out of memory",
        **({"scoring_problem": without_folders(starved, rt.settings.db)} if starved else {}),
        **({"stopped": sorted(stopped)} if stopped else {}),
        **({"slack": slack} if slack is not None else {}),
        **({"slack_problem": slack_problem} if slack_problem else {}),
    }
    return web.json_response(body, status=200 if body["ok"] else 503)


# How often a server looks whether its lock file is still there (two stats): a cleanup that
# deletes "stale" lock files would let a second server start on the database.
LOCK_CHECK_SECONDS = 5.0


async def watch_lock(lock: HeldLock) -> None:
    """Every LOCK_CHECK_SECONDS, ``HeldLock.check``: a lock file deleted or replaced under the
    server is made and locked again, said once."""
    while True:
        await asyncio.sleep(LOCK_CHECK_SECONDS)
        lock.check()


def _say_health(rt: Runtime, db: str, problem: str | None) -> None:
    """Log the database's problem the first time /healthz finds it (and when it changes), and
    once when /healthz finds the database well again."""
    said = _HEALTH_SAID.get(rt)
    if problem is None:
        if said is not None:
            del _HEALTH_SAID[rt]
            logger.info("health check: the database is well again")
        return
    if said != problem:
        _HEALTH_SAID[rt] = problem
        logger.error("health check: database %s: %s (said once while it lasts)", db, problem)


# -- hitl serve -----------------------------------------------------------------------------


async def unless_stopped(work: Awaitable[Any], stop: asyncio.Event) -> bool:
    """Run ``work`` until it ends (True) or ``stop`` is set (False: ``work`` is cancelled)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False
    task.result()  # the work's exception, if any
    return True


async def _try_listening(host: str, port: int) -> None:
    """Raise ``HitlError`` (``listen_problem``) when the server could not listen on
    ``host:port`` now; the try listens as aiohttp will (the same addresses, the same
    SO_REUSEADDR) and closes at once."""
    try:
        probe = await asyncio.get_running_loop().create_server(asyncio.Protocol, host, port)
    except OSError as exc:
        raise HitlError(listen_problem(host, port, exc)) from None
    probe.close()
    await probe.wait_closed()


def listen_problem(host: str, port: int, exc: OSError) -> str:
    """Why the server cannot listen on ``host:port``, in one line that says what to change
    (``hitl serve`` prints it instead of the bind's traceback)."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is in use (another hitl serve?): "
            "stop it or set HITL_PORT / --port"
        )
    if exc.errno == errno.EACCES:
        return (
            f"not allowed to listen on port {port} on {host} (ports below 1024 need root): "
            "set HITL_PORT / --port"
        )
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (
            f"cannot listen on {host}: it is not an address of this machine; "
            "set HITL_HOST / --host (e.g. 127.0.0.1, or 0.0.0.0 for every address)"
        )
    reason = exc.strerror or type(exc).__name__
    return (
        f"cannot listen on {host}:{port} ({reason}): set HITL_HOST / --host or HITL_PORT / --port"
    )


def _log_info(line: str) -> None:
    logger.info("%s", line)


# A connection that has not sent a whole request's headers this many seconds after it opened,
# or after its last response (keep-alive), is closed: a client that trickles a header line
# every few seconds ("slow loris") held its socket for good, and a few hundred of them used up
# the process's open files, so that Slack's requests and /healthz were no longer answered.
# aiohttp's ``keepalive_timeout`` does this: its timer starts when a connection opens and again
# after each response, and closes the connection only while it waits for a request's headers,
# never while a request is handled. It is longer than the idle timeout of the usual proxies
# and load balancers in front (nginx's and AWS ALB's 60 s), which must close an idle
# connection to the server before the server does: else a request sent as the server closes
# it fails (aiohttp's own default, 3,630 s, is that long for the same reason). A proxy in
# front reads a request's headers whole before it sends them on, so a slow client meets the
# proxy's deadline first; this one is for a server reached without one. Bodies have their
# deadline in ``bot.api.bodies``.
HEADER_SECONDS = 75.0

# ``hitl serve`` raises its soft limit of open files to the hard one, up to this: each client
# connection is one, and a soft limit of 1,024 (common) is soon reached by idle clients.
OPEN_FILES_CAP = 65_536
# macOS refuses a soft limit over OPEN_MAX (10,240) however high the hard one is.
OPEN_FILES_FALLBACK = 10_240


# Open files a server holds before its first client: the database, its -wal and -shm, the lock,
# the scoring and fit children's pipes (about 30 at rest); below MIN_OPEN_FILES it cannot
# serve (a test at 32 accepted no connection after "listening on"), below FEW_OPEN_FILES it
# serves few clients at once.
MIN_OPEN_FILES = 64
FEW_OPEN_FILES = 256
RAISE_IT = "raise it with `ulimit -n 4096` before `hitl serve`, or LimitNOFILE=4096 under systemd"


def _empty_file(path: Path) -> bool:
    """Whether ``path`` is a file of 0 bytes (SQLite takes it for an empty database)."""
    try:
        return os.stat(path).st_size == 0
    except OSError:
        return False


def raise_open_files_limit(cap: int = OPEN_FILES_CAP) -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (at most ``cap``); says nothing unless
    that fails. Then a limit under MIN_OPEN_FILES is refused (``ConfigError``: the server
    could not serve), and one under FEW_OPEN_FILES said in a warning. Where there is no
    ``resource`` module (Windows), it does nothing."""
    try:
        import resource
    except ImportError:
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return
    try:
        _raise_open_files(resource, soft, hard, cap)
    finally:
        with contextlib.suppress(OSError, ValueError):
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft >= FEW_OPEN_FILES:
        return
    if soft < MIN_OPEN_FILES:
        raise ConfigError(
            [
                f"the limit of open files is {soft} (ulimit -n): hitl serve needs at least"
                f" {MIN_OPEN_FILES} (its database files and children's pipes take about 30, and"
                f" each connection one); {RAISE_IT}"
            ]
        )
    logger.warning(
        "the limit of open files is %d (ulimit -n): each connection takes one, so this server"
        " takes about %d clients at once; %s",
        soft,
        soft - 40,
        RAISE_IT,
    )


def _raise_open_files(resource: Any, soft: int, hard: int, cap: int) -> None:
    wanted = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    problem: BaseException | None = None
    for limit in dict.fromkeys((wanted, min(wanted, OPEN_FILES_FALLBACK))):
        if limit <= soft:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        except (OSError, ValueError) as exc:
            problem = exc
        else:
            return
    if soft < FEW_OPEN_FILES:
        return  # ``raise_open_files_limit`` says what a limit this low means
    logger.warning(
        "could not raise the limit of open files from %d to %d (%s): each connection is one, "
        "so about %d clients at once are the most this server takes; raise it with ulimit -n",
        soft,
        wanted,
        problem,
        soft,
    )


class AcceptFailuresOnce(logging.Filter):
    """asyncio's log of a connection it could not accept (out of open files, or memory), one
    line per episode: asyncio says it, with a traceback, for every accept() that fails, up to
    128 in a row, and each failure schedules another retry, so they multiply (a slow-loris
    attack filled the log with ~170,000 lines in 30 s). The first of an episode is kept, in
    one line without the traceback; more within ``gap`` seconds of the last one belong to the
    same episode."""

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, gap: float = 10.0) -> None:
        super().__init__()
        self.gap = gap
        self.last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.MESSAGE):
            return True
        previous, self.last = self.last, record.created
        if previous is not None and record.created - previous < self.gap:
            return False
        exc = record.exc_info[1] if record.exc_info else None
        record.msg = (
            "cannot accept new connections: %s; they wait in the listen queue until some "
            "close (said once while it lasts)"
        )
        record.args = (exc or "out of system resource",)
        record.exc_info = None
        record.exc_text = None
        return True


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal closed


def decide_under_settings(settings: Settings, store: Store) -> None:
    """At start, before the server listens: the open questions whose answers decide them under
    ``HITL_VOTES`` as it is now (lowered since they were asked: "1 of 1 answers in", still
    open), decided, a tie among enough people sent to review as a split, a split a Skip left
    with fewer answers than ``HITL_VOTES`` out of review (its question holding a place), and so are
    the items whose question was taken back while they held answers (HITL_QUESTION_TTL),
    waiting to be asked again (``Store.decide_answered``; reads the posted items with answers
    and the questions taken back, writes only when one is due). A database another process
    holds past the wait is said in one line: the next answer on each decides it then."""
    rules = ReviewRules(settings.review_agreement, settings.review_confidence)
    try:
        decided = store.decide_answered(settings.votes, settings.skips_to_discard, rules)
    except DatabaseError as exc:
        logger.warning(
            "could not decide the open questions under HITL_VOTES=%d now: %s; each is decided at"
            " its next answer",
            settings.votes,
            database_problem(settings.db, exc),
        )
        return
    if decided:
        logger.info(
            "%d question(s) decided (or no longer split) by the answers they had, under"
            " HITL_VOTES=%d",
            len(decided),
            settings.votes,
        )


def stop_signals() -> list[int]:
    """The signals that stop a server or demo: SIGHUP as SIGTERM, unless it is ignored (run
    under nohup, which is asked to keep it running when the terminal closes)."""
    return [
        sig
        for sig in STOP_SIGNALS
        if sig != signal.SIGHUP or signal.getsignal(sig) != signal.SIG_IGN
    ]


async def serve(settings: Settings, announce: Callable[[str], None] = _log_info) -> int | None:
    """Run until SIGINT, SIGTERM or SIGHUP, then shut down cleanly (tasks cancelled, db closed);
    return the signal that stopped it (None: start-up was stopped otherwise).

    A signal stops it at any moment, also while Slack cannot be reached at start. ``announce``
    gets the lines a person wants to see at the default log level (listening, stopping): the
    CLI prints them on stderr.
    """
    # A server that hangs can be asked where: SIGABRT (or a crash in C) prints every thread's
    # stack on stderr before it ends; where stderr is no file (no fileno: run inside another
    # program), there is nowhere to print them.
    with contextlib.suppress(RuntimeError, OSError, ValueError):
        faulthandler.enable(all_threads=True)
    raise_open_files_limit()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stopped_by: list[int] = []

    def stop_on(sig: int) -> None:
        stopped_by.append(sig)
        stop.set()

    app = init_app(settings)
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=5, keepalive_timeout=HEADER_SECONDS
    )

    async def start() -> None:
        # What refuses a start whatever holds the port (the settings, the label set) is said
        # first, and reads only: the refusal does not change with what else runs on the
        # machine. Nothing listens yet for the read to hold up.
        if problems := start_problems(settings):
            raise ConfigError(problems)
        # The port is tried before anything is made: a start refused for it (taken, not this
        # machine's address) leaves no new database, lock file nor models folder, as the
        # other refusals do, and says so before Slack is asked. (Taken in the moment between
        # this try and the listen below, the refusal is the same; what the start made stays.)
        await _try_listening(settings.host, settings.port)
        await runner.setup()  # checks Slack; in Socket Mode, connects
        if settings.slack_app_token:
            announce("connected to Slack in Socket Mode")
        # What start-up made (~160,000 objects: the libraries' modules and the champion) lives
        # as long as the server: out of the collector's sight, so that a full collection, which
        # would walk them all (~70 ms on the event loop), walks only what requests left behind.
        # Before the server listens: the collection it starts with holds the loop ~110 ms.
        metrics.freeze()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
        except OSError as exc:  # the port is taken, the host is not this machine's, …
            raise HitlError(listen_problem(settings.host, settings.port, exc)) from None
        announce(
            f"slack-hitl listening on http://{settings.host}:{settings.port}"
            f" (database {settings.db.absolute()})"
        )

    accept_failures = AcceptFailuresOnce()
    logging.getLogger("asyncio").addFilter(accept_failures)
    try:
        # Inside the try: whatever ends serve(), its handlers go with it; left on the caller's
        # loop, they would take every later Ctrl-C into a stop nothing waits for.
        for sig in stop_signals():
            loop.add_signal_handler(sig, stop_on, sig)
        if await unless_stopped(start(), stop):
            await stop.wait()
        announce("shutting down")
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        try:
            await runner.cleanup()
        finally:
            logging.getLogger("asyncio").removeFilter(accept_failures)
    return stopped_by[0] if stopped_by else None
