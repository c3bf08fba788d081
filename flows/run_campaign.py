"""Flow `run_campaign`: a whole campaign on embedded defaults, as one run tree in the Prefect UI.

    register the chatbot → start the sandbox aggregator (when the gateway is the local default)
    and the webhook receiver → launch (validate, record) → send_campaign → process_replies,
    again and again, until every conversation has finished or expired → the summary

What `smartchat run` runs. The sandbox plays the reply script (or, without one, replies made from
the chatbot: tasks/gateway/default_replies.py) and posts to the receiver like Twilio would; the
sender, the engine and the store are the production ones. Against a real aggregator (settings
pointing at Twilio) only the receiver starts, on SMARTCHAT_RECEIVER_PORT.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import urlsplit

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    aupdate_progress_artifact,
)

from flows.naming import run_name, tag_run
from flows.reports import report_link, write_report_or_warn
from schemas.campaigns import check_send_rate
from smartchat.settings import Settings, load_settings
from tasks import campaigns, queries
from tasks.campaign_tasks import discard_staged, record_launch_task, validate_for_launch_task
from tasks.conversation_tasks import drain_inbox_task

SUMMARY_ARTIFACT = "campaign-run"
PROGRESS_ARTIFACT = "campaign-run-progress"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@flow(name="run-campaign", flow_run_name=run_name("run"))
async def run_campaign(
    chatbot_path: str,
    contacts_path: str,
    reply_script: str | None = None,
    expire_after: float = 20.0,
    rate: float = 500.0,
    db: str | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Launch, send and converse until every conversation has ended; returns the summary.

    `reply_script`: how the sandbox's contacts answer (default: made from the chatbot).
    `expire_after`: seconds without a reply before a conversation ends (short against the
    sandbox, so the run ends). `rate`: messages per second. `timeout`: give up after this long.
    """
    tag_run("run", chatbot_path=chatbot_path, contacts_path=contacts_path)
    from flows.process_replies import process_replies
    from flows.send_campaign import send_campaign

    settings = load_settings()
    store = settings.store.at(db)
    logger = get_run_logger()
    check_send_rate(rate)
    registered = campaigns.register_chatbot(
        store, chatbot_path, max_message_chars=settings.validation.max_message_chars
    ).chatbot
    with _servers(settings, registered.load(), reply_script) as started:
        logger.info("Started %s", ", ".join(started) or "nothing (a real aggregator)")
        validated = validate_for_launch_task(
            store, registered.id, contacts_path, settings.validation.max_message_chars
        )
        try:
            plan = campaigns.LaunchPlan(rate=rate, again=True, separate=True)
            campaign = record_launch_task(store, validated, plan)
        finally:
            discard_staged(validated)
        campaign_id = campaign["id"]
        logger.info("Launched %s: %d contacts", campaign_id, campaign["contact_count"])
        # Against the sandbox nobody sleeps: quiet hours would only hold the demo until morning.
        sandboxed = any("sandbox" in s for s in started)
        await send_campaign(campaign_id, db=db, quiet_hours="00:00-00:00" if sandboxed else None)
        deadline = time.monotonic() + timeout
        progress = await acreate_progress_artifact(
            progress=0.0,
            key=PROGRESS_ARTIFACT,
            description=f"Campaign {campaign_id}: share of its conversations ended",
        )
        report = None
        while time.monotonic() < deadline:
            done = await process_replies(db=db, expire_after=expire_after)
            await aupdate_progress_artifact(progress, progress=_ended_share(store, campaign_id))
            if campaign_id in done["completed"]:
                report = done["reports"].get(campaign_id)
                break
            await asyncio.sleep(1.0)
        else:
            logger.warning("Gave up after %g s: the campaign is still running", timeout)
        # Every message of the run is recorded by now: a text still waiting in the inbox for
        # the message it answers never will find one, so it is kept as unsolicited now.
        drain_inbox_task(store, str(settings.receiver.inbox), 0.0)
    summary = _summary(store, campaign_id)
    # process_replies wrote the report as the campaign completed; a run that gave up first
    # still gets one, of where it stands.
    report = report or write_report_or_warn(store, campaign_id, logger)
    await acreate_markdown_artifact(
        key=SUMMARY_ARTIFACT,
        markdown=_markdown(summary)
        + (f"\n\nThe campaign report with its charts: {report_link(report)}" if report else ""),
        description=f"Campaign {campaign_id}: the whole run",
    )
    return {**summary, "report": report}


def _ended_share(store: Any, campaign_id: str) -> float:
    """Percent of the campaign's reached conversations that have ended (for the progress bar)."""
    progress = queries.campaign_status(store, campaign_id)[0]
    ended = progress.finished + progress.expired + progress.opted_out
    return min(100.0, 100.0 * ended / progress.reached) if progress.reached else 0.0


@contextmanager
def _servers(settings: Settings, chatbot: Any, reply_script: str | None) -> Iterator[list[str]]:
    """The sandbox (when the gateway is the local default) and the receiver, for the block."""
    from tasks.gateway.default_replies import script_for_chatbot
    from tasks.gateway.reply_script import load_reply_script
    from tasks.gateway.sandbox import SandboxConfig, running_sandbox
    from tasks.receiver.app import ReceiverApp
    from tasks.receiver.server import listen, running_receiver

    gateway = settings.gateway
    started = []
    with ExitStack() as stack:
        receiver_port = urlsplit(gateway.public_url).port or settings.receiver.port
        try:
            listener = listen("127.0.0.1", receiver_port)
        except OSError as exc:
            raise _port_in_use("webhook receiver", receiver_port, exc) from None
        app = ReceiverApp(gateway, settings.receiver.inbox)  # process_replies drains it
        started.append(stack.enter_context(running_receiver(app, listener)) + " (receiver)")
        url = urlsplit(gateway.url)
        if url.hostname in LOOPBACK:
            script = load_reply_script(reply_script) if reply_script else None
            config = SandboxConfig(
                account_sid=gateway.account_sid,
                auth_token=gateway.auth_token.get_secret_value(),
                sender=gateway.sender,
                reply_script=script or script_for_chatbot(chatbot),
                inbound_url=gateway.public_url.rstrip("/") + "/sms/inbound",
                # Our engine answers STOP (and confirms it): the sandbox must not refuse later
                # messages to the number the way Twilio's Advanced Opt-Out would.
                honor_stop=False,
                sent_delay=0.2,
                delivered_delay=0.5,
            )
            try:
                sandbox = running_sandbox(config, url.port or 80, process=True)
                started.append(stack.enter_context(sandbox) + " (sandbox aggregator)")
            except OSError as exc:
                raise _port_in_use("sandbox aggregator", url.port or 80, exc) from None
        yield started


def _port_in_use(what: str, port: int, exc: OSError) -> Exception:
    from smartchat.errors import SmartChatError

    return SmartChatError(
        f"The {what} can't listen on port {port} ({exc.strerror or exc}): another program has "
        "it (another smartchat run?). Stop it, or choose other ports (SMARTCHAT_GATEWAY_URL, "
        "SMARTCHAT_PUBLIC_URL)."
    )


def _summary(store: Any, campaign_id: str) -> dict[str, Any]:
    progress = queries.campaign_status(store, campaign_id)[0].to_json()
    funnel = queries.step_funnel(store, campaign_id)
    return {
        **progress,
        "step_funnel": [dict(zip(funnel.columns, row, strict=True)) for row in funnel.rows],
    }


def _markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# Campaign {summary['campaign_id']}: {summary['status']}",
        "",
        "| contacts | reached | sent | delivered | failed | replied | finished | expired "
        "| opted out |",
        "|---|---|---|---|---|---|---|---|---|",
        "| "
        + " | ".join(
            f"{summary[k]:,}"
            for k in (
                "contacts",
                "reached",
                "sent",
                "delivered",
                "failed",
                "replied",
                "finished",
                "expired",
                "opted_out",
            )
        )
        + " |",
        "",
        "| step | reached | replies | answered | fallbacks | expired | dropped | opted out |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step in summary["step_funnel"]:
        lines.append(
            f"| {step['step']} | {step['reached']:,} | {step['replies']:,} | "
            f"{step['answered']:,} | {step['fallbacks']:,} | {step['expired']:,} | "
            f"{step['dropped']:,} | {step['opted_out']:,} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    summary = asyncio.run(run_campaign(sys.argv[1], sys.argv[2]))
    print(f"{summary['campaign_id']}: {summary['status']}")
