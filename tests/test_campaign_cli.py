"""The campaign commands, in-process through Typer's CliRunner, on real DuckDB files."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smartchat.cli import app
from tests.conftest import CHATBOT_YAML, ROOT, contact_rows, write_contacts

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def aggregator() -> Iterator[str]:
    """Launches send: to a real sandbox aggregator on loopback, fast."""
    from tasks.gateway.sandbox import SandboxConfig, running_sandbox

    config = SandboxConfig(sent_delay=0.01, delivered_delay=0.01)
    with running_sandbox(config) as url, pytest.MonkeyPatch.context() as env:
        env.setenv("SMARTCHAT_GATEWAY_URL", url)
        env.setenv("SMARTCHAT_DEFAULT_SEND_RATE", "500")
        yield url


COMMANDS = [
    ["chatbot", "add"],
    ["chatbot", "list"],
    ["launch"],
    ["stop"],
    ["relaunch"],
    ["status"],
    ["query"],
    ["export"],
    ["send"],
    ["run"],
    ["report"],
    ["schedule"],
    ["serve"],
]


def command_function(path: list[str]):
    """The Python function behind `smartchat <path>`."""
    import typer.main

    group = typer.main.get_command(app)
    for name in path:
        group = group.commands[name]
    return group.callback


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
    # The command's own docstring, not just Typer's generated usage lines.
    summary = command_function(command).__doc__.strip().splitlines()[0]
    assert " ".join(summary.split()) in flat(result.output)


def strict_json(text: str) -> object:
    """JSON as `jq` reads it: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


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


def test_chatbot_names_and_sources_are_shown_as_typed(tmp_path: Path):
    """Rich markup in a name or a path ([/], [bold]) is text, not a style (nor a crash)."""
    db = tmp_path / "s.duckdb"
    folder = tmp_path / "a[" / "b]"  # the source path reads `.../a[/b]/bot.yaml`
    folder.mkdir(parents=True)
    bot = folder / "bot.yaml"
    bot.write_text(
        CHATBOT_YAML.read_text().replace("name: Payment reminder", "name: Pagos [/] [bold]x")
    )
    assert invoke("chatbot", "add", bot, "--db", db).exit_code == 0
    listed = runner.invoke(app, ["chatbot", "list", "--db", str(db)], env={"COLUMNS": "300"})
    assert listed.exit_code == 0, listed.output
    assert "Pagos [/] [bold]x" in listed.output and "a[/b]/bot.yaml" in listed.output


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

    again = invoke("relaunch", campaign, "--contacts", contacts, "--db", db)
    assert again.exit_code == 1
    assert (
        f"Campaign {campaign} was already replaced by {new['id']}: fix and relaunch {new['id']} "
        f"instead (smartchat relaunch {new['id']} --contacts FILE)."
    ) in flat(again.output)

    table = invoke("status", "--db", db)
    assert table.exit_code == 0 and campaign in table.output and new["id"] in table.output
    card = invoke("status", new["id"], "--db", db)
    assert card.exit_code == 0 and f"Replaces {campaign}" in flat(card.output)


def test_relaunch_keeps_sending_as_it_was_unless_told(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(3))
    quiet = launch(db, contacts, "--no-send")

    def relaunch(campaign: str, *extra: str) -> dict[str, object]:
        result = invoke("relaunch", campaign, "--contacts", contacts, "--json", "--db", db, *extra)
        assert result.exit_code == 0, result.output
        campaign_json: dict[str, object] = json.loads(result.stdout)["campaign"]
        return campaign_json

    kept = relaunch(quiet)
    assert (kept["replaces"], kept["send_enabled"]) == (quiet, False)
    sending = relaunch(str(kept["id"]), "--send")
    assert (sending["replaces"], sending["send_enabled"]) == (kept["id"], True)
    still = relaunch(str(sending["id"]))
    assert (still["replaces"], still["send_enabled"]) == (sending["id"], True)
    assert relaunch(str(still["id"]), "--no-send")["send_enabled"] is False


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


def test_an_invalid_file_with_json_prints_the_validate_report(db: Path, tmp_path: Path):
    """--json: the same document on stdout as `smartchat validate --json`, and exit 1."""
    good = write_contacts(tmp_path / "good.tsv", contact_rows(2))
    campaign = launch(db, good)
    bad = write_contacts(tmp_path / "bad.tsv", [["5512345678", "Ana", "2026-12-01", "1"]])
    expected = invoke("validate", bad, "--chatbot", CHATBOT_YAML, "--json")
    assert expected.exit_code == 1
    launched = invoke("launch", "-c", "payment-reminder", "--contacts", bad, "--json", "--db", db)
    relaunched = invoke("relaunch", campaign, "--contacts", bad, "--json", "--db", db)
    for result in (launched, relaunched):
        assert result.exit_code == 1
        assert strict_json(result.stdout) == strict_json(expected.stdout)
    assert len(json.loads(launched.stdout)["errors"]) == 1
    assert invoke("status", campaign, "--json", "--db", db).stdout.count('"launched"') == 1


def test_the_report_sample_setting_applies_to_launch(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bad = write_contacts(
        tmp_path / "bad.tsv", [[f"55123456{i:02d}", "Ana", "2026-12-01", "1"] for i in range(4)]
    )
    monkeypatch.setenv("SMARTCHAT_REPORT_SAMPLE", "1")
    for dry_run in ([], ["--dry-run"]):
        result = invoke("launch", "-c", "payment-reminder", "--contacts", bad, "--db", db, *dry_run)
        assert result.exit_code == 1
        assert "… and 3 more" in flat(result.output)


def test_launching_an_edited_file_of_a_running_campaign_is_refused(db: Path, tmp_path: Path):
    """The FAQ's frozen-contacts rule, where people meet it: launching their fixed file again."""
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(3))
    campaign = launch(db, contacts)
    write_contacts(contacts, contact_rows(4))  # fixed in place, same name
    again = invoke("launch", "-c", "payment-reminder", "--contacts", contacts, "--db", db)
    assert again.exit_code == 1
    assert (
        f"Campaign {campaign} is launched: its contact file can't change. Stop it, fix the file "
        f"and launch a new campaign: smartchat relaunch {campaign} --contacts {contacts}"
    ) in flat(again.output)
    assert "Traceback" not in again.output
    separate = launch(db, contacts, "--separate")
    assert separate != campaign


def test_usage_errors_exit_2(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(1))
    rate = invoke(
        "launch", "-c", "payment-reminder", "--contacts", contacts, "--rate", "0", "--db", db
    )
    both = invoke("query", "SELECT 1", "--csv", "--json", "--db", db)
    missing = invoke("launch", "--contacts", contacts, "--db", db)
    assert (rate.exit_code, both.exit_code, missing.exit_code) == (2, 2, 2)


@pytest.mark.parametrize("rate", ["nan", "inf", "-1", "0"])
def test_a_rate_must_be_a_finite_number_above_0(db: Path, tmp_path: Path, rate: str):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(1))
    result = invoke(
        "launch", "-c", "payment-reminder", "--contacts", contacts, "--rate", rate, "--db", db
    )
    assert result.exit_code == 2, result.output
    assert "--rate must be a finite number of messages per second above 0" in flat(result.output)
    assert invoke("query", "SELECT * FROM campaigns", "--json", "--db", db).stdout == "[]\n"


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


def test_query_output_is_the_same_across_batches(db: Path):
    """--json and --csv stream 10,000 rows at a time; the output is what one write printed."""
    sql = (
        "SELECT range AS n, 'fila ' || range AS text, {'k': range::VARCHAR} AS m, "
        "TIMESTAMPTZ '2026-01-01 00:00:00+00' AS t, "
        "CASE WHEN range = 20001 THEN 'nan'::DOUBLE ELSE range / 2 END AS x FROM range(25000)"
    )
    as_json = invoke("query", sql, "--json", "--db", db)
    assert as_json.exit_code == 0, as_json.output
    rows = strict_json(as_json.stdout)
    assert isinstance(rows, list) and len(rows) == 25_000
    assert rows[20_001]["x"] is None  # NaN: null, as JSON has no NaN
    assert as_json.stdout == json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    assert rows[1] == {"n": 1, "text": "fila 1", "m": {"k": "1"}, "t": rows[0]["t"], "x": 0.5}
    assert rows[0]["t"].startswith("20")  # ISO 8601
    as_csv = list(csv.reader(io.StringIO(invoke("query", sql, "--csv", "--db", db).stdout)))
    assert len(as_csv) == 25_001 and as_csv[-1][:3] == ["24999", "fila 24999", '{"k": "24999"}']
    empty = invoke("query", "SELECT 1 AS n WHERE false", "--json", "--db", db)
    assert empty.stdout == "[]\n"


def test_the_query_table_shows_the_first_rows(db: Path):
    many = invoke("query", "SELECT range AS n FROM range(5000)", "--db", db)
    assert many.exit_code == 0, many.output
    assert "More than 1,000 rows" in flat(many.output)
    assert "… first 1,000 shown; --csv or --json prints every row." in flat(many.output)
    assert " 999 " in many.output and " 1000 " not in many.output
    few = invoke("query", "SELECT range AS n FROM range(3)", "--db", db)
    assert "3 rows" in flat(few.output) and "first" not in few.output


# The query in a process of its own, reporting its peak memory (VmHWM) on stderr at exit.
PEAK_CLI = """
import atexit, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write(f"peak_kb={line.split()[1]}\\n")
atexit.register(peak)
from smartchat.cli import main
main()
"""


def test_a_large_query_streams_in_flat_memory(db: Path):
    """100,000 rows of 1 kB: read whole, they took 500 MB with --json; streamed, ~200 MB."""
    sql = "SELECT range AS n, repeat('x', 1000) AS s FROM range(100000)"
    done = subprocess.run(
        [sys.executable, "-c", PEAK_CLI, "query", sql, "--json", "--db", str(db)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stderr.split("peak_kb=")[1].split()[0]) / 1024
    assert peak_mb < 320, f"peak {peak_mb:.0f} MB"


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
    assert "Queries are read-only" in flat(result.output)
    assert "statements are refused" in flat(result.output)
    assert (
        invoke("query", "SELECT count(*) AS n FROM chatbots", "--json", "--db", db).stdout.count(
            '"n": 1'
        )
        == 1
    )


def test_export_to_a_file_is_a_usage_error(db: Path, tmp_path: Path):
    campaign = launch(db, write_contacts(tmp_path / "c.tsv", contact_rows(2)))
    a_file = tmp_path / "report.txt"
    a_file.write_text("")
    result = invoke("export", campaign, "--to", a_file, "--db", db)
    assert result.exit_code == 2
    message = "".join(result.output.split())  # the long path wraps
    assert "".join(f"Can't write the export to {a_file / campaign} (".split()) in message
    assert "Traceback" not in result.output


def test_export_writes_parquet_files(db: Path, tmp_path: Path):
    campaign = launch(db, write_contacts(tmp_path / "c.tsv", contact_rows(2)))
    result = invoke("export", campaign, "--to", tmp_path / "bi", "--db", db)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bi" / campaign / "campaign_contacts.parquet").exists()
    assert (tmp_path / "bi" / campaign / "messages.parquet").exists()


def test_control_characters_and_huge_values_never_reach_the_terminal_raw(db: Path, tmp_path: Path):
    """An escape sequence in a campaign's name (or any value) must not clear the screen, and a
    5,000,000-character value is cut, not printed over 100,000 lines."""
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(2))
    campaign = launch(db, contacts, "--name", "Pagos\x1b[2J\x07")
    table = invoke("status", "--db", db)
    card = invoke("status", campaign, "--db", db)
    huge = invoke("query", "SELECT repeat('x', 5000000) AS v", "--db", db)
    for result in (table, card, huge):
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b[2J\\x07" in card.output
    assert len(huge.output) < 2_000 and "…" in huge.output


def test_validate_and_launch_take_a_registered_id_or_a_chatbot_file(tmp_path: Path):
    db = tmp_path / "s.duckdb"
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(2))
    unknown = invoke("validate", contacts, "--chatbot", "payment-reminder", "--db", db)
    assert unknown.exit_code == 2
    assert "no chatbot registered with that id" in flat(unknown.output)
    # A file registers on the way, as `chatbot add` does; then its id works everywhere.
    launched = invoke("launch", "-c", CHATBOT_YAML, "--contacts", contacts, "--db", db, "--json")
    assert launched.exit_code == 0, launched.output
    assert json.loads(launched.stdout)["chatbot"] == {"id": "payment-reminder", "version": 1}
    by_id = invoke("validate", contacts, "--chatbot", "payment-reminder", "--db", db)
    assert by_id.exit_code == 0 and "2 contacts ready" in flat(by_id.output)


def test_header_with_a_trailing_space_says_remove_the_space(tmp_path: Path):
    contacts = tmp_path / "c.tsv"
    contacts.write_text("CONTACT \tNAME\tDUE_DATE\tAMOUNT\n+525512345678\tAna\tx\t1\n")
    result = invoke("validate", contacts, "--chatbot", CHATBOT_YAML, "--json")
    errors = json.loads(result.stdout)["errors"]
    assert [e["rule"] for e in errors] == ["header"]
    assert "has spaces after CONTACT: remove them" in errors[0]["message"]
    assert "did you mean" not in errors[0]["message"]


def test_status_on_a_missing_store_says_there_is_none(tmp_path: Path):
    result = invoke("status", "--db", tmp_path / "typo.duckdb")
    assert result.exit_code == 1
    assert f"No SmartChat database at {tmp_path / 'typo.duckdb'}" in flat(result.output)


def test_with_json_an_error_is_a_json_document_on_stdout_too(tmp_path: Path):
    result = invoke("validate", tmp_path / "missing.tsv", "--chatbot", CHATBOT_YAML, "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert (error["type"], error["exit_code"]) == ("ContactFileError", 2)
    assert "was not found" in error["message"]


def test_query_piped_into_head_exits_0(db: Path):
    """The reader closing the pipe early is not an error (`smartchat query --csv | head`)."""
    smartchat = Path(sys.executable).parent / "smartchat"
    pipeline = subprocess.run(
        f"'{smartchat}' query 'SELECT * FROM range(200000)' --csv --db '{db}' | head -n 2; "
        "exit ${PIPESTATUS[0]}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pipeline.returncode == 0, pipeline.stderr
    assert pipeline.stdout.splitlines() == ["range", "0"]
    assert "Traceback" not in pipeline.stderr and "Error" not in pipeline.stderr


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("SMARTCHAT_STORE_LOCK_TIMEOUT", "abc", "a number above 0, at most 3600"),
        ("SMARTCHAT_STORE_LOCK_TIMEOUT", "0", "a number above 0, at most 3600"),
        ("SMARTCHAT_STORE_LOCK_TIMEOUT", "nan", "a number above 0, at most 3600"),
        ("SMARTCHAT_MAX_MESSAGE_CHARS", "-5", "a whole number from 1 to 1600"),
        ("SMARTCHAT_DEFAULT_SEND_RATE", "inf", "a number above 0"),
        ("SMARTCHAT_REPORT_SAMPLE", "many", "a whole number of at least 1"),
    ],
)
def test_a_bad_setting_stops_every_command_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, accepted: str
):
    monkeypatch.setenv(variable, value)
    result = invoke("status", "--db", tmp_path / "s.duckdb")
    assert result.exit_code == 2
    assert f"{variable}={value!r} is not valid" in flat(result.output)
    assert accepted in flat(result.output)
    assert "Traceback" not in result.output


def test_the_auth_token_is_never_repeated_back(monkeypatch: pytest.MonkeyPatch):
    from smartchat.errors import SettingsError
    from smartchat.settings import load_settings

    settings = load_settings({"SMARTCHAT_AUTH_TOKEN": "s3cret-token"})
    assert "s3cret-token" not in repr(settings) and "s3cret-token" not in str(settings)
    assert settings.gateway.auth_token.get_secret_value() == "s3cret-token"
    with pytest.raises(SettingsError) as err:
        load_settings({"SMARTCHAT_AUTH_TOKEN": "s3cret-token", "SMARTCHAT_GATEWAY_TIMEOUT": "x"})
    assert "s3cret-token" not in str(err.value)


def test_launch_sends_unless_no_send(db: Path, tmp_path: Path, aggregator: str):
    import httpx

    httpx.post(f"{aggregator}/sandbox/reset").raise_for_status()
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(4))
    result = invoke(
        "launch", "-c", "payment-reminder", "--contacts", contacts, "--db", db, "--json"
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["send"]["sent"] == 4 and document["send"]["failed"] == 0
    at_sandbox = httpx.get(f"{aggregator}/sandbox/messages").json()
    bodies = [m["body"] for m in (at_sandbox.get("messages", at_sandbox))]
    assert len(bodies) == 4 and all(b.startswith("Hola Name") for b in bodies)
    quiet = invoke(
        "launch",
        "-c",
        "payment-reminder",
        "--contacts",
        contacts,
        "--db",
        db,
        "--again",
        "--no-send",
    )
    assert quiet.exit_code == 0, quiet.output
    again = httpx.get(f"{aggregator}/sandbox/messages").json()
    assert len(again.get("messages", again)) == 4


def test_launch_with_the_aggregator_down_keeps_the_campaign_to_send_later(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SMARTCHAT_GATEWAY_URL", "http://127.0.0.1:9")  # nothing listens
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(2))
    result = invoke("launch", "-c", "payment-reminder", "--contacts", contacts, "--db", db)
    assert result.exit_code == 2
    message = flat(result.output)
    assert "is launched but not sent" in message and "smartchat send c-" in message
    assert "Traceback" not in result.output
    status = json.loads(invoke("status", "--json", "--db", db).stdout)
    assert [(c["status"], c["sent"]) for c in status] == [("launched", 0)]


def test_a_dry_run_shows_quiet_hours_and_cost(db: Path, tmp_path: Path, monkeypatch):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(12))
    prices = tmp_path / "prices.tsv"
    prices.write_text(
        "# test prices\ncountry\tprice_per_segment\tcurrency\nMX\t0.05\tUSD\n*\t0.01\tUSD\n"
    )
    monkeypatch.setenv("SMARTCHAT_PRICES", str(prices))
    monkeypatch.setenv("SMARTCHAT_QUIET_HOURS", "00:00-23:59")  # nearly always quiet
    result = invoke(
        "launch", "-c", "payment-reminder", "--contacts", contacts, "--db", db, "--dry-run",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)["preview"]
    assert preview["quiet_hours"] == "00:00-23:59"
    assert 0 < preview["waiting"] <= 12
    cost = preview["cost"]
    by_country = {row["country"]: row for row in cost["by_country"]}
    # The opening message is 2 segments (UCS-2) for each of the 2 Mexican contacts.
    assert (by_country["MX"]["segments"], by_country["MX"]["cost"]) == (4, 0.2)
    assert cost["opening"] == round(sum(r["cost"] for r in cost["by_country"]), 6)
    assert cost["upper_bound"] > cost["opening"]
    assert invoke("query", "SELECT count(*) AS n FROM campaigns", "--json", "--db", db).stdout
    assert json.loads(invoke("status", "--json", "--db", db).stdout) == []  # nothing written
