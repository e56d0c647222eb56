"""Composes the aiohttp application: Slack's endpoint, health, and the background tasks.

``init_app(settings)`` is used by ``hitl serve`` and by the tests alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from bot import api
from bot.config import Settings
from bot.dispatch import Dispatcher
from bot.errors import ConfigError
from bot.learning import catch_up, start_scheduler, stop_scheduler
from bot.loop import FitWorker, load_champion, registry_for
from bot.questions import label_set
from bot.redraw import run_redrawer
from bot.runtime import Runtime, make_client
from bot.slack_app import build_app
from bot.store import Store
from bot.webhooks import run_deliveries
from model import ModelRegistry

logger = logging.getLogger(__name__)

RUNTIME = web.AppKey("runtime", Runtime)
BOLT = web.AppKey("bolt", AsyncApp)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)

MAX_BODY = 1024 * 1024


def check_serve_settings(settings: Settings) -> None:
    """Everything `serve` needs, each missing piece named on its own line."""
    problems = []
    if not settings.slack_bot_token:
        problems.append("SLACK_BOT_TOKEN is not set; copy the Bot User OAuth Token (xoxb-…)")
    if not settings.slack_app_token and not settings.slack_signing_secret:
        problems.append(
            "SLACK_SIGNING_SECRET is not set; copy it from Basic Information → App Credentials "
            "(or set SLACK_APP_TOKEN for Socket Mode)"
        )
    if not settings.channel:
        problems.append("HITL_CHANNEL is not set; give the ID of the channel for questions")
    if problems:
        raise ConfigError(problems)


def check_label_set(settings: Settings, store: Store) -> None:
    if len(label_set(settings, store)) < 2:
        raise ConfigError(
            [
                "no label set: set HITL_LABELS (e.g. HITL_LABELS=billing,bug,account) or "
                "import items with labels (hitl import FILE --label-column label)"
            ]
        )


def mirror_registry(store: Store, registry: ModelRegistry) -> None:
    """Make the models table agree with the model files (the registry is the truth)."""
    known = {(m["version"], m["status"]) for m in store.models()}
    for meta in registry.versions():
        if (meta.version, meta.status) not in known:
            store.record_model(meta.to_dict())


def init_app(
    settings: Settings,
    *,
    run_background: bool = True,
    configure: Any = None,
) -> web.Application:
    """The aiohttp app: POST /slack/events (Bolt), GET /healthz, and background tasks.

    ``configure(runtime)`` may adjust the runtime before anything runs (tests shorten the
    retry backoff and the post interval there).
    """
    app = web.Application(client_max_size=MAX_BODY)

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        store = Store.open(settings.db)
        check_label_set(settings, store)
        rt = Runtime(settings=settings, store=store, client=make_client(settings))
        rt.registry = registry_for(settings)
        rt.champion = await asyncio.to_thread(load_champion, rt.registry)
        mirror_registry(store, rt.registry)
        if configure is not None:
            configure(rt)
        app[RUNTIME] = rt
        app[BOLT] = build_app(rt)
        app[DISPATCHER] = Dispatcher(rt)
        tasks: list[asyncio.Task] = []
        if run_background:
            rt.fit_worker = FitWorker()  # retrains fit in a child process, off the loop's GIL
            tasks.append(asyncio.create_task(app[DISPATCHER].run(), name="hitl-dispatcher"))
            tasks.append(asyncio.create_task(run_redrawer(rt), name="hitl-redrawer"))
            tasks.append(asyncio.create_task(run_deliveries(rt), name="hitl-webhooks"))
            scheduler = start_scheduler(rt)
            tasks.append(asyncio.create_task(catch_up(rt, rt.clock()), name="hitl-catch-up"))
        try:
            yield
        finally:
            if run_background:
                stop_scheduler(rt, scheduler)
                rt.fit_worker.close()  # a fit in progress stops now; its run is marked failed
            if rt.retrain_task is not None:
                tasks.append(rt.retrain_task)
            with contextlib.suppress(TimeoutError):
                await rt.drain(5.0)  # answers already acked finish their redraw first
            for task in tasks:
                task.cancel()
            if tasks:
                _, stuck = await asyncio.wait(tasks, timeout=10)
                for task in stuck:
                    logger.error("background task %s did not stop", task.get_name())
            store.close()

    app.cleanup_ctx.append(runtime_ctx)
    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    api.add_routes(app)  # /api/*, /metrics
    return app


async def slack_events(request: web.Request) -> web.StreamResponse:
    bolt = request.app[BOLT]
    try:
        response = await bolt.async_dispatch(await to_bolt_request(request))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        # Bolt's own routing can trip over a body that is not shaped like Slack's (signature
        # already checked): answer 400, log the kind of error, never the body.
        logger.warning("malformed Slack request: %s: %s", type(exc).__name__, exc)
        return web.json_response({"error": "malformed request"}, status=400)
    return await to_aiohttp_response(response)


async def healthz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    try:
        rt.store.count_items()
        db_ok = True
    except Exception:  # noqa: BLE001 - any failure means "not healthy"
        logger.exception("health check: database unreachable")
        db_ok = False
    scheduler = getattr(rt, "scheduler_alive", None)  # None: no scheduler in this process
    body = {
        "ok": db_ok and scheduler is not False,
        "db": "ok" if db_ok else "unreachable",
        "champion": rt.champion.version if rt.champion else None,
        "scheduler": scheduler,
    }
    return web.json_response(body, status=200 if body["ok"] else 503)


async def start_socket_mode(app: web.Application, app_token: str) -> AsyncSocketModeHandler:
    """Connect to Slack over Socket Mode (apps.connections.open through SLACK_API_URL)."""
    handler = AsyncSocketModeHandler(app[BOLT], app_token)
    await handler.connect_async()
    logger.warning("connected to Slack in Socket Mode")
    return handler


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly (tasks cancelled, db closed)."""
    app = init_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    socket_handler = None
    try:
        if settings.slack_app_token:
            socket_handler = await start_socket_mode(app, settings.slack_app_token)
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        logger.warning("slack-hitl listening on http://%s:%d", settings.host, settings.port)
        await stop.wait()
        logger.warning("shutting down")
    finally:
        if socket_handler is not None:
            await socket_handler.close_async()
        await runner.cleanup()
