"""What every console page shares: the sidecar's parts, sign-in checks, forms, rendering and auditing.

Pages are plain HTML rendered on the server (templates in ``templates/``, the layout and stylesheet from
:mod:`tanpuhui.hub.web`); each state-changing form posts, is checked for its CSRF token, is written to the audit
log with the console as its actor, and redirects back with a message (post/redirect/get).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..forwarder import Forwarder
from ..hub import Hub
from ..scheduler import ForwarderLoop, Scheduler
from ..server.http import BodyTooLarge, audit_request, read_body
from ..server.streams import Configured
from ..web import environment
from .session import COOKIE, Sessions

__all__ = ["PREFIX", "Console", "Form", "Handler", "Pages"]

PREFIX = "/console"
Handler = Callable[[Request], Awaitable[Response]]
FormHandler = Callable[[Request, "Form"], Awaitable[Response]]

_NAV = (
    (f"{PREFIX}/", "Overview"),
    (f"{PREFIX}/quarantine", "Quarantine"),
    (f"{PREFIX}/dead-letters", "Dead letters"),
    (f"{PREFIX}/sinks", "Sinks"),
    (f"{PREFIX}/audit", "Audit"),
)
_HEADERS = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'",
}
_MAX_FORM = 1024 * 1024


@dataclass
class Form:
    """A posted ``application/x-www-form-urlencoded`` form."""

    fields: dict[str, list[str]]

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0].strip() if values else default

    def all(self, name: str) -> list[str]:
        return self.fields.get(name, [])

    def ids(self, name: str = "id") -> list[int]:
        return [int(v) for v in self.all(name) if v.isdigit() and 0 < int(v) < 2**63]


@dataclass
class Console:
    """The sidecar parts the console reads and steers, with its sessions and templates."""

    hub: Hub
    configured: Configured
    scheduler: Scheduler
    forwarder: Forwarder
    forwarding: ForwarderLoop
    sessions: Sessions
    stale_after: float

    def __post_init__(self) -> None:
        self.templates = environment("tanpuhui.hub.console")

    # -- rendering -----------------------------------------------------------------------------------------------

    def render(self, request: Request, template: str, title: str, active: str = "", **context: Any) -> Response:
        cookie = request.cookies.get(COOKIE, "")
        q = request.query_params
        page = self.templates.get_template(template).render(
            title=title,
            section="operator console",
            nav=_NAV if cookie else (),
            active=active,
            static_url=f"{PREFIX}/static",
            prefix=PREFIX,
            csrf=self.sessions.csrf(cookie) if cookie else "",
            flash=q.get("msg", "")[:500],
            flash_kind="error" if q.get("kind") == "error" else "ok",
            served_by=os.getpid(),  # which worker answered (serve --workers N): all of them show the same
            **context,
        )
        return HTMLResponse(page, headers=_HEADERS)

    @staticmethod
    def back(path: str, message: str, *, error: bool = False) -> Response:
        """Redirect (303: the browser follows with GET) to ``path`` with a message shown at the top."""
        query = {"msg": message, **({"kind": "error"} if error else {})}
        sep = "&" if "?" in path else "?"
        return RedirectResponse(f"{path}{sep}{urlencode(query)}", status_code=303)

    # -- guards --------------------------------------------------------------------------------------------------

    def page(self, handler: Handler) -> Handler:
        """A page that needs a session: without one, the browser goes to the sign-in page."""

        async def guarded(request: Request) -> Response:
            if not self.sessions.valid(request.cookies.get(COOKIE)):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{PREFIX}/signin?{urlencode({'next': target})}", status_code=303)
            return await handler(request)

        return guarded

    def action(self, handler: FormHandler) -> Handler:
        """A state-changing form: needs a session and the session's CSRF token."""

        async def checked(request: Request) -> Response:
            form = await self.form(request)
            if form is None:
                return HTMLResponse("form too large", status_code=413, headers=_HEADERS)
            if not self.sessions.csrf_ok(request.cookies.get(COOKIE), form.get("csrf")):
                return HTMLResponse(
                    "This form expired or did not come from the console: reload the page and try again.",
                    status_code=403,
                    headers=_HEADERS,
                )
            return await handler(request, form)

        return self.page(checked)

    def routes(self, *, pages: Mapping[str, Handler], actions: Mapping[str, FormHandler]) -> list[Route]:
        """The routes of ``pages`` (GET, :meth:`page`) and ``actions`` (POST, :meth:`action`), by path."""
        return [
            *(Route(path, self.page(handler), methods=["GET"]) for path, handler in pages.items()),
            *(Route(path, self.action(handler), methods=["POST"]) for path, handler in actions.items()),
        ]

    @staticmethod
    async def form(request: Request) -> Form | None:
        try:
            raw = await read_body(request, _MAX_FORM)
        except BodyTooLarge:
            return None
        return Form(parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True))

    async def audit(self, request: Request, action: str, subject: str, details: dict[str, Any]) -> None:
        """Append the operator's request to the audit log (before it is carried out)."""
        await audit_request(self.hub.store, request, "console", action, subject, details)


class Pages:
    """A group of the console's pages and actions (``c``: the console they share)."""

    def __init__(self, console: Console) -> None:
        self.c = console
