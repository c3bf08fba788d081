"""Prefect tasks for launching a campaign: validate (with the report as an artifact), then store.

The validated rows travel between the two tasks as a Parquet file named in a small pydantic
model, never as a DataFrame task input: a task's inputs are hashed, logged and may be persisted,
and a retry of the store task must not depend on the memory of the one before. The file holds
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

from smartchat.errors import StoreError
from tasks import campaigns
from tasks.store import open_store
from tasks.validation import validate_contacts
from tasks.validation_tasks import publish_validation_report

VALIDATION_ARTIFACT = "campaign-launch-validation"
LAUNCH_ARTIFACT = "campaign-launch"


class ValidatedContacts(BaseModel):
    """What the store task needs: ids, the file's identity and where the checked rows wait."""

    chatbot_id: str
    chatbot_version: int
    contacts_path: str
    contacts_sha256: str
    contact_count: int
    valid: bool
    error_count: int
    staged: str | None = None


# A contact file can change under the same path between runs: never reuse a cached verdict.
@task(name="validate-campaign-contacts", cache_policy=NO_CACHE)
def validate_campaign_contacts(
    chatbot_id: str, contacts_path: str, db: str | None = None
) -> ValidatedContacts:
    """Check the file against the chatbot's latest version; publish the report as a table."""
    with open_store(db, read_only=True) as conn:
        chatbot = campaigns.get_chatbot(conn, chatbot_id)
    report = validate_contacts(contacts_path, chatbot.load())
    publish_validation_report(report, key=VALIDATION_ARTIFACT)
    staged = None
    if report.valid:
        folder = Path(tempfile.mkdtemp(prefix="smartchat-launch-"))
        staged = str(folder / "contacts.parquet")
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
        valid=report.valid,
        error_count=len(report.errors),
        staged=staged,
    )


def discard_staged(validated: ValidatedContacts | None) -> None:
    """Remove the staged contacts (phone numbers) and their temporary folder; harmless twice."""
    if validated is not None and validated.staged is not None:
        shutil.rmtree(Path(validated.staged).parent, ignore_errors=True)


def _store_was_busy(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only when the store was locked by another process: the write never started then.

    Any other failure (a bug, a full disk) would fail the same way again.
    """
    try:
        state.result()
    except StoreError as exc:
        return "is busy" in exc.message
    except Exception:
        return False
    return False


@task(
    name="store-campaign",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_store_was_busy,
)
def store_campaign(
    validated: ValidatedContacts,
    name: str | None = None,
    rate: float | None = None,
    send: bool = True,
    db: str | None = None,
    separate: bool = False,
) -> dict[str, Any]:
    """Contacts, file hash and the launched campaign in one transaction; returns the campaign.

    The staged file is removed after the commit; on failure it is kept for a retry, and the
    caller removes it (`discard_staged`) once the task has failed for good.
    """
    if validated.staged is None:
        raise ValueError("store_campaign needs contacts that passed validation")
    with open_store(db, read_only=True) as conn:
        chatbot = campaigns.get_chatbot(conn, validated.chatbot_id, validated.chatbot_version)
    contacts = pl.read_parquet(validated.staged)
    campaign = campaigns.store_campaign(
        chatbot,
        contacts,
        contacts_file=Path(validated.contacts_path).name,
        contacts_sha256=validated.contacts_sha256,
        name=name or campaigns.default_name(chatbot, validated.contacts_path),
        rate=rate,
        send=send,
        separate=separate,
        contacts_path=validated.contacts_path,
        db=db,
    )
    # Only after the commit: a retry of this task still finds its rows.
    discard_staged(validated)
    create_markdown_artifact(
        key=LAUNCH_ARTIFACT,
        markdown=(
            f"Launched campaign **{campaign.id}**: {campaign.contact_count:,} contacts from "
            f"`{campaign.contacts_file}`, chatbot `{campaign.chatbot_id}` "
            f"v{campaign.chatbot_version}, {campaign.send_rate:g} messages/s"
            f"{'' if campaign.send_enabled else ', not sending (--no-send)'}."
        ),
        description=f"Campaign {campaign.id}",
    )
    return campaign.to_json()
