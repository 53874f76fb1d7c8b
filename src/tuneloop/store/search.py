"""Full-text search over logged messages, ranked, with the matching words marked.

SQLite uses the FTS5 table ``messages_fts`` and PostgreSQL the ``messages.search`` tsvector (migrations 0004 and 0010).
Every word of the query must match, each as a word prefix ("capital" finds "capitals"), ignoring case
(accents count: "café" does not find "cafe"); ties rank newest first. Other databases fall back to a
case-insensitive substring match.

Chinese, Japanese and Korean put no spaces between words, and both databases' word splitters take a run of such text
for one word. So both index each of their characters as a word of its own (:mod:`tuneloop.store.indexing`), and a
query's run is a phrase of its characters: "首都" finds 日本の首都は.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text

from tuneloop.store.database import Database
from tuneloop.store.indexing import CJK_CLASS, CJK_SPACED, cjk_spaced
from tuneloop.store.records import Message
from tuneloop.store.schema import MessageRow

# Matched words are wrapped in these two characters in SearchHit.snippet (control characters no one types).
START, STOP = "\x02", "\x03"
_WORD = re.compile(r"[^\W_]+")
_MARKED = re.compile(f"{START}(.*?){STOP}", re.DOTALL)

# A character of cjk_spaced's output with the two spaces around it, and the marks a snippet may have put inside them.
_SPACED_CHARACTER = re.compile(f" ?([{START}{STOP}]*)([{CJK_CLASS}])([{START}{STOP}]*) ?")
_MARK_BETWEEN_CHARACTERS = re.compile(f"(?<=[{CJK_CLASS}]){STOP}{START}(?=[{CJK_CLASS}])")


def _unspaced(snippet: str) -> str:
    """A snippet of ``cjk_spaced`` text as the message has it, a run of matched characters marked as one."""
    return _MARK_BETWEEN_CHARACTERS.sub("", _SPACED_CHARACTER.sub(r"\1\2\3", snippet))


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
