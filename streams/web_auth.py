"""Bearer-token guard for the worker's web server.

Faust's web server serves Foresight's ``/metrics`` and ``/progress`` beside Faust's own
views: ``/table/`` reads table contents (subscribers' full numbers and state), ``/router/``
reveals which worker owns which key and every worker's address, and the one-key view will
read a subscriber's whole picture. Only the counters stay open, for Prometheus and health
checks; every other path needs ``Authorization: Bearer <FORESIGHT_API_TOKEN>``. Without a
configured token those paths are closed (403), never open: forgetting the variable must
not publish the tables. Faust's ``table_route`` forwards the request's headers to the
worker that owns the key, so the token travels with a routed request (every worker of an
app must share it).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from streams.settings import Settings

log = logging.getLogger(__name__)

#: Paths that answer without a token: counters only, no subscriber data.
OPEN_PATHS = frozenset({"/metrics", "/progress", "/health"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_middleware(token: SecretStr | None, open_paths: Iterable[str] = OPEN_PATHS) -> Any:
    """An aiohttp middleware letting ``open_paths`` through and requiring the token elsewhere.

    The token is compared in constant time (``hmac.compare_digest``); an empty token
    counts as none.
    """
    expected = token.get_secret_value().encode() if token is not None else b""
    allowed = frozenset(p.rstrip("/") for p in open_paths)

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.rstrip("/") in allowed:
            return await handler(request)
        if not expected:
            return web.json_response(
                {"error": f"{request.path} reads worker state and needs a token; set "
                 "FORESIGHT_API_TOKEN on the worker and send 'Authorization: Bearer <token>'"},
                status=403)
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                presented.strip().encode("utf-8", "replace"), expected):
            log.info("refused %s %s from %s: missing or wrong bearer token",
                     request.method, request.path, request.remote)
            return web.json_response(
                {"error": "missing or wrong token: send 'Authorization: Bearer "
                 "<FORESIGHT_API_TOKEN>'"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="foresight"'})
        return await handler(request)

    return require_token


def web_application_options(settings: Settings) -> dict[str, Any]:
    """Faust's ``web_application_options`` (keyword arguments of the aiohttp application)
    with the token middleware installed: pass it to the Faust app."""
    return {"middlewares": [token_middleware(settings.api_token)]}
