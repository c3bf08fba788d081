"""Prefect tasks for launching a campaign: the launch steps of `tasks.campaigns`, as tasks.

    validate_for_launch_task ──(staged Parquet)──► record_launch_task

The validated rows travel between the two tasks as a Parquet file named in a small pydantic
model, never as a DataFrame task input: a task's inputs are hashed, logged and may be persisted,
and a retry of the record task must not depend on the memory of the one before. The file holds
phone numbers: whoever runs the two tasks removes it with `discard_staged` whatever happens (the
flow does, in a `finally`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
from prefect import Task, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from pydantic import BaseModel

from smartchat.errors import ContactValidationError, is_retryable
from smartchat.settings import StoreSettings
from tasks import campaigns
from tasks.validation_tasks import publish_validation_report

VALIDATION_ARTIFACT = "campaign-launch-validation"
LAUNCH_ARTIFACT = "campaign-launch"


class ValidatedContacts(BaseModel):
    """What the record task needs: the chatbot version, the file's identity, the staged rows."""

    chatbot_id: str
    chatbot_version: int
    contacts_path: str
    contacts_sha256: str
    contact_count: int
    staged: str
    contacts_sheet: str | None = None


# A contact file can change under the same path between runs: never reuse a cached verdict.
@task(name="validate-campaign-contacts", cache_policy=NO_CACHE)
def validate_for_launch_task(
    store: StoreSettings,
    chatbot_id: str,
    contacts_path: str,
    max_message_chars: int,
    sheet: str | None = None,
) -> ValidatedContacts:
    """Launch steps 1 and 2, publishing the report as a table artifact whatever it says.

    An invalid file fails the task with the same ContactValidationError as `smartchat launch`.
    """
    chatbot = campaigns.resolve_chatbot(store, chatbot_id)
    try:
        report = campaigns.validate_for_launch(
            chatbot, contacts_path, max_message_chars=max_message_chars, sheet=sheet
        )
    except ContactValidationError as exc:
        publish_validation_report(exc.report, key=VALIDATION_ARTIFACT)
        raise
    publish_validation_report(report, key=VALIDATION_ARTIFACT)
    folder = Path(tempfile.mkdtemp(prefix="smartchat-launch-"))
    staged = folder / "contacts.parquet"
    try:
        report.contacts.write_parquet(staged)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return ValidatedContacts(
        chatbot_id=chatbot.id,
        chatbot_version=chatbot.version,
        contacts_path=str(contacts_path),
        contacts_sha256=report.file_sha256,
        contact_count=report.contact_count,
        staged=str(staged),
        contacts_sheet=report.sheet_name,
    )


def discard_staged(validated: ValidatedContacts | None) -> None:
    """Remove the staged contacts (phone numbers) and their temporary folder; harmless twice."""
    if validated is not None:
        shutil.rmtree(Path(validated.staged).parent, ignore_errors=True)


def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what may succeed unchanged (a busy store: the write never started then).

    Any other failure (a bug, a full disk, a refused file) would fail the same way again.
    """
    try:
        state.result()
    except Exception as exc:
        return is_retryable(exc)
    return False


@task(
    name="record-launch",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_if_transient,
)
def record_launch_task(
    store: StoreSettings, validated: ValidatedContacts, plan: campaigns.LaunchPlan
) -> dict[str, Any]:
    """Launch step 3: contacts, file hash and the campaign in one transaction.

    The staged file is removed after the commit; on failure it is kept for a retry, and the
    caller removes it (`discard_staged`) once the task has failed for good.
    """
    chatbot = campaigns.resolve_chatbot(store, validated.chatbot_id, validated.chatbot_version)
    campaign = campaigns.record_launch(
        store,
        chatbot,
        pl.read_parquet(validated.staged),
        contacts_path=validated.contacts_path,
        contacts_sha256=validated.contacts_sha256,
        plan=plan,
        contacts_sheet=validated.contacts_sheet,
    )
    # Only after the commit: a retry of this task still finds its rows.
    discard_staged(validated)
    create_markdown_artifact(
        key=LAUNCH_ARTIFACT,
        markdown=(
            f"Launched campaign **{campaign.id}**: {campaign.contact_count:,} contact"
            f"{'s' * (campaign.contact_count != 1)} from "
            f"`{campaign.contacts_file}`, chatbot `{campaign.chatbot_id}` "
            f"v{campaign.chatbot_version}, {campaign.send_rate:g} messages/s"
            f"{'' if campaign.send_enabled else ', not sending'}."
        ),
        description=f"Campaign {campaign.id}",
    )
    return campaign.to_json()
