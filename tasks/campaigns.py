"""Campaign lifecycle, as plain functions over the store: what the CLI and the flows call.

    chatbot add ──► launch ──► launched ──► stop ──► stopped
                      │            │                   ▲
                      │            └──► (sender) completed
                      └── relaunch X: stops X and launches again, recording `replaces` (once per X)

Product rules (the FAQ) live here by name: a chatbot's language never changes, a launched
campaign's contacts never change, a phone is once per campaign (validation) but may be in any
number of campaigns. Each function validates outside the store, then writes in ONE short
transaction (see tasks.store for why the file is never held longer).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import polars as pl

from schemas.chatbot import Chatbot, load_chatbot, parse_chatbot
from smartchat.errors import (
    CampaignStateError,
    ContactValidationError,
    NotFoundError,
    QueryError,
    UsageError,
)
from smartchat.settings import get_settings
from tasks.store import Connection, db_path, insert_contacts, open_store, write_transaction

if TYPE_CHECKING:
    from tasks.validation import ValidationReport

LANGUAGE_FROZEN = "A chatbot's language can't change; create a new chatbot instead"


class CampaignStatus(StrEnum):
    LAUNCHED = "launched"
    STOPPED = "stopped"
    COMPLETED = "completed"


@dataclass(frozen=True)
class RegisteredChatbot:
    """One stored version of a chatbot; campaigns point at (id, version) for life."""

    id: str
    version: int
    name: str
    language: str
    content_hash: str
    source: str | None
    created_at: datetime
    definition: str

    def load(self) -> Chatbot:
        return parse_chatbot(json.loads(self.definition), source=f"{self.id} v{self.version}")


@dataclass(frozen=True)
class Registration:
    chatbot: RegisteredChatbot
    created: bool  # False: this exact definition was already stored as that version


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    chatbot_id: str
    chatbot_version: int
    status: str
    contacts_file: str
    contacts_sha256: str
    contact_count: int
    send_rate: float
    send_enabled: bool
    replaces: str | None
    created_at: datetime
    launched_at: datetime | None
    stopped_at: datetime | None
    completed_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class CampaignProgress:
    """One row of the `campaign_summary` view, plus the campaign it replaces."""

    campaign_id: str
    name: str
    chatbot_id: str
    chatbot_version: int
    status: str
    contacts: int
    reached: int
    sent: int
    delivered: int
    failed: int
    replied: int
    reply_rate: float | None
    opted_out: int
    segments: int
    launched_at: datetime | None
    stopped_at: datetime | None
    completed_at: datetime | None
    replaces: str | None

    def to_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class LaunchResult:
    chatbot: RegisteredChatbot
    report: ValidationReport
    campaign: Campaign | None  # None for a dry run: nothing was written

    def to_json(self) -> dict[str, Any]:
        summary = self.report.to_json()
        summary.pop("errors", None)
        return {
            "dry_run": self.campaign is None,
            "campaign": self.campaign.to_json() if self.campaign else None,
            "chatbot": {"id": self.chatbot.id, "version": self.chatbot.version},
            "validation": summary,
        }


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class QueryRows:
    """An analyst query's result, read in batches so a 30M-row answer never sits in memory."""

    columns: list[str]
    _cursor: Connection

    def fetch(self, limit: int) -> list[tuple[Any, ...]]:
        """Up to `limit` more rows (fewer at the end)."""
        try:
            return self._cursor.fetchmany(limit)
        except duckdb.Error as exc:
            raise QueryError(f"The query failed: {exc}") from None

    def batches(self, size: int = 10_000) -> Iterator[list[tuple[Any, ...]]]:
        """The remaining rows, `size` at a time."""
        while rows := self.fetch(size):
            yield rows


# --- chatbots ----------------------------------------------------------------------------------

_CHATBOT_COLUMNS = (
    "SELECT id, version, name, language, content_hash, source, created_at, definition FROM chatbots"
)


def register_chatbot(chatbot_path: Path | str, db: Path | str | None = None) -> Registration:
    """`smartchat chatbot add`: store a chatbot file as a new version, or find its version."""
    return add_chatbot(load_chatbot(chatbot_path), source=str(chatbot_path), db=db)


def add_chatbot(
    bot: Chatbot, *, source: str | None = None, db: Path | str | None = None
) -> Registration:
    """Same content → same version; other edits → next version; another language → refused."""
    with write_transaction(db) as conn:
        versions = _chatbot_versions(conn, bot.id)
        if versions and versions[-1].language != bot.language:
            raise CampaignStateError(
                f"Chatbot {bot.id} speaks {versions[-1].language!r}; {source or 'this file'} "
                f"says {bot.language!r}. {LANGUAGE_FROZEN} (with another id)."
            )
        for existing in versions:
            if existing.content_hash == bot.content_hash:
                return Registration(existing, created=False)
        version = versions[-1].version + 1 if versions else 1
        definition = json.dumps(bot.model_dump(mode="json"), ensure_ascii=False)
        conn.execute(
            "INSERT INTO chatbots (id, version, name, language, content_hash, definition, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [bot.id, version, bot.name, bot.language, bot.content_hash, definition, source],
        )
        return Registration(get_chatbot(conn, bot.id, version), created=True)


def list_chatbots(db: Path | str | None = None) -> list[tuple[RegisteredChatbot, int]]:
    """Every stored chatbot version with how many campaigns use it, by id then version."""
    if not db_path(db).exists():
        return []
    with open_store(db, read_only=True) as conn:
        rows = conn.execute(
            """
            SELECT b.id, b.version, b.name, b.language, b.content_hash, b.source, b.created_at,
                   b.definition, count(c.id) AS campaigns
            FROM chatbots b
            LEFT JOIN campaigns c ON c.chatbot_id = b.id AND c.chatbot_version = b.version
            GROUP BY ALL
            ORDER BY b.id, b.version
            """
        ).fetchall()
    return [(RegisteredChatbot(*row[:-1]), int(row[-1])) for row in rows]


def get_chatbot(conn: Connection, chatbot_id: str, version: int | None = None) -> RegisteredChatbot:
    """The given version of a chatbot, or its latest one."""
    versions = _chatbot_versions(conn, chatbot_id)
    match = [v for v in versions if version is None or v.version == version]
    if match:
        return match[-1]
    if versions:
        raise NotFoundError(f"Chatbot {chatbot_id} has no version {version}.")
    known = [r[0] for r in conn.execute("SELECT DISTINCT id FROM chatbots ORDER BY id").fetchall()]
    hint = (
        f" {chatbot_id!r} looks like a file: register it with `smartchat chatbot add "
        f"{chatbot_id}`, then launch with its id."
        if chatbot_id.endswith((".yaml", ".yml"))
        else " Register it with `smartchat chatbot add FILE.yaml`."
    )
    listed = f" (registered: {', '.join(known)})" if known else ""
    raise NotFoundError(f"No chatbot {chatbot_id!r}{listed}.{hint}")


def _chatbot_versions(conn: Connection, chatbot_id: str) -> list[RegisteredChatbot]:
    cursor = conn.execute(_CHATBOT_COLUMNS + " WHERE id = ? ORDER BY version", [chatbot_id])
    return [RegisteredChatbot(*row) for row in cursor.fetchall()]


# --- launch, relaunch, stop --------------------------------------------------------------------

_CAMPAIGN_COLUMNS = (
    "SELECT id, name, chatbot_id, chatbot_version, status, contacts_file, contacts_sha256, "
    "contact_count, send_rate, send_enabled, replaces, created_at, launched_at, stopped_at, "
    "completed_at FROM campaigns"
)


def launch(
    chatbot_id: str,
    contacts_path: Path | str,
    *,
    name: str | None = None,
    rate: float | None = None,
    send: bool = True,
    dry_run: bool = False,
    separate: bool = False,
    db: Path | str | None = None,
) -> LaunchResult:
    """Validate the contacts against the chatbot's latest version, then store them and launch.

    Raises ContactValidationError (nothing written) for an invalid file. A dry run validates and
    returns what would be sent without writing anything. `separate`: see `store_campaign`.
    """
    check_send_rate(rate)
    with open_store(db, read_only=True) as conn:
        chatbot = get_chatbot(conn, chatbot_id)
    report = validate_for_launch(chatbot, contacts_path)
    if dry_run:
        return LaunchResult(chatbot, report, None)
    campaign = store_campaign(
        chatbot,
        report.contacts,
        contacts_file=Path(report.source).name,
        contacts_sha256=report.file_sha256,
        name=name or default_name(chatbot, contacts_path),
        rate=rate,
        send=send,
        separate=separate,
        contacts_path=contacts_path,
        db=db,
    )
    return LaunchResult(chatbot, report, campaign)


def relaunch(
    campaign_id: str,
    contacts_path: Path | str,
    *,
    send: bool | None = None,
    name: str | None = None,
    db: Path | str | None = None,
) -> LaunchResult:
    """The FAQ's fix for a wrong file: stop X and launch its chatbot version and settings again.

    Name, send rate and sending (`send=None`) are X's unless given. Validation comes first: an
    invalid file leaves X running and writes nothing. A campaign is replaced at most once: the
    fix of a replaced campaign is a relaunch of its replacement.
    """
    with open_store(db, read_only=True) as conn:
        old = get_campaign(conn, campaign_id)
        _check_not_replaced(conn, old.id)  # early, before a long validation; again when writing
        chatbot = get_chatbot(conn, old.chatbot_id, old.chatbot_version)
    report = validate_for_launch(chatbot, contacts_path)
    campaign = store_campaign(
        chatbot,
        report.contacts,
        contacts_file=Path(report.source).name,
        contacts_sha256=report.file_sha256,
        name=name or old.name,
        rate=old.send_rate,
        send=old.send_enabled if send is None else send,
        replaces=old.id,
        contacts_path=contacts_path,
        db=db,
    )
    return LaunchResult(chatbot, report, campaign)


def validate_for_launch(chatbot: RegisteredChatbot, contacts_path: Path | str) -> ValidationReport:
    """The same check as `smartchat validate`; an invalid file raises with the whole report."""
    # Imported here: pandera's import costs ~1 s that `status` and `query` need not pay.
    from tasks.validation import validate_contacts

    report = validate_contacts(contacts_path, chatbot.load())
    if not report.valid:
        problems = len(report.errors)
        raise ContactValidationError(
            f"{report.source} can't be launched with chatbot {chatbot.id}: {problems:,} "
            f"problem{'s' * (problems != 1)}. Nothing was written.",
            report,
        )
    return report


def store_campaign(
    chatbot: RegisteredChatbot,
    contacts: pl.DataFrame,
    *,
    contacts_file: str,
    contacts_sha256: str,
    name: str,
    rate: float | None = None,
    send: bool = True,
    replaces: str | None = None,
    separate: bool = False,
    contacts_path: Path | str | None = None,
    db: Path | str | None = None,
) -> Campaign:
    """Contacts, file hash and the launched campaign in ONE transaction: a crash (even kill -9)
    leaves either no campaign or a whole one.

    With `replaces`, that campaign is stopped in the same transaction (refused if it was already
    replaced). Without it, a file named like the file of a campaign of this chatbot that is still
    launched, but with other contents, is taken for an attempt to change that campaign's frozen
    contacts and refused with the FAQ's advice (relaunch it), unless `separate` says it is
    another campaign. `contacts_path` is the file as the user named it, for that message.
    """
    send_rate = check_send_rate(rate)
    custom_data = chatbot.load().custom_data
    with write_transaction(db) as conn:
        if replaces is not None:
            _check_not_replaced(conn, replaces)
            _stop(conn, replaces)
        elif not separate:
            _check_not_a_changed_file(
                conn, chatbot.id, contacts_file, contacts_sha256, contacts_path or contacts_file
            )
        campaign_id = _new_campaign_id(conn)
        insert_contacts(conn, campaign_id, contacts, custom_data)
        conn.execute(
            """
            INSERT INTO campaigns (id, name, chatbot_id, chatbot_version, status, contacts_file,
                contacts_sha256, contact_count, send_rate, send_enabled, replaces, launched_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)
            """,
            [
                campaign_id,
                name,
                chatbot.id,
                chatbot.version,
                CampaignStatus.LAUNCHED.value,
                contacts_file,
                contacts_sha256,
                contacts.height,
                send_rate,
                send,
                replaces,
            ],
        )
        return get_campaign(conn, campaign_id)


def check_send_rate(rate: float | None) -> float:
    """A send rate is a finite number of messages per second above 0 (None: the default)."""
    value = get_settings().default_send_rate if rate is None else rate
    if not (math.isfinite(value) and value > 0):
        which = "SMARTCHAT_DEFAULT_SEND_RATE" if rate is None else "The send rate"
        raise UsageError(
            f"{which} must be a finite number of messages per second above 0, not {value:g}."
        )
    return value


def _check_not_replaced(conn: Connection, campaign_id: str) -> None:
    """Two live replacements of one campaign would text its contacts twice: one relaunch each."""
    rows = conn.execute(
        "SELECT id FROM campaigns WHERE replaces = ? ORDER BY created_at DESC, id DESC LIMIT 1",
        [campaign_id],
    ).fetchall()
    if rows:
        newer = rows[0][0]
        raise CampaignStateError(
            f"Campaign {campaign_id} was already replaced by {newer}: fix and relaunch {newer} "
            f"instead (smartchat relaunch {newer} --contacts FILE)."
        )


def _check_not_a_changed_file(
    conn: Connection, chatbot_id: str, contacts_file: str, sha256: str, contacts_path: Path | str
) -> None:
    """Launching an edited `contacts.tsv` again is the natural way to try to fix a launched
    campaign's contacts: it would leave the wrong campaign running next to the new one."""
    rows = conn.execute(
        "SELECT id FROM campaigns WHERE chatbot_id = ? AND contacts_file = ? "
        "AND contacts_sha256 <> ? AND status = ? ORDER BY created_at DESC, id DESC LIMIT 1",
        [chatbot_id, contacts_file, sha256, CampaignStatus.LAUNCHED.value],
    ).fetchall()
    if rows:
        running = rows[0][0]
        raise CampaignStateError(
            f"{frozen_contacts_message(running, contacts_path)} ({running} was launched from "
            f"another file named {contacts_file}; if this file is a separate campaign, not a fix "
            f"of {running}, add --separate.)"
        )


def frozen_contacts_message(campaign_id: str, contacts_path: Path | str) -> str:
    """The FAQ's answer to any attempt to change a launched campaign's contacts."""
    return (
        f"Campaign {campaign_id} is launched: its contact file can't change. Stop it, fix the "
        f"file and launch a new campaign: smartchat relaunch {campaign_id} --contacts "
        f"{contacts_path}"
    )


def stop(campaign_id: str, db: Path | str | None = None) -> tuple[Campaign, bool]:
    """Stop sending and answering for a campaign. Idempotent: returns (campaign, changed)."""
    with write_transaction(db) as conn:
        changed = _stop(conn, campaign_id)
        return get_campaign(conn, campaign_id), changed


def _stop(conn: Connection, campaign_id: str) -> bool:
    campaign = get_campaign(conn, campaign_id)
    if campaign.status != CampaignStatus.LAUNCHED:
        return False
    conn.execute(
        "UPDATE campaigns SET status = ?, stopped_at = current_timestamp WHERE id = ?",
        [CampaignStatus.STOPPED.value, campaign_id],
    )
    return True


def get_campaign(conn: Connection, campaign_id: str) -> Campaign:
    rows = conn.execute(_CAMPAIGN_COLUMNS + " WHERE id = ?", [campaign_id]).fetchall()
    if not rows:
        raise NotFoundError(f"No campaign {campaign_id!r}: `smartchat status` lists the campaigns.")
    return Campaign(*rows[0])


def default_name(chatbot: RegisteredChatbot, contacts_path: Path | str) -> str:
    return f"{chatbot.name} · {Path(contacts_path).name}"


def _new_campaign_id(conn: Connection) -> str:
    """`c-YYYYMMDD-xxxx`: short enough to type, dated so people can tell campaigns apart."""
    today = datetime.now(UTC).strftime("%Y%m%d")
    while True:
        candidate = f"c-{today}-{secrets.token_hex(2)}"
        if not conn.execute("SELECT 1 FROM campaigns WHERE id = ?", [candidate]).fetchall():
            return candidate


# --- reading: status, query, export -------------------------------------------------------------


def campaign_status(
    campaign_id: str | None = None, db: Path | str | None = None
) -> list[CampaignProgress]:
    """Progress of one campaign, or of all of them, newest first (the `campaign_summary` view)."""
    if campaign_id is None and not db_path(db).exists():
        return []
    sql = """
        SELECT s.campaign_id, s.name, s.chatbot_id, s.chatbot_version, s.status, s.contacts,
               s.reached, s.sent, s.delivered, s.failed, s.replied, s.reply_rate, s.opted_out,
               s.segments, s.launched_at, s.stopped_at, s.completed_at, c.replaces
        FROM campaign_summary s
        JOIN campaigns c ON c.id = s.campaign_id
        WHERE ?::VARCHAR IS NULL OR s.campaign_id = ?
        ORDER BY c.created_at DESC, s.campaign_id
    """
    with open_store(db, read_only=True) as conn:
        if campaign_id is not None:
            get_campaign(conn, campaign_id)
        rows = conn.execute(sql, [campaign_id, campaign_id]).fetchall()
    return [CampaignProgress(*row) for row in rows]


def country_status(campaign_id: str, db: Path | str | None = None) -> QueryResult:
    """One campaign's progress per country (the `campaign_country_summary` view)."""
    with open_store(db, read_only=True) as conn:
        get_campaign(conn, campaign_id)
        cursor = conn.execute(
            "SELECT * EXCLUDE (campaign_id) FROM campaign_country_summary "
            "WHERE campaign_id = ? ORDER BY contacts DESC, country",
            [campaign_id],
        )
        return QueryResult([d[0] for d in cursor.description], cursor.fetchall())


def check_read_only(sql: str) -> None:
    """Refuse anything but one SELECT, before the store is even opened."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"The query can't be parsed: {exc}") from None
    if not statements:
        raise QueryError("The query is empty: write one SELECT statement.")
    if len(statements) > 1:
        raise QueryError(f"One statement at a time, please: this query has {len(statements)}.")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(
            f"smartchat query is read-only: {kind.name} statements are refused. Campaigns "
            "change only through smartchat commands (launch, stop, relaunch); to work on the "
            "data elsewhere, `smartchat export` writes Parquet files."
        )


@contextmanager
def open_query(sql: str, db: Path | str | None = None) -> Iterator[QueryRows]:
    """An analyst's SELECT, run read-only and sandboxed (no file access, no settings changes).

    The rows stream from DuckDB as they are read, so memory stays flat whatever the result's
    size; the store stays open (read-only) until the block ends, so read what you need and leave.
    """
    check_read_only(sql)
    with open_store(db, read_only=True, sandbox=True) as conn:
        try:
            cursor = conn.execute(sql)
        except duckdb.Error as exc:
            raise QueryError(f"The query failed: {exc}") from None
        yield QueryRows([d[0] for d in cursor.description or []], cursor)


def run_query(sql: str, db: Path | str | None = None) -> QueryResult:
    """`open_query` with every row in memory: for small results."""
    with open_query(sql, db) as result:
        return QueryResult(result.columns, [row for batch in result.batches() for row in batch])


# Each export is a static, parameterised query: the campaign id is never spliced into SQL.
# No ORDER BY: sorting 3M messages doubled the time the file is held (rows come in load order).
_EXPORTS: dict[str, str] = {
    "campaigns": _CAMPAIGN_COLUMNS + " WHERE id = ?",
    "chatbots": (
        "SELECT b.* FROM chatbots b JOIN campaigns c "
        "ON c.chatbot_id = b.id AND c.chatbot_version = b.version WHERE c.id = ?"
    ),
    "campaign_contacts": "SELECT * FROM campaign_contacts WHERE campaign_id = ?",
    "messages": "SELECT * FROM messages WHERE campaign_id = ?",
    "replies": "SELECT * FROM replies WHERE campaign_id = ?",
    "campaign_summary": "SELECT * FROM campaign_summary WHERE campaign_id = ?",
    "campaign_country_summary": (
        "SELECT * FROM campaign_country_summary WHERE campaign_id = ? ORDER BY country"
    ),
    "step_funnel": "SELECT * FROM step_funnel WHERE campaign_id = ? ORDER BY step",
    "step_answers": "SELECT * FROM step_answers WHERE campaign_id = ? ORDER BY step, option",
}


def export_campaign(
    campaign_id: str, out_dir: Path | str, db: Path | str | None = None
) -> list[Path]:
    """Parquet files of a campaign's rows in every table and view, in OUT_DIR/<campaign id>/.

    One short read per file (the file is released in between, so a sender batch never waits
    for a whole export: 3M messages take ~2 s). Each file is written under a temporary name and
    renamed, so a BI tool never reads half of one.
    """
    with open_store(db, read_only=True) as conn:
        get_campaign(conn, campaign_id)
    target = Path(out_dir) / campaign_id
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(target, exc) from None
    written = []
    for table, sql in _EXPORTS.items():
        path = target / f"{table}.parquet"
        partial = path.with_suffix(".parquet.partial")
        try:
            with open_store(db, read_only=True) as conn:
                conn.sql(sql, params=[campaign_id]).write_parquet(str(partial))
            partial.replace(path)
        except (OSError, duckdb.IOException) as exc:
            raise _unwritable(path, exc) from None
        written.append(path)
    return written


def _unwritable(path: Path, exc: OSError | duckdb.IOException) -> UsageError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return UsageError(
        f"Can't write the export to {path} ({reason}): choose a folder you can write to."
    )


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}
