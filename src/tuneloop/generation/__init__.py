"""What a generation is asked for and what it gives back, whoever generates it (a local engine, a remote
provider): the shared contract of the engines and the providers."""

from tuneloop.generation.result import GenerationResult, TextStream, first_stop

__all__ = ["GenerationResult", "TextStream", "first_stop"]
