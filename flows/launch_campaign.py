"""Flow `launch_campaign`: validate a contact file against a chatbot, then launch a campaign.

The same rules and the same single store transaction as `smartchat launch` (tasks.campaigns);
the validation report is a table artifact, the launched campaign a markdown one. The validated
contacts staged between the two tasks are removed whatever happens.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from smartchat.errors import ContactValidationError
from tasks.campaign_tasks import discard_staged, store_campaign, validate_campaign_contacts
from tasks.campaigns import check_send_rate


@flow(name="launch-campaign")
def launch_campaign(
    chatbot_id: str,
    contacts_path: str,
    name: str | None = None,
    rate: float | None = None,
    db: str | None = None,
    send: bool = True,
    separate: bool = False,
) -> dict[str, Any]:
    """Launch `contacts_path` with the chatbot's latest version; returns the campaign.

    `separate`: launch even though a running campaign of this chatbot came from another file of
    the same name (otherwise refused as an attempt to change that campaign's contacts).
    """
    check_send_rate(rate)  # before a long validation
    validated = validate_campaign_contacts(chatbot_id, contacts_path, db)
    try:
        if not validated.valid:
            problems = validated.error_count
            raise ContactValidationError(
                f"{contacts_path} can't be launched with chatbot {chatbot_id}: {problems:,} "
                f"problem{'s' * (problems != 1)} (see the campaign-launch-validation artifact). "
                "Nothing was written.",
                None,
            )
        return store_campaign(validated, name=name, rate=rate, send=send, db=db, separate=separate)
    finally:
        discard_staged(validated)  # the phone numbers never outlive the flow run


if __name__ == "__main__":
    import sys

    campaign = launch_campaign(sys.argv[1], sys.argv[2])
    print(f"Launched campaign {campaign['id']}")
