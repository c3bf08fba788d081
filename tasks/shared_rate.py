"""One send rate shared by every worker of a campaign: a Prefect global concurrency limit.

When a campaign's batches are delivered from several processes (Dask workers, on one machine
or many), no process's own limiter can keep their sum under the campaign's rate. The flow
creates a global concurrency limit whose slots decay at the rate; each worker process takes its
slots in grants (the limit's `rate_limit` mode; a missing limit fails the batch instead of
sending unlimited) and spends one per request. So N workers together never start
more than the rate a second (after at most `LIMIT_SECONDS` of burst), however Dask spreads the
batches and however many workers join.

Each worker process also paces itself at its share of the rate (the rate over the workers), so
the limit is a ceiling the workers rarely touch, not a queue they wait in. That matters because
of how Prefect's server keeps the limit: each write drops the fraction of a slot decayed since
the last one, and a refused request resets the decay clock. Two processes racing for grants at
100-400 messages a second got 55-70% of the rate here; paced at their shares, 94-98% (benchmarks/
bench_send_dask.py). So:

- slots are thousandths of a message: the dropped fractions cost nothing;
- the pace and the grants belong to the worker process, not to a batch: while one batch of a
  worker starts or ends (a Prefect task run's own round trips), its other batch sends at the
  worker's whole pace, and slots a batch didn't spend go to the next;
- a thread of the worker tops the grants up ahead of need, so a slow API call doesn't stall
  the requests. It asks the API directly (`increment_concurrency_slots`, mode `rate_limit`, and
  the 423's Retry-After when refused), which is what `prefect.concurrency.rate_limit()` does
  underneath: that wrapper stalled for about 2 s once in every 50-100 calls here (p50 11 ms,
  max 2.3 s over 60 calls), the direct call never did (p50 8 ms, max 41 ms over 300).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import re
import threading
import time

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound

from smartchat.errors import CampaignStateError
from tasks.sending import BURST_SHARE, RateLimiter

SLOTS_PER_MESSAGE = 1000  # Prefect's decay rounds down to whole slots at every write
# The limit's depth: room for every worker's grants taken ahead (AHEAD_SECONDS of its pace)
# with a second to spare, so the workers' own pace, not a refusal, is what holds them.
LIMIT_SECONDS = 4.0
GRANT_SECONDS = 1.0  # of a worker's pace, per call to the API
AHEAD_SECONDS = 2.0  # of a worker's pace, granted before it is needed: rides out a slow API
# Between two batches of a worker the thread and its API client stay up, and the grants it holds
# serve the next batch.
IDLE_SECONDS = 10.0
POLL_SECONDS = 0.01  # how often the thread looks whether the grants need topping up


def limit_name(campaign_id: str) -> str:
    """The campaign's limit, as the Prefect UI lists it under Concurrency."""
    return "smartchat-send-" + re.sub(r"[^A-Za-z0-9_.-]", "_", campaign_id)


async def create_limit(name: str, rate: float) -> None:
    """Create (or replace) the limit for `rate` messages a second."""
    depth = max(1, math.ceil(rate * LIMIT_SECONDS))
    async with get_client() as client:
        await remove_limit(name)
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(
                name=name,
                limit=depth * SLOTS_PER_MESSAGE,
                slot_decay_per_second=rate * SLOTS_PER_MESSAGE,
            )
        )


async def remove_limit(name: str) -> None:
    async with get_client() as client:
        try:
            await client.delete_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            pass


class WorkerShare:
    """This process's share of a campaign's shared rate: paced at `pace`, paid for in slots of
    the limit `name`, for every batch the process delivers at once (each in its own thread and
    event loop, as Dask runs tasks)."""

    _shares: dict[tuple[str, float], WorkerShare] = {}
    _shares_lock = threading.Lock()

    @classmethod
    def of(cls, name: str, pace: float, rate: float) -> WorkerShare:
        with cls._shares_lock:
            share = cls._shares.get((name, pace))
            if share is None:
                share = cls._shares[(name, pace)] = cls(name, pace, rate)
            return share

    def __init__(self, name: str, pace: float, rate: float) -> None:
        self.name = name
        self.limiter = RateLimiter(pace)  # reserve() under _lock: callers are in many threads
        self._interval = 1.0 / pace
        self._tolerance = max(0.0, pace * BURST_SHARE - 1) * self._interval
        self._next_start = 0.0
        self.grant = max(1, min(math.ceil(pace * GRANT_SECONDS), math.ceil(rate * LIMIT_SECONDS)))
        self.ahead = max(self.grant, math.ceil(pace * AHEAD_SECONDS))
        self.available = 0  # messages' worth of slots granted and not spent
        self.waited = 0.0  # seconds requests waited for grants
        self.refused = 0  # grants the limit refused (423): the workers wanted more than the rate
        self._lock = threading.Lock()
        self._users = 0
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def join(self) -> None:
        """A batch starts using the share: grants are kept topped up while any does."""
        with self._lock:
            self._users += 1
            if self._thread is None:
                # A new thread: a new send (or the first batch after a failed top-up) starts
                # clean; grants an earlier send left unspent are not this one's.
                self._failure, self.available = None, 0
                # The thread needs the task's Prefect settings (the API's address), which live
                # in context variables a new thread doesn't inherit.
                context = contextvars.copy_context()
                self._thread = threading.Thread(
                    target=context.run, args=(self._top_up,), name=f"grants-{self.name}"
                )
                self._thread.daemon = True
                self._thread.start()

    def leave(self) -> None:
        with self._lock:
            self._users -= 1

    def _top_up(self) -> None:
        try:
            asyncio.run(self._top_up_async())
        except BaseException as exc:  # the limit is gone, the API down: fail the batches
            with self._lock:
                if self._users > 0:  # idle (the send over, its limit removed): just stop
                    self._failure = exc
                self._thread = None
            self._wake_waiters()

    async def _top_up_async(self) -> None:
        idle_since: float | None = None
        async with get_client() as client:
            while True:
                with self._lock:
                    if self._users > 0:
                        idle_since = None
                    elif idle_since is None:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > IDLE_SECONDS:
                        self._thread = None  # a batch that joins now starts a new thread
                        return
                    short = self.available < self.ahead
                if short:
                    await self._take_grant(client)
                else:
                    await asyncio.sleep(POLL_SECONDS)

    async def _take_grant(self, client: PrefectClient) -> None:
        while True:
            try:
                response = await client.increment_concurrency_slots(
                    names=[self.name], slots=self.grant * SLOTS_PER_MESSAGE, mode="rate_limit"
                )
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 423:
                    raise
                self.refused += 1
                await asyncio.sleep(float(exc.response.headers.get("Retry-After", 0.1)))
                continue
            if not response.json():
                raise CampaignStateError(
                    f"The send's shared rate limit {self.name} is gone from Prefect (deleted "
                    "while sending?): nothing more is sent unlimited. Send the campaign again."
                )
            with self._lock:
                self.available += self.grant
            self._wake_waiters()
            return

    async def ready(self) -> None:
        """Wait for the first grant (a new worker's first API call can take a while)."""
        while True:
            with self._lock:
                if self._failure is not None:
                    raise self._failure
                if self.available > 0:
                    return
                waiter = self._wait_for_grant()
            await waiter

    async def acquire(self) -> None:
        # A granted slot first, then the pace, last: however long a request waited for a
        # slot, it still starts at its turn (no burst after a slow API call).
        asked = time.monotonic()
        while True:
            with self._lock:
                if self._failure is not None:
                    raise self._failure
                if self.available > 0:
                    self.available -= 1
                    break
                waiter = self._wait_for_grant()
            await waiter
        self.waited += time.monotonic() - asked
        with self._lock:
            wait = self.limiter.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        # Turns are booked ahead; if this worker's loop stalled (a batch ending, the GIL), the
        # requests booked meanwhile all wake at once. They start no closer than the pace.
        while (wait := self._admit()) > 0:
            await asyncio.sleep(wait)

    def _admit(self) -> float:
        """0 and the start is counted, or the seconds until this start keeps the pace."""
        with self._lock:
            now = time.monotonic()
            if now < self._next_start - self._tolerance:
                return self._next_start - self._tolerance - now
            self._next_start = max(self._next_start, now) + self._interval
            return 0.0

    def _wait_for_grant(self) -> asyncio.Future[None]:
        """A future of the caller's event loop, set when the thread adds grants (under _lock)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append((loop, waiter))
        return waiter

    def _wake_waiters(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(_settle, waiter)
            except RuntimeError:  # that batch's loop has closed: nobody waits there
                pass

    def throttle(self, retry_after: float | None) -> None:
        with self._lock:
            self.limiter.throttle(retry_after)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class SharedRateLimiter(RateLimiter):
    """A batch's view of its process's share (the Sender's limiter interface)."""

    def __init__(self, share: WorkerShare) -> None:
        super().__init__(None)
        self.share = share

    async def acquire(self) -> None:
        await self.share.acquire()

    def throttle(self, retry_after: float | None) -> None:
        self.share.throttle(retry_after)
