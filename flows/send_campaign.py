"""Flow `send_campaign`: text a launched campaign's contacts, exactly once, at its send rate.

The same steps as `smartchat send` (tasks.sending), as Prefect tasks: prepare (check the
campaign and the gateway, queue the opening messages, reconcile a crashed run), then the flow,
the campaign's one writer, claims batch after batch (`sending`, committed before any request),
hands each to a `deliver_batch_task` and records what it hands back with the next claim; last,
it reconciles anything a failed batch left `sending`. Batches are delivered in the flow's own
event loop (two in flight), or on Dask workers (`workers`, `dask_address`), which share the
campaign's rate through a Prefect global concurrency limit (flows/dask_workers.py).

A progress artifact moves after every batch; a markdown artifact sums it up, with where the
time went (HTTP, the store, neither). `smartchat stop` halts it between batches.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from flows.dask_workers import Deliveries, InProcess, dask_deliveries
from flows.naming import run_name, tag_run
from smartchat.errors import is_retryable
from smartchat.settings import StoreSettings, load_settings, sending_with
from tasks import sending
from tasks.busy_time import union_seconds
from tasks.send_tasks import (
    PROGRESS_ARTIFACT,
    SendPlan,
    close_senders,
    http_spans,
    prepare_send_task,
    settle_task,
    summarize_task,
)
from tasks.shared_rate import create_limit, limit_name, remove_limit
from tasks.store.messages import ClaimedMessage

# Rounds of "send until nothing is queued, then reconcile what is still sending": a second is
# needed only when a failed batch left messages that turn out to be absent at the aggregator.
MAX_ROUNDS = 3
# A gateway that stops answering mid-send (every request of a batch unreachable): pause, then
# claim again, this many times in a row before the run fails (a later run resumes).
GATEWAY_PAUSES = 2
GATEWAY_PAUSE_SECONDS = 5.0
PROGRESS_SECONDS = 1.0  # the progress artifact moves at most this often


@flow(name="send-campaign", flow_run_name=run_name("send"))
async def send_campaign(
    campaign_id: str,
    rate: float | None = None,
    db: str | None = None,
    quiet_hours: str | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Send (or resume) campaign `campaign_id`; returns what was sent.

    `rate`: messages per second for this run (default: the campaign's send rate). `db`: the
    store (default SMARTCHAT_DB). `quiet_hours`: `HH:MM-HH:MM` in each recipient's local time
    (default SMARTCHAT_QUIET_HOURS; the same start and end: none): opening messages due in
    them wait, and a later run sends them. `workers`: Dask worker processes to start on this
    machine for the batches (default SMARTCHAT_SEND_WORKERS; 0: the flow's own process).
    `dask_address`: an existing Dask scheduler to deliver the batches on instead (default
    SMARTCHAT_DASK_ADDRESS). The gateway is SMARTCHAT_GATEWAY_URL and its account settings.
    """
    started = time.time()
    tag_run("send", campaign_id=campaign_id, db=db)
    settings = load_settings()
    store = settings.store.at(db)
    sending_settings = sending_with(
        settings.sending, quiet_hours=quiet_hours, workers=workers, dask_address=dask_address
    )
    totals = {"sent": 0, "failed": 0, "opted_out": 0, "unresolved": 0}
    http: list[tuple[float, float]] = []
    async with AsyncExitStack() as stack:
        stack.push_async_callback(close_senders)
        plan = await prepare_send_task(store, settings.gateway, sending_settings, campaign_id, rate)
        totals["unresolved"] = plan.unresolved
        deliveries: Deliveries
        if sending_settings.workers or sending_settings.dask_address:
            name = limit_name(campaign_id)
            await create_limit(name, plan.rate)
            stack.push_async_callback(remove_limit, name)
            deliveries = await stack.enter_async_context(
                dask_deliveries(
                    sending_settings.workers,
                    sending_settings.dask_address,
                    settings.gateway,
                    sending_settings,
                    plan,
                    name,
                )
            )
        else:
            deliveries = InProcess(settings.gateway, sending_settings, plan)
        progress = await acreate_progress_artifact(
            progress=0.0,
            key=PROGRESS_ARTIFACT,
            description=f"Campaign {campaign_id}: share of its messages settled",
        )
        stopped = None
        for _ in range(MAX_ROUNDS):
            stopped = await _send_batches(store, plan, deliveries, totals, http, progress)
            if stopped:
                break
            settled = await settle_task(store, settings.gateway, sending_settings, plan)
            totals["sent"] += settled.found
            totals["unresolved"] = settled.unresolved
            if not settled.requeued:
                break
        await aupdate_progress_artifact(progress, progress=100.0)
        http += http_spans(campaign_id, started)
        timing = _timing(started, http, sending.STORE_TIME.since(started))
        return await summarize_task(store, plan, totals, stopped, timing)
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: the stack may swallow)


async def _send_batches(
    store: StoreSettings,
    plan: SendPlan,
    deliveries: Deliveries,
    totals: dict[str, int],
    http: list[tuple[float, float]],
    progress: Any,
) -> str | None:
    """Claim and deliver batches, `deliveries.in_flight` at a time, until a claim finds none;
    returns the status of a campaign stopped meanwhile.

    One claim is always under way while batches deliver, so a freed delivery slot finds the
    next batch ready: the store's work and a task run's start overlap the requests. Each claim
    records the batches delivered since the last (one transaction). A delivery that failed as a
    task fails the flow once the others have been recorded: its batch stays `sending` for the
    next run to look up. A batch claimed but never handed out goes back to `queued`.
    """
    campaign_id = plan.campaign_id
    pending: set[asyncio.Future[sending.BatchOutcome]] = set()
    delivered: list[sending.BatchOutcome] = []
    handed: list[sending.BatchOutcome] = []  # given to the claim under way (recorded if it commits)
    claiming: asyncio.Future[sending.Claim] | None = None
    ready: list[ClaimedMessage] | None = None  # claimed, waiting for a free delivery slot
    more, stopped, failure = True, None, None
    pauses, shown = 0, 0.0
    try:
        while True:
            if more and failure is None and claiming is None and ready is None:
                handed, delivered = delivered, []
                claiming = asyncio.ensure_future(
                    asyncio.to_thread(sending.claim, store, campaign_id, plan.batch_size, handed)
                )
            if ready is not None and failure is None and len(pending) < deliveries.in_flight:
                pending.add(deliveries.deliver(ready))
                ready = None
                continue
            waiting: set[asyncio.Future[Any]] = set(pending)
            if claiming is not None:
                waiting.add(claiming)
            if not waiting:
                return stopped
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if claiming is not None and claiming in done:
                got, claiming, handed = claiming.result(), None, []
                _count(totals, got.recorded)
                if got.stopped is not None or not got.batch:
                    more = False
                    stopped = got.stopped.value if got.stopped else None
                else:
                    ready = got.batch
            pause = False
            for finished in [f for f in pending if f in done]:
                pending.discard(finished)
                try:
                    outcome = finished.result()
                except Exception as exc:
                    failure = failure or exc
                    continue
                delivered.append(outcome)
                http += outcome.http
                totals["unresolved"] += len(outcome.unresolved)
                if outcome.error is None:
                    pauses = 0
                elif is_retryable(outcome.error) and pauses < GATEWAY_PAUSES:
                    pause = True
                else:
                    failure = failure or outcome.error
            if time.monotonic() - shown >= PROGRESS_SECONDS:  # an API call: not every batch
                shown = time.monotonic()
                settled = plan.reconciled_found + totals["sent"] + totals["failed"]
                share = 100.0 * settled / plan.total if plan.total else 100.0
                await aupdate_progress_artifact(progress, progress=min(100.0, share))
            if pause and failure is None:
                pauses += 1
                await asyncio.sleep(GATEWAY_PAUSE_SECONDS)
    finally:
        delivered = handed + delivered  # a claim that never committed recorded none of them
        if claiming is not None:  # interrupted while claiming: let it end, undo its batch
            try:
                got = await claiming
                delivered = delivered[len(handed) :]
                _count(totals, got.recorded)
                ready = got.batch or None
            except Exception:
                pass
        if ready:
            delivered.append(sending.BatchOutcome(requeue=[(m.phone, m.seq) for m in ready]))
        if pending:  # interrupted: let the batches in flight end, so their outcomes are kept
            for late in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(late, sending.BatchOutcome):
                    delivered.append(late)
        if delivered:
            _count(totals, await asyncio.to_thread(sending.record, store, campaign_id, delivered))
        if failure is not None:
            raise failure


def _count(totals: dict[str, int], recorded: sending.Recorded) -> None:
    totals["sent"] += recorded.sent
    totals["failed"] += recorded.failed
    totals["opted_out"] += recorded.opted_out


def _timing(
    started: float, http: list[tuple[float, float]], store: list[tuple[float, float]]
) -> dict[str, float]:
    """Seconds of wall time, in HTTP, in the store, and in neither (orchestration)."""
    end = time.time()
    busy = union_seconds(http, store, start=started, end=end)
    return {
        "seconds": round(end - started, 3),
        "http_seconds": round(union_seconds(http, start=started, end=end), 3),
        "store_seconds": round(union_seconds(store, start=started, end=end), 3),
        "orchestration_seconds": round(end - started - busy, 3),
    }


if __name__ == "__main__":
    import sys

    summary = asyncio.run(send_campaign(sys.argv[1]))
    print(f"Sent {summary['sent']:,}, failed {summary['failed']:,}")
