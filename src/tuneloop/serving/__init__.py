"""What both HTTP shells (the API, :mod:`tuneloop.server`, and the dashboard, :mod:`tuneloop.web`) stand on: the app
and its state, the generation queue, the key check, the models on offer, the HTTP mapping of library errors and
running under uvicorn. ``tuneloop.asgi`` composes the shells into the app that ``tuneloop serve`` runs."""

from tuneloop.serving.app import new_app, server_settings
from tuneloop.serving.errors import APIError, error_body, from_library, http_status
from tuneloop.serving.generation import ClientGone, Generation, GenerationQueue, collect_text, unless_gone
from tuneloop.serving.keys import key_matches
from tuneloop.serving.models import served_models
from tuneloop.serving.run import ServerThread, base_url, bind, is_loopback, uvicorn_server
from tuneloop.serving.state import ServerState, state_of

__all__ = [
    "APIError", "ClientGone", "Generation", "GenerationQueue", "ServerState", "ServerThread", "base_url", "bind",
    "collect_text", "error_body", "from_library", "http_status", "is_loopback", "key_matches", "new_app",
    "served_models", "server_settings", "state_of", "unless_gone", "uvicorn_server",
]
