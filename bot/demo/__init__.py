"""`hitl demo`: the whole loop on one machine, in a browser, without a Slack workspace."""

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
