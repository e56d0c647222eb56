"""slack-hitl's application: everything but the pure machine learning (``model``).

By layer, each package importing only those below it (checked by tests/test_layout.py):

- composers: ``bot.cli`` (the `hitl` command), ``bot.server`` (the aiohttp app and its
  background tasks), ``bot.demo`` (`hitl demo`);
- edges: ``bot.slack`` (Slack) and ``bot.api`` (the producer HTTP API), over the learning
  loop, ``bot.learning``;
- core: ``bot.runtime`` (what a running bot shares: references to the owners of its state),
  ``bot.appkeys``, ``bot.store`` (SQLite), ``bot.ingest`` (items in from files),
  ``bot.config``, ``bot.errors``, ``bot.logs``;
- apart: ``bot.sandbox``, a local stand-in for Slack that imports nothing else of ``bot``.

Everything may import ``model``; ``model`` never imports ``bot``.
"""
