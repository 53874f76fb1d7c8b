"""The dashboard: ``tuneloop serve`` (and ``tuneloop ui``) serve it at /ui/ beside the API, from the same process,
store and key (:mod:`tuneloop.asgi` composes them). Server-rendered pages (Jinja2), a little script of our own,
nothing fetched from elsewhere.

>>> from tuneloop.serving import new_app
>>> app = mount(new_app(runtime, api_key="KEY"))   # the dashboard alone; tuneloop.asgi.create_app adds the API
"""

from tuneloop.web.app import mount

__all__ = ["mount"]
