"""What a vendor account holds, for `tuneloop import openai` to carry out: fine-tuning jobs with their events and
checkpoints, files with their bytes, stored chat completions with their messages. The stand-in answers OpenAI's
list endpoints from it, paged (``after`` / ``limit``, ``has_more``) as OpenAI pages them; every object goes through
the SDK's models before it is sent, so a shape the importer would misread fails here first."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from openai.types import FileObject
from openai.types.chat import ChatCompletion, ChatCompletionStoreMessage
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

T0 = 1_760_000_000  # a creation time in 2025


def dump(model: Any, data: dict[str, Any]) -> dict[str, Any]:
    return model.model_validate(data).model_dump(mode="json")


class History:
    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []  # oldest first; listed newest first, as OpenAI does
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.checkpoints: dict[str, list[dict[str, Any]]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.completions: list[dict[str, Any]] = []  # oldest first
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.served: list[str] = []  # every path answered, for the tests to count requests

    # --- seeding ------------------------------------------------------------------------------------------

    def add_file(self, name: str, content: bytes, purpose: str = "fine-tune") -> str:
        ident = f"file-hist{len(self.files)}"
        self.files[ident] = dump(FileObject, {"id": ident, "object": "file", "bytes": len(content),
                                              "created_at": T0 + len(self.files), "filename": name,
                                              "purpose": purpose, "status": "processed"})
        self.contents[ident] = content
        return ident

    def add_job(self, training: bytes, *, status: str = "succeeded", method: str = "supervised",
                hyper: dict[str, Any] | None = None, suffix: str | None = "hist", events: int = 3,
                checkpoints: int = 2, validation: bytes | None = None) -> str:
        n = len(self.jobs)
        ident = f"ftjob-hist{n}"
        training_id = self.add_file(f"train{n}.jsonl", training)
        validation_id = self.add_file(f"valid{n}.jsonl", validation) if validation is not None else None
        done = status in ("succeeded", "failed", "cancelled")
        result = [self.add_file(f"step_metrics{n}.csv", b"step,train_loss\n1,1.5\n2,0.9\n", "fine-tune-results")
                  ] if status == "succeeded" else []
        hyper = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0, **(hyper or {})}
        created = T0 + 1000 * (n + 1)
        model = f"ft:gpt-4o-mini-2024-07-18:org:{suffix}:{ident}" if status == "succeeded" else None
        job = dump(FineTuningJob, {
            "id": ident, "object": "fine_tuning.job", "created_at": created,
            "error": {"code": "invalid_training_file", "message": "bad line 3", "param": "training_file"}
            if status == "failed" else None,
            "fine_tuned_model": model, "finished_at": created + 600 if done else None,
            "hyperparameters": {k: v for k, v in hyper.items() if k != "beta"}, "model": "gpt-4o-mini-2024-07-18",
            "organization_id": "org-hist", "result_files": result, "seed": 1000 + n, "status": status,
            "trained_tokens": 4321 if status == "succeeded" else None, "training_file": training_id,
            "validation_file": validation_id, "user_provided_suffix": suffix, "metadata": {"team": "support"},
            "method": {"type": method, method: {"hyperparameters": hyper}}})
        self.jobs.append(job)
        self.events[ident] = [dump(FineTuningJobEvent, {
            "id": f"ftevent-{ident}-{i}", "object": "fine_tuning.job.event", "created_at": created + i,
            "level": "info", "message": f"Step {i + 1}: training loss={2.0 / (i + 1):.3f}", "type": "metrics",
            "data": {"step": i + 1, "train_loss": 2.0 / (i + 1)}}) for i in range(events)]
        self.checkpoints[ident] = [dump(FineTuningJobCheckpoint, {
            "id": f"ftckpt-{ident}-{i}", "object": "fine_tuning.job.checkpoint", "created_at": created + 100 * i,
            "fine_tuned_model_checkpoint": f"{model}:ckpt-step-{i + 1}", "fine_tuning_job_id": ident,
            "step_number": i + 1, "metrics": {"step": i + 1, "train_loss": 1.0 / (i + 1)}})
            for i in range(checkpoints if status == "succeeded" else 0)]
        return ident

    def add_completion(self, question: str, answer: str, metadata: dict[str, str] | None = None,
                       system: str | None = None) -> str:
        n = len(self.completions)
        ident = f"chatcmpl-hist{n}"
        self.completions.append(dump(ChatCompletion, {
            "id": ident, "object": "chat.completion", "created": T0 + 10 * n, "model": "gpt-4o-mini-2024-07-18",
            "metadata": metadata or {}, "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": answer, "refusal": None}}]}))
        said = ([("system", system)] if system else []) + [("user", question)]
        # (OpenAI lists each message with its own role; the SDK's type says "assistant", so build, then set it.)
        self.messages[ident] = [{**dump(ChatCompletionStoreMessage, {"id": f"{ident}-{i}", "role": "assistant",
                                                                     "content": text}), "role": role}
                                for i, (role, text) in enumerate(said)]
        return ident

    # --- answering ------------------------------------------------------------------------------------------

    @staticmethod
    def _page(items: list[dict[str, Any]], query: dict[str, list[str]], *, with_ids: bool = False
              ) -> dict[str, Any]:
        limit = int(query.get("limit", ["20"])[0])
        after = query.get("after", [None])[0]
        if after is not None:
            ids = [i["id"] for i in items]
            if after not in ids:
                return {"_status": 400, "error": {"message": f"invalid after {after!r}", "param": "after",
                                                  "type": "invalid_request_error", "code": None}}
            items = items[ids.index(after) + 1:]
        page = {"object": "list", "data": items[:limit], "has_more": len(items) > limit}
        if with_ids:
            page.update(first_id=page["data"][0]["id"] if page["data"] else None,
                        last_id=page["data"][-1]["id"] if page["data"] else None)
        return page

    def answer(self, path: str, query_string: str) -> tuple[int, Any] | None:
        """(status, JSON body or bytes) for a history route, or None for a route that is not one."""
        query = parse_qs(query_string)
        parts = path.strip("/").split("/")[1:]  # after "v1"
        found: Any = None
        if parts == ["fine_tuning", "jobs"]:
            found = self._page(self.jobs[::-1], query)
        elif len(parts) == 4 and parts[:2] == ["fine_tuning", "jobs"] and parts[2] in self.events:
            source = self.events[parts[2]][::-1] if parts[3] == "events" else self.checkpoints[parts[2]][::-1]
            found = self._page(source, query, with_ids=parts[3] == "checkpoints")
        elif len(parts) == 3 and parts[:2] == ["fine_tuning", "jobs"] and parts[2] in self.events:
            found = next(j for j in self.jobs if j["id"] == parts[2])
        elif len(parts) == 2 and parts[0] == "files" and parts[1] in self.files:
            found = self.files[parts[1]]
        elif len(parts) == 3 and parts[0] == "files" and parts[2] == "content" and parts[1] in self.contents:
            self.served.append(path)
            return 200, self.contents[parts[1]]
        elif parts == ["chat", "completions"]:
            order = query.get("order", ["asc"])[0]
            found = self._page(self.completions if order == "asc" else self.completions[::-1], query, with_ids=True)
        elif len(parts) == 4 and parts[:2] == ["chat", "completions"] and parts[3] == "messages":
            found = self._page(self.messages.get(parts[2], []), query, with_ids=True)
        elif len(parts) in (2, 3) and parts[0] == "files":
            return 404, {"error": {"message": f"No such File object: {parts[1]}", "type": "invalid_request_error",
                                   "param": "id", "code": None}}
        if found is None:
            return None
        self.served.append(path)
        status = found.pop("_status", 200) if isinstance(found, dict) else 200
        return status, json.loads(json.dumps(found))
