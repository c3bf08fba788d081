"""Prefect tasks for sending a campaign: the steps of `tasks.sending`, a task per batch.

    prepare_send_task ──► deliver_batch_task × n ──► settle_task ──► summarize_task
                          (the flow claims each batch before, records it after: one writer)

The flow is the campaign's only writer: it claims a batch (`sending`, committed before any
request), hands it to `deliver_batch_task`, which only talks HTTP and hands back what became of
each message, and records that with its next claim. So a batch can be delivered anywhere: in the
flow's own event loop, or on a Dask worker of another machine that has no store at all.

Delivery is never retried as a task: a batch handed out twice could text people twice. A batch
whose task failed stays `sending`, and `settle_task` (or the next run's `prepare_send_task`)
looks each of its messages up at the aggregator: found → sent, absent → queued again.
Retries sit on the tasks that only touch the store and the gateway's lists, and happen only for
errors that say a retry may work (`is_retryable`), never on message text.

The HTTP client and the rate limiter are never task inputs. In the flow's process, one `Sender`
per event loop and campaign (`sender_for`) serves every batch in flight: one connection pool,
one rate; the flow closes it (`close_senders`), which also releases the campaign's send lock
`prepare_send_task` took (one sender per campaign at a time). On a Dask worker a batch opens a
sender of its own, and its rate comes from the campaign's shared limit (tasks.shared_rate).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from schemas.campaigns import CampaignStatus
from schemas.messages import MessageStatus
from smartchat.settings import GatewaySettings, SendingSettings, StoreSettings
from tasks import sending
from tasks.campaign_tasks import retry_if_transient
from tasks.gateway.twilio import TwilioClient
from tasks.quiet_hours import QuietHours
from tasks.shared_rate import SharedRateLimiter, WorkerShare
from tasks.store.messages import ClaimedMessage

SUMMARY_ARTIFACT = "campaign-send"
PROGRESS_ARTIFACT = "campaign-send-progress"

_SENDERS: dict[tuple[int, str], sending.Sender] = {}
_LOCKS: dict[tuple[int, str], sending.SendLock] = {}


async def sender_for(
    gateway: GatewaySettings, settings: SendingSettings, campaign_id: str, rate: float
) -> sending.Sender:
    """This event loop's sender for the campaign (opened once: one pool, one rate limiter)."""
    key = (id(asyncio.get_running_loop()), campaign_id)
    sender = _SENDERS.get(key)
    if sender is None:
        client = TwilioClient(gateway, concurrency=settings.concurrency)
        sender = _SENDERS[key] = sending.Sender(client, settings, rate)
    return sender


def hold_send_lock(store: StoreSettings, campaign_id: str) -> None:
    """Take the campaign's send lock for this event loop's flow run (held until
    `close_senders`): another process sending the campaign meanwhile is refused."""
    key = (id(asyncio.get_running_loop()), campaign_id)
    if key not in _LOCKS:
        _LOCKS[key] = sending.SendLock(store, campaign_id)


def http_spans(campaign_id: str, since: float) -> list[tuple[float, float]]:
    """When this event loop's sender for the campaign had requests in flight, from `since`."""
    sender = _SENDERS.get((id(asyncio.get_running_loop()), campaign_id))
    return sender.http_time.since(since) if sender is not None else []


async def close_senders() -> None:
    """Close the senders this event loop opened (their connection pools), release its locks."""
    loop = id(asyncio.get_running_loop())
    for key in [k for k in _SENDERS if k[0] == loop]:
        await _SENDERS.pop(key).client.aclose()
    for key in [k for k in _LOCKS if k[0] == loop]:
        _LOCKS.pop(key).release()


class SendPlan(BaseModel):
    """What the flow sends: the campaign, its rate and batch size, and the messages to settle."""

    campaign_id: str
    rate: float
    batch_size: int
    total: int  # messages to settle this run: queued, and found by reconciliation
    planned: int
    skipped_opted_out: int
    reconciled_found: int
    reconciled_requeued: int
    unresolved: int


_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": 5,
    "retry_condition_fn": retry_if_transient,
    "cache_policy": NO_CACHE,
}


@task(name="prepare-send", **_RETRIES)
async def prepare_send_task(
    store: StoreSettings,
    gateway: GatewaySettings,
    settings: SendingSettings,
    campaign_id: str,
    rate: float | None = None,
) -> SendPlan:
    """Check the campaign and the gateway, queue the opening messages, settle what a crashed run
    left `sending`. Refuses a stopped or --no-send campaign (CampaignStateError)."""
    target = await asyncio.to_thread(sending.check_campaign, store, campaign_id, rate)
    hold_send_lock(store, campaign_id)
    sender = await sender_for(gateway, settings, campaign_id, target.rate)
    await sender.client.check()
    quiet = QuietHours.parse(settings.quiet_hours)
    planned = await asyncio.to_thread(sending.plan, store, campaign_id, gateway.sender, quiet)
    reconciled = await sending.reconcile(store, sender, campaign_id)
    counts = await asyncio.to_thread(sending.status_counts, store, campaign_id)
    return SendPlan(
        campaign_id=campaign_id,
        rate=target.rate,
        batch_size=sending.batch_size(target.rate, settings),
        total=reconciled.found + counts[MessageStatus.QUEUED] + counts[MessageStatus.SENDING],
        planned=planned.planned,
        skipped_opted_out=planned.opted_out,
        reconciled_found=reconciled.found,
        reconciled_requeued=reconciled.requeued,
        unresolved=reconciled.unresolved,
    )


@task(name="deliver-batch", cache_policy=NO_CACHE)
async def deliver_batch_task(
    gateway: GatewaySettings,
    settings: SendingSettings,
    plan: SendPlan,
    batch: list[ClaimedMessage],
    shared_rate: str | None = None,
    pace: float | None = None,
) -> sending.BatchOutcome:
    """Send a claimed batch (retrying what may be retried); what became of each message.

    `shared_rate`: the name of the campaign's Prefect rate limit, on a worker of its own (a
    Dask worker): the batch opens its own client; the process paces all its batches together
    at `pace` (its share of the rate), under that limit. None: the process's sender for the
    campaign, shared with the other batches in flight. Never touches the store.
    """
    if shared_rate is None:
        sender = await sender_for(gateway, settings, plan.campaign_id, plan.rate)
        return await sender.send(sending.Batch(batch))
    share = WorkerShare.of(shared_rate, pace or plan.rate, plan.rate)
    share.join()
    started, waited = time.monotonic(), share.waited
    try:
        await share.ready()
        async with TwilioClient(gateway, concurrency=settings.concurrency) as client:
            sender = sending.Sender(client, settings, limiter=SharedRateLimiter(share))
            outcome = await sender.send(sending.Batch(batch))
    finally:
        share.leave()
    outcome.http = sender.http_time.since(0.0)
    # Waits add up over the requests in flight at once; refusals mean the workers together
    # wanted more than the rate (each paces its share, so they should be rare).
    get_run_logger().info(
        "%d messages in %.2f s; this worker's requests waited %.2f s in all for grants of the "
        "shared rate limit %s, which refused %d so far",
        len(batch),
        time.monotonic() - started,
        share.waited - waited,
        shared_rate,
        share.refused,
    )
    return outcome


def prepare_worker(shared_rate: str, pace: float, rate: float, api_url: str) -> None:
    """On a Dask worker before its first batch: start taking grants of the shared limit (the
    worker keeps them for its batches, tasks.shared_rate)."""
    import prefect.task_engine  # noqa: F401  (the first batch's task run starts sooner)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        share = WorkerShare.of(shared_rate, pace, rate)
        share.join()  # the grant thread starts with these settings ...
        share.leave()  # ... and stays up, idle, until the first batch joins


@task(name="settle-in-flight", **_RETRIES)
async def settle_task(
    store: StoreSettings, gateway: GatewaySettings, settings: SendingSettings, plan: SendPlan
) -> sending.Reconciled:
    """Reconcile what is still `sending` (a batch task that failed mid-way): found → sent,
    absent → queued again (the flow then sends it)."""
    sender = await sender_for(gateway, settings, plan.campaign_id, plan.rate)
    return await sending.reconcile(store, sender, plan.campaign_id)


@task(name="summarize-send", cache_policy=NO_CACHE)
async def summarize_task(
    store: StoreSettings,
    plan: SendPlan,
    totals: dict[str, int],
    stopped: str | None = None,
    timing: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The campaign's messages per status and failures per reason, and where the run's time
    went (`timing`), as a markdown artifact."""
    report = sending.SendReport(
        plan.campaign_id,
        plan.rate,
        planned=plan.planned,
        skipped_opted_out=plan.skipped_opted_out,
        sent=totals["sent"] + plan.reconciled_found,
        failed=totals["failed"],
        opted_out=totals["opted_out"],
        unresolved=totals["unresolved"],
    )
    report.stopped = CampaignStatus(stopped) if stopped else None
    await asyncio.to_thread(sending.summarize, store, report)
    await acreate_markdown_artifact(
        key=SUMMARY_ARTIFACT,
        markdown=summary_markdown(report, stopped=stopped, timing=timing),
        description=f"Campaign {plan.campaign_id}: what was sent",
    )
    return {**report.to_json(), **({"timing": timing} if timing else {})}


def summary_markdown(
    report: sending.SendReport,
    *,
    stopped: str | None = None,
    timing: dict[str, float] | None = None,
) -> str:
    lines = [
        f"## Campaign {report.campaign_id}",
        "",
        f"Sent **{report.sent:,}**, failed **{report.failed:,}** this run at up to "
        f"{report.rate:g} messages/s; {report.planned:,} opening messages queued, "
        f"{report.skipped_opted_out:,} contacts skipped (opted out)."
        + (f" Stopped: the campaign is {stopped}." if stopped else ""),
        "",
        "| status | messages |",
        "|---|---:|",
        *(f"| {status} | {n:,} |" for status, n in report.status_counts.items()),
    ]
    if report.unresolved:
        lines += [
            "",
            f"{report.unresolved:,} messages could not be confirmed with the aggregator: they "
            "stay `sending`, and the next send reconciles them.",
        ]
    if timing and timing["seconds"] > 0:
        wall = timing["seconds"]
        lines += [
            "",
            f"Time: {wall:,.1f} s; requests in flight {timing['http_seconds']:,.1f} s, in the "
            f"store {timing['store_seconds']:,.1f} s, in neither (Prefect, planning, waiting) "
            f"{timing['orchestration_seconds']:,.1f} s "
            f"({100 * timing['orchestration_seconds'] / wall:.1f}%).",
        ]
    if report.failures:
        lines += ["", "| error code | reason | messages |", "|---|---|---:|"]
        lines += [
            f"| {f['error_code'] or ''} | {str(f['error'] or '').replace('|', '/')} | "
            f"{f['messages']:,} |"
            for f in report.failures
        ]
    return "\n".join(lines)
