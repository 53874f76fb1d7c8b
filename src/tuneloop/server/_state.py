"""What every route needs: the runtime, the job system, the generation queue and the server's limits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from starlette.requests import Request

from tuneloop.config import Settings
from tuneloop.providers.vision import VisionProvider
from tuneloop.runtime import Runtime
from tuneloop.server._generation import GenerationQueue
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
    def fine_tuning(self) -> FineTuning:
        return FineTuning(self.runtime)


def state_of(request: Request) -> ServerState:
    return request.app.state.tuneloop
