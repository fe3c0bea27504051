"""The console's routes under ``/console``: sign-in and sign-out, the static files and every page."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from ..web import static_route
from .core import PREFIX, Console, Form, Pages
from .failures import FailurePages
from .operations import OperationPages
from .session import COOKIE, Sessions
from .streams import StreamPages

__all__ = ["PREFIX", "Console", "Sessions", "console_mount"]


def console_mount(console: Console) -> Mount:
    """The console's routes under ``/console``."""
    routes: list[BaseRoute] = [
        Route("/signin", _SignIn(console).get, methods=["GET"]),
        Route("/signin", _SignIn(console).post, methods=["POST"]),
        Route("/signout", console.action(_sign_out), methods=["POST"]),
        static_route("/static"),
        *StreamPages(console).routes(),
        *FailurePages(console).routes(),
        *OperationPages(console).routes(),
    ]
    return Mount(PREFIX, routes=routes)


class _SignIn(Pages):
    async def get(self, request: Request) -> Response:
        return self.c.render(
            request,
            "signin.html",
            "Sign in",
            enabled=self.c.sessions.enabled,
            next=_safe_next(request.query_params.get("next", "")),
        )

    async def post(self, request: Request) -> Response:
        form = await self.c.form(request) or Form({})
        target = _safe_next(form.get("next"))
        if not self.c.sessions.token_matches(form.get("token")):
            await asyncio.sleep(0.5)  # slows guessing; the token is long, this is only courtesy to the log
            query = urlencode({"next": target, "msg": "wrong admin token", "kind": "error"})
            return RedirectResponse(f"{PREFIX}/signin?{query}", status_code=303)
        await self.c.audit(request, "console.signin", "console", {})
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            self.c.sessions.issue(),
            max_age=int(self.c.sessions.lifetime),
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response


async def _sign_out(request: Request, form: Form) -> Response:
    response = RedirectResponse(f"{PREFIX}/signin?{urlencode({'msg': 'signed out'})}", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


def _safe_next(target: str) -> str:
    """Only a console path (no open redirect to another site)."""
    if target.startswith(f"{PREFIX}/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/"
