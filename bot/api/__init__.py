"""The producer HTTP API: ``/api/*``, ``/healthz`` and ``/metrics``.

``routes`` handles the requests and checks their bodies against ``openapi.json`` (the
OpenAPI document, shipped as package data and served as it is); ``webhooks`` delivers
labels back to the producer from the store's outbox; ``metrics`` is the Prometheus view.

May import the core (``bot.config``, ``bot.store``, ``bot.runtime``, ``bot.ingest``,
``bot.appkeys``), ``bot.learning`` (to score new items) and ``model``. Never the Slack edge
(``bot.slack``), nor ``bot.cli``, ``bot.server`` or ``bot.demo`` (checked by
tests/test_layout.py).
"""
