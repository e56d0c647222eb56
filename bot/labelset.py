"""The label set in force: which labels questions offer, answers may use and training knows.

``HITL_LABELS`` when it is set, else every label people or imports have given.
"""

from __future__ import annotations

from bot.config import Settings
from bot.store import Store


def current_labels(settings: Settings, store: Store) -> list[str]:
    """The label set in force, in its order."""
    return list(settings.labels) if settings.labels else store.label_set()
