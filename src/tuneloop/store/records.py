"""What the store hands back: plain, frozen records of threads and messages (rows never leave the store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tuneloop.store.database import aware
from tuneloop.store.schema import CorrectionRow, MessageRow, ThreadRow

TITLE_LENGTH = 80


class Label(Protocol):
    """A label computed above the store (sentiment, for now: ``tuneloop.curation.sentiment.Sentiment``) and handed
    down with what it labels."""

    @property
    def label(self) -> str: ...

    @property
    def score(self) -> float: ...


def language_of(label: Label) -> str | None:
    """The language a label names (``Sentiment.language``), if it names one."""
    return getattr(label, "language", None)


@dataclass(frozen=True)
class Correction:
    """The reply someone wrote for a logged assistant message (``source``: cli, library, http, ui)."""

    id: int
    message_id: int
    content: str
    source: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "message_id": self.message_id, "content": self.content, "source": self.source,
                "created_at": self.created_at.isoformat()}


def correction_from_row(row: CorrectionRow) -> Correction:
    return Correction(row.id, row.message_id, row.content, row.source, aware(row.created_at))


@dataclass(frozen=True)
class Thread:
    id: str
    assistant_id: str | None
    model: str
    title: str | None
    system_instruction: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int | None = None
    kind: str | None = None
    metadata: dict[str, str] | None = None
    end_user: str | None = None

    @classmethod
    def from_row(cls, row: ThreadRow, message_count: int | None = None) -> Thread:
        return cls(
            end_user=row.end_user,
            kind=row.kind,
            metadata=row.metadata_,
            id=row.id,
            assistant_id=row.assistant_id,
            model=row.model,
            title=row.title,
            system_instruction=row.system_instruction,
            created_at=aware(row.created_at),
            updated_at=aware(row.updated_at),
            message_count=message_count,
        )


@dataclass(frozen=True)
class Message:
    id: int
    thread_id: str
    role: str
    content: str
    sentiment: str
    sentiment_score: float
    reaction: str | None
    reaction_score: float | None
    feedback: int | None
    model: str | None
    tokens_in: int | None
    tokens_out: int | None
    latency_ms: int | None
    finish_reason: str | None
    attachments: list[dict[str, Any]] | None
    created_at: datetime
    item_id: str | None = None
    metadata: dict[str, str] | None = None
    language: str | None = None
    feedback_note: str | None = None
    correction: Correction | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    output_spec: dict[str, Any] | None = None
    excluded: bool = False  # left out of training by someone

    @classmethod
    def from_row(cls, row: MessageRow, correction: Correction | None = None) -> Message:
        return cls(
            excluded=bool(row.excluded),
            tool_calls=row.tool_calls,
            tool_call_id=row.tool_call_id,
            output_spec=row.output_spec,
            language=row.language,
            feedback_note=row.feedback_note,
            correction=correction,
            item_id=row.item_id,
            metadata=row.metadata_,
            id=row.id,
            thread_id=row.thread_id,
            role=row.role,
            content=row.content,
            sentiment=row.sentiment_label,
            sentiment_score=row.sentiment_score,
            reaction=row.reaction_label,
            reaction_score=row.reaction_score,
            feedback=row.feedback,
            model=row.model,
            tokens_in=row.tokens_in,
            tokens_out=row.tokens_out,
            latency_ms=row.latency_ms,
            finish_reason=row.finish_reason,
            attachments=row.attachments,
            created_at=aware(row.created_at),
        )

    def to_dialogue(self) -> dict[str, Any]:
        """The seed's dialogue entry: role, content, sentiment."""
        return {"role": self.role, "content": self.content, "sentiment": self.sentiment}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "thread_id": self.thread_id,
            "role": self.role,
            "content": self.content,
            "sentiment": self.sentiment,
            "sentiment_score": self.sentiment_score,
            "reaction": self.reaction,
            "reaction_score": self.reaction_score,
            "feedback": self.feedback,
            "model": self.model,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "latency_ms": self.latency_ms,
            "finish_reason": self.finish_reason,
            "attachments": self.attachments,
            "created_at": self.created_at.isoformat(),
            "item_id": self.item_id,
            "metadata": self.metadata,
            "language": self.language,
            "feedback_note": self.feedback_note,
            "correction": self.correction.to_dict() if self.correction else None,
            "tool_calls": self.tool_calls,
            "tool_call_id": self.tool_call_id,
            "output_spec": self.output_spec,
            "excluded": self.excluded,
        }

    def to_chat(self) -> dict[str, Any]:
        """The message as chat completions' messages are written: role and content, a reply's tool calls, the call
        a tool result answers."""
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
            if not self.content:
                message["content"] = None
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        return message


@dataclass(frozen=True)
class Exchange:
    user: Message
    assistant: Message
