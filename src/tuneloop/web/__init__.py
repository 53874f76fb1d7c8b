"""The dashboard: ``tuneloop serve`` (and ``tuneloop ui``) serve it at /ui/ beside the API, from the same process,
store and key. Server-rendered pages (Jinja2), a little script of our own, nothing fetched from elsewhere.

>>> from tuneloop.web import create_app
>>> app = create_app(runtime, api_key="KEY")   # the server's app with /ui/ mounted
"""

from tuneloop.web.app import create_app, mount

__all__ = ["create_app", "mount"]
