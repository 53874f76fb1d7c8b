"""Bringing history in from other platforms: ``openai`` (jobs, files, stored chat completions)."""
