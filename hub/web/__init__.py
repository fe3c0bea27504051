"""The HTML side of the sidecar, shared by its pages: one Jinja2 environment, the layout and the stylesheet.

``base.html`` is the layout (title, navigation, flash message, the page's content block) and ``style.css`` its one
stylesheet, both shipped as package data; nothing is loaded from the internet and nothing needs building. A set of
pages (the operator console, :mod:`tanpuhui.hub.console`) brings its own templates package and extends
``base.html``; :func:`environment` chains the loaders. Templates autoescape everything.
"""

from __future__ import annotations

from importlib import resources

from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["environment", "static_route"]

_STATIC = {"style.css": "text/css; charset=utf-8"}
"""What the ``static`` folder serves (by name: no path from a request ever reaches the file system)."""


def environment(*packages: str) -> Environment:
    """A Jinja2 environment over the ``templates`` folders of ``packages`` first, then this package's."""
    loaders = [PackageLoader(name, "templates") for name in (*packages, __name__)]
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["duration"] = duration
    return env


def static_route(path: str) -> Route:
    """Serve this package's static files (the stylesheet, shipped in the wheel) at ``path/{name}``."""
    files = resources.files(__name__) / "static"
    cache = {name: (files / name).read_bytes() for name in _STATIC}

    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in cache:
            return PlainTextResponse("not found", status_code=404)
        return Response(cache[name], media_type=_STATIC[name], headers={"cache-control": "public, max-age=3600"})

    return Route(f"{path}/{{name}}", serve, methods=["GET"])


def when(value: str | None) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM:SS`` (UTC as stored), or a dash."""
    if not value:
        return "—"
    return value.replace("T", " ")[:19]


def duration(seconds: float | None) -> str:
    """Seconds as a short human duration: ``850 ms``, ``12.3 s``, ``4 min``, ``3 h``, ``2 d``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
