"""Flow `validate_contacts`: check a contact file against a chatbot, report to the Prefect UI."""

from __future__ import annotations

from prefect import flow

from flows.naming import run_name, tag_run
from smartchat.settings import load_settings
from tasks.validation import ValidationReport
from tasks.validation_tasks import validate_contact_file_task


@flow(name="validate-contacts", flow_run_name=run_name("validate"))
def validate_contacts(contacts_path: str, chatbot_path: str) -> ValidationReport:
    """The same check as `smartchat validate`, with the result as a table artifact."""
    tag_run("validate", contacts_path=contacts_path, chatbot_path=chatbot_path)
    limit = load_settings().validation.max_message_chars
    return validate_contact_file_task(contacts_path, chatbot_path, limit)


if __name__ == "__main__":
    import sys

    result = validate_contacts(*sys.argv[1:3])
    print(f"valid={result.valid} contacts={result.contact_count} errors={len(result.errors)}")
