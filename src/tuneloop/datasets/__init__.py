"""Training data: read CSV/JSONL and logged dialogues, shape OpenAI fine-tuning examples, validate them.

>>> from tuneloop.datasets import read_source, build_dataset, token_counter, validate_file
>>> dataset = build_dataset(read_source("facts.csv"))
>>> dataset.write_jsonl("train.jsonl")            # ("supervised", 60)
>>> report = validate_file("train.jsonl", token_counter("gpt-4o-mini"))
>>> report.ok, report.tokens, report.estimated_cost_usd
"""

from tuneloop.datasets.readers import (
    Row,
    RowSet,
    Skipped,
    read_csv,
    read_csv_bytes,
    read_csv_dir,
    read_csv_text,
    read_jsonl,
    read_jsonl_text,
    read_source,
)
from tuneloop.datasets.shapes import (
    Dataset,
    DialogueFilter,
    build_dataset,
    from_dialogues,
    select_from_thread,
    verdict,
    write_jsonl,
)
from tuneloop.datasets.tokens import TokenCounter, price_table, token_counter
from tuneloop.datasets.validate import (
    ERROR_NAMES,
    MIN_EXAMPLES,
    ValidationReport,
    validate_examples,
    validate_file,
    validate_text,
)

__all__ = [
    "DialogueFilter",
    "ERROR_NAMES",
    "MIN_EXAMPLES",
    "Dataset",
    "Row",
    "RowSet",
    "Skipped",
    "TokenCounter",
    "ValidationReport",
    "build_dataset",
    "from_dialogues",
    "price_table",
    "read_csv",
    "read_csv_bytes",
    "read_csv_dir",
    "read_csv_text",
    "read_jsonl",
    "read_jsonl_text",
    "read_source",
    "select_from_thread",
    "token_counter",
    "validate_examples",
    "validate_file",
    "validate_text",
    "verdict",
    "write_jsonl",
]
