"""Prefect tasks for contact validation: thin wrappers over `tasks.validation`.

Tasks take small parameters (paths, ids, numbers) and open files themselves: a DataFrame (a
report holds one) is never a task input, so the artifact is published inside the task that made
the report.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from schemas.chatbot import load_chatbot
from schemas.contacts import RULES
from tasks.validation import ValidationReport, check_contact_file

# The Prefect UI renders every row of a table artifact; past this the full list is in --json.
ARTIFACT_ROWS = 1_000


# A contact file can change between runs under the same path: never serve a cached verdict.
@task(name="validate-contact-file", cache_policy=NO_CACHE)
def validate_contact_file_task(
    contacts_path: str,
    chatbot_path: str,
    max_message_chars: int,
    artifact_key: str = "contact-validation",
) -> ValidationReport:
    """Validate, and publish the result as a table artifact for the Prefect UI."""
    report = check_contact_file(
        contacts_path, load_chatbot(chatbot_path), max_message_chars=max_message_chars
    )
    publish_validation_report(report, key=artifact_key)
    return report


def publish_validation_report(report: ValidationReport, key: str) -> str:
    """A table artifact for the Prefect UI: the errors, or contacts per country on success."""
    if report.valid:
        table = [
            {
                "country": c.name,
                "iso": c.iso,
                "calling_code": f"+{c.calling_code}",
                "contacts": c.contacts,
            }
            for c in report.countries
        ]
        description = (
            f"**{report.source}**: {report.contact_count:,} contact"
            f"{'s' * (report.contact_count != 1)} valid for chatbot "
            f"`{report.chatbot_id}`."
        )
    else:
        table = [
            {
                "row": e.row,
                "column": e.column_letter or "",
                "header": e.column or "",
                "value": e.value or "",
                "rule": RULES.get(e.rule, e.rule),
                "message": e.message,
            }
            for e in report.errors[:ARTIFACT_ROWS]
        ]
        counts = ", ".join(f"{RULES.get(r, r)}: {n:,}" for r, n in report.error_counts().items())
        shown = "" if len(report.errors) <= ARTIFACT_ROWS else f" (first {ARTIFACT_ROWS:,} shown)"
        description = (
            f"**{report.source}** is not valid for chatbot `{report.chatbot_id}`: "
            f"{len(report.errors):,} problem{'s' * (len(report.errors) != 1)}{shown}. {counts}."
        )
    artifact_id = create_table_artifact(key=key, table=table, description=description)
    return str(artifact_id)
