"""How the full-text index reads a message: Chinese, Japanese and Korean put no spaces between words, and both
databases' word splitters take a run of such text for one word, so each CJK character is indexed as a word of its own
(:func:`cjk_spaced`, the SQL function ``tuneloop_cjk_spaced``: migration 0010). Changing ``CJK_RANGES`` changes what
the index holds: it needs a migration that rebuilds the index."""

from __future__ import annotations

import re
import sqlite3

# Hangul Jamo, 々 and 〇, kana, Bopomofo, Hangul compatibility Jamo, CJK ideographs (extension A, the unified block,
# compatibility), Hangul syllables, half-width katakana, and the ideographs beyond the BMP (extensions B to H).
CJK_RANGES = ((0x1100, 0x11FF), (0x3005, 0x3005), (0x3007, 0x3007), (0x3040, 0x30FF), (0x3100, 0x312F),
              (0x3130, 0x318F), (0x31A0, 0x31BF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
              (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x20000, 0x3134F))
CJK_SPACED = "tuneloop_cjk_spaced"  # the SQL function the index reads messages through, on both databases
CJK_CLASS = "".join(f"{chr(low)}-{chr(high)}" for low, high in CJK_RANGES)  # inside a regular expression's [...]
_CJK_CHARACTER = re.compile(f"[{CJK_CLASS}]")


def cjk_spaced(content: str) -> str:
    """``content`` with a space either side of each CJK character: the text the full-text index is built from."""
    return _CJK_CHARACTER.sub(r" \g<0> ", content)


def postgresql_cjk_pattern() -> str:
    """``CJK_RANGES`` as a PostgreSQL regular expression's bracket expression (migration 0010)."""
    return "[" + "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in CJK_RANGES) + "]"


def add_sqlite_functions(connection: sqlite3.Connection) -> None:
    """Give a SQLite connection ``tuneloop_cjk_spaced``, which the full-text index's triggers and view call (the
    store's every connection has it; another program that writes messages must add it too)."""
    connection.create_function(CJK_SPACED, 1, lambda value: None if value is None else cjk_spaced(str(value)),
                               deterministic=True)
