"""``tuneloop serve``: an OpenAI-compatible server for chat, files and fine-tuning jobs.

>>> from tuneloop.server import create_app, ServerThread
>>> with ServerThread(create_app()) as server:            # 127.0.0.1, a free port
...     client = openai.OpenAI(base_url=server.base_url, api_key="unused")
"""

from tuneloop.server._errors import http_status
from tuneloop.server._generation import ClientGone, Generation, GenerationQueue, collect_text, unless_gone
from tuneloop.server._run import ServerThread, base_url, bind, is_loopback, uvicorn_server
from tuneloop.server._state import ServerState, state_of
from tuneloop.server.app import create_app, key_matches, served_models, server_settings

__all__ = [
    "ClientGone", "Generation", "GenerationQueue", "ServerState", "ServerThread", "base_url", "bind", "collect_text",
    "create_app", "http_status", "is_loopback", "key_matches", "served_models", "server_settings", "state_of",
    "unless_gone", "uvicorn_server",
]
