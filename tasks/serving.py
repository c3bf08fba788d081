"""Serving an ASGI app with uvicorn: what the sandbox aggregator and the webhook receiver share.

uvloop and httptools double the requests a second a server answers here (../shared/MEASURED.md);
both are optional, so the defaults stand in when they are missing. Keep-alive lasts 60 s: with
uvicorn's 5 s, idle pooled connections of a sender or of Twilio's callbacks broke mid-run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from smartchat.errors import SmartChatError


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (0: a free port); OSError if it can't (a port in use)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a restarted server reuse its port at once (TIME_WAIT), never a port in use.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except BaseException:
        listener.close()
        raise
    return listener


def uvicorn_config(app: Any, host: str, port: int, *, quiet: bool) -> Any:
    """uvicorn's settings for our servers; `quiet`: only errors reach the log."""
    import uvicorn

    fast_loop = importlib.util.find_spec("uvloop") is not None
    fast_http = importlib.util.find_spec("httptools") is not None
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if fast_loop else "asyncio",
        http="httptools" if fast_http else "h11",
        lifespan="on",
        timeout_keep_alive=60,
        timeout_graceful_shutdown=2,
        access_log=False,
        # The CLI sets up logging; uvicorn only says what goes wrong.
        log_config=None,
        log_level="error" if quiet else "warning",
    )


@contextlib.contextmanager
def serving_in_thread(app: Any, listener: socket.socket, what: str) -> Iterator[str]:
    """`app` served on `listener` by a background thread for the block; yields its base URL.

    Stopping lets requests under way finish (2 s at most) and runs the app's shutdown.
    """
    import uvicorn

    host, port = listener.getsockname()[:2]
    server = uvicorn.Server(uvicorn_config(app, host, port, quiet=True))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name=what, daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SmartChatError(f"The {what} did not start (see the log above).")
            time.sleep(0.005)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()
