"""The aiohttp app's typed keys and its body limit, shared by ``bot.server`` and ``bot.api.routes``.

``bot.server`` composes the app and stores its parts under these keys; ``bot.api.routes`` and the
tests read them back. Keeping them here, apart from both, means neither imports the other
for a key (as aiohttp-demos keeps its ``web.AppKey`` definitions in ``typedefs.py``). A part
that belongs to one package keeps its key there (``bot.api.metrics.METRICS``), so this module
imports only the core: the dispatcher is reached through the runtime (``rt.dispatcher``).
"""

from __future__ import annotations

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

from bot.runtime import Runtime
from bot.store.lock import HeldLock

RUNTIME = web.AppKey("runtime", Runtime)
BOLT = web.AppKey("bolt", AsyncApp)
VERIFIER = web.AppKey("verifier", SignatureVerifier)
SERVER_LOCK = web.AppKey("server_lock", HeldLock)  # held while the app runs (init_app)

MAX_BODY = 1024 * 1024  # bytes in one request body; aiohttp answers 413 above it
