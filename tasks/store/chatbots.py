"""The `chatbots` table: one row per version of a chatbot's definition."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime

from schemas.chatbot import Chatbot, parse_chatbot
from tasks.store.connection import Connection
from tasks.store.rows import columns_of, fetch_all


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
    activated_at: datetime | None  # last added: the version new campaigns use is the latest

    def load(self) -> Chatbot:
        return parse_chatbot(json.loads(self.definition), source=f"{self.id} v{self.version}")


@dataclass(frozen=True)
class ChatbotUse:
    chatbot: RegisteredChatbot
    campaigns: int


_SELECT = f"SELECT {columns_of(RegisteredChatbot)} FROM chatbots"


def versions(conn: Connection, chatbot_id: str) -> list[RegisteredChatbot]:
    """Every stored version of a chatbot, oldest first."""
    sql = _SELECT + " WHERE id = ? ORDER BY version"
    return fetch_all(conn, RegisteredChatbot, sql, [chatbot_id])


def insert(conn: Connection, bot: Chatbot, version: int, source: str | None) -> None:
    definition = json.dumps(bot.model_dump(mode="json"), ensure_ascii=False)
    conn.execute(
        "INSERT INTO chatbots (id, version, name, language, content_hash, definition, source, "
        "activated_at) VALUES (?, ?, ?, ?, ?, ?, ?, current_timestamp)",
        [bot.id, version, bot.name, bot.language, bot.content_hash, definition, source],
    )


def activate(conn: Connection, chatbot_id: str, version: int) -> None:
    """Make an existing version the one new campaigns use (it was added again)."""
    conn.execute(
        "UPDATE chatbots SET activated_at = current_timestamp WHERE id = ? AND version = ?",
        [chatbot_id, version],
    )


def current(versions: list[RegisteredChatbot]) -> RegisteredChatbot:
    """The version added last: the one new campaigns use."""
    return max(versions, key=lambda v: (v.activated_at or v.created_at, v.version))


def ids(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT id FROM chatbots ORDER BY id").fetchall()]


def with_campaign_counts(conn: Connection) -> list[ChatbotUse]:
    """Every version with how many campaigns run it, by id then version."""
    cursor = conn.execute(
        """
        SELECT b.*, count(c.id) AS campaigns
        FROM chatbots b
        LEFT JOIN campaigns c ON c.chatbot_id = b.id AND c.chatbot_version = b.version
        GROUP BY ALL
        ORDER BY b.id, b.version
        """
    )
    names = [d[0] for d in cursor.description or []]
    wanted = {f.name for f in fields(RegisteredChatbot)}
    uses = []
    for row in cursor.fetchall():
        record = dict(zip(names, row, strict=True))
        bot = RegisteredChatbot(**{k: v for k, v in record.items() if k in wanted})
        uses.append(ChatbotUse(bot, int(record["campaigns"])))
    return uses
