"""Full-text search over logged messages, ranked, with the matching words marked.

SQLite uses the FTS5 table ``messages_fts`` and PostgreSQL the ``messages.search`` tsvector (migrations 0004 and 0010).
Every word of the query must match, each as a word prefix ("capital" finds "capitals"), ignoring case
(accents count: "café" does not find "cafe"); ties rank newest first. Other databases fall back to a
case-insensitive substring match.

Chinese, Japanese and Korean put no spaces between words, and both databases' word splitters take a run of such text
for one word. So both index each of their characters as a word of its own (``cjk_spaced``, through the SQL function
``tuneloop_cjk_spaced``: migration 0010), and a query's run is a phrase of its characters: "首都" finds 日本の首都は.
Changing ``CJK_RANGES`` changes what the index holds: it needs a migration that rebuilds the index.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event, select, text

from tuneloop.store.database import Database
from tuneloop.store.records import Message
from tuneloop.store.schema import MessageRow

# Matched words are wrapped in these two characters in SearchHit.snippet (control characters no one types).
START, STOP = "\x02", "\x03"
_WORD = re.compile(r"[^\W_]+")
_MARKED = re.compile(f"{START}(.*?){STOP}", re.DOTALL)

# Hangul Jamo, 々 and 〇, kana, Bopomofo, Hangul compatibility Jamo, CJK ideographs (extension A, the unified block,
# compatibility), Hangul syllables, half-width katakana, and the ideographs beyond the BMP (extensions B to H).
CJK_RANGES = ((0x1100, 0x11FF), (0x3005, 0x3005), (0x3007, 0x3007), (0x3040, 0x30FF), (0x3100, 0x312F),
              (0x3130, 0x318F), (0x31A0, 0x31BF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
              (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x20000, 0x3134F))
CJK_SPACED = "tuneloop_cjk_spaced"  # the SQL function the index reads messages through, on both databases
_CJK = "".join(f"{chr(low)}-{chr(high)}" for low, high in CJK_RANGES)
_CJK_CHARACTER = re.compile(f"[{_CJK}]")
# A character of cjk_spaced's output with the two spaces around it, and the marks a snippet may have put inside them.
_SPACED_CHARACTER = re.compile(f" ?([{START}{STOP}]*)([{_CJK}])([{START}{STOP}]*) ?")
_MARK_BETWEEN_CHARACTERS = re.compile(f"(?<=[{_CJK}]){STOP}{START}(?=[{_CJK}])")


def cjk_spaced(content: str) -> str:
    """``content`` with a space either side of each CJK character: the text the full-text index is built from."""
    return _CJK_CHARACTER.sub(r" \g<0> ", content)


def _unspaced(snippet: str) -> str:
    """A snippet of ``cjk_spaced`` text as the message has it, a run of matched characters marked as one."""
    return _MARK_BETWEEN_CHARACTERS.sub("", _SPACED_CHARACTER.sub(r"\1\2\3", snippet))


def postgresql_cjk_pattern() -> str:
    """``CJK_RANGES`` as a PostgreSQL regular expression's bracket expression (migration 0010)."""
    return "[" + "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in CJK_RANGES) + "]"


def add_sqlite_functions(connection: sqlite3.Connection) -> None:
    """Give a SQLite connection ``tuneloop_cjk_spaced``, which the full-text index's triggers and view call."""
    connection.create_function(CJK_SPACED, 1, lambda value: None if value is None else cjk_spaced(str(value)),
                               deterministic=True)


@event.listens_for(Engine, "connect")
def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Every connection, not only the store's: anything that writes messages fires the index's triggers.
    if isinstance(dbapi_connection, sqlite3.Connection):
        add_sqlite_functions(dbapi_connection)


@dataclass(frozen=True)
class SearchHit:
    message: Message
    rank: float  # higher is better; comparable only within one search
    snippet: str  # the best part of the text, matched words between START and STOP

    @property
    def matches(self) -> list[str]:
        return list(dict.fromkeys(m.lower() for m in _MARKED.findall(self.snippet)))

    def marked(self, before: str, after: str) -> str:
        return _MARKED.sub(lambda m: f"{before}{m.group(1)}{after}", self.snippet)

    def to_dict(self) -> dict[str, Any]:
        return {**self.message.to_dict(), "rank": round(self.rank, 6), "snippet": self.marked("**", "**"),
                "matches": self.matches}


def words(query: str) -> list[str]:
    return _WORD.findall(query)


# What "every word, each as a prefix" is in each database's language (the log page's search says it the same way);
# a word with CJK characters is a phrase of the words cjk_spaced makes of it, the last one a prefix.

def _indexed_words(term: str) -> list[str]:
    return cjk_spaced(term).split()


def fts5_query(terms: list[str]) -> str:
    return " ".join(f'"{" ".join(_indexed_words(t))}"*' for t in terms)


def tsquery_text(terms: list[str]) -> str:
    return " & ".join(f"({' <-> '.join(_indexed_words(t))}:*)" for t in terms)


def like_pattern(query: str) -> str:
    """A case-insensitive substring pattern for LIKE with escape character backslash (other databases)."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(db: Database, query: str, limit: int) -> list[SearchHit]:
    """Up to ``limit`` messages matching every word of ``query``, best first."""
    terms = words(query)
    if not terms:
        return []
    dialect = db.dialect
    if dialect == "sqlite":
        statement = text(
            "SELECT messages_fts.rowid, -bm25(messages_fts), "
            "snippet(messages_fts, 0, char(2), char(3), '…', 24) FROM messages_fts "
            "WHERE messages_fts MATCH :q ORDER BY bm25(messages_fts), messages_fts.rowid DESC LIMIT :limit"
        )
        params: dict[str, Any] = {"q": fts5_query(terms), "limit": limit}
    elif dialect == "postgresql":
        statement = text(
            f"SELECT id, ts_rank(search, q), ts_headline('simple', {CJK_SPACED}(content), q, :options) "
            "FROM messages, to_tsquery('simple', :q) q WHERE search @@ q "
            "ORDER BY ts_rank(search, q) DESC, id DESC LIMIT :limit"
        )
        params = {"q": tsquery_text(terms), "limit": limit,
                  "options": f"StartSel={START}, StopSel={STOP}, MaxWords=30, MinWords=12, MaxFragments=2, "
                             # ShortWord=0: a CJK character is a word of one letter, which it would cut off.
                             "ShortWord=0, FragmentDelimiter=\" … \""}
    else:
        return _substring(db, query, limit)
    with db.session() as session:
        found = [(int(i), float(rank), _unspaced(snippet)) for i, rank, snippet in session.execute(statement, params)]
        rows = {row.id: row for row in session.scalars(select(MessageRow).where(
            MessageRow.id.in_([i for i, _, _ in found])))}
        return [SearchHit(Message.from_row(rows[i]), rank, snippet) for i, rank, snippet in found if i in rows]


def _substring(db: Database, query: str, limit: int) -> list[SearchHit]:
    statement = (select(MessageRow).where(MessageRow.content.ilike(like_pattern(query), escape="\\"))
                 .order_by(MessageRow.id.desc()).limit(limit))
    pattern = re.compile(re.escape(query), re.IGNORECASE)
    with db.session() as session:
        return [SearchHit(Message.from_row(row), 1.0, pattern.sub(lambda m: f"{START}{m.group(0)}{STOP}", row.content))
                for row in session.scalars(statement)]
