"""Flow `launch_campaign`: validate a contact file against a chatbot, then launch a campaign.

The same steps, rules and single store transaction as `smartchat launch` (tasks.campaigns); the
validation report is a table artifact, the launched campaign a markdown one. The validated
contacts staged between the two tasks are removed whatever happens.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.naming import run_name, tag_run
from schemas.campaigns import check_send_rate
from smartchat.settings import load_settings
from tasks.campaign_tasks import discard_staged, record_launch_task, validate_for_launch_task
from tasks.campaigns import LaunchPlan


@flow(name="launch-campaign", flow_run_name=run_name("launch"))
def launch_campaign(
    chatbot_id: str,
    contacts_path: str,
    name: str | None = None,
    rate: float | None = None,
    db: str | None = None,
    send: bool = True,
    separate: bool = False,
    again: bool = False,
    sheet: str | None = None,
) -> dict[str, Any]:
    """Launch `contacts_path` with the chatbot's latest version; returns the campaign.

    `rate`: messages per second (default SMARTCHAT_DEFAULT_SEND_RATE). `db`: the store (default
    SMARTCHAT_DB). `separate`: launch even though a running campaign of this chatbot came from
    another file of the same name (otherwise refused as an attempt to change its contacts).
    `again`: launch even though a running campaign of this chatbot has this very file.
    `sheet`: the .xlsx sheet (name or number), default the first visible one with values.
    """
    tag_run("launch", chatbot_id=chatbot_id, contacts_path=contacts_path)
    settings = load_settings()
    store = settings.store.at(db)
    plan = LaunchPlan(
        name=name,
        rate=check_send_rate(settings.sending.default_rate if rate is None else rate),
        send=send,
        separate=separate,
        again=again,
    )
    validated = validate_for_launch_task(
        store, chatbot_id, contacts_path, settings.validation.max_message_chars, sheet
    )
    try:
        return record_launch_task(store, validated, plan)
    finally:
        discard_staged(validated)  # the phone numbers never outlive the flow run


if __name__ == "__main__":
    import sys

    campaign = launch_campaign(sys.argv[1], sys.argv[2])
    print(f"Launched campaign {campaign['id']}")
