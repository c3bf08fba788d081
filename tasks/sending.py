"""Sending a campaign: every contact texted exactly once, never above the campaign's rate.

Plain functions that `smartchat send` (`run_send`) and the Prefect flow (flows/send_campaign.py,
a task per batch) share:

    check ──► plan ──► reconcile ──► claim ──► send ──► record ──► claim ──► ... ──► summary
              (queued)  (sending left     (sending)  (HTTP)   (sent / failed; the next claim
                         by a crash)                           in the same transaction)

Exactly once. A message's identity is (campaign, phone, seq); its row moves
queued → sending → sent/failed, and the store is opened for one short transaction at a time,
never across a request or a rate-limit wait (README, concurrency):

1. `plan` inserts the opening messages (seq 1, the chatbot's start step, rendered with each
   contact's frozen Custom Data, segments counted, the sender recorded, `queued`), idempotently:
   a contact who already has one is skipped, and so is a number in `opt_outs` (not opted in).
2. `claim` marks a batch `sending` (sending_at, attempts + 1) in ONE transaction that commits
   before the first request of the batch. So after any crash, `sending` is exactly the set of
   messages that may be at the aggregator, and nothing else ever is. The same transaction
   records the batches finished meanwhile, fails queued messages to numbers that opted out
   since, and reads the campaign's status: a stopped campaign claims nothing more (`stop` halts
   a send within a batch).
3. `Sender.send` sends the batch at most `concurrency` requests at a time through one pooled
   client, each request let through by the rate limiter.
4. `record` writes the batch's outcomes (sent + provider_id, or failed + error code and text,
   opt-outs of Twilio 21610 into `opt_outs`) in ONE transaction. The driver runs each claim and
   record in a thread while the previous batch is still sending, so DuckDB is never what waits.
5. A request whose outcome is unknown (timeout, connection reset or dropped after the request
   may have been read, any 5xx) is never resent blindly: after `reconcile_delay` the message is
   looked for in the aggregator's list (`GET Messages.json?To=...&From=...`, newest first back
   to its sending_at, matching To, From (or the Messaging Service) and Body exactly); a sid
   another message already holds doesn't count (checked in the record transaction). Found →
   `sent` with that sid; absent → sent again. If the list can't be read either, the message
   stays `sending` for the next run. A request refused before being accepted (429, Twilio 21611,
   connection refused) is retried directly, a 429 after its Retry-After.
6. `reconcile`, first thing in every run, looks up each message a previous run left `sending`
   (a crash, a kill -9 at any moment) the same way: found → sent, absent → back to `queued` (the
   one backward move, and only for messages known not to be at the aggregator), so the
   claims send it once more.

One sender per campaign at a time (`SendLock`, an flock the kernel releases even on kill -9):
two would each take the other's requests in flight for a crash's leftovers.

Retries wait `retry_backoff` doubling (with jitter) up to `retry_max_wait`; after
`max_attempts` requests a message ends `failed` with its last reason (429s don't count: they
are the aggregator pacing us). A message that has to wait (a lookup, a backoff) waits in a task
of its own, so the workers keep sending the others. A gateway that can't be reached at all, or
refuses the credentials, stops the run: what was never sent goes back to `queued`, and the
error says so. Duplicates no client can prevent remain: an aggregator that accepts a request
but shows it in its list only after the lookup (the lookup waits `reconcile_delay` for that),
or that stores a body other than the one sent (lookups match the body exactly).

Rate. A GCRA token bucket: `rate` requests a second, bursts of at most max(1, rate/20), so no
1-second window holds more than 105% of the rate, and it paces each request's start (not its
batch), so the achieved rate stays within a few percent of it. A 429 pauses every request for
its Retry-After and lowers the pace, which climbs back 10% a second.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import math
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from schemas.campaigns import CampaignStatus, check_send_rate
from schemas.chatbot import PLACEHOLDER, Chatbot
from schemas.messages import MessageStatus
from smartchat.errors import (
    CampaignStateError,
    GatewayError,
    GatewayRateLimited,
    GatewayRejected,
    GatewayUnauthorized,
    RecipientOptedOut,
)
from smartchat.settings import GatewaySettings, SendingSettings, StoreSettings
from tasks import sms
from tasks.busy_time import BusyTime
from tasks.campaigns import get_chatbot
from tasks.gateway.twilio import (
    GatewayUnreachable,
    MessageResource,
    Transport,
    TwilioClient,
)
from tasks.quiet_hours import QuietHours, next_allowed
from tasks.store import campaigns as campaign_rows
from tasks.store import messages, open_store, write_transaction
from tasks.store import opt_outs as opt_out_rows
from tasks.store.campaigns import Campaign
from tasks.store.connection import Connection
from tasks.store.messages import ClaimedMessage

OPENING_SEQ = 1
# A lost answer is looked for among the messages created since the attempt's sending_at, less
# this margin for the aggregator's clock (its dates have whole seconds).
LOOKUP_MARGIN = timedelta(minutes=10)
# 429s don't count against max_attempts; past this many for one message it fails all the same.
MAX_THROTTLED = 100
BURST_SHARE = 1 / 20  # bucket depth: at most this share of a second's worth at once

# One process opens the store from one thread at a time (the flow claims in a thread while its
# prepare or settle task reads, the CLI claims in a thread while a batch records): a unit of
# work waits for the other.
_STORE = threading.Lock()
# When this process was in the store (under _STORE, so one span at a time): the send flow's
# account of where its time went.
STORE_TIME = BusyTime()


@contextmanager
def _writing(store: StoreSettings) -> Iterator[Connection]:
    with _STORE, STORE_TIME.timing(), write_transaction(store) as conn:
        yield conn


@contextmanager
def _reading(store: StoreSettings) -> Iterator[Connection]:
    with _STORE, STORE_TIME.timing(), open_store(store, read_only=True) as conn:
        yield conn


def _now() -> datetime:
    return datetime.now(UTC)


# --- 0. what is sent, and at what rate ----------------------------------------------------------


@dataclass(frozen=True)
class SendTarget:
    """A campaign that may be sent, at the rate it is sent at."""

    campaign: Campaign
    rate: float


def check_campaign(store: StoreSettings, campaign_id: str, rate: float | None = None) -> SendTarget:
    """The campaign, if it may be sent now; CampaignNotFound or CampaignStateError otherwise.

    `rate` (messages per second) overrides the campaign's own send rate for this run.
    """
    if rate is not None:
        check_send_rate(rate)
    with _reading(store) as conn:
        campaign = campaign_rows.get(conn, campaign_id)
    refuse_unless_sendable(campaign)
    return SendTarget(campaign, campaign.send_rate if rate is None else rate)


def refuse_unless_sendable(campaign: Campaign) -> None:
    if not campaign.send_enabled:
        raise CampaignStateError(
            f"Campaign {campaign.id} was launched not to send (--no-send): it is stored, not "
            "texted. Relaunch it with --send to text its contacts.",
            campaign.id,
        )
    if campaign.status != CampaignStatus.LAUNCHED:
        raise CampaignStateError(
            f"Campaign {campaign.id} is {campaign.status}: nothing more is sent for it.",
            campaign.id,
        )


class SendLock:
    """One sender per campaign at a time, across processes: an exclusive `flock`, held for the
    whole send (the kernel drops it if the process dies, kill -9 included). Two senders of one
    campaign would each reconcile the other's requests in flight as a crash's leftovers and
    could text people twice. The lock file is in the system's temporary folder, named after
    the store's absolute path and the campaign, so the project folder gets no litter.
    """

    def __init__(self, store: StoreSettings, campaign_id: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", campaign_id)
        where = hashlib.sha256(str(store.path.resolve()).encode()).hexdigest()[:16]
        self.path = Path(tempfile.gettempdir()) / "smartchat-send-locks" / f"{where}-{safe}.lock"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 20, 0).decode("ascii", "replace").strip()
            self.release()
            raise CampaignStateError(
                f"Campaign {campaign_id} is being sent by another process"
                f"{f' (pid {holder})' if holder.isdigit() else ''}: one send at a time. Let it "
                "finish, or stop that process, then send again.",
                campaign_id,
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None

    def __enter__(self) -> SendLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def batch_size(rate: float, sending: SendingSettings) -> int:
    """Messages per batch: `batch_size`, or fewer at low rates (`batch_seconds` of sending)."""
    return max(1, min(sending.batch_size, math.ceil(rate * sending.batch_seconds)))


# --- 1. plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanResult:
    planned: int  # opening messages queued by this call (0 when a run resumes)
    opted_out: int  # contacts without one because their number opted out


def plan(
    store: StoreSettings, campaign_id: str, sender: str, quiet: QuietHours | None = None
) -> PlanResult:
    """Queue the opening message of every contact that has none yet (opted-out numbers skipped).

    Idempotent: the rendering happens outside the store; the insert skips a (phone, seq) the
    campaign already has, so a plan re-run after a crash, or by another run, adds nothing twice.
    With `quiet` hours, a message whose recipient is in them (in any of the number's time
    zones) is held until they end (`not_before`): claims skip it until then.
    """
    with _reading(store) as conn:
        campaign = campaign_rows.get(conn, campaign_id)
        chatbot = get_chatbot(conn, campaign.chatbot_id, campaign.chatbot_version).load()
        contacts = messages.unplanned_contacts(conn, campaign_id, OPENING_SEQ, chatbot.custom_data)
        skipped = messages.opted_out_contacts(conn, campaign_id, OPENING_SEQ)
    if contacts.height == 0:
        return PlanResult(0, skipped)
    frame = opening_messages(chatbot, contacts, sender)
    if quiet is not None and quiet.active:
        now = _now()
        allowed = next_allowed(frame["phone"], now, quiet, countries=frame["country"])
        frame = frame.with_columns(
            pl.when(allowed > now).then(allowed).otherwise(None).alias("not_before")
        )
    with _writing(store) as conn:
        planned = messages.insert(conn, campaign_id, frame)
    return PlanResult(planned, skipped)


def opening_messages(chatbot: Chatbot, contacts: pl.DataFrame, sender: str) -> pl.DataFrame:
    """The start step's message for each contact (`phone`, `country`, a column per Unique ID).

    Rendered and counted in segments column-wise (tasks.sms), as the contact check counts them.
    """
    template = chatbot.steps[chatbot.start].say
    names = list(chatbot.custom_data)
    measured = contacts.with_columns(sms.measure_columns(contacts, names))
    return measured.select(
        "phone",
        pl.lit(OPENING_SEQ, pl.Int32).alias("seq"),
        pl.lit(chatbot.start).alias("step"),
        pl.lit("say").alias("kind"),
        "country",
        render(template).alias("body"),
        sms.message_segments(template).cast(pl.Int16).alias("segments"),
        pl.lit(MessageStatus.QUEUED.value).alias("status"),
        pl.lit(sender).alias("sender"),
    )


def render(template: str) -> pl.Expr:
    """`Chatbot.render` as a polars expression over columns named after the Unique IDs."""
    parts = PLACEHOLDER.split(template)  # text, name, text, name, ..., text
    pieces = [pl.lit(p) if i % 2 == 0 else pl.col(p) for i, p in enumerate(parts) if p]
    return pl.concat_str(pieces) if len(pieces) > 1 else pieces[0]


# --- 2. claim and 4. record ---------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    """What became of one claimed message."""

    phone: str
    seq: int
    status: MessageStatus
    at: datetime
    attempts: int
    provider_id: str | None = None
    # Found by a lookup: the matching sids, oldest first; the first no other message holds wins.
    candidates: tuple[str, ...] = ()
    error: str | None = None
    error_code: int | None = None
    opted_out: bool = False


@dataclass
class BatchOutcome:
    """A batch's results; `requeue`: never accepted, back to queued; `unresolved`: unknown."""

    results: list[Result] = field(default_factory=list)
    requeue: list[tuple[str, int]] = field(default_factory=list)
    unresolved: list[tuple[str, int]] = field(default_factory=list)
    error: GatewayError | None = None  # why the batch stopped early, if it did
    # When its requests were in flight, from a sender of its own (a Dask worker's): the flow's
    # account of where the time went.
    http: list[tuple[float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Recorded:
    """What one record transaction wrote."""

    sent: int = 0
    failed: int = 0
    requeued: int = 0
    opted_out: int = 0  # new numbers in opt_outs (Twilio 21610)

    def __add__(self, other: Recorded) -> Recorded:
        return Recorded(
            self.sent + other.sent,
            self.failed + other.failed,
            self.requeued + other.requeued,
            self.opted_out + other.opted_out,
        )


@dataclass(frozen=True)
class Claim:
    batch: list[ClaimedMessage]
    recorded: Recorded  # what the same transaction recorded first
    stopped: CampaignStatus | None = None  # the campaign can't be sent now: claimed nothing
    opted_out: int = 0  # queued messages failed because their number opted out since


def claim(
    store: StoreSettings, campaign_id: str, size: int, finished: Sequence[BatchOutcome] = ()
) -> Claim:
    """Record `finished` batches, then mark the next `size` queued messages `sending`.

    One transaction, committed before any request for the batch. Nothing is claimed when the
    campaign is no longer launched (stopped between batches) or was set not to send.
    """
    now = _now()
    with _writing(store) as conn:
        recorded = record_outcomes(conn, campaign_id, finished)
        campaign = campaign_rows.get(conn, campaign_id)
        if campaign.status != CampaignStatus.LAUNCHED or not campaign.send_enabled:
            return Claim([], recorded, stopped=campaign.status)
        failed = messages.fail_opted_out(conn, campaign_id, now)
        batch = messages.claim(conn, campaign_id, size, now)
    return Claim(batch, recorded + Recorded(failed=failed), opted_out=failed)


def record(store: StoreSettings, campaign_id: str, finished: Sequence[BatchOutcome]) -> Recorded:
    """Record finished batches in one transaction."""
    if not any(o.results or o.requeue for o in finished):
        return Recorded()
    with _writing(store) as conn:
        return record_outcomes(conn, campaign_id, finished)


def record_outcomes(
    conn: Connection, campaign_id: str, finished: Sequence[BatchOutcome]
) -> Recorded:
    """Inside a write transaction: statuses, sids, errors, attempts, opt-outs, requeues."""
    results = [r for outcome in finished for r in outcome.results]
    requeue = [key for outcome in finished for key in outcome.requeue]
    found = [r for r in results if r.candidates]
    if found:
        # A sid another message holds was that message's: a lookup finds only what's left.
        taken = messages.recorded_provider_ids(conn, [s for r in found for s in r.candidates])
        for r in found:
            sid = next((s for s in r.candidates if s not in taken), None)
            if sid is None:
                requeue.append((r.phone, r.seq))
            else:
                taken.add(sid)
                r.provider_id = sid
        results = [r for r in results if r.provider_id is not None or not r.candidates]
    if results:
        messages.apply_status_changes(
            conn,
            pl.DataFrame(
                {
                    "campaign_id": [campaign_id] * len(results),
                    "phone": [r.phone for r in results],
                    "seq": [r.seq for r in results],
                    "status": [r.status.value for r in results],
                    "at": [r.at for r in results],
                    "provider_id": [r.provider_id for r in results],
                    "error": [r.error for r in results],
                    "error_code": [r.error_code for r in results],
                    "attempts": [r.attempts for r in results],
                },
                schema_overrides={
                    "seq": pl.Int32,
                    "at": pl.Datetime("us", "UTC"),
                    "provider_id": pl.String,
                    "error": pl.String,
                    "error_code": pl.Int32,
                    "attempts": pl.Int16,
                },
            ),
        )
    refused = [r for r in results if r.opted_out]
    new_opt_outs = 0
    if refused:
        new_opt_outs = opt_out_rows.record(
            conn,
            pl.DataFrame(
                {
                    "phone": [r.phone for r in refused],
                    "opted_out_at": [r.at for r in refused],
                    "source": [opt_out_rows.AGGREGATOR] * len(refused),
                    "campaign_id": [campaign_id] * len(refused),
                },
                schema_overrides={"opted_out_at": pl.Datetime("us", "UTC")},
            ),
        )
    requeued = 0
    if requeue:
        keys = pl.DataFrame(requeue, schema={"phone": pl.String, "seq": pl.Int32}, orient="row")
        requeued = messages.requeue(conn, campaign_id, keys)
    failed = sum(1 for r in results if r.status == MessageStatus.FAILED)
    return Recorded(len(results) - failed, failed, requeued, new_opt_outs)


# --- 3. send ------------------------------------------------------------------------------------


class RateLimiter:
    """GCRA token bucket: `rate` starts a second, at most `burst` at once; None: unlimited.

    Each `acquire` reserves the next start time and sleeps until it, so concurrent requests
    queue in order instead of polling. `throttle` (a 429) pauses every start for the
    Retry-After and lowers the pace by 30%; the pace climbs back 10% a second.
    """

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.rate = rate if rate is not None and math.isfinite(rate) else None
        self._pace = self.rate or 0.0
        self._burst = burst if burst is not None else max(1.0, (self.rate or 0) * BURST_SHARE)
        self._tat = 0.0  # theoretical arrival time (monotonic seconds)
        self._paused_until = 0.0
        self._eased_at = 0.0

    def reserve(self) -> float:
        """Seconds until the caller may start (0: now); the start is booked."""
        now = time.monotonic()
        if self.rate is None:
            return max(0.0, self._paused_until - now)
        if self._pace < self.rate and now >= self._paused_until:
            self._pace = min(self.rate, self._pace * (1 + 0.1 * (now - self._eased_at)))
            self._eased_at = now
        interval = 1.0 / self._pace
        tolerance = (self._burst - 1) * interval
        start = max(now, self._tat - tolerance, self._paused_until)
        self._tat = max(self._tat, now, self._paused_until) + interval
        return start - now

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)

    def throttle(self, retry_after: float | None) -> None:
        """The aggregator said 429: hold every start for `retry_after` seconds (1 if unsaid)."""
        now = time.monotonic()
        if now < self._paused_until:
            return  # the same burst of 429s: one pause, one slow-down
        self._paused_until = now + (retry_after if retry_after is not None else 1.0)
        if self.rate is not None:
            self._pace = max(self.rate / 10, self._pace * 0.7)
            self._eased_at = self._paused_until
            self._tat = self._paused_until


class Batch:
    """Claimed messages handed out to the sender's workers one at a time."""

    def __init__(self, claimed: Sequence[ClaimedMessage]) -> None:
        self.messages = list(claimed)
        self._next = 0
        self.cancelled = False
        self.failure: GatewayError | None = None  # the gateway can't take more: stop early
        self.drained = asyncio.Event()  # every message handed out (or given back)
        self.untaken: list[ClaimedMessage] = []
        self.later: list[asyncio.Future[None]] = []  # messages waiting to retry or be looked up

    def __len__(self) -> int:
        return len(self.messages)

    def take(self) -> ClaimedMessage | None:
        if self.cancelled or self.failure is not None:
            self.untaken += self.messages[self._next :]
            self._next = len(self.messages)
        if self._next >= len(self.messages):
            self.drained.set()
            return None
        message = self.messages[self._next]
        self._next += 1
        return message

    def cancel(self) -> None:
        """Hand out nothing more (the campaign was stopped): the rest goes back to queued."""
        self.cancelled = True

    def fail(self, error: GatewayError) -> None:
        if self.failure is None:
            self.failure = error


@dataclass(slots=True)
class _Try:
    """Where one message's sending stands."""

    attempts: int  # the stored count: the claim counted the first request
    tries: int = 0  # requests that count against max_attempts (429s don't)
    throttled: int = 0


@dataclass
class SendStats:
    """Counters of a sender's life, read by progress displays while it runs."""

    requests: int = 0
    accepted: int = 0  # 201s
    found: int = 0  # lost answers found at the aggregator by a lookup
    failed: int = 0
    throttled: int = 0  # 429s and queue-full answers
    unknown: int = 0  # answers lost (timeouts, resets, 5xx)
    unreachable: int = 0
    lookups: int = 0
    started: float = field(default_factory=time.monotonic)
    first_request: float = 0.0  # monotonic time of the first request (0: none yet)
    last_request: float = 0.0

    def requested(self) -> None:
        now = time.monotonic()
        self.requests += 1
        self.last_request = now
        if not self.first_request:
            self.first_request = now

    @property
    def request_rate(self) -> float:
        """Requests a second between the first and the last: the pace the limiter allowed."""
        span = self.last_request - self.first_request
        return (self.requests - 1) / span if self.requests > 1 and span > 0 else 0.0

    @property
    def done(self) -> int:
        return self.accepted + self.found + self.failed


class Sender:
    """The HTTP side of a send: client, rate limiter, concurrency and retries (no store)."""

    def __init__(
        self,
        client: TwilioClient,
        sending: SendingSettings,
        rate: float | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.client = client
        self.settings = sending
        self.limiter = limiter if limiter is not None else RateLimiter(rate)
        self.http_time = BusyTime()  # when requests were in flight
        self.slots = asyncio.Semaphore(sending.concurrency)
        self.stats = SendStats()

    async def send(self, batch: Batch) -> BatchOutcome:
        """Send every message of `batch` once (retrying what may be retried); never raises a
        gateway error: a failure that ends the batch early is `BatchOutcome.error`."""
        outcome = BatchOutcome()
        workers = min(self.settings.concurrency, len(batch))
        try:
            await asyncio.gather(*(self._work(batch, outcome) for _ in range(workers)))
            while batch.later:  # messages waiting for a lookup or a retry
                later, batch.later = batch.later, []
                await asyncio.gather(*later)
        except BaseException:
            batch.cancel()  # what was not handed out stays `sending`: the next run settles it
            for waiting in batch.later:
                waiting.cancel()
            raise
        finally:
            batch.take()  # drained in every case (an empty batch, a stop, a failure)
        outcome.requeue += [(m.phone, m.seq) for m in batch.untaken]
        outcome.error = batch.failure
        return outcome

    async def _work(self, batch: Batch, outcome: BatchOutcome) -> None:
        while (m := batch.take()) is not None:
            state = _Try(attempts=m.attempts)
            error = await self._request(m, batch, outcome, state)
            if error is not None:  # it has to wait (a lookup, a backoff): not this worker
                batch.later.append(
                    asyncio.ensure_future(self._recover(m, batch, outcome, state, error))
                )

    async def _request(
        self, m: ClaimedMessage, batch: Batch, outcome: BatchOutcome, state: _Try
    ) -> GatewayError | None:
        """Request until the message is settled (None) or fails in a way that needs a wait."""
        stats = self.stats
        while True:
            if batch.failure is not None or batch.cancelled:
                outcome.requeue.append((m.phone, m.seq))  # the last request was not accepted
                return None
            async with self.slots:
                await self.limiter.acquire()
                state.tries += 1
                stats.requested()
                if state.tries + state.throttled > 1:
                    state.attempts += 1
                try:
                    with self.http_time.timing():
                        resource = await self.client.send_message(m.phone, m.body, m.sender)
                except GatewayError as exc:
                    error: GatewayError = exc
                else:
                    stats.accepted += 1
                    outcome.results.append(_sent(m, resource, state.attempts))
                    return None
            if isinstance(error, GatewayRateLimited):  # not accepted: after the pause, again
                state.tries -= 1
                state.throttled += 1
                stats.throttled += 1
                self.limiter.throttle(error.retry_after)
                if state.throttled < MAX_THROTTLED:
                    continue
                stats.failed += 1
                outcome.results.append(_failed(m, error, state.attempts))
                return None
            if isinstance(error, GatewayUnauthorized):
                batch.fail(error)
                continue
            if isinstance(error, GatewayRejected):
                stats.failed += 1
                opted_out = isinstance(error, RecipientOptedOut)
                outcome.results.append(_failed(m, error, state.attempts, opted_out=opted_out))
                return None
            if isinstance(error, GatewayUnreachable):
                stats.unreachable += 1
                if state.tries >= self.settings.max_attempts:
                    batch.fail(error)  # nothing answers there: not this message's fault
                    continue
            else:
                stats.unknown += 1
            return error

    async def _recover(
        self,
        m: ClaimedMessage,
        batch: Batch,
        outcome: BatchOutcome,
        state: _Try,
        error: GatewayError | None,
    ) -> None:
        """After a failed request: look for the message if the aggregator may have it, else (or
        if absent) wait the backoff and request again, until settled or out of attempts."""
        while error is not None:
            if not isinstance(error, GatewayUnreachable):  # the answer was lost: look first
                found = await self.look_up(m, batch)
                if found is None:
                    outcome.unresolved.append((m.phone, m.seq))
                    return
                if found:
                    self.stats.found += 1
                    outcome.results.append(_found(m, found, state.attempts))
                    return
            if state.tries >= self.settings.max_attempts:
                self.stats.failed += 1
                outcome.results.append(_failed(m, error, state.attempts))
                return
            await asyncio.sleep(self.backoff(state.tries))
            error = await self._request(m, batch, outcome, state)

    async def look_up(
        self, m: ClaimedMessage, batch: Batch | None = None, *, wait: bool = True
    ) -> list[MessageResource] | None:
        """The aggregator's messages that are this one (oldest first; [] if none), or None when
        its list can't be read (then nobody knows, and the message stays `sending`)."""
        if wait and self.settings.reconcile_delay:
            await asyncio.sleep(self.settings.reconcile_delay)
        since = m.sending_at - LOOKUP_MARGIN
        for attempt in range(1, self.settings.max_attempts + 1):
            async with self.slots:
                self.stats.lookups += 1
                try:
                    with self.http_time.timing():
                        return await self.client.find_sent(m.phone, m.body, m.sender, since)
                except GatewayUnauthorized as exc:
                    if batch is not None:
                        batch.fail(exc)
                    return None
                except GatewayError:
                    pass
            if attempt < self.settings.max_attempts:
                await asyncio.sleep(self.backoff(attempt))
        return None

    def backoff(self, tries: int) -> float:
        """Exponential with jitter: `retry_backoff` doubled per try, at most `retry_max_wait`."""
        ceiling = min(
            self.settings.retry_max_wait, self.settings.retry_backoff * 2.0 ** (tries - 1)
        )
        return ceiling * random.uniform(0.5, 1.0)


def _sent(m: ClaimedMessage, resource: MessageResource, attempts: int) -> Result:
    return Result(
        m.phone, m.seq, provider_status(resource), _now(), attempts, provider_id=resource.sid,
        error=resource.error_message, error_code=resource.error_code,
    )  # fmt: skip


def _found(m: ClaimedMessage, found: list[MessageResource], attempts: int) -> Result:
    first = found[0]
    return Result(
        m.phone, m.seq, provider_status(first), _now(), attempts,
        candidates=tuple(r.sid for r in found), error=first.error_message,
        error_code=first.error_code,
    )  # fmt: skip


def _failed(
    m: ClaimedMessage, error: GatewayError, attempts: int, *, opted_out: bool = False
) -> Result:
    return Result(
        m.phone, m.seq, MessageStatus.FAILED, _now(), attempts, error=error.message,
        error_code=error.code, opted_out=opted_out,
    )  # fmt: skip


def provider_status(resource: MessageResource) -> MessageStatus:
    """Our status for a message the aggregator has: sent, unless it already knows more."""
    status = MessageStatus.from_provider(resource.status)
    if status is None or status.rank < MessageStatus.SENT.rank:
        return MessageStatus.SENT
    return status


# --- 5/6. reconcile -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciled:
    """What a reconciliation found of the messages left `sending`."""

    found: int = 0  # at the aggregator: recorded sent (or what it already knew)
    requeued: int = 0  # absent: back to queued, to be sent
    unresolved: int = 0  # the aggregator's list couldn't be read: still `sending`


def in_flight(store: StoreSettings, campaign_id: str) -> list[ClaimedMessage]:
    with _reading(store) as conn:
        return messages.in_flight(conn, campaign_id)


async def reconcile(store: StoreSettings, sender: Sender, campaign_id: str) -> Reconciled:
    """Settle every message a previous run left `sending`, before anything else is sent."""
    left = await asyncio.to_thread(in_flight, store, campaign_id)
    if not left:
        return Reconciled()
    # A request of the crashed run may still be landing: wait reconcile_delay after the last.
    latest = max(m.sending_at for m in left)
    settle = (latest - _now()).total_seconds() + sender.settings.reconcile_delay
    if settle > 0:
        await asyncio.sleep(settle)
    outcome = BatchOutcome()

    async def settle_one(m: ClaimedMessage) -> None:
        found = await sender.look_up(m, wait=False)
        if found is None:
            outcome.unresolved.append((m.phone, m.seq))
        elif found:
            sender.stats.found += 1
            outcome.results.append(_found(m, found, m.attempts))
        else:
            outcome.requeue.append((m.phone, m.seq))

    await asyncio.gather(*(settle_one(m) for m in left))
    recorded = await asyncio.to_thread(record, store, campaign_id, [outcome])
    return Reconciled(
        found=len(outcome.results),
        requeued=recorded.requeued,
        unresolved=len(outcome.unresolved),
    )


# --- the whole send (the CLI; the flow runs the same steps as tasks) ----------------------------


@dataclass
class SendProgress:
    """A running send, as a progress display shows it."""

    campaign_id: str
    rate: float
    total: int  # messages this run has to settle (queued + left sending at the start)
    sent: int = 0
    failed: int = 0
    elapsed: float = 0.0

    @property
    def done(self) -> int:
        return self.sent + self.failed

    @property
    def per_second(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class SendReport:
    """What a run did; `to_json` for --json and the flow's summary."""

    campaign_id: str
    rate: float
    planned: int = 0
    skipped_opted_out: int = 0
    sent: int = 0
    failed: int = 0
    requeued: int = 0
    opted_out: int = 0  # new opt-outs (Twilio 21610) and queued messages to opted-out numbers
    reconciled: Reconciled = field(default_factory=Reconciled)
    recovered: int = 0  # answers lost mid-run, the message found at the aggregator: not resent
    unresolved: int = 0
    throttled: int = 0
    retried: int = 0
    requests: int = 0
    elapsed: float = 0.0
    request_rate: float = 0.0  # requests a second, first to last: never above `rate`
    stopped: CampaignStatus | None = None
    # The gateway error that ended the run early (everything was recorded first), if one did.
    failure: GatewayError | None = None
    status_counts: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    # Opening messages waiting for their recipients' quiet hours to end, and the last moment.
    held: int = 0
    held_until: datetime | None = None

    def add(self, recorded: Recorded) -> None:
        self.sent += recorded.sent
        self.failed += recorded.failed
        self.requeued += recorded.requeued
        self.opted_out += recorded.opted_out

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "rate": self.rate,
            "planned": self.planned,
            "skipped_opted_out": self.skipped_opted_out,
            "sent": self.sent,
            "failed": self.failed,
            "opted_out": self.opted_out,
            "reconciled": {
                "found": self.reconciled.found,
                "requeued": self.reconciled.requeued,
                "unresolved": self.reconciled.unresolved,
            },
            "recovered": self.recovered,
            "unresolved": self.unresolved,
            "throttled": self.throttled,
            "retried": self.retried,
            "requests": self.requests,
            "elapsed_s": round(self.elapsed, 3),
            "achieved_rate": round(self.achieved_rate, 2),
            "request_rate": round(self.request_rate, 2),
            "stopped": self.stopped.value if self.stopped else None,
            "error": self.failure.message if self.failure else None,
            "messages": self.status_counts,
            "failures": self.failures,
            "held_for_quiet_hours": self.held,
            "held_until": self.held_until.isoformat() if self.held_until else None,
        }


def summarize(store: StoreSettings, report: SendReport) -> SendReport:
    """Fill the report's store figures: messages per status, failures per reason."""
    with _reading(store) as conn:
        counts = messages.status_counts(conn, report.campaign_id)
        report.held, report.held_until = messages.held(conn, report.campaign_id, _now())
        rows = conn.execute(
            "SELECT error_code, error, count(*) AS n FROM messages "
            "WHERE campaign_id = ? AND status = ? GROUP BY ALL ORDER BY n DESC LIMIT 20",
            [report.campaign_id, MessageStatus.FAILED.value],
        ).fetchall()
    report.status_counts = {s.value: n for s, n in counts.items()}
    report.failures = [{"error_code": c, "error": e, "messages": n} for c, e, n in rows]
    return report


ProgressCallback = Callable[[SendProgress], None]


async def run_send(
    store: StoreSettings,
    gateway: GatewaySettings,
    sending: SendingSettings,
    campaign_id: str,
    *,
    rate: float | None = None,
    progress: ProgressCallback | None = None,
    transport: Transport | None = None,
    quiet: QuietHours | None = None,
) -> SendReport:
    """Send (or resume) a campaign to the end, or until it is stopped; what `smartchat send` runs.

    Checks the campaign (CampaignNotFound, CampaignStateError) and the gateway (reachable,
    credentials accepted: else GatewayUnreachable, GatewayUnauthorized) before writing anything,
    then plans, reconciles and sends batch after batch, each claim and record in a thread while
    the previous batch is still sending. A gateway failure that ends the run early (the
    aggregator stops answering, or starts refusing the credentials) is `report.failure`, once
    everything is recorded: a later run resumes where this one stopped.
    """
    target = await asyncio.to_thread(check_campaign, store, campaign_id, rate)
    with SendLock(store, campaign_id):
        return await _run_locked(store, gateway, sending, target, progress, transport, quiet)


async def _run_locked(
    store: StoreSettings,
    gateway: GatewaySettings,
    sending: SendingSettings,
    target: SendTarget,
    progress: ProgressCallback | None,
    transport: Transport | None,
    quiet: QuietHours | None,
) -> SendReport:
    campaign_id = target.campaign.id
    async with TwilioClient(
        gateway, concurrency=sending.concurrency, transport=transport
    ) as client:
        await client.check()
        planned = await asyncio.to_thread(plan, store, campaign_id, gateway.sender, quiet)
        sender = Sender(client, sending, target.rate)
        report = SendReport(campaign_id, target.rate, planned.planned, planned.opted_out)
        report.reconciled = await reconcile(store, sender, campaign_id)
        counts = await asyncio.to_thread(status_counts, store, campaign_id)
        live = SendProgress(
            campaign_id,
            target.rate,
            total=report.reconciled.found
            + counts[MessageStatus.QUEUED]
            + counts[MessageStatus.SENDING],
            sent=report.reconciled.found,
        )
        ticker = _Ticker(live, sender.stats, progress)
        try:
            failure = await _pipeline(
                store, sender, campaign_id, batch_size(target.rate, sending), report
            )
        finally:
            ticker.stop()
            report.elapsed = time.monotonic() - sender.stats.started
            stats = sender.stats
            report.throttled = stats.throttled
            report.requests = stats.requests
            report.request_rate = stats.request_rate
            report.recovered = stats.found - report.reconciled.found
            report.retried = max(0, stats.requests - stats.accepted - stats.failed - stats.found)
        live.sent = report.sent + report.reconciled.found
        live.failed = report.failed
        live.elapsed = report.elapsed
        if progress is not None:
            progress(live)
    report.failure = failure
    await asyncio.to_thread(summarize, store, report)
    return report


async def _pipeline(
    store: StoreSettings, sender: Sender, campaign_id: str, size: int, report: SendReport
) -> GatewayError | None:
    """Claim batch k+1 (recording what finished) while batch k sends; start k+1 as soon as k is
    all handed out. Returns the gateway failure that ended it early, if one did.

    Whatever happens (a stop, a failure, Ctrl-C, a store error), the batches running finish
    their requests in flight, and every outcome not yet committed is recorded at the end; a
    claimed batch never started goes back to queued.
    """
    running: list[tuple[Batch, asyncio.Task[BatchOutcome]]] = []
    unrecorded: list[BatchOutcome] = []  # finished, not yet handed to a claim
    handed: list[BatchOutcome] = []  # handed to the claim in progress (recorded if it commits)
    failure: GatewayError | None = None
    stop = False
    next_claim: asyncio.Future[Claim] | None = None
    try:
        next_claim = asyncio.ensure_future(asyncio.to_thread(claim, store, campaign_id, size))
        while True:
            got = await next_claim
            next_claim, handed = None, []
            report.add(got.recorded)
            finished = _collect(running)
            unrecorded += finished
            failure = next((o.error for o in finished if o.error), None)
            if got.stopped is not None or not got.batch or failure is not None:
                report.stopped = got.stopped
                stop = got.stopped is not None or failure is not None
                unrecorded.append(_never_sent(got.batch))
                break
            batch = Batch(got.batch)
            running.append((batch, asyncio.ensure_future(sender.send(batch))))
            handed, unrecorded = unrecorded, []
            next_claim = asyncio.ensure_future(
                asyncio.to_thread(claim, store, campaign_id, size, handed)
            )
            await batch.drained.wait()
    except BaseException:
        stop = True
        raise
    finally:
        if stop:
            for batch, _ in running:
                batch.cancel()
        if next_claim is not None:  # interrupted while a claim ran: let it end, undo its batch
            try:
                got = await next_claim
                handed = []
                report.add(got.recorded)
                unrecorded.append(_never_sent(got.batch))
            except Exception:
                pass  # not committed: `handed` is recorded below
        outcomes = list(await asyncio.gather(*(t for _, t in running))) + handed + unrecorded
        failure = failure or next((o.error for o in outcomes if o.error), None)
        report.unresolved += sum(len(o.unresolved) for o in outcomes)
        report.add(await asyncio.to_thread(record, store, campaign_id, outcomes))
    return failure


def _never_sent(claimed: Sequence[ClaimedMessage]) -> BatchOutcome:
    return BatchOutcome(requeue=[(m.phone, m.seq) for m in claimed])


def _collect(running: list[tuple[Batch, asyncio.Task[BatchOutcome]]]) -> list[BatchOutcome]:
    """The outcomes of the batches that finished, taken out of `running`."""
    done = [(b, t) for b, t in running if t.done()]
    for item in done:
        running.remove(item)
    return [t.result() for _, t in done]


def status_counts(store: StoreSettings, campaign_id: str) -> dict[MessageStatus, int]:
    with _reading(store) as conn:
        return messages.status_counts(conn, campaign_id)


class _Ticker:
    """Calls `progress` with live figures four times a second while a send runs."""

    def __init__(
        self, live: SendProgress, stats: SendStats, progress: ProgressCallback | None
    ) -> None:
        self.live, self.stats, self.progress = live, stats, progress
        self._base_sent = live.sent
        self._task = asyncio.ensure_future(self._run()) if progress is not None else None

    async def _run(self) -> None:
        assert self.progress is not None
        while True:
            self.live.sent = self._base_sent + self.stats.accepted + self.stats.found
            self.live.failed = self.stats.failed
            self.live.elapsed = time.monotonic() - self.stats.started
            self.progress(self.live)
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
