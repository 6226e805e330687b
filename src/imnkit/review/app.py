"""The review page's ASGI app (Starlette): the page, its assets, and a small JSON API.

Every request passes :class:`Guard` first:

- the Host header must be exactly ``127.0.0.1:PORT`` (a page elsewhere that rebinds its own name
  to 127.0.0.1 sends its own name: refused, 403);
- the one-time token must come with it, compared in constant time: in the ``X-Imnkit-Token``
  header, or for a GET in the ``token`` query parameter (the printed URL, and nothing else, carries
  it there); a request without it is refused (403);
- a state change is a POST with the token in the header and a JSON body: a form posted by another
  site can set neither;
- every answer says ``Cache-Control: no-store`` (the images are faces) and forbids framing and
  sniffing; the page loads nothing from elsewhere (Content-Security-Policy).

Photos are addressed by their index; the assets are a fixed list read from the package: no path
from the client ever reaches the file system.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from importlib import resources
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import UsageError
from .session import ReviewSession, parse_edit

TOKEN_HEADER = "x-imnkit-token"
ASSETS = {"review.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
     b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
]
MAX_BODY = 1 << 20  # an edit is a few hundred bytes


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Guard:
    """ASGI middleware: Host, token and method checks before the app; security headers after."""

    def __init__(self, app, *, token: str, port: int):
        self.app = app
        self.token = token.encode("ascii")
        self.host = f"127.0.0.1:{port}".encode("ascii")

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":  # no websockets
            return None
        reason = self.refusal(scope)
        if reason is not None:
            return await _send_plain(send, 403, reason)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        return await self.app(scope, receive, send_with_headers)

    def refusal(self, scope) -> str | None:
        """Why a request is refused, or None."""
        headers = dict(scope.get("headers") or [])
        if headers.get(b"host") != self.host:
            return "forbidden: this page answers only at its 127.0.0.1 address"
        method = scope["method"]
        given = headers.get(TOKEN_HEADER.encode("ascii"))
        if given is None and method == "GET":
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
            given = values[0].encode("latin-1", "replace") if len(values) == 1 else None
        if given is None or not secrets.compare_digest(given, self.token):
            return "forbidden: missing or wrong token (use the URL imnkit review printed)"
        if method not in ("GET", "POST"):
            return "forbidden: only GET and POST"
        if method == "POST":
            if headers.get(TOKEN_HEADER.encode("ascii")) is None:
                return "forbidden: a change needs the token in its header"
            if not headers.get(b"content-type", b"").startswith(b"application/json"):
                return "forbidden: a change is a JSON request"
            origin = headers.get(b"origin")
            if origin is not None and origin != b"http://" + self.host:
                return "forbidden: a change from another origin"
        return None


async def _send_plain(send, status: int, text: str) -> None:
    body = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


def build_app(session: ReviewSession, *, token: str, port: int):
    """The review app for ``session``, answering at 127.0.0.1:``port`` to requests with ``token``."""

    def photo_or_404(request: Request):
        try:
            return session.photo(request.path_params["index"])
        except KeyError:
            return None

    async def page(request: Request) -> Response:
        html = _asset("index.html").decode("utf-8").replace("{{TOKEN}}", token)
        return HTMLResponse(html)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return PlainTextResponse("not found", status_code=404)
        return Response(_asset(name), media_type=ASSETS[name])

    async def photos(request: Request) -> Response:
        return JSONResponse(session.listing())

    async def progress(request: Request) -> Response:
        return JSONResponse(session.progress())

    async def image(request: Request) -> Response:
        if photo_or_404(request) is None:
            return PlainTextResponse("not found", status_code=404)
        data = await asyncio.to_thread(session.display_image, request.path_params["index"])
        return Response(data, media_type="image/jpeg")

    async def result(request: Request) -> Response:
        if photo_or_404(request) is None:
            return PlainTextResponse("not found", status_code=404)
        data = await asyncio.to_thread(session.result_image, request.path_params["index"])
        if data is None:
            return PlainTextResponse("not approved yet", status_code=404)
        return Response(data, media_type="image/jpeg")

    async def preview(request: Request) -> Response:
        photo = photo_or_404(request)
        if photo is None:
            return PlainTextResponse("not found", status_code=404)
        try:
            edit = parse_edit(await _json(request), photo)
            data = await asyncio.wrap_future(session.preview(photo.index, edit))
        except UsageError as err:
            return JSONResponse({"error": err.message}, status_code=400)
        except Exception as err:  # noqa: BLE001  an ImnkitError from the recipe, or a bug: say which
            message = getattr(err, "message", None) or f"unexpected {type(err).__name__}"
            return JSONResponse({"error": message}, status_code=500)
        return Response(data, media_type="image/jpeg")

    async def approve(request: Request) -> Response:
        try:
            body = await _json(request)
            if not isinstance(body, dict) or set(body) != {"photos"} or not isinstance(body["photos"], list):
                raise UsageError("an approval is {photos: [{index, keep, add}, ...]}")
            edits = {}
            for item in body["photos"]:
                if not isinstance(item, dict) or not isinstance(item.get("index"), int):
                    raise UsageError("each approved photo is {index, keep, add}")
                try:
                    photo = session.photo(item["index"])
                except KeyError:
                    raise UsageError(f"no photo {item['index']}") from None
                edits[photo.index] = parse_edit({k: v for k, v in item.items() if k != "index"}, photo)
        except UsageError as err:
            return JSONResponse({"error": err.message}, status_code=400)
        return JSONResponse({"queued": session.approve(edits)})

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/static/{name}", asset, methods=["GET"]),
        Route("/api/photos", photos, methods=["GET"]),
        Route("/api/progress", progress, methods=["GET"]),
        Route("/api/photos/{index:int}/image", image, methods=["GET"]),
        Route("/api/photos/{index:int}/result", result, methods=["GET"]),
        Route("/api/photos/{index:int}/preview", preview, methods=["POST"]),
        Route("/api/approve", approve, methods=["POST"]),
    ]
    return Guard(Starlette(routes=routes), token=token, port=port)


async def _json(request: Request):
    body = await request.body()
    if len(body) > MAX_BODY:
        raise UsageError("the request is too large")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UsageError("the request is not JSON") from None


def _asset(name: str) -> bytes:
    return resources.files("imnkit.review").joinpath("static", name).read_bytes()
