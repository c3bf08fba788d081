"""The webhook receiver as an ASGI app: what the aggregator calls.

    POST /sms/status    a status callback (MessageSid, MessageStatus, ErrorCode, To, From...)
                        answered 204 once recorded
    POST /sms/inbound   an incoming message (From, To, Body, MessageSid, NumSegments...)
                        answered 200 with an empty TwiML <Response/> once recorded
    GET  /health        200 {"ok": true}

A post is authentic when its `X-Twilio-Signature` is Twilio's HMAC over the URL the aggregator
called (the public URL, SMARTCHAT_PUBLIC_URL, plus the path and query) and its parameters:
otherwise 403 and nothing is recorded. An authentic post is acknowledged only once it is durable
in the inbox (tasks.receiver.inbox, group commit); if that fails the answer is 503 and the
aggregator retries. The store is never opened on a request: with a `store`, a background task
drains the inbox into DuckDB every `drain_every` seconds (tasks.receiver.drain, on a thread),
and once more at shutdown.

Plain ASGI rather than a framework's request objects: every request takes this path, thousands
a second, and the app has three routes.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from pydantic import SecretStr

from smartchat.errors import SmartChatError, WebhookSignatureError
from smartchat.settings import GatewaySettings, StoreSettings
from tasks.gateway.signature import SIGNATURE_HEADER, is_valid_signature
from tasks.receiver.drain import DrainResult, drain_inbox
from tasks.receiver.inbox import Event, InboxWriter, Kind, now_us

log = logging.getLogger("smartchat.receiver")

ROUTES: dict[str, Kind] = {"/sms/status": "status", "/sms/inbound": "inbound"}
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
MAX_BODY = 64 * 1024  # a Twilio webhook is a few kB; 1,600 characters of Body at most
# The background drainer waits at most this long for a store another process holds, then tries
# again a moment later (the final drain at shutdown waits the store's whole lock timeout).
BACKGROUND_LOCK_TIMEOUT = 2.0

_SIGNATURE = SIGNATURE_HEADER.lower().encode()
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_XML = (b"content-type", b"text/xml; charset=utf-8")
_JSON = (b"content-type", b"application/json")

Scope = dict[str, Any]
Receive = Any
Send = Any


def check_signature(
    auth_token: SecretStr, url: str, form: list[tuple[str, str]], signature: str | None
) -> None:
    """WebhookSignatureError unless `signature` is the aggregator's for this URL and form."""
    if not signature:
        raise WebhookSignatureError(f"No {SIGNATURE_HEADER} header on a post to {url}.")
    if not is_valid_signature(auth_token.get_secret_value(), url, form, signature):
        raise WebhookSignatureError(
            f"{SIGNATURE_HEADER} doesn't match a post to {url}: either the aggregator signs with "
            "another auth token than ours, or it called another URL than the public URL we "
            "check against (SMARTCHAT_PUBLIC_URL), or the post is forged."
        )


class ReceiverApp:
    """The receiver for one aggregator account (`gateway`: auth token, public URL) and inbox.

    Without a `store` it only records (a test or a receiver whose inbox another process
    drains). `final_drain` holds the shutdown drain's result once the app has stopped.
    """

    def __init__(
        self,
        gateway: GatewaySettings,
        inbox: Path,
        *,
        store: StoreSettings | None = None,
        drain_every: float = 1.0,
    ) -> None:
        if not drain_every > 0:
            raise ValueError("drain_every is a number of seconds above 0")
        self.auth_token = gateway.auth_token
        self.public_url = gateway.public_url.rstrip("/")
        self.inbox = inbox
        self.store = store
        self.drain_every = drain_every
        self.final_drain: DrainResult | None = None
        self._writer: InboxWriter | None = None
        self._stopping = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    # --- lifespan: the inbox writer and the drainer live as long as the server ---------------

    async def startup(self) -> None:
        self._stopping = asyncio.Event()
        self._writer = InboxWriter(self.inbox)
        await self._writer.start()
        if self.store is not None:
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain_forever(self.store), name="inbox-drainer"
            )

    async def shutdown(self) -> None:
        """Stop draining (after the drain under way), record what is queued, drain once more."""
        self._stopping.set()
        if self._drainer is not None:
            await self._drainer
        if self._writer is not None:
            await self._writer.close()
        if self.store is not None:
            self.final_drain = await self._drain(self.store)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _drain_forever(self, store: StoreSettings) -> None:
        quick = store.model_copy(
            update={"lock_timeout": min(store.lock_timeout, BACKGROUND_LOCK_TIMEOUT)}
        )
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self.drain_every)
            except TimeoutError:
                await self._drain(quick)

    async def _drain(self, store: StoreSettings) -> DrainResult | None:
        """One drain on a thread (DuckDB and polars release the loop); logged, never raised."""
        try:
            result = await asyncio.to_thread(drain_inbox, store, self.inbox)
        except SmartChatError as exc:
            log.error("Draining the inbox failed (it keeps every event): %s", exc.message)
            return None
        except Exception:
            log.exception("Draining the inbox failed (it keeps every event)")
            return None
        if result.busy:
            log.warning("Store busy, %d events wait in the inbox: %s", result.left, result.busy)
        elif result.events or result.waiting:
            log.info("Drained %s", result.summary())
        return result

    # --- requests -----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        kind = ROUTES.get(path)
        if kind is None:
            if path != "/health":
                await _respond(send, 404, b"Not found\n")
            elif method in ("GET", "HEAD"):
                await _respond(send, 200, b'{"ok": true}', _JSON)
            else:
                await _respond(send, 405, b"Method not allowed\n", allow=b"GET, HEAD")
            return
        if method != "POST":
            await _respond(send, 405, b"Method not allowed\n", allow=b"POST")
            return
        body = await _read_body(receive)
        if body is None:  # the client went away, or sent more than a webhook ever is
            await _respond(send, 413, b"Too large\n")
            return
        try:
            form = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            await _respond(send, 400, b"The body is not a UTF-8 form\n")
            return
        url = self.public_url + _raw_path(scope)
        try:
            check_signature(self.auth_token, url, form, _header(scope, _SIGNATURE))
        except WebhookSignatureError as exc:
            client = scope.get("client") or ("?", 0)
            log.warning("Refused a post from %s: %s", client[0], exc.message)
            await _respond(send, 403, b"Invalid X-Twilio-Signature\n")
            return
        try:
            event = Event.from_form(kind, form, now_us())
        except ValueError as exc:
            await _respond(send, 400, f"{exc}\n".encode())
            return
        assert self._writer is not None, "the lifespan starts the inbox writer"
        try:
            await self._writer.record(event)
        except Exception:
            log.exception("Could not record a post in the inbox %s: answered 503", self.inbox)
            await _respond(send, 503, b"Not recorded, try again\n", retry_after=b"1")
            return
        if kind == "inbound":
            await _respond(send, 200, EMPTY_TWIML, _XML)
        else:
            await _respond(send, 204, b"")


def _raw_path(scope: Scope) -> str:
    """The path and query as the client sent them: what the aggregator signed."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"])
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: tuple[bytes, bytes] = _TEXT,
    *,
    allow: bytes | None = None,
    retry_after: bytes | None = None,
) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append(content_type)
    if allow is not None:
        headers.append((b"allow", allow))
    if retry_after is not None:
        headers.append((b"retry-after", retry_after))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
