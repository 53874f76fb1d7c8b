"""What a generation is asked for and what it gives back, whoever generates it (a local engine, a remote
provider): the shared contract of the engines and the providers."""

from tuneloop.generation.options import DEFAULT_MAX_TOKENS, GenerationOptions, options_from
from tuneloop.generation.result import GenerationResult, TextStream, first_stop

__all__ = ["DEFAULT_MAX_TOKENS", "GenerationOptions", "GenerationResult", "TextStream", "first_stop", "options_from"]
