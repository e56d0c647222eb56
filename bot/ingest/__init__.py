"""Items in from files: ``readers`` turns a CSV, TSV, JSONL or text file into rows and row
errors (pure: it writes nothing but a note line about the whole file, to ``on_note`` or
standard error); ``load`` adds those rows to the store in batches and records
the import as a run. `hitl import`, the demo's ``--data`` and the API's item ids use it.

May import the core (``bot.store``, ``bot.errors``). Never the edges (``bot.slack``,
``bot.api``, ``bot.learning``) nor what composes them (checked by tests/test_layout.py).
"""

from bot.ingest.load import (
    IMPORT_BATCH,
    ImportSummary,
    deleted_items_among,
    import_rows,
    redaction_twin_ids,
    rows_of_file,
    same_item_text,
    twin_label,
    why_no_rows,
    with_redaction_twins,
    with_stored_ids,
)
from bot.ingest.readers import (
    FORMATS,
    MAX_TEXT_CHARS,
    Provenance,
    Row,
    RowError,
    Vote,
    detect_format,
    formula_guarded,
    id_problem,
    item_id_for_text,
    legacy_item_ids,
    read_items,
)

__all__ = [
    "FORMATS",
    "IMPORT_BATCH",
    "MAX_TEXT_CHARS",
    "ImportSummary",
    "Provenance",
    "Row",
    "RowError",
    "Vote",
    "deleted_items_among",
    "detect_format",
    "formula_guarded",
    "id_problem",
    "import_rows",
    "item_id_for_text",
    "legacy_item_ids",
    "read_items",
    "rows_of_file",
    "redaction_twin_ids",
    "same_item_text",
    "twin_label",
    "why_no_rows",
    "with_redaction_twins",
    "with_stored_ids",
]
