"""The campaign lifecycle (product FAQ) on real DuckDB files and real contact files."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from schemas.campaigns import CampaignStatus
from smartchat.errors import (
    CampaignAlreadyReplaced,
    CampaignAlreadyRunning,
    CampaignFrozen,
    CampaignStateError,
    ChatbotError,
    ChatbotLanguageFrozen,
    ContactValidationError,
    InvalidSendRate,
    NotFoundError,
    OutputFileError,
    QueryError,
    SettingsError,
)
from smartchat.settings import load_settings
from tasks import campaigns, queries
from tasks.store import open_store
from tests.conftest import CHATBOT_YAML, ROOT, at, contact_rows, write_contacts

LIMIT = 1600  # SMARTCHAT_MAX_MESSAGE_CHARS as shipped

INJECTION = "'); DROP TABLE campaigns; --"
# The installed console script: an analyst's process, start-up included.
SMARTCHAT = shutil.which("smartchat", path=str(Path(sys.executable).parent)) or "smartchat"


def launch(
    db: Path, contacts: Path, *, chatbot: str = "payment-reminder", dry_run: bool = False, **plan
) -> campaigns.LaunchResult:
    """`smartchat launch` as the library takes it: `plan` holds name, rate, send, separate."""
    return campaigns.launch(
        at(db),
        chatbot,
        contacts,
        plan=campaigns.LaunchPlan(**plan),
        max_message_chars=LIMIT,
        dry_run=dry_run,
    )


def register(db: Path, chatbot: Path) -> campaigns.Registration:
    return campaigns.register_chatbot(at(db), chatbot, max_message_chars=LIMIT)


def relaunch(db: Path, campaign_id: str, contacts: Path, **options) -> campaigns.LaunchResult:
    return campaigns.relaunch(at(db), campaign_id, contacts, max_message_chars=LIMIT, **options)


def rows(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with open_store(at(db), read_only=True) as conn:
        return conn.execute(sql, list(params)).fetchall()


def edited_chatbot(tmp_path: Path, old: str, new: str) -> Path:
    """The sample chatbot with one line changed (text, so YAML answers like `no` stay text)."""
    text = CHATBOT_YAML.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "edited.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


# --- chatbots ----------------------------------------------------------------------------------


def test_same_content_is_the_same_version_and_an_edit_is_a_new_one(db: Path, tmp_path: Path):
    again = register(db, CHATBOT_YAML)
    assert (again.chatbot.version, again.created) == (1, False)
    renamed = edited_chatbot(tmp_path, "name: Payment reminder", "name: Recordatorio")
    edited = register(db, renamed)
    assert (edited.chatbot.version, edited.created) == (2, True)
    assert [(u.chatbot.version, u.campaigns) for u in campaigns.list_chatbots(at(db))] == [
        (1, 0),
        (2, 0),
    ]


def test_adding_an_earlier_definition_again_makes_it_current(db: Path, tmp_path: Path):
    """People revert an edit by adding the old file back: new campaigns must use it."""
    register(db, edited_chatbot(tmp_path, "name: Payment reminder", "name: v2"))
    back = register(db, CHATBOT_YAML)
    assert (back.chatbot.version, back.created, back.reactivated) == (1, False, True)
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(2))
    assert launch(db, contacts).campaign.chatbot_version == 1
    again = register(db, CHATBOT_YAML)  # already current: nothing changes
    assert (again.created, again.reactivated) == (False, False)


def test_a_fixed_text_over_the_limit_is_refused_when_the_chatbot_is_added(db: Path, tmp_path: Path):
    long = edited_chatbot(tmp_path, "Un asesor te llamará.", "x" * 1_700)
    with pytest.raises(ChatbotError, match="steps.callback.say"):
        register(db, long)
    assert rows(db, "SELECT count(*) FROM chatbots") == [(1,)]


def test_a_chatbots_language_cant_change(db: Path, tmp_path: Path):
    with pytest.raises(ChatbotLanguageFrozen) as err:
        register(db, edited_chatbot(tmp_path, "language: es", "language: en"))
    assert "A chatbot's language can't change; create a new chatbot instead" in str(err.value)
    assert rows(db, "SELECT count(*) FROM chatbots") == [(1,)]


def test_launching_an_unknown_chatbot_names_the_known_ones(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(3))
    with pytest.raises(NotFoundError, match="registered: payment-reminder"):
        launch(db, contacts, chatbot="nope")


# --- launch ------------------------------------------------------------------------------------


def test_launch_stores_the_validated_contacts_and_the_files_hash(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "contacts.tsv", contact_rows(12))
    result = launch(db, contacts, rate=5)
    campaign = result.campaign
    assert campaign is not None and campaign.status == CampaignStatus.LAUNCHED
    assert campaign.id.startswith("c-") and len(campaign.id) == len("c-20261125-7f3a")
    assert campaign.contacts_sha256 == hashlib.sha256(contacts.read_bytes()).hexdigest()
    assert (campaign.contacts_file, campaign.contact_count, campaign.send_rate) == (
        "contacts.tsv",
        12,
        5.0,
    )
    stored = rows(
        db,
        "SELECT row_number, phone, country, custom_data['AMOUNT'] FROM campaign_contacts "
        "WHERE campaign_id = ? ORDER BY row_number LIMIT 2",
        campaign.id,
    )
    assert stored == [(2, "+525512000000", "MX", "100"), (3, "+34610000000", "ES", "101")]


def test_a_dry_run_writes_nothing(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(5))
    before = db.read_bytes()
    result = launch(db, contacts, dry_run=True)
    assert result.campaign is None and result.report.contact_count == 5
    assert db.read_bytes() == before


def test_an_invalid_file_writes_nothing(db: Path, tmp_path: Path):
    bad = contact_rows(3)
    bad[1][1] = " "  # a blank NAME
    contacts = write_contacts(tmp_path / "c.tsv", bad)
    with pytest.raises(ContactValidationError) as err:
        launch(db, contacts)
    assert err.value.report.errors[0].rule == "blank"
    assert rows(db, "SELECT count(*) FROM campaigns") == [(0,)]
    assert rows(db, "SELECT count(*) FROM campaign_contacts") == [(0,)]


def test_a_phone_is_once_per_campaign_but_in_any_number_of_campaigns(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(4))
    first = launch(db, contacts).campaign
    second = launch(db, contacts, again=True).campaign
    assert first and second and first.id != second.id
    assert rows(db, "SELECT count(DISTINCT campaign_id) FROM campaign_contacts") == [(2,)]

    repeated = contact_rows(4) + [contact_rows(1)[0]]
    with pytest.raises(ContactValidationError) as err:
        launch(db, write_contacts(tmp_path / "r.tsv", repeated))
    assert [e.rule for e in err.value.report.errors] == ["duplicate_phone"]
    assert err.value.report.errors[0].row == 6


def test_a_launched_campaigns_contacts_are_frozen(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(3))
    campaign = launch(db, contacts).campaign
    assert campaign is not None
    # The natural attempt: fix c.tsv in place and launch it again while the campaign runs.
    write_contacts(contacts, contact_rows(3, start=100))
    with pytest.raises(CampaignFrozen) as err:
        launch(db, contacts)
    assert str(err.value).startswith(
        f"Campaign {campaign.id} is launched: its contact file can't change. Stop it, fix the "
        "file and launch a new campaign that replaces it"
    )
    frozen = err.value
    assert (frozen.campaign_id, frozen.contacts_path) == (campaign.id, str(contacts))
    assert frozen.contacts_file == "c.tsv"  # the CLI's advice is built from these
    assert rows(db, "SELECT count(*) FROM campaigns") == [(1,)]
    with pytest.raises(QueryError, match="read-only: UPDATE"):
        queries.run_query(at(db), "UPDATE campaign_contacts SET phone = '+1'")
    assert rows(db, "SELECT min(phone) FROM campaign_contacts") == [("+34610000000",)]

    # The advice works: relaunch replaces it with the fixed file.
    fixed = relaunch(db, campaign.id, contacts).campaign
    assert fixed is not None and fixed.replaces == campaign.id


def test_the_same_file_and_chatbot_as_a_running_campaign_is_refused_unless_again(
    db: Path, tmp_path: Path
):
    """Launching the very same file twice would text everyone twice."""
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(3))
    first = launch(db, contacts).campaign
    copy = write_contacts(tmp_path / "copy.tsv", contact_rows(3))  # same bytes, other name
    with pytest.raises(CampaignAlreadyRunning, match=f"Campaign {first.id} is already running"):
        launch(db, copy)
    assert rows(db, "SELECT count(*) FROM campaigns") == [(1,)]
    assert launch(db, copy, again=True).campaign
    campaigns.stop(at(db), first.id)  # once stopped (and the again one too), nothing is refused
    for (campaign_id,) in rows(db, "SELECT id FROM campaigns WHERE status = 'launched'"):
        campaigns.stop(at(db), str(campaign_id))
    assert launch(db, contacts).campaign


def test_only_a_changed_file_of_a_running_campaign_is_refused(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(3))
    first = launch(db, contacts).campaign
    # The same bytes again, on purpose: a phone may be in any number of campaigns.
    assert launch(db, contacts, again=True).campaign
    write_contacts(contacts, contact_rows(3, start=100))
    # Another file of the same name, declared a separate campaign.
    assert launch(db, contacts, separate=True).campaign
    # Once the campaigns of the other contents are stopped, nothing is refused.
    write_contacts(contacts, contact_rows(3, start=200))
    for (campaign_id,) in rows(db, "SELECT id FROM campaigns WHERE status = 'launched'"):
        campaigns.stop(at(db), str(campaign_id))
    assert first and launch(db, contacts).campaign


def test_a_campaign_keeps_its_chatbot_version(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(3))
    old = launch(db, contacts).campaign
    register(db, edited_chatbot(tmp_path, "name: Payment reminder", "name: v2"))
    new = launch(db, contacts, again=True).campaign
    assert old and new and (old.chatbot_version, new.chatbot_version) == (1, 2)
    relaunched = relaunch(db, old.id, contacts).campaign
    assert relaunched and relaunched.chatbot_version == 1


# --- stop and relaunch -------------------------------------------------------------------------


def test_stopping_twice_is_harmless(db: Path, tmp_path: Path):
    campaign = launch(db, write_contacts(tmp_path / "c.tsv", contact_rows(2))).campaign
    assert campaign is not None
    stopped, changed = campaigns.stop(at(db), campaign.id)
    again, changed_again = campaigns.stop(at(db), campaign.id)
    assert (stopped.status, changed, changed_again) == ("stopped", True, False)
    assert again.stopped_at == stopped.stopped_at
    with pytest.raises(NotFoundError):
        campaigns.stop(at(db), "c-00000000-0000")


def test_relaunch_stops_the_old_campaign_and_records_it(db: Path, tmp_path: Path):
    old = launch(
        db,
        write_contacts(tmp_path / "c.tsv", contact_rows(3)),
        name="Pagos",
        rate=3,
        send=False,
    ).campaign
    assert old is not None
    fixed = write_contacts(tmp_path / "fixed.tsv", contact_rows(4))
    new = relaunch(db, old.id, fixed).campaign
    assert new is not None
    assert (new.replaces, new.name, new.send_rate, new.contact_count) == (old.id, "Pagos", 3, 4)
    assert not new.send_enabled  # a --no-send campaign's relaunch doesn't start sending
    assert rows(db, "SELECT status FROM campaigns WHERE id = ?", old.id) == [("stopped",)]

    # A campaign is replaced once: the fix of a replaced campaign is a relaunch of its
    # replacement (two live replacements would text the same contacts twice).
    with pytest.raises(CampaignAlreadyReplaced) as err:
        relaunch(db, old.id, fixed)
    assert str(err.value) == (
        f"Campaign {old.id} was already replaced by {new.id}: fix and relaunch {new.id} instead."
    )
    assert err.value.replacement == new.id
    # Sending is turned on only when asked for.
    third = relaunch(db, new.id, fixed, send=True).campaign
    assert third and (third.replaces, third.send_enabled, third.send_rate) == (new.id, True, 3)
    assert rows(db, "SELECT id FROM campaigns WHERE status = 'launched'") == [(third.id,)]


def test_a_second_replacement_is_refused_inside_the_write(db: Path, tmp_path: Path):
    """Two relaunches of X validated side by side: the second to write finds the first."""
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(3))
    old = launch(db, contacts).campaign
    assert old is not None
    chatbot = campaigns.resolve_chatbot(at(db), old.chatbot_id, old.chatbot_version)
    report = campaigns.validate_for_launch(chatbot, contacts, max_message_chars=LIMIT)
    record = dict(
        contacts_path=contacts,
        contacts_sha256=report.file_sha256,
        plan=campaigns.LaunchPlan(name="x"),
        replaces=old,
    )
    first = campaigns.record_launch(at(db), chatbot, report.contacts, **record)
    with pytest.raises(CampaignStateError, match=f"already replaced by {first.id}"):
        campaigns.record_launch(at(db), chatbot, report.contacts, **record)
    assert rows(db, "SELECT count(*) FROM campaigns WHERE replaces = ?", old.id) == [(1,)]


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), -1.0, 0.0])
def test_a_send_rate_is_a_finite_number_above_0(db: Path, tmp_path: Path, rate: float):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(2))
    with pytest.raises(InvalidSendRate, match="finite number of messages per second above 0"):
        launch(db, contacts, rate=rate)
    chatbot = campaigns.resolve_chatbot(at(db), "payment-reminder")
    frame = campaigns.validate_for_launch(chatbot, contacts, max_message_chars=LIMIT).contacts
    with pytest.raises(InvalidSendRate, match="above 0"):
        campaigns.record_launch(
            at(db),
            chatbot,
            frame,
            contacts_path=contacts,
            contacts_sha256="0",
            plan=campaigns.LaunchPlan(rate=rate),
        )
    assert rows(db, "SELECT count(*) FROM campaigns") == [(0,)]


def test_an_invalid_relaunch_leaves_the_old_campaign_running(db: Path, tmp_path: Path):
    old = launch(db, write_contacts(tmp_path / "c.tsv", contact_rows(3))).campaign
    assert old is not None
    bad = write_contacts(tmp_path / "bad.tsv", [["5512345678", "Ana", "2026-12-01", "1"]])
    with pytest.raises(ContactValidationError):
        relaunch(db, old.id, bad)
    assert rows(db, "SELECT id, status FROM campaigns") == [(old.id, "launched")]


def test_injection_text_is_stored_as_text(db: Path, tmp_path: Path):
    contacts = contact_rows(2)
    contacts[0][1] = INJECTION
    campaign = launch(db, write_contacts(tmp_path / "c.tsv", contacts), name=INJECTION).campaign
    assert campaign is not None and campaign.name == INJECTION
    assert rows(db, "SELECT name FROM campaigns") == [(INJECTION,)]
    assert rows(db, "SELECT custom_data['NAME'] FROM campaign_contacts WHERE row_number = 2") == [
        (INJECTION,)
    ]


def test_the_default_send_rate_is_checked_when_settings_load():
    with pytest.raises(SettingsError, match="SMARTCHAT_DEFAULT_SEND_RATE='nan' is not valid"):
        load_settings({"SMARTCHAT_DEFAULT_SEND_RATE": "nan"})


# --- status, query, export ---------------------------------------------------------------------


def test_status_lists_campaigns_newest_first(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(6))
    first = launch(db, contacts).campaign
    second = launch(db, contacts, again=True).campaign
    assert first and second
    progress = queries.campaign_status(at(db))
    assert [p.campaign_id for p in progress] == [second.id, first.id]
    assert (progress[0].contacts, progress[0].sent, progress[0].reply_rate) == (6, 0, None)
    countries = queries.country_status(at(db), first.id)
    assert sorted(r[:2] for r in countries.rows) == [
        ("AR", 1), ("BR", 1), ("CO", 1), ("ES", 1), ("GB", 1), ("MX", 1)
    ]  # fmt: skip


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO campaigns (id) VALUES ('x')",
        "UPDATE campaigns SET status = 'stopped'",
        "DELETE FROM campaign_contacts",
        "DROP TABLE campaigns",
        "COPY campaigns TO '/tmp/out.csv'",
        "ATTACH '/tmp/other.duckdb' AS other",
        "PRAGMA enable_profiling",
        "SET threads = 1",
        "CREATE TABLE t AS SELECT 1",
        "CHECKPOINT",
        "INSTALL httpfs",
        "EXPORT DATABASE '/tmp/dump'",
        "SELECT 1; DROP TABLE campaigns",
    ],
)
def test_query_refuses_anything_that_writes(db: Path, sql: str):
    with pytest.raises(QueryError, match="read-only|One statement"):
        queries.run_query(at(db), sql)
    assert rows(db, "SELECT count(*) FROM chatbots") == [(1,)]


def test_query_cant_reach_the_file_system(db: Path):
    with pytest.raises(QueryError, match="disabled by configuration"):
        queries.run_query(at(db), "SELECT * FROM read_csv('/etc/passwd')")


def test_query_returns_columns_and_rows(db: Path):
    result = queries.run_query(at(db), "SELECT id, version FROM chatbots")
    assert (result.columns, result.rows) == (["id", "version"], [("payment-reminder", 1)])


def test_a_query_streams_its_rows_in_batches(db: Path):
    with queries.open_query(at(db), "SELECT range AS n FROM range(25)") as result:
        assert result.columns == ["n"]
        assert result.fetch(3) == [(0,), (1,), (2,)]
        batches = list(result.batches(10))
    assert [len(b) for b in batches] == [10, 10, 2]
    assert batches[-1] == [(23,), (24,)]


def test_a_query_that_fails_while_streaming_is_a_query_error(db: Path):
    sql = "SELECT CASE WHEN range < 5000 THEN 1 ELSE 'x'::INTEGER END FROM range(10000)"
    with pytest.raises(QueryError, match="The query failed"):
        with queries.open_query(at(db), sql) as result:
            list(result.batches(100))


def test_export_writes_parquet_for_bi_tools(db: Path, tmp_path: Path):
    campaign = launch(db, write_contacts(tmp_path / "c.tsv", contact_rows(5))).campaign
    assert campaign is not None
    paths = queries.export_campaign(at(db), campaign.id, tmp_path / "bi")
    assert {p.name for p in paths} >= {"campaign_contacts.parquet", "campaign_summary.parquet"}
    exported = pl.read_parquet(tmp_path / "bi" / campaign.id / "campaign_contacts.parquet")
    assert exported.height == 5 and exported["phone"][0] == "+525512000000"
    assert duckdb.sql(
        "SELECT custom_data['NAME'] FROM read_parquet(?) LIMIT 1",
        params=[str(paths[2])],
    ).fetchall() == [("Name 0",)]
    assert not list((tmp_path / "bi").rglob("*.partial"))


def test_export_to_a_place_that_cant_be_written_is_a_usage_error(db: Path, tmp_path: Path):
    campaign = launch(db, write_contacts(tmp_path / "c.tsv", contact_rows(2))).campaign
    assert campaign is not None
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    with pytest.raises(OutputFileError, match=f"Can't write the export to {a_file / campaign.id} "):
        queries.export_campaign(at(db), campaign.id, a_file)
    # The folder can be made but a file in it can't be written (here: a folder is in its way).
    blocked = tmp_path / "bi" / campaign.id / "messages.parquet"
    (blocked / "inside").mkdir(parents=True)
    with pytest.raises(OutputFileError, match=f"Can't write the export to {blocked} "):
        queries.export_campaign(at(db), campaign.id, tmp_path / "bi")


# --- crashes and concurrency (other processes, real signals) -------------------------------------

LAUNCHER = """
import sys
from tasks.campaigns import LaunchPlan, launch
from smartchat.settings import StoreSettings
campaign = launch(
    StoreSettings(path=sys.argv[2]), "payment-reminder", sys.argv[1],
    plan=LaunchPlan(again=True), max_message_chars=1600,
).campaign
print(campaign.id, flush=True)
"""
# A launch that stops inside its write transaction, contacts inserted but not committed, and says
# so by creating a file: a kill then lands before the commit however loaded the machine is.
PAUSED_LAUNCHER = """
import sys, time
from pathlib import Path
import tasks.store.contacts as contacts
from tasks.campaigns import LaunchPlan, launch
from smartchat.settings import StoreSettings
insert_contacts = contacts.insert
def insert_then_wait(*args, **kwargs):
    inserted = insert_contacts(*args, **kwargs)
    Path(sys.argv[3]).touch()
    time.sleep(600)
    return inserted
contacts.insert = insert_then_wait
launch(
    StoreSettings(path=sys.argv[2]), "payment-reminder", sys.argv[1],
    plan=LaunchPlan(again=True), max_message_chars=1600,
)
"""


def start_launch(
    contacts: Path, db: Path, paused_flag: Path | None = None
) -> subprocess.Popen[str]:
    script, extra = (LAUNCHER, []) if paused_flag is None else (PAUSED_LAUNCHER, [paused_flag])
    return subprocess.Popen(
        [sys.executable, "-c", script, str(contacts), str(db), *map(str, extra)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_file(flag: Path, child: subprocess.Popen[str], timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        if flag.exists():
            return True
        time.sleep(0.01)
    return False


def wait_for_write(db: Path, child: subprocess.Popen[str], timeout: float = 60) -> bool:
    """True once the store file starts growing (the launch's transaction is writing)."""
    size = db.stat().st_size
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        if db.stat().st_size != size:
            return True
        time.sleep(0.002)
    return False


def assert_whole(db: Path) -> int:
    """Every campaign is whole, no contact belongs to a campaign that doesn't exist: how many."""
    whole = rows(
        db,
        "SELECT c.id, c.contact_count, count(k.phone) FROM campaigns c "
        "LEFT JOIN campaign_contacts k ON k.campaign_id = c.id GROUP BY ALL",
    )
    assert all(expected == found == 200_000 for _, expected, found in whole), whole
    orphans = rows(
        db,
        "SELECT count(*) FROM campaign_contacts "
        "WHERE campaign_id NOT IN (SELECT id FROM campaigns)",
    )
    assert orphans == [(0,)]
    return len(whole)


def test_kill_9_during_launch_leaves_no_campaign_or_a_whole_one(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "big.tsv", contact_rows(200_000))
    # Killed with every contact inserted but before the commit (deterministic): nothing remains.
    flag = tmp_path / "inserted"
    child = start_launch(contacts, db, paused_flag=flag)
    paused = wait_for_file(flag, child)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert paused, child.stderr.read() if child.stderr else ""
    assert assert_whole(db) == 0
    # Killed at whatever point a real launch has reached: no campaign or a whole one.
    for delay in (0.1, 0.3):
        child = start_launch(contacts, db)
        writing = wait_for_write(db, child)
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert writing, child.stderr.read() if child.stderr else ""
        assert_whole(db)
    # The file is healthy afterwards: the next launch works.
    small = write_contacts(tmp_path / "small.tsv", contact_rows(3))
    assert launch(db, small).campaign is not None


def test_an_analyst_query_succeeds_while_a_launch_writes(db: Path, tmp_path: Path):
    contacts = write_contacts(tmp_path / "big.tsv", contact_rows(200_000))
    launcher = start_launch(contacts, db)
    assert wait_for_write(db, launcher)
    started = time.monotonic()
    analyst = subprocess.run(
        [SMARTCHAT, "query", "SELECT count(*) AS n FROM chatbots", "--json", "--db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    waited = time.monotonic() - started
    out, err = launcher.communicate(timeout=60)
    assert analyst.returncode == 0, analyst.stderr
    assert '"n": 1' in analyst.stdout
    assert launcher.returncode == 0, err  # neither side failed
    assert waited < 6, f"the query took {waited:.1f} s"
    assert rows(db, "SELECT contact_count FROM campaigns") == [(200_000,)]
