"""Server commands: `serve` (the webhook receiver) and `sandbox` (the local aggregator).

Both run in the foreground until Ctrl-C. Their servers (uvicorn, the receiver's drain with
DuckDB and polars) are imported inside the commands, so `--help` stays instant; neither imports
Prefect.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from smartchat.cli.errors import UsageError
from smartchat.cli.options import DbOption, settings_of, store_of

if TYPE_CHECKING:
    import socket

    from tasks.receiver import DrainResult

INBOUND_PATH, STATUS_PATH = "/sms/inbound", "/sms/status"


def serve(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            help="The port to listen on. Default: $SMARTCHAT_RECEIVER_PORT, else 8080.",
            min=1,
            max=65535,
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="The address to listen on (0.0.0.0: every interface, e.g. behind a tunnel "
            "or a reverse proxy).",
        ),
    ] = "127.0.0.1",
    inbox: Annotated[
        Path | None,
        typer.Option(
            "--inbox",
            help="The receiver's inbox (SQLite). Default: $SMARTCHAT_INBOX, else "
            "data/inbox.sqlite.",
            metavar="PATH",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Receive the aggregator's status callbacks and replies, and move them into the store.

    Every post needs a valid X-Twilio-Signature (made with $SMARTCHAT_AUTH_TOKEN over
    $SMARTCHAT_PUBLIC_URL plus the path): any other gets 403 and is not recorded. A post is
    acknowledged once it is safe in the inbox, even while another program holds the store; the
    inbox is drained into the store every second, and once more when Ctrl-C stops the server.
    """
    from tasks.receiver import ReceiverApp
    from tasks.receiver.server import check_inbox, run

    settings = settings_of(ctx)
    store = store_of(ctx, db)
    inbox_path = inbox or settings.receiver.inbox
    check_inbox(inbox_path)
    listener = _listen(host, port or settings.receiver.port)
    public = settings.gateway.public_url.rstrip("/")
    console = Console()
    console.print(
        f"Receiving webhooks on [bold]http://{_shown_host(host)}:{listener.getsockname()[1]}"
        f"[/] (inbox {escape(str(inbox_path))}, drained into {escape(str(store.path))} every "
        "second).\nConfigure at the aggregator (HTTP POST, signed with the auth token of "
        f"account {escape(settings.gateway.account_sid)}):\n"
        f"  status callbacks   [bold]{escape(public + STATUS_PATH)}[/]\n"
        f"  incoming messages  [bold]{escape(public + INBOUND_PATH)}[/]\n"
        "Ctrl-C stops it, after a last drain."
    )
    _log_to_stderr()
    app = ReceiverApp(settings.gateway, inbox_path, store=store)
    final = run(app, listener)
    console.print(_stopped(final, inbox_path))


def sandbox(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option("--port", help="The port to listen on.", min=1, max=65535)
    ] = 8765,
    rate: Annotated[
        float,
        typer.Option(
            "--rate",
            help="Messages a second it accepts before answering 429, as Twilio does (0: no limit).",
            min=0,
            metavar="N",
        ),
    ] = 100,
    fail_rate: Annotated[
        float,
        typer.Option(
            "--fail-rate",
            help="The fraction of sends (0 to 1) that get a fault: a 5xx, a dropped connection, "
            "or a message accepted but its answer lost.",
            min=0,
            max=1,
            metavar="F",
        ),
    ] = 0,
    reply_script: Annotated[
        Path | None,
        typer.Option(
            "--reply-script",
            help="A YAML file of who answers what and which numbers fail "
            "(data/sample-reply-script.yaml shows how).",
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a local stand-in for Twilio's Messages API, to send campaigns without an account.

    It accepts the account SID and auth token of $SMARTCHAT_ACCOUNT_SID / $SMARTCHAT_AUTH_TOKEN,
    moves each message to sent and delivered, posts signed status callbacks to each message's
    StatusCallback, and posts the replies of --reply-script to $SMARTCHAT_PUBLIC_URL/sms/inbound
    (run `smartchat serve` to receive them). Listens on 127.0.0.1 only; Ctrl-C stops it.
    """
    from tasks.gateway.sandbox import DEFAULT_SENDER, SandboxConfig
    from tasks.gateway.sandbox import serve as serve_sandbox

    gateway = settings_of(ctx).gateway
    inbound_url = gateway.public_url.rstrip("/") + INBOUND_PATH
    config = SandboxConfig(
        account_sid=gateway.account_sid,
        auth_token=gateway.auth_token.get_secret_value(),
        # A messaging service SID sends from the sandbox's own number.
        sender=gateway.sender if gateway.sender.startswith("+") else DEFAULT_SENDER,
        rate=rate or None,
        fail_rate=fail_rate,
        reply_script=reply_script,
        inbound_url=inbound_url,
    )
    _listen("127.0.0.1", port).close()  # a port in use: one sentence, not uvicorn's log
    Console().print(
        f"Sandbox aggregator on [bold]http://127.0.0.1:{port}[/] for account "
        f"{escape(gateway.account_sid)} ({'no rate limit' if not rate else f'{rate:g}/s'}, "
        f"fail rate {fail_rate:g}); replies go to {escape(inbound_url)}. Ctrl-C stops it."
    )
    try:
        serve_sandbox(config, port=port)
    except KeyboardInterrupt:
        pass  # uvicorn raises Ctrl-C again once it has stopped


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(sandbox)


def _listen(host: str, port: int) -> socket.socket:
    from tasks.receiver.server import listen

    try:
        return listen(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"Port {port} on {host} is already in use by another program (another "
                "`smartchat serve` or `sandbox`?): stop it, or choose another port with --port."
            ) from None
        raise UsageError(f"Can't listen on {host} port {port}: {exc.strerror or exc}.") from None


def _shown_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _log_to_stderr() -> None:
    """The receiver's log (refused posts, drains, a busy store) on stderr, with the time."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("smartchat").setLevel(logging.INFO)


def _stopped(final: DrainResult | None, inbox: Path) -> str:
    if final is None:
        return (
            f"Stopped. The last drain failed (see above): the inbox {escape(str(inbox))} keeps "
            "every event for the next `smartchat serve`."
        )
    if final.busy:
        return (
            f"Stopped. The store was busy: the inbox {escape(str(inbox))} keeps {final.left:,} "
            "events for the next `smartchat serve`."
        )
    return f"Stopped. Last drain: {escape(final.summary())}."
