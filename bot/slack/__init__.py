"""The Slack edge: everything that talks to Slack.

``app`` builds the Bolt app and its listeners; ``commands`` holds the one table of ``/hitl``
subcommands; ``modal`` the labeling modal; ``dispatch`` decides what to post and posts it, and
owns the question channels' state; ``redraw`` updates posted messages and owns the redraw
state; ``questions`` turns a stored item into a question; ``blocks`` builds every Block Kit
payload and owns every ``action_id``; ``connect`` checks Slack at start and connects Socket
Mode.

May import the core (``bot.config``, ``bot.store``, ``bot.runtime``, ``bot.appkeys``,
``bot.errors``),
``bot.learning`` (scoring, the retrain and rollback jobs, report texts), ``bot.api.metrics``
(to count Slack errors) and ``model``. Never ``bot.cli``, ``bot.server`` or ``bot.demo``,
which compose it (checked by tests/test_layout.py).
"""
