"""Prefect tasks for sending a campaign: the steps of `tasks.sending`, one task per batch.

    prepare_send_task ──► send_batch_task × n (two in flight) ──► settle_task ──► summary

Retries sit on the tasks that do I/O and happen only for errors that say a retry may work
(`is_retryable`: a busy store, a gateway that stopped answering), never on message text. A retried
batch task claims a fresh batch: its earlier attempt's messages were recorded, given back to
`queued`, or left `sending`, which `settle_task` reconciles at the end (the flow runs it).

The HTTP client and the rate limiter are never task inputs: a process opens one `Sender` per
event loop and campaign the first time a task needs it (`sender_for`), so the two batch tasks in
flight share one connection pool and one rate; the flow closes them (`close_senders`), which also
releases the campaign's send lock `prepare_send_task` took (one sender per campaign at a time).
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import task
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


class BatchReport(BaseModel):
    claimed: int
    sent: int = 0
    failed: int = 0
    requeued: int = 0
    opted_out: int = 0
    unresolved: int = 0
    stopped: str | None = None  # the campaign's status when it can't be sent any more


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


@task(name="send-batch", **_RETRIES)
async def send_batch_task(
    store: StoreSettings,
    gateway: GatewaySettings,
    settings: SendingSettings,
    plan: SendPlan,
) -> BatchReport:
    """Claim a batch (marked `sending` before any request), send it, record it.

    `claimed == 0` means nothing is left to send, or the campaign was stopped (`stopped`).
    A gateway that stops answering fails the task after recording (retried: GatewayUnavailable
    is retryable); one that refuses the credentials fails it for good.
    """
    sender = await sender_for(gateway, settings, plan.campaign_id, plan.rate)
    got = await asyncio.to_thread(sending.claim, store, plan.campaign_id, plan.batch_size)
    if not got.batch:
        return BatchReport(
            claimed=0, failed=got.opted_out, stopped=got.stopped.value if got.stopped else None
        )
    outcome = await sender.send(sending.Batch(got.batch))
    recorded = await asyncio.to_thread(sending.record, store, plan.campaign_id, [outcome])
    if outcome.error is not None:
        raise outcome.error
    return BatchReport(
        claimed=len(got.batch),
        sent=recorded.sent,
        failed=recorded.failed + got.opted_out,
        requeued=recorded.requeued,
        opted_out=recorded.opted_out,
        unresolved=len(outcome.unresolved),
    )


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
    store: StoreSettings, plan: SendPlan, totals: dict[str, int], stopped: str | None = None
) -> dict[str, Any]:
    """The campaign's messages per status and failures per reason, as a markdown artifact."""
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
        markdown=summary_markdown(report, stopped=stopped),
        description=f"Campaign {plan.campaign_id}: what was sent",
    )
    return report.to_json()


def summary_markdown(report: sending.SendReport, *, stopped: str | None = None) -> str:
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
    if report.failures:
        lines += ["", "| error code | reason | messages |", "|---|---|---:|"]
        lines += [
            f"| {f['error_code'] or ''} | {str(f['error'] or '').replace('|', '/')} | "
            f"{f['messages']:,} |"
            for f in report.failures
        ]
    return "\n".join(lines)
