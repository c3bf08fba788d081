"""The `campaigns` table and the `campaign_summary` / `campaign_country_summary` views."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.campaigns import CampaignStatus
from smartchat.errors import CampaignNotFound
from tasks.store.connection import Connection
from tasks.store.rows import columns_of, fetch_all


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    chatbot_id: str
    chatbot_version: int
    status: CampaignStatus
    contacts_file: str
    contacts_sha256: str
    contact_count: int
    send_rate: float
    send_enabled: bool
    replaces: str | None
    contacts_sheet: str | None
    created_at: datetime
    launched_at: datetime | None
    stopped_at: datetime | None
    completed_at: datetime | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", CampaignStatus(self.status))

    def to_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class NewCampaign:
    """What a launch writes; the store adds the id and the times."""

    name: str
    chatbot_id: str
    chatbot_version: int
    contacts_file: str
    contacts_sha256: str
    contact_count: int
    send_rate: float
    send_enabled: bool
    replaces: str | None = None
    contacts_sheet: str | None = None


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
    replies: int
    reply_rate: float | None
    opted_out: int
    finished: int
    expired: int
    segments: int
    launched_at: datetime | None
    stopped_at: datetime | None
    completed_at: datetime | None
    replaces: str | None

    def to_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


_SELECT = f"SELECT {columns_of(Campaign)} FROM campaigns"


def get(conn: Connection, campaign_id: str) -> Campaign:
    found = fetch_all(conn, Campaign, _SELECT + " WHERE id = ?", [campaign_id])
    if not found:
        raise CampaignNotFound(f"No campaign {campaign_id!r}.", campaign_id)
    return found[0]


def insert(conn: Connection, new: NewCampaign) -> Campaign:
    """Record a launched campaign under a fresh id; its contacts go in the same transaction."""
    campaign_id = _new_id(conn)
    record = asdict(new)
    conn.execute(
        f"INSERT INTO campaigns (id, status, launched_at, {', '.join(record)}) "
        f"VALUES (?, ?, current_timestamp, {', '.join('?' * len(record))})",
        [campaign_id, CampaignStatus.LAUNCHED.value, *record.values()],
    )
    return get(conn, campaign_id)


def mark_stopped(conn: Connection, campaign_id: str) -> bool:
    """Stop a launched campaign; False when it was not launched (stopping twice is harmless)."""
    if get(conn, campaign_id).status != CampaignStatus.LAUNCHED:
        return False
    conn.execute(
        "UPDATE campaigns SET status = ?, stopped_at = current_timestamp WHERE id = ?",
        [CampaignStatus.STOPPED.value, campaign_id],
    )
    return True


def replacement_of(conn: Connection, campaign_id: str) -> str | None:
    """The campaign relaunched in place of `campaign_id`, if any."""
    rows = conn.execute(
        "SELECT id FROM campaigns WHERE replaces = ? ORDER BY created_at DESC, id DESC LIMIT 1",
        [campaign_id],
    ).fetchall()
    return str(rows[0][0]) if rows else None


def launched_from_other_contents(
    conn: Connection, chatbot_id: str, contacts_file: str, sha256: str
) -> str | None:
    """A still-launched campaign of this chatbot from a file of this name but other bytes."""
    rows = conn.execute(
        "SELECT id FROM campaigns WHERE chatbot_id = ? AND contacts_file = ? "
        "AND contacts_sha256 <> ? AND status = ? ORDER BY created_at DESC, id DESC LIMIT 1",
        [chatbot_id, contacts_file, sha256, CampaignStatus.LAUNCHED.value],
    ).fetchall()
    return str(rows[0][0]) if rows else None


def launched_from_same_contents(
    conn: Connection, chatbot_id: str, sha256: str, sheet: str | None
) -> str | None:
    """A still-launched campaign of this chatbot whose contacts came from these very bytes (and
    the same sheet of them)."""
    rows = conn.execute(
        "SELECT id FROM campaigns WHERE chatbot_id = ? AND contacts_sha256 = ? "
        "AND contacts_sheet IS NOT DISTINCT FROM ? AND status = ? "
        "ORDER BY created_at DESC, id DESC LIMIT 1",
        [chatbot_id, sha256, sheet, CampaignStatus.LAUNCHED.value],
    ).fetchall()
    return str(rows[0][0]) if rows else None


def progress(conn: Connection, campaign_id: str | None = None) -> list[CampaignProgress]:
    """`campaign_summary` rows, of one campaign or all of them, newest first."""
    return fetch_all(
        conn,
        CampaignProgress,
        """
        SELECT s.*, c.replaces
        FROM campaign_summary s
        JOIN campaigns c ON c.id = s.campaign_id
        WHERE ?::VARCHAR IS NULL OR s.campaign_id = ?
        ORDER BY c.created_at DESC, s.campaign_id
        """,
        [campaign_id, campaign_id],
    )


def _new_id(conn: Connection) -> str:
    """`c-YYYYMMDD-xxxx`: short enough to type, dated so people can tell campaigns apart."""
    today = datetime.now(UTC).strftime("%Y%m%d")
    while True:
        candidate = f"c-{today}-{secrets.token_hex(2)}"
        if not conn.execute("SELECT 1 FROM campaigns WHERE id = ?", [candidate]).fetchall():
            return candidate


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}
