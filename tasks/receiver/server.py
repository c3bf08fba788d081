"""Running the receiver: on a socket of its own (`run`, for `smartchat serve`), or in the
background for tests and benchmarks (`running_receiver`).

uvicorn with uvloop and httptools when they are installed (MEASURED.md: twice the requests a
second of asyncio + h11). The socket is bound before the server starts, so a port in use is an
`OSError` the caller can explain in a sentence instead of a server log.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from smartchat.errors import OutputFileError, SmartChatError
from tasks.receiver.app import ReceiverApp
from tasks.receiver.drain import DrainResult
from tasks.receiver.inbox import open_inbox
from tasks.serving import listen, serving_in_thread, uvicorn_config

__all__ = ["check_inbox", "listen", "run", "running_receiver"]


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
    server = uvicorn.Server(uvicorn_config(app, host, port, quiet=False))

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
    check_inbox(app.inbox)
    with serving_in_thread(app, listener or listen("127.0.0.1", 0), "receiver") as url:
        yield url
