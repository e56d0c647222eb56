"""The learning loop: labels in, a better champion out, the queue re-scored.

``retrain`` is the retrain job (lock, fit off the event loop, decide, record) and
``rollback`` the rollback job under the same lock, both shared by the CLI and the server;
``jobs`` runs them inside ``hitl serve`` (the nightly schedule and its catch-up, admin
retrains and rollbacks, the champion watch) and owns their state there (``ChampionHolder``,
``Trainer``); ``scoring``
scores pending items with the champion and picks what to ask next; ``reports`` writes the
stats, accuracy and retrain texts Slack and the CLI share; ``stopping`` checks each model update
on the stop set and its learning curve (when to stop); ``children`` is where the server's
scoring and fit children start from (the fork server).

May import the core (``bot.config``, ``bot.store``, ``bot.runtime``, ``bot.errors``) and
``model``. Never the edges it serves (``bot.slack``, ``bot.api``), nor ``bot.cli``,
``bot.server`` or ``bot.demo`` (checked by tests/test_layout.py).
"""
