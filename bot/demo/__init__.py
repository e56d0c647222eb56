"""`hitl demo`: the whole loop on one machine, in a browser, without a Slack workspace.

``data`` makes or reads the items, ``run`` starts the real bot (``bot.server.init_app``) beside
the sandbox workspace, ``simulate`` plays teammates and retrains as labels come in. A composer,
like ``bot.cli`` and ``bot.server``: it may import any ``bot`` package; none imports it but
``bot.cli`` (checked by tests/test_layout.py).
"""

from bot.demo.data import LABELS, DemoData, DemoItem, demo_data, generate, read_jsonl, split
from bot.demo.run import DemoOptions, load_data, run_demo, running_demo
from bot.demo.simulate import Retrainer, Score, Simulator, score_champion

__all__ = [
    "LABELS",
    "DemoData",
    "DemoItem",
    "DemoOptions",
    "Retrainer",
    "Score",
    "Simulator",
    "demo_data",
    "generate",
    "load_data",
    "read_jsonl",
    "run_demo",
    "running_demo",
    "score_champion",
    "split",
]
