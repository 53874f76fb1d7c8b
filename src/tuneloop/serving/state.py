"""What every route needs: the runtime, the tasks and the job system, the generation queue and the server's limits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from starlette.requests import Request

from tuneloop.config import Settings
from tuneloop.conversation.responses import ResponseLog
from tuneloop.conversation.stored_completions import StoredCompletions
from tuneloop.curation import labels
from tuneloop.errors import JobNotFoundError
from tuneloop.providers.vision import VisionProvider
from tuneloop.runtime import Runtime
from tuneloop.serving.generation import GenerationQueue
from tuneloop.store.jobs import Job
from tuneloop.tasks import Tasks
from tuneloop.training import FineTuning


@dataclass
class ServerState:
    runtime: Runtime
    api_key: str | None
    max_file_bytes: int
    queue: GenerationQueue
    stats: Counter[str] = field(default_factory=Counter)  # requests answered, by route
    vision: VisionProvider | None = None  # --vision-model

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @cached_property
    def labeller(self) -> labels.Labeller:
        """The sentiment analyzer the settings name, for everything this server logs."""
        return labels.labeller_for(self.runtime)

    @cached_property
    def tasks(self) -> Tasks:
        """Long work of every kind (judge runs, eval runs, fine-tuning jobs) in this server's store."""
        return Tasks(self.runtime.db, self.settings)

    @cached_property
    def fine_tuning(self) -> FineTuning:
        return FineTuning(self.runtime)

    def local_job(self, job_id: str) -> Job:
        """A job this server trains: one this store tracks at a remote platform is not its to serve or show."""
        job = self.fine_tuning.get(job_id)
        if job.backend != "local":
            raise JobNotFoundError(f"no fine-tuning job {job_id!r} on this server", job_id)
        return job

    def response_log(self) -> ResponseLog:
        """Responses and conversations in the store, labelled by the runtime's sentiment analyzer."""
        return ResponseLog(self.runtime.db.dialogue, self.labeller)

    def stored_completions(self) -> StoredCompletions:
        """Chat completions kept or logged in the store, labelled by the runtime's sentiment analyzer."""
        return StoredCompletions(self.runtime.db.dialogue, self.labeller)


def state_of(request: Request) -> ServerState:
    return request.app.state.tuneloop
