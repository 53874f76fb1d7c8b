"""OpenAI's HTTP API over tuneloop's library: chat, completions, Responses, conversations, files, fine-tuning jobs and
the log's own routes. ``tuneloop.asgi`` adds the dashboard beside it for ``tuneloop serve``.

>>> from tuneloop.server import create_app
>>> from tuneloop.serving import ServerThread
>>> with ServerThread(create_app()) as server:            # 127.0.0.1, a free port
...     client = openai.OpenAI(base_url=server.base_url, api_key="unused")
"""

from tuneloop.server.app import create_app, install

__all__ = ["create_app", "install"]
