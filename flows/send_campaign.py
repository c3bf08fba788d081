"""Flow `send_campaign`: text a launched campaign's contacts, exactly once, at its send rate.

The same steps as `smartchat send` (tasks.sending), as Prefect tasks: prepare (check the
campaign and the gateway, queue the opening messages, reconcile a crashed run), then one task
per batch (claimed `sending` before any request, recorded after), two in flight so one batch's
store work overlaps the other's requests, then a last reconciliation of anything a failed batch
left `sending`. A progress artifact moves after every batch; a markdown artifact sums it up.
`smartchat stop` halts it between batches.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from flows.naming import run_name, tag_run
from smartchat.settings import GatewaySettings, SendingSettings, StoreSettings, load_settings
from tasks.send_tasks import (
    PROGRESS_ARTIFACT,
    BatchReport,
    SendPlan,
    close_senders,
    prepare_send_task,
    send_batch_task,
    settle_task,
    summarize_task,
)

BATCHES_IN_FLIGHT = 2
# Rounds of "send until nothing is queued, then reconcile what is still sending": a second is
# needed only when a failed batch left messages that turn out to be absent at the aggregator.
MAX_ROUNDS = 3


@flow(name="send-campaign", flow_run_name=run_name("send"))
async def send_campaign(
    campaign_id: str,
    rate: float | None = None,
    db: str | None = None,
    quiet_hours: str | None = None,
) -> dict[str, Any]:
    """Send (or resume) campaign `campaign_id`; returns what was sent.

    `rate`: messages per second for this run (default: the campaign's send rate). `db`: the
    store (default SMARTCHAT_DB). `quiet_hours`: `HH:MM-HH:MM` in each recipient's local time
    (default SMARTCHAT_QUIET_HOURS; the same start and end: none): opening messages due in
    them wait, and a later run sends them. The gateway is SMARTCHAT_GATEWAY_URL and its account
    settings.
    """
    tag_run("send", campaign_id=campaign_id, db=db)
    settings = load_settings()
    store = settings.store.at(db)
    sending_settings = settings.sending
    if quiet_hours is not None:
        sending_settings = SendingSettings.model_validate(
            {**sending_settings.model_dump(), "quiet_hours": quiet_hours}
        )
    try:
        plan = await prepare_send_task(store, settings.gateway, sending_settings, campaign_id, rate)
        progress = await acreate_progress_artifact(
            progress=0.0,
            key=PROGRESS_ARTIFACT,
            description=f"Campaign {campaign_id}: share of its messages settled",
        )
        totals = {"sent": 0, "failed": 0, "opted_out": 0, "unresolved": plan.unresolved}
        stopped = None
        for _ in range(MAX_ROUNDS):
            stopped = await _send_batches(
                store, settings.gateway, sending_settings, plan, totals, progress
            )
            if stopped:
                break
            settled = await settle_task(store, settings.gateway, sending_settings, plan)
            totals["sent"] += settled.found
            totals["unresolved"] = settled.unresolved
            if not settled.requeued:
                break
        await aupdate_progress_artifact(progress, progress=100.0)
        return await summarize_task(store, plan, totals, stopped)
    finally:
        await close_senders()


async def _send_batches(
    store: StoreSettings,
    gateway: GatewaySettings,
    settings: SendingSettings,
    plan: SendPlan,
    totals: dict[str, int],
    progress: Any,
) -> str | None:
    """Batch tasks, two at a time, until one claims nothing; returns the status of a campaign
    stopped meanwhile. A failed task fails the flow once the other has finished."""
    pending: set[asyncio.Future[BatchReport]] = set()
    more, stopped, failure = True, None, None
    while more or pending:
        while more and failure is None and len(pending) < BATCHES_IN_FLIGHT:
            pending.add(asyncio.ensure_future(send_batch_task(store, gateway, settings, plan)))
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for finished in done:
            try:
                report = finished.result()
            except Exception as exc:
                failure = failure or exc
                more = False
                continue
            more = more and report.claimed > 0
            stopped = stopped or report.stopped
            totals["sent"] += report.sent
            totals["failed"] += report.failed
            totals["opted_out"] += report.opted_out
            totals["unresolved"] += report.unresolved
        settled = plan.reconciled_found + totals["sent"] + totals["failed"]
        share = 100.0 * settled / plan.total if plan.total else 100.0
        await aupdate_progress_artifact(progress, progress=min(100.0, share))
    if failure is not None:
        raise failure
    return stopped


if __name__ == "__main__":
    import sys

    summary = asyncio.run(send_campaign(sys.argv[1]))
    print(f"Sent {summary['sent']:,}, failed {summary['failed']:,}")
