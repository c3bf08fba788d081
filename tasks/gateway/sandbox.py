"""A local stand-in for Twilio's Programmable Messaging API, faithful enough to test a sender on.

What it answers, as Twilio does (2010-04-01 Messages resource, JSON and error codes):

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json         send: 201 and the message
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json         list: To, From, DateSent(<,>)
    GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json   fetch one (404, code 20404)

and for tests and benchmarks (no auth: it only listens on loopback):

    GET  /sandbox/messages      every message, outbound and inbound, with its current status
                                (and `created_at`, epoch seconds with microseconds, for rates)
    GET  /sandbox/deliveries    every status callback and inbound webhook post and its outcome
    GET  /sandbox/faults        the fault settings and what was injected so far
    POST /sandbox/faults        change them: {"fail_rate", "kinds", "slow_seconds", "burst_429",
                                "seed", "next": 3 or ["drop-accepted", ...]} (any subset)
    POST /sandbox/reset         forget every message, opt-out, delivery and fault counter

The official `twilio` client works against it once `client.api.base_url` is the sandbox's URL.

Status. A message is created `queued` (`accepted`, with no sender yet, when it names only a
MessagingServiceSid), `sent` after `sent_delay` seconds and `delivered` after `delivered_delay`
more, or `undelivered` (after `sent`) / `failed` (instead of `sent`) with an error code when its
number matches a fail rule. GET shows the status the clock has reached; a `StatusCallback` gets
a signed POST for each change after the initial status, like Twilio (which never posts the
initial status; `callback_initial_status=True` posts it too). Posts to one message's callback
are made in order, one after the other.

Inbound. A reply script (tasks.gateway.reply_script) says who answers what; each answer is
stored as an inbound message and posted to `inbound_url` as Twilio's incoming-message webhook,
signed. A reply of STOP (or another of Twilio's opt-out words) makes later sends to that number
fail with 21610, until it sends START, as Twilio's Advanced Opt-Out does.

Callbacks and webhooks go out from a background queue: a receiver that is down or answers 5xx
or 429 is retried `callback_attempts` times with doubling waits; the API never waits on them.

Faults. With `fail_rate` > 0 that fraction of send requests (after auth and the rate limit)
gets a fault, picked at random among `fault_kinds`. Whether the message was accepted, i.e.
stored, and will be sent, have callbacks and show in the list API, is part of each kind:

    kind            answer                          accepted?
    5xx             500 or 503, Twilio error JSON   no
    drop            connection closed, no answer    no
    429             429 + Retry-After, then the     no
                    next `burst_429 - 1` requests
                    are refused too
    slow            201 after `slow_seconds`        yes, at once (the list API shows it
                                                    before the answer comes)
    5xx-accepted    500, Twilio error JSON          yes: a sender that retries blindly
                                                    sends twice
    drop-accepted   connection closed, no answer    yes: the answer was lost; the sender
                                                    must look for it in the list API

A request that would be refused anyway (bad number, no body) is answered with its 400 even
under an accepted-kind fault. Only sends get faults: the list and fetch calls a sender uses to
reconcile always answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import dataclasses
import functools
import hmac
import math
import os
import pickle
import random
import re
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode

import orjson
import phonenumbers
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from smartchat.errors import SmartChatError
from tasks.gateway.reply_script import (
    FailRule,
    Reply,
    ReplyPlayer,
    ReplyScript,
    fail_rule_for,
    fail_rules_from_patterns,
    fold,
    load_reply_script,
)
from tasks.gateway.signature import SIGNATURE_HEADER, twilio_signature
from tasks.serving import listen, serving_in_thread, uvicorn_config
from tasks.sms import segments

DEFAULT_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEFAULT_AUTH_TOKEN = "sandbox-auth-token"
DEFAULT_SENDER = "+15005550006"
API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600

FAULT_KINDS = ("5xx", "drop", "429", "slow", "5xx-accepted", "drop-accepted")
ACCEPTED_FAULTS = frozenset({"slow", "5xx-accepted", "drop-accepted"})

# Twilio's Advanced Opt-Out keywords (the whole message, any case).
OPT_OUT_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout"})
OPT_IN_WORDS = frozenset({"start", "unstop", "yes"})

ERROR_MESSAGES = {
    30001: "Queue overflow",
    30002: "Account suspended",
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
}


@dataclass(frozen=True)
class SandboxConfig:
    """Everything a sandbox run needs; the defaults match smartchat.settings.GatewaySettings."""

    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = field(default=DEFAULT_AUTH_TOKEN, repr=False)
    sender: str = DEFAULT_SENDER  # the From of messages sent with only a MessagingServiceSid
    rate: float | None = None  # messages per second before 429s; None or 0: unlimited
    burst: float | None = None  # token-bucket depth; default one second's worth
    fail_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("5xx", "drop", "drop-accepted")
    slow_seconds: float = 2.0
    burst_429: int = 5
    fault_seed: int | None = None
    fail_numbers: tuple[str, ...] = ()  # "+52155*" style patterns: undelivered, error 30003
    inbound_url: str | None = None
    reply_script: Path | str | ReplyScript | None = None
    sent_delay: float = 0.5
    delivered_delay: float = 1.0
    callback_initial_status: bool = False
    callback_attempts: int = 4
    callback_backoff: float = 0.5
    callback_timeout: float = 5.0
    callback_concurrency: int = 32
    honor_stop: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not re.fullmatch(r"AC[0-9a-fA-F]{32}", self.account_sid):
            problems.append("account_sid is AC followed by 32 hexadecimal digits")
        if not self.auth_token:
            problems.append("auth_token can't be empty")
        for name in ("rate", "burst"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                problems.append(f"{name} is a number of messages per second, 0 or more")
        if not 0 <= self.fail_rate <= 1:
            problems.append("fail_rate is a fraction from 0 to 1")
        unknown = [k for k in self.fault_kinds if k not in FAULT_KINDS]
        if unknown or (self.fail_rate > 0 and not self.fault_kinds):
            problems.append(f"fault_kinds are among {', '.join(FAULT_KINDS)}")
        for name in ("slow_seconds", "sent_delay", "delivered_delay", "callback_backoff"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                problems.append(f"{name} is a number of seconds, 0 or more")
        if not self.callback_timeout > 0:
            problems.append("callback_timeout is a number of seconds above 0")
        for name in ("burst_429", "callback_attempts", "callback_concurrency"):
            if getattr(self, name) < 1:
                problems.append(f"{name} is a whole number of 1 or more")
        if self.inbound_url is not None and not self.inbound_url.startswith(
            ("http://", "https://")
        ):
            problems.append("inbound_url is an http:// or https:// URL")
        if problems:
            raise SmartChatError("Sandbox settings: " + "; ".join(problems) + ".")
        fail_rules_from_patterns(self.fail_numbers, "Sandbox settings, fail_numbers")


# --- Twilio's answers ---------------------------------------------------------------------------


class _TwilioError(Exception):
    """An error answer in Twilio's JSON shape."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = orjson.dumps(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            }
        )


_JSON = (b"content-type", b"application/json; charset=utf-8")
_AUTH_ERROR = _TwilioError(401, 20003, "Authenticate")
_AUTH_HEADERS = [(b"www-authenticate", b'Basic realm="Twilio API"')]
_RATE_ERROR = _TwilioError(429, 20429, "Too Many Requests")
_SERVER_ERRORS = (
    _TwilioError(500, 20500, "An internal server error has occurred"),
    _TwilioError(503, 20503, "Service Unavailable"),
)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _json(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _error(err: _TwilioError) -> Response:
    return Response(err.body, status_code=err.status, media_type="application/json")


# --- messages -----------------------------------------------------------------------------------


class _Step(NamedTuple):
    offset: float  # seconds after the message was created
    status: str
    error_code: int | None = None


class _Message:
    __slots__ = (
        "seq",
        "sid",
        "direction",
        "from_",
        "to",
        "body",
        "segments",
        "service_sid",
        "callback",
        "created",
        "timeline",
        "fault",
    )

    def __init__(
        self,
        direction: str,
        from_: str,
        to: str,
        body: str,
        service_sid: str | None,
        callback: str | None,
        timeline: tuple[_Step, ...],
    ) -> None:
        self.seq = 0
        self.sid = "SM" + os.urandom(16).hex()
        self.direction = direction
        self.from_ = from_
        self.to = to
        self.body = body
        self.segments = segments(body)
        self.service_sid = service_sid
        self.callback = callback
        self.created = time.time()
        self.timeline = timeline
        self.fault: str | None = None

    def step_at(self, now: float) -> _Step:
        elapsed = now - self.created
        current = self.timeline[0]
        for step in self.timeline[1:]:
            if step.offset > elapsed:
                break
            current = step
        return current

    def sent_at(self, now: float) -> float | None:
        if self.direction == "inbound":
            return self.created
        for step in self.timeline:
            if step.status == "sent":
                at = self.created + step.offset
                return at if at <= now else None
        return None


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.lru_cache(maxsize=4096)
def _rfc2822(second: int) -> str:
    # By hand: strftime's day and month names follow the locale; Twilio's are always English.
    t = time.gmtime(second)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


_E164 = re.compile(r"\+[1-9]\d{1,14}")


@functools.lru_cache(maxsize=262_144)
def _is_valid_number(number: str) -> bool:
    if not _E164.fullmatch(number):
        return False
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False
    # Canonical form only: phonenumbers forgives a trunk prefix (+4407...) that Twilio would not.
    canonical = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return canonical == number and phonenumbers.is_valid_number(parsed)


def _country(number: str) -> str:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(number, None)) or ""
    except phonenumbers.NumberParseException:
        return ""


class _Store:
    """In memory, in creation order, with the indexes the list API filters on."""

    def __init__(self) -> None:
        self.messages: list[_Message] = []
        self.by_sid: dict[str, _Message] = {}
        self.by_to: dict[str, list[_Message]] = {}
        self.by_from: dict[str, list[_Message]] = {}

    def add(self, message: _Message) -> None:
        message.seq = len(self.messages)
        self.messages.append(message)
        self.by_sid[message.sid] = message
        self.by_to.setdefault(message.to, []).append(message)
        self.by_from.setdefault(message.from_, []).append(message)


# --- rate limit and faults ----------------------------------------------------------------------


class _TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.capacity = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 if a message may go now, else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class _Faults:
    def __init__(self, config: SandboxConfig) -> None:
        self.fail_rate = config.fail_rate
        self.kinds = config.fault_kinds
        self.slow_seconds = config.slow_seconds
        self.burst_429 = config.burst_429
        self.random = random.Random(config.fault_seed)
        self.forced: deque[str] = deque()
        self.burst_left = 0
        self.injected: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self.accepted: list[dict[str, str]] = []

    @property
    def active(self) -> bool:
        return self.fail_rate > 0 or bool(self.forced) or self.burst_left > 0

    def draw(self) -> str | None:
        if self.burst_left > 0:
            self.burst_left -= 1
            kind: str | None = "429"
        elif self.forced:
            kind = self.forced.popleft()
        elif self.fail_rate > 0 and self.random.random() < self.fail_rate:
            kind = self.random.choice(self.kinds)
            if kind == "429":
                self.burst_left = self.burst_429 - 1
        else:
            kind = None
        if kind is not None and kind not in ACCEPTED_FAULTS:
            self.injected[kind] += 1  # accepted kinds count once the message is stored
        return kind

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a POST /sandbox/faults body; _TwilioError(400) naming the bad field."""
        unknown = set(changes) - {"fail_rate", "kinds", "slow_seconds", "burst_429", "seed", "next"}
        if unknown:
            raise _TwilioError(400, 20001, f"Unknown fault settings: {', '.join(sorted(unknown))}")
        kinds = changes.get("kinds", self.kinds)
        if not isinstance(kinds, list | tuple) or any(k not in FAULT_KINDS for k in kinds):
            raise _TwilioError(400, 20001, f"kinds are among {', '.join(FAULT_KINDS)}")
        rate = changes.get("fail_rate", self.fail_rate)
        if not isinstance(rate, int | float) or not 0 <= rate <= 1 or (rate and not kinds):
            raise _TwilioError(400, 20001, "fail_rate is a fraction from 0 to 1 (with kinds)")
        slow = changes.get("slow_seconds", self.slow_seconds)
        if not isinstance(slow, int | float) or not 0 <= slow < 3600:
            raise _TwilioError(400, 20001, "slow_seconds is a number of seconds, 0 or more")
        burst = changes.get("burst_429", self.burst_429)
        if not isinstance(burst, int) or burst < 1:
            raise _TwilioError(400, 20001, "burst_429 is a whole number of 1 or more")
        forced = changes.get("next", [])
        if isinstance(forced, int) and forced >= 0 and kinds:
            forced = [self.random.choice(kinds) for _ in range(forced)]
        if not isinstance(forced, list) or any(k not in FAULT_KINDS for k in forced):
            raise _TwilioError(400, 20001, "next is a count, or a list of fault kinds")
        self.kinds, self.fail_rate, self.slow_seconds, self.burst_429 = (
            tuple(kinds),
            float(rate),
            float(slow),
            burst,
        )
        if "seed" in changes:
            self.random.seed(changes["seed"])
        self.forced.extend(forced)

    def report(self) -> dict[str, Any]:
        return {
            "fail_rate": self.fail_rate,
            "kinds": list(self.kinds),
            "slow_seconds": self.slow_seconds,
            "burst_429": self.burst_429,
            "next": list(self.forced),
            "accepted_kinds": sorted(ACCEPTED_FAULTS),
            "injected": self.injected,
            "accepted": self.accepted,
        }


# --- callbacks and inbound webhooks -------------------------------------------------------------


@dataclass
class _Post:
    """One signed webhook post, retried as a unit; `then` runs once it is done (or given up)."""

    kind: str  # "status" or "inbound"
    url: str
    params: list[tuple[str, str]]
    sid: str
    label: str  # the status posted, or "received"
    epoch: int
    token: str = field(default_factory=lambda: os.urandom(16).hex())
    attempts: int = 0
    then: Callable[[], None] | None = None


class _Dispatcher:
    """Posts callbacks from a queue with a fixed pool of workers, so the API never waits."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.epoch = 0
        self.log: deque[dict[str, Any]] = deque(maxlen=200_000)
        self._queue: asyncio.Queue[_Post] | None = None
        self._session: Any = None
        self._workers: list[asyncio.Task[None]] = []

    def submit(self, post: _Post) -> None:
        if self._queue is None:
            self._start()
        assert self._queue is not None
        self._queue.put_nowait(post)

    def _start(self) -> None:
        import aiohttp  # the API alone doesn't need it; only a sandbox that posts back does

        self._queue = asyncio.Queue()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.callback_concurrency),
            timeout=aiohttp.ClientTimeout(total=self.config.callback_timeout),
            headers={"User-Agent": "TwilioProxy/1.1"},
        )
        self._workers = [
            asyncio.get_running_loop().create_task(self._work())
            for _ in range(self.config.callback_concurrency)
        ]

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            post = await self._queue.get()
            if post.epoch == self.epoch:
                await self._attempt(post)

    async def _attempt(self, post: _Post) -> None:
        import aiohttp

        post.attempts += 1
        body = urlencode(post.params)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: twilio_signature(self.config.auth_token, post.url, post.params),
            # The same token on every retry: how a receiver can tell a retry from a new event.
            "I-Twilio-Idempotency-Token": post.token,
        }
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(post.url, data=body, headers=headers) as answer:
                await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        retryable = status is None or status >= 500 or status == 429
        if retryable and post.attempts < self.config.callback_attempts:
            wait = self.config.callback_backoff * 2 ** (post.attempts - 1)
            asyncio.get_running_loop().call_later(wait, self._retry, post)
            return
        self.log.append(
            {
                "kind": post.kind,
                "url": post.url,
                "sid": post.sid,
                "status": post.label,
                "attempts": post.attempts,
                "http_status": status,
                "ok": status is not None and 200 <= status < 300,
                "error": error,
            }
        )
        if post.then is not None:
            post.then()

    def _retry(self, post: _Post) -> None:
        if post.epoch == self.epoch and self._queue is not None:
            self._queue.put_nowait(post)


# --- the sandbox --------------------------------------------------------------------------------


class _Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        script = config.reply_script
        if isinstance(script, str | Path):
            script = load_reply_script(script)
        self.script = script or ReplyScript()
        self.fail_rules: tuple[FailRule, ...] = self.script.fail + fail_rules_from_patterns(
            config.fail_numbers, "fail_numbers"
        )
        self.base = f"/{API_VERSION}/Accounts/{config.account_sid}"
        self.create_path = f"{self.base}/Messages.json"
        self._credentials = f"{config.account_sid}:{config.auth_token}".encode()
        self._auth = b"Basic " + base64.b64encode(self._credentials)
        self.dispatcher = _Dispatcher(config)
        self._timelines: dict[tuple[bool, FailRule | None], tuple[_Step, ...]] = {}
        self.reset()

    def reset(self) -> None:
        self.store = _Store()
        self.player = ReplyPlayer(self.script) if self.script.replies else None
        self.unsolicited_due = bool(self.script.unsolicited)
        self.opted_out: set[str] = set()
        self.faults = _Faults(self.config)
        rate = self.config.rate
        self.limiter = _TokenBucket(rate, self.config.burst or max(1.0, rate)) if rate else None
        self.dispatcher.epoch += 1  # scheduled callbacks of the old run are dropped when due
        self.dispatcher.log.clear()

    # The send request is the hot path (thousands a second): plain ASGI, no Request object.
    async def handle_create(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.authorized(scope["headers"]):
            await _respond(send, 401, _AUTH_ERROR.body, _AUTH_HEADERS)
            return
        if self.limiter is not None and (wait := self.limiter.take()):
            await self._refuse_rate(send, wait)
            return
        fault = self.faults.draw() if self.faults.active else None
        if fault is not None and fault not in ACCEPTED_FAULTS:
            await self._fault_before_storing(fault, send)
            return
        body = await _read_body(receive)
        if body is None:
            return
        try:
            message = self.create(dict(parse_qsl(body.decode("utf-8", "replace"), True)))
        except _TwilioError as err:
            await _respond(send, err.status, err.body)
            return
        payload = orjson.dumps(self.resource(message, initial=True))
        if fault is None:
            await _respond(send, 201, payload)
            return
        message.fault = fault
        self.faults.injected[fault] += 1
        self.faults.accepted.append({"kind": fault, "sid": message.sid})
        if fault == "slow":
            await asyncio.sleep(self.faults.slow_seconds)
            await _respond(send, 201, payload)
        elif fault == "5xx-accepted":
            await _respond(send, 500, _SERVER_ERRORS[0].body)
        else:
            await _drop(send)

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        for name, value in headers:
            if name == b"authorization":
                if hmac.compare_digest(value, self._auth):
                    return True
                return self._authorized_slowly(value)
        return False

    def _authorized_slowly(self, value: bytes) -> bool:
        scheme, _, encoded = value.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(decoded, self._credentials)

    async def _refuse_rate(self, send: Send, wait: float) -> None:
        retry_after = str(max(1, math.ceil(wait))).encode()
        await _respond(send, 429, _RATE_ERROR.body, [(b"retry-after", retry_after)])

    async def _fault_before_storing(self, fault: str, send: Send) -> None:
        if fault == "429":
            await self._refuse_rate(send, 1.0)
        elif fault == "5xx":
            err = self.faults.random.choice(_SERVER_ERRORS)
            headers = [(b"retry-after", b"1")] if err.status == 503 else None
            await _respond(send, err.status, err.body, headers)
        else:
            await _drop(send)

    def create(self, form: Mapping[str, str]) -> _Message:
        to = form.get("To", "")
        if not to:
            raise _TwilioError(400, 21604, "A 'To' phone number is required.")
        if not _is_valid_number(to):
            raise _TwilioError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        service = form.get("MessagingServiceSid") or None
        if service is not None and not re.fullmatch(r"MG[0-9a-fA-F]{32}", service):
            raise _TwilioError(400, 21705, "The Messaging Service Sid is invalid.")
        sender = form.get("From") or None
        if sender is None and service is None:
            raise _TwilioError(400, 21603, "A 'From' phone number is required.")
        body = form.get("Body", "")
        if not body:
            raise _TwilioError(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            raise _TwilioError(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        callback = form.get("StatusCallback") or None
        if callback is not None and not callback.startswith(("http://", "https://")):
            raise _TwilioError(400, 21609, "The StatusCallback URL is not a valid URL.")
        if to in self.opted_out:
            raise _TwilioError(400, 21610, "Attempt to send to unsubscribed recipient")
        rule = fail_rule_for(self.fail_rules, to) if self.fail_rules else None
        timeline = self._timeline(sender is None, rule)
        message = _Message(
            "outbound-api",
            sender or self.config.sender,
            to,
            body,
            service,
            callback,
            timeline,
        )
        self.store.add(message)
        self._schedule(message, rule is None)
        return message

    def _timeline(self, unassigned: bool, rule: FailRule | None) -> tuple[_Step, ...]:
        key = (unassigned, rule)
        if key not in self._timelines:
            sent = self.config.sent_delay
            done = sent + self.config.delivered_delay
            start = [_Step(0.0, "accepted")] if unassigned else []
            start.append(_Step(0.0, "queued"))
            if rule is None:
                end = [_Step(sent, "sent"), _Step(done, "delivered")]
            elif rule.status == "failed":
                end = [_Step(sent, "failed", rule.error_code)]
            else:
                end = [_Step(sent, "sent"), _Step(done, "undelivered", rule.error_code)]
            self._timelines[key] = (*start, *end)
        return self._timelines[key]

    def _schedule(self, message: _Message, delivered: bool) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        if message.callback is not None:
            first = 0 if self.config.callback_initial_status else 1
            self._schedule_status(message, first, t0)
        if delivered and self.player is not None:
            reply = self.player.on_delivered(message.to, message.body)
            if reply is not None:
                due = t0 + message.timeline[-1].offset + reply.delay
                loop.call_at(due, self._reply, message, reply, self.dispatcher.epoch)
        if self.unsolicited_due:  # once per run, timed from its first message
            self.unsolicited_due = False
            for text in self.script.unsolicited:
                loop.call_at(
                    t0 + text.delay,
                    self._inbound,
                    text.number,
                    message.from_,
                    text.body,
                    None,
                    self.dispatcher.epoch,
                )

    def _schedule_status(self, message: _Message, index: int, t0: float) -> None:
        if index >= len(message.timeline):
            return
        loop = asyncio.get_running_loop()
        due = max(t0 + message.timeline[index].offset, loop.time())
        loop.call_at(due, self._post_status, message, index, t0, self.dispatcher.epoch)

    def _post_status(self, message: _Message, index: int, t0: float, epoch: int) -> None:
        if epoch != self.dispatcher.epoch or message.callback is None:
            return
        step = message.timeline[index]
        params = [
            ("SmsSid", message.sid),
            ("SmsStatus", step.status),
            ("MessageStatus", step.status),
            ("To", message.to),
            ("MessageSid", message.sid),
            ("AccountSid", self.config.account_sid),
            ("ApiVersion", API_VERSION),
        ]
        if step.status != "accepted":
            params.append(("From", message.from_))
        if message.service_sid is not None:
            params.append(("MessagingServiceSid", message.service_sid))
        if step.error_code is not None:
            params.append(("ErrorCode", str(step.error_code)))
        if step.status in ("delivered", "undelivered"):
            done = time.gmtime(message.created + step.offset)
            params.append(("RawDlrDoneDate", time.strftime("%y%m%d%H%M", done)))
        self.dispatcher.submit(
            _Post(
                "status",
                message.callback,
                params,
                message.sid,
                step.status,
                epoch,
                then=lambda: self._schedule_status(message, index + 1, t0),
            )
        )

    def _reply(self, outbound: _Message, reply: Reply, epoch: int) -> None:
        self._inbound(outbound.to, outbound.from_, reply.body, outbound.service_sid, epoch)

    def _inbound(self, from_: str, to: str, body: str, service_sid: str | None, epoch: int) -> None:
        """A text from `from_` to our number `to`: stored, and posted to the inbound URL."""
        if epoch != self.dispatcher.epoch:
            return
        inbound = _Message("inbound", from_, to, body, service_sid, None, (_Step(0.0, "received"),))
        self.store.add(inbound)
        if self.config.honor_stop:
            word = fold(body)
            if word in OPT_OUT_WORDS:
                self.opted_out.add(from_)
            elif word in OPT_IN_WORDS:
                self.opted_out.discard(from_)
        if self.config.inbound_url is None:
            return
        params = [
            ("ToCountry", _country(inbound.to)),
            ("ToState", ""),
            ("SmsMessageSid", inbound.sid),
            ("NumMedia", "0"),
            ("ToCity", ""),
            ("FromZip", ""),
            ("SmsSid", inbound.sid),
            ("FromState", ""),
            ("SmsStatus", "received"),
            ("FromCity", ""),
            ("Body", inbound.body),
            ("FromCountry", _country(inbound.from_)),
            ("To", inbound.to),
            ("ToZip", ""),
            ("NumSegments", str(inbound.segments)),
            ("MessageSid", inbound.sid),
            ("AccountSid", self.config.account_sid),
            ("From", inbound.from_),
            ("ApiVersion", API_VERSION),
        ]
        if inbound.service_sid is not None:
            params.append(("MessagingServiceSid", inbound.service_sid))
        url = self.config.inbound_url
        self.dispatcher.submit(_Post("inbound", url, params, inbound.sid, "received", epoch))

    def resource(self, message: _Message, initial: bool = False) -> dict[str, Any]:
        """The message as Twilio's API shows it now (or, `initial`, as the create answer)."""
        now = time.time()
        step = message.timeline[0] if initial else message.step_at(now)
        sent = None if initial else message.sent_at(now)
        uri = f"{self.base}/Messages/{message.sid}"
        unassigned = step.status == "accepted"
        return {
            "account_sid": self.config.account_sid,
            "api_version": API_VERSION,
            "body": message.body,
            "date_created": _rfc2822(int(message.created)),
            "date_sent": _rfc2822(int(sent)) if sent is not None else None,
            "date_updated": _rfc2822(int(message.created + step.offset)),
            "direction": message.direction,
            "error_code": step.error_code,
            "error_message": ERROR_MESSAGES.get(step.error_code or 0),
            "from": None if unassigned else message.from_,
            "messaging_service_sid": message.service_sid,
            "num_media": "0",
            "num_segments": "0" if unassigned else str(message.segments),
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            "status": step.status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": message.to,
            "uri": f"{uri}.json",
        }

    def page(self, query: Mapping[str, str]) -> dict[str, Any]:
        """One page of the list API, newest first, paged by Page/PageSize and PageToken."""
        names = ("To", "From", "DateSent", "DateSent<", "DateSent>")
        filters = [(name, query[name]) for name in names if query.get(name)]
        size = _whole(query.get("PageSize", "50"), "PageSize", 1, 1000)
        number = _whole(query.get("Page", "0"), "Page", 0, 10**9)
        chosen = self._matching(dict(filters))
        token = query.get("PageToken", "")
        anchor = self.store.by_sid.get(token[2:]) if len(token) > 2 else None
        if anchor is not None and token.startswith("PB"):
            low = bisect.bisect_right(chosen, anchor.seq, key=_seq)
            high = min(len(chosen), low + size)
        else:
            if anchor is not None:
                high = bisect.bisect_left(chosen, anchor.seq, key=_seq)
            else:
                high = max(0, len(chosen) - number * size)
            low = max(0, high - size)
        items = chosen[low:high][::-1]

        def uri(page: int, token: str | None) -> str:
            params = [*filters, ("PageSize", str(size)), ("Page", str(page))]
            params += [("PageToken", token)] if token else []
            return f"{self.create_path}?{urlencode(params)}"

        # Newest first: the next page holds older messages (below `low`), the previous newer ones.
        has_next = bool(items) and low > 0
        has_previous = high < len(chosen) if items else number > 0
        start = number * size
        return {
            "end": start + len(items) - 1 if items else start,
            "first_page_uri": uri(0, None),
            "next_page_uri": uri(number + 1, "PA" + items[-1].sid) if has_next else None,
            "page": number,
            "page_size": size,
            "previous_page_uri": (
                uri(max(0, number - 1), "PB" + items[0].sid if items else None)
                if has_previous
                else None
            ),
            "start": start,
            "uri": uri(number, token or None),
            "messages": [self.resource(m) for m in items],
        }

    def _matching(self, filters: Mapping[str, str]) -> list[_Message]:
        to, sender = filters.get("To"), filters.get("From")
        if to is not None:
            chosen = self.store.by_to.get(to, [])
            if sender is not None:
                chosen = [m for m in chosen if m.from_ == sender]
        elif sender is not None:
            chosen = self.store.by_from.get(sender, [])
        else:
            chosen = self.store.messages
        tests = [
            _date_test(op, filters[name])
            for name, op in (("DateSent", "="), ("DateSent<", "<"), ("DateSent>", ">"))
            if name in filters
        ]
        if tests:
            now = time.time()
            chosen = [m for m in chosen if _sent_passes(m.sent_at(now), tests)]
        return chosen


def _seq(message: _Message) -> int:
    return message.seq


def _whole(text: str, name: str, low: int, high: int) -> int:
    if text.isdigit() and low <= int(text) <= high:
        return int(text)
    raise _TwilioError(400, 20001, f"{name} must be a whole number from {low} to {high}")


def _date_test(op: str, text: str) -> Callable[[datetime], bool]:
    """A DateSent filter: a day compares dates (inclusive), a moment compares to the second.

    twilio-python sends a date as midnight ("2026-12-01T00:00:00Z"), so midnight means the day.
    """
    value = text.strip()
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), datetime.min.time())
        else:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                moment = parsedate_to_datetime(value)
    except (ValueError, TypeError):
        raise _TwilioError(400, 20001, f"DateSent{op.strip('=')} is not a date: {text}") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment.time() == datetime.min.time():
        return _compare(op, moment.date(), lambda sent: sent.date())
    return _compare(op, moment.replace(microsecond=0), lambda sent: sent)


def _compare(op: str, bound: Any, project: Callable[[datetime], Any]) -> Callable[[datetime], bool]:
    if op == "<":
        return lambda sent: bool(project(sent) <= bound)
    if op == ">":
        return lambda sent: bool(project(sent) >= bound)
    return lambda sent: bool(project(sent) == bound)


def _sent_passes(sent: float | None, tests: list[Callable[[datetime], bool]]) -> bool:
    if sent is None:
        return False
    moment = datetime.fromtimestamp(int(sent), UTC)
    return all(test(moment) for test in tests)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _drop(send: Send) -> None:
    """Close the connection without answering, as a network failure would.

    ASGI has no way to say this; uvicorn's `send` is a method of its request cycle, which holds
    the transport. Any other server gets an exception instead, which it turns into a 500.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("sandbox fault: drop (this server can't drop a connection)")
    transport.abort()
    # Let the server see the connection is gone, else it answers 500 for the silent app.
    for _ in range(20):
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)


# --- the ASGI app -------------------------------------------------------------------------------


class SandboxApp(Starlette):
    """Starlette for every route but the send, which is answered before routing (the hot path)."""

    def __init__(self, sandbox: _Sandbox) -> None:
        self.sandbox = sandbox
        self._create_path = sandbox.create_path

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            yield
            await sandbox.dispatcher.close()

        super().__init__(routes=_routes(sandbox), lifespan=lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == self._create_path
            and scope["method"] == "POST"
        ):
            await self.sandbox.handle_create(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """The sandbox as an ASGI app; SmartChatError if the config or its reply script is wrong."""
    return SandboxApp(_Sandbox(config or SandboxConfig()))


def _routes(sandbox: _Sandbox) -> list[Route]:
    account_sid = sandbox.config.account_sid

    def checked(request: Request) -> _TwilioError | None:
        if not sandbox.authorized(request.scope["headers"]):
            return _AUTH_ERROR
        if request.path_params["account"] != account_sid:
            return _not_found(request)
        return None

    async def create_elsewhere(request: Request) -> Response:
        # The configured account's sends never get here; this answers for any other account.
        problem = checked(request)
        return _error(problem or _not_found(request))

    async def list_messages(request: Request) -> Response:
        problem = checked(request)
        if problem is not None:
            return _error(problem)
        try:
            return _json(sandbox.page(request.query_params))
        except _TwilioError as err:
            return _error(err)

    async def fetch_message(request: Request) -> Response:
        problem = checked(request)
        if problem is not None:
            return _error(problem)
        message = sandbox.store.by_sid.get(request.path_params["sid"])
        if message is None:
            return _error(_not_found(request))
        return _json(sandbox.resource(message))

    async def every_message(request: Request) -> Response:
        messages = [
            sandbox.resource(m)
            | {"status_callback": m.callback, "fault": m.fault, "created_at": m.created}
            for m in sandbox.store.messages
        ]
        return _json({"messages": messages, "count": len(messages)})

    async def deliveries(request: Request) -> Response:
        return _json({"deliveries": list(sandbox.dispatcher.log)})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = orjson.loads(await request.body() or b"{}")
                if not isinstance(changes, dict):
                    raise _TwilioError(400, 20001, "Send a JSON object of fault settings")
                sandbox.faults.update(changes)
            except orjson.JSONDecodeError:
                return _error(_TwilioError(400, 20001, "The body is not JSON"))
            except _TwilioError as err:
                return _error(err)
        return _json(sandbox.faults.report())

    async def reset(request: Request) -> Response:
        sandbox.reset()
        return _json({"reset": True})

    async def health(request: Request) -> Response:
        return _json({"ok": True, "account_sid": account_sid})

    base = f"/{API_VERSION}/Accounts/{{account}}"
    return [
        Route(f"{base}/Messages.json", create_elsewhere, methods=["POST"]),
        Route(f"{base}/Messages.json", list_messages, methods=["GET"]),
        Route(f"{base}/Messages/{{sid}}.json", fetch_message, methods=["GET"]),
        Route("/sandbox/messages", every_message, methods=["GET"]),
        Route("/sandbox/deliveries", deliveries, methods=["GET"]),
        Route("/sandbox/faults", faults, methods=["GET", "POST"]),
        Route("/sandbox/reset", reset, methods=["POST"]),
        Route("/sandbox/health", health, methods=["GET"]),
    ]


def _not_found(request: Request) -> _TwilioError:
    return _TwilioError(404, 20404, f"The requested resource {request.url.path} was not found")


# --- running it ---------------------------------------------------------------------------------


def serve(config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the sandbox until interrupted (Ctrl-C); SmartChatError if its settings are wrong."""
    import uvicorn

    app = create_app(config)
    # uvicorn shuts down cleanly on Ctrl-C, then raises it again for the caller: that's us.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(uvicorn_config(app, host, port, quiet=False)).run()


@contextlib.contextmanager
def running_sandbox(
    config: SandboxConfig | None = None,
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    process: bool = False,
) -> Iterator[str]:
    """A sandbox serving in the background for the `with` block; yields its base URL.

    Port 0 picks a free port. In a thread by default (starts in a few milliseconds); with
    `process=True` in a child process, so a benchmark's client doesn't share its interpreter.
    """
    if process:
        config = config or SandboxConfig()
        if isinstance(config.reply_script, str | Path):  # its mistakes are reported here, not lost
            config = dataclasses.replace(
                config, reply_script=load_reply_script(config.reply_script)
            )
        with _in_process(config, host, port) as url:
            yield url
        return
    with serving_in_thread(create_app(config), listen(host, port), "sandbox") as url:
        yield url


@contextlib.contextmanager
def _in_process(config: SandboxConfig, host: str, port: int) -> Iterator[str]:
    # A fresh interpreter rather than multiprocessing: spawn would re-import the caller's
    # __main__, which a benchmark script written without a __main__ guard can't survive.
    root = str(Path(__file__).resolve().parents[2])
    paths = [root, *filter(None, [os.environ.get("PYTHONPATH")])]
    child = subprocess.Popen(
        [sys.executable, "-c", "from tasks.gateway.sandbox import _serve_child; _serve_child()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(pickle.dumps((config, host, port)))
        child.stdin.close()
        announced = child.stdout.readline().strip()  # the port, or nothing if it died
        if not announced.isdigit():
            raise SmartChatError("The sandbox process did not start (see the log above).")
        url = f"http://{host}:{int(announced)}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/sandbox/health", timeout=1):
                    break
            except OSError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise SmartChatError("The sandbox process did not start.") from None
                time.sleep(0.02)
        yield url
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()


def _serve_child() -> None:
    """The child of `running_sandbox(process=True)`: settings in on stdin, port out on stdout."""
    import uvicorn

    config, host, port = pickle.loads(sys.stdin.buffer.read())  # noqa: S301  (our own parent)
    app = create_app(config)
    listener = listen(host, port)
    print(listener.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn_config(app, host, port, quiet=True)).run(sockets=[listener])
