"""The DuckDB store against real files: migrations, bulk loads, the lock and the analyst views."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from schemas.messages import MessageStatus
from smartchat.errors import StoreBusy, StoreError
from smartchat.settings import StoreSettings
from tasks.store import open_store, write_transaction
from tasks.store.contacts import insert as insert_contacts
from tasks.store.messages import apply_status_changes
from tasks.store.messages import insert as insert_messages
from tasks.store.migrations import schema_version, schema_version_shipped
from tasks.store.replies import insert as insert_replies
from tests.conftest import at

SCHEMA_VERSION = schema_version_shipped()

INJECTION = "'); DROP TABLE campaigns; --"

# The schema exactly as release 1 created it (frozen here on purpose: files in the field were
# built by this text, whatever tasks/store/migrations/ says today).
V1_SQL = """
CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY, description VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp);
CREATE TABLE chatbots (
    id VARCHAR NOT NULL, version INTEGER NOT NULL, name VARCHAR NOT NULL,
    language VARCHAR NOT NULL, content_hash VARCHAR NOT NULL, definition JSON NOT NULL,
    source VARCHAR, created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (id, version), UNIQUE (id, content_hash));
CREATE TABLE campaigns (
    id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, chatbot_id VARCHAR NOT NULL,
    chatbot_version INTEGER NOT NULL, status VARCHAR NOT NULL, contacts_file VARCHAR NOT NULL,
    contacts_sha256 VARCHAR NOT NULL, contact_count BIGINT NOT NULL, send_rate DOUBLE NOT NULL,
    send_enabled BOOLEAN NOT NULL, replaces VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp, launched_at TIMESTAMPTZ,
    stopped_at TIMESTAMPTZ, completed_at TIMESTAMPTZ);
CREATE TABLE campaign_contacts (
    campaign_id VARCHAR NOT NULL, row_number INTEGER NOT NULL, phone VARCHAR NOT NULL,
    country VARCHAR NOT NULL, calling_code SMALLINT NOT NULL,
    custom_data MAP(VARCHAR, VARCHAR) NOT NULL);
INSERT INTO schema_migrations (version, description)
    VALUES (1, 'chatbots, campaigns and their frozen contact lists');
"""


def contacts_frame(phones: list[str], names: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "row": list(range(2, len(phones) + 2)),
            "phone": phones,
            "country": ["MX"] * len(phones),
            "calling_code": pl.Series([52] * len(phones), dtype=pl.Int32),
            "NAME": names,
        }
    )


def add_campaign(conn: duckdb.DuckDBPyConnection, campaign_id: str, contacts: int) -> None:
    conn.execute(
        "INSERT INTO campaigns (id, name, chatbot_id, chatbot_version, status, contacts_file, "
        "contacts_sha256, contact_count, send_rate, send_enabled) "
        "VALUES (?, 'test', 'bot', 1, 'launched', 'f.tsv', 'abc', ?, 10, true)",
        [campaign_id, contacts],
    )


def test_new_store_has_every_migration(tmp_path: Path):
    with open_store(at(tmp_path / "new" / "s.duckdb")) as conn:
        assert schema_version(conn) == SCHEMA_VERSION
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))


def test_a_v1_file_is_upgraded_without_losing_data(tmp_path: Path):
    path = tmp_path / "v1.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute(V1_SQL)
    conn.execute(
        "INSERT INTO chatbots (id, version, name, language, content_hash, definition) "
        "VALUES ('bot', 1, 'Bot', 'es', 'h1', '{}')"
    )
    add_campaign(conn, "c-20250101-0001", 2)
    conn.execute(
        "INSERT INTO campaign_contacts VALUES "
        "('c-20250101-0001', 2, '+525512000001', 'MX', 52, MAP {'NAME': 'Ana'}), "
        "('c-20250101-0001', 3, '+525512000002', 'MX', 52, MAP {'NAME': 'Luis'})"
    )
    conn.close()

    # A read-only open (an analyst's first query after the upgrade) migrates too.
    with open_store(at(path), read_only=True) as conn:
        assert schema_version(conn) == SCHEMA_VERSION
        names = conn.execute(
            "SELECT custom_data['NAME'] FROM campaign_contacts ORDER BY row_number"
        ).fetchall()
        summary = conn.execute(
            "SELECT campaign_id, contacts, sent FROM campaign_summary"
        ).fetchall()
        bots = conn.execute("SELECT id, version, language FROM chatbots").fetchall()
    assert names == [("Ana",), ("Luis",)]
    assert summary == [("c-20250101-0001", 2, 0)]
    assert bots == [("bot", 1, "es")]


def test_a_file_from_a_newer_release_is_refused(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    with write_transaction(at(path)) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, description) VALUES (?, 'future')",
            [SCHEMA_VERSION + 1],
        )
    with pytest.raises(StoreError, match="newer SmartChat"):
        with open_store(at(path)):
            pass


def test_a_foreign_duckdb_file_is_refused(tmp_path: Path):
    path = tmp_path / "other.duckdb"
    duckdb.connect(str(path)).execute("CREATE TABLE sales (x INT)").close()
    with pytest.raises(StoreError, match="not a SmartChat database"):
        with open_store(at(path)):
            pass


def test_read_only_needs_an_existing_file(tmp_path: Path):
    with pytest.raises(StoreError, match="No SmartChat database"):
        with open_store(at(tmp_path / "missing.duckdb"), read_only=True):
            pass
    assert not (tmp_path / "missing.duckdb").exists()


def test_a_failed_unit_of_work_leaves_nothing(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    with pytest.raises(RuntimeError):
        with write_transaction(at(path)) as conn:
            add_campaign(conn, "c-1", 2)
            insert_contacts(conn, "c-1", contacts_frame(["+1", "+2"], ["a", "b"]), ["NAME"])
            raise RuntimeError("crash before commit")
    with open_store(at(path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM campaigns").fetchall() == [(0,)]
        assert conn.execute("SELECT count(*) FROM campaign_contacts").fetchall() == [(0,)]


def test_custom_data_is_stored_as_text_never_as_sql(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    with write_transaction(at(path)) as conn:
        add_campaign(conn, INJECTION, 1)
        insert_contacts(conn, INJECTION, contacts_frame([INJECTION], [INJECTION]), ["NAME"])
    with open_store(at(path), read_only=True) as conn:
        stored = conn.execute(
            "SELECT campaign_id, phone, custom_data['NAME'] FROM campaign_contacts"
        ).fetchall()
        assert conn.execute("SELECT id FROM campaigns").fetchall() == [(INJECTION,)]
    assert stored == [(INJECTION, INJECTION, INJECTION)]


def test_a_repeated_phone_never_reaches_a_campaign(tmp_path: Path):
    with pytest.raises(StoreError, match="appears twice"):
        with write_transaction(at(tmp_path / "s.duckdb")) as conn:
            insert_contacts(conn, "c-1", contacts_frame(["+1", "+1"], ["a", "b"]), ["NAME"])


def message_batch(phones: list[str], seq: int, status: str = "queued") -> pl.DataFrame:
    n = len(phones)
    return pl.DataFrame(
        {
            "phone": phones,
            "seq": [seq] * n,
            "step": ["ask"] * n,
            "kind": ["say"] * n,
            "country": ["MX"] * n,
            "body": ["Hola"] * n,
            "segments": [1] * n,
            "status": [status] * n,
        }
    )


def status_changes(
    campaign_id: str, phones: list[str], statuses: list[str], *, seq: int = 1, at: object = None
) -> pl.DataFrame:
    n = len(phones)
    when = at or datetime.now(UTC)
    return pl.DataFrame(
        {
            "campaign_id": [campaign_id] * n,
            "phone": phones,
            "seq": [seq] * n,
            "status": statuses,
            "at": [when] * n,
        }
    )


def stored(path: Path, *columns: str) -> list[tuple[object, ...]]:
    with open_store(at(path), read_only=True) as conn:
        return conn.execute(
            f"SELECT phone, {', '.join(columns)} FROM messages ORDER BY phone, seq"
        ).fetchall()


def test_statuses_only_move_forward(tmp_path: Path):
    """Callbacks arrive late and out of order: a late `sent` never overwrites `delivered`,
    `failed` is final, and each state's time is set once, when the message enters it."""
    path = tmp_path / "s.duckdb"
    phones = ["+1", "+2", "+3", "+4"]
    t0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
    with write_transaction(at(path)) as conn:
        insert_messages(conn, "c-1", message_batch(phones, seq=1))
        first = status_changes("c-1", phones, ["sent", "delivered", "failed", "sending"], at=t0)
        assert apply_status_changes(conn, first) == 4
    later = t0 + timedelta(minutes=1)
    with write_transaction(at(path)) as conn:
        late = status_changes("c-1", phones, ["queued", "sent", "delivered", "sent"], at=later)
        # +1 sent → queued: backwards; +2 delivered → sent: late; +3 failed is final.
        assert apply_status_changes(conn, late) == 1  # only +4 sending → sent moves
        again = status_changes("c-1", phones, ["delivered"] * 4, at=later)
        assert apply_status_changes(conn, again) == 2  # +1 and +4; +2 already, +3 failed
    assert stored(path, "status", "sent_at", "delivered_at", "failed_at") == [
        ("+1", "delivered", t0, later, None),
        ("+2", "delivered", t0, t0, None),  # delivered before `sent` was heard: both set
        ("+3", "failed", None, None, t0),  # failed at the gateway: never sent
        ("+4", "delivered", later, later, None),
    ]


def test_status_changes_by_the_aggregators_id_and_in_one_batch(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    t0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
    with write_transaction(at(path)) as conn:
        insert_messages(conn, "c-1", message_batch(["+1", "+2"], seq=1))
        accepted = status_changes("c-1", ["+1", "+2"], ["sent", "sent"], at=t0).with_columns(
            pl.Series("provider_id", ["SM1", "SM2"])
        )
        apply_status_changes(conn, accepted)
        # Callbacks name the aggregator's id; several for one message in one batch, unordered.
        callbacks = pl.DataFrame(
            {
                "provider_id": ["SM1", "SM1", "SM2", "SM9"],
                "status": ["delivered", "sent", "undelivered", "delivered"],
                "at": [t0 + timedelta(seconds=s) for s in (3, 2, 4, 5)],
                "error": [None, None, "30003 Unreachable handset", None],
            }
        )
        assert apply_status_changes(conn, callbacks, by="provider_id") == 2  # SM9: unknown

    def t(seconds: int) -> datetime:
        return t0 + timedelta(seconds=seconds)

    assert stored(path, "status", "provider_id", "error", "delivered_at", "failed_at") == [
        ("+1", "delivered", "SM1", None, t(seconds=3), None),
        ("+2", "undelivered", "SM2", "30003 Unreachable handset", None, t(seconds=4)),
    ]


def test_an_unknown_status_is_refused_before_anything_is_written(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    with write_transaction(at(path)) as conn:
        insert_messages(conn, "c-1", message_batch(["+1"], seq=1))
        with pytest.raises(ValueError, match="unknown message statuses"):
            apply_status_changes(conn, status_changes("c-1", ["+1"], ["lost"]))


def test_the_status_rules_as_written_in_the_enum():
    assert MessageStatus.SENT.can_move_to(MessageStatus.DELIVERED)
    assert not MessageStatus.DELIVERED.can_move_to(MessageStatus.SENT)
    assert not MessageStatus.FAILED.can_move_to(MessageStatus.DELIVERED)
    assert MessageStatus.from_provider("accepted") is MessageStatus.SENDING
    assert MessageStatus.from_provider("receiving") is None


def test_replies_are_numbered_per_contact_and_a_redelivery_is_stored_once(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    now = datetime.now(UTC)

    def replies(phones: list[str], sids: list[str | None]) -> pl.DataFrame:
        n = len(phones)
        return pl.DataFrame(
            {
                "campaign_id": ["c-1"] * n,
                "phone": phones,
                "country": ["MX"] * n,
                "body": ["si"] * n,
                "step": ["ask"] * n,
                "matched_option": ["si"] * n,
                "goto_step": ["thanks"] * n,
                "opt_out": [False] * n,
                "provider_id": sids,
                "received_at": [now] * n,
            }
        )

    with write_transaction(at(path)) as conn:
        assert insert_replies(conn, replies(["+1", "+1", "+2"], ["SMa", "SMb", "SMc"])) == 3
    with write_transaction(at(path)) as conn:
        # SMb redelivered (twice in one batch, even) is one reply; +1's next is its third.
        batch = replies(["+1", "+1", "+1", "+2"], ["SMb", "SMb", "SMd", None])
        assert insert_replies(conn, batch) == 2
    with open_store(at(path), read_only=True) as conn:
        numbered = conn.execute(
            "SELECT phone, seq, provider_id FROM replies ORDER BY phone, seq"
        ).fetchall()
    assert numbered == [
        ("+1", 1, "SMa"),
        ("+1", 2, "SMb"),
        ("+1", 3, "SMd"),
        ("+2", 1, "SMc"),
        ("+2", 2, None),
    ]


def test_a_retried_message_batch_is_stored_once(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    batch = message_batch(["+1", "+2", "+3"], seq=1)
    with write_transaction(at(path)) as conn:
        assert insert_messages(conn, "c-1", batch) == 3
    with write_transaction(at(path)) as conn:
        assert insert_messages(conn, "c-1", batch) == 0  # the sender re-ran the batch
        assert insert_messages(conn, "c-2", batch) == 3  # same phones, another campaign
        assert insert_messages(conn, "c-1", message_batch(["+1"], seq=2)) == 1
    with open_store(at(path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT campaign_id, count(*) FROM messages GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert rows == [("c-1", 4), ("c-2", 3)]


def test_views_count_what_happened(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    phones = [f"+52551200000{i}" for i in range(4)]
    with write_transaction(at(path)) as conn:
        add_campaign(conn, "c-1", 4)
        frame = contacts_frame(phones, ["a", "b", "c", "d"]).with_columns(
            pl.Series("country", ["MX", "MX", "ES", "ES"])
        )
        insert_contacts(conn, "c-1", frame, ["NAME"])
        opening = message_batch(phones, seq=1).with_columns(
            pl.Series("country", ["MX", "MX", "ES", "ES"]),
            pl.Series("segments", [2, 2, 2, 2]),
        )
        insert_messages(conn, "c-1", opening)
        # The sender's contract: each state's timestamp is set when a message enters it.
        statuses = ["delivered", "delivered", "sent", "failed"]
        changes = status_changes("c-1", phones, statuses)
        # A failed message was sent first ("failed after sending"): its sent_at is set too.
        changes = pl.concat([status_changes("c-1", phones[3:], ["sent"]), changes])
        assert apply_status_changes(conn, changes) == 4
        conn.execute(
            """
            INSERT INTO replies (campaign_id, phone, seq, country, body, step, matched_option,
                                 goto_step, opt_out, received_at)
            VALUES ('c-1', ?, 1, 'MX', 'Sí', 'ask', 'si', 'thanks', false, now()),
                   ('c-1', ?, 1, 'MX', 'quizás', 'ask', NULL, NULL, false, now()),
                   ('c-1', ?, 2, 'MX', 'no', 'ask', 'no', 'callback', false, now()),
                   ('c-1', ?, 1, 'ES', 'STOP', 'ask', NULL, NULL, true, now())
            """,
            [phones[0], phones[1], phones[1], phones[2]],
        )
    with open_store(at(path), read_only=True) as conn:
        summary = conn.execute(
            "SELECT contacts, reached, sent, delivered, failed, replied, replies, reply_rate, "
            "opted_out, segments FROM campaign_summary"
        ).fetchall()
        by_country = conn.execute(
            "SELECT country, contacts, sent, delivered, replied, opted_out "
            "FROM campaign_country_summary ORDER BY country"
        ).fetchall()
        funnel = conn.execute(
            "SELECT step, reached, replies, answered, answers, fallbacks FROM step_funnel"
        ).fetchall()
    # 4 sent (one failed after sending), 3 contacts replied, one of them opted out.
    assert summary == [(4, 4, 4, 2, 1, 3, 4, 0.75, 1, 8)]
    assert by_country == [("ES", 2, 2, 0, 1, 1), ("MX", 2, 2, 2, 2, 0)]
    assert funnel == [("ask", 4, 4, 2, {"si": 1, "no": 1}, 1)]


HOLDER = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
print("holding", flush=True)
time.sleep(float(sys.argv[3]))
conn.close()
"""


def hold_lock(path: Path, mode: str, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the file, as a notebook or a launch would."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def test_a_reader_waits_for_a_short_writer(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    with write_transaction(at(path)) as conn:
        add_campaign(conn, "c-1", 0)
    holder = hold_lock(path, "rw", 1.0)
    started = time.monotonic()
    with open_store(StoreSettings(path=path, lock_timeout=10), read_only=True) as conn:
        assert conn.execute("SELECT id FROM campaigns").fetchall() == [("c-1",)]
    waited = time.monotonic() - started
    holder.wait(timeout=10)
    assert 0.3 < waited < 4


def test_a_writer_waits_for_a_short_reader(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    with write_transaction(at(path)):
        pass
    holder = hold_lock(path, "ro", 1.0)
    with write_transaction(StoreSettings(path=path, lock_timeout=10)) as conn:
        add_campaign(conn, "c-1", 0)
    holder.wait(timeout=10)
    with open_store(at(path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM campaigns").fetchall() == [(1,)]


def test_a_long_held_file_gives_a_clear_error_in_time(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    with write_transaction(at(path)):
        pass
    holder = hold_lock(path, "rw", 5.0)
    started = time.monotonic()
    try:
        with pytest.raises(StoreBusy, match=rf"busy: process {holder.pid} has held it"):
            with open_store(StoreSettings(path=path, lock_timeout=0.5), read_only=True):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert time.monotonic() - started < 2


def test_custom_data_that_cant_become_a_map_fails_the_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Strict CAST: a contact whose custom data comes out NULL (a failed conversion) makes the
    insert fail; before, TRY_CAST + coalesce stored an empty map and lost the values silently."""
    path = tmp_path / "s.duckdb"
    struct = pl.struct
    # Simulate a conversion failure for the second contact: its custom data arrives as NULL.
    monkeypatch.setattr(pl, "struct", lambda cols: pl.when(pl.col("row") != 3).then(struct(cols)))
    with pytest.raises(duckdb.ConstraintException, match="custom_data"):
        with write_transaction(at(path)) as conn:
            add_campaign(conn, "c-1", 2)
            insert_contacts(conn, "c-1", contacts_frame(["+1", "+2"], ["a", "b"]), ["NAME"])
    with open_store(at(path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM campaign_contacts").fetchall() == [(0,)]


def test_a_chatbot_without_custom_data_stores_empty_maps(tmp_path: Path):
    path = tmp_path / "s.duckdb"
    with write_transaction(at(path)) as conn:
        add_campaign(conn, "c-1", 2)
        assert insert_contacts(conn, "c-1", contacts_frame(["+1", "+2"], ["a", "b"]), []) == 2
    with open_store(at(path), read_only=True) as conn:
        stored = conn.execute(
            "SELECT phone, custom_data FROM campaign_contacts ORDER BY row_number"
        ).fetchall()
    assert stored == [("+1", {}), ("+2", {})]


def test_threads_of_one_process_read_while_another_writes(tmp_path: Path):
    """DuckDB refuses a read-only open of a file its own process has open read-write (and the
    reverse): the sender's threads and a progress display share a process with the writers."""
    import threading

    path = tmp_path / "s.duckdb"
    with write_transaction(at(path)) as conn:
        add_campaign(conn, "c-1", 0)
    writing, done = threading.Event(), threading.Event()

    def writer() -> None:
        with write_transaction(at(path)) as conn:
            add_campaign(conn, "c-2", 0)
            writing.set()
            done.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    assert writing.wait(10)
    try:
        with open_store(at(path), read_only=True) as conn:
            assert conn.execute("SELECT count(*) FROM campaigns").fetchall() == [(1,)]
    finally:
        done.set()
        thread.join()
    # And a writer waits for a reader of its own process instead of failing.
    reading, release = threading.Event(), threading.Event()

    def reader() -> None:
        with open_store(at(path), read_only=True):
            reading.set()
            release.wait(10)

    thread = threading.Thread(target=reader)
    thread.start()
    assert reading.wait(10)
    threading.Timer(0.3, release.set).start()
    with write_transaction(at(path)) as conn:
        add_campaign(conn, "c-3", 0)
    thread.join()
    with open_store(at(path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM campaigns").fetchall() == [(3,)]
