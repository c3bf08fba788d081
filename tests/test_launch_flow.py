"""The `launch_campaign` flow: real flow runs against a temporary Prefect API and DuckDB file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from smartchat.errors import ContactValidationError
from tasks.store import open_store
from tests.conftest import at, contact_rows, write_contacts


def latest_artifact(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read() -> Any:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=50
            )
            return sorted(found, key=lambda a: a.created)[-1]

    return asyncio.run(read())


def table_rows(artifact: Any) -> list[dict[str, Any]]:
    data = artifact.data
    return data if isinstance(data, list) else yaml.safe_load(data)


def test_the_flow_launches_and_publishes_the_report(prefect_harness, db: Path, tmp_path: Path):
    from flows.launch_campaign import launch_campaign

    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(12))
    campaign = launch_campaign("payment-reminder", str(contacts), rate=2.5, db=str(db))

    assert campaign["status"] == "launched" and campaign["contact_count"] == 12
    with open_store(at(db), read_only=True) as conn:
        stored = conn.execute(
            "SELECT c.send_rate, count(*) FROM campaigns c "
            "JOIN campaign_contacts k ON k.campaign_id = c.id WHERE c.id = ? GROUP BY ALL",
            [campaign["id"]],
        ).fetchall()
    assert stored == [(2.5, 12)]
    report = latest_artifact("campaign-launch-validation")
    assert report.type == "table"
    assert sum(r["contacts"] for r in table_rows(report)) == 12
    assert campaign["id"] in latest_artifact("campaign-launch").data


def test_an_invalid_file_fails_the_flow_and_writes_nothing(
    prefect_harness, db: Path, tmp_path: Path
):
    from flows.launch_campaign import launch_campaign

    bad = contact_rows(3) + [contact_rows(1)[0]]  # row 5 repeats row 2's phone
    contacts = write_contacts(tmp_path / "bad.tsv", bad)
    with pytest.raises(ContactValidationError, match=r"1 problem\. Nothing was written"):
        launch_campaign("payment-reminder", str(contacts), db=str(db))

    errors = table_rows(latest_artifact("campaign-launch-validation"))
    assert [(e["row"], e["header"]) for e in errors] == [(5, "CONTACT")]
    with open_store(at(db), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM campaigns").fetchall() == [(0,)]


def test_the_staged_contacts_are_removed_when_the_store_fails(
    prefect_harness, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The validated rows (phone numbers) staged between the tasks never outlive the flow run."""
    import tempfile

    from flows.launch_campaign import launch_campaign
    from tasks import campaigns

    staging = tmp_path / "tmp"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(campaigns, "record_launch", disk_full)
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(3))
    with pytest.raises(OSError, match="No space left"):
        launch_campaign("payment-reminder", str(contacts), db=str(db))
    assert not list(staging.glob("smartchat-launch-*"))

    monkeypatch.undo()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    assert launch_campaign("payment-reminder", str(contacts), db=str(db))["contact_count"] == 3
    assert not list(staging.glob("smartchat-launch-*"))
