"""`smartchat schedule`: send a contact file at a given local time, through Prefect.

The campaign is validated and launched now (its contacts frozen in the store, a bad file
refused at once rather than at the scheduled time) and its send is a flow run of the
`send-campaign` deployment, SCHEDULED for that time on the Prefect server PREFECT_API_URL names.
A worker of the `smartchat` pool sends it then; the `process-replies` deployment (every minute)
answers the replies. Nothing here imports Prefect: the run is created through its REST API
(tasks/scheduling.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from smartchat.cli.console import print_json, shown
from smartchat.cli.errors import UsageError
from smartchat.cli.options import (
    AgainOption,
    CampaignNameOption,
    ChatbotRefOption,
    ContactsOption,
    DbOption,
    JsonOption,
    LaunchRateOption,
    SeparateOption,
    SheetOption,
    settings_of,
)

FLOW = "send-campaign"
DEPLOYMENT = "send-campaign"


def schedule(
    ctx: typer.Context,
    chatbot: ChatbotRefOption,
    contacts: ContactsOption,
    at: Annotated[
        str,
        typer.Option(
            "--at",
            help="When to send, as the clock on the wall shows it: YYYY-MM-DD HH:MM.",
            metavar="TIME",
            show_default=False,
        ),
    ],
    tz: Annotated[
        str,
        typer.Option(
            "--tz",
            help="The time zone of --at (IANA name: America/Mexico_City, UTC...).",
            metavar="ZONE",
            show_default=False,
        ),
    ],
    name: CampaignNameOption = None,
    rate: LaunchRateOption = None,
    separate: SeparateOption = False,
    again: AgainOption = False,
    sheet: SheetOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Launch a campaign now and send it at a local time, as a scheduled Prefect flow run.

    "Send this file at 09:00 on Monday, Mexico City time": `smartchat schedule --chatbot
    payment-reminder --contacts file.tsv --at "2026-12-07 09:00" --tz America/Mexico_City`.
    The file is validated and its contacts frozen now (an invalid file is refused, exit 1); the
    send is a run of the `send-campaign/send-campaign` deployment, scheduled for that time
    (converted to UTC) on the Prefect server at $PREFECT_API_URL, that a worker of the
    `smartchat` pool starts then. Replies are answered by the `process-replies` deployment.
    Needs a Prefect server (`prefect server start`), the deployments (`prefect deploy --all`)
    and a worker (`prefect worker start --pool smartchat`). Prints the flow run's id and its
    page in the Prefect UI. Changed your mind: `smartchat stop CAMPAIGN` (the scheduled run
    then sends nothing and fails saying so), or cancel the run in the UI.
    """
    from schemas.campaigns import check_send_rate
    from tasks import campaigns
    from tasks.scheduling import SchedulingError, find_deployment, local_to_utc, schedule_flow_run

    settings = settings_of(ctx)
    plan = campaigns.LaunchPlan(
        name=name,
        rate=check_send_rate(settings.sending.default_rate if rate is None else rate),
        send=True,
        separate=separate,
        again=again,
    )
    api_url = os.environ.get("PREFECT_API_URL", "").strip()
    try:
        # Everything that can refuse the schedule is checked before the launch writes anything.
        if not api_url:
            raise SchedulingError(
                "PREFECT_API_URL is not set, and Prefect's temporary API can't keep a schedule: "
                "start a server (prefect server start), then "
                "export PREFECT_API_URL=http://127.0.0.1:4200/api."
            )
        when = local_to_utc(at, tz)
        find_deployment(api_url, FLOW, DEPLOYMENT)
    except SchedulingError as exc:
        raise UsageError(exc.message) from None

    store = settings.store.at(db)
    result = campaigns.launch(
        store,
        chatbot,
        contacts,
        plan=plan,
        max_message_chars=settings.validation.max_message_chars,
        sheet=sheet,
    )
    campaign = result.campaign
    assert campaign is not None, "not a dry run"
    try:
        run = schedule_flow_run(
            api_url,
            FLOW,
            DEPLOYMENT,
            # The store by absolute path: the worker may start in another folder.
            parameters={"campaign_id": campaign.id, "db": str(Path(store.path).resolve())},
            at=when,
            name=f"send · {campaign.chatbot_id} · {campaign.id}",
            tags=[campaign.id, campaign.chatbot_id],
            ui_url=os.environ.get("PREFECT_UI_URL") or None,
        )
    except SchedulingError as exc:
        raise UsageError(
            f"{exc.message.removesuffix('.')}; campaign {campaign.id} is launched but not "
            f"scheduled: send it with `smartchat send {campaign.id}`, or "
            f"`smartchat stop {campaign.id}`."
        ) from None

    local = f"{at} {tz}"
    if json_output:
        print_json(
            {
                "campaign": campaign.to_json(),
                "flow_run": run.to_json(),
                "local_time": local,
            }
        )
        return
    utc = run.scheduled_time.strftime("%Y-%m-%d %H:%M UTC")
    typer.echo(f"Launched campaign {campaign.id}: {campaign.contact_count:,} contacts.")
    typer.echo(f"Its send is scheduled for {shown(local)} ({utc}).")
    typer.echo(f"Flow run: {run.id}")
    typer.echo(f"Watch it: {run.ui_url}")


def register(app: typer.Typer) -> None:
    app.command()(schedule)
