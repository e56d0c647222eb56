"""Guidelines: what each label means, on demand, and the item's chosen meta fields.

A label may carry a description and examples (``[labels.NAME]`` in hitl.toml); when any does,
questions get a "Guidelines" button that opens a modal listing the labels in force with theirs
(pushed on top of the labeling modal when clicked there). ``HITL_SHOW_META`` names the fields of
an item's meta drawn under its question, in one context line within Slack's limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock
from slack_sdk.models.views import View

from bot.config import Guideline
from bot.slack import blocks

GUIDELINES_CALLBACK = "hitl.guidelines"
MAX_BLOCKS = 100  # Slack's limit for a modal
MAX_EXAMPLES = 5
META_VALUE_LIMIT = 200


def meta_line(meta: Mapping[str, Any], fields: Sequence[str]) -> str:
    """``field: value · field: value`` for the ``fields`` the item has, each value escaped and
    cut, the whole within a context element's limit; empty when it has none of them."""
    parts = []
    for name in fields:
        value = meta.get(name)
        if value is None or value == "":
            continue
        shown = blocks.escape(str(value).replace("\n", " "))
        if len(shown) > META_VALUE_LIMIT:  # never inside an escape nor a character
            shown = blocks.clip(shown, META_VALUE_LIMIT - 1) + "…"
        parts.append(f"{blocks.escape(name)}: {shown}")
    return blocks.fit(" · ".join(parts)) if parts else ""


def guidelines_view(labels: Sequence[str], guidelines: Mapping[str, Guideline]) -> View:
    """A modal with each label in force and its description and examples."""
    body: list[Block] = [
        ContextBlock(elements=[MarkdownTextObject(text="What each label means")]),
    ]
    for label in labels[: MAX_BLOCKS - 2]:
        guide = guidelines.get(label)
        text = f"*{blocks.escape(label)}*"
        if guide is None or not (guide.description or guide.examples):
            text += "\n_no description yet_"
        else:
            if guide.description:
                text += f"\n{blocks.escape(guide.description)}"
            for example in guide.examples[:MAX_EXAMPLES]:
                text += f"\n• _{blocks.escape(example)}_"
        body.append(SectionBlock(text=MarkdownTextObject(text=blocks.fit(text))))
    if len(labels) > MAX_BLOCKS - 2:
        more = len(labels) - (MAX_BLOCKS - 2)
        body.append(ContextBlock(elements=[MarkdownTextObject(text=f"… and {more} more")]))
    return View(
        type="modal",
        callback_id=GUIDELINES_CALLBACK,
        title="Guidelines",
        close="Close",
        blocks=body,
    )
