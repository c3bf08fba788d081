"""Shared fixtures: one temporary Prefect API for the whole session (a harness per test is slow)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from smartchat.settings import StoreSettings

# Quiet hours hold opening messages by the recipient's local time: the suite must not depend on
# the hour it runs at. Tests of quiet hours set their own window.
os.environ["SMARTCHAT_QUIET_HOURS"] = "00:00-00:00"


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


# --- campaigns and the store (issue 4) ---------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
CHATBOT_YAML = ROOT / "data" / "payment-reminder.yaml"
# Prefixes whose every completion is a valid mobile/fixed number for phonenumbers (checked), and
# how many digits follow: a counter fills them, so n contacts are n distinct, valid numbers.
PHONE_PREFIXES = (
    ("+525512", 6),
    ("+3461", 7),
    ("+57321", 7),
    ("+5511961", 6),
    ("+447400", 6),
    ("+5491123", 6),
)


def contact_rows(n: int, *, start: int = 0) -> list[list[str]]:
    """n valid contacts for the payment-reminder chatbot, spread over 6 countries."""
    rows = []
    for i in range(start, start + n):
        prefix, digits = PHONE_PREFIXES[i % len(PHONE_PREFIXES)]
        serial = i // len(PHONE_PREFIXES)
        rows.append([f"{prefix}{serial:0{digits}d}", f"Name {i}", "2026-12-01", str(100 + i)])
    return rows


def write_contacts(path: Path, rows: list[list[str]]) -> Path:
    lines = ["CONTACT\tNAME\tDUE_DATE\tAMOUNT", *("\t".join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def at(path: Path | str) -> StoreSettings:
    """The store settings for a test's DuckDB file (the lock timeout as shipped)."""
    return StoreSettings(path=Path(path))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store file with the sample chatbot registered (version 1)."""
    from tasks.campaigns import register_chatbot

    path = tmp_path / "store" / "smartchat.duckdb"
    register_chatbot(at(path), CHATBOT_YAML, max_message_chars=1600)
    return path


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it), for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
