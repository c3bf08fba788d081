"""The `validate_contacts` flow: a real Prefect flow run against a temporary Prefect API."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOT = str(ROOT / "data" / "payment-reminder.yaml")
SAMPLE = str(ROOT / "data" / "sample-contacts.tsv")


def _latest_artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=50
            )
            return sorted(found, key=lambda a: a.created)[-1]

    return asyncio.run(read())


def test_flow_validates_and_publishes_country_table(prefect_harness):
    from flows.validate_contacts import validate_contacts

    report = validate_contacts(SAMPLE, BOT)
    assert report.valid and report.contact_count == 12
    artifact = _latest_artifact("contact-validation")
    assert artifact.type == "table"
    rows = artifact.data if isinstance(artifact.data, list) else yaml.safe_load(artifact.data)
    assert sum(r["contacts"] for r in rows) == 12
    assert {"iso": "MX", "calling_code": "+52"}.items() <= next(
        r for r in rows if r["iso"] == "MX"
    ).items()


def test_flow_publishes_the_errors(prefect_harness, tmp_path):
    from flows.validate_contacts import validate_contacts

    bad = tmp_path / "bad.tsv"
    bad.write_text("CONTACT\tNAME\tDUE_DATE\tAMOUNT\n5255\tAna\t2026-12-01\t1\n", encoding="utf-8")
    report = validate_contacts(str(bad), BOT)
    assert not report.valid
    artifact = _latest_artifact("contact-validation")
    rows = artifact.data if isinstance(artifact.data, list) else yaml.safe_load(artifact.data)
    assert [(r["row"], r["column"], r["value"]) for r in rows] == [(2, "A", "5255")]
    assert "not valid" in artifact.description


def test_cli_and_flow_give_the_same_verdict(prefect_harness):
    from flows.validate_contacts import validate_contacts
    from schemas.chatbot import load_chatbot
    from tasks.validation import check_contact_file

    assert (
        validate_contacts(SAMPLE, BOT).to_json()
        == check_contact_file(SAMPLE, load_chatbot(BOT), max_message_chars=1600).to_json()
    )


@pytest.mark.parametrize(
    "deployment",
    yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"],
    ids=lambda d: d["name"],
)
def test_prefect_yaml_entrypoints_import(deployment):
    from prefect import Flow

    module_path, name = deployment["entrypoint"].split(":")
    module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
    assert isinstance(getattr(module, name), Flow)
