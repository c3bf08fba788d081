"""Running the receiver: on a socket of its own (`run`, for `smartchat serve`), or in the
background for tests and benchmarks (`running_receiver`).

uvicorn with uvloop and httptools when they are installed (MEASURED.md: twice the requests a
second of asyncio + h11). The socket is bound before the server starts, so a port in use is an
`OSError` the caller can explain in a sentence instead of a server log.
"""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from smartchat.errors import OutputFileError, SmartChatError
from tasks.receiver.app import ReceiverApp
from tasks.receiver.drain import DrainResult
from tasks.receiver.inbox import open_inbox


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


def check_inbox(path: Path) -> None:
    """Create the inbox (or check it opens) before serving: OutputFileError if it can't be."""
    try:
        open_inbox(path).close()
    except (OSError, sqlite3.Error) as exc:
        raise OutputFileError(
            f"The receiver's inbox {path} can't be created or written ({exc}): point "
            "--inbox or SMARTCHAT_INBOX at a file in a folder you can write.",
            path,
        ) from None


def run(app: ReceiverApp, listener: socket.socket) -> DrainResult | None:
    """Serve on `listener` until Ctrl-C or SIGTERM; returns the final drain's result.

    On a signal the server stops accepting, lets requests under way finish (2 s at most: one
    not acknowledged by then is retried by the aggregator), records what is queued and drains
    the inbox once more. A second Ctrl-C stops at once (the inbox keeps every event). Call
    `check_inbox` first: an inbox that can't be written otherwise fails the server's start.
    """
    import uvicorn

    host, port = listener.getsockname()[:2]
    server = uvicorn.Server(_config(app, host, port))

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    # uvicorn handles SIGTERM while it serves, then raises it again once stopped: this handler
    # makes that a normal return (the final drain already ran), not a kill.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main else None
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        pass  # uvicorn raises Ctrl-C again after its graceful shutdown
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        listener.close()
    if not server.started:
        raise SmartChatError("The receiver did not start (see the log above).")
    return app.final_drain


@contextlib.contextmanager
def running_receiver(app: ReceiverApp, listener: socket.socket | None = None) -> Iterator[str]:
    """`app` serving in a background thread for the `with` block; yields its base URL.

    On a free loopback port unless `listener` is given (bind one with `listen` first when the
    app's public URL must name its port). Stopping runs the app's shutdown: its final drain.
    """
    import uvicorn

    check_inbox(app.inbox)
    listener = listener or listen("127.0.0.1", 0)
    host, port = listener.getsockname()[:2]
    server = uvicorn.Server(_config(app, host, port, quiet=True))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="receiver", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SmartChatError("The receiver did not start (see the log above).")
            time.sleep(0.005)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()


def _config(app: ReceiverApp, host: str, port: int, *, quiet: bool = False) -> Any:
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
        # Twilio's callbacks reuse connections; 5 s (uvicorn's default) broke idle ones mid-run.
        timeout_keep_alive=60,
        timeout_graceful_shutdown=2,
        access_log=False,
        # The CLI sets up logging (smartchat.receiver); uvicorn only says what goes wrong.
        log_config=None,
        log_level="error" if quiet else "warning",
    )
