"""Bind the review app to a free loopback port and serve it with uvicorn until interrupted."""

from __future__ import annotations

import socket

from ..errors import UsageError

LOOPBACK = "127.0.0.1"


def require_review_extra() -> None:
    """UsageError (exit 2) with the install hint when Starlette or uvicorn is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError("imnkit review needs Starlette and uvicorn",
                         hint='pip install "imnkit[review]"') from None


def loopback_socket() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 at a port the system picks (free, no race to find one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(16)
    sock.set_inheritable(True)
    return sock


def page_url(port: int, token: str) -> str:
    return f"http://{LOOPBACK}:{port}/?token={token}"


def serve(app, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until Ctrl+C; no access log (the page's URL carries the token)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
