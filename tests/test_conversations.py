"""The conversation engine on real DuckDB files: every branch, fallbacks and the miss limit,
keywords in Spanish and English, expiry, a stopped campaign, and all-or-nothing batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from schemas.keywords import load_keywords
from tasks import campaigns, conversations
from tasks.store import messages as message_rows
from tasks.store import open_store, write_transaction
from tasks.store import replies as reply_rows
from tests.conftest import at, contact_rows, write_contacts

KEYWORDS = load_keywords()
SENDER = "+15005550006"
T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.fixture
def campaign(db: Path, tmp_path: Path) -> str:
    """A launched campaign of 3 contacts whose opening messages went out at T0."""
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(3))
    launched = campaigns.launch(
        at(db),
        "payment-reminder",
        contacts,
        plan=campaigns.LaunchPlan(),
        max_message_chars=1600,
    ).campaign
    assert launched is not None
    phones = [row[0] for row in contact_rows(3)]
    n = len(phones)
    with write_transaction(at(db)) as conn:
        message_rows.insert(
            conn,
            launched.id,
            pl.DataFrame(
                {
                    "phone": phones,
                    "seq": [1] * n,
                    "step": ["ask"] * n,
                    "kind": ["say"] * n,
                    "country": ["MX"] * n,
                    "body": ["Hola"] * n,
                    "segments": [1] * n,
                    "status": ["queued"] * n,
                    "sender": [SENDER] * n,
                }
            ),
        )
        message_rows.apply_status_changes(
            conn,
            pl.DataFrame(
                {
                    "campaign_id": [launched.id] * n,
                    "phone": phones,
                    "seq": [1] * n,
                    "status": ["sent"] * n,
                    "at": [T0] * n,
                }
            ),
        )
    return launched.id


PHONES = [row[0] for row in contact_rows(3)]


def reply(db: Path, campaign_id: str, phone: str, body: str, minutes: float = 1) -> None:
    """A reply as the receiver's drain stores it: attributed, unread (outcome NULL)."""
    with write_transaction(at(db)) as conn:
        count = conn.execute("SELECT count(*) FROM replies").fetchall()[0][0]
        reply_rows.insert(
            conn,
            pl.DataFrame(
                {
                    "campaign_id": [campaign_id],
                    "phone": [phone],
                    "country": ["MX"],
                    "body": [body],
                    "step": ["ask"],
                    "matched_option": [None],
                    "goto_step": [None],
                    "opt_out": [False],
                    "provider_id": [f"SM{count:032x}"],
                    "received_at": [T0 + timedelta(minutes=minutes)],
                    "sender": [SENDER],
                },
                schema_overrides={"matched_option": pl.String, "goto_step": pl.String},
            ),
        )


def process(db: Path, **kwargs) -> conversations.BatchResult:
    return conversations.process_batch(at(db), KEYWORDS, now=T0 + timedelta(minutes=30), **kwargs)


def rows(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with open_store(at(db), read_only=True) as conn:
        return conn.execute(sql, list(params)).fetchall()


def test_every_branch_answers_with_the_next_message_rendered(db: Path, campaign: str):
    reply(db, campaign, PHONES[0], " Sí ")
    reply(db, campaign, PHONES[1], "no")
    result = process(db)
    assert (result.replies, result.answers, result.outcomes) == (2, 2, {"option": 2})
    assert rows(
        db,
        "SELECT phone, seq, step, kind, body, status, sender FROM messages WHERE seq = 2 "
        "ORDER BY phone DESC",
    ) == [
        (PHONES[0], 2, "thanks", "say", "¡Gracias Name 0!", "queued", SENDER),
        (PHONES[1], 2, "callback", "say", "Un asesor te llamará.", "queued", SENDER),
    ]
    assert rows(
        db,
        "SELECT phone, outcome, step, matched_option, goto_step FROM replies ORDER BY phone DESC",
    ) == [
        (PHONES[0], "option", "ask", "si", "thanks"),
        (PHONES[1], "option", "ask", "no", "callback"),
    ]
    assert rows(
        db,
        "SELECT phone, step, state, end_reason, turns FROM conversation_state ORDER BY phone DESC",
    ) == [
        (PHONES[0], "thanks", "finished", "completed", 1),
        (PHONES[1], "callback", "finished", "completed", 1),
    ]
    assert process(db).replies == 0  # read once


def test_fallbacks_then_the_miss_limit_ends_the_conversation(db: Path, campaign: str):
    for i, body in enumerate(["quizás", "mañana", "ya veremos"]):
        reply(db, campaign, PHONES[0], body, minutes=1 + i)
    result = process(db)
    assert result.outcomes == {"fallback": 3}
    # Two `otherwise` messages, then the third miss (max_misses = 3) ends it without one.
    assert rows(
        db, "SELECT seq, kind FROM messages WHERE phone = ? AND seq > 1 ORDER BY seq", PHONES[0]
    ) == [(2, "otherwise"), (3, "otherwise")]
    assert rows(db, "SELECT state, end_reason, misses FROM conversation_state") == [
        ("finished", "miss_limit", 3)
    ]
    reply(db, campaign, PHONES[0], "si", minutes=10)
    assert process(db).outcomes == {"after_end": 1}


def test_a_match_resets_the_misses(db: Path, campaign: str):
    reply(db, campaign, PHONES[0], "quizás", minutes=1)
    reply(db, campaign, PHONES[0], "no", minutes=2)
    assert process(db).outcomes == {"fallback": 1, "option": 1}


@pytest.mark.parametrize(
    ("stop", "start", "confirmation"),
    [("BAJA", "alta", "Te diste de baja"), ("stop", "START", "Te diste de baja")],
)
def test_opt_out_and_back_in_spanish_and_english(
    db: Path, campaign: str, stop, start, confirmation
):
    reply(db, campaign, PHONES[0], stop, minutes=1)
    reply(db, campaign, PHONES[0], "si", minutes=2)  # after opting out: not answered
    reply(db, campaign, PHONES[0], start, minutes=3)
    reply(db, campaign, PHONES[0], "AYUDA", minutes=4)
    result = process(db)
    assert result.outcomes == {"opt_out": 1, "after_opt_out": 1, "opt_in": 1, "help": 1}
    sent = rows(
        db,
        "SELECT seq, kind, body FROM messages WHERE phone = ? AND seq > 1 ORDER BY seq",
        PHONES[0],
    )
    assert [(seq, kind) for seq, kind, _ in sent] == [(2, "opt_out"), (3, "opt_in"), (4, "help")]
    assert sent[0][2].startswith(confirmation)  # the chatbot's language: Spanish
    assert rows(db, "SELECT phone, source, keyword, opted_in_at IS NOT NULL FROM opt_outs") == [
        (PHONES[0], "reply", stop, True)
    ]
    assert rows(db, "SELECT state, end_reason FROM conversation_state") == [
        ("opted_out", "opted_out")
    ]
    assert rows(db, "SELECT opt_out FROM replies ORDER BY phone DESC") == [
        (True,),
        (False,),
        (False,),
        (False,),
    ]


def test_stop_with_other_words_is_an_ordinary_reply(db: Path, campaign: str):
    reply(db, campaign, PHONES[0], "STOP please")
    assert process(db).outcomes == {"fallback": 1}
    assert rows(db, "SELECT count(*) FROM opt_outs") == [(0,)]


def test_a_late_reply_finds_the_conversation_expired(db: Path, campaign: str):
    reply(db, campaign, PHONES[0], "si", minutes=25 * 60)  # the chatbot's expire_after is 24 h
    reply(db, campaign, PHONES[1], "si", minutes=10)
    result = process(db, expire_after=None)
    assert result.outcomes == {"after_expiry": 1, "option": 1}
    assert rows(db, "SELECT phone, state FROM conversation_state ORDER BY phone DESC") == [
        (PHONES[0], "expired"),
        (PHONES[1], "finished"),
    ]


def test_a_reply_to_a_stopped_campaign_is_recorded_not_answered(db: Path, campaign: str):
    campaigns.stop(at(db), campaign)
    reply(db, campaign, PHONES[0], "si")
    assert process(db).outcomes == {"after_stop": 1}
    assert rows(db, "SELECT count(*) FROM messages WHERE seq > 1") == [(0,)]


def test_the_sweep_expires_silent_conversations_and_completes_the_campaign(db: Path, campaign: str):
    reply(db, campaign, PHONES[0], "si")
    process(db)
    with write_transaction(at(db)) as conn:  # the answer went out
        conn.execute("UPDATE messages SET status = 'sent', sent_at = ? WHERE seq = 2", [T0])
    expired, completed = conversations.expire_and_complete(
        at(db), expire_after=60, now=T0 + timedelta(minutes=5)
    )
    assert (expired, completed) == (2, [campaign])
    assert rows(db, "SELECT state, count(*) FROM conversations GROUP BY ALL ORDER BY 1") == [
        ("expired", 2),
        ("finished", 1),
    ]
    assert rows(db, "SELECT finished, expired, status FROM campaign_summary") == [
        (1, 2, "completed")
    ]


def test_the_flow_completes_a_campaign_and_links_its_report(
    prefect_harness: None, db: Path, campaign: str, tmp_path: Path
):
    import asyncio

    from flows.process_replies import COMPLETED_ARTIFACT, process_replies
    from tests.test_launch_flow import latest_artifact

    reply(db, campaign, PHONES[0], "si")
    process(db)
    with write_transaction(at(db)) as conn:  # the answer went out
        conn.execute("UPDATE messages SET status = 'sent', sent_at = ? WHERE seq = 2", [T0])
    inbox = str(tmp_path / "no-inbox.sqlite")
    done = asyncio.run(process_replies(db=str(db), inbox=inbox, expire_after=60, send=False))

    assert done["completed"] == [campaign] and done["expired"] == 2
    report = Path(done["reports"][campaign])
    assert report == (db.parent / "reports" / f"{campaign}.html").resolve()
    assert "<html" in report.read_text(encoding="utf-8")[:500].lower()
    assert report.as_uri() in latest_artifact(COMPLETED_ARTIFACT).data
    # A campaign completes once: the next run writes no report and publishes nothing new.
    again = asyncio.run(process_replies(db=str(db), inbox=inbox, expire_after=60, send=False))
    assert (again["completed"], again["reports"]) == ([], {})


def test_a_failed_write_leaves_every_reply_unread_and_nothing_queued(
    db: Path, campaign: str, monkeypatch: pytest.MonkeyPatch
):
    """The reply's outcome, the state and the answer are one transaction: a crash between
    reading a reply and queueing its answer loses neither, and sends nothing twice."""
    reply(db, campaign, PHONES[0], "si")

    def disk_full(*args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(message_rows, "insert", disk_full)
    with pytest.raises(OSError):
        process(db)
    assert rows(db, "SELECT outcome FROM replies") == [(None,)]
    assert rows(db, "SELECT count(*) FROM conversation_state") == [(0,)]
    monkeypatch.undo()
    assert process(db).answers == 1
    assert rows(db, "SELECT count(*) FROM messages WHERE seq = 2") == [(1,)]


KILLED_ENGINE = """
import sys, time
from pathlib import Path
import tasks.store.messages as messages
from schemas.keywords import load_keywords
from smartchat.settings import StoreSettings
from tasks import conversations

insert = messages.insert
def insert_then_wait(*args, **kwargs):
    inserted = insert(*args, **kwargs)
    Path(sys.argv[2]).touch()  # the answers are queued, the transaction not committed yet
    time.sleep(600)
    return inserted
messages.insert = insert_then_wait
conversations.process_batch(StoreSettings(path=sys.argv[1]), load_keywords())
"""


def test_kill_9_while_answering_loses_nothing_and_sends_nothing_twice(
    db: Path, campaign: str, tmp_path: Path
):
    """A real SIGKILL between reading the replies and committing their answers: every reply is
    unread again, nothing is queued; the next run answers each reply exactly once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    for phone in PHONES:
        reply(db, campaign, phone, "si")
    flag = tmp_path / "queued"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_ENGINE, str(db), str(flag)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not flag.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flag.exists(), child.stderr.read() if child.stderr else ""
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert rows(db, "SELECT count(*) FROM replies WHERE outcome IS NULL") == [(3,)]
    assert rows(db, "SELECT count(*) FROM messages WHERE seq > 1") == [(0,)]
    assert rows(db, "SELECT count(*) FROM conversation_state") == [(0,)]
    assert process(db).answers == 3
    assert process(db).replies == 0
    answered = rows(db, "SELECT phone, count(*) FROM messages WHERE seq > 1 GROUP BY 1")
    assert sorted(answered) == [(phone, 1) for phone in sorted(PHONES)]
