"""Flow `process_replies`: the chatbot answers every reply that came in since the last run.

drain the receiver's inbox → read replies in batches (a task each) → send the answers, and any
message that may go now (held for quiet hours until now), through the `send_campaign` flow
(exactly once, rate-limited) → expire silent conversations, complete finished campaigns and
write their reports. Deployed on a one-minute schedule (prefect.yaml), and run in a loop by
`smartchat run`. Safe to run twice at once or after a crash: every step is idempotent.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact

from flows.naming import run_name
from flows.reports import report_link, write_report_or_warn
from smartchat.settings import load_settings
from tasks.conversation_tasks import (
    campaigns_due_task,
    drain_inbox_task,
    expire_and_complete_task,
    read_replies_task,
)

COMPLETED_ARTIFACT = "campaigns-completed"


@flow(name="process-replies", flow_run_name=run_name("replies"))
async def process_replies(
    db: str | None = None,
    inbox: str | None = None,
    expire_after: float | None = None,
    send: bool = True,
    workers: int | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Answer the replies waiting in the inbox and the store; returns what happened.

    `db`: the store (default SMARTCHAT_DB). `inbox`: the receiver's inbox (default
    SMARTCHAT_INBOX). `expire_after`: seconds without a reply before a conversation ends
    (default: each chatbot's `expire_after`). `send`: send the answers now (else they wait,
    queued, for the next send). `workers`, `dask_address`: where the answers' batches are
    delivered, as for `send_campaign` (the engine's decisions stay with the store's writer:
    at ~18,000 replies/s they are not what limits).
    """
    from flows.send_campaign import send_campaign

    settings = load_settings()
    store = settings.store.at(db)
    logger = get_run_logger()
    inbox_path = str(inbox or settings.receiver.inbox)
    # A run with a short expiry (against the sandbox) can't wait 5 minutes to call a reply from
    # an unknown number unsolicited: it waits as long as a conversation does.
    reply_wait = min(expire_after, 300.0) if expire_after is not None else None
    drained = drain_inbox_task(store, inbox_path, reply_wait)
    outcomes: dict[str, int] = {}
    replies = answers = 0
    campaigns: set[str] = set()
    while True:
        batch = read_replies_task(
            store,
            str(settings.conversations.keywords) if settings.conversations.keywords else None,
            settings.conversations.batch_size,
            expire_after,
        )
        if batch["replies"] == 0:
            break
        replies += batch["replies"]
        answers += batch["answers"]
        campaigns.update(batch["campaigns"])
        for outcome, n in batch["outcomes"].items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
    sent = 0
    if send:
        campaigns.update(campaigns_due_task(store))  # held for quiet hours until now, say
        for campaign_id in sorted(campaigns):
            summary = await send_campaign(
                campaign_id, db=db, workers=workers, dask_address=dask_address
            )
            sent += summary.get("sent", 0)
    ended = expire_and_complete_task(store, expire_after)
    logger.info(
        "%d replies read, %d answers queued, %d sent; %d conversations expired%s",
        replies,
        answers,
        sent,
        ended["expired"],
        f"; completed {', '.join(ended['completed'])}" if ended["completed"] else "",
    )
    # A completed campaign's figures no longer move: its report is written once, now, and the
    # run's artifact links to it.
    reports = {c: write_report_or_warn(store, c, logger) for c in ended["completed"]}
    if ended["completed"]:
        await acreate_markdown_artifact(
            key=COMPLETED_ARTIFACT,
            markdown=_completed_markdown(reports),
            description="Campaigns completed by this run, with their reports",
        )
    return {
        "drained": drained.get("events", 0),
        "replies": replies,
        "outcomes": outcomes,
        "answers": answers,
        "sent": sent,
        "expired": ended["expired"],
        "completed": ended["completed"],
        "reports": {c: path for c, path in reports.items() if path},
    }


def _completed_markdown(reports: dict[str, str | None]) -> str:
    lines = ["# Campaigns completed", "", "| Campaign | Report |", "|---|---|"]
    for campaign_id, path in reports.items():
        shown = report_link(path) if path else "not written (see the run's log)"
        lines.append(f"| {campaign_id} | {shown} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(process_replies()))
