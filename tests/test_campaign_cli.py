"""The campaign commands, in-process through Typer's CliRunner, on real DuckDB files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smartchat.cli import app
from tests.conftest import CHATBOT_YAML, contact_rows, write_contacts

runner = CliRunner()
COMMANDS = [
    ["chatbot", "add"],
    ["chatbot", "list"],
    ["launch"],
    ["stop"],
    ["relaunch"],
    ["status"],
    ["query"],
    ["export"],
]


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """Output with rich's line wrapping undone, for phrase checks."""
    return " ".join(text.split())


def launch(db: Path, contacts: Path, *extra: str) -> str:
    result = invoke(
        "launch", "-c", "payment-reminder", "--contacts", contacts, "--db", db, "--json", *extra
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["campaign"]["id"]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_a_db_option(command: list[str]):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "--db" in result.output
    assert len(result.output.split("Usage:")[1].strip().splitlines()) > 3  # a docstring


def test_chatbot_add_then_list(tmp_path: Path):
    db = tmp_path / "s.duckdb"
    first = invoke("chatbot", "add", CHATBOT_YAML, "--db", db)
    again = invoke("chatbot", "add", CHATBOT_YAML, "--db", db)
    assert first.exit_code == again.exit_code == 0
    assert "Registered chatbot payment-reminder version 1" in first.output
    assert "Unchanged: chatbot payment-reminder version 1" in again.output
    listed = invoke("chatbot", "list", "--json", "--db", db)
    assert [(b["id"], b["version"], b["language"]) for b in json.loads(listed.stdout)] == [
        ("payment-reminder", 1, "es")
    ]


def test_a_language_change_is_refused_with_exit_1(tmp_path: Path):
    db = tmp_path / "s.duckdb"
    invoke("chatbot", "add", CHATBOT_YAML, "--db", db)
    english = tmp_path / "en.yaml"
    english.write_text(CHATBOT_YAML.read_text().replace("language: es", "language: en"))
    result = invoke("chatbot", "add", english, "--db", db)
    assert result.exit_code == 1
    assert "language can't change" in flat(result.output)
    assert "Traceback" not in result.output


def test_the_lifecycle_from_the_command_line(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(6))
    plain = invoke("launch", "-c", "payment-reminder", "--contacts", contacts, "--db", db)
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.startswith("Launched campaign c-")
    campaign = plain.stdout.split()[2]

    status = invoke("status", campaign, "--json", "--db", db)
    assert status.exit_code == 0, status.output
    shown = json.loads(status.stdout)
    assert (shown["campaign_id"], shown["status"], shown["contacts"]) == (campaign, "launched", 6)
    assert len(shown["countries"]) == 6

    for _ in range(2):  # stopping twice is harmless
        stopped = invoke("stop", campaign, "--db", db)
        assert stopped.exit_code == 0, stopped.output
    assert f"Campaign {campaign} is already stopped" in stopped.output

    relaunched = invoke(
        "relaunch", campaign, "--contacts", contacts, "--no-send", "--json", "--db", db
    )
    assert relaunched.exit_code == 0, relaunched.output
    new = json.loads(relaunched.stdout)["campaign"]
    assert (new["replaces"], new["send_enabled"]) == (campaign, False)

    table = invoke("status", "--db", db)
    assert table.exit_code == 0 and campaign in table.output and new["id"] in table.output
    card = invoke("status", new["id"], "--db", db)
    assert card.exit_code == 0 and f"Replaces {campaign}" in flat(card.output)


def test_dry_run_shows_the_report_and_writes_nothing(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(4))
    before = db.read_bytes()
    result = invoke(
        "launch", "-c", "payment-reminder", "--contacts", contacts, "--dry-run", "--db", db
    )
    assert result.exit_code == 0, result.output
    assert "4 contacts ready" in flat(result.output)
    assert "Dry run: nothing was written" in flat(result.output)
    assert db.read_bytes() == before


def test_an_invalid_file_is_reported_with_exit_1(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", [["5512345678", "Ana", "2026-12-01", "1"]])
    result = invoke("launch", "-c", "payment-reminder", "--contacts", contacts, "--db", db)
    assert result.exit_code == 1
    assert "can't be used with chatbot" in flat(result.output)
    assert "Traceback" not in result.output
    assert "[]" in invoke("query", "SELECT * FROM campaigns", "--json", "--db", db).stdout


def test_usage_errors_exit_2(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(1))
    rate = invoke(
        "launch", "-c", "payment-reminder", "--contacts", contacts, "--rate", "0", "--db", db
    )
    both = invoke("query", "SELECT 1", "--csv", "--json", "--db", db)
    missing = invoke("launch", "--contacts", contacts, "--db", db)
    assert (rate.exit_code, both.exit_code, missing.exit_code) == (2, 2, 2)


def test_unknown_campaign_exits_1(db: Path):
    for command in (["stop", "c-nope"], ["status", "c-nope"], ["export", "c-nope", "--to", "x"]):
        result = invoke(*command, "--db", db)
        assert result.exit_code == 1 and "No campaign 'c-nope'" in flat(result.output)


INJECTION = "'); DROP TABLE campaigns; --"


def test_query_outputs_json_csv_and_a_table(db: Path, tmp_path: Path):
    rows = contact_rows(3)
    rows[0][1] = INJECTION
    contacts = write_contacts(tmp_path / "c.tsv", rows)
    campaign = launch(db, contacts, "--name", INJECTION)
    sql = (
        "SELECT c.name, k.phone, k.custom_data FROM campaigns c "
        "JOIN campaign_contacts k ON k.campaign_id = c.id ORDER BY k.row_number"
    )

    as_json = json.loads(invoke("query", sql, "--json", "--db", db).stdout)
    assert as_json[0] == {
        "name": INJECTION,
        "phone": "+525512000000",
        "custom_data": {"NAME": INJECTION, "DUE_DATE": "2026-12-01", "AMOUNT": "100"},
    }
    as_csv = list(csv.reader(io.StringIO(invoke("query", sql, "--csv", "--db", db).stdout)))
    assert as_csv[0] == ["name", "phone", "custom_data"] and len(as_csv) == 4
    assert json.loads(as_csv[1][2])["NAME"] == INJECTION
    table = invoke("query", "SELECT id FROM campaigns", "--db", db)
    assert table.exit_code == 0 and campaign in table.output


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO chatbots SELECT * FROM chatbots",
        "UPDATE campaigns SET status = 'launched'",
        "DELETE FROM campaigns",
        "DROP TABLE campaigns",
        "COPY campaigns TO 'stolen.csv'",
        "ATTACH 'other.duckdb'",
        "PRAGMA threads=1",
    ],
)
def test_query_refuses_writes_with_exit_1(db: Path, sql: str):
    result = invoke("query", sql, "--db", db)
    assert result.exit_code == 1
    assert "smartchat query is read-only" in flat(result.output)
    assert "statements are refused" in flat(result.output)
    assert (
        invoke("query", "SELECT count(*) AS n FROM chatbots", "--json", "--db", db).stdout.count(
            '"n": 1'
        )
        == 1
    )


def test_export_writes_parquet_files(db: Path, tmp_path: Path):
    campaign = launch(db, write_contacts(tmp_path / "c.tsv", contact_rows(2)))
    result = invoke("export", campaign, "--to", tmp_path / "bi", "--db", db)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bi" / campaign / "campaign_contacts.parquet").exists()
    assert (tmp_path / "bi" / campaign / "messages.parquet").exists()
